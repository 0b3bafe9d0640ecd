import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { ImapFlow } from 'imapflow';
import { parseMessage } from '../../src/mail/parse.js';
import type { Mailbox, MessageEntry } from '../../src/store/types.js';
import { startImap, TEST_PASSWORD, TEST_USER, type ImapFixture } from '../helpers/imap-transcript.js';
import { makeMessage } from '../helpers/messages.js';

async function inbox(f: ImapFixture): Promise<Mailbox> {
  const account = (await f.ctx.store.getAccountByAddress(TEST_USER))!;
  return (await f.ctx.store.getMailbox(account.id, 'INBOX'))!;
}

async function entries(f: ImapFixture): Promise<MessageEntry[]> {
  return f.ctx.store.listEntries((await inbox(f)).id);
}

async function modseqOf(f: ImapFixture, uid: number): Promise<number> {
  return (await entries(f)).find((e) => e.uid === uid)!.modseq;
}

/** n messages in INBOX, appended in batches (one transaction each). */
async function addMessages(f: ImapFixture, n: number): Promise<void> {
  const mb = await inbox(f);
  for (let done = 0; done < n; ) {
    const batch = [];
    for (let i = 0; i < 500 && done < n; i++, done++) {
      const raw = makeMessage({ from: 'bob@example.test', to: TEST_USER, subject: `m${done + 1}`, body: `body ${done + 1}`, messageId: `m${done + 1}@x.test` });
      batch.push({ raw, parsed: parseMessage(raw) });
    }
    await f.ctx.store.appendMany(mb.id, batch);
  }
}

test('CONDSTORE and QRESYNC are announced; SELECT, EXAMINE and STATUS give HIGHESTMODSEQ; ENABLE lists them', async () => {
  const f = await startImap();
  try {
    await addMessages(f, 2);
    const t = await f.login();
    const caps = (await t.command('a0', 'CAPABILITY')).untagged[0]!.split(' ');
    assert.ok(caps.includes('CONDSTORE') && caps.includes('QRESYNC'), caps.join(' '));
    const highest = (await inbox(f)).highestModSeq;
    let r = await t.command('a1', 'STATUS INBOX (MESSAGES HIGHESTMODSEQ)');
    assert.deepEqual(r.untagged, [`* STATUS "INBOX" (MESSAGES 2 HIGHESTMODSEQ ${highest})`]);
    r = await t.command('a2', 'EXAMINE INBOX');
    assert.ok(r.untagged.includes(`* OK [HIGHESTMODSEQ ${highest}] Highest`), r.untagged.join('\n'));
    r = await t.command('a3', 'SELECT INBOX (CONDSTORE)');
    assert.ok(r.untagged.includes(`* OK [HIGHESTMODSEQ ${highest}] Highest`), r.untagged.join('\n'));
    assert.equal(r.line, 'a3 OK [READ-WRITE] SELECT completed');
    await t.command('a4', 'UNSELECT');
    r = await t.command('a5', 'ENABLE CONDSTORE');
    assert.deepEqual(r.untagged, ['* ENABLED']); // already enabled by SELECT (CONDSTORE)
    r = await t.command('a6', 'ENABLE QRESYNC CONDSTORE');
    assert.deepEqual(r.untagged, ['* ENABLED QRESYNC']);
    const u = await f.login();
    r = await u.command('b1', 'ENABLE CONDSTORE');
    assert.deepEqual(r.untagged, ['* ENABLED CONDSTORE']);
  } finally {
    await f.close();
  }
});

test("FETCH MODSEQ and CHANGEDSINCE; a second session's flag change arrives with its MODSEQ", async () => {
  const f = await startImap();
  try {
    await addMessages(f, 3);
    const a = await f.login();
    const b = await f.login();
    await b.command('b0', 'SELECT INBOX');
    await a.command('a0', 'SELECT INBOX');
    const m1 = await modseqOf(f, 1);
    // FETCH MODSEQ enables CONDSTORE.
    let r = await a.command('a1', 'FETCH 1 (MODSEQ)');
    // RFC 7162 §3.1: the first CONDSTORE enabling command with a mailbox selected reports HIGHESTMODSEQ.
    assert.match(r.untagged[0] ?? '', /^\* OK \[HIGHESTMODSEQ \d+\] Highest$/);
    assert.deepEqual(r.untagged.slice(1), [`* 1 FETCH (MODSEQ (${m1}))`]);
    const before = (await inbox(f)).highestModSeq;
    await b.command('b1', 'STORE 2 +FLAGS (\\Flagged)');
    const m2 = await modseqOf(f, 2);
    assert.ok(m2 > before);
    r = await a.command('a2', 'NOOP');
    assert.deepEqual(r.untagged, [`* 2 FETCH (UID 2 FLAGS (\\Flagged) MODSEQ (${m2}))`]);
    // Once enabled, every FETCH response carries MODSEQ.
    r = await a.command('a3', 'FETCH 2 (FLAGS)');
    assert.deepEqual(r.untagged, [`* 2 FETCH (FLAGS (\\Flagged) MODSEQ (${m2}))`]);
    r = await a.command('a4', `UID FETCH 1:* (FLAGS) (CHANGEDSINCE ${before})`);
    assert.deepEqual(r.untagged, [`* 2 FETCH (UID 2 FLAGS (\\Flagged) MODSEQ (${m2}))`]);
    r = await a.command('a5', `UID FETCH 1:* (FLAGS) (CHANGEDSINCE ${m2})`);
    assert.deepEqual(r.untagged, []);
    // RFC 7162 §3.2.6: VANISHED needs QRESYNC.
    await a.command('a6', `UID FETCH 1:* (FLAGS) (CHANGEDSINCE ${before} VANISHED)`, 'BAD');
    await a.command('a7', 'FETCH 1 (FLAGS) (CHANGEDSINCE 0)', 'BAD');
  } finally {
    await f.close();
  }
});

test('STORE UNCHANGEDSINCE stores where the modseq is not above it and answers MODIFIED for the rest', async () => {
  const f = await startImap();
  try {
    await addMessages(f, 3);
    const a = await f.login();
    const b = await f.login();
    await b.command('b0', 'SELECT INBOX');
    await a.command('a0', 'SELECT INBOX');
    const base = (await inbox(f)).highestModSeq;
    // Another session changes message 2 after A read `base`.
    await b.command('b1', 'STORE 2 +FLAGS.SILENT (\\Seen)');
    let r = await a.command('a1', `STORE 1:3 (UNCHANGEDSINCE ${base}) +FLAGS (\\Flagged)`);
    const m1 = await modseqOf(f, 1);
    const m3 = await modseqOf(f, 3);
    const m2 = await modseqOf(f, 2);
    // RFC 7162 §3.1: the first CONDSTORE enabling command with a mailbox selected reports HIGHESTMODSEQ.
    assert.match(r.untagged[0] ?? '', /^\* OK \[HIGHESTMODSEQ \d+\] Highest$/);
    assert.deepEqual(r.untagged.slice(1), [`* 1 FETCH (UID 1 FLAGS (\\Flagged) MODSEQ (${m1}))`, `* 3 FETCH (UID 3 FLAGS (\\Flagged) MODSEQ (${m3}))`, `* 2 FETCH (UID 2 FLAGS (\\Seen) MODSEQ (${m2}))`]);
    assert.equal(r.line, 'a1 OK [MODIFIED 2] Conditional STORE failed');
    assert.deepEqual((await entries(f)).map((e) => e.flags), [['\\Flagged'], ['\\Seen'], ['\\Flagged']]);
    // UID form: MODIFIED holds UIDs; .SILENT still reports the new MODSEQ.
    r = await a.command('a2', `UID STORE 1:3 (UNCHANGEDSINCE ${m2}) +FLAGS.SILENT (\\Answered)`);
    const n2 = await modseqOf(f, 2);
    assert.deepEqual(r.untagged, [`* 2 FETCH (UID 2 MODSEQ (${n2}))`]);
    assert.equal(r.line, 'a2 OK [MODIFIED 1,3] Conditional STORE failed');
    // UNCHANGEDSINCE 0 always fails (RFC 7162 §3.1.3).
    r = await a.command('a3', 'UID STORE 2 (UNCHANGEDSINCE 0) -FLAGS (\\Answered)');
    assert.deepEqual(r.untagged, []);
    assert.equal(r.line, 'a3 OK [MODIFIED 2] Conditional STORE failed');
  } finally {
    await f.close();
  }
});

test('SEARCH MODSEQ ends its result with the highest MODSEQ of the messages found', async () => {
  const f = await startImap();
  try {
    await addMessages(f, 4);
    const t = await f.login();
    await t.command('a0', 'SELECT INBOX');
    const base = (await inbox(f)).highestModSeq;
    // Two commands, so messages 2 and 4 get different modseqs.
    await t.command('a1', 'STORE 2 +FLAGS.SILENT (\\Seen)');
    await t.command('a1b', 'STORE 4 +FLAGS.SILENT (\\Seen)');
    const m4 = await modseqOf(f, 4);
    let r = await t.command('a2', `SEARCH MODSEQ ${base + 1}`);
    // RFC 7162 §3.1: the first CONDSTORE enabling command with a mailbox selected reports HIGHESTMODSEQ.
    assert.match(r.untagged[0] ?? '', /^\* OK \[HIGHESTMODSEQ \d+\] Highest$/);
    assert.deepEqual(r.untagged.slice(1), [`* SEARCH 2 4 (MODSEQ ${m4})`]);
    r = await t.command('a3', `UID SEARCH MODSEQ "/flags/\\\\seen" all ${base + 1} SEEN`);
    assert.deepEqual(r.untagged, [`* SEARCH 2 4 (MODSEQ ${m4})`]);
    r = await t.command('a4', `SEARCH RETURN (COUNT) MODSEQ ${base + 1}`);
    assert.deepEqual(r.untagged, [`* ESEARCH (TAG "a4") COUNT 2 MODSEQ ${m4}`]);
    // With only MIN (or MAX), MODSEQ is that message's own (RFC 4731, RFC 7162 §3.1.5).
    const m2 = await modseqOf(f, 2);
    assert.ok(m2 < m4);
    r = await t.command('a6', `SEARCH RETURN (MIN) MODSEQ ${base + 1}`);
    assert.deepEqual(r.untagged, [`* ESEARCH (TAG "a6") MIN 2 MODSEQ ${m2}`]);
    r = await t.command('a7', `UID SEARCH RETURN (MAX) MODSEQ ${base + 1}`);
    assert.deepEqual(r.untagged, [`* ESEARCH (TAG "a7") UID MAX 4 MODSEQ ${m4}`]);
    r = await t.command('a5', `SEARCH MODSEQ ${m4 + 1}`);
    assert.deepEqual(r.untagged, ['* SEARCH']);
  } finally {
    await f.close();
  }
});

test('with QRESYNC, expunges are VANISHED (EXPUNGE, UID EXPUNGE, MOVE, another session), CLOSE sends nothing', async () => {
  const f = await startImap();
  try {
    await addMessages(f, 6);
    const a = await f.login();
    const b = await f.login();
    await b.command('b0', 'SELECT INBOX');
    // QRESYNC select parameter without ENABLE QRESYNC: BAD.
    await a.command('a0', 'SELECT INBOX (QRESYNC (1 1))', 'BAD');
    await a.command('a1', 'ENABLE QRESYNC');
    await a.command('a2', 'SELECT INBOX');
    await a.command('a3', 'STORE 1,2 +FLAGS.SILENT (\\Deleted)');
    let r = await a.command('a4', 'EXPUNGE');
    assert.deepEqual(r.untagged, ['* VANISHED 1:2']);
    await a.command('a5', 'UID STORE 3 +FLAGS.SILENT (\\Deleted)');
    r = await a.command('a6', 'UID EXPUNGE 3');
    assert.deepEqual(r.untagged, ['* VANISHED 3']);
    r = await a.command('a7', 'UID MOVE 4 Trash');
    assert.equal(r.untagged.length, 2);
    assert.match(r.untagged[0]!, /^\* OK \[COPYUID \d+ 4 1\] Moved$/);
    assert.equal(r.untagged[1], '* VANISHED 4');
    await b.command('b1', 'UID STORE 5 +FLAGS.SILENT (\\Deleted)');
    await b.command('b2', 'UID EXPUNGE 5');
    r = await a.command('a8', 'NOOP');
    assert.deepEqual(r.untagged, ['* VANISHED 5']);
    await a.command('a9', 'STORE 1 +FLAGS.SILENT (\\Deleted)');
    r = await a.command('a10', 'CLOSE');
    assert.deepEqual(r.untagged, []);
    assert.deepEqual((await entries(f)).map((e) => e.uid), []);
  } finally {
    await f.close();
  }
});

test('SELECT (QRESYNC) sends the changed messages and VANISHED (EARLIER); UID FETCH (CHANGEDSINCE n VANISHED) too', async () => {
  const f = await startImap();
  try {
    await addMessages(f, 6);
    const mb = await inbox(f);
    const base = mb.highestModSeq;
    const b = await f.login();
    await b.command('b0', 'SELECT INBOX');
    await b.command('b1', 'STORE 2,5 +FLAGS.SILENT (\\Seen)');
    await b.command('b2', 'STORE 3,4 +FLAGS.SILENT (\\Deleted)');
    await b.command('b3', 'EXPUNGE');
    const m2 = await modseqOf(f, 2);
    const m5 = await modseqOf(f, 5);
    const a = await f.login();
    await a.command('a0', 'ENABLE QRESYNC');
    let r = await a.command('a1', `SELECT INBOX (QRESYNC (${mb.uidValidity} ${base}))`);
    assert.deepEqual(r.untagged.slice(-3), [`* 2 FETCH (UID 2 FLAGS (\\Seen) MODSEQ (${m2}))`, `* 3 FETCH (UID 5 FLAGS (\\Seen) MODSEQ (${m5}))`, '* VANISHED (EARLIER) 3:4']);
    // known-uids narrows VANISHED (EARLIER); seq-match data is accepted.
    r = await a.command('a2', `EXAMINE INBOX (QRESYNC (${mb.uidValidity} ${base} 1:3 (1:3 1:3)))`);
    assert.deepEqual(r.untagged.slice(-3), [`* 2 FETCH (UID 2 FLAGS (\\Seen) MODSEQ (${m2}))`, `* 3 FETCH (UID 5 FLAGS (\\Seen) MODSEQ (${m5}))`, '* VANISHED (EARLIER) 3']);
    // Another UIDVALIDITY: no resynchronisation, a plain EXAMINE.
    r = await a.command('a3', `EXAMINE INBOX (QRESYNC (${mb.uidValidity + 1} ${base}))`);
    assert.ok(!r.untagged.some((l) => /FETCH|VANISHED/.test(l)), r.untagged.join('\n'));
    r = await a.command('a4', `UID FETCH 1:* (FLAGS) (CHANGEDSINCE ${base} VANISHED)`);
    assert.deepEqual(r.untagged, ['* VANISHED (EARLIER) 3:4', `* 2 FETCH (UID 2 FLAGS (\\Seen) MODSEQ (${m2}))`, `* 3 FETCH (UID 5 FLAGS (\\Seen) MODSEQ (${m5}))`]);
    r = await a.command('a5', `UID FETCH 4:6 (FLAGS) (CHANGEDSINCE ${base} VANISHED)`);
    assert.deepEqual(r.untagged, ['* VANISHED (EARLIER) 4', `* 3 FETCH (UID 5 FLAGS (\\Seen) MODSEQ (${m5}))`]);
    await a.command('a6', `FETCH 1:* (FLAGS) (CHANGEDSINCE ${base} VANISHED)`, 'BAD');
  } finally {
    await f.close();
  }
});

test('a QRESYNC resync after 1,000 flag changes on a 2,000-message mailbox sends only those 1,000 FETCH lines and VANISHED (EARLIER)', async () => {
  const f = await startImap();
  try {
    await addMessages(f, 2000);
    const mb = await inbox(f);
    const base = mb.highestModSeq;
    const b = await f.login();
    await b.command('b0', 'SELECT INBOX');
    // Every even UID flagged (1,000 changes), then three odd ones expunged.
    const even = Array.from({ length: 1000 }, (_, i) => 2 * (i + 1));
    await b.command('b1', `UID STORE ${even.join(',')} +FLAGS.SILENT (\\Flagged)`);
    await b.command('b2', 'UID STORE 1,999,1999 +FLAGS.SILENT (\\Deleted)');
    await b.command('b3', 'UID EXPUNGE 1,999,1999');
    const now = await entries(f);
    assert.equal(now.length, 1997);
    const expected: string[] = [];
    now.forEach((e, i) => {
      if (e.uid % 2 === 0) expected.push(`* ${i + 1} FETCH (UID ${e.uid} FLAGS (\\Flagged) MODSEQ (${e.modseq}))`);
    });
    assert.equal(expected.length, 1000);
    expected.push('* VANISHED (EARLIER) 1,999,1999');
    const a = await f.login();
    await a.command('a0', 'ENABLE QRESYNC');
    const r = await a.command('a1', `SELECT INBOX (QRESYNC (${mb.uidValidity} ${base}))`);
    const resync = r.untagged.filter((l) => /FETCH|VANISHED/.test(l));
    assert.deepEqual(resync, expected);
    assert.ok(r.untagged.includes('* 1997 EXISTS'));
    assert.equal(r.line, 'a1 OK [READ-WRITE] SELECT completed');
  } finally {
    await f.close();
  }
});

function flow(f: ImapFixture): ImapFlow {
  return new ImapFlow({ host: '127.0.0.1', port: f.port, secure: false, tls: { rejectUnauthorized: false }, auth: { user: TEST_USER, pass: TEST_PASSWORD }, logger: false, qresync: true });
}

test('imapflow with qresync: true enables QRESYNC, resyncs on open and follows live changes', async () => {
  const f = await startImap();
  const c1 = flow(f);
  const c2 = flow(f);
  try {
    await addMessages(f, 5);
    await c1.connect();
    assert.ok(c1.enabled.has('QRESYNC') && c1.enabled.has('CONDSTORE'));
    const opened = await c1.mailboxOpen('INBOX');
    const uidValidity = opened.uidValidity;
    const since = opened.highestModseq;
    assert.equal(since, BigInt((await inbox(f)).highestModSeq));
    await c1.logout();

    // Changes while the client is away.
    const t = await f.login();
    await t.command('t0', 'SELECT INBOX');
    await t.command('t1', 'UID STORE 2 +FLAGS.SILENT (\\Seen)');
    await t.command('t2', 'UID STORE 4 +FLAGS.SILENT (\\Deleted)');
    await t.command('t3', 'UID EXPUNGE 4');

    const flagEvents: Array<{ uid?: number; modseq?: bigint; flags?: Set<string> }> = [];
    const expungeEvents: Array<{ uid?: number; vanished: boolean; earlier?: boolean }> = [];
    c2.on('flags', (ev) => flagEvents.push(ev));
    c2.on('expunge', (ev) => expungeEvents.push(ev));
    await c2.connect();
    await c2.mailboxOpen('INBOX', { uidValidity, changedSince: since } as Parameters<ImapFlow['mailboxOpen']>[1]);
    assert.deepEqual(
      flagEvents.map((e) => [e.uid, e.modseq, [...(e.flags ?? [])]]),
      [[2, BigInt(await modseqOf(f, 2)), ['\\Seen']]],
    );
    assert.deepEqual(expungeEvents.map((e) => [e.uid, e.vanished, e.earlier]), [[4, true, true]]);

    // Live: another session's change and expunge reach the open mailbox.
    flagEvents.length = 0;
    expungeEvents.length = 0;
    await t.command('t4', 'UID STORE 3 +FLAGS.SILENT (\\Flagged)');
    await t.command('t5', 'UID STORE 5 +FLAGS.SILENT (\\Deleted)');
    await t.command('t6', 'UID EXPUNGE 5');
    await c2.noop();
    assert.deepEqual(flagEvents.map((e) => [e.uid, e.modseq]), [[3, BigInt(await modseqOf(f, 3))]]);
    assert.deepEqual(expungeEvents.map((e) => [e.uid, e.vanished, e.earlier]), [[5, true, false]]);

    // A changedSince fetch returns only what changed.
    const changed: number[] = [];
    for await (const msg of c2.fetch('1:*', { flags: true }, { uid: true, changedSince: since })) changed.push(msg.uid);
    assert.deepEqual(changed, [2, 3]);
    assert.equal(c2.mailbox && c2.mailbox.exists, 3);
  } finally {
    await c2.logout().catch(() => {});
    c1.close();
    await f.close();
  }
});
