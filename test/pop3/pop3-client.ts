/**
 * A raw POP3 transcript client for tests: exact bytes in and out, no protocol smarts beyond
 * splitting lines. Also starts a POP3 server on 127.0.0.1 port 0 over a fresh test context.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { createPop3Server, type Pop3ServerOptions } from '../../src/pop3/server/server.js';
import type { ListeningServer } from '../../src/context.js';
import type { Account, MailStore, MessageEntry } from '../../src/store/types.js';
import type { MailboxId } from '../../src/lib/brand.js';
import { makeTestContext, type TestContext } from '../helpers/context.js';
import { SocketFeed } from '../helpers/socket-feed.js';
import { testMessage } from '../helpers/store.js';
import type { TestMessageOptions } from '../helpers/messages.js';
import { parseMessage } from '../../src/mail/parse.js';

export class RawPop3 extends SocketFeed {
  private socket: Socket;
  private buffer = Buffer.alloc(0);

  private constructor(socket: Socket) {
    super(socket);
    this.socket = socket;
  }

  protected received(chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk]);
  }

  static async connect(port: number, opts: { tls?: boolean; localAddress?: string; greeting?: boolean } = {}): Promise<RawPop3> {
    const plain: Socket = await new Promise((resolve, reject) => {
      const s = netConnect({ host: '127.0.0.1', port, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) }, () => resolve(s));
      s.once('error', reject);
    });
    const socket: Socket = opts.tls
      ? await new Promise((resolve, reject) => {
          const s = tlsConnect({ socket: plain, rejectUnauthorized: false }, () => resolve(s));
          s.once('error', reject);
        })
      : plain;
    const client = new RawPop3(socket);
    if (opts.greeting !== false) {
      const g = await client.line();
      if (!g.startsWith('+OK')) throw new Error(`unexpected greeting: ${g}`);
    }
    return client;
  }

  get raw(): Socket {
    return this.socket;
  }

  get isClosed(): boolean {
    return this.ended && this.buffer.length === 0;
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  send(line: string): void {
    this.socket.write(`${line}\r\n`);
  }

  /** The next CRLF-terminated line (without CRLF); rejects on close or timeout. */
  async line(timeoutMs = 10000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.buffer.indexOf('\r\n');
      if (i >= 0) {
        const line = this.buffer.subarray(0, i).toString('latin1');
        this.buffer = this.buffer.subarray(i + 2);
        return line;
      }
      if (this.ended) throw new Error(`connection closed (pending: ${JSON.stringify(this.buffer.toString('latin1'))})`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for a line');
      await this.wait(left);
    }
  }

  /** The raw bytes of a multi-line body up to and including ".\r\n" (after the +OK line). */
  async multilineRaw(): Promise<string> {
    let out = '';
    for (;;) {
      const l = await this.line();
      out += `${l}\r\n`;
      if (l === '.') return out;
    }
  }

  /** The lines of a multi-line body, un-stuffed, without the terminator. */
  async multiline(): Promise<string[]> {
    const lines: string[] = [];
    for (;;) {
      const l = await this.line();
      if (l === '.') return lines;
      lines.push(l.startsWith('.') ? l.slice(1) : l);
    }
  }

  async command(line: string): Promise<string> {
    this.send(line);
    return this.line();
  }

  /** Sends a command that answers multi-line on success. */
  async multi(line: string): Promise<{ status: string; lines: string[] }> {
    this.send(line);
    const status = await this.line();
    if (!status.startsWith('+OK')) return { status, lines: [] };
    return { status, lines: await this.multiline() };
  }

  async login(user: string, password: string): Promise<string> {
    const u = await this.command(`USER ${user}`);
    if (!u.startsWith('+OK')) return u;
    return this.command(`PASS ${password}`);
  }

  /** STLS then a TLS handshake over the same socket. */
  async startTls(): Promise<string> {
    const reply = await this.command('STLS');
    if (!reply.startsWith('+OK')) return reply;
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    const secure: TLSSocket = await new Promise((resolve, reject) => {
      const s = tlsConnect({ socket: plain, rejectUnauthorized: false }, () => resolve(s));
      s.once('error', reject);
    });
    this.socket = secure;
    this.buffer = Buffer.alloc(0);
    this.listen(secure);
    return reply;
  }

  /** Resolves when the server closes the connection; rejects after the timeout. */
  async closed(timeoutMs = 10000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.ended) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('connection still open');
      await this.wait(left);
    }
  }

  /** What is left unread, as text. */
  pending(): string {
    return this.buffer.toString('latin1');
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export interface Pop3Fixture {
  ctx: TestContext;
  server: ListeningServer;
  port: number;
  account: Account;
  inbox: MailboxId;
  address: string;
  password: string;
  /** Appends a message to INBOX; returns its entry. */
  deliver(opts?: Partial<TestMessageOptions> | Buffer, flags?: string[]): Promise<MessageEntry>;
  entries(): Promise<MessageEntry[]>;
  connect(opts?: { tls?: boolean; localAddress?: string }): Promise<RawPop3>;
  /** Connected and logged in with USER/PASS. */
  session(): Promise<RawPop3>;
  close(): Promise<void>;
}

export const USER = 'bob@example.com';
export const PASSWORD = 'correct horse battery';

export async function startPop3(
  options: Partial<Pop3ServerOptions> = {},
  contextOptions: Parameters<typeof makeTestContext>[0] = {},
  /** Lets a test observe what the server asks of the store (the fixture's helpers use the real one). */
  wrapStore: (store: MailStore) => MailStore = (s) => s,
): Promise<Pop3Fixture> {
  const ctx = await makeTestContext(contextOptions);
  const account = await ctx.addUser(USER, PASSWORD);
  const inboxBox = await ctx.store.getMailbox(account.id, 'INBOX');
  if (inboxBox === null) throw new Error('no INBOX');
  const inbox = inboxBox.id;
  const server = createPop3Server({ ...ctx, store: wrapStore(ctx.store) }, { implicitTls: false, ...options });
  const port = await server.listen('127.0.0.1', 0);
  const clients: RawPop3[] = [];
  const fixture: Pop3Fixture = {
    ctx,
    server,
    port,
    account,
    inbox,
    address: USER,
    password: PASSWORD,
    async deliver(opts = {}, flags = []) {
      const input = Buffer.isBuffer(opts) ? { raw: opts, parsed: parseMessage(opts) } : testMessage(opts);
      const r = await ctx.store.append(inbox, { ...input, flags });
      const [entry] = await ctx.store.getEntries(inbox, [r.uid]);
      if (entry === undefined) throw new Error('appended entry not found');
      return entry;
    },
    entries: () => ctx.store.listEntries(inbox),
    async connect(opts = {}) {
      const c = await RawPop3.connect(port, opts);
      clients.push(c);
      return c;
    },
    async session() {
      const c = await fixture.connect();
      const r = await c.login(USER, PASSWORD);
      if (!r.startsWith('+OK')) throw new Error(`login failed: ${r}`);
      return c;
    },
    async close() {
      for (const c of clients) c.destroy();
      await server.close(1000);
      await ctx.cleanup();
    },
  };
  return fixture;
}
