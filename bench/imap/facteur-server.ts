/**
 * Facteur's IMAP and LMTP listeners in their own process for bench/imap: the store named by
 * the job (a SQLite data directory or a postgres:// URL), loaded first when the job asks (the
 * first node of a PostgreSQL pair loads, the second only serves; with loadOnly it exits after
 * loading). Prints "PORT imap n",
 * "PORT lmtp n", then "READY"; stops on SIGTERM.
 *
 *   node --import tsx bench/imap/facteur-server.ts '<job as JSON>'
 *   FACTEUR_BENCH_CODE=dist ...      # the compiled build (bench/shared/code.ts)
 */
import { pino } from 'pino';
import type { AppendInput, MailStore } from '../../src/store/types.js';
import { facteurModule } from '../shared/code.js';
import { corpus } from './corpus.js';
import type { FacteurJob } from './setup.js';

// From src/ through tsx, or from dist/ with FACTEUR_BENCH_CODE=dist (bench/shared/code.ts).
const { createAuthenticator } = await facteurModule<typeof import('../../src/auth/authenticator.js')>('auth/authenticator.js');
const { createCredentials } = await facteurModule<typeof import('../../src/auth/password.js')>('auth/password.js');
const { createImapServer } = await facteurModule<typeof import('../../src/imap/server/server.js')>('imap/server/server.js');
const { parseMessage } = await facteurModule<typeof import('../../src/mail/parse.js')>('mail/parse.js');
const { createSmtpServer } = await facteurModule<typeof import('../../src/smtp/server/server.js')>('smtp/server/server.js');
const { openStore } = await facteurModule<typeof import('../../src/store/open.js')>('store/open.js');
const { sqliteStoreStats } = await facteurModule<typeof import('../../src/store/sql/sqlite/sqlite-store.js')>('store/sql/sqlite/sqlite-store.js');

const job = JSON.parse(process.argv[2]!) as FacteurJob;
const store: MailStore = await openStore(job.store);

async function load(address: string, credentials: { passwordHash: string; scram: string }, seed: number, count: number): Promise<void> {
  // The SCRAM verifier too, so that the IDLE part can log in with SCRAM (idle-login=scram).
  const account = await store.createAccount({ address, ...credentials });
  const inbox = (await store.getMailbox(account.id, 'INBOX'))!;
  let batch: AppendInput[] = [];
  for (const m of corpus(seed, count, address)) {
    batch.push({ raw: m.raw, parsed: parseMessage(m.raw), internalDate: m.time });
    if (batch.length === 500) {
      await store.appendMany(inbox.id, batch);
      batch = [];
    }
  }
  if (batch.length > 0) await store.appendMany(inbox.id, batch);
}

if (job.load) {
  const started = performance.now();
  await store.addDomain('example.com');
  const credentials = await createCredentials(job.password);
  for (const a of job.accounts) await load(a.address, credentials, a.seed, a.messages);
  process.stdout.write(`loaded ${job.accounts.reduce((n, a) => n + a.messages, 0)} messages in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
  if (job.loadOnly) {
    await store.close();
    process.stdout.write('READY\n');
    process.exit(0);
  }
}

const ctx = { hostname: 'facteur.bench.example', store, log: pino({ level: 'warn' }), auth: createAuthenticator(store), tls: null };
// Limits raised for the load: every client runs on 127.0.0.1, many on one account.
const imap = createImapServer(ctx, {
  implicitTls: false,
  allowPlaintextAuth: true,
  maxConnections: 100_000,
  maxConnectionsPerIp: 100_000,
  maxConnectionsPerAccount: 100_000,
});
const lmtp = createSmtpServer(ctx, { mode: 'lmtp', resolver: null, limits: { maxConnectionsPerIp: 1000 } });
process.stdout.write(`PORT imap ${await imap.listen('127.0.0.1', 0)}\n`);
process.stdout.write(`PORT lmtp ${await lmtp.listen('127.0.0.1', 0)}\n`);
process.stdout.write('READY\n');
// The benchmark reads memory after a full collection, so that garbage does not count.
process.on('SIGUSR2', () => (globalThis as { gc?: () => void }).gc?.());
// The event loop's busy share per second (performance.eventLoopUtilization): whether the one
// thread is the bound. Printed at SIGTERM over the seconds that were busy at all (> 5%).
const busy: number[] = [];
let lastElu = performance.eventLoopUtilization();
setInterval(() => {
  const now = performance.eventLoopUtilization();
  busy.push(performance.eventLoopUtilization(now, lastElu).utilization);
  lastElu = now;
}, 1000).unref();
process.on('SIGTERM', () => {
  const loaded = busy.filter((u) => u > 0.05).sort((a, b) => a - b);
  if (loaded.length > 0) {
    const at = (q: number): string => (100 * loaded[Math.min(loaded.length - 1, Math.floor(q * loaded.length))]!).toFixed(0);
    process.stderr.write(`facteur event loop busy: ${loaded.length} s loaded, median ${at(0.5)}%, p10 ${at(0.1)}%, p90 ${at(0.9)}%\n`);
  }
  // The write path's counters over the whole run (SQLite): batches (group commits), jobs, and
  // the time in jobs and in COMMIT on the event loop.
  const st = sqliteStoreStats(store);
  if (st !== null) {
    process.stderr.write(
      `facteur store: ${st.batches} batches, ${st.jobs} jobs, ${st.run.toFixed(0)} ms in jobs, ${st.commit.toFixed(0)} ms in COMMIT (${(st.commit / Math.max(1, st.batches)).toFixed(3)} ms each), ${st.syncs} WAL fdatasyncs (${(st.sync / Math.max(1, st.syncs)).toFixed(2)} ms each), writes held ${st.holds} times (${st.held.toFixed(0)} ms), ${st.headReads} mailbox heads and ${st.deltaReads} changes read by syncs\n`,
    );
  }
  void Promise.allSettled([imap.close(1000), lmtp.close(1000)]).then(async () => {
    await store.close();
    process.exit(0);
  });
});
