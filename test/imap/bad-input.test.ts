import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { parseMessage } from '../../src/mail/parse.js';
import { startImap, TEST_USER, type ImapFixture } from '../helpers/imap-transcript.js';
import { testMessage } from '../helpers/store.js';

/** Another session, opened before the abuse, still works afterwards. */
async function bystander(f: ImapFixture): Promise<() => Promise<void>> {
  const other = await f.login();
  await other.command('o1', 'SELECT INBOX');
  return async () => {
    await other.command('o2', 'NOOP');
    await other.command('o3', 'LIST "" INBOX');
  };
}

test('an over-long line gets BAD and BYE and the connection closes; other sessions go on', async () => {
  const f = await startImap();
  try {
    const check = await bystander(f);
    const t = await f.open();
    t.sendRaw('a1 NOOP ' + 'x'.repeat(70 * 1024));
    await t.expect('* BAD Line too long');
    await t.expect(/^\* BYE /);
    await t.expectClosed();
    await check();
  } finally {
    await f.close();
  }
});

test('a synchronising literal over the limit is refused before it is sent and the session stays usable', async () => {
  const f = await startImap({ appendLimit: 1000 });
  try {
    const check = await bystander(f);
    const t = await f.open();
    t.send('a1 LOGIN {10000000}');
    await t.expect('a1 BAD [TOOBIG] Literal too big');
    await t.command('a2', 'LOGIN alice@example.test "correct horse"');
    t.send('a3 APPEND INBOX {1001}');
    await t.expect('a3 NO [TOOBIG] Message is larger than APPENDLIMIT');
    const app = await t.command('a4', 'APPEND INBOX {12+}\r\nSubject: x\r\n');
    assert.match(app.line, /APPENDUID/);
    // A non-synchronising literal over the limit is already on its way: BAD, BYE, close (RFC 7888 §4).
    t.sendRaw('a5 APPEND INBOX {5000+}\r\n' + 'y'.repeat(100));
    await t.expect('a5 BAD [TOOBIG] Message is larger than APPENDLIMIT');
    await t.expect(/^\* BYE /);
    await t.expectClosed();
    await check();
  } finally {
    await f.close();
  }
});

test('unbalanced parentheses, deep nesting, unknown commands and garbage bytes get BAD and the session goes on', async () => {
  const f = await startImap();
  try {
    const check = await bystander(f);
    const t = await f.login();
    await t.command('s', 'SELECT INBOX');
    await t.command('b1', 'FETCH 1 (FLAGS', 'BAD');
    await t.command('b2', 'SEARCH (ALL))', 'BAD');
    await t.command('b3', `SEARCH ${'('.repeat(200)}ALL${')'.repeat(200)}`, 'BAD');
    await t.command('b4', `SEARCH ${'NOT '.repeat(500)}ALL`, 'BAD');
    await t.command('b5', 'FROBNICATE now', 'BAD');
    await t.command('b6', 'FETCH 99 FLAGS', 'BAD');
    t.sendRaw(Buffer.from([0xff, 0xfe, 0x00, 0x01, 0x20, 0x7b, 0x0d, 0x0a]));
    await t.expect(/^\* BAD /);
    t.send('');
    await t.expect(/^\* BAD /);
    await t.command('ok', 'NOOP');
    await check();
  } finally {
    await f.close();
  }
});

test('a CRLF inside a quoted string cannot inject a second command', async () => {
  const f = await startImap();
  try {
    const t = await f.login();
    // The first line ends inside the quoted string: BAD. The rest is its own (bad) command, and
    // in particular no LOGOUT happens.
    t.sendRaw('a1 CREATE "x\r\na2 LOGOUT"\r\n');
    await t.expectTagged('a1', 'BAD');
    await t.expectTagged('a2', 'BAD');
    await t.command('a3', 'NOOP');
    // A name with CR LF sent as a literal is refused, not written back raw: not modified UTF-7,
    // and with UTF-8 names a control character (NO [CANNOT] both).
    await t.command('a4', 'CREATE {5+}\r\na\r\nb', 'NO').then((r) => assert.match(r.line, /NO \[CANNOT\]/));
    await t.command('a4e', 'ENABLE UTF8=ACCEPT');
    await t.command('a4u', 'CREATE {5+}\r\na\r\nb', 'NO').then((r) => assert.match(r.line, /NO \[CANNOT\]/));
    const list = await t.command('a5', 'LIST "" *');
    assert.ok(list.untagged.every((l) => /^\* LIST \(/.test(l)), list.untagged.join('\n'));
  } finally {
    await f.close();
  }
});

test('mailbox names with NUL, empty levels, dot levels or too much depth are refused', async () => {
  const f = await startImap();
  try {
    const check = await bystander(f);
    const t = await f.login();
    await t.command('n1', 'CREATE {3+}\r\na\x00b', 'BAD');
    await t.command('n2', 'CREATE "a\x00b"', 'BAD');
    for (const [i, name] of ['../etc', 'a/../b', 'a//b', '/abs', './x', Array(40).fill('d').join('/'), 'x'.repeat(1001)].entries()) {
      const r = await t.command(`c${i}`, `CREATE "${name}"`, 'NO');
      assert.match(r.line, /NO \[CANNOT\]/, name);
    }
    await t.command('s1', 'SELECT "../INBOX"', 'NO');
    await t.command('r1', 'RENAME Drafts "../Drafts"', 'NO');
    // Not modified UTF-7: no such mailbox can exist (NO, as Dovecot answers), and as a LIST
    // pattern it matches nothing.
    await t.command('u1', 'SELECT "&Jjo"', 'NO');
    await t.command('u2', 'CREATE "&Jjo"', 'NO');
    assert.deepEqual((await t.command('u3', 'LIST "" "&Jjo*"')).untagged, []);
    const list = await t.command('l', 'LIST "" *');
    assert.ok(!list.untagged.some((l) => /\.\./.test(l)), list.untagged.join('\n'));
    await check();
  } finally {
    await f.close();
  }
});

test('connections over the per-IP limit get BYE', async () => {
  const f = await startImap({ maxConnectionsPerIp: 2 });
  try {
    await f.open();
    await f.open();
    await assert.rejects(f.open(), /BYE \[UNAVAILABLE\]|closed/);
  } finally {
    await f.close();
  }
});

test('APPEND literals share one memory budget: a client holding it makes others wait (NO [UNAVAILABLE]) until it finishes or leaves', async () => {
  const f = await startImap({ appendLimit: 800, appendBufferBytes: 1000 });
  try {
    const a = await f.login();
    const b = await f.login();
    a.send('a1 APPEND INBOX {700}');
    await a.expect(/^\+ /);
    b.send('b1 APPEND INBOX {500}');
    await b.expect('b1 NO [UNAVAILABLE] Server busy, try again later');
    a.sendRaw(`Subject: a\r\n${'x'.repeat(700 - 12)}\r\n`);
    await a.expectTagged('a1', 'OK');
    await b.command('b2', `APPEND INBOX {500+}\r\nSubject: b\r\n${'y'.repeat(500 - 12)}`);
    // A client that leaves in the middle of a literal gives its share back.
    a.send('a2 APPEND INBOX {700}');
    await a.expect(/^\+ /);
    a.sendRaw('Subject: half');
    a.close();
    await new Promise((r) => setTimeout(r, 200));
    await b.command('b3', `APPEND INBOX {500+}\r\nSubject: c\r\n${'z'.repeat(500 - 12)}`);
  } finally {
    await f.close();
  }
});

test('one account holds at most a quarter of the APPEND budget, and a literal announced but not sent ends its session after the command timeout', async () => {
  // 10 bytes/s: were announced bytes counted, a1's 400 would buy it 40 s.
  const f = await startImap({ appendLimit: 400, appendBufferBytes: 1000, commandTimeoutMs: 700, minUploadBytesPerSecond: 10 });
  try {
    await f.ctx.addUser('bob@example.test', 'pw-bob-123456');
    const a1 = await f.login();
    const a2 = await f.login();
    const bob = await f.login('bob@example.test', 'pw-bob-123456');
    a1.send('a1 APPEND INBOX {400}');
    await a1.expect(/^\+ /);
    // The budget has 600 bytes left, but not for this account.
    a2.send('a2 APPEND INBOX {100}');
    await a2.expect('a2 NO [UNAVAILABLE] Server busy, try again later');
    bob.send('b1 APPEND INBOX {400}');
    await bob.expect(/^\+ /);
    bob.sendRaw(`Subject: b\r\n${'y'.repeat(400 - 12)}\r\n`);
    await bob.expectTagged('b1', 'OK');
    // a1 never sends its 400 bytes: announcing them bought no time.
    const started = Date.now();
    await a1.expect(/^\* BYE /, 5000);
    assert.ok(Date.now() - started < 3000, `ended after ${Date.now() - started} ms`);
    await new Promise((r) => setTimeout(r, 100));
    await a2.command('a3', `APPEND INBOX {300+}\r\nSubject: a\r\n${'z'.repeat(300 - 12)}`);
  } finally {
    await f.close();
  }
});

test('a sequence set of many overlapping ranges costs no more than one range', async () => {
  const f = await startImap();
  try {
    const account = (await f.ctx.store.getAccountByAddress('alice@example.test'))!;
    const inbox = (await f.ctx.store.getMailbox(account.id, 'INBOX'))!;
    const raw = Buffer.from('Subject: x\r\n\r\nbody\r\n');
    await f.ctx.store.appendMany(inbox.id, Array.from({ length: 3000 }, () => ({ raw, parsed: parseMessage(raw) })));
    const t = await f.login();
    await t.command('s', 'SELECT INBOX');
    // The same change with one range, then with 9,999 ranges over the 3,000 messages (visited
    // range by range that would be 30 million steps and a 30-million-UID list): the second must
    // cost about the same. Measured in CPU time of this process (server and client both run
    // here), not wall time, so a loaded machine does not make it fail.
    const cpuMs = async (tag: string, command: string): Promise<number> => {
      const before = process.cpuUsage();
      await t.command(tag, command);
      const used = process.cpuUsage(before);
      return (used.user + used.system) / 1000;
    };
    const baseline = await cpuMs('b', 'STORE 1:* +FLAGS.SILENT (\\Seen)');
    const many = await cpuMs('f', `STORE ${Array(9999).fill('1:*').join(',')} -FLAGS.SILENT (\\Seen)`);
    assert.ok(many < 3 * baseline + 1000, `one range: ${baseline} ms CPU, 9,999 ranges: ${many} ms CPU`);
    const manyUid = await cpuMs('u', `UID STORE ${Array(4500).fill('1:4294967295').join(',')} +FLAGS.SILENT (\\Seen)`);
    assert.ok(manyUid < 3 * baseline + 1000, `one range: ${baseline} ms CPU, 4,500 UID ranges: ${manyUid} ms CPU`);
  } finally {
    await f.close();
  }
});

test('FETCH naming one item many times answers it once; many distinct ranges of a message do not pile up in memory', async () => {
  const f = await startImap();
  try {
    const account = (await f.ctx.store.getAccountByAddress(TEST_USER))!;
    const inbox = (await f.ctx.store.getMailbox(account.id, 'INBOX'))!;
    // Under the size past which a body is streamed anyway: held in memory when fetched.
    await f.ctx.store.append(inbox.id, testMessage({ subject: 'mid', body: `${'x'.repeat(76)}\r\n`.repeat(2600) }));
    const t = await f.login();
    await t.command('s', 'SELECT INBOX');
    const r = await t.command('f1', `FETCH 1 (${'BODY.PEEK[] '.repeat(300)}BODY[])`);
    assert.equal(r.untagged.length, 1);
    assert.equal(r.untagged[0]!.split('BODY[] {').length - 1, 1, 'one BODY[] item');
    assert.match(r.untagged[0]!, /FLAGS \(\\Seen\b/, 'BODY[] among the PEEKs still sets \\Seen');
    // Past FETCH_HELD_MAX (8 MB) of ranges in memory, the others are streamed: all 45 come, whole.
    t.send(`f2 FETCH 1 (${Array.from({ length: 45 }, (_, i) => `BODY.PEEK[]<${i}.200000>`).join(' ')})`);
    const ranged = await t.expectTagged('f2', 'OK', 60_000);
    const sizes = [...ranged.untagged[0]!.matchAll(/BODY\[\]<(\d+)> \{(\d+)\}/g)].map((m) => [Number(m[1]), Number(m[2])]);
    assert.equal(sizes.length, 45);
    assert.ok(sizes.every(([origin, size], i) => origin === i && size === 200000));
    // 500 ranges of 200 KB: 100 MB if each were read into memory before the response is written.
    const check = await bystander(f);
    const ranges = Array.from({ length: 500 }, (_, i) => `BODY.PEEK[]<${i}.200000>`).join(' ');
    const before = process.memoryUsage().arrayBuffers;
    t.pause();
    t.sendRaw(`f3 FETCH 1 (${ranges})\r\n`);
    let peak = 0;
    for (let i = 0; i < 10; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      peak = Math.max(peak, process.memoryUsage().arrayBuffers - before);
    }
    t.close();
    assert.ok(peak < 48 * 1024 * 1024, `held ${(peak / 1048576).toFixed(0)} MB while the client did not read`);
    await check();
  } finally {
    await f.close();
  }
});

test('keywords are bounded: 100 on a message, 1,000 in a mailbox (NO [LIMIT]), and a full mailbox drops \\* from PERMANENTFLAGS', async () => {
  const f = await startImap();
  try {
    const account = (await f.ctx.store.getAccountByAddress(TEST_USER))!;
    const inbox = (await f.ctx.store.getMailbox(account.id, 'INBOX'))!;
    for (let i = 0; i < 11; i++) await f.ctx.store.append(inbox.id, testMessage({ subject: `m${i}` }));
    const kw = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i}`).join(' ');
    const t = await f.login();
    await t.command('s', 'SELECT INBOX');
    let r = await t.command('a', `STORE 1 +FLAGS.SILENT (${kw('a', 101)})`, 'NO');
    assert.match(r.line, /^a NO \[LIMIT\] /);
    await t.command('b', `STORE 1 +FLAGS.SILENT (${kw('b', 60)})`);
    r = await t.command('c', `STORE 1 +FLAGS.SILENT (${kw('c', 50)})`, 'NO');
    assert.match(r.line, /^c NO \[LIMIT\] /, 'sixty and fifty more on one message');
    r = await t.command('e', `APPEND INBOX (${kw('e', 101)}) {8+}\r\nx: y\r\n\r\n`, 'NO');
    assert.match(r.line, /^e NO \[LIMIT\] /);
    // 60 + 9 x 100 + 40 = 1,000 keywords in the mailbox; then no new one, a known one yes.
    for (let i = 2; i <= 10; i++) await t.command(`g${i}`, `STORE ${i} +FLAGS.SILENT (${kw(`g${i}x`, 100)})`);
    await t.command('j', `STORE 11 +FLAGS.SILENT (${kw('j', 40)})`);
    r = await t.command('h', 'STORE 11 +FLAGS.SILENT (one-more)', 'NO');
    assert.match(r.line, /^h NO \[LIMIT\] /);
    await t.command('i', `STORE 11 +FLAGS.SILENT (${kw('b', 5)})`, 'OK');
    const again = await f.login();
    const sel = await again.command('s2', 'SELECT INBOX');
    const permanent = sel.untagged.find((l) => l.includes('PERMANENTFLAGS'))!;
    assert.doesNotMatch(permanent, /\\\*/);
    assert.match(permanent, /g10x99/);
  } finally {
    await f.close();
  }
});
