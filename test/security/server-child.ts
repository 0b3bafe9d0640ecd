/**
 * Runs IMAP, POP3 and SMTP servers over a fresh test store in a process of their own, so a test
 * can read the servers' memory (VmRSS in /proc/PID/status, heap from process.memoryUsage) apart
 * from its thousands of client sockets.
 *
 * Protocol on stdio, one JSON line each: prints {"ports": {...}} when listening; reads "mem"
 * (answers {"rss", "heapUsed"} after a garbage collection; needs --expose-gc) and "exit" (closes
 * the servers, runs the store's consistency check, exits 0 when it passed and 1 otherwise).
 * Options come as JSON in the FACTEUR_CHILD_OPTIONS environment variable.
 */
import { createInterface } from 'node:readline';
import { createImapServer } from '../../src/imap/server/server.js';
import { createPop3Server } from '../../src/pop3/server/server.js';
import { createSmtpServer } from '../../src/smtp/server/server.js';
import { makeTestContext } from '../helpers/context.js';

const options = JSON.parse(process.env.FACTEUR_CHILD_OPTIONS ?? '{}') as { user: string; password: string; maxConnections?: number };
const ctx = await makeTestContext({ authOptions: { failureDelayMs: 0 } });
await ctx.addUser(options.user, options.password);
const max = options.maxConnections ?? 1000;
const servers = [
  createImapServer(ctx, { implicitTls: false, maxConnections: max }),
  createPop3Server(ctx, { implicitTls: false, maxConnections: max }),
  createSmtpServer(ctx, { mode: 'mx', resolver: null, limits: { maxConnections: max } }),
];
const [imap, pop3, smtp] = await Promise.all(servers.map((s) => s.listen('127.0.0.1', 0)));
process.stdout.write(`${JSON.stringify({ ports: { imap, pop3, smtp } })}\n`);

for await (const line of createInterface({ input: process.stdin })) {
  if (line === 'mem') {
    (globalThis as { gc?: () => void }).gc?.();
    const m = process.memoryUsage();
    process.stdout.write(`${JSON.stringify({ rss: m.rss, heapUsed: m.heapUsed })}\n`);
  } else if (line === 'exit') {
    break;
  }
}
await Promise.all(servers.map((s) => s.close(500)));
try {
  await ctx.cleanup();
  process.exit(0);
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(1);
}
