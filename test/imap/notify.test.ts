import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { createImapServer } from '../../src/imap/server/server.js';
import { MAX_QUEUED_EVENTS } from '../../src/imap/server/notify.js';
import { parseMessage } from '../../src/mail/parse.js';
import { connectImap, startImap, TEST_USER, type ImapFixture, type ImapTranscript } from '../helpers/imap-transcript.js';
import { makeMessage } from '../helpers/messages.js';
import { dotStuff, startServer } from '../smtp/harness.js';
import { openTransaction } from '../smtp/wire.js';

const SUPPORTED = '(MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange MailboxMetadataChange ServerMetadataChange)';

function message(subject: string): { raw: Buffer; parsed: ReturnType<typeof parseMessage> } {
  const raw = makeMessage({ from: 'bob@example.test', to: TEST_USER, subject, body: 'hello', messageId: `${subject}-${Math.random()}@x` });
  return { raw, parsed: parseMessage(raw) };
}

/** The next `n` untagged lines that arrive with no command running. */
async function pushed(t: ImapTranscript, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(await t.readLine());
  return out;
}

async function withFixture(fn: (f: ImapFixture) => Promise<void>): Promise<void> {
  const f = await startImap();
  try {
    await fn(f);
  } finally {
    await f.close();
  }
}

test('NOTIFY SET STATUS answers STATUS for the watched mailboxes with the items each event needs (RFC 5465 §3.1)', () =>
  withFixture(async (f) => {
    const a = await f.login();
    await a.command('c', 'CREATE Box2');
    await a.command('p', 'APPEND Box2 {8+}\r\nx: y\r\n\r\n');
    let r = await a.command('n1', 'NOTIFY SET STATUS (mailboxes Box2 (MessageNew MessageExpunge))');
    assert.match(r.untagged.join('\n'), /^\* STATUS "Box2" \(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+\)$/);
    r = await a.command('n2', 'NOTIFY SET STATUS (mailboxes Box2 (MessageExpunge))');
    assert.deepEqual(r.untagged, ['* STATUS "Box2" (MESSAGES 1)']);
    r = await a.command('n3', 'NOTIFY SET STATUS (subtree Box2 (FlagChange))');
    assert.match(r.untagged.join('\n'), /^\* STATUS "Box2" \(UIDVALIDITY \d+ HIGHESTMODSEQ \d+\)$/);
    r = await a.command('n4', 'NOTIFY SET (mailboxes Box2 (MessageNew MessageExpunge FlagChange))');
    assert.deepEqual(r.untagged, [], 'no STATUS without the STATUS indicator');
    // A STATUS of HIGHESTMODSEQ sent for NOTIFY does not turn CONDSTORE on.
    await a.command('s', 'SELECT Box2');
    r = await a.command('f', 'FETCH 1 FLAGS');
    assert.deepEqual(r.untagged, ['* 1 FETCH (FLAGS (\\Recent))']);
  }));

test('NOTIFY refuses unknown events with NO [BADEVENT], bad syntax with BAD, and keeps the registration in force', () =>
  withFixture(async (f) => {
    const a = await f.login();
    let r = await a.command('b1', 'NOTIFY SET (personal (MessageNew MessageExpunge Bogus))', 'NO');
    assert.equal(r.line, `b1 NO [BADEVENT ${SUPPORTED}] Unsupported event`);
    r = await a.command('b2', 'NOTIFY SET (selected (MessageNew MessageExpunge AnnotationChange))', 'NO');
    assert.match(r.line, /^b2 NO \[BADEVENT /);
    for (const bad of [
      'NOTIFY',
      'NOTIFY BOGUS',
      'NOTIFY SET',
      'NOTIFY SET (nowhere (MessageNew))',
      'NOTIFY SET (personal (MessageNew (UID)))',
      'NOTIFY SET (selected (MailboxName))',
      'NOTIFY SET (selected (MessageNew)) (selected-delayed (MessageNew))',
      'NOTIFY SET (subtree (MessageNew))',
      'NOTIFY SET (personal ())',
      'NOTIFY SET (personal (MessageNew)',
      `NOTIFY SET ${'(personal NONE) '.repeat(101).trim()}`,
      `NOTIFY SET (selected (MessageNew ${'('.repeat(40)}UID${')'.repeat(40)}))`,
      `NOTIFY SET ${Array.from({ length: 3 }, () => `(mailboxes (${Array.from({ length: 400 }, (_, i) => `m${i}`).join(' ')}) (MessageNew))`).join(' ')}`,
    ]) {
      await a.command('b', bad, 'BAD');
    }
    await a.command('ok', 'NOTIFY SET (personal NONE) (subtree (INBOX "Nonexistent") (MailboxName))');
    await a.command('none', 'NOTIFY NONE');
  }));

test('selected: another session\'s APPEND, STORE and EXPUNGE are pushed with no command running, with the MessageNew fetch attributes', () =>
  withFixture(async (f) => {
    const a = await f.login();
    const b = await f.login();
    await a.command('s', 'SELECT INBOX');
    await a.command('n', 'NOTIFY SET (selected (MessageNew (UID BODY.PEEK[HEADER.FIELDS (Subject)]) MessageExpunge FlagChange))');
    await b.command('b1', 'APPEND INBOX {29+}\r\nSubject: first\r\nX: 1\r\n\r\nbody');
    assert.deepEqual(await pushed(a, 3), [
      '* 1 EXISTS',
      '* 1 RECENT',
      '* 1 FETCH (UID 1 BODY[HEADER.FIELDS (Subject)] {18}\r\nSubject: first\r\n\r\n)',
    ]);
    await b.command('b2', 'SELECT INBOX');
    await b.command('b3', 'STORE 1 +FLAGS (\\Flagged)');
    assert.deepEqual(await pushed(a, 1), ['* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))']);
    await b.command('b4', 'STORE 1 +FLAGS (\\Deleted)');
    // Read before the EXPUNGE: a session that syncs after it has no flags to report for a gone
    // message, only its EXPUNGE (seen on a loaded machine).
    assert.deepEqual(await pushed(a, 1), ['* 1 FETCH (UID 1 FLAGS (\\Flagged \\Deleted \\Recent))']);
    await b.command('b5', 'EXPUNGE');
    assert.deepEqual(await pushed(a, 1), ['* 1 EXPUNGE']);
    // The notification did not set \Seen and the session is still in step.
    const r = await a.command('a1', 'NOOP');
    assert.deepEqual(r.untagged, []);
    // §5.2: no FETCH for a message the session added itself.
    const own = await a.command('a2', 'APPEND INBOX {8+}\r\nx: y\r\n\r\n');
    assert.deepEqual(own.untagged, ['* 1 EXISTS', '* 1 RECENT']);
    const copy = await a.command('a3', 'UID COPY 2 INBOX');
    assert.deepEqual(copy.untagged, ['* 2 EXISTS', '* 2 RECENT']);
  }));

test('selected-delayed: arrivals are pushed at once, expunges wait for a command that may report them', () =>
  withFixture(async (f) => {
    const account = (await f.ctx.store.getAccountByAddress(TEST_USER))!;
    const inbox = (await f.ctx.store.getMailbox(account.id, 'INBOX'))!;
    await f.ctx.store.append(inbox.id, message('one'));
    const a = await f.login();
    const b = await f.login();
    await b.command('bs', 'SELECT INBOX');
    await a.command('s', 'SELECT INBOX');
    await a.command('n', 'NOTIFY SET (selected-delayed (MessageNew MessageExpunge))');
    await b.command('b1', 'STORE 1 +FLAGS.SILENT (\\Deleted)');
    await b.command('b2', 'EXPUNGE');
    await f.ctx.store.append(inbox.id, message('two'));
    assert.deepEqual(await pushed(a, 2), ['* 2 EXISTS', '* 1 RECENT']);
    await a.expectSilence(150);
    let r = await a.command('f', 'FETCH 1 UID');
    assert.deepEqual(r.untagged, ['* 1 FETCH (UID 1)'], 'no EXPUNGE during FETCH: sequence numbers hold');
    r = await a.command('a1', 'NOOP');
    assert.deepEqual(r.untagged, ['* 1 EXPUNGE']);
  }));

test('other mailboxes: CREATE, RENAME, SUBSCRIBE, APPEND, STORE, EXPUNGE and DELETE elsewhere give LIST and STATUS responses', () =>
  withFixture(async (f) => {
    const a = await f.login();
    const b = await f.login();
    await a.command('s', 'SELECT INBOX');
    await a.command('n', 'NOTIFY SET (selected (MessageNew MessageExpunge)) (personal (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange))');
    await b.command('b1', 'CREATE Foo/Bar');
    assert.deepEqual(await pushed(a, 2), ['* LIST (\\HasChildren) "/" "Foo"', '* LIST (\\HasNoChildren) "/" "Foo/Bar"']);
    await b.command('b2', 'RENAME Foo Baz');
    // RFC 5465 §5.4: one LIST with OLDNAME for the renamed mailbox, none for its children.
    assert.deepEqual(await pushed(a, 1), ['* LIST (\\HasChildren) "/" "Baz" ("OLDNAME" ("Foo"))']);
    await b.command('b3', 'SUBSCRIBE Baz/Bar');
    assert.deepEqual(await pushed(a, 1), ['* LIST (\\HasNoChildren \\Subscribed) "/" "Baz/Bar"']);
    await b.command('b4', 'APPEND Baz/Bar {8+}\r\nx: y\r\n\r\n');
    assert.deepEqual(await pushed(a, 1), ['* STATUS "Baz/Bar" (MESSAGES 1 UIDNEXT 2)']);
    await b.command('b5', 'SELECT Baz/Bar');
    await b.command('b6', 'STORE 1 +FLAGS (\\Seen)');
    // §5.1 without CONDSTORE: UNSEEN.
    assert.deepEqual(await pushed(a, 1), ['* STATUS "Baz/Bar" (UNSEEN 0)']);
    await b.command('b7', 'STORE 1 +FLAGS (\\Deleted)');
    await pushed(a, 1);
    await b.command('b8', 'EXPUNGE');
    assert.deepEqual(await pushed(a, 1), ['* STATUS "Baz/Bar" (MESSAGES 0 UIDNEXT 2)']);
    await b.command('b9', 'UNSELECT');
    await b.command('b10', 'DELETE Baz/Bar');
    // The subscription outlives the mailbox (RFC 9051 §6.3.7).
    assert.deepEqual(await pushed(a, 1), ['* LIST (\\NonExistent \\Subscribed) "/" "Baz/Bar"']);
    await b.command('b11', 'UNSUBSCRIBE Baz/Bar');
    assert.deepEqual(await pushed(a, 1), ['* LIST (\\NonExistent) "/" "Baz/Bar"']);
    // With CONDSTORE on, STATUS carries HIGHESTMODSEQ (§5.2).
    await a.command('e', 'FETCH 1:* MODSEQ');
    await b.command('b12', 'APPEND Baz {8+}\r\nx: y\r\n\r\n');
    assert.match((await pushed(a, 1))[0]!, /^\* STATUS "Baz" \(MESSAGES 1 UIDNEXT 2 HIGHESTMODSEQ \d+\)$/);
    await a.expectSilence(150);
  }));

test('the session\'s own mailbox changes are not notified back to it, and filters decide what is reported', () =>
  withFixture(async (f) => {
    const a = await f.login();
    const b = await f.login();
    await a.command('n', 'NOTIFY SET (subtree Watched (MailboxName MessageNew MessageExpunge)) (mailboxes Exact (MessageNew MessageExpunge))');
    let r = await a.command('c1', 'CREATE Watched/Mine');
    assert.deepEqual(r.untagged, []);
    await b.command('b1', 'CREATE Elsewhere');
    await b.command('b2', 'APPEND Elsewhere {8+}\r\nx: y\r\n\r\n');
    await b.command('b3', 'CREATE Exact/Child');
    await b.command('b4', 'APPEND Exact/Child {8+}\r\nx: y\r\n\r\n');
    await b.command('b5', 'APPEND Exact {8+}\r\nx: y\r\n\r\n');
    assert.deepEqual(await pushed(a, 1), ['* STATUS "Exact" (MESSAGES 1 UIDNEXT 2)']);
    await b.command('b6', 'RENAME Watched/Mine Watched/Theirs');
    assert.deepEqual(await pushed(a, 1), ['* LIST (\\HasNoChildren) "/" "Watched/Theirs" ("OLDNAME" ("Watched/Mine"))']);
    r = await a.command('d', 'DELETE Watched/Theirs');
    assert.deepEqual(r.untagged, []);
    await a.expectSilence(150);
  }));

test('METADATA changes by another session are notified by entry name (RFC 5465 §5.6-5.7)', () =>
  withFixture(async (f) => {
    const a = await f.login();
    const b = await f.login();
    await a.command('n', 'NOTIFY SET (mailboxes INBOX (MailboxMetadataChange ServerMetadataChange))');
    await b.command('b1', 'SETMETADATA INBOX (/private/comment "x" /shared/comment NIL)');
    assert.deepEqual(await pushed(a, 1), ['* METADATA "INBOX" /private/comment']);
    await b.command('b2', 'SETMETADATA "" (/shared/comment "hello")');
    assert.deepEqual(await pushed(a, 1), ['* METADATA "" /shared/comment']);
    await b.command('b3', 'SETMETADATA Drafts (/shared/comment "not watched")');
    const r = await a.command('own', 'SETMETADATA INBOX (/private/comment "mine")');
    assert.deepEqual(r.untagged, []);
    await a.expectSilence(150);
  }));

test('during IDLE, NOTIFY decides what is sent: other mailboxes yes, the unwatched selected mailbox only after DONE', () =>
  withFixture(async (f) => {
    const account = (await f.ctx.store.getAccountByAddress(TEST_USER))!;
    const inbox = (await f.ctx.store.getMailbox(account.id, 'INBOX'))!;
    const drafts = (await f.ctx.store.getMailbox(account.id, 'Drafts'))!;
    const a = await f.login();
    await a.command('s', 'SELECT INBOX');
    await a.command('n', 'NOTIFY SET (mailboxes Drafts (MessageNew MessageExpunge))');
    a.send('i IDLE');
    await a.expect(/^\+ /);
    await f.ctx.store.append(inbox.id, message('inbox'));
    await f.ctx.store.append(drafts.id, message('draft'));
    assert.deepEqual(await pushed(a, 1), ['* STATUS "Drafts" (MESSAGES 1 UIDNEXT 2)']);
    await a.expectSilence(150);
    a.send('DONE');
    const r = await a.expectTagged('i', 'OK');
    assert.deepEqual(r.untagged, ['* 1 EXISTS', '* 1 RECENT']);
  }));

test('a session that falls too far behind gets NOTIFICATIONOVERFLOW once and NOTIFY is off', () =>
  withFixture(async (f) => {
    const account = (await f.ctx.store.getAccountByAddress(TEST_USER))!;
    const inbox = (await f.ctx.store.getMailbox(account.id, 'INBOX'))!;
    const other = await f.ctx.store.createMailbox(account.id, 'Busy');
    // A body larger than the socket buffers of both ends, so that a FETCH of it to a client that
    // does not read keeps the session inside that command.
    const big = makeMessage({ from: 'bob@example.test', to: TEST_USER, subject: 'big', body: `${'b'.repeat(998)}\r\n`.repeat(16 * 1024) });
    await f.ctx.store.append(inbox.id, { raw: big, parsed: parseMessage(big) });
    const a = await f.login();
    await a.command('s', 'SELECT INBOX');
    await a.command('n', 'NOTIFY SET (personal (MessageNew MessageExpunge FlagChange))');
    a.pause();
    a.send('f FETCH 1 BODY.PEEK[]');
    await new Promise((r) => setTimeout(r, 300));
    // More changes, each its own transaction (one event each on every backend), than a session
    // may hold while it cannot send.
    const { uid } = await f.ctx.store.append(other.id, message('flagged'));
    for (let i = 0; i <= MAX_QUEUED_EVENTS + 10; i++) await f.ctx.store.setFlags(other.id, [uid], i % 2 === 0 ? 'add' : 'remove', ['$Busy']);
    a.resume();
    const r = await a.expectTagged('f', 'OK', 60_000);
    assert.match(r.untagged[0] ?? '', /^\* 1 FETCH \(BODY\[\] \{\d+\}/);
    // The notice comes once, with the FETCH's responses or right after them.
    const rest = r.untagged.slice(1);
    if (rest.length === 0) rest.push(await a.readLine());
    assert.equal(rest.length, 1, rest.join('\n'));
    assert.match(rest[0]!, /^\* OK \[NOTIFICATIONOVERFLOW\] /);
    await f.ctx.store.append(other.id, message('after'));
    await a.expectSilence(200);
    const n = await a.command('a1', 'NOOP');
    assert.deepEqual(n.untagged, []);
  }));

test('an SMTP delivery reaches a NOTIFY session as STATUS for INBOX while another mailbox is selected', async () => {
  const h = await startServer();
  const imap = createImapServer(h.ctx, { implicitTls: false });
  const port = await imap.listen('127.0.0.1', 0);
  try {
    await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const a = await connectImap(port);
    await a.expect(/^\* OK /);
    await a.command('l', 'LOGIN bob@example.com pw-bob-123456');
    await a.command('s', 'SELECT Drafts');
    await a.command('n', 'NOTIFY SET (inboxes (MessageNew MessageExpunge))');
    const c = await openTransaction(h.port, 'sender@example.net', ['bob@example.com']);
    await c.cmd('DATA', 354);
    c.write(dotStuff('Subject: pushed\r\nFrom: sender@example.net\r\n\r\nhello\r\n'));
    await c.expect(250);
    c.close();
    assert.deepEqual(await pushed(a, 1), ['* STATUS "INBOX" (MESSAGES 1 UIDNEXT 2)']);
    a.close();
  } finally {
    await imap.close(500);
    await h.close();
  }
});
