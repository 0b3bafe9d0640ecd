/**
 * The store conformance suite on PostgreSQL (FACTEUR_TEST_PG=postgres://...; CI sets it), each
 * test in a fresh schema, and what only a shared database can show: two store instances (two
 * Facteur nodes) on one schema hear each other's changes, share locks and never give one UID twice.
 */
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import pg from 'pg';
import { asUid } from '../../src/lib/brand.js';
import type { Uid } from '../../src/lib/brand.js';
import { openStore } from '../../src/store/open.js';
import { BLOB_CHUNK } from '../../src/store/sql/postgres/pg-store.js';
import { PG_MIGRATIONS } from '../../src/store/sql/postgres/schema.js';
import { StoreError } from '../../src/store/types.js';
import type { ChangeEvent } from '../../src/store/types.js';
import { openPgTestStore, testMessage, testPgUrl } from '../helpers/store.js';
import { parseMessage } from '../../src/mail/parse.js';
import type { MailStore } from '../../src/store/types.js';
import { assertViewCurrent, checkViewReads, HASH_COLLISION, registerStoreSuite, threadsOf } from './store-suite.js';

const url = testPgUrl();

if (url === null) {
  test('postgres store tests need FACTEUR_TEST_PG', { skip: 'FACTEUR_TEST_PG is not set' }, () => undefined);
} else {
  registerStoreSuite('postgres', () => openPgTestStore());
  // The same suite with the bytes in a directory shared by the nodes (an external BlobStore).
  registerStoreSuite('postgres, file blobs', () => openPgTestStore({ blobs: 'directory' }));

  for (const viewCacheMessages of [0, 80]) {
    test(`postgres: listViewEntries is right when the view cache holds ${viewCacheMessages === 0 ? 'nothing' : 'one mailbox at a time'}`, async () => {
      const t = await openPgTestStore({ viewCacheMessages });
      try {
        await checkViewReads(t.store);
      } finally {
        await t.cleanup();
      }
    });
  }

  async function setup(blobs: 'database' | 'directory' = 'database') {
    const t = await openPgTestStore({ blobs });
    await t.store.addDomain('example.com');
    const bob = await t.store.createAccount({ address: 'bob@example.com', passwordHash: 'h' });
    const inbox = (await t.store.getMailbox(bob.id, 'INBOX'))!;
    return { ...t, bob, inbox };
  }

  test('postgres: two nodes on one database hear each other, share locks, never repeat a UID', async () => {
    const t = await setup();
    try {
      const a = t.store;
      const b = await t.openNode();
      const heard: Array<{ e: ChangeEvent; at: number }> = [];
      b.feed.subscribe(t.bob.id, (e) => heard.push({ e, at: performance.now() }));
      const before = (await b.getMailboxById(t.inbox.id))!;
      const m = testMessage({ subject: 'via node A' });
      const [out] = await a.deliver(m.raw, m.parsed, [{ accountId: t.bob.id }]);
      // Measured from A's acknowledgement (the commit is done by then); B may even hear it first.
      const committed = performance.now();
      assert.ok(out?.ok);
      while (heard.length === 0 && performance.now() - committed < 1000) await new Promise((r) => setTimeout(r, 1));
      assert.equal(heard.length, 1, 'node B heard the delivery');
      const latency = heard[0]!.at - committed;
      assert.ok(latency < 200, `heard within 200 ms of the commit (took ${Math.round(latency)} ms)`);
      assert.deepEqual(heard[0]!.e, { accountId: t.bob.id, mailboxId: t.inbox.id, modseq: heard[0]!.e.modseq, kind: 'append' });
      const ch = await b.changesSince(t.inbox.id, before.highestModSeq, before.uidNext);
      assert.deepEqual(ch.added.map((e) => e.uid), [out.uid]);
      assert.equal(ch.highestModSeq, heard[0]!.e.modseq);

      // A node hears its own write once, though it also comes back through LISTEN.
      const aHeard: ChangeEvent[] = [];
      a.feed.subscribe(t.bob.id, (e) => aHeard.push(e));
      await a.setFlags(t.inbox.id, [out.uid], 'add', ['\\Seen']);
      await new Promise((r) => setTimeout(r, 150));
      assert.deepEqual(aHeard.map((e) => e.kind), ['flags']);

      const release = await a.tryLock('pop3:bob');
      assert.ok(release);
      assert.equal(await b.tryLock('pop3:bob'), null, 'held by node A');
      assert.equal(await a.tryLock('pop3:bob'), null, 'held by node A, also for A');
      await release();
      const releaseB = await b.tryLock('pop3:bob');
      assert.ok(releaseB, 'free once A released it');
      await releaseB();

      // Concurrent appends through both nodes to one mailbox.
      const results = await Promise.all(
        Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? a : b).append(t.inbox.id, testMessage({ subject: `race ${i}` }))),
      );
      const uids = results.map((r) => r.uid).sort((x, y) => x - y);
      assert.deepEqual(uids, Array.from({ length: 40 }, (_, i) => out.uid + 1 + i), 'unique, dense, increasing');
      assert.equal(new Set(results.map((r) => r.modseq)).size, 40, 'one modseq each');
      const entries = await b.listEntries(t.inbox.id);
      assert.equal(entries.length, 41);
      assert.deepEqual(await a.checkConsistency(), []);
      assert.deepEqual(await b.checkConsistency(), []);
    } finally {
      await t.cleanup();
    }
  });

  test("postgres: a node's view cache follows what another node changes, STORE on every message included", async () => {
    const t = await setup();
    try {
      // Node A caches INBOX and catches up in the background on what it hears.
      const a = await t.openNode({ viewCacheEagerMin: 0 });
      const b = t.store;
      for (let i = 0; i < 20; i++) await b.append(t.inbox.id, testMessage({ subject: `m${i}` }));
      const before = await assertViewCurrent(a, t.inbox.id, 'node A, first read');
      const heard: ChangeEvent[] = [];
      a.feed.subscribe(t.bob.id, (e) => heard.push(e));
      const all = [...before.uids] as Uid[];
      const stored = await b.setFlags(t.inbox.id, all, 'add', ['\\Seen', '$Done']);
      while (!heard.some((e) => e.modseq === stored.updated[0]!.modseq)) await new Promise((r) => setTimeout(r, 5));
      await assertViewCurrent(a, t.inbox.id, 'node A after node B stored on every message');
      await b.expunge(t.inbox.id, all.slice(0, 5));
      await b.append(t.inbox.id, testMessage({ subject: 'late' }));
      await b.setFlags(t.inbox.id, all.slice(10), 'remove', ['$Done']);
      await assertViewCurrent(a, t.inbox.id, 'node A after expunge, append and flags on node B');
      // Node A's own STORE, then node B's, then A again: each node's cache stays right.
      await a.setFlags(t.inbox.id, all.slice(5, 8), 'add', ['\\Flagged']);
      await assertViewCurrent(b, t.inbox.id, 'node B after node A stored');
      await assertViewCurrent(a, t.inbox.id, 'node A after its own STORE');
      const other = await b.createMailbox(t.bob.id, 'Gone');
      await assertViewCurrent(a, other.id, 'node A, new mailbox');
      await b.deleteMailbox(t.bob.id, 'Gone');
      await assert.rejects(a.listViewEntries(other.id), (err: unknown) => err instanceof StoreError && err.code === 'not-found');
    } finally {
      await t.cleanup();
    }
  });

  test('postgres: an event sent with the COMMIT reaches another node intact, whatever its text holds', async () => {
    const t = await setup();
    try {
      const b = await t.openNode();
      const heard: ChangeEvent[] = [];
      b.feed.subscribe(t.bob.id, (e) => heard.push(e));
      // Entry names are carried in the NOTIFY payload: quotes, backslashes and 8-bit text.
      const names = ["/private/it's", '/private/back\\slash', '/private/"quoted"', '/private/café'];
      await t.store.setMetadata(t.bob.id, t.inbox.id, names.map((name) => ({ name, value: Buffer.from('x') })), { maxEntries: 100, maxTotalBytes: 100_000 });
      for (let i = 0; i < 200 && heard.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
      assert.equal(heard.length, 1);
      assert.deepEqual([...(heard[0]!.entries ?? [])].sort(), names.map((n) => n.toLowerCase()).sort());
    } finally {
      await t.cleanup();
    }
  });

  test('postgres: with notifyAfterCommit, node B still hears node A once, and A hears itself once', async () => {
    const t = await setup();
    try {
      const a = await t.openNode({ notifyAfterCommit: true });
      const b = await t.openNode({ notifyAfterCommit: true });
      const heardA: ChangeEvent[] = [];
      const heardB: ChangeEvent[] = [];
      a.feed.subscribe(t.bob.id, (e) => heardA.push(e));
      b.feed.subscribe(t.bob.id, (e) => heardB.push(e));
      const r = await a.append(t.inbox.id, testMessage({ subject: 'after commit' }));
      assert.equal(heardA.length, 1, 'the writer hears it before the write resolves');
      const until = performance.now() + 1000;
      while (heardB.length === 0 && performance.now() < until) await new Promise((res) => setTimeout(res, 1));
      await new Promise((res) => setTimeout(res, 100));
      assert.deepEqual(heardB, [{ accountId: t.bob.id, mailboxId: t.inbox.id, modseq: r.modseq, kind: 'append' }]);
      assert.equal(heardA.length, 1, 'the copy from LISTEN is dropped');
    } finally {
      await t.cleanup();
    }
  });

  test('postgres: a lock is freed when the node holding it dies', async () => {
    const t = await setup();
    try {
      const b = await t.openNode();
      const dying = await t.openNode();
      assert.ok(await dying.tryLock('pop3:7'));
      assert.equal(await b.tryLock('pop3:7'), null);
      // Kill the lock-holding session from the server side, as a crash of the process would.
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      try {
        await admin.query(
          `SELECT pg_terminate_backend(l.pid) FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid()
             AND l.classid = hashtext($1)::oid AND l.objid = hashtext('lock:pop3:7')::oid`,
          [`facteur:${t.schema}`],
        );
      } finally {
        await admin.end();
      }
      let again: (() => Promise<void>) | null = null;
      for (let i = 0; i < 50 && again === null; i++) {
        again = await b.tryLock('pop3:7');
        if (again === null) await new Promise((r) => setTimeout(r, 20));
      }
      assert.ok(again, 'the lock of a dead session is free');
      await again();
    } finally {
      await t.cleanup();
    }
  });

  test('postgres: large messages are 1 MiB chunk rows, range reads fetch only what they need', async () => {
    const t = await setup();
    try {
      const big = testMessage({ subject: 'big', body: 'abcdefghij'.repeat(260_000) });
      assert.ok(big.raw.length > 2 * BLOB_CHUNK);
      await t.store.append(t.inbox.id, big);
      await t.store.append(t.inbox.id, big);
      const [e] = await t.store.listEntries(t.inbox.id);
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      try {
        const r = await admin.query(`SELECT count(*)::int AS n FROM "${t.schema}".blob_chunks`);
        assert.equal(r.rows[0].n, Math.ceil(big.raw.length / BLOB_CHUNK), 'stored once, in chunks');
      } finally {
        await admin.end();
      }
      const ranges: Array<[number, number]> = [[0, 10], [BLOB_CHUNK - 5, BLOB_CHUNK + 5], [2 * BLOB_CHUNK, big.raw.length], [123, 2 * BLOB_CHUNK + 7]];
      for (const [s, end] of ranges) assert.deepEqual(await t.store.readBlob(e!.blobHash, s, end), big.raw.subarray(s, end));
      const chunks: Buffer[] = [];
      for await (const c of t.store.streamBlob(e!.blobHash, 100)) chunks.push(c);
      assert.deepEqual(Buffer.concat(chunks), big.raw.subarray(100));
      await t.store.expunge(t.inbox.id);
      await t.store.expunge(t.inbox.id, [asUid(1), asUid(2)]);
      await assert.rejects(t.store.readBlob(e!.blobHash), (err: unknown) => err instanceof StoreError && err.code === 'not-found');
    } finally {
      await t.cleanup();
    }
  });

  test('postgres: a mailbox found unchanged is answered from the feed until an event names it, on either node', async () => {
    const t = await setup();
    try {
      const a = t.store;
      const b = await t.openNode();
      const m = testMessage({ subject: 'quiet' });
      const [out] = await a.deliver(m.raw, m.parsed, [{ accountId: t.bob.id }]);
      assert.ok(out?.ok);
      const mb = (await a.getMailboxById(t.inbox.id))!;
      const none = { highestModSeq: mb.highestModSeq, added: [], changed: [], expunged: [] };
      assert.deepEqual(await a.changesSince(t.inbox.id, mb.highestModSeq, mb.uidNext), none);
      // A change behind the store's back (no event): the node answers from what it knows.
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      try {
        await admin.query(`UPDATE "${t.schema}".entries SET modseq = modseq + 1000`);
        assert.deepEqual(await a.changesSince(t.inbox.id, mb.highestModSeq, mb.uidNext), none);
        await admin.query(`UPDATE "${t.schema}".entries SET modseq = modseq - 1000`);
      } finally {
        await admin.end();
      }
      // Node B's write reaches node A through NOTIFY, and A reads the changes again.
      const heard: ChangeEvent[] = [];
      a.feed.subscribe(t.bob.id, (e) => heard.push(e));
      await b.setFlags(t.inbox.id, [out.uid], 'add', ['\\Flagged']);
      const started = performance.now();
      while (heard.length === 0 && performance.now() - started < 2000) await new Promise((r) => setTimeout(r, 1));
      assert.equal(heard.length, 1);
      const ch = await a.changesSince(t.inbox.id, mb.highestModSeq, mb.uidNext);
      assert.deepEqual(ch.changed.map((e) => [e.uid, e.flags]), [[out.uid, ['\\Flagged']]]);
      // And its own writes at once (published at its COMMIT).
      const after = (await a.getMailboxById(t.inbox.id))!;
      assert.equal((await a.changesSince(t.inbox.id, after.highestModSeq, after.uidNext)).changed.length, 0);
      await a.setFlags(t.inbox.id, [out.uid], 'add', ['\\Seen']);
      assert.equal((await a.changesSince(t.inbox.id, after.highestModSeq, after.uidNext)).changed.length, 1);
    } finally {
      await t.cleanup();
    }
  });

  test('postgres: the node that stores a message keeps its bytes as if read (append and delivery)', async () => {
    const t = await setup();
    try {
      const appended = testMessage({ subject: 'appended', body: 'a'.repeat(3000) });
      const [r] = await t.store.appendMany(t.inbox.id, [appended]);
      const delivered = testMessage({ subject: 'delivered', body: 'd'.repeat(3000) });
      const [out] = await t.store.deliver(delivered.raw, delivered.parsed, [{ accountId: t.bob.id }]);
      assert.ok(r && out?.ok);
      const [e1, e2] = await t.store.listEntries(t.inbox.id);
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      try {
        // Behind the store's back: what it kept is answered from memory, without a read.
        await admin.query(`UPDATE "${t.schema}".blob_chunks SET data = '\\x00'`);
        assert.deepEqual(await t.store.readBlob(e1!.blobHash), appended.raw);
        assert.deepEqual(await t.store.readBlob(e2!.blobHash, 0, 100), delivered.raw.subarray(0, 100));
        for (const [e, m] of [[e1!, appended], [e2!, delivered]] as const) {
          await admin.query(`UPDATE "${t.schema}".blob_chunks SET data = $1 WHERE blob_id = (SELECT id FROM "${t.schema}".blobs WHERE hash = $2)`, [m.raw, e.blobHash]);
        }
      } finally {
        await admin.end();
      }
    } finally {
      await t.cleanup();
    }
  });

  test('postgres: a node answers repeated reads of headers, small messages and entry facts from memory', async () => {
    const t = await setup();
    try {
      const m = testMessage({ subject: 'cached', body: 'c'.repeat(5000) });
      await t.store.append(t.inbox.id, m);
      const [e] = await t.store.listEntries(t.inbox.id);
      assert.deepEqual(await t.store.readBlob(e!.blobHash, 0, 200), m.raw.subarray(0, 200));
      assert.deepEqual(await t.store.readBlob(e!.blobHash), m.raw);
      const [facts] = await t.store.getEntryFacts(t.inbox.id, [e!.uid], true);
      assert.equal(facts!.blobHash, e!.blobHash);
      // The rows go behind the store's back: what it read is answered from its caches.
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      try {
        await admin.query(`UPDATE "${t.schema}".blob_chunks SET data = '\\x00'`);
        await admin.query(`UPDATE "${t.schema}".entries SET save_date = save_date - 86400000`);
        assert.deepEqual(await t.store.readBlob(e!.blobHash, 10, 300), m.raw.subarray(10, 300));
        assert.deepEqual(await t.store.readBlob(e!.blobHash), m.raw);
        assert.deepEqual(await t.store.getEntryFacts(t.inbox.id, [e!.uid], true), [facts]);
        await admin.query(`UPDATE "${t.schema}".blob_chunks SET data = $1`, [m.raw]);
      } finally {
        await admin.end();
      }
      // A read not kept (keep = false) or of another entry goes to the database.
      await t.store.append(t.inbox.id, testMessage({ subject: 'other' }));
      assert.equal((await t.store.getEntryFacts(t.inbox.id, [asUid(2)], false))[0]!.uid, 2);
      // What the node expunges leaves its caches with it.
      await t.store.expunge(t.inbox.id, [e!.uid]);
      assert.deepEqual(await t.store.getEntryFacts(t.inbox.id, [e!.uid], true), []);
      await assert.rejects(t.store.readBlob(e!.blobHash, 0, 200), (err: unknown) => err instanceof StoreError && err.code === 'not-found');
    } finally {
      await t.cleanup();
    }
  });

  test('postgres: STORE, COPY, MOVE and EXPUNGE on 3000 messages keep counters exact', async () => {
    const t = await setup();
    try {
      const n = 3000;
      const msgs = Array.from({ length: n }, (_, i) => testMessage({ subject: `bulk ${i}` }));
      for (let i = 0; i < n; i += 500) await t.store.appendMany(t.inbox.id, msgs.slice(i, i + 500));
      const all: Uid[] = Array.from({ length: n }, (_, i) => asUid(i + 1));
      const s = await t.store.setFlags(t.inbox.id, all, 'add', ['\\Seen', '\\Deleted']);
      assert.equal(s.updated.length, n);
      const k = await t.store.setFlags(t.inbox.id, all, 'add', ['$Bulk']);
      assert.equal(k.updated.length, n);
      const archive = (await t.store.getMailbox(t.bob.id, 'Archive'))!;
      const c = await t.store.copy(t.inbox.id, all, archive.id);
      assert.equal(c.pairs.length, n);
      const trash = (await t.store.getMailbox(t.bob.id, 'Trash'))!;
      const m = await t.store.move(archive.id, all.slice(0, 1000), trash.id);
      assert.equal(m.expunged.length, 1000);
      assert.equal((await t.store.expunge(t.inbox.id)).length, n);
      assert.deepEqual(await t.store.mailboxCounts(trash.id), { messages: 1000, unseen: 0, deleted: 1000, size: (await t.store.mailboxCounts(trash.id)).size });
      assert.deepEqual(await t.store.checkConsistency(), []);
    } finally {
      await t.cleanup();
    }
  });

  test('postgres: the UIDL uniqueness check of restore uses the pid index (migration 9), not a scan', async () => {
    const t = await setup();
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      const idx = await admin.query(`SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = 'entries_pid'`, [t.schema]);
      assert.match(String(idx.rows[0]?.indexdef), /ON .*entries USING btree \(pid\)/);
      const versions = await admin.query(`SELECT version FROM "${t.schema}".schema_version ORDER BY version`);
      // Every migration applied (the list, not a copy of it: numbers land as branches merge).
      assert.deepEqual(
        versions.rows.map((r: { version: number }) => r.version),
        PG_MIGRATIONS.map((m) => m.version).sort((a, b) => a - b),
      );
      assert.ok(versions.rows.some((r: { version: number }) => r.version === 9));
      // The planner's choice on a table of many rows (statistics as a large account would have).
      await admin.query('BEGIN');
      await admin.query(`SET LOCAL search_path = "${t.schema}"`);
      await admin.query('SET LOCAL enable_seqscan = off');
      const plan = await admin.query(
        "EXPLAIN SELECT e.pid FROM entries e JOIN mailboxes m ON m.id = e.mailbox_id WHERE m.account_id = 1 AND e.pid = ANY('{a,b}'::text[]) LIMIT 1",
      );
      await admin.query('ROLLBACK');
      const text = plan.rows.map((r: Record<string, string>) => Object.values(r).join(' ')).join('\n');
      assert.match(text, /entries_pid/, text);
    } finally {
      await admin.end();
      await t.cleanup();
    }
  });

  test('postgres: checkConsistency reports corrupted rows', async () => {
    const t = await setup();
    try {
      await t.store.append(t.inbox.id, testMessage({ subject: 'one' }));
      const [e] = await t.store.listEntries(t.inbox.id);
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      try {
        await admin.query(`UPDATE "${t.schema}".entries SET uid = 77 WHERE uid = 1`);
        await admin.query(`UPDATE "${t.schema}".blobs SET refs = 5`);
        const problems = await t.store.checkConsistency();
        assert.ok(problems.some((p) => /uid 77 is not below UIDNEXT 2/.test(p)), problems.join('\n'));
        assert.ok(problems.some((p) => p.includes(`blob ${e!.blobHash}: refcount 5 but 1 entries`)), problems.join('\n'));
        await admin.query(`UPDATE "${t.schema}".entries SET uid = 1 WHERE uid = 77`);
        await admin.query(`UPDATE "${t.schema}".blobs SET refs = 1`);
      } finally {
        await admin.end();
      }
    } finally {
      await t.cleanup();
    }
  });

  test('postgres: collectGarbage removes old orphan files of the blob directory, not referenced ones', async () => {
    const t = await setup('directory');
    try {
      await t.store.append(t.inbox.id, testMessage());
      const { mkdir, writeFile, utimes, readdir } = await import('node:fs/promises');
      const { join } = await import('node:path');
      const root = join(t.dir, 'blobs');
      await mkdir(join(root, 'ab'), { recursive: true });
      const orphan = join(root, 'ab', 'c'.repeat(62));
      await writeFile(orphan, 'junk');
      const young = join(root, 'ab', 'd'.repeat(62));
      await writeFile(young, 'being ingested by another node');
      const old = new Date(Date.now() - 2 * 3600_000);
      await utimes(orphan, old, old);
      assert.equal(await t.store.collectGarbage(), 1);
      assert.deepEqual((await readdir(join(root, 'ab'))).sort(), ['d'.repeat(62)]);
      const { rm } = await import('node:fs/promises');
      await rm(young);
    } finally {
      await t.cleanup();
    }
  });

  test('openStore opens postgres:// URLs with their schema parameter', async () => {
    const t = await openPgTestStore();
    try {
      await t.store.addDomain('example.org');
      const u = new URL(url);
      u.searchParams.set('schema', t.schema);
      const other = await openStore(u.toString());
      try {
        assert.deepEqual((await other.listDomains()).map((d) => d.name), ['example.org']);
      } finally {
        await other.close();
      }
    } finally {
      await t.cleanup();
    }
  });

  test('openStore takes ?pool_size= for the store\'s pooled connections, and refuses a bad one', async () => {
    const t = await openPgTestStore();
    const app = `facteur-pool-${process.pid}-${Date.now()}`;
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      await t.store.addDomain('example.org');
      const opened = async (pool: string | null): Promise<number> => {
        const u = new URL(url);
        u.searchParams.set('schema', t.schema);
        u.searchParams.set('application_name', `${app}-${pool ?? 'default'}`);
        if (pool !== null) u.searchParams.set('pool_size', pool);
        const other = await openStore(u.toString());
        try {
          // Many reads at once: the pool opens connections up to its size, no more.
          await Promise.all(Array.from({ length: 30 }, () => other.listDomains()));
          const r = await admin.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [`${app}-${pool ?? 'default'}`]);
          return (r.rows[0] as { n: number }).n;
        } finally {
          await other.close();
        }
      };
      // The store's pool, plus at most its LISTEN connection and its advisory-lock connection.
      const small = await opened('2');
      assert.ok(small <= 4, `${small} connections with pool_size=2`);
      const dflt = await opened(null);
      assert.ok(dflt > 4, `the default pool (10) opens more under the same load: ${dflt}`);
      for (const bad of ['0', '-1', 'x', '1001', '2.5']) {
        await assert.rejects(openStore(`${url}?pool_size=${bad}`), (err: unknown) => err instanceof StoreError && err.code === 'invalid', bad);
      }
    } finally {
      await admin.end();
      await t.cleanup();
    }
  });

  test('postgres: a version 9 database whose THREAD hashes collide threads exactly once migration 10 numbers the names', async () => {
    const t = await setup();
    try {
      await t.store.appendMany(t.inbox.id, HASH_COLLISION.inputs());
      assert.equal(await threadsOf(t.store, t.inbox.id), HASH_COLLISION.threads);
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      try {
        await admin.query(`DROP TABLE "${t.schema}".thread_names`);
        await admin.query(`DELETE FROM "${t.schema}".schema_version WHERE version = 10`);
        const hashes = await admin.query(`SELECT blob_hash FROM "${t.schema}".entries WHERE mailbox_id = $1 ORDER BY uid`, [t.inbox.id]);
        for (const [i, r] of hashes.rows.entries()) {
          await admin.query(`UPDATE "${t.schema}".sort_keys SET thread_text = $1 WHERE id = (SELECT id FROM "${t.schema}".blobs WHERE hash = $2)`, [HASH_COLLISION.texts[i], (r as { blob_hash: string }).blob_hash]);
        }
      } finally {
        await admin.end();
      }
      assert.equal(await threadsOf(await t.openNode(), t.inbox.id), HASH_COLLISION.threads);
    } finally {
      await t.cleanup();
    }
  });

  test('postgres: a version 7 database gets its THREAD keys at open (schema 8), same answers as before', async () => {
    const t = await setup();
    try {
      const raws = [
        'Message-ID: <a@x>\r\nSubject: plan\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n1\r\n',
        'Message-ID: <b@x>\r\nReferences: <a@x>\r\nSubject: Re: plan\r\nDate: Mon, 1 Jan 2024 11:00:00 +0000\r\n\r\n2\r\n',
        'Message-ID: <c@x>\r\nReferences: <gone@x> <b@x>\r\nSubject: Re: plan\r\n\r\n3\r\n',
      ].map((x) => Buffer.from(x));
      await t.store.appendMany(t.inbox.id, raws.map((raw, i) => ({ raw, parsed: parseMessage(raw), internalDate: Date.UTC(2024, 0, 2, i) })));
      const answers = async (store: MailStore): Promise<unknown> => [await store.listThreadKeys(t.inbox.id), await store.rankSortKey(t.inbox.id, 'DATE')];
      const before = await answers(t.store);
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      try {
        // As the database was at version 7.
        await admin.query(`ALTER TABLE "${t.schema}".sort_keys DROP COLUMN thread_text`);
        await admin.query(`DELETE FROM "${t.schema}".schema_version WHERE version = 8`);
        await admin.query(`DELETE FROM "${t.schema}".counters WHERE name = 'backfill_done'`);
      } finally {
        await admin.end();
      }
      const node = await t.openNode();
      assert.deepEqual(await answers(node), before);
      assert.equal((await node.listThreadKeys(t.inbox.id)).uids.length, 3);
    } finally {
      await t.cleanup();
    }
  });
}
