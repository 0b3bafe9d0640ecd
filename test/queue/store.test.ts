/**
 * The QueueStore contract, written against the interface so a PostgreSQL version can run the
 * same suite (add its factory to BACKENDS).
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import Database from 'better-sqlite3';
import { openSqliteQueueStore } from '../../src/queue/sqlite-store.js';
import { openSqliteQueueSnapshot } from '../../src/queue/sqlite-snapshot.js';
import { openPgQueueStore } from '../../src/queue/pg-store.js';
import { queueDbPath } from '../../src/queue/admin.js';
import type { NewQueuedMessage, QueuedMessageRecord, QueueStore } from '../../src/queue/types.js';
import { createOutboundQueue } from '../../src/queue/outbound-queue.js';
import { mockResolver, startSink, testLogger, MESSAGE } from './helpers.js';

interface Opened {
  store: QueueStore;
  /** Another node on the same queue (PostgreSQL only). */
  another?: () => Promise<QueueStore>;
  /** The PostgreSQL schema of the queue. */
  schema?: string;
  cleanup: () => Promise<void>;
}

const BACKENDS: Record<string, () => Promise<Opened>> = {
  sqlite: async () => {
    const dir = await mkdtemp(join(tmpdir(), 'facteur-qstore-'));
    const store = openSqliteQueueStore(queueDbPath(dir));
    return { store, cleanup: async () => { await store.close(); await rm(dir, { recursive: true, force: true }); } };
  },
};

// PostgreSQL when the tests are given a server (FACTEUR_TEST_PG=postgres://...), each test in a
// fresh schema.
const PG_URL = process.env.FACTEUR_TEST_PG;
if (PG_URL) {
  BACKENDS.postgres = async () => {
    const schema = `q_${randomBytes(6).toString('hex')}`;
    const store = await openPgQueueStore({ url: PG_URL, schema });
    const others: QueueStore[] = [];
    return {
      store,
      schema,
      another: async () => {
        const s = await openPgQueueStore({ url: PG_URL, schema });
        others.push(s);
        return s;
      },
      cleanup: async () => {
        for (const o of others) await o.close();
        await store.close();
        const admin = new pg.Client({ connectionString: PG_URL });
        await admin.connect();
        try {
          await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
        } finally {
          await admin.end();
        }
      },
    };
  };
}

function message(id: string, rcpts: string[], createdAt = 1000): NewQueuedMessage {
  return {
    id,
    sender: 'a@example.org',
    createdAt,
    body: Buffer.from(`Subject: ${id}\r\n\r\nbody\r\n`),
    envid: null,
    ret: null,
    requireTls: false,
    tlsOptional: false,
    isReport: false,
    recipients: rcpts.map((address) => ({ address, domain: address.split('@')[1]!, notify: null, orcpt: null })),
  };
}

for (const [name, open] of Object.entries(BACKENDS)) {
  test(`${name}: restore puts a message back with its states, attempts and times, once per id`, async () => {
    const { store, cleanup } = await open();
    try {
      const record: QueuedMessageRecord = {
        id: 'm1restored',
        sender: 'a@example.org',
        createdAt: 1000,
        size: 6,
        envid: 'e-1',
        ret: 'HDRS',
        requireTls: true,
        tlsOptional: false,
        isReport: false,
        held: false,
        recipients: [
          { address: 'x@example.net', domain: 'example.net', notify: ['SUCCESS', 'DELAY'], orcpt: 'rfc822;x@example.net', state: 'queued', attempts: 3, nextAttempt: 5000, lastError: '451 later', delayNotified: true, updatedAt: 4000 },
          { address: 'y@example.net', domain: 'example.net', notify: [], orcpt: null, state: 'delivered', attempts: 1, nextAttempt: 2000, lastError: '250 ok', delayNotified: false, updatedAt: 2500 },
        ],
      };
      assert.equal(await store.restore(record, Buffer.from('hello!')), true);
      assert.equal(await store.restore({ ...record, recipients: [] }, Buffer.from('other')), false, 'an id already queued is left alone');
      assert.deepEqual((await store.readBody('m1restored'))?.toString(), 'hello!');
      assert.deepEqual(await store.claimDue(4999, 10, 9999), [], 'not due before its next attempt');
      const due = await store.claimDue(5000, 10, 9999);
      assert.deepEqual(
        due.map(({ id, ...d }) => (void id, d)),
        [{ messageId: 'm1restored', address: 'x@example.net', domain: 'example.net', notify: ['SUCCESS', 'DELAY'], orcpt: 'rfc822;x@example.net', attempts: 3, delayNotified: true, lastError: '451 later', sender: 'a@example.org', createdAt: 1000, size: 6, envid: 'e-1', ret: 'HDRS', requireTls: true, tlsOptional: false, isReport: false }],
      );
      const info = await store.getMessage('m1restored');
      assert.deepEqual(info?.recipients.map((r) => [r.address, r.state, r.attempts, r.nextAttempt, r.updatedAt]), [
        ['x@example.net', 'queued', 3, 5000, 4000],
        ['y@example.net', 'delivered', 1, 2000, 2500],
      ]);
    } finally {
      await cleanup();
    }
  });

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
      // A lease ends with its time; with SQLite (one process owns the queue) also at start.
      assert.equal((await store.claimDue(10_001, 10, 20_000)).length, 4);
      await store.clearLeases();
      assert.equal((await store.claimDue(10_001, 10, 20_000)).length, name === 'sqlite' ? 4 : 0);
    } finally {
      await cleanup();
    }
  });

  test(`${name}: depth counts the recipients still queued, their messages and the held ones`, async () => {
    const { store, cleanup } = await open();
    try {
      assert.deepEqual(await store.depth(), { recipients: 0, messages: 0, held: 0 });
      await store.insert(message('m1', ['x@a.test', 'y@b.test']), 100);
      await store.insert(message('m2', ['z@a.test']), 50);
      await store.setHeld('m2', true);
      assert.deepEqual(await store.depth(), { recipients: 3, messages: 2, held: 1 });
      // Leased recipients still wait; finished ones do not.
      const claimed = await store.claimDue(200, 10, 10_000);
      const x = claimed.find((r) => r.address === 'x@a.test')!;
      await store.finish([x.id], 'delivered', '250 ok', 300);
      assert.deepEqual(await store.depth(), { recipients: 2, messages: 2, held: 1 });
      const y = claimed.find((r) => r.address === 'y@b.test')!;
      await store.finish([y.id], 'failed', '550 no', 300);
      assert.deepEqual(await store.depth(), { recipients: 1, messages: 1, held: 1 });
    } finally {
      await cleanup();
    }
  });

  test(`${name}: a message's TLS-Required: No is kept with it (claims, listing, show)`, async () => {
    const { store, cleanup } = await open();
    try {
      await store.insert({ ...message('m1', ['x@a.test']), tlsOptional: true }, 100);
      await store.insert(message('m2', ['y@a.test']), 100);
      const due = await store.claimDue(200, 10, 10_000);
      assert.deepEqual(due.map((r) => [r.messageId, r.tlsOptional]).sort(), [['m1', true], ['m2', false]]);
      assert.equal((await store.getMessage('m1'))?.tlsOptional, true);
      assert.deepEqual((await store.listMessages()).map((m) => [m.id, m.tlsOptional]).sort(), [['m1', true], ['m2', false]]);
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

  test(`${name}: concurrent writes: one failing write spoils no other`, async () => {
    const { store, cleanup } = await open();
    try {
      const results = await Promise.allSettled([
        store.insert(message('m1', ['x@a.test']), 0),
        store.insert(message('m1', ['dup@a.test']), 0), // same id: refused
        store.insert(message('m2', ['y@a.test']), 0),
      ]);
      // Which of the two m1 inserts comes first is the store's to decide: on PostgreSQL each runs
      // on its own pooled connection, in no promised order. Exactly one of them is refused.
      const statuses = results.map((r) => r.status);
      const firstWon = statuses[0] === 'fulfilled';
      assert.deepEqual(statuses, firstWon ? ['fulfilled', 'rejected', 'fulfilled'] : ['rejected', 'fulfilled', 'fulfilled']);
      assert.deepEqual((await store.listMessages()).map((m) => [m.id, m.recipients.map((r) => r.address)]), [
        ['m1', [firstWon ? 'x@a.test' : 'dup@a.test']],
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

test('sqlite: a queue.db of the first schema is migrated with its mail; a newer one is refused', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'facteur-qstore-'));
  try {
    const path = queueDbPath(dir);
    const first = openSqliteQueueStore(path);
    await first.insert(message('m1', ['x@a.test']), 100);
    await first.close();
    // The first release's queue.db: no tls_optional column, user_version 0.
    const old = new Database(path);
    old.exec('ALTER TABLE messages DROP COLUMN tls_optional');
    old.pragma('user_version = 0');
    old.close();
    // A backup taken before any server of this release opened it reads the default.
    const snap = openSqliteQueueSnapshot(path);
    try {
      assert.deepEqual((await snap.messages('', 10)).map((m) => [m.id, m.tlsOptional, m.requireTls]), [['m1', false, false]]);
    } finally {
      await snap.close();
    }
    const store = openSqliteQueueStore(path);
    try {
      const due = await store.claimDue(200, 10, 10_000);
      assert.deepEqual(due.map((r) => [r.messageId, r.address, r.tlsOptional]), [['m1', 'x@a.test', false]]);
      await store.insert({ ...message('m2', ['y@a.test']), tlsOptional: true }, 100);
      assert.equal((await store.getMessage('m2'))?.tlsOptional, true);
    } finally {
      await store.close();
    }
    const check = new Database(path);
    assert.equal(check.pragma('user_version', { simple: true }), 1);
    check.pragma('user_version = 7');
    check.close();
    assert.throws(() => openSqliteQueueStore(path), /schema version 7 is newer/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('postgres: a queue of the first schema gets the new column, its mail intact', { skip: !PG_URL && 'FACTEUR_TEST_PG not set' }, async () => {
  const { store, another, schema, cleanup } = await BACKENDS.postgres!();
  try {
    await store.insert(message('m1', ['x@a.test']), 100);
    // The first release's schema: no tls_optional column.
    const admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    try {
      await admin.query(`ALTER TABLE "${schema}".messages DROP COLUMN tls_optional`);
    } finally {
      await admin.end();
    }
    // Two nodes of the new release starting together: the advisory lock orders their ALTERs.
    const [a, b] = await Promise.all([another!(), another!()]);
    const due = await a.claimDue(200, 10, 10_000);
    assert.deepEqual(due.map((r) => [r.messageId, r.address, r.tlsOptional]), [['m1', 'x@a.test', false]]);
    await b.insert({ ...message('m2', ['y@a.test']), tlsOptional: true }, 100);
    assert.equal((await a.getMessage('m2'))?.tlsOptional, true);
  } finally {
    await cleanup();
  }
});

test('postgres: nodes claiming at the same time take disjoint recipients (SKIP LOCKED)', { skip: !PG_URL && 'FACTEUR_TEST_PG not set' }, async () => {
  const { store, another, cleanup } = await BACKENDS.postgres!();
  try {
    for (let i = 0; i < 40; i++) await store.insert(message(`m${i}`, [`r${i}@a.test`, `s${i}@b.test`]), 0);
    const nodes = [store, await another!(), await another!()];
    const claims = await Promise.all(nodes.flatMap((n) => [n.claimDue(1, 15, 1000), n.claimDue(1, 15, 1000)]));
    const ids = claims.flat().map((r) => r.id);
    assert.equal(new Set(ids).size, ids.length, 'no recipient claimed twice');
    assert.equal(ids.length, 80, 'all claimed');
  } finally {
    await cleanup();
  }
});

test('postgres: the worker delivers through a PostgreSQL queue, a 5xx reported', { skip: !PG_URL && 'FACTEUR_TEST_PG not set' }, async () => {
  const { store, cleanup } = await BACKENDS.postgres!();
  const sink = await startSink({ onRcpt: (a) => (a === 'nobody@example.net' ? [550, '5.1.1 no such user'] : null) });
  const reports: string[] = [];
  const queue = createOutboundQueue({
    hostname: 'mail.example.org',
    store,
    resolver: mockResolver({ mx: { 'example.net': [{ exchange: 'mx.example.net', priority: 10 }] }, a: { 'mx.example.net': ['127.0.0.1'] } }),
    log: testLogger(),
    port: sink.port,
    mtaSts: { enabled: false },
    deliverReport: async (r) => {
      reports.push(r.toString());
      return true;
    },
  });
  try {
    await queue.enqueue(MESSAGE, { from: 'alice@example.org', to: ['bob@example.net', 'nobody@example.net'] });
    await queue.runDue();
    assert.equal(sink.count('bob@example.net'), 1);
    assert.equal(reports.length, 1);
    assert.match(reports[0]!, /^Status: 5\.1\.1$/m);
    assert.deepEqual(await store.listMessages(), []);
  } finally {
    await queue.stop();
    await sink.close();
    await cleanup();
  }
});
