import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { asUid } from '../../src/lib/brand.js';
import { RecentUids } from '../../src/imap/server/view.js';

/** The view's side RecentUids asks about: a sorted set of UIDs. */
function fakeView(uids: number[]): { uids: number[]; has: (u: number) => boolean; countBetween: (lo: number, hi: number) => number } {
  return {
    uids,
    has: (u) => uids.includes(u),
    countBetween: (lo, hi) => uids.filter((u) => u > lo && u <= hi).length,
  };
}

test('\\Recent ranges emptied by expunges are dropped, so a long session does not gather one per claim', () => {
  const view = fakeView([]);
  const recent = new RecentUids(view);
  // Two sessions taking turns at claiming: this one gets every other new message.
  for (let u = 1; u <= 2000; u += 2) {
    view.uids.push(u, u + 1);
    recent.add(u - 1, u);
  }
  assert.equal(recent.ranges, 1000);
  assert.equal(recent.size, 1000);
  assert.ok(recent.has(asUid(1999)) && recent.has(asUid(1)) && !recent.has(asUid(2000)) && !recent.has(asUid(2001)));
  // Every message but the last two expunged.
  view.uids.splice(0, view.uids.length - 2);
  assert.equal(recent.size, 1);
  assert.equal(recent.ranges, 1);
  assert.ok(recent.has(asUid(1999)));
  assert.ok(!recent.has(asUid(1)));
});
