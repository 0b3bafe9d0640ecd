/**
 * Hostile input against the POP3 server, over raw sockets (DESIGN.md invariant 4): every input is
 * bounded and answered with a protocol-correct error, and one bad client never harms another.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { RawPop3, startPop3, USER, PASSWORD } from './pop3-client.js';

test('POP3 answers -ERR to a command line over 255 octets and keeps going (RFC 2449 §4)', async () => {
  const f = await startPop3();
  try {
    const c = await f.connect();
    assert.equal(await c.command(`USER ${'a'.repeat(300)}`), '-ERR Command line too long');
    // 253 octets + CRLF = 255: still accepted.
    assert.equal(await c.command(`USER ${'a'.repeat(248)}`), '+OK Send your password');
    assert.equal(await c.login(USER, PASSWORD), '+OK Maildrop has 0 messages (0 octets)');
    assert.equal(await c.command(`NOOP ${'x'.repeat(5000)}`), '-ERR Command line too long');
    assert.equal(await c.command('NOOP'), '+OK');
  } finally {
    await f.close();
  }
});

test('POP3 closes the connection after ten errors in a row', async () => {
  const f = await startPop3();
  try {
    const c = await f.connect();
    for (let i = 0; i < 9; i++) assert.equal(await c.command('HELO there'), '-ERR Unknown command');
    assert.equal(await c.command('HELO there'), '-ERR Too many errors, closing connection');
    await c.closed();
    // A good command in between resets the count.
    const d = await f.connect();
    for (let i = 0; i < 9; i++) await d.command('BAD');
    assert.equal((await d.multi('CAPA')).status, '+OK Capability list follows');
    assert.equal(await d.command('BAD'), '-ERR Unknown command');
  } finally {
    await f.close();
  }
});

test('POP3 closes a connection that sends an endless line, holding no more than the line limit', async () => {
  const f = await startPop3();
  try {
    const c = await f.connect();
    const other = await f.session();
    for (let i = 0; i < 20; i++) c.write(Buffer.alloc(8192, 0x41));
    assert.equal(await c.line(), '-ERR Line too long, closing connection');
    await c.closed();
    assert.equal(await other.command('NOOP'), '+OK');
  } finally {
    await f.close();
  }
});

test('POP3 bounds a SASL response line and cancels the exchange', async () => {
  const f = await startPop3();
  try {
    const c = await f.connect();
    assert.equal(await c.command('AUTH PLAIN'), '+ ');
    assert.equal(await c.command('A'.repeat(20000)), '-ERR Authentication response too long');
    // Back to commands: the exchange is over.
    assert.equal((await c.multi('CAPA')).status, '+OK Capability list follows');
  } finally {
    await f.close();
  }
});

test('POP3 closes an idle connection without a response and without UPDATE (RFC 1939 §3)', async () => {
  const f = await startPop3({ timeouts: { preAuthIdleMs: 300, idleMs: 1500 } });
  try {
    await f.deliver();
    const before = await f.connect();
    await new Promise((r) => setTimeout(r, 700));
    await before.closed(2000);
    assert.equal(before.pending(), '');

    const c = await f.session();
    assert.equal(await c.command('DELE 1'), '+OK Message 1 deleted');
    // After login the longer timer applies: 700 ms of silence is fine.
    await new Promise((r) => setTimeout(r, 700));
    assert.equal(await c.command('NOOP'), '+OK');
    await c.closed(5000);
    assert.equal(c.pending(), '');
    // The autologout did not enter UPDATE: the message marked deleted is still there.
    assert.equal((await f.entries()).length, 1);
    // And the lock is free again.
    const d = await f.connect();
    assert.match(await d.login(USER, PASSWORD), /^\+OK Maildrop has 1 messages/);
  } finally {
    await f.close();
  }
});

test('POP3 does not count the server\'s own work (a slow password check) as client idleness', async () => {
  // After three failures the Authenticator waits before answering; that wait is longer than the
  // pre-login idle timer, and the client still gets its answer.
  const f = await startPop3({ timeouts: { preAuthIdleMs: 300 } }, { authOptions: { failureDelayMs: 800 } });
  try {
    for (let i = 0; i < 3; i++) {
      const c = await f.connect();
      assert.equal(await c.login(USER, `wrong${i}`), '-ERR [AUTH] Authentication failed');
      c.destroy();
    }
    const c = await f.connect();
    const started = Date.now();
    assert.equal(await c.login(USER, 'wrong again'), '-ERR [AUTH] Authentication failed');
    assert.ok(Date.now() - started >= 700, 'the failure was answered without the delay');
  } finally {
    await f.close();
  }
});

test('POP3 closes a pop3s connection whose TLS handshake does not finish in time', async () => {
  const f = await startPop3({ implicitTls: true, timeouts: { tlsHandshakeMs: 300 } });
  try {
    // A TCP client that never starts TLS: no greeting (nothing can be said in clear on a TLS
    // port), and the connection is closed once the handshake timer fires.
    const c = await RawPop3.connect(f.port, { greeting: false });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(c.isClosed, false);
    await c.closed(3000);
    assert.equal(c.pending(), '');
    // The slot is freed: a real TLS client gets in.
    const d = await f.connect({ tls: true });
    assert.equal((await d.multi('CAPA')).status, '+OK Capability list follows');
  } finally {
    await f.close();
  }
});

test('POP3 limits connections per IP address with -ERR [SYS/TEMP]', async () => {
  const f = await startPop3({ maxConnectionsPerIp: 2 });
  try {
    const a = await f.connect();
    await f.connect();
    // The refusal comes instead of the greeting.
    const refused = await RawPop3.connect(f.port, { greeting: false });
    assert.equal(await refused.line(), '-ERR [SYS/TEMP] Too many connections from your address');
    await refused.closed();
    // Another address is not affected.
    const elsewhere = await f.connect({ localAddress: '127.0.0.2' });
    assert.equal((await elsewhere.multi('CAPA')).status, '+OK Capability list follows');
    // A slot frees when a connection ends.
    assert.equal(await a.command('QUIT'), '+OK Bye');
    await a.closed();
    await new Promise((r) => setTimeout(r, 100));
    const again = await RawPop3.connect(f.port);
    assert.equal((await again.multi('CAPA')).status, '+OK Capability list follows');
    again.destroy();
  } finally {
    await f.close();
  }
});

test('POP3 stops reading from a client that pipelines without reading answers, and serves others', async () => {
  const f = await startPop3();
  try {
    await f.deliver({ subject: 'large', body: `${'y'.repeat(998)}\r\n`.repeat(1000) });
    const greedy = await f.session();
    greedy.raw.pause();
    // Each RETR answers about 1 MB; the client reads none of it and keeps sending.
    const chunk = Buffer.from('RETR 1\r\n'.repeat(100_000));
    const total = 24 * 1024 * 1024;
    for (let sent = 0; sent < total; sent += chunk.length) greedy.write(chunk);
    await new Promise((r) => setTimeout(r, 1500));
    // Most of what the client wrote is still in its own buffer: once its answers stopped
    // draining, the server stopped reading (beyond MAX_BUFFERED_INPUT and the kernel buffers).
    const unsent = greedy.raw.writableLength;
    assert.ok(unsent > 12 * 1024 * 1024, `only ${unsent} octets left unsent: the server kept reading`);
    const other = await f.connect();
    assert.equal(await other.login(USER, 'wrong'), '-ERR [AUTH] Authentication failed');
    assert.equal((await other.multi('CAPA')).status, '+OK Capability list follows');
    greedy.destroy();
  } finally {
    await f.close();
  }
});

test('POP3 limits the total number of connections', async () => {
  const f = await startPop3({ maxConnections: 1 });
  try {
    await f.connect();
    const refused = await RawPop3.connect(f.port, { greeting: false });
    assert.equal(await refused.line(), '-ERR [SYS/TEMP] Too many connections, try again later');
    await refused.closed();
  } finally {
    await f.close();
  }
});
