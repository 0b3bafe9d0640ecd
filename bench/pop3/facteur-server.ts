/**
 * Facteur's POP3 listener in its own process for the benchmark: a fresh SQLite store in argv[2],
 * argv[3] users bench1..N@example.com (default password hash: scrypt) with argv[4] messages each
 * in INBOX, retrSetsSeen per argv[5]. Prints "PORT <n>" when listening; stops on SIGTERM.
 */
import { pino } from 'pino';
import { createAuthenticator } from '../../src/auth/authenticator.js';
import { hashPassword } from '../../src/auth/password.js';
import { parseMessage } from '../../src/mail/parse.js';
import { createPop3Server } from '../../src/pop3/server/server.js';
import { openSqliteStore } from '../../src/store/sql/sqlite/sqlite-store.js';
import { BENCH_PASSWORD, benchMessage, benchUser } from './messages.js';

const dir = process.argv[2]!;
const users = Number(process.argv[3]);
const messages = Number(process.argv[4]);
const retrSetsSeen = process.argv[5] !== 'false';
const store = await openSqliteStore({ dir });
await store.addDomain('example.com');
const hash = await hashPassword(BENCH_PASSWORD);
for (let k = 1; k <= users; k++) {
  const account = await store.createAccount({ address: benchUser(k), passwordHash: hash });
  const inbox = await store.getMailbox(account.id, 'INBOX');
  const inputs = Array.from({ length: messages }, (_, i) => {
    const raw = benchMessage(benchUser(k), i);
    return { raw, parsed: parseMessage(raw) };
  });
  await store.appendMany(inbox!.id, inputs);
}
const ctx = { hostname: 'facteur.bench.example', store, log: pino({ level: 'warn' }), auth: createAuthenticator(store), tls: null };
const server = createPop3Server(ctx, { implicitTls: false, retrSetsSeen, maxConnectionsPerIp: 1000 });
const port = await server.listen('127.0.0.1', 0);
process.stdout.write(`PORT ${port}\n`);
process.on('SIGTERM', () => {
  void server.close(1000).then(async () => {
    await store.close();
    process.exit(0);
  });
});
