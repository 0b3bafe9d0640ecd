/**
 * Facteur's MX listener in its own process for the benchmark: a fresh SQLite store in argv[2],
 * users bench1..bench10@example.com, message authentication off (the Postfix side does none
 * either). Prints "PORT <n>" when listening; stops on SIGTERM.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { pino } from 'pino';
import { createAuthenticator } from '../../src/auth/authenticator.js';
import { createSmtpServer } from '../../src/smtp/server/server.js';
import { openSqliteStore, sqliteStoreStats } from '../../src/store/sql/sqlite/sqlite-store.js';

const dir = process.argv[2]!;
const store = await openSqliteStore({ dir });
await store.addDomain('example.com');
for (let i = 1; i <= 10; i++) await store.createAccount({ address: `bench${i}@example.com`, passwordHash: 'x' });
const ctx = { hostname: 'facteur.bench.example', store, log: pino({ level: 'warn' }), auth: createAuthenticator(store), tls: null };
const server = createSmtpServer(ctx, { mode: 'mx', resolver: null, limits: { maxConnectionsPerIp: 1000 } });
const port = await server.listen('127.0.0.1', 0);
process.stdout.write(`PORT ${port}\n`);
// How long the event loop is held (the store's COMMIT fsync runs on this thread).
const loop = monitorEventLoopDelay({ resolution: 5 });
const startedAt = performance.now();
loop.enable();
process.on('SIGTERM', () => {
  loop.disable();
  const ms = (ns: number) => (ns / 1e6).toFixed(1);
  process.stderr.write(`facteur event loop delay: mean ${ms(loop.mean)} ms, p99 ${ms(loop.percentile(99))} ms, max ${ms(loop.max)} ms\n`);
  // The SQLite store's own counters, when it keeps them (time inside its transactions).
  const st = sqliteStoreStats(store);
  if (st) {
    const wall = performance.now() - startedAt;
    process.stderr.write(
      `store: ${st.batches} batches, ${st.jobs} jobs, ${(st.run / 1000).toFixed(1)} s running jobs + ${(st.commit / 1000).toFixed(1)} s in COMMIT of ${(wall / 1000).toFixed(1)} s on the event loop thread\n`,
    );
    // WAL fdatasync time, off the loop (libuv's thread pool), when the store syncs that way.
    process.stderr.write(`store: ${(st.sync / 1000).toFixed(1)} s in WAL fdatasync off the loop\n`);
  }
  void server.close(1000).then(async () => {
    await store.close();
    process.exit(0);
  });
});
