import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { parseMessage } from '../../src/mail/parse.js';
import type { Mailbox, MessageEntry } from '../../src/store/types.js';
import { startImap, TEST_USER, type ImapFixture } from '../helpers/imap-transcript.js';
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

test('CONDSTORE is announced; SELECT, EXAMINE and STATUS give HIGHESTMODSEQ; ENABLE lists them', async () => {
  const f = await startImap();
  try {
    await addMessages(f, 2);
    const t = await f.login();
    const caps = (await t.command('a0', 'CAPABILITY')).untagged[0]!.split(' ');
    assert.ok(caps.includes('CONDSTORE'), caps.join(' '));
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
    assert.deepEqual(r.untagged, [`* 1 FETCH (MODSEQ (${m1}))`]);
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
    assert.deepEqual(r.untagged, [`* 1 FETCH (UID 1 FLAGS (\\Flagged) MODSEQ (${m1}))`, `* 3 FETCH (UID 3 FLAGS (\\Flagged) MODSEQ (${m3}))`, `* 2 FETCH (UID 2 FLAGS (\\Seen) MODSEQ (${m2}))`]);
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
    await t.command('a1', 'STORE 2,4 +FLAGS.SILENT (\\Seen)');
    const m4 = await modseqOf(f, 4);
    let r = await t.command('a2', `SEARCH MODSEQ ${base + 1}`);
    assert.deepEqual(r.untagged, [`* SEARCH 2 4 (MODSEQ ${m4})`]);
    r = await t.command('a3', `UID SEARCH MODSEQ "/flags/\\\\seen" all ${base + 1} SEEN`);
    assert.deepEqual(r.untagged, [`* SEARCH 2 4 (MODSEQ ${m4})`]);
    r = await t.command('a4', `SEARCH RETURN (COUNT) MODSEQ ${base + 1}`);
    assert.deepEqual(r.untagged, [`* ESEARCH (TAG "a4") COUNT 2 MODSEQ ${m4}`]);
    r = await t.command('a5', `SEARCH MODSEQ ${m4 + 1}`);
    assert.deepEqual(r.untagged, ['* SEARCH']);
  } finally {
    await f.close();
  }
});
