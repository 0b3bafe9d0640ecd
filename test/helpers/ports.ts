/** Ports for tests on 127.0.0.1. */
import { createServer } from 'node:net';

/** A port nothing listens on now (bound once by the kernel's choice, then closed): for a server
 * to start on, or for a peer that refuses every connection. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}
