/**
 * A minimal POP3 client for the benchmark (no TLS, USER/PASS) and the two workloads: whole
 * sessions (connect, USER, PASS, STAT, QUIT) and retrieval (one session, RETR of every message).
 */
import { connect, type Socket } from 'node:net';

class Client {
  private buffer: Buffer = Buffer.alloc(0);
  private wake: (() => void) | null = null;
  private closed = false;

  constructor(private readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.buffer = this.buffer.length === 0 ? d : Buffer.concat([this.buffer, d]);
      this.wake?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
    socket.on('error', () => undefined);
  }

  static open(port: number): Promise<Client> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port }, () => resolve(new Client(s)));
      s.setNoDelay(true);
      s.once('error', reject);
    });
  }

  private async until(find: () => number): Promise<number> {
    for (;;) {
      const i = find();
      if (i >= 0) return i;
      if (this.closed) throw new Error('connection closed');
      await new Promise<void>((r) => (this.wake = r));
      this.wake = null;
    }
  }

  async line(): Promise<string> {
    const i = await this.until(() => this.buffer.indexOf('\r\n'));
    const l = this.buffer.subarray(0, i).toString('latin1');
    this.buffer = this.buffer.subarray(i + 2);
    return l;
  }

  /** The octets of a multi-line body (after the status line), terminator excluded. */
  async body(): Promise<number> {
    const i = await this.until(() => (this.buffer.subarray(0, 3).equals(Buffer.from('.\r\n')) ? -3 : this.buffer.indexOf('\r\n.\r\n')));
    if (i === -3) {
      this.buffer = this.buffer.subarray(3);
      return 0;
    }
    this.buffer = this.buffer.subarray(i + 5);
    return i + 2;
  }

  async ok(command: string | null): Promise<string> {
    if (command !== null) this.socket.write(`${command}\r\n`);
    const l = await this.line();
    if (!l.startsWith('+OK')) throw new Error(`${command ?? 'greeting'}: ${l}`);
    return l;
  }

  end(): void {
    this.socket.destroy();
  }
}

async function login(port: number, user: string, password: string): Promise<Client> {
  const c = await Client.open(port);
  await c.ok(null);
  await c.ok(`USER ${user}`);
  await c.ok(`PASS ${password}`);
  return c;
}

export interface LoadResult {
  elapsedMs: number;
  sessions: number;
  messages: number;
  bytes: number;
}

/** Each user's client runs `perClient` whole sessions back to back; clients run concurrently. */
export async function sessions(port: number, users: string[], password: string, perClient: number): Promise<LoadResult> {
  const start = performance.now();
  await Promise.all(
    users.map(async (user) => {
      for (let i = 0; i < perClient; i++) {
        const c = await login(port, user, password);
        await c.ok('STAT');
        await c.ok('QUIT');
        c.end();
      }
    }),
  );
  return { elapsedMs: performance.now() - start, sessions: users.length * perClient, messages: 0, bytes: 0 };
}

/** Each user's client logs in once and RETRs every message (no DELE), then QUIT. */
export async function retrieve(port: number, users: string[], password: string): Promise<LoadResult> {
  const start = performance.now();
  let messages = 0;
  let bytes = 0;
  await Promise.all(
    users.map(async (user) => {
      const c = await login(port, user, password);
      const stat = await c.ok('STAT');
      const count = Number(stat.split(' ')[1]);
      for (let n = 1; n <= count; n++) {
        await c.ok(`RETR ${n}`);
        // Not "bytes += await ...": that reads bytes before the await and loses other clients' sums.
        const got = await c.body();
        bytes += got;
        messages += 1;
      }
      await c.ok('QUIT');
      c.end();
    }),
  );
  return { elapsedMs: performance.now() - start, sessions: users.length, messages, bytes };
}
