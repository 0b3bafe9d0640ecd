/**
 * Sequential LMTP deliveries over one connection (RFC 2033): the delivery rate into one
 * mailbox, one transaction at a time, each waiting for the recipient's reply after the data.
 */
import { connect, type Socket } from 'node:net';

class Lines {
  private buf = '';
  private waiters: Array<(line: string) => void> = [];
  private lines: string[] = [];
  constructor(socket: Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.buf += d;
      for (;;) {
        const nl = this.buf.indexOf('\n');
        if (nl < 0) break;
        const line = this.buf.slice(0, nl).replace(/\r$/, '');
        this.buf = this.buf.slice(nl + 1);
        const w = this.waiters.shift();
        if (w) w(line);
        else this.lines.push(line);
      }
    });
  }
  next(): Promise<string> {
    const l = this.lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    return new Promise((resolve) => this.waiters.push(resolve));
  }
  /** A whole reply (continuation lines "250-..." skipped); throws unless its code starts with `expect`. */
  async reply(expect: string): Promise<string> {
    for (;;) {
      const line = await this.next();
      if (line[3] === '-') continue;
      if (!line.startsWith(expect)) throw new Error(`LMTP: expected ${expect}xx, got ${line}`);
      return line;
    }
  }
}

/** Delivers `messages` to `rcpt`; resolves with messages per second. */
export async function deliverAll(port: number, rcpt: string, messages: Iterable<Buffer>): Promise<{ count: number; perSecond: number }> {
  const socket = await new Promise<Socket>((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port }, () => resolve(s));
    s.once('error', reject);
  });
  socket.setNoDelay(true);
  const lines = new Lines(socket);
  await lines.reply('2');
  socket.write('LHLO bench.example\r\n');
  await lines.reply('2');
  const start = performance.now();
  let count = 0;
  for (const raw of messages) {
    socket.write(`MAIL FROM:<sender@bench.example>\r\nRCPT TO:<${rcpt}>\r\n`);
    await lines.reply('2');
    await lines.reply('2');
    socket.write('DATA\r\n');
    await lines.reply('3');
    // Dot-stuffing (RFC 5321 §4.5.2); the corpus has no line starting with a dot, but be exact.
    socket.write(Buffer.concat([Buffer.from(raw.toString('latin1').replace(/^\./gm, '..'), 'latin1'), Buffer.from('.\r\n')]));
    await lines.reply('2');
    count++;
  }
  const ms = performance.now() - start;
  socket.write('QUIT\r\n');
  socket.end();
  return { count, perSecond: (count / ms) * 1000 };
}
