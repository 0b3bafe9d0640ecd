/**
 * Facteur's MX listener in its own process for the benchmark: a fresh SQLite store in argv[2],
 * users bench1..bench10@example.com, message authentication off (the Postfix side does none
 * either). Prints "PORT <n>" when listening; stops on SIGTERM.
 */
import { pino } from 'pino';
import { createAuthenticator } from '../../src/auth/authenticator.js';
import { createSmtpServer } from '../../src/smtp/server/server.js';
import { openSqliteStore } from '../../src/store/sql/sqlite/sqlite-store.js';

const dir = process.argv[2]!;
const store = await openSqliteStore({ dir });
await store.addDomain('example.com');
for (let i = 1; i <= 10; i++) await store.createAccount({ address: `bench${i}@example.com`, passwordHash: 'x' });
const ctx = { hostname: 'facteur.bench.example', store, log: pino({ level: 'warn' }), auth: createAuthenticator(store), tls: null };
const server = createSmtpServer(ctx, { mode: 'mx', resolver: null, limits: { maxConnectionsPerIp: 1000 } });
const port = await server.listen('127.0.0.1', 0);
process.stdout.write(`PORT ${port}\n`);
process.on('SIGTERM', () => {
  void server.close(1000).then(async () => {
    await store.close();
    process.exit(0);
  });
});
