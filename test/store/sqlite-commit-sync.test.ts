/**
 * The SQLite store's COMMIT does not fsync on the event loop: the WAL is made durable by an
 * asynchronous fdatasync, and nothing is acknowledged before it. These tests inject a sync
 * function they can hold or fail, so the assertions are about order, not about timings.
 */
import { strict as assert } from 'node:assert';
import type { FileHandle } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import type { ChangeEvent } from '../../src/store/types.js';
import { StoreError } from '../../src/store/types.js';
import { sqliteStoreStats } from '../../src/store/sql/sqlite/sqlite-store.js';
import { openTestStore, testMessage } from '../helpers/store.js';

/** A sync function that passes through until `hold()`, then waits for `release()` / `fail()`. */
function controllableSync() {
  let holding = false;
  const held: Array<{ run: () => void; fail: (err: Error) => void }> = [];
  let startedWhileHeld = 0;
  const waiters: Array<() => void> = [];
  return {
    fn: async (wal: FileHandle): Promise<void> => {
      if (!holding) return wal.datasync();
      startedWhileHeld += 1;
      await new Promise<void>((resolve, reject) => {
        held.push({ run: () => void wal.datasync().then(resolve, reject), fail: reject });
        for (const w of waiters.splice(0)) w();
      });
    },
    hold(): void {
      holding = true;
    },
    get started(): number {
      return startedWhileHeld;
    },
    /** Resolves once a sync is waiting. */
    async waiting(): Promise<void> {
      if (held.length > 0) return;
      await new Promise<void>((resolve) => waiters.push(resolve));
    },
    releaseOne(): void {
      held.shift()?.run();
    },
    releaseAll(): void {
      holding = false;
      for (const h of held.splice(0)) h.run();
    },
    failOne(err: Error): void {
      held.shift()?.fail(err);
    },
  };
}

async function setup(sync: ReturnType<typeof controllableSync>) {
  const t = await openTestStore({ fdatasync: sync.fn });
  await t.store.addDomain('example.com');
  const bob = await t.store.createAccount({ address: 'bob@example.com', passwordHash: 'h' });
  const inbox = (await t.store.getMailbox(bob.id, 'INBOX'))!;
  return { ...t, bob, inbox };
}

test('sqlite: a committed append is not acknowledged until the WAL sync completes, and the loop keeps serving meanwhile', async () => {
  const sync = controllableSync();
  const t = await setup(sync);
  try {
    const events: ChangeEvent[] = [];
    const unsubscribe = t.store.feed.subscribe(t.bob.id, (e) => events.push(e));
    sync.hold();
    let acked = false;
    const append = t.store.append(t.inbox.id, testMessage({ subject: 'held' })).then((r) => {
      acked = true;
      return r;
    });
    await sync.waiting();
    // The sync is pending: timers fire and reads complete (the loop is not blocked), the commit
    // is visible to reads, but neither the caller nor the feed has heard of it.
    let ticks = 0;
    const timer = setInterval(() => (ticks += 1), 1);
    // 100 ms for two 1 ms ticks: slack for a loaded machine (the point is "not blocked").
    await sleep(100);
    clearInterval(timer);
    assert.ok(ticks >= 2, `timer fired ${ticks} times while the sync was pending`);
    const entries = await t.store.listEntries(t.inbox.id);
    assert.equal(entries.length, 1);
    assert.equal(acked, false, 'acknowledged before the WAL was durable');
    assert.equal(events.length, 0, 'change event published before the WAL was durable');

    sync.releaseAll();
    const result = await append;
    assert.equal(result.uid, entries[0]!.uid);
    assert.equal(events.length, 1);
    unsubscribe();
  } finally {
    sync.releaseAll();
    await t.cleanup();
  }
});

test('sqlite: writes queued during a sync commit as one batch after it, covered by the next sync; events keep commit order', async () => {
  const sync = controllableSync();
  const t = await setup(sync);
  try {
    const stats = sqliteStoreStats(t.store)!;
    const modseqs: number[] = [];
    const unsubscribe = t.store.feed.subscribe(t.bob.id, (e) => {
      if (e.kind === 'append') modseqs.push(Number(e.modseq));
    });
    sync.hold();
    const first = t.store.append(t.inbox.id, testMessage({ subject: 'first' }));
    await sync.waiting();
    const batchesBefore = stats.batches;
    // Five writes on separate turns of the loop while the first sync is held: without the wait
    // each would be its own transaction.
    const later: Array<Promise<unknown>> = [];
    for (let i = 0; i < 5; i++) {
      later.push(t.store.append(t.inbox.id, testMessage({ subject: `later ${i}` })));
      await sleep(2);
    }
    assert.equal((await t.store.listEntries(t.inbox.id)).length, 1, 'the queued writes wait for the sync in flight');
    assert.equal(stats.batches, batchesBefore, 'no transaction while the sync is in flight');
    assert.equal(sync.started, 1, 'no second sync while one is in flight');

    let firstDone = false;
    void first.then(() => (firstDone = true));
    let laterDone = 0;
    for (const p of later) void p.then(() => (laterDone += 1));
    sync.releaseOne();
    await first;
    // The queued writes commit after the first sync, as one transaction, and wait for a second.
    await sync.waiting();
    assert.equal(firstDone, true);
    assert.equal(stats.batches, batchesBefore + 1, 'the five queued writes made one transaction');
    assert.equal((await t.store.listEntries(t.inbox.id)).length, 6);
    assert.equal(laterDone, 0, 'acknowledged before a sync that started after their COMMIT');
    assert.equal(sync.started, 2, 'one sync for the five later writes');
    sync.releaseAll();
    await Promise.all(later);
    assert.equal(laterDone, 5);
    const expected = (await t.store.listEntries(t.inbox.id)).map((e) => Number(e.modseq));
    assert.deepEqual(modseqs, expected, 'events in commit order (entries are in UID order)');
    unsubscribe();
  } finally {
    sync.releaseAll();
    await t.cleanup();
  }
});

test('sqlite: a write refused inside a batch merged during a sync is rejected alone; the others are acknowledged', async () => {
  const sync = controllableSync();
  const t = await setup(sync);
  try {
    sync.hold();
    const first = t.store.append(t.inbox.id, testMessage({ subject: 'first' }));
    await sync.waiting();
    const good = t.store.append(t.inbox.id, testMessage({ subject: 'good' }));
    const bad = t.store.createMailbox(t.bob.id, 'INBOX');
    const good2 = t.store.append(t.inbox.id, testMessage({ subject: 'good 2' }));
    let badSettled = false;
    void bad.then(
      () => (badSettled = true),
      () => (badSettled = true),
    );
    await sleep(5);
    assert.equal(badSettled, false, 'queued behind the sync, not run yet');
    sync.releaseAll();
    await first;
    await assert.rejects(bad, (err: unknown) => err instanceof StoreError);
    await Promise.all([good, good2]);
    assert.equal((await t.store.listEntries(t.inbox.id)).length, 3);
  } finally {
    sync.releaseAll();
    await t.cleanup();
  }
});

test('sqlite: a failed WAL sync rejects the waiting writes and every later write with StoreError io', async () => {
  const sync = controllableSync();
  const t = await setup(sync);
  try {
    sync.hold();
    const append = t.store.append(t.inbox.id, testMessage({ subject: 'lost' }));
    await sync.waiting();
    // Queued behind the failing sync: refused too, not left waiting.
    const queued = t.store.append(t.inbox.id, testMessage({ subject: 'queued' }));
    sync.failOne(new Error('EIO: simulated'));
    await assert.rejects(append, (err: unknown) => err instanceof StoreError && err.code === 'io');
    await assert.rejects(queued, (err: unknown) => err instanceof StoreError && err.code === 'io');
    sync.releaseAll();
    await assert.rejects(
      t.store.append(t.inbox.id, testMessage({ subject: 'after' })),
      (err: unknown) => err instanceof StoreError && err.code === 'io',
    );
    await assert.rejects(
      t.store.createMailbox(t.bob.id, 'Later'),
      (err: unknown) => err instanceof StoreError && err.code === 'io',
    );
    // Reads still work.
    assert.ok(await t.store.getMailbox(t.bob.id, 'INBOX'));
  } finally {
    sync.releaseAll();
    await t.cleanup();
  }
});
