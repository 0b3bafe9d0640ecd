/**
 * Facteur's MX listener in its own process for the benchmark: a fresh SQLite store in argv[2], or
 * a node of a PostgreSQL store when argv[2] is a postgres:// URL (several processes may share it),
 * users bench1..bench10@example.com, message authentication off (the Postfix side does none
 * either). The sessions run in SMTP worker processes as `facteur serve` runs them
 * (FACTEUR_BENCH_SMTP_WORKERS, default the config's default), and their CPU time is counted with
 * this process's. Prints "PORT <n>" when listening. On SIGUSR2 it restarts its counters (so a run can
 * leave out its warm-up); on SIGTERM it prints them, human-readable on stderr and as one
 * "STATS {json}" line on stdout, then stops. FACTEUR_BENCH_CODE=dist runs the compiled build
 * (bench/shared/code.ts).
 */
import { readFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { pino } from 'pino';
import type { SqliteStoreStats } from '../../src/store/sql/sqlite/sqlite-store.js';
import { facteurModule } from '../shared/code.js';

// From src/ through tsx, or from dist/ with FACTEUR_BENCH_CODE=dist (bench/shared/code.ts).
const { createAuthenticator } = await facteurModule<typeof import('../../src/auth/authenticator.js')>('auth/authenticator.js');
const { createSmtpServer } = await facteurModule<typeof import('../../src/smtp/server/server.js')>('smtp/server/server.js');
const { openStore } = await facteurModule<typeof import('../../src/store/open.js')>('store/open.js');
const { createSmtpWorkers } = await facteurModule<typeof import('../../src/smtp/worker/pool.js')>('smtp/worker/pool.js');
const { SMTP_WORKERS_DEFAULT } = await facteurModule<typeof import('../../src/config/config.js')>('config/config.js');
const { sqliteStoreStats } = await facteurModule<typeof import('../../src/store/sql/sqlite/sqlite-store.js')>('store/sql/sqlite/sqlite-store.js');

const store = await openStore(process.argv[2]!);
// A second node on a shared store finds the domain and users made by the first.
if (!(await store.isLocalDomain('example.com'))) await store.addDomain('example.com');
for (let i = 1; i <= 10; i++) {
  const address = `bench${i}@example.com`;
  if (!(await store.getAccountByAddress(address))) await store.createAccount({ address, passwordHash: 'x' });
}
// As app.ts does: on PostgreSQL the RCPT probing limit is counted in the shared store.
const ctx = {
  hostname: 'facteur.bench.example',
  store,
  log: pino({ level: 'warn' }),
  auth: createAuthenticator(store),
  tls: null,
  counters: store.sharedCounters(),
};
// As `facteur serve` does: the sessions in worker processes unless FACTEUR_BENCH_SMTP_WORKERS=0
// (default: the config's default for this machine).
const workerCount = Number(process.env.FACTEUR_BENCH_SMTP_WORKERS ?? SMTP_WORKERS_DEFAULT);
const limits = { maxConnectionsPerIp: 1000 };
const workers =
  workerCount > 0
    ? createSmtpWorkers(ctx, {
        mode: 'mx',
        workers: workerCount,
        resolver: null,
        limits,
        logLevel: 'warn',
        tlsDir: null,
        greetingDelayMs: 0,
        dmarcReject: 'junk',
        recipientProbes: null,
        proxyProtocol: null,
      })
    : null;
const server = workers ?? createSmtpServer(ctx, { mode: 'mx', resolver: null, limits });
const port = await server.listen('127.0.0.1', 0);
process.stdout.write(`PORT ${port}\n`);

// How long the event loop is held (COMMIT and checkpoints run on this thread), the process's
// CPU time, and the store's own write-path counters, from the start or the last SIGUSR2.
const loop = monitorEventLoopDelay({ resolution: 5 });
const zero: SqliteStoreStats = { batches: 0, jobs: 0, run: 0, commit: 0, maxCommit: 0, sync: 0, syncs: 0, holds: 0, held: 0, headReads: 0, deltaReads: 0, mailboxReads: 0 };
let startedAt = performance.now();
/** This process's CPU time and its SMTP workers' (read from /proc: user and system ticks). */
function cpuUsage(): { user: number; system: number } {
  const own = process.cpuUsage();
  let user = own.user;
  let system = own.system;
  const tick = 1e6 / 100; // microseconds per clock tick (USER_HZ)
  for (const pid of workers?.pids() ?? []) {
    try {
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
      user += Number(fields[11]) * tick;
      system += Number(fields[12]) * tick;
    } catch {
      // exited meanwhile
    }
  }
  return { user, system };
}
let cpuAt = cpuUsage();
let storeAt = { ...(sqliteStoreStats(store) ?? zero) };
loop.enable();
/** The counters since the start or the last SIGUSR2. */
function stats(): { wallMs: number; cpuUserMs: number; cpuSystemMs: number; loopMeanMs: number; store: SqliteStoreStats } {
  const now0 = cpuUsage();
  const cpu = { user: now0.user - cpuAt.user, system: now0.system - cpuAt.system };
  const now = sqliteStoreStats(store) ?? zero;
  const st = { ...zero };
  for (const k of Object.keys(zero) as Array<keyof SqliteStoreStats>) st[k] = now[k] - storeAt[k];
  return { wallMs: performance.now() - startedAt, cpuUserMs: cpu.user / 1000, cpuSystemMs: cpu.system / 1000, loopMeanMs: loop.mean / 1e6, store: st };
}
process.on('SIGUSR2', () => {
  // The counters of the interval that ends here, then new ones from now.
  const before = stats();
  loop.reset();
  startedAt = performance.now();
  cpuAt = cpuUsage();
  storeAt = { ...(sqliteStoreStats(store) ?? zero) };
  process.stdout.write(`RESET ${JSON.stringify(before)}\n`);
});
process.on('SIGTERM', () => {
  const s = stats();
  loop.disable();
  const st = s.store;
  const ms = (ns: number) => (ns / 1e6).toFixed(1);
  process.stderr.write(`facteur event loop delay: mean ${ms(loop.mean)} ms, p99 ${ms(loop.percentile(99))} ms, max ${ms(loop.max)} ms\n`);
  process.stderr.write(`facteur CPU: ${(s.cpuUserMs + s.cpuSystemMs).toFixed(0)} ms (user ${s.cpuUserMs.toFixed(0)}, system ${s.cpuSystemMs.toFixed(0)}) of ${(s.wallMs / 1000).toFixed(1)} s\n`);
  process.stderr.write(
    `store: ${st.batches} batches, ${st.jobs} jobs, ${(st.run / 1000).toFixed(1)} s running jobs + ${(st.commit / 1000).toFixed(1)} s in COMMIT on the event loop thread; ` +
      `${st.syncs} WAL fdatasyncs off the loop, ${(st.sync / 1000).toFixed(1)} s (mean ${(st.sync / Math.max(1, st.syncs)).toFixed(2)} ms); ` +
      `writes held ${st.holds} times for a catch-up checkpoint, ${st.held.toFixed(0)} ms in all\n`,
  );
  process.stdout.write(`STATS ${JSON.stringify(s)}\n`);
  void server.close(1000).then(async () => {
    await store.close();
    process.exit(0);
  });
});
