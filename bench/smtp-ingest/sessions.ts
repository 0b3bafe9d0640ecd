/**
 * The measurement behind docs/architecture.md "## SMTP": SMTP sessions per second of the protocol
 * engine alone (messages discarded, nothing stored), the smtp-server library against Facteur's
 * own session engine, 1-message connections and 10-message connections, 1 and 10 clients.
 *
 *   node --import tsx bench/smtp-ingest/sessions.ts [seconds]
 */
import { pino } from 'pino';
import { SMTPServer } from 'smtp-server';
import type { ServerContext } from '../../src/context.js';
import { createSmtpServer } from '../../src/smtp/server/server.js';
import type { SmtpPolicy } from '../../src/smtp/server/policy.js';
import { reply } from '../../src/smtp/protocol/reply.js';
import { runLoad } from './load.js';

const seconds = Number(process.argv[2] ?? 4);

const discard: SmtpPolicy = {
  onMailFrom: async () => null,
  onRcptTo: async (_s, _tx, to, params) => ({ ok: true, recipient: { mailbox: to, address: to.address, params, accounts: [], remote: false } }),
  onData: async () => {
    const ok = reply(250, '2.0.0', 'Ok');
    return { perRecipient: [ok], summary: ok };
  },
};

async function startLibrary(): Promise<{ port: number; close(): Promise<void> }> {
  const server = new SMTPServer({
    authOptional: true,
    disableReverseLookup: true,
    maxClients: 1000,
    logger: false,
    onData(stream, _session, callback) {
      stream.on('data', () => {});
      stream.on('end', () => callback());
    },
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const addr = server.server.address();
  return { port: typeof addr === 'object' && addr ? addr.port : 0, close: () => new Promise((r) => server.close(() => r())) };
}

async function startOwn(): Promise<{ port: number; close(): Promise<void> }> {
  const ctx = { hostname: 'bench.example', log: pino({ level: 'silent' }), tls: null } as unknown as ServerContext;
  const server = createSmtpServer(ctx, { mode: 'mx', policy: discard, limits: { maxConnectionsPerIp: 1000 } });
  const port = await server.listen('127.0.0.1', 0);
  return { port, close: () => server.close(0) };
}

const rows: string[] = [];
for (const [name, start] of [['smtp-server 3.21.6', startLibrary], ['Facteur src/smtp', startOwn]] as const) {
  const s = await start();
  for (const concurrency of [1, 10]) {
    for (const perConnection of [1, 10]) {
      const r = await runLoad({ port: s.port, messageBytes: 1024, concurrency, perConnection, durationMs: seconds * 1000, recipients: ['bob@example.com'] });
      const rate = (r.accepted / r.elapsedMs) * 1000;
      rows.push(`| ${name} | ${concurrency} | ${perConnection} | ${rate.toFixed(0)} | ${((r.connections / r.elapsedMs) * 1000).toFixed(0)} |`);
      console.error(rows[rows.length - 1]);
    }
  }
  await s.close();
}
console.log('| engine | clients | messages/connection | messages/s | connections/s |');
console.log('|---|---|---|---|---|');
for (const r of rows) console.log(r);
