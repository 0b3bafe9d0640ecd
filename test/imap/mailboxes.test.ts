import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { startImap } from '../helpers/imap-transcript.js';

test('LIST shows default mailboxes with CHILDREN and SPECIAL-USE attributes; "" gives the separator', async () => {
  const f = await startImap();
  try {
    const t = await f.login();
    const root = await t.command('a1', 'LIST "" ""');
    assert.deepEqual(root.untagged, ['* LIST (\\Noselect) "/" ""']);
    await t.command('a2', 'CREATE Projects/2024/Q1');
    const all = await t.command('a3', 'LIST "" *');
    assert.deepEqual(all.untagged, [
      '* LIST (\\HasNoChildren) "/" "INBOX"',
      '* LIST (\\HasNoChildren \\Archive) "/" "Archive"',
      '* LIST (\\HasNoChildren \\Drafts) "/" "Drafts"',
      '* LIST (\\HasNoChildren \\Junk) "/" "Junk"',
      '* LIST (\\HasChildren) "/" "Projects"',
      '* LIST (\\HasChildren) "/" "Projects/2024"',
      '* LIST (\\HasNoChildren) "/" "Projects/2024/Q1"',
      '* LIST (\\HasNoChildren \\Sent) "/" "Sent"',
      '* LIST (\\HasNoChildren \\Trash) "/" "Trash"',
    ]);
    const top = await t.command('a4', 'LIST "" %');
    assert.equal(top.untagged.length, 7);
    const sub = await t.command('a5', 'LIST Projects/ %');
    assert.deepEqual(sub.untagged, ['* LIST (\\HasChildren) "/" "Projects/2024"']);
    const inbox = await t.command('a6', 'LIST "" inbox');
    assert.deepEqual(inbox.untagged, ['* LIST (\\HasNoChildren) "/" "INBOX"']);
  } finally {
    await f.close();
  }
});

test('LIST-EXTENDED: SUBSCRIBED selection with RECURSIVEMATCH, SPECIAL-USE, RETURN STATUS, several patterns', async () => {
  const f = await startImap();
  try {
    const t = await f.login();
    await t.command('a1', 'CREATE Lists/alpha');
    await t.command('a2', 'SUBSCRIBE Lists/alpha');
    await t.command('a3', 'SUBSCRIBE INBOX');
    // The default mailboxes are subscribed when the account is created.
    const subs = await t.command('a4', 'LIST (SUBSCRIBED) "" (INBOX L*)');
    assert.deepEqual(subs.untagged, ['* LIST (\\HasNoChildren \\Subscribed) "/" "INBOX"', '* LIST (\\HasNoChildren \\Subscribed) "/" "Lists/alpha"']);
    const rec = await t.command('a5', 'LIST (SUBSCRIBED RECURSIVEMATCH) "" L%');
    assert.deepEqual(rec.untagged, ['* LIST (\\HasChildren) "/" "Lists" ("CHILDINFO" ("SUBSCRIBED"))']);
    const plainSub = await t.command('a5b', 'LIST (SUBSCRIBED) "" L%');
    assert.deepEqual(plainSub.untagged, []);
    const su = await t.command('a6', 'LIST (SPECIAL-USE) "" *');
    assert.equal(su.untagged.length, 5);
    const st = await t.command('a7', 'LIST "" (INBOX Sent) RETURN (STATUS (MESSAGES UIDNEXT) SUBSCRIBED)');
    assert.deepEqual(st.untagged, [
      '* LIST (\\HasNoChildren \\Subscribed) "/" "INBOX"',
      '* STATUS "INBOX" (MESSAGES 0 UIDNEXT 1)',
      '* LIST (\\HasNoChildren \\Subscribed \\Sent) "/" "Sent"',
      '* STATUS "Sent" (MESSAGES 0 UIDNEXT 1)',
    ]);
    const lsub = await t.command('a8', 'LSUB "" %');
    assert.ok(lsub.untagged.includes('* LSUB () "/" "INBOX"'), lsub.untagged.join('\n'));
    assert.ok(lsub.untagged.includes('* LSUB (\\Noselect) "/" "Lists"'), lsub.untagged.join('\n'));
    await t.command('a9', 'UNSUBSCRIBE Lists/alpha');
    const lsub2 = await t.command('a10', 'LSUB "" L*');
    assert.deepEqual(lsub2.untagged, []);
  } finally {
    await f.close();
  }
});

test('CREATE, RENAME (also of INBOX), DELETE, CREATE-SPECIAL-USE and their refusals', async () => {
  const f = await startImap();
  try {
    const t = await f.login();
    await t.command('c1', 'CREATE Work/');
    assert.match((await t.command('c2', 'CREATE Work', 'NO')).line, /NO \[ALREADYEXISTS\]/);
    assert.match((await t.command('c3', 'CREATE inbox', 'NO')).line, /NO \[ALREADYEXISTS\]/);
    await t.command('c4', 'CREATE MySent (USE (\\Sent))');
    assert.match((await t.command('c5', 'CREATE Odd (USE (\\Important))', 'NO')).line, /NO \[USEATTR\]/);
    const l = await t.command('c6', 'LIST "" MySent');
    assert.deepEqual(l.untagged, ['* LIST (\\HasNoChildren \\Sent) "/" "MySent"']);
    await t.command('r1', 'RENAME Work Job');
    assert.match((await t.command('r2', 'RENAME Work Other', 'NO')).line, /NO \[NONEXISTENT\]/);
    assert.match((await t.command('r3', 'RENAME Job Drafts', 'NO')).line, /NO \[ALREADYEXISTS\]/);
    await t.command('r4', 'APPEND INBOX {12+}\r\nSubject: x\r\n');
    await t.command('r5', 'RENAME INBOX Old');
    const s1 = await t.command('r6', 'STATUS INBOX (MESSAGES)');
    assert.deepEqual(s1.untagged, ['* STATUS "INBOX" (MESSAGES 0)']);
    const s2 = await t.command('r7', 'STATUS Old (MESSAGES)');
    assert.deepEqual(s2.untagged, ['* STATUS "Old" (MESSAGES 1)']);
    await t.command('d1', 'DELETE Job');
    assert.match((await t.command('d2', 'DELETE Job', 'NO')).line, /NO \[NONEXISTENT\]/);
    assert.match((await t.command('d3', 'DELETE INBOX', 'NO')).line, /NO \[CANNOT\]/);
    assert.match((await t.command('d4', 'STATUS Job (MESSAGES)', 'NO')).line, /NO \[NONEXISTENT\]/);
    assert.match((await t.command('d5', 'APPEND Job {1+}\r\nx', 'NO')).line, /NO \[TRYCREATE\]/);
  } finally {
    await f.close();
  }
});

test('modified UTF-7 names by default, UTF-8 after ENABLE UTF8=ACCEPT', async () => {
  const f = await startImap();
  try {
    const t = await f.login();
    await t.command('a1', 'CREATE "Caf&AOk-"');
    assert.deepEqual((await t.command('a2', 'LIST "" Caf*')).untagged, ['* LIST (\\HasNoChildren) "/" "Caf&AOk-"']);
    const en = await t.command('a3', 'ENABLE UTF8=ACCEPT IMAP4rev2 XUNKNOWN');
    assert.deepEqual(en.untagged, ['* ENABLED UTF8=ACCEPT IMAP4rev2']);
    const utf8 = (await t.command('a4', 'LIST "" Caf*')).untagged.map((l) => Buffer.from(l, 'latin1').toString('utf8'));
    assert.deepEqual(utf8, ['* LIST (\\HasNoChildren) "/" "Café"']);
    t.sendRaw(Buffer.from('a5 SELECT "Café"\r\n', 'utf8'));
    await t.expectTagged('a5', 'OK');
  } finally {
    await f.close();
  }
});

test('NAMESPACE, ID, EXAMINE is read-only, SELECT under IMAP4rev2 sends LIST and no RECENT', async () => {
  const f = await startImap();
  try {
    const t = await f.login();
    assert.deepEqual((await t.command('n', 'NAMESPACE')).untagged, ['* NAMESPACE (("" "/")) NIL NIL']);
    assert.deepEqual((await t.command('i', 'ID ("name" "test")')).untagged, ['* ID ("name" "Facteur" "vendor" "Facteur")']);
    await t.command('a', 'APPEND INBOX (\\Seen) {12+}\r\nSubject: x\r\n');
    await t.command('a2', 'APPEND INBOX {12+}\r\nSubject: y\r\n');
    const ex = await t.command('e', 'EXAMINE INBOX');
    assert.match(ex.line, /^e OK \[READ-ONLY\]/);
    // EXAMINE shows \Recent without taking it (the messages stay recent for the next SELECT).
    assert.ok(ex.untagged.includes('* 2 RECENT'), ex.untagged.join('\n'));
    assert.ok(ex.untagged.some((l) => /^\* OK \[UNSEEN 2\]/.test(l)), ex.untagged.join('\n'));
    assert.ok(ex.untagged.some((l) => /^\* OK \[PERMANENTFLAGS \(\)\]/.test(l)));
    await t.command('e1', 'STORE 1 +FLAGS (\\Deleted)', 'NO');
    await t.command('e2', 'EXPUNGE', 'NO');
    await t.command('e3', 'FETCH 2 BODY[]');
    const fl = await t.command('e4', 'FETCH 2 FLAGS');
    assert.deepEqual(fl.untagged, ['* 2 FETCH (FLAGS (\\Recent))'], 'EXAMINE does not set \\Seen');
    await t.command('u', 'UNSELECT');
    await t.command('v', 'ENABLE IMAP4rev2');
    const sel = await t.command('s', 'SELECT INBOX');
    assert.ok(!sel.untagged.some((l) => /RECENT/.test(l)));
    assert.ok(sel.untagged.includes('* LIST () "/" "INBOX"'), sel.untagged.join('\n'));
    const again = await t.command('s2', 'SELECT Trash');
    assert.match(again.untagged[0]!, /^\* OK \[CLOSED\]/);
  } finally {
    await f.close();
  }
});

test('SEARCH, UID SEARCH, ESEARCH RETURN options, SAVE and $, BADCHARSET; plain SEARCH is ESEARCH under IMAP4rev2', async () => {
  const f = await startImap();
  try {
    const t = await f.login();
    for (const subj of ['apple', 'banana', 'apple pie']) await t.command('a', `APPEND INBOX {${11 + subj.length}+}\r\nSubject: ${subj}\r\n`);
    await t.command('s', 'SELECT INBOX');
    assert.deepEqual((await t.command('q1', 'SEARCH SUBJECT apple')).untagged, ['* SEARCH 1 3']);
    assert.deepEqual((await t.command('q2', 'UID SEARCH NOT SUBJECT apple')).untagged, ['* SEARCH 2']);
    assert.deepEqual((await t.command('q3', 'SEARCH RETURN (MIN MAX COUNT ALL) ALL')).untagged, ['* ESEARCH (TAG "q3") MIN 1 MAX 3 ALL 1:3 COUNT 3']);
    assert.deepEqual((await t.command('q4', 'UID SEARCH RETURN (COUNT) SUBJECT zzz')).untagged, ['* ESEARCH (TAG "q4") UID COUNT 0']);
    assert.deepEqual((await t.command('q5', 'SEARCH RETURN (SAVE) SUBJECT apple')).untagged, []);
    assert.deepEqual((await t.command('q6', 'FETCH $ UID')).untagged, ['* 1 FETCH (UID 1)', '* 3 FETCH (UID 3)']);
    assert.deepEqual((await t.command('q7', 'SEARCH CHARSET UTF-8 SUBJECT banana')).untagged, ['* SEARCH 2']);
    assert.match((await t.command('q8', 'SEARCH CHARSET KOI8-R ALL', 'NO')).line, /NO \[BADCHARSET \(US-ASCII UTF-8\)\]/);
    // WITHIN (RFC 5032) and SAVEDATE (RFC 8514): all three were saved just now.
    assert.deepEqual((await t.command('q10', 'SEARCH YOUNGER 3600 SAVEDATESUPPORTED')).untagged, ['* SEARCH 1 2 3']);
    assert.deepEqual((await t.command('q11', 'SEARCH OLDER 3600')).untagged, ['* SEARCH']);
    const saved = await t.command('q12', 'FETCH 1 (SAVEDATE PREVIEW)');
    assert.match(saved.untagged[0]!, /^\* 1 FETCH \(SAVEDATE "[^"]+" PREVIEW "[^"]*"\)$/);
    await t.command('u', 'UNSELECT');
    await t.command('e', 'ENABLE IMAP4rev2');
    await t.command('s2', 'SELECT INBOX');
    assert.deepEqual((await t.command('q9', 'SEARCH SUBJECT banana')).untagged, ['* ESEARCH (TAG "q9") ALL 2']);
  } finally {
    await f.close();
  }
});

test('MULTIAPPEND stores all messages with APPENDUID; binary and UTF8 literals are accepted', async () => {
  const f = await startImap();
  try {
    const t = await f.login();
    const r = await t.command('m', 'APPEND INBOX (\\Seen) " 5-Mar-2024 10:00:00 +0100" {12+}\r\nSubject: a\r\n {12+}\r\nSubject: b\r\n');
    assert.match(r.line, /^m OK \[APPENDUID \d+ 1:2\]/);
    const b = await t.command('b', 'APPEND INBOX ~{15+}\r\nSubject: c\r\n\r\n\x00');
    assert.match(b.line, /APPENDUID \d+ 3\]/);
    await t.command('u0', 'APPEND INBOX UTF8 (~{12+}\r\nSubject: d\r\n)', 'BAD');
    await t.command('en', 'ENABLE UTF8=ACCEPT');
    t.sendRaw(Buffer.from('u1 APPEND INBOX UTF8 (~{13+}\r\nSubject: é\r\n)\r\n', 'utf8'));
    await t.expectTagged('u1', 'OK');
    await t.command('s', 'SELECT INBOX');
    const fl = await t.command('f', 'FETCH 1:2 (FLAGS INTERNALDATE)');
    assert.deepEqual(fl.untagged.map((l) => l.replace(/"[^"]+"/, 'DATE')), ['* 1 FETCH (FLAGS (\\Seen \\Recent) INTERNALDATE DATE)', '* 2 FETCH (FLAGS (\\Recent) INTERNALDATE DATE)']);
    assert.match(fl.untagged[0]!, /"\s?5-Mar-2024 \d\d:00:00 [+-]\d{4}"/);
    assert.match((await t.command('z', 'APPEND INBOX {0+}\r\n', 'NO')).line, /NO \[CANNOT\]/);
  } finally {
    await f.close();
  }
});

test('APPEND of a binary part holding NUL (literal8): BODY[] is base64 without NUL, BINARY[] gives the octets back', async () => {
  const f = await startImap();
  try {
    const t = await f.login();
    const head = 'From: user@example.test\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n';
    const data = '\x00-\xe4\n\r\n\n\n';
    const msg = Buffer.from(head + data, 'latin1');
    t.sendRaw(Buffer.concat([Buffer.from(`a APPEND INBOX ~{${msg.length}+}\r\n`), msg, Buffer.from('\r\n')]));
    await t.expectTagged('a', 'OK');
    await t.command('s', 'SELECT INBOX');
    const body = await t.command('f', 'FETCH 1 (BODY.PEEK[1] BODY.PEEK[HEADER.FIELDS (CONTENT-TRANSFER-ENCODING)])');
    const line = body.untagged[0]!;
    assert.equal(line.includes('\x00'), false);
    assert.ok(line.includes(`BODY[1] {12}\r\n${Buffer.from(data, 'latin1').toString('base64')}`), line);
    assert.match(line, /Content-Transfer-Encoding: base64/);
    const bin = await t.command('b', 'FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])');
    assert.ok(bin.untagged[0]!.startsWith('* 1 FETCH (BINARY.SIZE[1] 8 BINARY[1] ~{8}\r\n\x00-'), bin.untagged[0]);
    assert.ok(bin.untagged[0]!.endsWith('\n\r\n\n\n)'), bin.untagged[0]);
    // NUL in a header cannot be re-encoded: refused, nothing stored.
    const bad = Buffer.from('Subject: a\x00b\r\n\r\nx', 'latin1');
    t.sendRaw(Buffer.concat([Buffer.from(`c APPEND INBOX ~{${bad.length}+}\r\n`), bad, Buffer.from('\r\n')]));
    assert.match((await t.expectTagged('c', 'NO')).line, /NO \[UNKNOWN-CTE\]/);
    assert.deepEqual((await t.command('st', 'STATUS INBOX (MESSAGES)')).untagged, ['* STATUS "INBOX" (MESSAGES 1)']);
  } finally {
    await f.close();
  }
});

test('CLOSE expunges \\Deleted silently; UID EXPUNGE removes only the given UIDs', async () => {
  const f = await startImap();
  try {
    const t = await f.login();
    for (let i = 0; i < 4; i++) await t.command(`a${i}`, 'APPEND INBOX (\\Deleted) {12+}\r\nSubject: x\r\n');
    await t.command('s', 'SELECT INBOX');
    const ux = await t.command('x', 'UID EXPUNGE 2:3');
    assert.deepEqual(ux.untagged, ['* 3 EXPUNGE', '* 2 EXPUNGE']);
    const c = await t.command('c', 'CLOSE');
    assert.deepEqual(c.untagged, []);
    assert.deepEqual((await t.command('st', 'STATUS INBOX (MESSAGES)')).untagged, ['* STATUS "INBOX" (MESSAGES 0)']);
  } finally {
    await f.close();
  }
});

test('SORT and THREAD (RFC 5256) answer by sequence number, and by UID in their UID forms', async () => {
  const f = await startImap();
  try {
    const t = await f.login();
    const msgs = [
      'Subject: beta\r\nMessage-ID: <1@x>\r\n\r\n',
      'Subject: alpha\r\nMessage-ID: <2@x>\r\n\r\n',
      'Subject: Re: beta\r\nMessage-ID: <3@x>\r\nIn-Reply-To: <1@x>\r\nReferences: <1@x>\r\n\r\n',
    ];
    for (const m of msgs) await t.command('a', `APPEND INBOX {${m.length}+}\r\n${m}`);
    await t.command('s', 'SELECT INBOX');
    assert.deepEqual((await t.command('o1', 'SORT (SUBJECT) UTF-8 ALL')).untagged, ['* SORT 2 1 3']);
    assert.deepEqual((await t.command('o2', 'UID SORT (REVERSE SIZE) US-ASCII NOT SUBJECT alpha')).untagged, ['* SORT 3 1']);
    assert.deepEqual((await t.command('o3', 'THREAD REFERENCES UTF-8 ALL')).untagged, ['* THREAD (1 3)(2)']);
    assert.deepEqual((await t.command('o4', 'UID THREAD ORDEREDSUBJECT UTF-8 SUBJECT zzz')).untagged, ['* THREAD']);
    // ESORT (RFC 5267): MIN/MAX are first/last in sort order.
    assert.deepEqual((await t.command('o7', 'SORT RETURN (MIN MAX ALL COUNT) (SUBJECT) UTF-8 ALL')).untagged, ['* ESEARCH (TAG "o7") MIN 2 MAX 3 ALL 2,1,3 COUNT 3']);
    assert.deepEqual((await t.command('o8', 'UID SORT RETURN () (REVERSE ARRIVAL) UTF-8 ALL')).untagged, ['* ESEARCH (TAG "o8") UID ALL 3,2,1']);
    await t.command('o5', 'SORT (BOGUS) UTF-8 ALL', 'BAD');
    assert.match((await t.command('o6', 'SORT (DATE) KOI8-R ALL', 'NO')).line, /BADCHARSET/);
  } finally {
    await f.close();
  }
});

test('SORT and THREAD follow APPEND, EXPUNGE, COPY and MOVE between two commands, and leave out what another session expunged', async () => {
  const f = await startImap();
  try {
    const t = await f.login();
    const u = await f.login();
    const msgs = [
      'Subject: beta\r\nMessage-ID: <1@x>\r\n\r\n',
      'Subject: alpha\r\nMessage-ID: <2@x>\r\n\r\n',
      'Subject: Re: beta\r\nMessage-ID: <3@x>\r\nReferences: <1@x>\r\n\r\n',
    ];
    for (const m of msgs) await t.command('a', `APPEND INBOX {${m.length}+}\r\n${m}`);
    await t.command('s', 'SELECT INBOX');
    assert.deepEqual((await t.command('t1', 'THREAD REFERENCES UTF-8 ALL')).untagged, ['* THREAD (1 3)(2)']);
    // A reply to <2@x> arrives through another session: announced, then threaded and sorted.
    const reply = 'Subject: Re: alpha\r\nMessage-ID: <4@x>\r\nIn-Reply-To: <2@x>\r\n\r\n';
    await u.command('a', `APPEND INBOX {${reply.length}+}\r\n${reply}`);
    await t.command('n', 'NOOP');
    assert.deepEqual((await t.command('t2', 'THREAD REFERENCES UTF-8 ALL')).untagged, ['* THREAD (1 3)(2 4)']);
    assert.deepEqual((await t.command('o1', 'SORT (REVERSE ARRIVAL) UTF-8 ALL')).untagged, ['* SORT 4 3 2 1']);
    // <1@x> expunged: <3@x> keeps its place as a root (its parent is gone), numbers shift.
    await t.command('d', 'STORE 1 +FLAGS.SILENT (\\Deleted)');
    await t.command('e', 'EXPUNGE');
    assert.deepEqual((await t.command('t3', 'THREAD REFERENCES UTF-8 ALL')).untagged, ['* THREAD (1 3)(2)']);
    assert.deepEqual((await t.command('t4', 'UID THREAD REFERENCES UTF-8 ALL')).untagged, ['* THREAD (2 4)(3)']);
    // Another session expunges <3@x>; this one has not been told yet: left out of the answers.
    await u.command('s', 'SELECT INBOX');
    await u.command('d', 'UID STORE 3 +FLAGS.SILENT (\\Deleted)');
    await u.command('e', 'UID EXPUNGE 3');
    assert.deepEqual((await t.command('o2', 'SORT (ARRIVAL) UTF-8 ALL')).untagged, ['* SORT 1 3']);
    assert.deepEqual((await t.command('t5', 'THREAD REFERENCES UTF-8 ALL')).untagged, ['* THREAD (1 3)']);
    await t.command('n2', 'NOOP');
    // The keys go with COPY and MOVE.
    await t.command('c', 'COPY 1:* Archive');
    await t.command('m', 'MOVE 2 Trash');
    assert.deepEqual((await t.command('t6', 'THREAD REFERENCES UTF-8 ALL')).untagged, ['* THREAD (1)']);
    await t.command('s2', 'SELECT Archive');
    assert.deepEqual((await t.command('t7', 'THREAD REFERENCES UTF-8 ALL')).untagged, ['* THREAD (1 2)']);
    assert.deepEqual((await t.command('o3', 'SORT (SUBJECT) UTF-8 ALL')).untagged, ['* SORT 1 2']);
    await t.command('s3', 'SELECT Trash');
    assert.deepEqual((await t.command('t8', 'THREAD ORDEREDSUBJECT UTF-8 ALL')).untagged, ['* THREAD (1)']);
  } finally {
    await f.close();
  }
});

test('QUOTA (RFC 9208): GETQUOTAROOT and GETQUOTA report the account limits; over quota APPEND is NO [OVERQUOTA]', async () => {
  const f = await startImap();
  try {
    const t = await f.login();
    const empty = await t.command('q0', 'GETQUOTAROOT INBOX');
    assert.deepEqual(empty.untagged, ['* QUOTAROOT "INBOX" ""', '* QUOTA "" ()']);
    const account = (await f.ctx.store.getAccountByAddress('alice@example.test'))!;
    await f.ctx.store.updateAccount(account.id, { quotaBytes: 10 * 1024 * 1024, quotaMessages: 1 });
    await t.command('a1', 'APPEND INBOX (\\Deleted) {12+}\r\nSubject: x\r\n');
    const r = await t.command('q1', 'GETQUOTAROOT INBOX');
    assert.deepEqual(r.untagged, ['* QUOTAROOT "INBOX" ""', '* QUOTA "" (STORAGE 0 10240 MESSAGE 1 1)']);
    assert.deepEqual((await t.command('q2', 'GETQUOTA ""')).untagged, ['* QUOTA "" (STORAGE 0 10240 MESSAGE 1 1)']);
    assert.deepEqual((await t.command('q3', 'STATUS INBOX (DELETED DELETED-STORAGE)')).untagged, ['* STATUS "INBOX" (DELETED 1 DELETED-STORAGE 0)']);
    assert.match((await t.command('q4', 'GETQUOTA other', 'NO')).line, /NONEXISTENT/);
    assert.match((await t.command('q5', 'SETQUOTA "" (STORAGE 1)', 'NO')).line, /NOPERM/);
    assert.match((await t.command('a2', 'APPEND INBOX {12+}\r\nSubject: y\r\n', 'NO')).line, /NO \[OVERQUOTA\]/);
  } finally {
    await f.close();
  }
});

test('OBJECTID (RFC 8474): MAILBOXID survives RENAME and a recreated name gets a new one; EMAILID and THREADID fetch and search', async () => {
  const f = await startImap();
  try {
    const t = await f.login();
    const c = await t.command('c', 'CREATE Box');
    const id = /\[MAILBOXID \((F\d+)\)\]/.exec(c.line)?.[1];
    assert.ok(id, c.line);
    await t.command('r', 'RENAME Box Box2');
    assert.deepEqual((await t.command('s', 'STATUS Box2 (MAILBOXID)')).untagged, [`* STATUS "Box2" (MAILBOXID (${id}))`]);
    const again = await t.command('c2', 'CREATE Box');
    assert.doesNotMatch(again.line, new RegExp(`\\(${id}\\)`));
    await t.command('a', 'APPEND Box2 {12+}\r\nSubject: x\r\n');
    const sel = await t.command('e', 'SELECT Box2');
    assert.ok(sel.untagged.includes(`* OK [MAILBOXID (${id})] Mailbox id`), sel.untagged.join('\n'));
    const fe = await t.command('f', 'FETCH 1 (EMAILID THREADID)');
    const m = /^\* 1 FETCH \(EMAILID \(([A-Za-z0-9_-]+)\) THREADID (?:\(([A-Za-z0-9_-]+)\)|NIL)\)$/.exec(fe.untagged[0]!);
    assert.ok(m, fe.untagged[0]);
    assert.deepEqual((await t.command('q', `SEARCH EMAILID ${m[1]}`)).untagged, ['* SEARCH 1']);
    assert.deepEqual((await t.command('q2', 'SEARCH EMAILID nope')).untagged, ['* SEARCH']);
    await t.command('q3', 'SEARCH EMAILID "a b"', 'BAD');
  } finally {
    await f.close();
  }
});
