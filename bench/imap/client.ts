/**
 * A small IMAP client for timing single commands over raw sockets: it streams the responses
 * (literals skipped, never held whole), counts untagged responses, and hands each response line
 * to a callback when asked. The same client times Facteur and Dovecot.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { connect, type Socket } from 'node:net';

export interface Reply {
  status: 'OK' | 'NO' | 'BAD';
  /** The tagged line's text after the status. */
  text: string;
  /** Untagged responses received for this command. */
  untagged: number;
  ms: number;
}

export class ImapClient {
  private buf: Buffer = Buffer.alloc(0);
  /** Bytes of literal still to skip, and the line being built around literals. */
  private literalLeft = 0;
  private line = '';
  private seq = 0;
  private waiting: { tag: string; start: number; untagged: number; onLine?: (line: string) => void; resolve: (r: Reply) => void; reject: (e: Error) => void } | null = null;
  private onContinuation: ((line: string) => void) | null = null;
  private greeted: Promise<string>;
  private closed = false;

  private constructor(private readonly socket: Socket) {
    let greet: (l: string) => void;
    let fail: (e: Error) => void;
    this.greeted = new Promise<string>((res, rej) => {
      greet = res;
      fail = rej;
    });
    let first = true;
    socket.on('data', (chunk: Buffer) => this.onData(chunk, (l) => {
      if (first) {
        first = false;
        greet(l);
        return true;
      }
      return false;
    }));
    const onEnd = (err?: Error) => {
      this.closed = true;
      const e = err ?? new Error('connection closed');
      fail(e);
      this.waiting?.reject(e);
      this.waiting = null;
    };
    socket.on('error', onEnd);
    socket.on('close', () => onEnd());
  }

  static async open(port: number, host = '127.0.0.1'): Promise<ImapClient> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = connect({ host, port }, () => resolve(s));
      s.once('error', reject);
    });
    socket.setNoDelay(true);
    const c = new ImapClient(socket);
    const greeting = await c.greeted;
    if (!greeting.startsWith('* OK') && !greeting.startsWith('* PREAUTH')) throw new Error(`greeting: ${greeting}`);
    return c;
  }

  static async login(port: number, user: string, password: string): Promise<ImapClient> {
    const c = await ImapClient.open(port);
    await c.ok(`LOGIN ${quote(user)} ${quote(password)}`);
    return c;
  }

  /**
   * Logs in with AUTHENTICATE SCRAM-SHA-256 (RFC 5802, RFC 7677) and SASL-IR: the server checks a
   * proof with a few HMACs instead of computing scrypt over the password, so thousands of
   * sessions open quickly (bench/imap idle-login=scram). The client's PBKDF2 is computed once
   * per salt (cached). The server's signature is checked.
   */
  static async loginScram(port: number, user: string, password: string): Promise<ImapClient> {
    const c = await ImapClient.open(port);
    const nonce = randomBytes(18).toString('base64');
    const bare = `n=${user.replace(/=/g, '=3D').replace(/,/g, '=2C')},r=${nonce}`;
    const b64 = (text: string) => Buffer.from(text).toString('base64');
    const failed = (r: Reply): never => {
      throw new Error(`AUTHENTICATE SCRAM-SHA-256: ${r.status} ${r.text}`);
    };
    let cont = c.continuation();
    const finished = c.command(`AUTHENTICATE SCRAM-SHA-256 ${b64(`n,,${bare}`)}`);
    const serverFirst = Buffer.from((await Promise.race([cont, finished.then(failed)])).slice(2), 'base64').toString();
    const fields = new Map(serverFirst.split(',').map((f) => [f.slice(0, 1), f.slice(2)] as const));
    const serverNonce = fields.get('r') ?? '';
    if (!serverNonce.startsWith(nonce)) throw new Error('SCRAM: the server changed the nonce');
    const salted = saltedPassword(password, fields.get('s') ?? '', Number(fields.get('i')));
    const withoutProof = `c=${b64('n,,')},r=${serverNonce}`;
    const authMessage = `${bare},${serverFirst},${withoutProof}`;
    const clientKey = createHmac('sha256', salted).update('Client Key').digest();
    const signature = createHmac('sha256', createHash('sha256').update(clientKey).digest()).update(authMessage).digest();
    const proof = Buffer.from(clientKey.map((b, i) => b ^ signature[i]!));
    cont = c.continuation();
    c.socket.write(`${b64(`${withoutProof},p=${proof.toString('base64')}`)}\r\n`);
    const serverFinal = Buffer.from((await Promise.race([cont, finished.then(failed)])).slice(2), 'base64').toString();
    const serverKey = createHmac('sha256', salted).update('Server Key').digest();
    const expected = Buffer.from(`v=${createHmac('sha256', serverKey).update(authMessage).digest('base64')}`);
    if (expected.length !== serverFinal.length || !timingSafeEqual(expected, Buffer.from(serverFinal))) throw new Error('SCRAM: wrong server signature');
    c.socket.write('\r\n');
    const r = await finished;
    if (r.status !== 'OK') failed(r);
    return c;
  }

  /** Resolves with the next continuation line ("+ ..."). */
  private continuation(): Promise<string> {
    return new Promise<string>((resolve) => (this.onContinuation = resolve));
  }

  private onData(chunk: Buffer, greeting: (line: string) => boolean): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    let pos = 0;
    while (pos < this.buf.length) {
      if (this.literalLeft > 0) {
        const n = Math.min(this.literalLeft, this.buf.length - pos);
        this.literalLeft -= n;
        pos += n;
        continue;
      }
      const nl = this.buf.indexOf(10, pos);
      if (nl < 0) break;
      const part = this.buf.toString('latin1', pos, nl > pos && this.buf[nl - 1] === 13 ? nl - 1 : nl);
      pos = nl + 1;
      const lit = /\{(\d+)\+?\}$/.exec(part);
      if (lit) {
        // The literal's bytes are skipped; the line goes on after them.
        this.line += part.slice(0, lit.index) + '{}';
        this.literalLeft = Number(lit[1]);
        continue;
      }
      const line = this.line + part;
      this.line = '';
      if (greeting(line)) continue;
      this.onLine(line);
    }
    this.buf = pos >= this.buf.length ? Buffer.alloc(0) : this.buf.subarray(pos);
  }

  private onLine(line: string): void {
    const w = this.waiting;
    if (line.startsWith('+')) {
      const cont = this.onContinuation;
      this.onContinuation = null;
      cont?.(line);
      return;
    }
    if (!w) return;
    if (line.startsWith('* ')) {
      w.untagged++;
      w.onLine?.(line);
      return;
    }
    if (line.startsWith(w.tag + ' ')) {
      this.waiting = null;
      const rest = line.slice(w.tag.length + 1);
      const sp = rest.indexOf(' ');
      const status = (sp < 0 ? rest : rest.slice(0, sp)).toUpperCase() as Reply['status'];
      w.resolve({ status, text: sp < 0 ? '' : rest.slice(sp + 1), untagged: w.untagged, ms: performance.now() - w.start });
    }
  }

  /** Sends one command and resolves with its tagged reply (whatever the status). */
  command(text: string, onLine?: (line: string) => void): Promise<Reply> {
    if (this.closed) return Promise.reject(new Error('connection closed'));
    if (this.waiting) return Promise.reject(new Error('one command at a time'));
    const tag = `T${++this.seq}`;
    return new Promise<Reply>((resolve, reject) => {
      this.waiting = { tag, start: performance.now(), untagged: 0, resolve, reject, ...(onLine ? { onLine } : {}) };
      this.socket.write(`${tag} ${text}\r\n`);
    });
  }

  /** A command that must succeed. */
  async ok(text: string, onLine?: (line: string) => void): Promise<Reply> {
    const r = await this.command(text, onLine);
    if (r.status !== 'OK') throw new Error(`${text.slice(0, 60)}: ${r.status} ${r.text}`);
    return r;
  }

  /** Starts IDLE and resolves once the server's continuation ("+ idling") arrived. */
  async idle(onLine?: (line: string) => void): Promise<{ done: () => Promise<Reply> }> {
    const cont = this.continuation();
    const finished = this.command('IDLE', onLine);
    await Promise.race([cont, finished.then((r) => Promise.reject(new Error(`IDLE: ${r.status} ${r.text}`)))]);
    return {
      done: () => {
        this.socket.write('DONE\r\n');
        return finished;
      },
    };
  }

  close(): void {
    this.closed = true;
    this.socket.destroy();
  }

  async logout(): Promise<void> {
    try {
      await this.command('LOGOUT');
    } catch {
      // the server may close first
    }
    this.close();
  }
}

const salted = new Map<string, Buffer>();

/** RFC 5802 §3 SaltedPassword, once per password, salt and iteration count. */
function saltedPassword(password: string, salt: string, iterations: number): Buffer {
  const key = `${iterations}:${salt}:${password}`;
  let value = salted.get(key);
  if (value === undefined) {
    value = pbkdf2Sync(password, Buffer.from(salt, 'base64'), iterations, 32, 'sha256');
    salted.set(key, value);
  }
  return value;
}

/** An IMAP quoted string (RFC 9051 §4.3); the benchmark's strings have no CR/LF. */
export function quote(s: string): string {
  return `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}
