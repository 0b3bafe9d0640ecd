/**
 * SMTP load generator: `concurrency` senders, each opening connections that send `perConnection`
 * messages (pipelined MAIL/RCPT/DATA, RFC 2920) then QUIT, until the duration is over. Counts the
 * messages acknowledged with 250 after the data.
 */
import { connect, type Socket } from 'node:net';

export interface LoadOptions {
  port: number;
  host?: string;
  /** EHLO or LHLO. */
  hello?: 'EHLO' | 'LHLO';
  messageBytes: number;
  concurrency: number;
  perConnection: number;
  durationMs: number;
  /** Recipients used round-robin (one per message). */
  recipients: readonly string[];
}

export interface LoadResult {
  accepted: number;
  failed: number;
  connections: number;
  elapsedMs: number;
  /** CPU time of this (load generator) process during the run, user + system. */
  cpuMs: number;
}

/** A message of about `bytes` octets, already dot-safe (no line starts with "."). */
export function makeBenchMessage(bytes: number, n: number, to: string): Buffer {
  const head = `From: Bench <bench@sender.example>\r\nTo: <${to}>\r\nSubject: bench message ${n}\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-ID: <bench-${n}-${Date.now()}@sender.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n`;
  const line = 'The quick brown fox jumps over the lazy dog, again and again and again.\r\n';
  let body = '';
  while (head.length + body.length < bytes) body += line;
  return Buffer.from(head + body);
}

class Conn {
  private buf = '';
  private waiter: (() => void) | null = null;
  private ended = false;
  constructor(readonly socket: Socket) {
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => {
      this.buf += d.toString('latin1');
      this.waiter?.();
    });
    const end = () => {
      this.ended = true;
      this.waiter?.();
    };
    socket.on('close', end);
    socket.on('error', end);
  }
  /** Reads one reply; returns its code. */
  async reply(): Promise<number> {
    for (;;) {
      let pos = 0;
      for (;;) {
        const nl = this.buf.indexOf('\r\n', pos);
        if (nl === -1) break;
        const line = this.buf.slice(pos, nl);
        pos = nl + 2;
        if (line[3] !== '-') {
          this.buf = this.buf.slice(pos);
          return Number(line.slice(0, 3));
        }
      }
      if (this.ended) throw new Error('connection closed');
      await new Promise<void>((r) => (this.waiter = r));
      this.waiter = null;
    }
  }
}

function open(port: number, host: string): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const s = connect(port, host);
    s.once('connect', () => resolve(new Conn(s)));
    s.once('error', reject);
  });
}

export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const host = o.host ?? '127.0.0.1';
  const hello = o.hello ?? 'EHLO';
  const messages = o.recipients.map((to, i) => {
    const m = makeBenchMessage(o.messageBytes, i, to);
    return Buffer.concat([m, Buffer.from('.\r\n')]);
  });
  let accepted = 0;
  let failed = 0;
  let connections = 0;
  let seq = 0;
  const start = Date.now();
  const cpu0 = process.cpuUsage();
  const deadline = start + o.durationMs;
  await Promise.all(
    Array.from({ length: o.concurrency }, async () => {
      while (Date.now() < deadline) {
        let c: Conn;
        try {
          c = await open(o.port, host);
        } catch {
          failed++;
          await new Promise((r) => setTimeout(r, 10));
          continue;
        }
        connections++;
        try {
          if ((await c.reply()) !== 220) throw new Error('greeting');
          c.socket.write(`${hello} bench.example\r\n`);
          if ((await c.reply()) !== 250) throw new Error('ehlo');
          for (let i = 0; i < o.perConnection && Date.now() < deadline; i++) {
            const k = seq++ % o.recipients.length;
            c.socket.write(`MAIL FROM:<bench@sender.example>\r\nRCPT TO:<${o.recipients[k]}>\r\nDATA\r\n`);
            const a = await c.reply();
            const b = await c.reply();
            const d = await c.reply();
            if (a !== 250 || b !== 250 || d !== 354) {
              failed++;
              c.socket.write('RSET\r\n');
              await c.reply();
              continue;
            }
            c.socket.write(messages[k]!);
            const r = await c.reply();
            if (r === 250) accepted++;
            else failed++;
          }
          c.socket.write('QUIT\r\n');
          await c.reply().catch(() => 0);
        } catch {
          failed++;
        } finally {
          c.socket.destroy();
        }
      }
    }),
  );
  const cpu = process.cpuUsage(cpu0);
  return { accepted, failed, connections, elapsedMs: Date.now() - start, cpuMs: (cpu.user + cpu.system) / 1000 };
}
