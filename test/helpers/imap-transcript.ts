/**
 * Raw IMAP transcripts for tests: exact bytes in, exact lines out.
 *
 *   const t = await connectImap(port);
 *   await t.expect(/^\* OK /);
 *   t.send('a1 LOGIN user pass');
 *   await t.expectTagged('a1', 'OK');
 *
 * A response line that ends in a literal `{n}` is read together with the literal and the rest of
 * the line, so one FETCH response is one string. Lines are returned without CRLF.
 */
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { ListeningServer, ServerContext } from '../../src/context.js';
import { createImapServer, type ImapServerOptions } from '../../src/imap/server/server.js';
import { makeTestContext, type TestContext } from './context.js';

export const DEFAULT_TIMEOUT_MS = 5000;

export interface TaggedResult {
  /** The tagged line. */
  line: string;
  /** Untagged (and continuation) lines seen before it. */
  untagged: string[];
}

export class ImapTranscript {
  private buf = Buffer.alloc(0);
  private lines: Array<{ text: string; at: number }> = [];
  /** When the line last returned by readLine arrived (Date.now()). */
  lastArrival = 0;
  private waiters: Array<() => void> = [];
  private ended = false;
  /** Every line received, for failure messages. */
  readonly log: string[] = [];

  constructor(private socket: Socket) {
    this.attach(socket);
  }

  private attach(socket: Socket): void {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.parse();
    });
    socket.on('close', () => {
      this.ended = true;
      this.notify();
    });
    socket.on('error', () => {});
  }

  private notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private parse(): void {
    let start = 0;
    let acc = '';
    for (;;) {
      const lf = this.buf.indexOf('\r\n', start);
      if (lf < 0) break;
      const piece = this.buf.toString('latin1', start, lf);
      const m = /\{(\d+)\}$/.exec(piece);
      if (m) {
        const n = Number(m[1]);
        if (this.buf.length < lf + 2 + n) break;
        acc += piece + '\r\n' + this.buf.toString('latin1', lf + 2, lf + 2 + n);
        start = lf + 2 + n;
        continue;
      }
      const line = acc + piece;
      acc = '';
      this.lines.push({ text: line, at: Date.now() });
      this.log.push(line);
      start = lf + 2;
      this.buf = this.buf.subarray(start);
      start = 0;
    }
    this.notify();
  }

  /** Sends a line; CRLF is added. */
  send(line: string): void {
    this.socket.write(`${line}\r\n`, 'latin1');
  }

  /** Sends bytes as they are. */
  sendRaw(data: string | Buffer): void {
    this.socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  }

  /** The next line, waiting up to timeoutMs. Rejects when the connection closed first. */
  async readLine(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (this.lines.length === 0) {
      if (this.ended) throw new Error(`connection closed; received:\n${this.log.join('\n')}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timeout waiting for a line; received:\n${this.log.join('\n')}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    const next = this.lines.shift()!;
    this.lastArrival = next.at;
    return next.text;
  }

  /** The next line must match (regex) or equal (string). */
  async expect(pattern: RegExp | string, timeoutMs?: number): Promise<string> {
    const line = await this.readLine(timeoutMs);
    const ok = typeof pattern === 'string' ? line === pattern : pattern.test(line);
    if (!ok) throw new Error(`expected ${String(pattern)}, got ${JSON.stringify(line)}; received:\n${this.log.join('\n')}`);
    return line;
  }

  /** Reads lines until the tagged response of `tag`, which must have the given status. */
  async expectTagged(tag: string, status: 'OK' | 'NO' | 'BAD', timeoutMs?: number): Promise<TaggedResult> {
    const untagged: string[] = [];
    for (;;) {
      const line = await this.readLine(timeoutMs);
      if (line.startsWith(`${tag} `)) {
        if (!line.startsWith(`${tag} ${status}`)) throw new Error(`expected ${tag} ${status}, got ${JSON.stringify(line)}; received:\n${this.log.join('\n')}`);
        return { line, untagged };
      }
      untagged.push(line);
    }
  }

  /** Sends a command and waits for its tagged response. */
  async command(tag: string, text: string, status: 'OK' | 'NO' | 'BAD' = 'OK'): Promise<TaggedResult> {
    this.send(`${tag} ${text}`);
    return this.expectTagged(tag, status);
  }

  /** No line arrives within ms. */
  async expectSilence(ms: number): Promise<void> {
    await new Promise((r) => setTimeout(r, ms));
    if (this.lines.length > 0) throw new Error(`unexpected line ${JSON.stringify(this.lines[0]!.text)}`);
  }

  /** Stops reading the socket, as a client that does not read: the server's writes back up
   * once the kernel's buffers are full. */
  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  /** Resolves when the server closed the connection. */
  async expectClosed(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.ended) {
      if (Date.now() > deadline) throw new Error('connection still open');
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  get isClosed(): boolean {
    return this.ended;
  }

  /** Upgrades to TLS (after the server's OK to STARTTLS). */
  async startTls(): Promise<void> {
    const raw = this.socket;
    raw.removeAllListeners('data');
    const secure = tlsConnect({ socket: raw, rejectUnauthorized: false });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve);
      secure.once('error', reject);
    });
    this.socket = secure;
    this.buf = Buffer.alloc(0);
    secure.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.parse();
    });
    secure.on('close', () => {
      this.ended = true;
      this.notify();
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

/** localAddress: connect from another loopback address (127.0.0.2) to look like a remote client. */
export async function connectImap(port: number, options: { tls?: boolean; localAddress?: string } = {}): Promise<ImapTranscript> {
  const socket: Socket = options.tls
    ? tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false })
    : connect({ host: '127.0.0.1', port, localAddress: options.localAddress });
  await new Promise<void>((resolve, reject) => {
    socket.once(options.tls ? 'secureConnect' : 'connect', () => resolve());
    socket.once('error', reject);
  });
  return new ImapTranscript(socket);
}

export interface ImapFixture {
  ctx: TestContext;
  server: ListeningServer;
  port: number;
  /** A connected transcript, greeting consumed. */
  open(): Promise<ImapTranscript>;
  /** A connected transcript logged in as the fixture user, greeting and login consumed. */
  login(user?: string, password?: string): Promise<ImapTranscript>;
  close(): Promise<void>;
}

export const TEST_USER = 'alice@example.test';
export const TEST_PASSWORD = 'correct horse';

/** Starts an IMAP server on 127.0.0.1 port 0 with a fresh store and one user. `context` may
 * replace parts of the server's context (a failing store, a capturing logger). */
export async function startImap(
  options: Partial<ImapServerOptions> = {},
  context?: (ctx: TestContext) => ServerContext,
): Promise<ImapFixture> {
  const ctx = await makeTestContext();
  await ctx.addUser(TEST_USER, TEST_PASSWORD);
  const server = createImapServer(context ? context(ctx) : ctx, { implicitTls: false, ...options });
  const port = await server.listen('127.0.0.1', 0);
  const open: ImapFixture['open'] = async () => {
    const t = await connectImap(port, { tls: options.implicitTls === true });
    await t.expect(/^\* OK /);
    return t;
  };
  let n = 0;
  const clients: ImapTranscript[] = [];
  return {
    ctx,
    server,
    port,
    async open() {
      const t = await open();
      clients.push(t);
      return t;
    },
    async login(user = TEST_USER, password = TEST_PASSWORD) {
      const t = await open();
      clients.push(t);
      const tag = `L${++n}`;
      await t.command(tag, `LOGIN "${user}" "${password}"`);
      return t;
    },
    async close() {
      for (const c of clients) c.close();
      await server.close(100);
      await ctx.cleanup();
    },
  };
}
