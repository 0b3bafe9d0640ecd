import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { parseMessage } from '../../src/mail/parse.js';
import { startImap, TEST_USER, type ImapFixture, type ImapTranscript } from '../helpers/imap-transcript.js';
import { makeMessage } from '../helpers/messages.js';

async function addMessages(f: ImapFixture, n: number, mailbox = 'INBOX'): Promise<void> {
  const account = (await f.ctx.store.getAccountByAddress(TEST_USER))!;
  const mb = (await f.ctx.store.getMailbox(account.id, mailbox))!;
  for (let i = 0; i < n; i++) {
    const raw = makeMessage({ from: 'bob@example.test', to: TEST_USER, subject: `m${i + 1}`, body: `body ${i + 1}`, messageId: `m${i + 1}-${Math.random()}@x` });
    await f.ctx.store.append(mb.id, { raw, parsed: parseMessage(raw) });
  }
}

async function twoSessions(f: ImapFixture): Promise<[ImapTranscript, ImapTranscript]> {
  const a = await f.login();
  const b = await f.login();
  // B selects first and so takes the existing messages as \Recent (RFC 3501 §2.3.2); A, the
  // session under test, has none.
  await b.command('bs', 'SELECT INBOX');
  await a.command('as', 'SELECT INBOX');
  return [a, b];
}

test('another session sees EXISTS, FETCH FLAGS and EXPUNGE at its next NOOP', async () => {
  const f = await startImap();
  try {
    await addMessages(f, 2);
    const [a, b] = await twoSessions(f);
    await b.command('b1', 'STORE 1 +FLAGS (\\Seen)');
    await b.command('b2', 'APPEND INBOX {12+}\r\nSubject: x\r\n');
    let r = await a.command('a1', 'NOOP');
    assert.deepEqual(r.untagged, ['* 3 EXISTS', '* 0 RECENT', '* 1 FETCH (UID 1 FLAGS (\\Seen))']);
    await b.command('b3', 'STORE 2 +FLAGS.SILENT (\\Deleted)');
    await b.command('b4', 'EXPUNGE');
    r = await a.command('a2', 'NOOP');
    assert.deepEqual(r.untagged, ['* 2 EXPUNGE']);
    r = await a.command('a3', 'FETCH 1:* UID');
    assert.deepEqual(r.untagged, ['* 1 FETCH (UID 1)', '* 2 FETCH (UID 3)']);
  } finally {
    await f.close();
  }
});

test('no EXPUNGE is sent during FETCH, STORE or SEARCH by sequence number; it waits for NOOP or a UID command', async () => {
  const f = await startImap();
  try {
    await addMessages(f, 3);
    const [a, b] = await twoSessions(f);
    await b.command('b1', 'STORE 2 +FLAGS.SILENT (\\Deleted)');
    await b.command('b2', 'EXPUNGE');
    // Sequence numbers stay as A knows them: message 3 is still 3.
    let r = await a.command('a1', 'FETCH 1:3 UID');
    assert.ok(!r.untagged.some((l) => /EXPUNGE/.test(l)), r.untagged.join('\n'));
    assert.ok(r.untagged.includes('* 3 FETCH (UID 3)'), r.untagged.join('\n'));
    r = await a.command('a2', 'STORE 3 +FLAGS (\\Flagged)');
    assert.ok(!r.untagged.some((l) => /EXPUNGE/.test(l)), r.untagged.join('\n'));
    assert.ok(r.untagged.includes('* 3 FETCH (FLAGS (\\Flagged))'), r.untagged.join('\n'));
    r = await a.command('a3', 'SEARCH ALL');
    assert.ok(!r.untagged.some((l) => /EXPUNGE/.test(l)), r.untagged.join('\n'));
    r = await a.command('a4', 'UID FETCH 1:* UID');
    assert.ok(r.untagged.includes('* 2 EXPUNGE'), r.untagged.join('\n'));
    r = await a.command('a5', 'FETCH 2 UID');
    assert.deepEqual(r.untagged, ['* 2 FETCH (UID 3)']);
  } finally {
    await f.close();
  }
});

test('STORE answers the new flags, .SILENT does not, and another session is told', async () => {
  const f = await startImap();
  try {
    await addMessages(f, 2);
    const [a, b] = await twoSessions(f);
    let r = await a.command('a1', 'UID STORE 1:2 +FLAGS (\\Answered $Label1)');
    assert.deepEqual(r.untagged, ['* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1)', '* 1 FETCH (UID 1 FLAGS (\\Answered $Label1))', '* 2 FETCH (UID 2 FLAGS (\\Answered $Label1))']);
    r = await a.command('a2', 'STORE 1 -FLAGS.SILENT ($Label1)');
    assert.deepEqual(r.untagged, []);
    r = await a.command('a3', 'NOOP');
    assert.deepEqual(r.untagged, [], 'its own changes are not announced again');
    r = await b.command('b1', 'NOOP');
    // B learns of the new keyword first (RFC 9051 §7.3.5); its flags include its \Recent.
    assert.deepEqual(r.untagged, [
      '* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1)',
      '* 1 FETCH (UID 1 FLAGS (\\Answered \\Recent))',
      '* 2 FETCH (UID 2 FLAGS (\\Answered $Label1 \\Recent))',
    ]);
  } finally {
    await f.close();
  }
});

test('IDLE pushes a change made by another session within 100 ms', async () => {
  const f = await startImap();
  try {
    await addMessages(f, 1);
    const [a, b] = await twoSessions(f);
    a.send('i1 IDLE');
    await a.expect(/^\+ /);
    for (const [cmd, expected] of [
      ['STORE 1 +FLAGS (\\Flagged)', ['* 1 FETCH (UID 1 FLAGS (\\Flagged))']],
      // With EXISTS goes RECENT (RFC 3501 §7.3.2); which of A and B gets the new message as
      // \Recent depends on which synchronises first, so either count is right.
      ['APPEND INBOX {12+}\r\nSubject: y\r\n', ['* 2 EXISTS', /^\* [01] RECENT$/]],
    ] as const) {
      b.send(`b ${cmd}`);
      await a.expect(expected[0]!, 2000);
      const heardAt = a.lastArrival;
      for (const more of expected.slice(1)) await a.expect(more!, 2000);
      await b.expectTagged('b', 'OK');
      // Measured from B's OK (the change is committed by then); A may even hear it first.
      const latency = heardAt - b.lastArrival;
      assert.ok(latency < 100, `IDLE latency ${latency} ms for ${cmd}`);
    }
    // An SMTP delivery (the store's deliver path) reaches IDLE too.
    const account0 = (await f.ctx.store.getAccountByAddress(TEST_USER))!;
    const raw = makeMessage({ from: 'carol@example.test', to: TEST_USER, subject: 'delivered', body: 'x' });
    await f.ctx.store.deliver(raw, parseMessage(raw), [{ accountId: account0.id }]);
    const committed = Date.now();
    await a.expect('* 3 EXISTS', 2000);
    assert.ok(a.lastArrival - committed < 100, `IDLE latency ${a.lastArrival - committed} ms for a delivery`);
    await a.expect(/^\* [12] RECENT$/, 2000);
    // EXPUNGE is allowed during IDLE.
    const account = (await f.ctx.store.getAccountByAddress(TEST_USER))!;
    const inbox = (await f.ctx.store.getMailbox(account.id, 'INBOX'))!;
    await f.ctx.store.expunge(inbox.id, (await f.ctx.store.listEntries(inbox.id)).slice(0, 1).map((e) => e.uid));
    await a.expect('* 1 EXPUNGE', 2000);
    a.send('DONE');
    await a.expectTagged('i1', 'OK');
  } finally {
    await f.close();
  }
});

test('MOVE sends COPYUID in an untagged OK, then EXPUNGE, then the tagged OK', async () => {
  const f = await startImap();
  try {
    await addMessages(f, 3);
    const a = await f.login();
    await a.command('s', 'SELECT INBOX');
    const r = await a.command('m', 'MOVE 2:3 Trash');
    assert.match(r.untagged[0]!, /^\* OK \[COPYUID \d+ 2:3 1:2\] /);
    assert.deepEqual(r.untagged.slice(1), ['* 3 EXPUNGE', '* 2 EXPUNGE']);
    const c = await a.command('c', 'UID COPY 1 Trash');
    assert.match(c.line, /^c OK \[COPYUID \d+ 1 3\] /);
    const st = await a.command('st', 'STATUS Trash (MESSAGES UIDNEXT UNSEEN DELETED SIZE RECENT)');
    assert.match(st.untagged[0]!, /^\* STATUS "Trash" \(MESSAGES 3 UIDNEXT 4 UNSEEN 3 DELETED 0 SIZE \d+ RECENT 3\)$/);
    await a.command('n', 'COPY 1 Nowhere', 'NO').then((x) => assert.match(x.line, /NO \[TRYCREATE\]/));
  } finally {
    await f.close();
  }
});

test('a session whose selected mailbox another session deletes gets BYE; the other goes on', async () => {
  const f = await startImap();
  try {
    const a = await f.login();
    const b = await f.login();
    await a.command('c', 'CREATE Doomed');
    await a.command('s', 'SELECT Doomed');
    await b.command('d', 'DELETE Doomed');
    a.send('n NOOP');
    await a.expect('* BYE Selected mailbox was deleted, have to disconnect');
    await a.expectClosed();
    await b.command('n2', 'NOOP');
  } finally {
    await f.close();
  }
});

test('SELECT right after other sessions changed flags on every message, expunged and appended announces the mailbox as it is now', async () => {
  const f = await startImap();
  try {
    await addMessages(f, 5);
    const [a, b] = await twoSessions(f);
    // A's view shares the store's arrays; B's STORE on every message must not change what A was told.
    await b.command('b1', 'STORE 1:* +FLAGS.SILENT (\\Seen $Done)');
    let r = await a.command('a1', 'NOOP');
    assert.equal(r.untagged.filter((l) => / FETCH \(UID \d FLAGS \(\\Seen \$Done\)\)$/.test(l)).length, 5, r.untagged.join('\n'));
    await b.command('b2', 'STORE 2 -FLAGS.SILENT (\\Seen $Done)');
    await b.command('b3', 'STORE 4 +FLAGS.SILENT (\\Deleted)');
    await b.command('b4', 'EXPUNGE');
    await b.command('b5', 'APPEND INBOX (Keyword2) {12+}\r\nSubject: x\r\n');
    await b.command('b6', 'UNSELECT');
    r = await a.command('a2', 'SELECT INBOX');
    const lines = r.untagged.join('\n');
    assert.match(lines, /^\* FLAGS \(.*\$Done Keyword2\)$/m);
    assert.match(lines, /^\* 5 EXISTS$/m);
    assert.match(lines, /^\* OK \[UNSEEN 2\]/m);
    assert.match(lines, /^\* OK \[UIDNEXT 7\]/m);
    r = await a.command('a3', 'FETCH 1:* (UID FLAGS)');
    assert.deepEqual(r.untagged, [
      '* 1 FETCH (UID 1 FLAGS (\\Seen $Done))',
      '* 2 FETCH (UID 2 FLAGS ())',
      '* 3 FETCH (UID 3 FLAGS (\\Seen $Done))',
      '* 4 FETCH (UID 5 FLAGS (\\Seen $Done))',
      // B had INBOX selected when it appended: B took the message as \Recent (RFC 3501 §2.3.2).
      '* 5 FETCH (UID 6 FLAGS (Keyword2))',
    ]);
    // Once no message has $Done, the next SELECT no longer lists it.
    await a.command('a4', 'STORE 1:* -FLAGS.SILENT ($Done)');
    r = await b.command('b7', 'EXAMINE INBOX');
    assert.match(r.untagged.join('\n'), /^\* FLAGS \(\\Answered \\Flagged \\Deleted \\Seen \\Draft Keyword2\)$/m);
  } finally {
    await f.close();
  }
});
