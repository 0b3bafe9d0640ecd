import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { asAccountId, asMailboxId, asModSeq } from '../../src/lib/brand.js';
import { decodeChangeEvent, encodeChangeEvent } from '../../src/store/notify-feed.js';
import type { ChangeEvent } from '../../src/store/types.js';

test('change events survive the NOTIFY payload encoding, every kind, with and without a mailbox', () => {
  for (const kind of ['append', 'flags', 'expunge', 'mailbox', 'metadata'] as const) {
    for (const mailboxId of [asMailboxId(42), null]) {
      const e: ChangeEvent = { accountId: asAccountId(7), mailboxId, modseq: asModSeq(123456789), kind };
      const payload = encodeChangeEvent(e);
      assert.ok(payload.length < 100, 'far below the 8000-byte NOTIFY limit');
      assert.deepEqual(decodeChangeEvent(payload), e);
    }
  }
});

test('a metadata event carries its entry names through the payload, bounded below the NOTIFY limit', () => {
  const e: ChangeEvent = { accountId: asAccountId(7), mailboxId: null, modseq: asModSeq(9), kind: 'metadata', entries: ['/private/comment', '/shared/x'] };
  assert.deepEqual(decodeChangeEvent(encodeChangeEvent(e)), e);
  // What the store lets an event carry at most (src/store/metadata.ts: 32 names, 2048 bytes).
  const big: ChangeEvent = { ...e, entries: Array.from({ length: 32 }, (_, i) => `/private/${String(i).padStart(54, 'x')}`) };
  assert.ok(encodeChangeEvent(big).length < 8000);
  for (const bad of ['[1,null,5,4,"x"]', '[1,null,5,4,[1]]', '[1,null,5,4,[],6]']) assert.equal(decodeChangeEvent(bad), null, bad);
});

test('a malformed NOTIFY payload is ignored, not published', () => {
  for (const bad of ['', 'x', '{}', '[1,2,3]', '[1,null,5,9]', '["1",null,5,0]', '[1,"2",5,0]', '[1,2,"5",0]', 'null']) {
    assert.equal(decodeChangeEvent(bad), null, bad);
  }
});
