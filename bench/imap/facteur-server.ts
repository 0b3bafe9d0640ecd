/**
 * Facteur's IMAP and LMTP listeners in their own process for bench/imap: the store named by
 * the job (a SQLite data directory or a postgres:// URL), loaded first when the job asks (the
 * first node of a PostgreSQL pair loads, the second only serves; with loadOnly it exits after
 * loading). Prints "PORT imap n",
 * "PORT lmtp n", then "READY"; stops on SIGTERM.
 *
 *   node --import tsx bench/imap/facteur-server.ts '<job as JSON>'
 */
import { pino } from 'pino';
import { createAuthenticator } from '../../src/auth/authenticator.js';
import { createCredentials } from '../../src/auth/password.js';
import { createImapServer } from '../../src/imap/server/server.js';
import { parseMessage } from '../../src/mail/parse.js';
import { createSmtpServer } from '../../src/smtp/server/server.js';
import { openStore } from '../../src/store/open.js';
import type { AppendInput, MailStore } from '../../src/store/types.js';
import { corpus } from './corpus.js';
import type { FacteurJob } from './setup.js';

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
process.on('SIGTERM', () => {
  void Promise.allSettled([imap.close(1000), lmtp.close(1000)]).then(async () => {
    await store.close();
    process.exit(0);
  });
});
