/**
 * Listeners behind a TCP load balancer (src/net/proxy-listener.ts), with raw sockets that play
 * the balancer: they send a PROXY v1 or v2 header, then speak the protocol. What the servers see
 * must be the client of the header: the Received field and SPF of port 25, per-IP connection
 * limits, per-IP authentication limits, the "same host" rule for plaintext passwords; and the
 * header must come first, well formed, bounded, on time, from a trusted balancer.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { connect, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { pino } from 'pino';
import { encodeProxyHeader, type ProxyHeader } from '../../src/net/proxy-protocol.js';
import { createImapServer } from '../../src/imap/server/server.js';
import { createPop3Server } from '../../src/pop3/server/server.js';
import { createHttpServer } from '../../src/http/server.js';
import { defaultConfig } from '../../src/config/config.js';
import { makeMessage } from '../helpers/messages.js';
import { makeTestContext, TEST_HOSTNAME, type TestContext } from '../helpers/context.js';
import { ImapTranscript } from '../helpers/imap-transcript.js';
import { SmtpWire } from '../smtp/wire.js';
import { dotStuff, startServer } from '../smtp/harness.js';
import { createMockResolver } from '../smtp/mock-dns.js';

const LOOPBACK = { trusted: ['127.0.0.0/8'] };

function header(version: 1 | 2, client: string, clientPort = 40000, server = '198.51.100.1', serverPort = 25): Buffer {
  const family = client.includes(':') ? 'IPv6' : 'IPv4';
  const h: ProxyHeader = {
    version,
    command: 'proxy',
    family,
    source: { address: client, port: clientPort },
    destination: { address: family === 'IPv4' ? server : '2001:db8::1', port: serverPort },
  };
  return encodeProxyHeader(version, h);
}

async function rawConnect(port: number): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return socket;
}

/** Connects as the balancer: the header (and optionally more bytes) in one write. */
async function viaProxy(port: number, head: Buffer, more: Buffer = Buffer.alloc(0)): Promise<Socket> {
  const socket = await rawConnect(port);
  socket.write(Buffer.concat([head, more]));
  return socket;
}

/** Everything the server sends until it closes the connection (fails if it stays open). */
function untilClosed(socket: Socket, timeoutMs = 8000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const t = setTimeout(() => reject(new Error('connection still open')), timeoutMs);
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(t);
      resolve(Buffer.concat(chunks));
    });
  });
}

/** TLS over a balancer connection, the header in the same write as the ClientHello. */
async function tlsViaProxy(port: number, head: Buffer): Promise<TLSSocket> {
  const raw = await rawConnect(port);
  let first = true;
  const carrier = new Duplex({
    write(chunk: Buffer, _enc, cb) {
      raw.write(first ? Buffer.concat([head, chunk]) : chunk, cb);
      first = false;
    },
    read() {},
    final(cb) {
      raw.end();
      cb();
    },
  });
  raw.on('data', (d: Buffer) => carrier.push(d));
  raw.on('end', () => carrier.push(null));
  raw.on('error', (err) => carrier.destroy(err));
  const secure = tlsConnect({ socket: carrier, servername: TEST_HOSTNAME, rejectUnauthorized: false });
  await new Promise<void>((resolve, reject) => {
    secure.once('secureConnect', resolve);
    secure.once('error', reject);
  });
  secure.on('close', () => raw.destroy());
  return secure;
}

test('PROXY v1 and v2 on port 25: the Received field and SPF see the client of the header, not the balancer', async () => {
  // SPF passes only for the clients of the headers: the real peer, 127.0.0.1, would fail.
  const resolver = createMockResolver({ txt: { 'sender.example': 'v=spf1 ip4:192.0.2.77 ip6:2001:db8:77::/48 -all' } });
  const h = await startServer({ resolver, proxyProtocol: LOOPBACK });
  try {
    const bob = await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const clients: Array<[1 | 2, string, RegExp]> = [
      [1, '192.0.2.77', /^Received: from mx\.sender\.example \(\[192\.0\.2\.77\]\)/m],
      [2, '2001:db8:77::1', /^Received: from mx\.sender\.example \(\[IPv6:2001:db8:77::1\]\)/m],
    ];
    for (const [version, client] of clients) {
      const c = new SmtpWire(await viaProxy(h.port, header(version, client)));
      await c.expect(220);
      await c.cmd('EHLO mx.sender.example', 250);
      await c.cmd('MAIL FROM:<alice@sender.example>', 250);
      await c.cmd('RCPT TO:<bob@example.com>', 250);
      await c.cmd('DATA', 354);
      c.write(dotStuff(makeMessage({ from: 'alice@sender.example', to: 'bob@example.com', subject: `via balancer v${version}`, body: 'hi\r\n' })));
      await c.expect(250);
      c.close();
    }
    const stored = await h.messages(bob.id);
    assert.equal(stored.length, 2);
    for (const [i, [, , received]] of clients.entries()) {
      const text = stored[i]!.toString('latin1');
      assert.match(text, received);
      assert.match(text, /spf=pass [^;]*smtp\.mailfrom=alice@sender\.example/);
      assert.doesNotMatch(text, /127\.0\.0\.1/);
    }
  } finally {
    await h.close();
  }
});

test('PROXY v2 on port 25: connection limits count the client of the header; pipelined bytes after the header are kept', async () => {
  const h = await startServer({ proxyProtocol: LOOPBACK, limits: { maxConnectionsPerIp: 2 } });
  const open: SmtpWire[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const c = new SmtpWire(await viaProxy(h.port, header(2, '203.0.113.5', 40000 + i)));
      await c.expect(220);
      open.push(c);
    }
    // A third connection of the same client is over its limit...
    const third = new SmtpWire(await viaProxy(h.port, header(2, '203.0.113.5', 40002)));
    await third.expect(421);
    third.close();
    // ...another client behind the same balancer is not, and an IPv6 one neither. The command
    // sent in the same write as the header is answered after the greeting.
    const other = new SmtpWire(await viaProxy(h.port, header(2, '203.0.113.6'), Buffer.from('NOOP\r\n')));
    await other.expect(220);
    await other.expect(250);
    open.push(other);
    const v6 = new SmtpWire(await viaProxy(h.port, header(2, '2001:db8:5::9')));
    await v6.expect(220);
    open.push(v6);
  } finally {
    for (const c of open) c.close();
    await h.close();
  }
});

test('PROXY listener: malformed, oversized, missing and late headers close the connection before any byte is sent', async () => {
  const h = await startServer({ proxyProtocol: { ...LOOPBACK, headerTimeoutMs: 300 } });
  try {
    const cases: Array<[string, Buffer]> = [
      ['an SMTP client talking first', Buffer.from('EHLO x\r\n')],
      ['v1 with a bad address', Buffer.from('PROXY TCP4 192.0.2.300 198.51.100.1 1 25\r\n')],
      ['v1 without CRLF in 107 bytes', Buffer.from(`PROXY TCP4 ${'1'.repeat(120)}`)],
      ['v2 announcing 64 KiB', Buffer.concat([encodeProxyHeader(2, { version: 2, command: 'local' }).subarray(0, 14), Buffer.from([0xff, 0xff])])],
      ['v2 UNIX socket', (() => {
        const b = encodeProxyHeader(2, { version: 2, command: 'local' });
        b[12] = 0x21;
        b[13] = 0x31;
        return b;
      })()],
      ['half a header, then silence', Buffer.from('PROXY TCP4 192.0.2.1')],
      ['nothing at all', Buffer.alloc(0)],
    ];
    for (const [name, bytes] of cases) {
      const socket = await rawConnect(h.port);
      if (bytes.length > 0) socket.write(bytes);
      const got = await untilClosed(socket);
      assert.equal(got.length, 0, `${name}: got ${JSON.stringify(got.toString('latin1'))}`);
    }
    // The listener still serves a well-behaved balancer afterwards.
    const ok = new SmtpWire(await viaProxy(h.port, header(1, '192.0.2.1')));
    await ok.expect(220);
    ok.close();
  } finally {
    await h.close();
  }
});

test('PROXY listener: a source outside proxy_trusted is refused, with or without a header', async () => {
  const h = await startServer({ proxyProtocol: { trusted: ['10.0.0.0/8', '2001:db8::/32'] } });
  try {
    for (const bytes of [header(1, '192.0.2.1'), header(2, '192.0.2.1'), Buffer.alloc(0)]) {
      const socket = await rawConnect(h.port);
      if (bytes.length > 0) socket.write(bytes);
      const got = await untilClosed(socket);
      assert.equal(got.length, 0);
    }
  } finally {
    await h.close();
  }
});

test('A listener without proxy_protocol takes a PROXY header for protocol bytes: refused as a command, no address taken', async () => {
  const h = await startServer({});
  try {
    const socket = await rawConnect(h.port);
    const c = new SmtpWire(socket);
    await c.expect(220);
    c.write(header(1, '192.0.2.1'));
    await c.expect(500);
    await c.cmd('EHLO x', 250);
    c.close();
  } finally {
    await h.close();
  }
});

async function imapsFixture(ctx: TestContext) {
  const server = createImapServer(ctx, { implicitTls: true, maxConnectionsPerIp: 1, proxyProtocol: LOOPBACK });
  const port = await server.listen('127.0.0.1', 0);
  return { server, port };
}

test('PROXY on implicit TLS (imaps): the header comes in clear before the handshake; the TLS session sees the client of the header', async () => {
  const ctx = await makeTestContext();
  const { server, port } = await imapsFixture(ctx);
  const sockets: TLSSocket[] = [];
  try {
    const a = await tlsViaProxy(port, header(2, '192.0.2.10', 1000, '198.51.100.1', 993));
    sockets.push(a);
    const ta = new ImapTranscript(a);
    await ta.expect(/^\* OK /);
    // The same client again: over its limit of one (the refusal is said inside TLS).
    const b = await tlsViaProxy(port, header(1, '192.0.2.10', 1001, '198.51.100.1', 993));
    sockets.push(b);
    await new ImapTranscript(b).expect(/^\* BYE \[UNAVAILABLE\] Too many connections/);
    // Another client behind the same balancer is served.
    const c = await tlsViaProxy(port, header(2, '192.0.2.11', 1002, '198.51.100.1', 993));
    sockets.push(c);
    const tc = new ImapTranscript(c);
    await tc.expect(/^\* OK /);
    await tc.command('a1', 'CAPABILITY');
  } finally {
    for (const s of sockets) s.destroy();
    await server.close(100);
    await ctx.cleanup();
  }
});

test('PROXY on IMAP: authentication failure limits count the client of the header', async () => {
  const ctx = await makeTestContext({ authOptions: { maxFailuresPerIp: 2, failureDelayMs: 0 } });
  await ctx.addUser('alice@example.test', 'correct horse');
  const server = createImapServer(ctx, { implicitTls: false, allowPlaintextAuth: true, proxyProtocol: LOOPBACK });
  const port = await server.listen('127.0.0.1', 0);
  const open = async (client: string) => {
    const t = new ImapTranscript(await viaProxy(port, header(1, client, 2000, '198.51.100.1', 143)));
    await t.expect(/^\* OK /);
    return t;
  };
  try {
    const attacker = await open('203.0.113.66');
    await attacker.command('a1', 'LOGIN "alice@example.test" "wrong one"', 'NO');
    await attacker.command('a2', 'LOGIN "nobody@example.test" "wrong two"', 'NO');
    // The attacker's address is now blocked, even with the right password...
    const blocked = await attacker.command('a3', 'LOGIN "alice@example.test" "correct horse"', 'NO');
    assert.match(blocked.line, /UNAVAILABLE|try again later|too many/i);
    // ...while the real owner, another client of the same balancer, logs in.
    const owner = await open('198.51.100.200');
    await owner.command('b1', 'LOGIN "alice@example.test" "correct horse"', 'OK');
    attacker.close();
    owner.close();
  } finally {
    await server.close(100);
    await ctx.cleanup();
  }
});

test('PROXY on POP3: "same host" means the header\'s client and destination are one address', async () => {
  const ctx = await makeTestContext();
  await ctx.addUser('bob@example.com', 'pw-bob-123456');
  const server = createPop3Server(ctx, { implicitTls: false, proxyProtocol: LOOPBACK });
  const port = await server.listen('127.0.0.1', 0);
  const session = async (client: string, to: string) => {
    const socket = await viaProxy(port, header(1, client, 3000, to, 110), Buffer.from('USER bob@example.com\r\nPASS pw-bob-123456\r\nQUIT\r\n'));
    return (await untilClosed(socket)).toString('latin1');
  };
  try {
    // From another host, without TLS: no password in clear (DESIGN.md invariant 5).
    const remote = await session('192.0.2.50', '192.0.2.1');
    assert.doesNotMatch(remote, /^\+OK.*(logged in|maildrop)/im);
    assert.match(remote, /^-ERR/m);
    // A client on the balancer's own host (source = destination): allowed.
    const local = await session('192.0.2.1', '192.0.2.1');
    assert.match(local, /^\+OK [^\r\n]*\r\n\+OK[^\r\n]*\r\n\+OK/);
  } finally {
    await server.close(100);
    await ctx.cleanup();
  }
});

test('PROXY on HTTP: a request in the same packet as the header is served; LOCAL (health checks) keeps the real address', async () => {
  const ctx = await makeTestContext();
  const config = defaultConfig(TEST_HOSTNAME);
  const server = createHttpServer({ ...ctx, log: pino({ level: 'silent' }) }, { name: 'http', implicitTls: false, config, proxyProtocol: LOOPBACK });
  const port = await server.listen('127.0.0.1', 0);
  try {
    for (const head of [header(2, '192.0.2.8', 4000, '198.51.100.1', 80), encodeProxyHeader(2, { version: 2, command: 'local' }), encodeProxyHeader(1, { version: 1, command: 'local' })]) {
      const socket = await viaProxy(port, head, Buffer.from('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
      const answer = (await untilClosed(socket)).toString('latin1');
      assert.match(answer, /^HTTP\/1\.1 200 /);
    }
  } finally {
    await server.close(100);
    await ctx.cleanup();
  }
});
