/**
 * Raw SMTP transcripts for tests: exact bytes out, parsed replies in.
 *
 *   const c = await connectSmtp(port);
 *   await c.expect(220);
 *   await c.cmd('EHLO client.test', 250);
 */
import { strict as assert } from 'node:assert';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { SocketFeed } from '../helpers/socket-feed.js';
import { encodeProxyHeader } from '../../src/net/proxy-protocol.js';

export interface SmtpReply {
  code: number;
  lines: string[];
  /** The lines after the code, joined with "\n". */
  text: string;
}

export class SmtpWire extends SocketFeed {
  socket: Socket | TLSSocket;
  private buf = '';

  constructor(socket: Socket) {
    super(socket);
    this.socket = socket;
  }

  protected received(chunk: Buffer): void {
    this.buf += chunk.toString('latin1');
  }

  /** Waits for more data; rejects after timeoutMs. */
  private async more(timeoutMs: number): Promise<void> {
    if (!(await this.wait(timeoutMs))) throw new Error(`timeout waiting for a reply; buffered: ${JSON.stringify(this.buf)}`);
  }

  write(data: string | Buffer): void {
    this.socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  }

  /** Reads one complete reply (all lines of a multi-line reply). */
  async read(timeoutMs = 10_000): Promise<SmtpReply> {
    for (;;) {
      const lines: string[] = [];
      let pos = 0;
      for (;;) {
        const nl = this.buf.indexOf('\r\n', pos);
        if (nl === -1) break;
        const line = this.buf.slice(pos, nl);
        pos = nl + 2;
        lines.push(line);
        if (line[3] !== '-') {
          this.buf = this.buf.slice(pos);
          const code = Number(line.slice(0, 3));
          return { code, lines: lines.map((l) => l.slice(4)), text: lines.map((l) => l.slice(4)).join('\n') };
        }
      }
      if (this.ended) throw new Error(`connection closed; buffered: ${JSON.stringify(this.buf)}`);
      await this.more(timeoutMs);
    }
  }

  async expect(code: number, timeoutMs?: number): Promise<SmtpReply> {
    const r = await this.read(timeoutMs);
    assert.equal(r.code, code, `expected ${code}, got ${r.code} ${r.text}`);
    return r;
  }

  /** Sends a command line and reads its reply, checking the code when given. */
  async cmd(line: string, code?: number): Promise<SmtpReply> {
    this.write(`${line}\r\n`);
    const r = await this.read();
    if (code !== undefined) assert.equal(r.code, code, `${line} -> ${r.code} ${r.text}`);
    return r;
  }

  /** Resolves when the server has closed the connection. */
  async closed(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.ended) {
      if (Date.now() > deadline) throw new Error('connection still open');
      await this.wait(deadline - Date.now());
    }
  }

  /** Client side of STARTTLS after the 220 reply. */
  async upgrade(servername = 'mail.example.test'): Promise<void> {
    const plain = this.socket as Socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('end');
    plain.removeAllListeners('close');
    const secure = tlsConnect({ socket: plain, servername, rejectUnauthorized: false });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', () => resolve());
      secure.once('error', reject);
    });
    this.socket = secure;
    this.listen(secure);
  }

  close(): void {
    this.socket.destroy();
  }
}

export async function connectSmtp(port: number, host = '127.0.0.1'): Promise<SmtpWire> {
  const socket = connect(port, host);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  return new SmtpWire(socket);
}

/** Greeting, EHLO, MAIL, RCPT(s): a session ready for DATA or BDAT. */
export async function openTransaction(port: number, from: string, to: string[]): Promise<SmtpWire> {
  const c = await connectSmtp(port);
  await c.expect(220);
  await c.cmd('EHLO client.example.net', 250);
  await c.cmd(`MAIL FROM:<${from}>`, 250);
  for (const r of to) await c.cmd(`RCPT TO:<${r}>`, 250);
  return c;
}

/** A connection through a PROXY-protocol (v2) balancer: the server sees `client` (an address on
 * the internet) instead of loopback. The listener must trust 127.0.0.0/8. */
export function connectViaBalancer(port: number, client: string): Promise<SmtpWire> {
  const head = encodeProxyHeader(2, {
    version: 2,
    command: 'proxy',
    family: 'IPv4',
    source: { address: client, port: 40000 },
    destination: { address: '198.51.100.1', port: 25 },
  });
  return new Promise((resolve, reject) => {
    const socket: Socket = connect({ host: '127.0.0.1', port });
    socket.once('error', reject);
    socket.once('connect', () => {
      socket.write(head);
      resolve(new SmtpWire(socket));
    });
  });
}
