/**
 * Facteur's IMAP listener over an existing SQLite store directory (argv[2]), for
 * bench/store/imap-100k.ts. Prints "PORT <n>" when listening. Answers IPC messages from the
 * parent: { op: 'deliver', address, count, concurrency } -> { rate } (durable deliveries per
 * second), { op: 'cpu' } -> { cpu } (this process's CPU time so far, ms), { op: 'heap-reset' } / { op: 'heap-peak' } -> { peak } (largest heapUsed + external
 * sampled every 10 ms since the reset, bytes). Stops on SIGTERM. VIEW_WARM=0 turns the view
 * cache's warm-up at open off.
 */
import { pino } from 'pino';
import { createAuthenticator } from '../../src/auth/authenticator.js';
import { createImapServer } from '../../src/imap/server/server.js';
import { parseMessage } from '../../src/mail/parse.js';
import { openSqliteStore } from '../../src/store/sql/sqlite/sqlite-store.js';
import { VIEW_WARM_MESSAGES } from '../../src/store/view-cache.js';
import { makeMessage } from '../../test/helpers/messages.js';

const dir = process.argv[2]!;
// As `facteur serve` opens it: with the view cache's warm-up, unless VIEW_WARM=0 (the first
// SELECT then reads the snapshot itself).
const store = await openSqliteStore({ dir, viewWarmMessages: process.env.VIEW_WARM === '0' ? 0 : VIEW_WARM_MESSAGES });
const ctx = { hostname: 'facteur.bench.example', store, log: pino({ level: 'warn' }), auth: createAuthenticator(store), tls: null };
const server = createImapServer(ctx, { implicitTls: false, maxConnectionsPerIp: 1000 });
const port = await server.listen('127.0.0.1', 0);

let peak = 0;
const sample = (): void => {
  const m = process.memoryUsage();
  peak = Math.max(peak, m.heapUsed + m.external + m.arrayBuffers);
};
setInterval(sample, 10).unref();

async function deliver(address: string, count: number, concurrency: number): Promise<number> {
  const account = await store.getAccountByAddress(address);
  if (account === null) throw new Error(`no account ${address}`);
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const i = next++;
        const raw = makeMessage({
          from: `"Deliverer ${i}" <deliverer${i}@example.org>`,
          to: address,
          subject: `delivered ${i} ${Date.now()}`,
          body: `${'lorem ipsum dolor sit amet '.repeat(30)}\r\n${i}\r\n`,
        });
        await store.deliver(raw, parseMessage(raw), [{ accountId: account.id }]);
      }
    }),
  );
  return count / ((performance.now() - start) / 1000);
}

process.on('message', (msg: { op: string; address?: string; count?: number; concurrency?: number }) => {
  void (async () => {
    if (msg.op === 'deliver') {
      const rate = await deliver(msg.address!, msg.count!, msg.concurrency!);
      process.send!({ rate });
    } else if (msg.op === 'heap-reset') {
      peak = 0;
      sample();
      process.send!({ peak });
    } else if (msg.op === 'cpu') {
      const u = process.cpuUsage();
      process.send!({ cpu: (u.user + u.system) / 1000 });
    } else if (msg.op === 'heap-peak') {
      sample();
      process.send!({ peak });
    }
  })();
});
process.stdout.write(`PORT ${port}\n`);
process.on('SIGTERM', () => {
  void server.close(1000).then(async () => {
    await store.close();
    process.exit(0);
  });
});
