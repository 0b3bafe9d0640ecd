/**
 * POP3 protocol behaviour over raw sockets: RFC 1939 commands, RFC 2449 CAPA and response codes,
 * RFC 5034 SASL, RFC 2595 STLS, pop3s, the plaintext policy, LOGIN-DELAY and EXPIRE.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { deriveScram } from '../../src/auth/password.js';
import { RawPop3, startPop3, USER, PASSWORD } from './pop3-client.js';

const NO_DELAY = { authOptions: { failureDelayMs: 0 } };

test('POP3 greets, lists capabilities and runs a full USER/PASS session (RFC 1939, RFC 2449)', async () => {
  const f = await startPop3({}, NO_DELAY);
  try {
    await f.deliver({ subject: 'first', body: 'one\r\n' });
    await f.deliver({ subject: 'second', body: 'two\r\nlines\r\n' });
    const sizes = (await f.entries()).map((e) => e.size);
    const total = sizes.reduce((a, b) => a + b, 0);
    const c = await f.connect();
    const capa = await c.multi('CAPA');
    assert.equal(capa.status, '+OK Capability list follows');
    assert.deepEqual(capa.lines, [
      'TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING', 'USER', 'SASL SCRAM-SHA-256 PLAIN LOGIN', 'STLS',
      'IMPLEMENTATION Facteur',
    ]);
    assert.equal(await c.command(`USER ${USER}`), '+OK Send your password');
    assert.equal(await c.command(`PASS ${PASSWORD}`), `+OK Maildrop has 2 messages (${total} octets)`);
    assert.equal(await c.command('STAT'), `+OK 2 ${total}`);
    assert.deepEqual(await c.multi('LIST'), { status: `+OK 2 messages (${total} octets)`, lines: [`1 ${sizes[0]}`, `2 ${sizes[1]}`] });
    assert.equal(await c.command('LIST 2'), `+OK 2 ${sizes[1]}`);
    assert.equal(await c.command('LIST 3'), '-ERR No such message');
    assert.equal(await c.command('NOOP'), '+OK');
    // After login CAPA shows no USER, SASL or STLS (RFC 2449 §5).
    assert.deepEqual((await c.multi('CAPA')).lines, ['TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING', 'IMPLEMENTATION Facteur']);
    assert.equal(await c.command('DELE 1'), '+OK Message 1 deleted');
    assert.equal(await c.command('DELE 1'), '-ERR Message 1 is deleted');
    assert.equal(await c.command('RETR 1'), '-ERR Message 1 is deleted');
    assert.equal(await c.command('STAT'), `+OK 1 ${sizes[1]}`);
    assert.deepEqual((await c.multi('LIST')).lines, [`2 ${sizes[1]}`]);
    assert.equal(await c.command('RSET'), `+OK Maildrop has 2 messages (${total} octets)`);
    assert.equal(await c.command('STAT'), `+OK 2 ${total}`);
    assert.equal(await c.command('QUIT'), '+OK Bye, 0 messages removed');
    await c.closed();
    assert.equal((await f.entries()).length, 2);
  } finally {
    await f.close();
  }
});

test('POP3 RETR sends the exact message, byte-stuffed, with bare LF turned into CRLF (RFC 1939 §3)', async () => {
  const f = await startPop3();
  try {
    const raw = Buffer.from('Subject: dots\nFrom: a@example.org\n\n.leading dot\n..two\nmiddle . dot\r\n.\nend');
    await f.deliver(raw);
    const c = await f.session();
    c.send('RETR 1');
    assert.equal(await c.line(), `+OK ${raw.length} octets`);
    assert.equal(
      await c.multilineRaw(),
      'Subject: dots\r\nFrom: a@example.org\r\n\r\n..leading dot\r\n...two\r\nmiddle . dot\r\n..\r\nend\r\n.\r\n',
    );
    // TOP 1 1: header, blank line, one body line; the response is stuffed the same way.
    c.send('TOP 1 1');
    assert.equal(await c.line(), '+OK Top of message follows');
    assert.equal(await c.multilineRaw(), 'Subject: dots\r\nFrom: a@example.org\r\n\r\n..leading dot\r\n.\r\n');
    c.send('TOP 1 0');
    await c.line();
    assert.equal(await c.multilineRaw(), 'Subject: dots\r\nFrom: a@example.org\r\n\r\n.\r\n');
    assert.equal(await c.command('TOP 2 0'), '-ERR No such message');
  } finally {
    await f.close();
  }
});

test('POP3 RETR streams a large message completely to a slow reader', async () => {
  const f = await startPop3();
  try {
    const line = 'x'.repeat(998);
    const body = Array.from({ length: 6000 }, (_, i) => (i % 100 === 0 ? `.${line.slice(1)}` : line)).join('\r\n') + '\r\n';
    const entry = await f.deliver({ subject: 'big', body });
    assert.ok(entry.size > 5_000_000);
    const c = await f.session();
    c.raw.pause();
    c.send('RETR 1');
    await new Promise((r) => setTimeout(r, 300));
    c.raw.resume();
    const status = await c.line();
    assert.equal(status, `+OK ${entry.size} octets`);
    const lines = await c.multiline();
    const original = (await f.ctx.store.readBlob(entry.blobHash)).toString('latin1');
    assert.equal(lines.join('\r\n') + '\r\n', original);
    assert.equal(await c.command('NOOP'), '+OK');
  } finally {
    await f.close();
  }
});

test('POP3 answers -ERR to commands outside their state and to unknown or malformed commands', async () => {
  const f = await startPop3();
  try {
    const c = await f.connect();
    assert.equal(await c.command('STAT'), '-ERR STAT is not valid in this state');
    assert.equal(await c.command('PASS x'), '-ERR USER first');
    assert.equal(await c.command('APOP bob 0123456789abcdef0123456789abcdef'), '-ERR Unknown command');
    assert.equal(await c.command('RETR'), '-ERR RETR needs a message number');
    assert.equal(await c.login(USER, PASSWORD), '+OK Maildrop has 0 messages (0 octets)');
    assert.equal(await c.command('USER x'), '-ERR USER is not valid in this state');
    assert.equal(await c.command('STLS'), '-ERR STLS is not valid in this state');
    assert.equal(await c.command('RETR 0'), '-ERR No such message');
    assert.equal(await c.command('TOP 1'), '-ERR TOP needs a message number and a line count');
    assert.equal(await c.command('XTND XMIT'), '-ERR Unknown command');
  } finally {
    await f.close();
  }
});

test('POP3 refuses a wrong password with -ERR [AUTH] and closes after repeated failures', async () => {
  const f = await startPop3({}, NO_DELAY);
  try {
    const c = await f.connect();
    assert.equal(await c.login(USER, 'wrong'), '-ERR [AUTH] Authentication failed');
    assert.equal(await c.login('nobody@example.com', 'wrong'), '-ERR [AUTH] Authentication failed');
    assert.equal(await c.login(USER, 'wrong again'), '-ERR [AUTH] Authentication failed, closing connection');
    await c.closed();
    const d = await f.connect();
    assert.equal(await d.login(USER, PASSWORD), '+OK Maildrop has 0 messages (0 octets)');
  } finally {
    await f.close();
  }
});

test('POP3 login failures go through the Authenticator throttling: -ERR [AUTH] once blocked', async () => {
  const f = await startPop3({}, { authOptions: { failureDelayMs: 0, maxFailuresPerAccount: 2 } });
  try {
    for (let i = 0; i < 2; i++) {
      const c = await f.connect();
      assert.equal(await c.login(USER, `wrong${i}`), '-ERR [AUTH] Authentication failed');
      c.destroy();
    }
    const c = await f.connect();
    assert.equal(await c.login(USER, PASSWORD), '-ERR [AUTH] Too many failed logins, try again later');
  } finally {
    await f.close();
  }
});

test('POP3 tells a disabled account apart only after its password verified, with -ERR [SYS/PERM]', async () => {
  const f = await startPop3({}, NO_DELAY);
  try {
    await f.ctx.store.updateAccount(f.account.id, { disabled: true });
    const c = await f.connect();
    assert.equal(await c.login(USER, 'wrong'), '-ERR [AUTH] Authentication failed');
    assert.equal(await c.login(USER, PASSWORD), '-ERR [SYS/PERM] Account disabled, contact your administrator');
  } finally {
    await f.close();
  }
});

test('POP3 refuses plaintext USER/PASS from another host before STLS and offers only SCRAM (invariant 5)', async () => {
  const f = await startPop3({}, NO_DELAY);
  try {
    // 127.0.0.2 -> 127.0.0.1: a client whose address differs from the server's.
    const c = await f.connect({ localAddress: '127.0.0.2' });
    const capa = await c.multi('CAPA');
    assert.ok(!capa.lines.includes('USER'), capa.lines.join(','));
    assert.ok(capa.lines.includes('SASL SCRAM-SHA-256'));
    assert.ok(capa.lines.includes('STLS'));
    assert.equal(await c.command(`USER ${USER}`), '-ERR Plaintext authentication is not allowed without TLS, use STLS first');
    assert.equal(await c.command('AUTH PLAIN'), '-ERR Unsupported authentication mechanism');
    assert.equal(await c.startTls(), '+OK Begin TLS negotiation');
    const after = await c.multi('CAPA');
    assert.ok(after.lines.includes('USER'));
    assert.ok(after.lines.includes('SASL SCRAM-SHA-256 PLAIN LOGIN'));
    assert.ok(!after.lines.includes('STLS'));
    assert.equal(await c.login(USER, PASSWORD), '+OK Maildrop has 0 messages (0 octets)');
  } finally {
    await f.close();
  }
});

test('POP3 allowPlaintextAuth accepts USER/PASS without TLS from another host', async () => {
  const f = await startPop3({ allowPlaintextAuth: true });
  try {
    const c = await f.connect({ localAddress: '127.0.0.2' });
    assert.ok((await c.multi('CAPA')).lines.includes('USER'));
    assert.equal(await c.login(USER, PASSWORD), '+OK Maildrop has 0 messages (0 octets)');
  } finally {
    await f.close();
  }
});

test('POP3 STLS discards commands pipelined behind it in the same packet (RFC 2595 §4)', async () => {
  const f = await startPop3();
  try {
    const c = await f.connect({ localAddress: '127.0.0.2' });
    // An attacker in the path appends commands after STLS in clear; they must not run in TLS.
    c.write('STLS\r\nCAPA\r\nUSER injected\r\n');
    assert.equal(await c.line(), '+OK Begin TLS negotiation');
    const plain = c.raw;
    plain.removeAllListeners('data');
    const { connect } = await import('node:tls');
    const secure = await new Promise<import('node:tls').TLSSocket>((resolve, reject) => {
      const s = connect({ socket: plain, rejectUnauthorized: false }, () => resolve(s));
      s.once('error', reject);
    });
    let received = '';
    secure.on('data', (d: Buffer) => (received += d.toString('latin1')));
    secure.write('NOOP\r\n');
    await new Promise((r) => setTimeout(r, 300));
    // Only the answer to NOOP (not valid before login): no CAPA listing, no USER answer.
    assert.equal(received, '-ERR NOOP is not valid in this state\r\n');
    secure.destroy();
  } finally {
    await f.close();
  }
});

test('POP3 STLS is refused once TLS is active, and pop3s starts in TLS (RFC 8314)', async () => {
  const f = await startPop3({ implicitTls: true });
  try {
    const c = await f.connect({ tls: true });
    const capa = await c.multi('CAPA');
    assert.ok(!capa.lines.includes('STLS'));
    assert.ok(capa.lines.includes('USER'));
    assert.equal(await c.command('STLS'), '-ERR TLS is already active or not available');
    assert.equal(await c.login(USER, PASSWORD), '+OK Maildrop has 0 messages (0 octets)');
  } finally {
    await f.close();
  }
});

test('POP3 AUTH PLAIN works with and without an initial response, and "*" cancels (RFC 5034 §4)', async () => {
  const f = await startPop3({}, NO_DELAY);
  try {
    const plain = Buffer.from(`\0${USER}\0${PASSWORD}`).toString('base64');
    const c = await f.connect();
    assert.equal(await c.command('AUTH PLAIN'), '+ ');
    assert.equal(await c.command('*'), '-ERR Authentication cancelled');
    assert.equal(await c.command('AUTH PLAIN'), '+ ');
    assert.equal(await c.command('not base64!'), '-ERR Invalid base64 in authentication response');
    assert.equal(await c.command(`AUTH PLAIN ${plain}`), '+OK Maildrop has 0 messages (0 octets)');
    assert.equal(await c.command('QUIT'), '+OK Bye, 0 messages removed');
    const d = await f.connect();
    assert.equal(await d.command('AUTH PLAIN'), '+ ');
    assert.equal(await d.command(Buffer.from(`\0${USER}\0bad`).toString('base64')), '-ERR [AUTH] Authentication failed');
    assert.equal(await d.command('AUTH PLAIN'), '+ ');
    assert.equal(await d.command(plain), '+OK Maildrop has 0 messages (0 octets)');
    const e = await f.connect();
    assert.deepEqual(await e.multi('AUTH'), { status: '+OK Methods supported', lines: ['SCRAM-SHA-256', 'PLAIN', 'LOGIN'] });
    assert.equal(await e.command('AUTH CRAM-MD5'), '-ERR Unsupported authentication mechanism');
  } finally {
    await f.close();
  }
});

test('POP3 AUTH LOGIN logs in (draft-murchison-sasl-login)', async () => {
  const f = await startPop3();
  try {
    const c = await f.connect();
    assert.equal(await c.command('AUTH LOGIN'), `+ ${Buffer.from('Username:').toString('base64')}`);
    assert.equal(await c.command(Buffer.from(USER).toString('base64')), `+ ${Buffer.from('Password:').toString('base64')}`);
    assert.equal(await c.command(Buffer.from(PASSWORD).toString('base64')), '+OK Maildrop has 0 messages (0 octets)');
  } finally {
    await f.close();
  }
});

/** The client side of SCRAM-SHA-256 (RFC 5802 §3), for the test only. */
function scramClient(user: string, password: string) {
  const nonce = randomBytes(18).toString('base64');
  const bare = `n=${user},r=${nonce}`;
  return {
    first: Buffer.from(`n,,${bare}`).toString('base64'),
    final(serverFirstB64: string): { message: string; expectedServerFinal: string } {
      const serverFirst = Buffer.from(serverFirstB64, 'base64').toString();
      const attrs = Object.fromEntries(serverFirst.split(',').map((kv) => [kv[0], kv.slice(2)]));
      assert.ok(attrs.r?.startsWith(nonce));
      const salted = pbkdf2Sync(password, Buffer.from(attrs.s ?? '', 'base64'), Number(attrs.i), 32, 'sha256');
      const clientKey = createHmac('sha256', salted).update('Client Key').digest();
      const storedKey = createHash('sha256').update(clientKey).digest();
      const withoutProof = `c=biws,r=${attrs.r}`;
      const authMessage = `${bare},${serverFirst},${withoutProof}`;
      const signature = createHmac('sha256', storedKey).update(authMessage).digest();
      const proof = Buffer.from(clientKey.map((b, i) => b ^ (signature[i] ?? 0)));
      const serverKey = createHmac('sha256', salted).update('Server Key').digest();
      const serverSignature = createHmac('sha256', serverKey).update(authMessage).digest('base64');
      return {
        message: Buffer.from(`${withoutProof},p=${proof.toString('base64')}`).toString('base64'),
        expectedServerFinal: Buffer.from(`v=${serverSignature}`).toString('base64'),
      };
    },
  };
}

test('POP3 AUTH SCRAM-SHA-256 sends the server signature as a last challenge, then +OK (RFC 5034 §4)', async () => {
  const f = await startPop3({}, NO_DELAY);
  try {
    await f.ctx.store.updateAccount(f.account.id, { scram: deriveScram(PASSWORD) });
    // From another host without TLS: SCRAM is the one mechanism offered, and it works.
    const c = await f.connect({ localAddress: '127.0.0.2' });
    const client = scramClient(USER, PASSWORD);
    const serverFirst = await c.command(`AUTH SCRAM-SHA-256 ${client.first}`);
    assert.match(serverFirst, /^\+ [A-Za-z0-9+/=]+$/);
    const { message, expectedServerFinal } = client.final(serverFirst.slice(2));
    assert.equal(await c.command(message), `+ ${expectedServerFinal}`);
    assert.equal(await c.command(''), '+OK Maildrop has 0 messages (0 octets)');
    // Without initial response: an empty challenge first; a wrong password fails with [AUTH].
    const d = await f.connect({ localAddress: '127.0.0.2' });
    const bad = scramClient(USER, 'not the password');
    assert.equal(await d.command('AUTH SCRAM-SHA-256'), '+ ');
    const first = await d.command(bad.first);
    assert.equal(await d.command(bad.final(first.slice(2)).message), '-ERR [AUTH] Authentication failed');
  } finally {
    await f.close();
  }
});

test('POP3 allows one session per account: the second gets -ERR [IN-USE] until the first ends', async () => {
  const f = await startPop3();
  try {
    const a = await f.session();
    const b = await f.connect();
    assert.equal(await b.login(USER, PASSWORD), '-ERR [IN-USE] Another POP3 session is open for this account');
    // Still in AUTHORIZATION: it may try again once the first session is gone.
    assert.equal(await a.command('QUIT'), '+OK Bye, 0 messages removed');
    assert.equal(await b.login(USER, PASSWORD), '+OK Maildrop has 0 messages (0 octets)');
    // A dropped connection releases the lock too.
    b.destroy();
    await new Promise((r) => setTimeout(r, 200));
    const c = await f.connect();
    assert.equal(await c.login(USER, PASSWORD), '+OK Maildrop has 0 messages (0 octets)');
  } finally {
    await f.close();
  }
});

test('POP3 LOGIN-DELAY is announced and enforced with -ERR [LOGIN-DELAY] (RFC 2449 §6.5)', async () => {
  const f = await startPop3({ loginDelaySeconds: 60 });
  try {
    const c = await f.connect();
    assert.ok((await c.multi('CAPA')).lines.includes('LOGIN-DELAY 60'));
    assert.equal(await c.login(USER, PASSWORD), '+OK Maildrop has 0 messages (0 octets)');
    assert.equal(await c.command('QUIT'), '+OK Bye, 0 messages removed');
    const d = await f.connect();
    assert.equal(await d.login(USER, PASSWORD), '-ERR [LOGIN-DELAY] Logged in too recently, wait before logging in again');
  } finally {
    await f.close();
  }
});

test('POP3 LOGIN-DELAY counts only logins that succeeded: a refused [IN-USE] attempt does not', async () => {
  const f = await startPop3({ loginDelaySeconds: 1 });
  try {
    const a = await f.session();
    await new Promise((r) => setTimeout(r, 1100));
    const b = await f.connect();
    assert.equal(await b.login(USER, PASSWORD), '-ERR [IN-USE] Another POP3 session is open for this account');
    assert.equal(await a.command('QUIT'), '+OK Bye, 0 messages removed');
    assert.equal(await b.login(USER, PASSWORD), '+OK Maildrop has 0 messages (0 octets)');
  } finally {
    await f.close();
  }
});

test('POP3 EXPIRE is announced as configured and removes nothing by itself (RFC 2449 §6.7)', async () => {
  // expire_days = 0 in the configuration file means NEVER.
  const f = await startPop3({ expireDays: 0 });
  try {
    await f.deliver({ subject: 'read' });
    const c = await f.session();
    assert.ok((await c.multi('CAPA')).lines.includes('EXPIRE NEVER'));
    c.send('RETR 1');
    await c.line();
    await c.multiline();
    assert.equal(await c.command('QUIT'), '+OK Bye, 0 messages removed');
    assert.equal((await f.entries()).length, 1);
  } finally {
    await f.close();
  }
  const g = await startPop3({ expireDays: 30 });
  try {
    const c = await g.connect();
    assert.ok((await c.multi('CAPA')).lines.includes('EXPIRE 30'));
    const d = await startPop3();
    try {
      const e = await d.connect();
      assert.ok(!(await e.multi('CAPA')).lines.some((l) => l.startsWith('EXPIRE')));
    } finally {
      await d.close();
    }
  } finally {
    await g.close();
  }
});

test('POP3 QUIT before login ends the session without touching the store', async () => {
  const f = await startPop3();
  try {
    await f.deliver();
    const c = await f.connect();
    assert.equal(await c.command('QUIT'), '+OK Bye');
    await c.closed();
    assert.equal((await f.entries()).length, 1);
  } finally {
    await f.close();
  }
});

test('POP3 answers pipelined commands in order (RFC 2449 §6.6)', async () => {
  const f = await startPop3();
  try {
    await f.deliver({ subject: 'a' });
    await f.deliver({ subject: 'b' });
    const c = await f.connect();
    c.write(`USER ${USER}\r\nPASS ${PASSWORD}\r\nSTAT\r\nUIDL 1\r\nTOP 2 0\r\nDELE 1\r\nSTAT\r\nQUIT\r\n`);
    assert.equal(await c.line(), '+OK Send your password');
    assert.match(await c.line(), /^\+OK Maildrop has 2 messages/);
    assert.match(await c.line(), /^\+OK 2 \d+$/);
    assert.match(await c.line(), /^\+OK 1 \S+$/);
    assert.equal(await c.line(), '+OK Top of message follows');
    assert.ok((await c.multiline()).some((l) => l === 'Subject: b'));
    assert.equal(await c.line(), '+OK Message 1 deleted');
    assert.match(await c.line(), /^\+OK 1 \d+$/);
    assert.equal(await c.line(), '+OK Bye, 1 messages removed');
    await c.closed();
  } finally {
    await f.close();
  }
});

test('POP3 accepts a client that ends lines with a bare LF', async () => {
  const f = await startPop3();
  try {
    const c = await f.connect();
    c.write(`USER ${USER}\nPASS ${PASSWORD}\nSTAT\n`);
    assert.equal(await c.line(), '+OK Send your password');
    assert.match(await c.line(), /^\+OK Maildrop/);
    assert.equal(await c.line(), '+OK 0 0');
  } finally {
    await f.close();
  }
});

test('POP3 greeting is a single +OK line with no APOP timestamp', async () => {
  const f = await startPop3();
  try {
    const c = await RawPop3.connect(f.port, { greeting: false });
    const g = await c.line();
    assert.match(g, /^\+OK /);
    assert.ok(!/<[^>]*@[^>]*>/.test(g), g);
    c.destroy();
  } finally {
    await f.close();
  }
});
