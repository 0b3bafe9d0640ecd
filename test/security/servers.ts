/**
 * The security suite's fixture: real IMAP, POP3, SMTP (port 25 policy) and submission servers on
 * 127.0.0.1 port 0 over one fresh store, one user, and raw clients that may connect from another
 * loopback address (Linux routes all of 127.0.0.0/8 to loopback, so binding the client to
 * 127.0.0.2 makes it "another host" for a server listening on 127.0.0.1).
 *
 * `close()` stops the servers and runs the context cleanup, which fails the test when the store's
 * consistency check finds anything wrong.
 */
import { strict as assert } from 'node:assert';
import { connect, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { AuthenticatorOptions } from '../../src/auth/authenticator.js';
import type { ListeningServer } from '../../src/context.js';
import type { FileTlsProvider } from '../../src/net/tls.js';
import { createImapServer, type ImapServerOptions } from '../../src/imap/server/server.js';
import { createPop3Server, type Pop3ServerOptions } from '../../src/pop3/server/server.js';
import { createSmtpServer, type SmtpServerOptions } from '../../src/smtp/server/server.js';
import type { Account } from '../../src/store/types.js';
import { makeTestContext, type TestContext } from '../helpers/context.js';
import { connectImap, type ImapTranscript } from '../helpers/imap-transcript.js';
import { RawPop3 } from '../pop3/pop3-client.js';
import { SmtpWire } from '../smtp/wire.js';

export const USER = 'alice@example.test';
export const PASSWORD = 'correct horse battery staple';

/** A logger at info whose JSON entries the test reads (failures, blocks, drops are logged). */
export function captureLog() {
  const entries: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) entries.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  return { log: pino({ level: 'info' }, stream), entries };
}

export interface ServerSet {
  ctx: TestContext;
  alice: Account;
  ports: { imap: number; pop3: number; smtp: number; submission: number };
  imap(localAddress?: string): Promise<ImapTranscript>;
  /** An IMAP client logged in as alice (from 127.0.0.1: same host, LOGIN allowed). */
  imapLogin(): Promise<ImapTranscript>;
  pop3(localAddress?: string): Promise<RawPop3>;
  smtp(localAddress?: string, port?: number): Promise<SmtpWire>;
  submission(localAddress?: string): Promise<SmtpWire>;
  /** Raw messages in one of alice's mailboxes. */
  messages(mailbox?: string): Promise<Buffer[]>;
  /** Number of messages in all of alice's mailboxes. */
  totalMessages(): Promise<number>;
  /** Every server still serves a new, well-behaved client: IMAP login, POP3 login, SMTP delivery. */
  stillServes(): Promise<void>;
  close(): Promise<void>;
}

export interface ServerSetOptions {
  auth?: AuthenticatorOptions;
  imap?: Partial<ImapServerOptions>;
  pop3?: Partial<Pop3ServerOptions>;
  smtp?: Partial<SmtpServerOptions>;
  submission?: Partial<SmtpServerOptions>;
  /** Replaces the test context's certificates (SNI and reload tests). */
  tls?: FileTlsProvider;
}

async function rawConnect(port: number, localAddress?: string): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port, ...(localAddress ? { localAddress } : {}) });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  return socket;
}

export async function startServers(options: ServerSetOptions = {}): Promise<ServerSet> {
  // Failures are answered at once unless a test asks for the delay (it has its own test).
  const ctx = await makeTestContext({ authOptions: { failureDelayMs: 0, ...options.auth } });
  if (options.tls) ctx.tls = options.tls;
  const alice = await ctx.addUser(USER, PASSWORD);
  const servers: ListeningServer[] = [
    createImapServer(ctx, { implicitTls: false, ...options.imap }),
    createPop3Server(ctx, { implicitTls: false, ...options.pop3 }),
    createSmtpServer(ctx, { mode: 'mx', resolver: null, ...options.smtp }),
    createSmtpServer(ctx, { mode: 'submission', ...options.submission }),
  ];
  const [imap, pop3, smtp, submission] = await Promise.all(servers.map((s) => s.listen('127.0.0.1', 0))) as [number, number, number, number];
  const clients: Array<{ close(): void } | { destroy(): void }> = [];
  const track = <T extends { close(): void } | { destroy(): void }>(c: T): T => {
    clients.push(c);
    return c;
  };

  async function smtpClient(localAddress?: string, port = smtp): Promise<SmtpWire> {
    const wire = track(new SmtpWire(await rawConnect(port, localAddress)));
    await wire.expect(220);
    return wire;
  }

  const set: ServerSet = {
    ctx,
    alice,
    ports: { imap, pop3, smtp, submission },
    async imap(localAddress) {
      const t = track(await connectImap(imap, localAddress ? { localAddress } : {}));
      await t.expect(/^\* OK /);
      return t;
    },
    async imapLogin() {
      const t = await set.imap();
      await t.command('L1', `LOGIN "${USER}" "${PASSWORD}"`);
      return t;
    },
    async pop3(localAddress) {
      return track(await RawPop3.connect(pop3, localAddress ? { localAddress } : {}));
    },
    smtp: smtpClient,
    submission: (localAddress) => smtpClient(localAddress, submission),
    async messages(mailbox = 'INBOX') {
      const mb = await ctx.store.getMailbox(alice.id, mailbox);
      if (!mb) return [];
      const entries = await ctx.store.listEntries(mb.id);
      return Promise.all(entries.map((e) => ctx.store.readBlob(e.blobHash)));
    },
    async totalMessages() {
      const boxes = await ctx.store.listMailboxes(alice.id);
      let n = 0;
      for (const b of boxes) n += (await ctx.store.listEntries(b.id)).length;
      return n;
    },
    async stillServes() {
      const i = await set.imap();
      await i.command('S1', `LOGIN "${USER}" "${PASSWORD}"`);
      await i.command('S2', 'SELECT INBOX');
      await i.command('S3', 'LOGOUT');
      i.close();
      const p = await set.pop3();
      assert.match(await p.login(USER, PASSWORD), /^\+OK/);
      assert.match(await p.command('QUIT'), /^\+OK/);
      p.destroy();
      const s = await smtpClient();
      await s.cmd('EHLO client.example.net', 250);
      await s.cmd('QUIT', 221);
      s.close();
    },
    async close() {
      for (const c of clients) ('destroy' in c ? c.destroy() : c.close());
      await Promise.all(servers.map((s) => s.close(200)));
      await ctx.cleanup();
    },
  };
  return set;
}
