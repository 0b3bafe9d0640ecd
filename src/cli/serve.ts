/**
 * `facteur serve`: runs in the foreground until SIGTERM/SIGINT, then stops accepting, lets
 * running commands finish (10 s at most) and closes.
 */
import { startApp } from '../app.js';
import type { ListenerName } from '../config/config.js';
import { dataDirStore } from './data-dir.js';
import { openStore } from '../store/open.js';

export interface ServeOptions {
  listen: Partial<Record<ListenerName, string>>;
  /** Only the listeners given with --listen start. */
  onlyListed: boolean;
  dns: string[];
}

export async function serve(dataDir: string, options: ServeOptions): Promise<number> {
  const { config, location } = await dataDirStore(dataDir);
  const store = await openStore(location, { warmViews: true });
  config.listen = options.onlyListed ? { ...options.listen } : { ...config.listen, ...options.listen };
  if (options.dns.length > 0) config.dns.servers = options.dns;
  let app;
  try {
    app = await startApp({ dataDir, storeLocation: location, config, store });
  } catch (err) {
    await store.close();
    throw err;
  }
  const running = app;
  // The handlers are in place before the ready line: a supervisor may signal the moment it reads
  // that line, and without a handler SIGTERM would kill the process instead of closing it.
  const stopped = new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      resolve();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  // Machine-readable line for scripts and tests: which listener is on which port.
  process.stdout.write(`${JSON.stringify({ msg: 'ready', listeners: Object.fromEntries(running.servers.map((s) => [s.name, s.port])) })}\n`);
  await stopped;
  running.ctx.log.info('stopping');
  await running.close(10_000);
  await store.close();
  return 0;
}
