/**
 * QuietMailboxes (src/store/sql/postgres/quiet.ts): what the PostgreSQL store remembers of the
 * mailboxes a changesSince found unchanged, and every way that memory is forgotten.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { QuietMailboxes } from '../../src/store/sql/postgres/quiet.js';
import { asAccountId, asMailboxId, asModSeq } from '../../src/lib/brand.js';
import type { ChangeEvent } from '../../src/store/types.js';

const event = (mailbox: number | null, modseq = 1): ChangeEvent => ({
  accountId: asAccountId(1),
  mailboxId: mailbox === null ? null : asMailboxId(mailbox),
  modseq: asModSeq(modseq),
  kind: 'flags',
});

test('a read that found nothing is remembered for its state until an event names the mailbox', () => {
  const q = new QuietMailboxes();
  const m = q.mark();
  q.found(7, 40, 11, m, true);
  assert.equal(q.isQuiet(7, 40, 11), true);
  // Another state of the view (a newer modseq or UIDNEXT) is not the one found.
  assert.equal(q.isQuiet(7, 41, 11), false);
  assert.equal(q.isQuiet(7, 40, 12), false);
  assert.equal(q.isQuiet(8, 40, 11), false);
  q.events([event(8)]);
  assert.equal(q.isQuiet(7, 40, 11), true, 'an event of another mailbox changes nothing');
  q.events([event(7)]);
  assert.equal(q.isQuiet(7, 40, 11), false);
});

test('an event for the mailbox between the read and its answer: the empty answer is not kept', () => {
  const q = new QuietMailboxes();
  const m = q.mark();
  q.events([event(7)]);
  q.found(7, 40, 11, m, true);
  assert.equal(q.isQuiet(7, 40, 11), false);
  // Another mailbox's event in between does not matter.
  const m2 = q.mark();
  q.events([event(9)]);
  q.found(7, 40, 11, m2, true);
  assert.equal(q.isQuiet(7, 40, 11), true);
});

test('a gap in the feed, an account-wide event, or a feed not listening: nothing is kept', () => {
  const q = new QuietMailboxes();
  q.found(7, 40, 11, q.mark(), true);
  q.gap();
  assert.equal(q.isQuiet(7, 40, 11), false);
  const m = q.mark();
  q.gap();
  q.found(7, 40, 11, m, true);
  assert.equal(q.isQuiet(7, 40, 11), false, 'a read sent before the gap');
  q.found(7, 40, 11, q.mark(), false);
  assert.equal(q.isQuiet(7, 40, 11), false, 'not listening');
  q.found(7, 40, 11, q.mark(), true);
  q.events([event(null)]);
  assert.equal(q.isQuiet(7, 40, 11), false, 'an event naming no mailbox');
});

test('an answer is kept at most maxAgeMs', () => {
  let now = 1000;
  const q = new QuietMailboxes({ maxAgeMs: 500, now: () => now });
  q.found(7, 40, 11, q.mark(), true);
  now += 500;
  assert.equal(q.isQuiet(7, 40, 11), true);
  now += 1;
  assert.equal(q.isQuiet(7, 40, 11), false);
});

test('memory is bounded; a mailbox whose last event was dropped counts as changed for reads sent before it', () => {
  const q = new QuietMailboxes({ maxEntries: 3 });
  const before = q.mark();
  q.events([event(1), event(2), event(3), event(4)]); // 1's last event is dropped
  q.found(1, 40, 11, before, true);
  assert.equal(q.isQuiet(1, 40, 11), false);
  q.found(1, 40, 11, q.mark(), true);
  assert.equal(q.isQuiet(1, 40, 11), true);
  for (const id of [5, 6, 7]) q.found(id, 1, 1, q.mark(), true);
  assert.equal(q.isQuiet(1, 40, 11), false, 'the oldest answer made room');
  assert.equal(q.isQuiet(7, 1, 1), true);
});
