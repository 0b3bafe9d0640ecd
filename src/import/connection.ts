/**
 * The socket side of the live import clients (IMAP and POP3): connect with implicit TLS or plain
 * TCP, upgrade with STARTTLS/STLS, and read lines and fixed-size blocks in order.
 *
 * Invariants: reads are served in order, one at a time; a line longer than `maxLine` or a block
 * larger than `maxBlock` destroys the connection (a broken or hostile server cannot make the
 * importer buffer without end); every read fails once the socket closed or errored.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

export interface Endpoint {
  host: string;
  port: number;
  /** Implicit TLS (imaps, pop3s; RFC 8314). */
  tls: boolean;
  /** Accept any certificate (a test server, a self-signed old server); off by default. */
  insecure?: boolean;
  /** Milliseconds without any data from the server before the connection is given up. */
  timeoutMs?: number;
}

/** A line of more than this is not a protocol response: IMAP response lines are short, and
 * the message bytes come as literals. */
export const MAX_LINE = 1024 * 1024;

export class LineSocket {
  private socket: Socket | TLSSocket;
  private buf: Buffer = Buffer.alloc(0);
  private waiter: (() => void) | null = null;
  private failure: Error | null = null;

  private constructor(socket: Socket | TLSSocket) {
    this.socket = socket;
    this.attach();
  }

  private attach(): void {
    this.socket.on('data', (chunk: Buffer) => {
      this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
      this.wake();
    });
    this.socket.on('error', (err) => this.fail(err));
    this.socket.on('close', () => this.fail(new Error('Connection closed by the server')));
    this.socket.on('timeout', () => {
      this.fail(new Error('Timed out waiting for the server'));
      this.socket.destroy();
    });
  }

  private fail(err: Error): void {
    if (this.failure === null) this.failure = err;
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  private async more(): Promise<void> {
    if (this.failure) throw this.failure;
    await new Promise<void>((resolve) => { this.waiter = resolve; });
  }

  static async open(ep: Endpoint): Promise<LineSocket> {
    const socket = await new Promise<Socket | TLSSocket>((resolve, reject) => {
      const s = ep.tls
        ? tlsConnect({ host: ep.host, port: ep.port, servername: ep.host, rejectUnauthorized: ep.insecure !== true }, () => resolve(s))
        : netConnect({ host: ep.host, port: ep.port }, () => resolve(s));
      s.once('error', reject);
    });
    socket.setTimeout(ep.timeoutMs ?? 120_000);
    return new LineSocket(socket);
  }

  /** Upgrades to TLS after STARTTLS/STLS; nothing may be buffered (RFC 3501 §6.2.1, RFC 2595 §4). */
  async startTls(ep: Endpoint): Promise<void> {
    if (this.buf.length > 0) throw new Error('The server sent data after its STARTTLS answer (possible injection); giving up');
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    plain.removeAllListeners('timeout');
    const secure = await new Promise<TLSSocket>((resolve, reject) => {
      const s = tlsConnect({ socket: plain, servername: ep.host, rejectUnauthorized: ep.insecure !== true }, () => resolve(s));
      s.once('error', reject);
    });
    secure.setTimeout(ep.timeoutMs ?? 120_000);
    this.socket = secure;
    this.attach();
  }

  /** One line, without its CRLF. */
  async line(): Promise<Buffer> {
    for (;;) {
      const nl = this.buf.indexOf(10);
      if (nl >= 0) {
        const end = nl > 0 && this.buf[nl - 1] === 13 ? nl - 1 : nl;
        const line = this.buf.subarray(0, end);
        this.buf = this.buf.subarray(nl + 1);
        return Buffer.from(line);
      }
      if (this.buf.length > MAX_LINE) {
        this.socket.destroy();
        throw new Error(`The server sent a line over ${MAX_LINE} bytes; giving up`);
      }
      await this.more();
    }
  }

  /** Exactly n bytes. */
  async block(n: number): Promise<Buffer> {
    while (this.buf.length < n) await this.more();
    const out = Buffer.from(this.buf.subarray(0, n));
    this.buf = this.buf.subarray(n);
    return out;
  }

  write(s: string | Buffer): void {
    if (this.failure) throw this.failure;
    this.socket.write(s);
  }

  close(): void {
    this.socket.end();
    this.socket.destroy();
  }
}
