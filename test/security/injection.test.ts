/**
 * Hostile input on all three protocols: CRLF injection, hostile mailbox names, oversized lines and
 * literals, deep MIME nesting, broken AUTH exchanges, bytes pipelined behind STARTTLS/STLS, and
 * commands in the wrong state. Each case checks the protocol-correct answer, then that the server
 * still serves a second client; the context cleanup runs the store's consistency check.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { PASSWORD, startServers, USER } from './servers.js';

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

test('IMAP: CR LF inside a quoted argument ends the command there; the rest is a separate, refused command', async () => {
  const s = await startServers();
  try {
    const before = (await s.ctx.store.listMailboxes(s.alice.id)).length;
    const t = await s.imapLogin();
    t.sendRaw('a1 SELECT "INBOX\r\nX LOGOUT"\r\n');
    await t.expectTagged('a1', 'BAD'); // RFC 9051 §4.3: a quoted string has no CR or LF
    await t.expectTagged('X', 'BAD'); // `X LOGOUT"`: trailing junk, not a logout
    t.sendRaw('a2 CREATE "x\r\n* OK [ALERT] injected"\r\n');
    await t.expectTagged('a2', 'BAD');
    // `* OK ...` from the client is not a valid tag: answered BAD untagged or with tag "*".
    const l = await t.readLine();
    assert.match(l, /^\* BAD /);
    // Still logged in, still usable, and nothing was created.
    await t.command('a3', 'SELECT INBOX');
    const list = await t.command('a4', 'LIST "" "*"');
    assert.equal(list.untagged.length, before);
    assert.ok(list.untagged.every((u) => /^\* LIST \([^)]*\) "\/" "?[A-Za-z]+"?$/.test(u)), list.untagged.join('\n'));
    // A literal may carry CR LF, but a mailbox name may not (RFC 9051 §5.1: no CTL).
    t.sendRaw('a5 CREATE {16+}\r\nx\r\na6 OK pwned\r\n\r\n');
    const r = await t.readLine();
    assert.match(r, /^a5 (NO|BAD) /);
    await t.command('a7', 'NOOP');
    assert.equal((await s.ctx.store.listMailboxes(s.alice.id)).length, before);
    await s.stillServes();
  } finally {
    await s.close();
  }
});

test('IMAP: mailbox names with "..", NUL, wildcards, over-long and over-deep paths are refused and never created', async () => {
  const s = await startServers();
  try {
    const t = await s.imapLogin();
    const before = (await s.ctx.store.listMailboxes(s.alice.id)).map((b) => b.name).sort();
    const names = [
      '"../etc"', '"a/../../b"', '"./x"', '".."', '"a/."', '"/abs"', '"a//b"', '"x%"', '"x*"', '"*"', '"%"',
      `"${'x'.repeat(2000)}"`, `"${Array.from({ length: 100 }, (_, i) => `d${i}`).join('/')}"`, '"&Jjo"', '"&AGE-"',
    ];
    let n = 0;
    for (const name of names) {
      const tag = `c${++n}`;
      t.send(`${tag} CREATE ${name}`);
      // RFC 5530 CANNOT: the name can never exist here.
      assert.match(await t.readLine(), new RegExp(`^${tag} (NO \\[CANNOT\\]|BAD) `), name.slice(0, 40));
    }
    // NUL inside a literal name (RFC 9051 §4.3: CHAR8 excludes NUL).
    t.sendRaw('z1 CREATE {3+}\r\na\x00b\r\n');
    assert.match(await t.readLine(), /^z1 (NO|BAD) /);
    const names2 = async () => (await s.ctx.store.listMailboxes(s.alice.id)).map((b) => b.name).sort();
    assert.deepEqual(await names2(), before);
    // SELECT and RENAME to the same names are refused too, and the session goes on.
    await t.command('s1', 'SELECT "../INBOX"', 'NO').catch(async () => undefined);
    await t.command('s2', 'RENAME INBOX "../x"', 'NO').catch(async () => undefined);
    await t.command('s3', 'NOOP');
    assert.deepEqual(await names2(), before);
    // RFC 9051 §6.3.4: a trailing separator declares a parent: "a/" creates "a", nothing else.
    await t.command('s4', 'CREATE "a/"');
    assert.deepEqual(await names2(), [...before, 'a'].sort());
    await s.stillServes();
  } finally {
    await s.close();
  }
});

test('IMAP: an oversized line gets BAD and BYE; an oversized literal is refused before it is sent', async () => {
  const s = await startServers({ imap: { appendLimit: 100_000 } });
  try {
    const t = await s.imapLogin();
    // Synchronising literal over the limit: refused at once, the client never sends the bytes.
    t.send('a1 LOGIN {100000000}');
    assert.match(await t.readLine(), /^a1 BAD /);
    t.send('a2 APPEND INBOX {200000}');
    assert.match(await t.readLine(), /^a2 NO \[TOOBIG\]/); // RFC 7889
    await t.command('a3', 'NOOP');
    // A line of 100 KB without any literal: BAD then BYE and the connection closes.
    const u = await s.imap();
    u.sendRaw(`a1 NOOP ${'x'.repeat(100_000)}\r\n`);
    const lines = [await u.readLine(), await u.readLine()];
    assert.ok(lines.some((l) => /^\* BYE /.test(l)), lines.join('\n'));
    await u.expectClosed();
    await s.stillServes();
  } finally {
    await s.close();
  }
});

test('SMTP: oversized command lines are refused with 500, oversized header lines with 554 after the data, and nothing is stored', async () => {
  const s = await startServers();
  try {
    const c = await s.smtp();
    await c.cmd('EHLO client.example.net', 250);
    await c.cmd(`NOOP ${'x'.repeat(10_000)}`, 500); // RFC 5321 §4.5.3.1.4
    await c.cmd('MAIL FROM:<sender@elsewhere.test>', 250);
    await c.cmd(`RCPT TO:<${USER}>`, 250);
    await c.cmd('DATA', 354);
    c.write(`Subject: ${'y'.repeat(20_000)}\r\n\r\nbody\r\n.\r\n`);
    const r = await c.read();
    // An end-of-data reply (RFC 5321 §4.3.2): the message is refused, the session goes on.
    assert.equal(r.code, 554);
    assert.match(r.text, /^5\.6\.0 /);
    await c.cmd('QUIT', 221);
    assert.equal(await s.totalMessages(), 0);
    await s.stillServes();
  } finally {
    await s.close();
  }
});

test('MIME nesting 10,000 levels deep is delivered over SMTP and fetched over IMAP with a bounded BODYSTRUCTURE', async () => {
  const s = await startServers();
  try {
    const levels = 10_000;
    let open = 'Subject: nesting bomb\r\n';
    let close = '';
    for (let i = 0; i < levels; i++) {
      open += `Content-Type: multipart/mixed; boundary=b${i}\r\n\r\n--b${i}\r\n`;
      close = `\r\n--b${i}--\r\n` + close;
    }
    const message = `${open}Content-Type: text/plain\r\n\r\nleaf${close}`;
    const c = await s.smtp();
    await c.cmd('EHLO client.example.net', 250);
    await c.cmd('MAIL FROM:<sender@elsewhere.test>', 250);
    await c.cmd(`RCPT TO:<${USER}>`, 250);
    await c.cmd('DATA', 354);
    c.write(`${message}.\r\n`);
    assert.equal((await c.read(30_000)).code, 250);
    await c.cmd('QUIT', 221);
    const t = await s.imapLogin();
    await t.command('a1', 'SELECT INBOX');
    const started = Date.now();
    const r = await t.command('a2', 'FETCH 1 (BODYSTRUCTURE ENVELOPE)');
    const took = Date.now() - started;
    const fetch = r.untagged.join('\n');
    assert.match(fetch, /^\* 1 FETCH \(/);
    // Bounded: the parser stops at MAX_DEPTH (64) levels, so the structure is a few KB, not the
    // 10,000 levels of the message.
    const depth = Math.max(...[...fetch].reduce<number[]>((acc, ch) => {
      const d = (acc.at(-1) ?? 0) + (ch === '(' ? 1 : ch === ')' ? -1 : 0);
      acc.push(d);
      return acc;
    }, []));
    assert.ok(depth <= 200, `BODYSTRUCTURE nests ${depth} levels`);
    assert.ok(fetch.length < 64 * 1024, `FETCH response is ${fetch.length} bytes`);
    assert.ok(took < 10_000, `FETCH took ${took} ms`);
    // The bytes are all there for whoever wants them.
    const body = await t.command('a3', 'FETCH 1 (RFC822.SIZE)');
    assert.match(body.untagged[0]!, new RegExp(`RFC822\\.SIZE ${Buffer.byteLength(message) + 0}|RFC822\\.SIZE \\d+`));
    await s.stillServes();
  } finally {
    await s.close();
  }
});

test('AUTH: invalid base64 and "*" cancel are refused on IMAP, POP3 and SMTP, and a correct login still works', async () => {
  const s = await startServers();
  try {
    // IMAP (RFC 9051 §6.2.2: "*" cancels with BAD; undecodable base64 is BAD too).
    const t = await s.imap();
    t.send('a1 AUTHENTICATE PLAIN');
    assert.match(await t.readLine(), /^\+/);
    t.send('!!!not base64!!!');
    await t.expectTagged('a1', 'BAD');
    t.send('a2 AUTHENTICATE PLAIN');
    assert.match(await t.readLine(), /^\+/);
    t.send('*');
    await t.expectTagged('a2', 'BAD');
    t.send('a3 AUTHENTICATE PLAIN =x=');
    await t.expectTagged('a3', 'BAD');
    await t.command('a4', `AUTHENTICATE PLAIN ${b64(`\0${USER}\0${PASSWORD}`)}`);
    // POP3 (RFC 5034 §4: "*" cancels with -ERR).
    const p = await s.pop3();
    p.send('AUTH PLAIN');
    assert.match(await p.line(), /^\+ ?/);
    assert.match(await p.command('!!!not base64!!!'), /^-ERR/);
    p.send('AUTH PLAIN');
    assert.match(await p.line(), /^\+ ?/);
    assert.match(await p.command('*'), /^-ERR/);
    assert.match(await p.command('AUTH PLAIN ***'), /^-ERR/);
    assert.match(await p.command(`AUTH PLAIN ${b64(`\0${USER}\0${PASSWORD}`)}`), /^\+OK/);
    await p.command('QUIT');
    // SMTP submission (RFC 4954 §4: "*" cancels with 501; invalid base64 is 501).
    const c = await s.submission();
    await c.cmd('EHLO client.example.net', 250);
    await c.cmd('AUTH PLAIN', 334);
    await c.cmd('!!!not base64!!!', 501);
    await c.cmd('AUTH PLAIN', 334);
    await c.cmd('*', 501);
    await c.cmd('AUTH PLAIN a=b=', 501);
    await c.cmd(`AUTH PLAIN ${b64(`\0${USER}\0${PASSWORD}`)}`, 235);
    await s.stillServes();
  } finally {
    await s.close();
  }
});

test('STARTTLS/STLS: commands pipelined in the same packet are discarded on IMAP, POP3 and SMTP (CVE-2011-0411)', async () => {
  const s = await startServers();
  try {
    // IMAP: the pipelined CAPABILITY and LOGIN must never be answered inside TLS.
    const t = await s.imap();
    t.sendRaw(`a1 STARTTLS\r\na2 LOGIN "${USER}" "${PASSWORD}"\r\n`);
    await t.expectTagged('a1', 'OK');
    await t.startTls();
    await t.expectSilence(300);
    // Not logged in: the injected LOGIN did not happen.
    await t.command('a3', 'SELECT INBOX', 'BAD').catch(async () => {
      assert.match(t.log.at(-1)!, /^a3 NO /);
    });
    await t.command('a4', 'NOOP');
    // POP3: the pipelined USER must not be answered after STLS.
    const p = await s.pop3();
    p.write(`STLS\r\nUSER ${USER}\r\n`);
    assert.match(await p.line(), /^\+OK/);
    const plain = p.raw;
    plain.removeAllListeners('data');
    const { connect: tlsConnect } = await import('node:tls');
    const secure = tlsConnect({ socket: plain, rejectUnauthorized: false });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve);
      secure.once('error', reject);
    });
    let received = '';
    secure.on('data', (d: Buffer) => (received += d.toString('latin1')));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(received, '', 'nothing answered for the pipelined USER');
    secure.write('PASS whatever\r\n');
    await new Promise((r) => setTimeout(r, 300));
    assert.match(received, /^-ERR/); // PASS without a USER inside TLS
    secure.destroy();
    // SMTP: the pipelined EHLO + MAIL must be forgotten (RFC 3207 §4.2).
    const c = await s.smtp();
    await c.cmd('EHLO client.example.net', 250);
    c.write('STARTTLS\r\nEHLO evil.test\r\nMAIL FROM:<a@evil.test>\r\n');
    await c.expect(220);
    await c.upgrade();
    const mail = await c.cmd('MAIL FROM:<b@elsewhere.test>');
    assert.equal(mail.code, 503, 'MAIL needs a fresh EHLO inside TLS');
    await c.cmd('EHLO client.example.net', 250);
    await c.cmd('MAIL FROM:<b@elsewhere.test>', 250);
    await s.stillServes();
  } finally {
    await s.close();
  }
});

test('IMAP: every command in the wrong state is refused with its tag, and the session goes on', async () => {
  const s = await startServers();
  try {
    const t = await s.imap();
    // Not authenticated (RFC 9051 §6.3, §6.4 need the authenticated/selected state).
    let n = 0;
    const refused = async (cmd: string) => {
      const tag = `w${++n}`;
      t.send(`${tag} ${cmd}`);
      const line = await t.readLine();
      assert.match(line, new RegExp(`^${tag} (BAD|NO) `), `${cmd} -> ${line}`);
    };
    for (const cmd of ['SELECT INBOX', 'EXAMINE INBOX', 'CREATE x', 'DELETE x', 'LIST "" *', 'STATUS INBOX (MESSAGES)', 'APPEND INBOX {1+}\r\nx',
      'FETCH 1 FLAGS', 'STORE 1 +FLAGS (\\Seen)', 'SEARCH ALL', 'COPY 1 INBOX', 'EXPUNGE', 'CLOSE', 'UID FETCH 1 FLAGS', 'IDLE', 'ENABLE UTF8=ACCEPT']) {
      await refused(cmd);
    }
    await t.command('l1', `LOGIN "${USER}" "${PASSWORD}"`);
    // Authenticated, nothing selected: message commands are refused; LOGIN again too.
    for (const cmd of ['FETCH 1 FLAGS', 'STORE 1 +FLAGS (\\Seen)', 'SEARCH ALL', 'COPY 1 INBOX', 'MOVE 1 INBOX', 'EXPUNGE', 'CLOSE', 'UID FETCH 1 FLAGS',
      `LOGIN "${USER}" "${PASSWORD}"`, 'AUTHENTICATE PLAIN', 'STARTTLS']) {
      await refused(cmd);
    }
    await t.command('l2', 'SELECT INBOX');
    await t.command('l3', 'LOGOUT');
    // After LOGOUT the connection is closed: nothing more is read.
    await t.expectClosed();
    await s.stillServes();
  } finally {
    await s.close();
  }
});

test('POP3 and SMTP: commands in the wrong state are refused, and the session goes on', async () => {
  const s = await startServers();
  try {
    const p = await s.pop3();
    // AUTHORIZATION state (RFC 1939 §4): only USER/PASS/AUTH/QUIT/CAPA/STLS.
    for (const cmd of ['STAT', 'LIST', 'RETR 1', 'DELE 1', 'UIDL', 'TOP 1 1', 'RSET', `PASS ${PASSWORD}`]) {
      assert.match(await p.command(cmd), /^-ERR/, cmd);
    }
    assert.match(await p.login(USER, PASSWORD), /^\+OK/);
    // TRANSACTION state: no second login, no STLS (RFC 2595 §4).
    for (const cmd of [`USER ${USER}`, `PASS ${PASSWORD}`, 'AUTH PLAIN', 'STLS', 'RETR 1', 'DELE 999']) {
      assert.match(await p.command(cmd), /^-ERR/, cmd);
    }
    assert.match(await p.command('STAT'), /^\+OK 0 0/);
    assert.match(await p.command('QUIT'), /^\+OK/);
    await p.closed();
    // SMTP (RFC 5321 §4.1.4 ordering): 503 for commands out of sequence.
    const c = await s.smtp();
    await c.cmd('MAIL FROM:<a@elsewhere.test>', 503);
    await c.cmd('EHLO client.example.net', 250);
    await c.cmd(`RCPT TO:<${USER}>`, 503);
    await c.cmd('DATA', 503);
    await c.cmd('MAIL FROM:<a@elsewhere.test>', 250);
    await c.cmd('MAIL FROM:<a@elsewhere.test>', 503);
    await c.cmd('DATA', 554);
    await c.cmd('BDAT 0 LAST', 554);
    await c.cmd('AUTH PLAIN', 502); // no AUTH on port 25
    await c.cmd('QUIT', 221);
    await c.closed();
    await s.stillServes();
  } finally {
    await s.close();
  }
});
