import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { connectImap, startImap, TEST_PASSWORD, TEST_USER } from '../helpers/imap-transcript.js';

const b64 = (s: string | Buffer): string => Buffer.from(s).toString('base64');
const plain = b64(`\0${TEST_USER}\0${TEST_PASSWORD}`);

test('LOGIN with a wrong password is NO [AUTHENTICATIONFAILED]; the right one logs in', async () => {
  const f = await startImap();
  try {
    const t = await f.open();
    const r = await t.command('a1', `LOGIN ${TEST_USER} wrong`, 'NO');
    assert.match(r.line, /^a1 NO \[AUTHENTICATIONFAILED\]/);
    const ok = await t.command('a2', `LOGIN ${TEST_USER} "${TEST_PASSWORD}"`);
    assert.match(ok.line, /^a2 OK \[CAPABILITY IMAP4rev1 /);
  } finally {
    await f.close();
  }
});

test('AUTHENTICATE PLAIN works with SASL-IR and with an empty challenge; "*" cancels with BAD; bad base64 is BAD', async () => {
  const f = await startImap();
  try {
    const t = await f.open();
    t.send('c1 AUTHENTICATE PLAIN');
    await t.expect('+ ');
    t.send('*');
    await t.expectTagged('c1', 'BAD');
    t.send('c2 AUTHENTICATE PLAIN');
    await t.expect('+ ');
    t.send('%%%notbase64');
    await t.expectTagged('c2', 'BAD');
    await t.command('c3', `AUTHENTICATE PLAIN ${b64(`\0${TEST_USER}\0nope`)}`, 'NO');
    await t.command('c4', 'AUTHENTICATE CRAM-MD5', 'NO');
    t.send('c5 AUTHENTICATE PLAIN');
    await t.expect('+ ');
    t.send(plain);
    const r = await t.expectTagged('c5', 'OK');
    assert.match(r.line, /^c5 OK \[CAPABILITY /);
    const u = await f.open();
    await u.command('d1', `AUTHENTICATE PLAIN ${plain}`);
    await u.command('d2', 'SELECT INBOX');
  } finally {
    await f.close();
  }
});

test('AUTHENTICATE SCRAM-SHA-256 completes, with the server signature in a last challenge', async () => {
  const f = await startImap();
  try {
    // The SCRAM verifier is derived at the first password login.
    await f.login();
    const t = await f.open();
    const cnonce = randomBytes(12).toString('base64');
    const clientFirstBare = `n=${TEST_USER},r=${cnonce}`;
    t.send(`s1 AUTHENTICATE SCRAM-SHA-256 ${b64(`n,,${clientFirstBare}`)}`);
    const serverFirst = Buffer.from((await t.expect(/^\+ /)).slice(2), 'base64').toString();
    const attrs = Object.fromEntries(serverFirst.split(',').map((kv) => [kv[0], kv.slice(2)]));
    assert.ok(attrs.r!.startsWith(cnonce));
    const salted = pbkdf2Sync(TEST_PASSWORD, Buffer.from(attrs.s!, 'base64'), Number(attrs.i), 32, 'sha256');
    const clientKey = createHmac('sha256', salted).update('Client Key').digest();
    const storedKey = createHash('sha256').update(clientKey).digest();
    const finalNoProof = `c=biws,r=${attrs.r}`;
    const authMessage = `${clientFirstBare},${serverFirst},${finalNoProof}`;
    const signature = createHmac('sha256', storedKey).update(authMessage).digest();
    const proof = Buffer.from(clientKey.map((b, i) => b ^ signature[i]!));
    t.send(b64(`${finalNoProof},p=${proof.toString('base64')}`));
    const serverFinal = Buffer.from((await t.expect(/^\+ /)).slice(2), 'base64').toString();
    const serverKey = createHmac('sha256', salted).update('Server Key').digest();
    assert.equal(serverFinal, `v=${createHmac('sha256', serverKey).update(authMessage).digest('base64')}`);
    t.send('');
    await t.expectTagged('s1', 'OK');
  } finally {
    await f.close();
  }
});

test('a remote client without TLS sees LOGINDISABLED and no AUTH=PLAIN, and LOGIN is refused', async () => {
  const f = await startImap();
  try {
    const t = await connectImap(f.port, { localAddress: '127.0.0.2' });
    const greeting = await t.expect(/^\* OK /);
    assert.match(greeting, / LOGINDISABLED /);
    assert.doesNotMatch(greeting, /AUTH=PLAIN|AUTH=LOGIN/);
    assert.match(greeting, / STARTTLS /);
    const r = await t.command('a1', `LOGIN ${TEST_USER} "${TEST_PASSWORD}"`, 'NO');
    assert.match(r.line, /NO \[PRIVACYREQUIRED\]/);
    await t.command('a2', `AUTHENTICATE PLAIN ${plain}`, 'NO');
    // After STARTTLS the same client may log in.
    await t.command('a3', 'STARTTLS');
    await t.startTls();
    const caps = await t.command('a4', 'CAPABILITY');
    assert.doesNotMatch(caps.untagged[0]!, /LOGINDISABLED|STARTTLS/);
    assert.match(caps.untagged[0]!, /AUTH=PLAIN/);
    await t.command('a5', `LOGIN ${TEST_USER} "${TEST_PASSWORD}"`);
    t.close();
  } finally {
    await f.close();
  }
});

test('commands pipelined after STARTTLS in clear are discarded, not run inside TLS', async () => {
  const f = await startImap();
  try {
    const t = await connectImap(f.port, { localAddress: '127.0.0.2' });
    await t.expect(/^\* OK /);
    t.sendRaw('a1 STARTTLS\r\na2 CAPABILITY\r\n');
    await t.expectTagged('a1', 'OK');
    await t.startTls();
    // a2 was sent in clear: it must not be answered.
    await t.expectSilence(200);
    await t.command('a3', 'NOOP');
    t.close();
  } finally {
    await f.close();
  }
});

test('implicit TLS listener serves IMAP from the first byte', async () => {
  const f = await startImap({ implicitTls: true });
  try {
    const t = await f.open();
    const caps = await t.command('a1', 'CAPABILITY');
    assert.doesNotMatch(caps.untagged[0]!, /STARTTLS|LOGINDISABLED/);
    await t.command('a2', `LOGIN ${TEST_USER} "${TEST_PASSWORD}"`);
  } finally {
    await f.close();
  }
});

test('logins over the per-account limit are NO [LIMIT]', async () => {
  const f = await startImap({ maxConnectionsPerAccount: 1 });
  try {
    await f.login();
    const t = await f.open();
    const r = await t.command('a1', `LOGIN ${TEST_USER} "${TEST_PASSWORD}"`, 'NO');
    assert.match(r.line, /NO \[LIMIT\]/);
  } finally {
    await f.close();
  }
});

test('a connection is closed with BYE after five failed logins', async () => {
  const f = await startImap();
  try {
    const t = await f.open();
    for (let i = 1; i < 5; i++) await t.command(`a${i}`, `LOGIN ${TEST_USER} wrong${i}`, 'NO');
    t.send(`a5 LOGIN ${TEST_USER} wrong5`);
    await t.expect('* BYE Too many authentication failures');
    await t.expectClosed();
  } finally {
    await f.close();
  }
});
