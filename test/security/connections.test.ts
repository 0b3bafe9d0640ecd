/**
 * Many hostile connections at once: 2,000 connections spread over IMAP, POP3 and SMTP, each
 * trickling junk, while a normal client must still be served promptly and the servers' memory
 * must stay bounded. The servers run in a child process (server-child.ts) so their memory is
 * measured apart from the test's client sockets. Then the connection limits (per IP, per account,
 * global) and the idle timeouts of each protocol state, with short values set through options.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { createInterface, type Interface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { connectImap } from '../helpers/imap-transcript.js';
import { RawPop3 } from '../pop3/pop3-client.js';
import { SmtpWire } from '../smtp/wire.js';
import { PASSWORD, startServers, USER } from './servers.js';

const CHILD = fileURLToPath(new URL('./server-child.ts', import.meta.url));

interface Child {
  proc: ChildProcess;
  ports: { imap: number; pop3: number; smtp: number };
  request(line: string): Promise<Record<string, number>>;
  vmRss(): number;
}

async function startChild(): Promise<Child> {
  const proc = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', CHILD], {
    env: { ...process.env, FACTEUR_CHILD_OPTIONS: JSON.stringify({ user: USER, password: PASSWORD }) },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines: Interface = createInterface({ input: proc.stdout! });
  const queue: string[] = [];
  const waiters: Array<(l: string) => void> = [];
  lines.on('line', (l) => {
    const w = waiters.shift();
    if (w) w(l);
    else queue.push(l);
  });
  const next = () => new Promise<string>((resolve) => (queue.length > 0 ? resolve(queue.shift()!) : waiters.push(resolve)));
  const first = JSON.parse(await next()) as { ports: Child['ports'] };
  return {
    proc,
    ports: first.ports,
    async request(line) {
      proc.stdin!.write(`${line}\n`);
      return JSON.parse(await next()) as Record<string, number>;
    },
    vmRss() {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${proc.pid}/status`, 'utf8'));
      return Number(m?.[1] ?? 0) * 1024;
    },
  };
}

/** A complete, well-behaved session on each protocol; returns the slowest one's duration. */
async function normalClient(ports: Child['ports']): Promise<number> {
  const times: number[] = [];
  let t0 = Date.now();
  const i = await connectImap(ports.imap);
  await i.expect(/^\* OK /);
  await i.command('a1', `LOGIN "${USER}" "${PASSWORD}"`);
  await i.command('a2', 'SELECT INBOX');
  await i.command('a3', 'LOGOUT');
  i.close();
  times.push(Date.now() - t0);
  t0 = Date.now();
  const p = await RawPop3.connect(ports.pop3);
  assert.match(await p.login(USER, PASSWORD), /^\+OK/);
  assert.match(await p.command('QUIT'), /^\+OK/);
  p.destroy();
  times.push(Date.now() - t0);
  t0 = Date.now();
  const socket = connect({ host: '127.0.0.1', port: ports.smtp });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const s = new SmtpWire(socket);
  await s.expect(220);
  await s.cmd('EHLO client.example.net', 250);
  await s.cmd('MAIL FROM:<sender@elsewhere.test>', 250);
  await s.cmd(`RCPT TO:<${USER}>`, 250);
  await s.cmd('DATA', 354);
  await s.cmd('Subject: still here\r\n\r\nhello\r\n.', 250);
  await s.cmd('QUIT', 221);
  s.close();
  times.push(Date.now() - t0);
  return Math.max(...times);
}

const CONNECTIONS = 2000;
// Spread over 200 loopback addresses so per-IP limits (10-20 per protocol) do not refuse them.
const ADDRESSES = 200;

test('2,000 connections trickling junk over IMAP, POP3 and SMTP: a normal client is still served promptly, server memory stays bounded', async () => {
  const child = await startChild();
  const sockets: Socket[] = [];
  let trickle: NodeJS.Timeout | undefined;
  try {
    await normalClient(child.ports); // warm up (JIT, first scrypt, first delivery)
    const unloaded = Math.max(await normalClient(child.ports), await normalClient(child.ports));
    const base = await child.request('mem');
    const baseRss = child.vmRss();
    const ports = [child.ports.imap, child.ports.pop3, child.ports.smtp];
    let refused = 0;
    for (let batch = 0; batch < CONNECTIONS; batch += 100) {
      await Promise.all(
        Array.from({ length: 100 }, (_, k) => {
          const n = batch + k;
          const socket = connect({ host: '127.0.0.1', port: ports[n % 3]!, localAddress: `127.0.0.${2 + (Math.floor(n / 3) % ADDRESSES)}` });
          socket.on('error', () => {});
          socket.on('close', () => refused++);
          sockets.push(socket);
          return new Promise<void>((resolve) => socket.once('connect', () => resolve()).once('error', () => resolve()));
        }),
      );
    }
    // Every 200 ms a tenth of the connections sends one more byte of a line that never ends
    // (the slowloris pattern: each byte resets the idle timer, the line never completes).
    let tick = 0;
    trickle = setInterval(() => {
      tick++;
      for (let n = tick % 10; n < sockets.length; n += 10) if (!sockets[n]!.destroyed) sockets[n]!.write('\x01');
    }, 200);
    await new Promise((r) => setTimeout(r, 3000));
    const open = sockets.filter((s) => !s.destroyed).length;
    // All of them are held open (nothing over a limit): this is the load the servers carry.
    assert.ok(open >= CONNECTIONS * 0.99, `${open} of ${CONNECTIONS} connections open (${refused} closed)`);
    const took = await normalClient(child.ports);
    // Promptly: compared with the same client just before, on the same (shared, 2-core, often
    // loaded) machine. Unloaded it takes 0.1-0.3 s, and 0.6-0.9 s with the 2,000 connections;
    // with other test processes running (load average 20) both grow several times. The bound,
    // 3 s or four times the time without junk plus 1 s, whichever is more, fails when the
    // servers are starved (a session spinning on its trickled bytes), not when the machine is busy.
    const bound = Math.max(3000, 4 * unloaded + 1000);
    assert.ok(took < bound, `normal client took ${took} ms with ${open} junk connections (${unloaded} ms without; bound ${bound} ms)`);
    const loaded = await child.request('mem');
    const loadedRss = child.vmRss();
    const perConnection = (loadedRss - baseRss) / CONNECTIONS;
    // Measured on the reference machine (5 runs): 13-30 KiB of RSS (it depends on how much the
    // allocator had already reserved at the baseline) and 4.6 KiB of heap per connection held
    // open (socket, session, receiver, timers; e.g. RSS 154 -> 213 MiB for 2,000).
    // The bound, 96 KiB of RSS and 32 KiB of heap per connection, is about three and seven
    // times that: it tolerates allocator noise and fails if a session kept its trickled bytes
    // more than once or grew with them.
    assert.ok(perConnection < 96 * 1024, `RSS grew by ${(perConnection / 1024).toFixed(1)} KB per connection (${baseRss} -> ${loadedRss})`);
    assert.ok((loaded.heapUsed! - base.heapUsed!) / CONNECTIONS < 32 * 1024, `heap grew ${loaded.heapUsed! - base.heapUsed!} bytes`);
    console.log(`# ${open} connections: RSS ${(baseRss / 2 ** 20).toFixed(1)} -> ${(loadedRss / 2 ** 20).toFixed(1)} MiB (${(perConnection / 1024).toFixed(1)} KiB each), heap ${(base.heapUsed! / 2 ** 20).toFixed(1)} -> ${(loaded.heapUsed! / 2 ** 20).toFixed(1)} MiB, normal client ${took} ms (${unloaded} ms without)`);
  } finally {
    if (trickle) clearInterval(trickle);
    for (const s of sockets) s.destroy();
    await new Promise((r) => setTimeout(r, 500));
    child.proc.stdin!.write('exit\n');
    const code = await new Promise<number | null>((resolve) => child.proc.once('exit', resolve));
    assert.equal(code, 0, 'child servers closed and the store passed its consistency check');
  }
});

test('connection limits: per IP and in total on each protocol, per account on IMAP; other clients are still served', async () => {
  const s = await startServers({
    imap: { maxConnectionsPerIp: 3, maxConnections: 6, maxConnectionsPerAccount: 2 },
    pop3: { maxConnectionsPerIp: 3, maxConnections: 6 },
    smtp: { limits: { maxConnectionsPerIp: 3, maxConnections: 6 } },
  });
  const raw: Socket[] = [];
  const open = async (port: number, localAddress: string): Promise<{ socket: Socket; first: Promise<string> }> => {
    const socket = connect({ host: '127.0.0.1', port, localAddress });
    socket.on('error', () => {});
    raw.push(socket);
    const first = new Promise<string>((resolve) => {
      let got = '';
      socket.on('data', (d: Buffer) => {
        got += d.toString('latin1');
        if (got.includes('\r\n')) resolve(got.slice(0, got.indexOf('\r\n')));
      });
      socket.on('close', () => resolve(got));
    });
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    return { socket, first };
  };
  try {
    const protocols = [
      { port: s.ports.imap, ok: /^\* OK /, refused: /^\* BYE \[UNAVAILABLE\]/ },
      { port: s.ports.pop3, ok: /^\+OK /, refused: /^-ERR \[SYS\/TEMP\]|^-ERR /},
      { port: s.ports.smtp, ok: /^220 /, refused: /^421 / },
    ];
    for (const p of protocols) {
      // Per IP: the 4th connection from 127.0.0.20 is refused with the protocol's words.
      for (let i = 0; i < 3; i++) assert.match(await (await open(p.port, '127.0.0.20')).first, p.ok);
      assert.match(await (await open(p.port, '127.0.0.20')).first, p.refused);
      // Global: 3 more from other addresses fill the listener; the 7th is refused whatever its address.
      for (let i = 0; i < 3; i++) assert.match(await (await open(p.port, `127.0.0.${21 + i}`)).first, p.ok);
      assert.match(await (await open(p.port, '127.0.0.30')).first, p.refused);
    }
    for (const r of raw) r.destroy();
    raw.length = 0;
    await new Promise((r) => setTimeout(r, 200));
    // Per account (IMAP): a third session of the same account is refused at login.
    const a = await s.imapLogin();
    const b = await s.imapLogin();
    const c = await s.imap();
    c.send(`a1 LOGIN "${USER}" "${PASSWORD}"`);
    assert.match(await c.readLine(), /^a1 NO \[LIMIT\]/);
    a.close();
    b.close();
    await new Promise((r) => setTimeout(r, 200));
    await s.stillServes();
  } finally {
    for (const r of raw) r.destroy();
    await s.close();
  }
});

test('idle timeouts per protocol state close silent and trickling-but-idle clients (short values through options)', async () => {
  const s = await startServers({
    imap: { idleTimeoutMs: 400 },
    pop3: { timeouts: { preAuthIdleMs: 400, idleMs: 600 } },
    smtp: { limits: { commandTimeoutMs: 400, dataTimeoutMs: 400 } },
  });
  try {
    const started = Date.now();
    // IMAP, authenticated: BYE then close (RFC 9051 §5.4 autologout).
    const i = await s.imapLogin();
    await i.expect(/^\* BYE /, 3000);
    await i.expectClosed();
    // POP3, before and after login: closed without UPDATE (RFC 1939 §3).
    const p1 = await s.pop3();
    await p1.closed(3000);
    const p2 = await s.pop3();
    assert.match(await p2.login(USER, PASSWORD), /^\+OK/);
    await p2.closed(3000);
    // SMTP, waiting for a command and inside DATA: 421 then close (RFC 5321 §4.5.3.2).
    const c1 = await s.smtp();
    assert.equal((await c1.read(3000)).code, 421);
    await c1.closed();
    const c2 = await s.smtp();
    await c2.cmd('EHLO client.example.net', 250);
    await c2.cmd('MAIL FROM:<a@elsewhere.test>', 250);
    await c2.cmd(`RCPT TO:<${USER}>`, 250);
    await c2.cmd('DATA', 354);
    c2.write('Subject: never finished\r\n');
    assert.equal((await c2.read(3000)).code, 421);
    await c2.closed();
    assert.ok(Date.now() - started < 15_000);
    assert.equal(await s.totalMessages(), 0, 'an unfinished DATA is not delivered');
    await s.stillServes();
  } finally {
    await s.close();
  }
});

test('SMTP drops a slow sender that trickles a command byte by byte past the command timeout', async () => {
  const s = await startServers({ smtp: { limits: { commandTimeoutMs: 500 } } });
  try {
    const c = await s.smtp();
    await c.cmd('EHLO client.example.net', 250);
    const started = Date.now();
    // One byte every 100 ms: each resets an inactivity timer, none completes the line.
    const trickle = setInterval(() => {
      if (!c.ended) c.write('x');
    }, 100);
    try {
      const r = await c.read(5000);
      assert.equal(r.code, 421);
      await c.closed();
    } finally {
      clearInterval(trickle);
    }
    const took = Date.now() - started;
    assert.ok(took >= 450 && took < 3000, `dropped after ${took} ms`);
    // A client that keeps sending complete commands is not affected by the same timeout.
    const busy = await s.smtp();
    for (let i = 0; i < 8; i++) {
      await busy.cmd('NOOP', 250);
      await new Promise((r) => setTimeout(r, 100));
    }
    await busy.cmd('QUIT', 221);
    await s.stillServes();
  } finally {
    await s.close();
  }
});

test('IMAP drops a client that trickles bytes before login past the pre-login timeout; after login only inactivity counts', async () => {
  const s = await startServers({ imap: { preAuthTimeoutMs: 500 } });
  try {
    const t = await s.imap();
    const started = Date.now();
    const trickle = setInterval(() => {
      if (!t.isClosed) t.sendRaw('x');
    }, 100);
    try {
      await t.expect(/^\* BYE /, 5000);
      await t.expectClosed();
    } finally {
      clearInterval(trickle);
    }
    const took = Date.now() - started;
    assert.ok(took >= 450 && took < 3000, `dropped after ${took} ms`);
    // Complete commands before login keep the session (each restarts the deadline)...
    const u = await s.imap();
    for (let i = 0; i < 8; i++) {
      await u.command(`n${i}`, 'NOOP');
      await new Promise((r) => setTimeout(r, 100));
    }
    // ...and after login the pre-login deadline no longer applies.
    await u.command('l1', `LOGIN "${USER}" "${PASSWORD}"`);
    await new Promise((r) => setTimeout(r, 800));
    await u.command('l2', 'NOOP');
    await s.stillServes();
  } finally {
    await s.close();
  }
});

test('IMAP: a LOGIN the server takes longer to check than the pre-login timeout is answered, not cut off', async () => {
  const s = await startServers({ imap: { preAuthTimeoutMs: 300 } });
  // The real authenticator, 1 s late: a busy machine, or a queue at the password hash.
  const real = s.ctx.auth;
  s.ctx.auth = {
    ...real,
    verifyPassword: async (user, password, meta) => {
      await new Promise((r) => setTimeout(r, 1000));
      return real.verifyPassword(user, password, meta);
    },
  };
  try {
    const t = await s.imap();
    await t.command('l1', `LOGIN "${USER}" "${PASSWORD}"`);
    await t.command('n1', 'NOOP');
    // A client that stalls while the server waits for it (an AUTHENTICATE exchange) is still cut.
    const u = await s.imap();
    u.sendRaw('a1 AUTHENTICATE PLAIN\r\n');
    await u.expect(/^\+/, 2000);
    await u.expect(/^\* BYE /, 3000);
    await u.expectClosed();
  } finally {
    await s.close();
  }
});

test('POP3 drops a client that trickles bytes before login past the pre-login timeout; after login only inactivity counts', async () => {
  const s = await startServers({ pop3: { timeouts: { preAuthIdleMs: 500 } } });
  try {
    const p = await s.pop3();
    const started = Date.now();
    const trickle = setInterval(() => {
      if (!p.isClosed) p.write('x');
    }, 100);
    try {
      await p.closed(5000); // RFC 1939 §3: closed without a response
    } finally {
      clearInterval(trickle);
    }
    const took = Date.now() - started;
    assert.ok(took >= 450 && took < 3000, `dropped after ${took} ms`);
    const q = await s.pop3();
    for (let i = 0; i < 8; i++) {
      assert.match((await q.multi('CAPA')).status, /^\+OK/);
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(await q.login(USER, PASSWORD), /^\+OK/);
    await new Promise((r) => setTimeout(r, 800));
    assert.match(await q.command('STAT'), /^\+OK/);
    assert.match(await q.command('QUIT'), /^\+OK/); // one POP3 session per account ([IN-USE])
    await s.stillServes();
  } finally {
    await s.close();
  }
});
