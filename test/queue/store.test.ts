/**
 * The QueueStore contract, written against the interface so a PostgreSQL version can run the
 * same suite (add its factory to BACKENDS).
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSqliteQueueStore } from '../../src/queue/sqlite-store.js';
import { queueDbPath } from '../../src/queue/admin.js';
import type { NewQueuedMessage, QueueStore } from '../../src/queue/types.js';

const BACKENDS: Record<string, () => Promise<{ store: QueueStore; cleanup: () => Promise<void> }>> = {
  sqlite: async () => {
    const dir = await mkdtemp(join(tmpdir(), 'facteur-qstore-'));
    const store = openSqliteQueueStore(queueDbPath(dir));
    return { store, cleanup: async () => { await store.close(); await rm(dir, { recursive: true, force: true }); } };
  },
};

function message(id: string, rcpts: string[], createdAt = 1000): NewQueuedMessage {
  return {
    id,
    sender: 'a@example.org',
    createdAt,
    body: Buffer.from(`Subject: ${id}\r\n\r\nbody\r\n`),
    envid: null,
    ret: null,
    requireTls: false,
    isReport: false,
    recipients: rcpts.map((address) => ({ address, domain: address.split('@')[1]!, notify: null, orcpt: null })),
  };
}

for (const [name, open] of Object.entries(BACKENDS)) {
  test(`${name}: claims take due, unheld, unleased recipients once, oldest due first`, async () => {
    const { store, cleanup } = await open();
    try {
      await store.insert(message('m1', ['x@a.test', 'y@b.test']), 100);
      await store.insert(message('m2', ['z@a.test']), 50);
      await store.insert(message('m3', ['w@a.test']), 500);
      const first = await store.claimDue(200, 10, 10_000);
      assert.deepEqual(first.map((r) => r.address), ['z@a.test', 'x@a.test', 'y@b.test']);
      assert.equal(first[0]!.sender, 'a@example.org');
      assert.deepEqual(await store.claimDue(200, 10, 10_000), [], 'leased recipients are not claimed again');
      assert.equal(await store.nextDue(), 500);
      await store.setHeld('m3', true);
      assert.deepEqual(await store.claimDue(600, 10, 10_000), [], 'held');
      await store.setHeld('m3', false);
      assert.deepEqual((await store.claimDue(600, 1, 10_000)).map((r) => r.address), ['w@a.test']);
      // A lease ends with its time, or all at once after a crash.
      assert.equal((await store.claimDue(10_001, 10, 20_000)).length, 4);
      await store.clearLeases();
      assert.equal((await store.claimDue(10_001, 10, 20_000)).length, 4);
    } finally {
      await cleanup();
    }
  });

  test(`${name}: finish, defer and removal keep the message until no recipient is queued`, async () => {
    const { store, cleanup } = await open();
    try {
      await store.insert(message('m1', ['x@a.test', 'y@b.test']), 0);
      const [x, y] = await store.claimDue(0, 10, 1000);
      assert.equal(await store.finish([x!.id], 'delivered', '250 ok', 5, true), false, 'y still queued');
      await store.defer([y!.id], 300, 1, '451 later', 5);
      const info = await store.getMessage('m1');
      assert.deepEqual(info?.recipients.map((r) => [r.state, r.attempts, r.nextAttempt, r.lastError]), [
        ['delivered', 0, 0, '250 ok'],
        ['queued', 1, 300, '451 later'],
      ]);
      assert.equal(await store.removeIfFinished('m1'), false);
      // A deferred recipient is claimable again at its time, without waiting for the lease.
      const again = await store.claimDue(300, 10, 2000);
      assert.deepEqual(again.map((r) => [r.address, r.attempts]), [['y@b.test', 1]]);
      // finish of an already final recipient changes nothing.
      await store.finish([x!.id], 'failed', 'late', 6);
      assert.equal((await store.getMessage('m1'))?.recipients[0]?.state, 'delivered');
      assert.equal(await store.finish([y!.id], 'failed', '550 no', 7, true), true, 'last recipient: message removed');
      assert.equal(await store.getMessage('m1'), null);
      assert.equal(await store.readBody('m1'), null);
    } finally {
      await cleanup();
    }
  });

  test(`${name}: concurrent writes share commits and one failing write spoils no other`, async () => {
    const { store, cleanup } = await open();
    try {
      const results = await Promise.allSettled([
        store.insert(message('m1', ['x@a.test']), 0),
        store.insert(message('m1', ['dup@a.test']), 0), // same id: refused
        store.insert(message('m2', ['y@a.test']), 0),
      ]);
      assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
      assert.deepEqual((await store.listMessages()).map((m) => [m.id, m.recipients.map((r) => r.address)]), [
        ['m1', ['x@a.test']],
        ['m2', ['y@a.test']],
      ]);
    } finally {
      await cleanup();
    }
  });

  test(`${name}: sweep removes finished leftovers; retry, drop and MTA-STS policies`, async () => {
    const { store, cleanup } = await open();
    try {
      await store.insert(message('m1', ['x@a.test']), 0);
      await store.insert(message('m2', ['y@a.test']), 0);
      const [x] = await store.claimDue(0, 1, 100);
      await store.finish([x!.id], 'delivered', '250', 1); // as if killed before the removal
      assert.equal(await store.sweepFinished(), 1);
      assert.deepEqual((await store.listMessages()).map((m) => m.id), ['m2']);
      const [y] = await store.claimDue(0, 1, 100);
      await store.defer([y!.id], 10_000, 1, '451', 1);
      assert.equal(await store.retryNow('m2', 50), 1);
      assert.equal(await store.nextDue(), 50);
      assert.equal(await store.drop('m2'), true);
      assert.equal(await store.nextDue(), null);
      assert.equal(await store.getStsPolicy('a.test'), null);
      const policy = { domain: 'a.test', id: 'x1', mode: 'enforce' as const, mx: ['mx.a.test'], maxAge: 60, fetchedAt: 1, expiresAt: 60_001 };
      await store.putStsPolicy(policy);
      await store.putStsPolicy({ ...policy, id: 'x2' });
      assert.deepEqual(await store.getStsPolicy('a.test'), { ...policy, id: 'x2' });
    } finally {
      await cleanup();
    }
  });
}
