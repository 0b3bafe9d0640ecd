/**
 * Commands of one session racing another session's EXPUNGE (RFC 3501 §7.4.1, RFC 2180 §4.1,
 * RFC 9051 §7.5.1): the first session answers from its own view and never NO for SEARCH, FETCH
 * or STORE; what it could not see any more is left out and the tagged OK says EXPUNGEISSUED
 * (RFC 5530 §3). COPY and MOVE copy all or nothing: NO [EXPUNGEISSUED] when one is gone.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { parseMessage } from '../../src/mail/parse.js';
import type { MailStore } from '../../src/store/types.js';
import { startImap, TEST_USER, type ImapFixture, type ImapTranscript } from '../helpers/imap-transcript.js';
import { makeMessage } from '../helpers/messages.js';

/** n distinct messages in INBOX (distinct bytes: each expunge frees its blob). */
async function fill(f: ImapFixture, n: number, from = 0): Promise<void> {
  const account = (await f.ctx.store.getAccountByAddress(TEST_USER))!;
  const inbox = (await f.ctx.store.getMailbox(account.id, 'INBOX'))!;
  const batch = [];
  for (let i = from; i < from + n; i++) {
    const raw = makeMessage({
      from: 'bob@example.test',
      to: TEST_USER,
      subject: `race ${i}`,
      body: `body of message ${i}\r\n${'filler '.repeat(40)}`,
      date: new Date(Date.UTC(2024, 0, 1 + (i % 28))),
      messageId: `race${i}-${Date.now()}@x.test`,
    });
    batch.push({ raw, parsed: parseMessage(raw) });
  }
  await f.ctx.store.appendMany(inbox.id, batch);
}

/** n messages in INBOX and two sessions that selected it (tags a1 and b1). */
async function twoSelected(f: ImapFixture, n: number): Promise<{ a: ImapTranscript; b: ImapTranscript }> {
  await fill(f, n);
  const a = await f.login();
  const b = await f.login();
  await a.command('a1', 'SELECT INBOX');
  await b.command('b1', 'SELECT INBOX');
  return { a, b };
}

/**
 * The fixture's store, with one hook: while `before` is set, the next read of a parse record
 * (SEARCH SENTBEFORE reads them after the entries) first waits for it. The hook runs another
 * real IMAP session's EXPUNGE, so the race happens at that exact point on every backend; the
 * store itself is the real one.
 */
function hooked(): { wrap: (store: MailStore) => MailStore; arm: (fn: () => Promise<void>) => void } {
  let before: (() => Promise<void>) | null = null;
  return {
    arm: (fn) => {
      before = fn;
    },
    wrap: (store) =>
      new Proxy(store, {
        get(target, prop, receiver) {
          if (prop === 'getParsed') {
            return async (hash: string) => {
              const fn = before;
              before = null;
              if (fn !== null) await fn();
              return target.getParsed(hash);
            };
          }
          const v = Reflect.get(target, prop, receiver) as unknown;
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      }),
  };
}

async function expungeAll(b: ImapTranscript, tag: string): Promise<void> {
  await b.command(`${tag}a`, 'STORE 1:* +FLAGS.SILENT (\\Deleted)');
  await b.command(`${tag}b`, 'EXPUNGE');
}

test('SEARCH racing another session\'s EXPUNGE answers OK [EXPUNGEISSUED] from its own view, without the expunged messages', async () => {
  const h = hooked();
  const f = await startImap({}, (ctx) => ({ ...ctx, store: h.wrap(ctx.store) }));
  try {
    const { a, b } = await twoSelected(f, 6);
    // Between the entries read and the parse records read, B expunges every message, and the
    // blobs go at once (the SQLite store's sweep, else a few seconds later).
    h.arm(async () => {
      await expungeAll(b, 'b2');
      await f.ctx.store.collectGarbage();
    });
    const r = await a.command('a2', 'SEARCH SENTBEFORE 1-Jan-2030');
    assert.equal(r.line, 'a2 OK [EXPUNGEISSUED] SEARCH completed');
    // A message whose Date can no longer be read is left out; one whose parse record is still at
    // hand (cached) matches as it last was. No EXPUNGE during SEARCH (RFC 9051 §7.5.1).
    assert.equal(r.untagged.length, 1);
    const hits = r.untagged[0]!.split(' ').slice(2).map(Number);
    assert.ok(hits.length < 6 && hits.every((n) => n >= 1 && n <= 6), r.untagged[0]);
    // A's view still holds them (RFC 9051 §7.5.1): flag keys answer from the last known state.
    const all = await a.command('a3', 'SEARCH UNSEEN');
    assert.deepEqual(all.untagged, ['* SEARCH 1 2 3 4 5 6']);
    const larger = await a.command('a4', 'SEARCH LARGER 1');
    assert.deepEqual(larger.untagged, ['* SEARCH']);
    assert.equal(larger.line, 'a4 OK [EXPUNGEISSUED] SEARCH completed');
    const n = await a.command('a5', 'NOOP');
    assert.equal(n.untagged.filter((l) => / EXPUNGE$/.test(l)).length, 6, n.untagged.join('\n'));
    const after = await a.command('a6', 'SEARCH SENTBEFORE 1-Jan-2030');
    assert.deepEqual(after, { line: 'a6 OK SEARCH completed', untagged: ['* SEARCH'] });
  } finally {
    await f.close();
  }
});

test('FETCH, STORE, COPY and MOVE of messages another session expunged: FETCH and STORE leave them out, COPY and MOVE refuse', async () => {
  const f = await startImap();
  try {
    const { a, b } = await twoSelected(f, 4);
    await b.command('b2', 'STORE 2:3 +FLAGS.SILENT (\\Deleted)');
    await b.command('b3', 'EXPUNGE');
    // A has not heard of it: sequence numbers 1-4 still stand (RFC 9051 §7.5.1).
    let r = await a.command('a2', 'FETCH 1:4 (RFC822.SIZE)');
    assert.equal(r.line, 'a2 OK [EXPUNGEISSUED] FETCH completed');
    assert.deepEqual(
      r.untagged.map((l) => l.replace(/RFC822\.SIZE \d+/, 'RFC822.SIZE n')),
      ['* 1 FETCH (RFC822.SIZE n)', '* 4 FETCH (RFC822.SIZE n)'],
    );
    // What the view holds answers FLAGS without the store: the last known state, OK.
    r = await a.command('a3', 'FETCH 2 (FLAGS)');
    assert.deepEqual(r, { line: 'a3 OK FETCH completed', untagged: ['* 2 FETCH (FLAGS (\\Recent))'] });
    r = await a.command('a4', 'STORE 1:4 +FLAGS (\\Flagged)');
    assert.equal(r.line, 'a4 OK [EXPUNGEISSUED] STORE completed');
    assert.deepEqual(r.untagged, ['* 1 FETCH (FLAGS (\\Flagged \\Recent))', '* 4 FETCH (FLAGS (\\Flagged \\Recent))']);
    // COPY and MOVE: all or nothing (as Dovecot): NO [EXPUNGEISSUED], nothing copied.
    r = await a.command('a5', 'COPY 1:4 Archive', 'NO');
    assert.equal(r.line, 'a5 NO [EXPUNGEISSUED] Some of the messages were expunged; nothing was copied');
    r = await a.command('a6', 'MOVE 1:4 Archive', 'NO');
    assert.equal(r.line, 'a6 NO [EXPUNGEISSUED] Some of the messages were expunged; nothing was copied');
    // Nothing was copied; STATUS may announce the expunges (RFC 9051 §7.5.1), and then the view
    // is current.
    r = await a.command('a7', 'STATUS Archive (MESSAGES)');
    assert.deepEqual(r.untagged, ['* STATUS "Archive" (MESSAGES 0)', '* 3 EXPUNGE', '* 2 EXPUNGE']);
    // Bad input is still BAD: a sequence number beyond the view.
    await a.command('a8', 'COPY 9 Archive', 'BAD');
    r = await a.command('a10', 'COPY 1:2 Archive');
    assert.match(r.line, /^a10 OK \[COPYUID \d+ 1,4 1:2\] /);
  } finally {
    await f.close();
  }
});

test('two sessions: one expunges messages in small batches while the other searches, fetches and stores; every answer is OK', async () => {
  const f = await startImap();
  try {
    await fill(f, 300);
    const a = await f.login();
    const b = await f.login();
    await a.command('a0', 'SELECT INBOX');
    await b.command('b0', 'SELECT INBOX');
    let stop = false;
    const expunger = (async () => {
      for (let k = 0; !stop && k < 60; k++) {
        await b.command(`b${k}s`, 'STORE 1:5 +FLAGS.SILENT (\\Deleted)');
        await b.command(`b${k}e`, 'EXPUNGE');
      }
    })();
    const commands = [
      'SEARCH SENTBEFORE 20-Jan-2024',
      'SEARCH LARGER 100 SENTSINCE 2-Jan-2024',
      'SEARCH OR HEADER Subject race SENTON 3-Jan-2024 UNSEEN',
      'UID SEARCH TEXT filler SENTBEFORE 1-Jan-2030',
      'FETCH 1:* (UID RFC822.SIZE ENVELOPE)',
      'STORE 1:* +FLAGS.SILENT (\\Seen)',
      'STORE 1:* -FLAGS.SILENT (\\Seen)',
    ];
    let i = 0;
    let issued = 0;
    while (!stop) {
      const r = await a.command(`a${++i}`, commands[i % commands.length]!);
      if (r.line.includes('[EXPUNGEISSUED]')) issued++;
      if (i % 20 === 0) await a.command(`n${i}`, 'NOOP');
      stop = (await Promise.race([expunger.then(() => true), Promise.resolve(false)])) || i > 2000;
    }
    await expunger;
    await a.command('z', 'NOOP');
    const left = await a.command('z2', 'SEARCH ALL');
    assert.deepEqual(left.untagged, ['* SEARCH'], `${issued} EXPUNGEISSUED`);
  } finally {
    await f.close();
  }
});

test('a text SEARCH (BODY, SUBJECT) after another session expunged says OK [EXPUNGEISSUED]: the text index no longer has those messages', async () => {
  const f = await startImap();
  try {
    const { a, b } = await twoSelected(f, 6);
    // Nothing expunged yet: a plain OK.
    let r = await a.command('a2', 'SEARCH BODY "body of message"');
    assert.deepEqual(r.untagged, ['* SEARCH 1 2 3 4 5 6']);
    assert.equal(r.line, 'a2 OK SEARCH completed');
    await b.command('b2', 'STORE 1:3 +FLAGS.SILENT (\\Deleted)');
    await b.command('b3', 'EXPUNGE');
    // A still numbers six messages; the three expunged ones cannot be searched any more.
    r = await a.command('a3', 'SEARCH BODY "body of message"');
    assert.deepEqual(r.untagged, ['* SEARCH 4 5 6']);
    assert.equal(r.line, 'a3 OK [EXPUNGEISSUED] SEARCH completed');
    r = await a.command('a4', 'SEARCH SUBJECT "race 5"');
    assert.deepEqual(r.untagged, ['* SEARCH 6']);
    assert.equal(r.line, 'a4 OK [EXPUNGEISSUED] SEARCH completed');
    // Once told (NOOP), the view matches the store again.
    await a.command('a5', 'NOOP');
    r = await a.command('a6', 'SEARCH BODY "body of message"');
    assert.deepEqual(r.untagged, ['* SEARCH 1 2 3']);
    assert.equal(r.line, 'a6 OK SEARCH completed');
  } finally {
    await f.close();
  }
});
