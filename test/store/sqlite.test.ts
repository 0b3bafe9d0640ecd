import { strict as assert } from 'node:assert';
import { readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { asModSeq, asUid } from '../../src/lib/brand.js';
import { openStore } from '../../src/store/open.js';
import { MAX_LOOKUPS } from '../../src/store/sql/sqlite/lookup-cache.js';
import { MIGRATIONS } from '../../src/store/sql/sqlite/schema.js';
import { openSqliteStore, sqliteSearchIndexerStats, sqliteStoreStats } from '../../src/store/sql/sqlite/sqlite-store.js';
import { StoreError } from '../../src/store/types.js';
import { trigramQuery } from '../../src/store/search-text.js';
import { openTestStore, testMessage } from '../helpers/store.js';
import { parseMessage } from '../../src/mail/parse.js';
import type { MailStore } from '../../src/store/types.js';
import { checkViewReads, HASH_COLLISION, registerStoreSuite, threadsOf } from './store-suite.js';

registerStoreSuite('sqlite', () => openTestStore());
// The same suite with every message stored as a file blob.
registerStoreSuite('sqlite, file blobs', () => openTestStore({ blobs: { inlineMaxBytes: 0 } }));

for (const viewCacheMessages of [0, 80]) {
  test(`sqlite: listViewEntries is right when the view cache holds ${viewCacheMessages === 0 ? 'nothing' : 'one mailbox at a time'}`, async () => {
    const t = await openTestStore({ viewCacheMessages });
    try {
      await checkViewReads(t.store);
    } finally {
      await t.cleanup();
    }
  });
}

async function setup(inlineMaxBytes?: number) {
  const t = await openTestStore(inlineMaxBytes === undefined ? {} : { blobs: { inlineMaxBytes } });
  await t.store.addDomain('example.com');
  const bob = await t.store.createAccount({ address: 'bob@example.com', passwordHash: 'h' });
  const inbox = (await t.store.getMailbox(bob.id, 'INBOX'))!;
  return { ...t, bob, inbox };
}

async function blobFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const d of await readdir(join(dir, 'blobs'))) {
    if (d === 'tmp') continue;
    for (const f of await readdir(join(dir, 'blobs', d))) out.push(d + f);
  }
  return out.sort();
}

test('sqlite: large messages are files blobs/ab/cdef..., removed with their last reference', async () => {
  const t = await setup(1024);
  try {
    const big = testMessage({ subject: 'big', body: 'y'.repeat(300_000) });
    const small = testMessage({ subject: 'small' });
    await t.store.append(t.inbox.id, big);
    await t.store.append(t.inbox.id, big);
    await t.store.append(t.inbox.id, small);
    const [e1, , e3] = await t.store.listEntries(t.inbox.id);
    assert.deepEqual(await blobFiles(t.dir), [e1!.blobHash]);
    assert.equal((await stat(join(t.dir, 'blobs', e1!.blobHash.slice(0, 2), e1!.blobHash.slice(2)))).size, big.raw.length);
    assert.deepEqual(await t.store.readBlob(e1!.blobHash, 100_000, 100_010), big.raw.subarray(100_000, 100_010));
    assert.deepEqual(await t.store.readBlob(e3!.blobHash), small.raw);
    await t.store.expunge(t.inbox.id, [asUid(1)]);
    assert.equal((await blobFiles(t.dir)).length, 1, 'still referenced once');
    await t.store.expunge(t.inbox.id, [asUid(2)]);
    assert.equal((await blobFiles(t.dir)).length, 1, 'kept until the sweep');
    await t.store.collectGarbage();
    assert.deepEqual(await blobFiles(t.dir), []);
  } finally {
    await t.cleanup();
  }
});

/** Rows of the blob tables for a hash (blobs, blob_content, blob_text, sort_keys), read from a
 * second connection: what the sweep has left. */
function blobRows(dir: string, hash: string): number {
  const db = new Database(join(dir, 'facteur.db'), { readonly: true });
  try {
    const id = (db.prepare('SELECT id FROM blobs WHERE hash = ?').get(hash) as { id: number } | undefined)?.id ?? -1;
    const n = (sql: string, v: unknown) => (db.prepare(sql).get(v) as { n: number }).n;
    return (
      n('SELECT count(*) AS n FROM blobs WHERE hash = ?', hash) +
      n('SELECT count(*) AS n FROM blob_content WHERE id = ?', id) +
      n('SELECT count(*) AS n FROM blob_text WHERE id = ?', id) +
      n('SELECT count(*) AS n FROM sort_keys WHERE id = ?', id)
    );
  } finally {
    db.close();
  }
}

test('sqlite: a blob without references is removed by the sweep after sweepDelayMs, its file and full-text entries too', async () => {
  const t = await openTestStore({ sweepDelayMs: 150, blobs: { inlineMaxBytes: 1024 } });
  try {
    await t.store.addDomain('example.com');
    const bob = await t.store.createAccount({ address: 'bob@example.com', passwordHash: 'h' });
    const inbox = (await t.store.getMailbox(bob.id, 'INBOX'))!;
    const big = testMessage({ subject: 'big', body: 'quetzal '.repeat(40_000) });
    await t.store.append(inbox.id, big);
    const [e] = await t.store.listEntries(inbox.id);
    assert.equal(blobRows(t.dir, e!.blobHash), 4);
    assert.equal((await t.store.searchText(inbox.id, { field: 'body', value: 'quetzal' })).size, 1);
    // In the full-text index first (its worker runs searchIndexDelayMs after the append), so that
    // the sweep has an index entry to remove.
    for (let i = 0; i < 300 && indexed(t.dir, 'quetzal') === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(indexed(t.dir, 'quetzal'), 1);
    await t.store.expunge(inbox.id, [asUid(1)]);
    // Right after the expunge the rows and the file are still there; nothing reaches them.
    assert.equal(blobRows(t.dir, e!.blobHash), 4);
    assert.equal((await blobFiles(t.dir)).length, 1);
    assert.equal((await t.store.searchText(inbox.id, { field: 'body', value: 'quetzal' })).size, 0);
    const deadline = Date.now() + 5000;
    while (blobRows(t.dir, e!.blobHash) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(blobRows(t.dir, e!.blobHash), 0, 'swept');
    while ((await blobFiles(t.dir)).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(await blobFiles(t.dir), [], 'file removed after the sweep committed');
    // The full-text index no longer holds the document (a contentless table: count its rows),
    // once the indexer's worker has done the removal.
    while (indexed(t.dir, 'quetzal') > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(indexed(t.dir, 'quetzal'), 0);
  } finally {
    await t.cleanup();
  }
});

test('sqlite: the same bytes stored again before the sweep take the unreferenced blob back; the sweep leaves it', async () => {
  const t = await openTestStore({ sweepDelayMs: 100, blobs: { inlineMaxBytes: 1024 } });
  try {
    await t.store.addDomain('example.com');
    const bob = await t.store.createAccount({ address: 'bob@example.com', passwordHash: 'h' });
    const inbox = (await t.store.getMailbox(bob.id, 'INBOX'))!;
    for (const m of [testMessage({ subject: 'small again' }), testMessage({ subject: 'big again', body: 'z'.repeat(300_000) })]) {
      const first = await t.store.append(inbox.id, m);
      await t.store.expunge(inbox.id, [first.uid]);
      const again = await t.store.append(inbox.id, m);
      const [e] = await t.store.getEntries(inbox.id, [again.uid]);
      await new Promise((r) => setTimeout(r, 400)); // past the sweep
      assert.equal(blobRows(t.dir, e!.blobHash), 4, 'kept: referenced again');
      assert.deepEqual(await t.store.readBlob(e!.blobHash), m.raw);
      assert.deepEqual(await t.store.getParsed(e!.blobHash), m.parsed);
    }
    assert.equal((await blobFiles(t.dir)).length, 1, 'the large one keeps its file');
  } finally {
    await t.cleanup();
  }
});

test('sqlite: close removes the blobs a sweep was still to remove; an open finds those a crash left', async () => {
  const t = await openTestStore({ sweepDelayMs: 3_600_000 });
  try {
    await t.store.addDomain('example.com');
    const bob = await t.store.createAccount({ address: 'bob@example.com', passwordHash: 'h' });
    const inbox = (await t.store.getMailbox(bob.id, 'INBOX'))!;
    const a = await t.store.append(inbox.id, testMessage({ subject: 'gone at close' }));
    const [ea] = await t.store.getEntries(inbox.id, [a.uid]);
    await t.store.expunge(inbox.id, [a.uid]);
    assert.equal(blobRows(t.dir, ea!.blobHash), 4);
    await t.store.close();
    assert.equal(blobRows(t.dir, ea!.blobHash), 0, 'removed by close');
    // A process that died before its sweep: refs at 0 written by hand.
    const s2 = await openSqliteStore({ dir: t.dir, sweepDelayMs: 50 });
    const b = await s2.append(inbox.id, testMessage({ subject: 'left by a crash' }));
    const [eb] = await s2.getEntries(inbox.id, [b.uid]);
    await s2.close();
    const db = new Database(join(t.dir, 'facteur.db'));
    db.prepare('DELETE FROM entries WHERE mailbox_id = ? AND uid = ?').run(inbox.id, b.uid);
    db.prepare('UPDATE blobs SET refs = 0 WHERE hash = ?').run(eb!.blobHash);
    db.prepare('UPDATE mailboxes SET messages = 0, unseen = 0, size = 0 WHERE id = ?').run(inbox.id);
    db.prepare('UPDATE accounts SET used_bytes = 0, used_messages = 0 WHERE id = ?').run(bob.id);
    db.close();
    const s3 = await openSqliteStore({ dir: t.dir, sweepDelayMs: 50 });
    const deadline = Date.now() + 5000;
    while (blobRows(t.dir, eb!.blobHash) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(blobRows(t.dir, eb!.blobHash), 0, 'swept after the open');
    assert.deepEqual(await s3.checkConsistency(), []);
    await s3.close();
  } finally {
    await t.cleanup().catch(() => undefined);
  }
});

test('sqlite: collectGarbage removes orphan blob files and temp files, not referenced ones', async () => {
  const t = await setup(0);
  try {
    await t.store.append(t.inbox.id, testMessage());
    const orphan = 'ab' + 'c'.repeat(62);
    const { mkdir } = await import('node:fs/promises');
    await mkdir(join(t.dir, 'blobs', 'ab'), { recursive: true });
    await writeFile(join(t.dir, 'blobs', 'ab', 'c'.repeat(62)), 'junk');
    await writeFile(join(t.dir, 'blobs', 'tmp', 'leftover.123'), 'junk');
    assert.equal((await blobFiles(t.dir)).includes(orphan), true);
    assert.equal(await t.store.collectGarbage(), 2);
    const files = await blobFiles(t.dir);
    assert.equal(files.length, 1);
    assert.deepEqual(await readdir(join(t.dir, 'blobs', 'tmp')), []);
    const [e] = await t.store.listEntries(t.inbox.id);
    assert.equal(files[0], e!.blobHash);
  } finally {
    await t.cleanup();
  }
});

test('sqlite: checkConsistency reports corrupted rows and missing blob files', async () => {
  const t = await setup(0);
  await t.store.append(t.inbox.id, testMessage({ subject: 'one' }));
  await t.store.append(t.inbox.id, testMessage({ subject: 'two' }));
  assert.deepEqual(await t.store.checkConsistency(), []);
  const [e1, e2] = await t.store.listEntries(t.inbox.id);
  const db = new Database(join(t.dir, 'facteur.db'));
  db.prepare('UPDATE entries SET uid = 77 WHERE mailbox_id = ? AND uid = 1').run(t.inbox.id);
  db.prepare('UPDATE blobs SET refs = 5 WHERE hash = ?').run(e2!.blobHash);
  db.close();
  const { rm } = await import('node:fs/promises');
  await rm(join(t.dir, 'blobs', e1!.blobHash.slice(0, 2), e1!.blobHash.slice(2)));
  const problems = await t.store.checkConsistency();
  assert.ok(problems.some((p) => /uid 77 is not below UIDNEXT 3/.test(p)), problems.join('\n'));
  assert.ok(problems.some((p) => p.includes(`blob ${e2!.blobHash}: refcount 5 but 1 entries`)), problems.join('\n'));
  assert.ok(problems.some((p) => p.includes(`blob ${e1!.blobHash}: file is missing`)), problems.join('\n'));
  await t.store.close();
  await rm(t.dir, { recursive: true, force: true });
});

test('sqlite: a migration numbered below one already applied is still applied (numbers land out of order)', async () => {
  const t = await setup();
  await t.store.close();
  const last = MIGRATIONS[MIGRATIONS.length - 1]!;
  const db = new Database(join(t.dir, 'facteur.db'));
  // As if the database had been migrated by a program that did not have migration 5 yet.
  db.exec('DROP TABLE metadata; DELETE FROM schema_version WHERE version = 5');
  assert.ok(last.version >= 5);
  db.close();
  const store = await openSqliteStore({ dir: t.dir });
  try {
    await store.setMetadata(t.bob.id, null, [{ name: '/private/x', value: Buffer.from('1') }], { maxEntries: 10, maxTotalBytes: 100 });
    assert.equal(await store.metadataUsage(t.bob.id), 1);
  } finally {
    await store.close();
    await t.cleanup().catch(() => undefined);
  }
});

test('sqlite: the schema version is recorded and data survives reopening', async () => {
  const t = await setup();
  const r = await t.store.append(t.inbox.id, testMessage({ subject: 'persisted' }));
  await t.store.close();
  const db = new Database(join(t.dir, 'facteur.db'), { readonly: true });
  // Every migration is recorded once (numbers may have gaps while they land out of order).
  assert.deepEqual(db.prepare('SELECT version FROM schema_version ORDER BY version').all(), MIGRATIONS.map((m) => ({ version: m.version })));
  assert.equal((db.prepare('PRAGMA journal_mode').get() as { journal_mode: string }).journal_mode, 'wal');
  db.close();
  const store = await openSqliteStore({ dir: t.dir });
  const [e] = await store.listEntries(t.inbox.id);
  assert.equal(e?.emailId, r.emailId);
  assert.equal((await store.getParsed(e.blobHash)).subject, 'persisted');
  const m = await store.createMailbox(t.bob.id, 'After reopen');
  assert.ok(m.uidValidity > t.inbox.uidValidity);
  assert.deepEqual(await store.checkConsistency(), []);
  await store.close();
  const { rm } = await import('node:fs/promises');
  await rm(t.dir, { recursive: true, force: true });
});

test('sqlite: UIDL lookups use the pid index (migration 9), not a scan of every entry', async () => {
  const t = await setup();
  await t.store.close();
  const db = new Database(join(t.dir, 'facteur.db'));
  try {
    const plan = db
      .prepare("EXPLAIN QUERY PLAN SELECT e.pid FROM entries e JOIN mailboxes m ON m.id = e.mailbox_id WHERE m.account_id = 1 AND e.pid IN (SELECT value FROM json_each('[\"a\"]')) LIMIT 1")
      .all() as Array<{ detail: string }>;
    assert.ok(plan.some((p) => /entries_pid/.test(p.detail)), plan.map((p) => p.detail).join('; '));
  } finally {
    db.close();
    await t.cleanup().catch(() => undefined);
  }
});

test('openStore refuses unknown store URL schemes', async () => {
  await assert.rejects(openStore('mysql://x'), (err: unknown) => err instanceof StoreError && err.code === 'invalid');
  await assert.rejects(openStore(''), (err: unknown) => err instanceof StoreError && err.code === 'invalid');
});

test('sqlite: a version 1 database is upgraded in place: its accounts get no TOTP and can add app passwords', async () => {
  const { mkdtemp, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const dir = await mkdtemp(join(tmpdir(), 'facteur-v1-'));
  try {
    const db = new Database(join(dir, 'facteur.db'));
    db.exec('CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)');
    db.exec(MIGRATIONS[0]!.sql);
    db.prepare('INSERT INTO schema_version (version, applied_at) VALUES (1, 0)').run();
    db.prepare("INSERT INTO domains (name, created_at) VALUES ('example.com', 0)").run();
    db.prepare("INSERT INTO accounts (address, domain, password_hash, created_at) VALUES ('old@example.com', 'example.com', 'h', 0)").run();
    db.close();
    const store = await openSqliteStore({ dir });
    const old = await store.getAccountByAddress('old@example.com');
    assert.ok(old);
    assert.equal(old.totpSecret, null);
    await store.addAppPassword(old.id, { name: 'Phone', hash: 'x' });
    assert.equal((await store.listAppPasswords(old.id)).length, 1);
    await store.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

/** The sort_index triggers of migration 8 that read sort_keys (by blob hash). */
const VERSION_8_KEY_TRIGGERS = (MIGRATIONS.find((m) => m.version === 8)?.sql.match(/CREATE TRIGGER sort_index_(entry_insert|entry_update|keys_insert|keys_update) [\s\S]*?END;/g) ?? []).join('\n');

/** Takes a database back to schema version 11: sort_keys keyed by the blob hash, with the
 * sort_index triggers of version 8 (the inverse of migration 12). */
function asVersion11(db: Database.Database): void {
  assert.equal(VERSION_8_KEY_TRIGGERS.split('CREATE TRIGGER').length, 5);
  db.exec(`
DROP TRIGGER sort_index_entry_insert;
DROP TRIGGER sort_index_entry_update;
CREATE TABLE sort_keys_by_hash (
  hash TEXT PRIMARY KEY, sent_date INTEGER, subject TEXT NOT NULL, reply INTEGER NOT NULL, addr_from TEXT NOT NULL,
  addr_to TEXT NOT NULL, addr_cc TEXT NOT NULL, display_from TEXT NOT NULL, display_to TEXT NOT NULL, message_id TEXT,
  refs TEXT NOT NULL, thread_text TEXT
) WITHOUT ROWID;
INSERT INTO sort_keys_by_hash
SELECT b.hash, k.sent_date, k.subject, k.reply, k.addr_from, k.addr_to, k.addr_cc, k.display_from, k.display_to, k.message_id, k.refs, k.thread_text
  FROM sort_keys k JOIN blobs b ON b.id = k.id;
DROP TABLE sort_keys;
ALTER TABLE sort_keys_by_hash RENAME TO sort_keys;
${VERSION_8_KEY_TRIGGERS}
DELETE FROM schema_version WHERE version = 12;
`);
}

test('sqlite: a version 11 database (sort_keys by blob hash) is migrated to keys by blob id: same SORT and THREAD answers, new mail sorted too', async () => {
  const t = await setup();
  const raws = [
    'Message-ID: <a@x>\r\nSubject: plan\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n1\r\n',
    'Message-ID: <b@x>\r\nReferences: <a@x>\r\nSubject: Re: plan\r\nDate: Mon, 1 Jan 2024 11:00:00 +0000\r\n\r\n2\r\n',
    'Message-ID: <c@x>\r\nSubject: other\r\nDate: Sun, 31 Dec 2023 09:00:00 +0000\r\n\r\n3\r\n',
  ].map((s) => Buffer.from(s));
  await t.store.appendMany(t.inbox.id, raws.map((raw, i) => ({ raw, parsed: parseMessage(raw), internalDate: Date.UTC(2024, 0, 2, i) })));
  // A copy shares the blob (and its keys) with the original.
  const archive = await t.store.createMailbox(t.bob.id, 'Saved');
  await t.store.copy(t.inbox.id, [asUid(2)], archive.id);
  const answers = async (store: MailStore, mailboxId = t.inbox.id): Promise<unknown> => [
    await store.listThreadKeys(mailboxId),
    await store.listSortKeys(mailboxId),
    await store.rankSortKey(mailboxId, 'DATE'),
    await store.rankSortKey(mailboxId, 'SUBJECT'),
  ];
  const before = [await answers(t.store), await answers(t.store, archive.id)];
  await t.store.close();
  const db = new Database(join(t.dir, 'facteur.db'));
  asVersion11(db);
  db.close();
  const store = await openSqliteStore({ dir: t.dir });
  try {
    assert.deepEqual([await answers(store), await answers(store, archive.id)], before);
    const check = new Database(join(t.dir, 'facteur.db'), { readonly: true });
    assert.deepEqual(check.prepare('SELECT name FROM pragma_table_info(?) WHERE pk = 1').pluck().all('sort_keys'), ['id']);
    assert.equal(check.prepare('SELECT count(*) FROM sort_keys').pluck().get(), 3);
    check.close();
    // Written after the migration: its keys are found by the triggers and by SORT.
    const raw = Buffer.from('Message-ID: <d@x>\r\nReferences: <c@x>\r\nSubject: Re: other\r\nDate: Tue, 2 Jan 2024 09:00:00 +0000\r\n\r\n4\r\n');
    await store.append(t.inbox.id, { raw, parsed: parseMessage(raw) });
    assert.equal((await store.listSortKeys(t.inbox.id)).length, 4);
    assert.equal((await store.listThreadKeys(t.inbox.id)).uids.length, 4);
    // The last reference of a blob removes its keys (with the blob, by the sweep; close runs it).
    await store.expunge(archive.id);
    await store.expunge(t.inbox.id, [asUid(3)]);
    assert.deepEqual(await store.checkConsistency(), []);
    await store.close();
    const after = new Database(join(t.dir, 'facteur.db'), { readonly: true });
    assert.equal(after.prepare('SELECT count(*) FROM sort_keys').pluck().get(), 3);
    after.close();
  } finally {
    await store.close();
    await t.cleanup().catch(() => undefined);
  }
});

test('sqlite: a version 7 database gets the per-entry SORT and THREAD keys at open (schema 8), same answers as before', async () => {
  const t = await setup();
  const raws = [
    'Message-ID: <a@x>\r\nSubject: plan\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n1\r\n',
    'Message-ID: <b@x>\r\nReferences: <a@x>\r\nSubject: Re: plan\r\nDate: Mon, 1 Jan 2024 11:00:00 +0000\r\n\r\n2\r\n',
    'Message-ID: <c@x>\r\nReferences: <gone@x> <b@x>\r\nSubject: Re: plan\r\n\r\n3\r\n',
    'Message-ID: <d@x>\r\nSubject: other\r\nDate: Sun, 31 Dec 2023 09:00:00 +0000\r\n\r\n4\r\n',
  ].map((s) => Buffer.from(s));
  await t.store.appendMany(t.inbox.id, raws.map((raw, i) => ({ raw, parsed: parseMessage(raw), internalDate: Date.UTC(2024, 0, 2, i) })));
  const answers = async (store: MailStore): Promise<unknown> => [
    await store.listThreadKeys(t.inbox.id),
    await store.rankSortKey(t.inbox.id, 'DATE'),
    await store.rankSortKey(t.inbox.id, 'SUBJECT'),
  ];
  const before = await answers(t.store);
  await t.store.close();
  const db = new Database(join(t.dir, 'facteur.db'));
  // As the database was at version 7.
  asVersion11(db);
  for (const name of ['entry_insert', 'entry_delete', 'entry_update', 'keys_insert', 'keys_update']) db.exec(`DROP TRIGGER sort_index_${name}`);
  db.exec('DROP TABLE sort_index; ALTER TABLE sort_keys DROP COLUMN thread_text; DELETE FROM schema_version WHERE version = 8');
  db.exec("DELETE FROM counters WHERE name = 'backfill_done'");
  db.close();
  const store = await openSqliteStore({ dir: t.dir });
  try {
    assert.deepEqual(await answers(store), before);
    // Marked done, so later opens skip the scan for rows without keys.
    const check = new Database(join(t.dir, 'facteur.db'), { readonly: true });
    assert.equal(check.prepare("SELECT value FROM counters WHERE name = 'backfill_done'").pluck().get(), 10);
    check.close();
    assert.equal((await store.listThreadKeys(t.inbox.id)).uids.length, 4);
    assert.deepEqual(await store.checkConsistency(), []);
  } finally {
    await store.close();
    await t.cleanup().catch(() => undefined);
  }
});

test('sqlite: a version 9 database whose THREAD hashes collide threads exactly once migration 10 numbers the names', async () => {
  const t = await setup();
  await t.store.appendMany(t.inbox.id, HASH_COLLISION.inputs());
  assert.equal(await threadsOf(t.store, t.inbox.id), HASH_COLLISION.threads);
  await t.store.close();
  const db = new Database(join(t.dir, 'facteur.db'));
  db.exec('DROP TABLE thread_names; DELETE FROM schema_version WHERE version = 10');
  const hashes = db.prepare('SELECT blob_hash FROM entries WHERE mailbox_id = ? ORDER BY uid').pluck().all(t.inbox.id) as string[];
  hashes.forEach((h, i) =>
    db.prepare('UPDATE sort_keys SET thread_text = ? WHERE id = (SELECT id FROM blobs WHERE hash = ?)').run(HASH_COLLISION.texts[i], h),
  );
  db.close();
  const store = await openSqliteStore({ dir: t.dir });
  try {
    assert.equal(await threadsOf(store, t.inbox.id), HASH_COLLISION.threads);
    assert.deepEqual(await store.checkConsistency(), []);
    // The backfills' mark names the version they brought the rows to.
    const check = new Database(join(t.dir, 'facteur.db'), { readonly: true });
    assert.equal(check.prepare("SELECT value FROM counters WHERE name = 'backfill_done'").pluck().get(), 10);
    check.close();
  } finally {
    await store.close();
    await t.cleanup().catch(() => undefined);
  }
});

test('sqlite: checkConsistency reports an entry missing from sort_index and a sort_index row without entry', async () => {
  const t = await setup();
  await t.store.append(t.inbox.id, testMessage({ subject: 'one' }));
  const db = new Database(join(t.dir, 'facteur.db'));
  db.prepare('DELETE FROM sort_index WHERE mailbox_id = ?').run(t.inbox.id);
  db.prepare("INSERT INTO sort_index VALUES (?, 99, 0, 0, 0, '', '', '', '', '', '', '0 0 1 ')").run(t.inbox.id);
  db.close();
  const problems = await t.store.checkConsistency();
  assert.ok(problems.some((p) => p.includes('uid 1 has no SORT and THREAD keys')), problems.join('\n'));
  assert.ok(problems.some((p) => p.includes('sort_index holds uid 99')), problems.join('\n'));
  await t.store.close();
  await t.cleanup().catch(() => undefined);
});

test('sqlite: the facts of a stored message are kept from its COMMIT on (no read at its first FETCH), and not when the same batch expunged it', async () => {
  const t = await setup();
  try {
    await t.store.append(t.inbox.id, testMessage({ subject: 'new' }));
    const [e] = await t.store.listEntries(t.inbox.id);
    // Behind the store's back: an answer from the database would show it.
    const db = new Database(join(t.dir, 'facteur.db'));
    try {
      db.prepare('UPDATE entries SET save_date = save_date - 86400000').run();
    } finally {
      db.close();
    }
    const [kept] = await t.store.getEntryFacts(t.inbox.id, [e!.uid], true);
    assert.equal(kept!.saveDate, e!.saveDate);
    assert.equal(kept!.blobHash, e!.blobHash);
    assert.equal(kept!.emailId, e!.emailId);
    // Stored and expunged in one batch (queued in that order, in the same turn: an inline
    // message reaches the queue after a few promise steps, the batch runs at setImmediate).
    const stored = t.store.append(t.inbox.id, testMessage({ subject: 'gone' }, { flags: ['\\Deleted'] }));
    for (let i = 0; i < 20; i++) await Promise.resolve();
    const expunged = t.store.expunge(t.inbox.id);
    const [r] = await Promise.all([stored, expunged]);
    assert.deepEqual(await expunged, [r.uid]);
    assert.deepEqual(await t.store.getEntryFacts(t.inbox.id, [r.uid], true), []);
  } finally {
    await t.cleanup();
  }
});

test('sqlite: a domain added or removed by another process (the command-line tool) is seen at once by the running store', async () => {
  const t = await setup();
  const cli = await openSqliteStore({ dir: t.dir });
  try {
    assert.equal(await t.store.isLocalDomain('example.com'), true);
    assert.equal(await t.store.isLocalDomain('new.example'), false);
    await cli.addDomain('new.example');
    assert.equal(await t.store.isLocalDomain('new.example'), true);
    await cli.removeDomain('new.example');
    assert.equal(await t.store.isLocalDomain('new.example'), false);
  } finally {
    await cli.close();
    await t.store.close();
    await t.cleanup().catch(() => undefined);
  }
});

test('sqlite: accounts and aliases changed by another process are seen at once, after answers asked before', async () => {
  const t = await setup();
  const cli = await openSqliteStore({ dir: t.dir });
  const m = testMessage();
  try {
    assert.deepEqual(await t.store.resolveRecipient('carol@example.com'), []);
    assert.deepEqual(await t.store.resolveRecipient('sales@example.com'), []);
    assert.equal((await t.store.resolveRecipientAccounts('bob@example.com'))[0]?.disabled, false);
    const carol = await cli.createAccount({ address: 'carol@example.com', passwordHash: 'h' });
    assert.deepEqual(await t.store.resolveRecipient('carol@example.com'), [carol.id]);
    // A delivery by the running store in between changes nothing of it.
    await t.store.deliver(m.raw, m.parsed, [{ accountId: t.bob.id }]);
    await cli.addAlias('sales@example.com', 'carol@example.com');
    assert.deepEqual(await t.store.resolveRecipient('sales@example.com'), [carol.id]);
    await cli.updateAccount(t.bob.id, { disabled: true });
    assert.equal((await t.store.resolveRecipientAccounts('bob@example.com'))[0]?.disabled, true);
    await cli.removeAlias('sales@example.com');
    await cli.deleteAccount(carol.id);
    assert.deepEqual(await t.store.resolveRecipient('sales@example.com'), []);
    assert.deepEqual(await t.store.resolveRecipient('carol@example.com'), []);
  } finally {
    await cli.close();
    await t.store.close();
    await t.cleanup().catch(() => undefined);
  }
});

test('sqlite: more distinct recipients than the lookup cache keeps are all answered right', async () => {
  const t = await setup();
  try {
    await t.store.addAlias('@example.com', 'bob@example.com');
    const alice = await t.store.createAccount({ address: 'alice@example.com', passwordHash: 'h' });
    for (let i = 0; i < MAX_LOOKUPS + 10; i++) assert.deepEqual(await t.store.resolveRecipient(`x${i}@example.com`), [t.bob.id]);
    assert.deepEqual(await t.store.resolveRecipient('alice@example.com'), [alice.id]);
    assert.deepEqual(await t.store.resolveRecipient('x0@example.com'), [t.bob.id]);
  } finally {
    await t.store.close();
    await t.cleanup().catch(() => undefined);
  }
});

/** Rows of search_gone (removals waiting for the index worker), read beside the store. */
function goneRows(dir: string): number {
  const db = new Database(join(dir, 'facteur.db'), { readonly: true });
  try {
    return db.prepare('SELECT count(*) FROM search_gone').pluck().get() as number;
  } finally {
    db.close();
  }
}

/** Polls `ok` every 10 ms for up to 3 s. */
async function wait(ok: () => boolean): Promise<void> {
  for (let i = 0; i < 300 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
}

/** Documents in the full-text index (search.db) that may contain the word, read beside the store. */
function indexed(dir: string, word: string): number {
  const db = new Database(join(dir, 'search.db'), { readonly: true });
  try {
    return db.prepare('SELECT count(*) FROM search WHERE search MATCH ?').pluck().get(trigramQuery(word, null)) as number;
  } finally {
    db.close();
  }
}

test('sqlite: SEARCH finds a message before its text is in the full-text index, and after; the index gets it in a later batch', async () => {
  const t = await openTestStore({ searchIndexBatch: 3, searchIndexDelayMs: 60_000 });
  try {
    await t.store.addDomain('example.com');
    const bob = await t.store.createAccount({ address: 'bob@example.com', passwordHash: 'h' });
    const inbox = (await t.store.getMailbox(bob.id, 'INBOX'))!;
    const find = async (value: string): Promise<number[]> => [...(await t.store.searchText(inbox.id, { field: 'body', value }))].sort();
    await t.store.append(inbox.id, testMessage({ subject: 'one', body: 'zebracorn first\r\n' }));
    await t.store.append(inbox.id, testMessage({ subject: 'two', body: 'zebracorn second\r\n' }));
    // Below the batch and long before the delay: not indexed, found by the direct read.
    assert.equal(indexed(t.dir, 'zebracorn'), 0);
    assert.deepEqual(await find('zebracorn'), [1, 2]);
    assert.deepEqual(await find('second'), [2]);
    const header = await t.store.searchText(inbox.id, { field: 'subject', value: 'two' });
    assert.deepEqual([...header], [2]);
    // The third makes a batch: indexed by the worker's next run, long before the delay.
    await t.store.append(inbox.id, testMessage({ subject: 'three', body: 'zebracorn third\r\n' }));
    for (let i = 0; i < 300 && indexed(t.dir, 'zebracorn') < 3; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(indexed(t.dir, 'zebracorn'), 3);
    assert.deepEqual(await find('zebracorn'), [1, 2, 3]);
    assert.deepEqual(await find('third'), [3]);
    assert.deepEqual(await t.store.checkConsistency(), []);
  } finally {
    await t.cleanup();
  }
});

test('sqlite: a message expunged before its text was indexed leaves nothing in the index; one indexed leaves it', async () => {
  const t = await openTestStore({ searchIndexBatch: 1000, searchIndexDelayMs: 60_000 });
  const { rm } = await import('node:fs/promises');
  try {
    await t.store.addDomain('example.com');
    const bob = await t.store.createAccount({ address: 'bob@example.com', passwordHash: 'h' });
    const inbox = (await t.store.getMailbox(bob.id, 'INBOX'))!;
    await t.store.append(inbox.id, testMessage({ body: 'quokkaline gone\r\n' }));
    await t.store.append(inbox.id, testMessage({ body: 'quokkaline kept\r\n' }));
    await t.store.expunge(inbox.id, [asUid(1)]);
    assert.deepEqual([...(await t.store.searchText(inbox.id, { field: 'body', value: 'quokkaline' }))], [2]);
    await t.store.close();
    // Closing adds what waits: only the message left.
    assert.equal(indexed(t.dir, 'quokkaline'), 1);
    assert.equal(indexed(t.dir, 'kept'), 1);
    const store = await openSqliteStore({ dir: t.dir });
    try {
      const [entry] = await store.listEntries(inbox.id);
      await store.expunge(inbox.id, [entry!.uid]);
      assert.equal((await store.searchText(inbox.id, { field: 'body', value: 'quokkaline' })).size, 0);
      assert.deepEqual(await store.checkConsistency(), []);
    } finally {
      await store.close();
    }
    // The sweep (at close) removed the indexed blob's index entries.
    assert.equal(indexed(t.dir, 'quokkaline'), 0);
  } finally {
    await rm(t.dir, { recursive: true, force: true });
  }
});

test('sqlite: blobs another process left out of the full-text index are added by the next store that opens', async () => {
  const t = await openTestStore({ searchIndexBatch: 1000, searchIndexDelayMs: 60_000 });
  const other = await openSqliteStore({ dir: t.dir, searchIndexDelayMs: 0 });
  try {
    await t.store.addDomain('example.com');
    const bob = await t.store.createAccount({ address: 'bob@example.com', passwordHash: 'h' });
    const inbox = (await t.store.getMailbox(bob.id, 'INBOX'))!;
    await t.store.append(inbox.id, testMessage({ body: 'wombatish text\r\n' }));
    assert.equal(indexed(t.dir, 'wombatish'), 0);
    // As a server restarted after a crash: this store finds the blob above the mark at open.
    const third = await openSqliteStore({ dir: t.dir, searchIndexDelayMs: 0 });
    try {
      for (let i = 0; i < 100 && indexed(t.dir, 'wombatish') === 0; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(indexed(t.dir, 'wombatish'), 1);
      assert.deepEqual([...(await third.searchText(inbox.id, { field: 'body', value: 'wombatish' }))], [1]);
      // The first store's mark is the database's: its search and its close see the blob indexed.
      assert.deepEqual([...(await t.store.searchText(inbox.id, { field: 'body', value: 'wombatish' }))], [1]);
    } finally {
      await third.close();
    }
  } finally {
    await other.close();
    await t.cleanup();
  }
});

test('sqlite: a data directory of schema 13 (index inside facteur.db) gets search.db, rebuilt by the worker; SEARCH finds every message meanwhile', async () => {
  const t = await setup();
  const { rm } = await import('node:fs/promises');
  try {
    for (let i = 0; i < 5; i++) await t.store.append(t.inbox.id, testMessage({ subject: `s${i}`, body: `dromedarian ${i}\r\n` }));
    await t.store.close();
    // Back to schema 13: the index in facteur.db, its mark in counters, no search.db.
    for (const f of ['search.db', 'search.db-wal', 'search.db-shm']) await rm(join(t.dir, f), { force: true });
    const db = new Database(join(t.dir, 'facteur.db'));
    db.exec(`DROP TABLE search_gone;
CREATE VIRTUAL TABLE search USING fts5(subject, addr_from, addr_to, addr_cc, addr_bcc, headers, body,
  tokenize = 'trigram', detail = column, content = '', contentless_delete = 1);
INSERT INTO counters (name, value) VALUES ('search_indexed', 5);
DELETE FROM schema_version WHERE version = 14;`);
    db.close();
    const store = await openSqliteStore({ dir: t.dir, searchIndexDelayMs: 1000 });
    try {
      assert.equal(indexed(t.dir, 'dromedarian'), 0);
      assert.equal((await store.searchText(t.inbox.id, { field: 'body', value: 'dromedarian' })).size, 5);
      // At open the store finds every blob above the (new) mark, and the worker adds them.
      for (let i = 0; i < 500 && indexed(t.dir, 'dromedarian') < 5; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(indexed(t.dir, 'dromedarian'), 5);
      assert.equal((await store.searchText(t.inbox.id, { field: 'body', value: 'dromedarian 3' })).size, 1);
    } finally {
      await store.close();
    }
    const after = new Database(join(t.dir, 'facteur.db'), { readonly: true });
    try {
      assert.equal(after.prepare("SELECT count(*) FROM sqlite_schema WHERE name = 'search'").pluck().get(), 0);
      assert.equal(after.prepare("SELECT count(*) FROM counters WHERE name = 'search_indexed'").pluck().get(), 0);
    } finally {
      after.close();
    }
  } finally {
    await t.cleanup().catch(() => undefined);
  }
});

test('sqlite: the removals the index worker has done are pruned from search_gone by a later sweep', async () => {
  const t = await openTestStore({ sweepDelayMs: 20, searchIndexDelayMs: 0 });
  try {
    await t.store.addDomain('example.com');
    const bob = await t.store.createAccount({ address: 'bob@example.com', passwordHash: 'h' });
    const inbox = (await t.store.getMailbox(bob.id, 'INBOX'))!;
    for (const word of ['armadillic', 'pangolinic']) {
      await t.store.append(inbox.id, testMessage({ subject: word, body: `${word} text\r\n` }));
      await wait(() => indexed(t.dir, word) === 1);
      assert.equal(indexed(t.dir, word), 1);
      const [e] = await t.store.listEntries(inbox.id);
      await t.store.expunge(inbox.id, [e!.uid]);
      // The sweep records the removal; the worker's next run takes the document out.
      await wait(() => indexed(t.dir, word) === 0);
      assert.equal(indexed(t.dir, word), 0);
    }
    // The second sweep pruned the first removal, done by the worker by then; the second waits
    // for the next sweep.
    assert.equal(goneRows(t.dir), 1);
    assert.deepEqual(await t.store.checkConsistency(), []);
  } finally {
    await t.cleanup();
  }
});

test('sqlite: a search.db SQLite cannot read is moved aside and built again; the store opens and SEARCH finds every message', async () => {
  const t = await setup();
  const { readdir: list, writeFile } = await import('node:fs/promises');
  try {
    for (let i = 0; i < 3; i++) await t.store.append(t.inbox.id, testMessage({ subject: `s${i}`, body: `capybarine ${i}\r\n` }));
    await t.store.close();
    assert.equal(indexed(t.dir, 'capybarine'), 3);
    await writeFile(join(t.dir, 'search.db'), Buffer.alloc(8192, 0x5a));
    const store = await openSqliteStore({ dir: t.dir, searchIndexDelayMs: 0 });
    try {
      assert.equal((await store.searchText(t.inbox.id, { field: 'body', value: 'capybarine' })).size, 3);
      await wait(() => indexed(t.dir, 'capybarine') === 3);
      assert.equal(indexed(t.dir, 'capybarine'), 3);
      assert.equal((await store.searchText(t.inbox.id, { field: 'body', value: 'capybarine 2' })).size, 1);
    } finally {
      await store.close();
    }
    assert.equal((await list(t.dir)).filter((f) => f.startsWith('search.db.unreadable-')).length, 1);
  } finally {
    await t.cleanup().catch(() => undefined);
  }
});

test('sqlite: a SEARCH that finds the index damaged answers by reading the messages, and the next open builds the index again', async () => {
  const t = await setup();
  const { readdir: list } = await import('node:fs/promises');
  try {
    for (let i = 0; i < 3; i++) await t.store.append(t.inbox.id, testMessage({ subject: `s${i}`, body: `tapirish ${i}\r\n` }));
    await wait(() => indexed(t.dir, 'tapirish') === 3);
    assert.equal(indexed(t.dir, 'tapirish'), 3);
    // Every page of search.db but the first (the schema) overwritten behind the store's back,
    // once the WAL is in the file.
    const db = new Database(join(t.dir, 'search.db'));
    db.pragma('wal_checkpoint(TRUNCATE)');
    db.close();
    const { open: openFile } = await import('node:fs/promises');
    const fh = await openFile(join(t.dir, 'search.db'), 'r+');
    const { size } = await fh.stat();
    await fh.write(Buffer.alloc(size - 4096, 0xa5), 0, size - 4096, 4096);
    await fh.close();
    assert.throws(() => indexed(t.dir, 'tapirish'), (err: { code?: string }) => err.code?.startsWith('SQLITE_CORRUPT') === true);
    assert.deepEqual([...(await t.store.searchText(t.inbox.id, { field: 'body', value: 'tapirish' }))].sort(), [1, 2, 3]);
    assert.deepEqual([...(await t.store.searchText(t.inbox.id, { field: 'body', value: 'tapirish 1' }))], [2]);
    await t.store.close();
    assert.ok((await list(t.dir)).includes('search.db.rebuild'));
    const store = await openSqliteStore({ dir: t.dir, searchIndexDelayMs: 0 });
    try {
      await wait(() => indexed(t.dir, 'tapirish') === 3);
      assert.equal(indexed(t.dir, 'tapirish'), 3);
    } finally {
      await store.close();
    }
    const files = await list(t.dir);
    assert.ok(!files.includes('search.db.rebuild'));
    assert.equal(files.filter((f) => f.startsWith('search.db.unreadable-')).length, 1);
  } finally {
    await t.cleanup().catch(() => undefined);
  }
});

test('sqlite: removals another process left in search_gone are done by the next store that opens', async () => {
  const t = await openTestStore({ sweepDelayMs: 20, searchIndexBatch: 1000, searchIndexDelayMs: 60_000 });
  try {
    await t.store.addDomain('example.com');
    const bob = await t.store.createAccount({ address: 'bob@example.com', passwordHash: 'h' });
    const inbox = (await t.store.getMailbox(bob.id, 'INBOX'))!;
    await t.store.append(inbox.id, testMessage({ body: 'okapian text\r\n' }));
    // Indexed by another store's worker (this one's waits a minute).
    const indexer = await openSqliteStore({ dir: t.dir, searchIndexDelayMs: 0 });
    await wait(() => indexed(t.dir, 'okapian') === 1);
    await indexer.close();
    assert.equal(indexed(t.dir, 'okapian'), 1);
    // The sweep records the removal; this store's worker would run a minute later, as if the
    // process had stopped first.
    await t.store.expunge(inbox.id, [asUid(1)]);
    await wait(() => goneRows(t.dir) === 1);
    assert.equal(goneRows(t.dir), 1);
    const next = await openSqliteStore({ dir: t.dir, searchIndexDelayMs: 0 });
    try {
      await wait(() => indexed(t.dir, 'okapian') === 0);
      assert.equal(indexed(t.dir, 'okapian'), 0);
    } finally {
      await next.close();
    }
  } finally {
    await t.cleanup();
  }
});

test('sqlite: a batch of large texts is added to the full-text index by its worker, in runs of bounded size, and no store job', async () => {
  const t = await openTestStore({ searchIndexBatch: 6, searchIndexDelayMs: 60_000, searchIndexRunText: 512 * 1024 });
  try {
    await t.store.addDomain('example.com');
    const bob = await t.store.createAccount({ address: 'bob@example.com', passwordHash: 'h' });
    const inbox = (await t.store.getMailbox(bob.id, 'INBOX'))!;
    // Six messages of about 200,000 characters of text: with a budget of 512 Ki characters a run,
    // the worker takes them in two runs (three each, the third passing the budget).
    const line = 'numbatoid lorem ipsum dolor sit amet consectetur adipiscing elit sed do\r\n';
    const body = line.repeat(Math.ceil(200_000 / line.length));
    const jobs = sqliteStoreStats(t.store)!.jobs;
    const runs = sqliteSearchIndexerStats(t.store)!.runs;
    await t.store.appendMany(inbox.id, Array.from({ length: 6 }, (_, i) => testMessage({ subject: `big ${i}`, body })));
    // The index is read beside the store: the last run's commit shows there before its reply
    // reaches the store's stats.
    const done = (): boolean => indexed(t.dir, 'numbatoid') === 6 && sqliteSearchIndexerStats(t.store)!.runs - runs >= 2;
    for (let i = 0; i < 300 && !done(); i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(indexed(t.dir, 'numbatoid'), 6);
    // The append is the store's only job: the index is written off its event loop.
    assert.equal(sqliteStoreStats(t.store)!.jobs - jobs, 1);
    assert.equal(sqliteSearchIndexerStats(t.store)!.runs - runs, 2);
    assert.equal((await t.store.searchText(inbox.id, { field: 'body', value: 'numbatoid' })).size, 6);
    assert.deepEqual(await t.store.checkConsistency(), []);
  } finally {
    await t.cleanup();
  }
});

test('sqlite: close adds every blob waiting for the full-text index, past one batch of 1,000', async () => {
  const t = await openTestStore({ searchIndexBatch: 100_000, searchIndexDelayMs: 60_000 });
  const { rm } = await import('node:fs/promises');
  try {
    await t.store.addDomain('example.com');
    const bob = await t.store.createAccount({ address: 'bob@example.com', passwordHash: 'h' });
    const inbox = (await t.store.getMailbox(bob.id, 'INBOX'))!;
    await t.store.appendMany(inbox.id, Array.from({ length: 1100 }, (_, i) => testMessage({ subject: `n${i}`, body: `platypoid ${i}\r\n` })));
    assert.equal(indexed(t.dir, 'platypoid'), 0);
    assert.equal((await t.store.searchText(inbox.id, { field: 'body', value: 'platypoid' })).size, 1100);
    await t.store.close();
    assert.equal(indexed(t.dir, 'platypoid'), 1100);
    const db = new Database(join(t.dir, 'facteur.db'), { readonly: true });
    const search = new Database(join(t.dir, 'search.db'), { readonly: true });
    assert.equal(
      search.prepare("SELECT value FROM search_state WHERE name = 'indexed'").pluck().get(),
      db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'blobs'").pluck().get(),
    );
    search.close();
    db.close();
  } finally {
    await rm(t.dir, { recursive: true, force: true });
  }
});

test('sqlite: changesSince reads a mailbox head once between writes, and again after a write of this store or of another process', async () => {
  const t = await setup();
  const cli = await openSqliteStore({ dir: t.dir });
  const reads = (): number => sqliteStoreStats(t.store)!.headReads;
  try {
    await t.store.append(t.inbox.id, testMessage({ subject: 'one' }));
    const first = await t.store.changesSince(t.inbox.id, asModSeq(0), asUid(1));
    const before = reads();
    for (let i = 0; i < 5; i++) await t.store.changesSince(t.inbox.id, first.highestModSeq, asUid(2));
    assert.equal(reads(), before, 'the head read by the first call answers the next ones');
    await t.store.setFlags(t.inbox.id, [asUid(1)], 'add', ['\\Seen']);
    const flagged = await t.store.changesSince(t.inbox.id, first.highestModSeq, asUid(2));
    assert.equal(reads(), before + 1, "this store's write: read again");
    assert.deepEqual(flagged.changed.map((c) => c.uid), [1]);
    await cli.setFlags(t.inbox.id, [asUid(1)], 'add', ['\\Flagged']);
    await new Promise((r) => setTimeout(r, 5));
    const other = await t.store.changesSince(t.inbox.id, flagged.highestModSeq, asUid(2));
    assert.equal(reads(), before + 2, "another process's write: read again");
    assert.deepEqual(other.changed.map((c) => [c.uid, [...c.flags]]), [[1, ['\\Seen', '\\Flagged']]]);
  } finally {
    await cli.close();
    await t.store.close();
    await t.cleanup().catch(() => undefined);
  }
});

test('sqlite: changesSince reads the changes once for the callers that ask the same question between two writes', async () => {
  const t = await setup();
  const reads = (): number => sqliteStoreStats(t.store)!.deltaReads;
  try {
    await t.store.append(t.inbox.id, testMessage({ subject: 'one' }));
    const start = await t.store.changesSince(t.inbox.id, asModSeq(0), asUid(1));
    await t.store.append(t.inbox.id, testMessage({ subject: 'two' }));
    const before = reads();
    // Two sessions of the mailbox, both at `start`: one read, one answer.
    const a = await t.store.changesSince(t.inbox.id, start.highestModSeq, asUid(2));
    const b = await t.store.changesSince(t.inbox.id, start.highestModSeq, asUid(2));
    assert.equal(reads(), before + 1);
    assert.deepEqual(a.added.map((x) => x.uid), [2]);
    assert.equal(b, a);
    // Other questions: read.
    const known = await t.store.changesSince(t.inbox.id, start.highestModSeq, asUid(3));
    assert.deepEqual([known.added.length, known.changed.map((x) => x.uid)], [0, [2]]);
    const all = await t.store.changesSince(t.inbox.id, asModSeq(0), asUid(1));
    assert.equal(reads(), before + 3);
    assert.deepEqual(all.added.map((x) => x.uid), [1, 2]);
    // After a write the same question is read again, and sees it.
    await t.store.setFlags(t.inbox.id, [asUid(1)], 'add', ['\\Seen']);
    const after = await t.store.changesSince(t.inbox.id, asModSeq(0), asUid(1));
    assert.equal(reads(), before + 4);
    assert.deepEqual(after.added.map((x) => [x.uid, [...x.flags]]), [[1, ['\\Seen']], [2, []]]);
  } finally {
    await t.store.close();
    await t.cleanup().catch(() => undefined);
  }
});

test("sqlite: mailbox rows are read once between writes; this store's writes and another process's are seen", async () => {
  const t = await setup();
  const cli = await openSqliteStore({ dir: t.dir });
  const reads = (): number => sqliteStoreStats(t.store)!.mailboxReads;
  const names = async (): Promise<string[]> => (await t.store.listMailboxes(t.bob.id)).map((m) => m.name);
  const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 5));
  try {
    await t.store.append(t.inbox.id, testMessage({ subject: 'one' }));
    const before = reads();
    assert.equal((await t.store.getMailbox(t.bob.id, 'INBOX'))!.uidNext, 2);
    assert.equal((await t.store.getMailbox(t.bob.id, 'inbox'))!.uidNext, 2);
    assert.equal(reads(), before + 1, 'read once by name');
    const listed = await names();
    assert.ok(listed.includes('INBOX') && !listed.includes('Work'));
    assert.equal(await t.store.getMailbox(t.bob.id, 'Work'), null);
    await names();
    assert.equal(reads(), before + 2, 'listed once; a name the listing lacks is no mailbox, without a read');
    // The objects are the caller's: changing one changes no later answer.
    const mine = (await t.store.getMailbox(t.bob.id, 'INBOX'))!;
    mine.uidNext = asUid(99);
    assert.equal((await t.store.getMailbox(t.bob.id, 'INBOX'))!.uidNext, 2);

    // This store's writes: seen by the next call.
    await t.store.append(t.inbox.id, testMessage({ subject: 'two' }));
    assert.equal((await t.store.getMailbox(t.bob.id, 'INBOX'))!.uidNext, 3);
    await t.store.createMailbox(t.bob.id, 'Work');
    assert.ok((await names()).includes('Work'));
    assert.equal((await t.store.getMailbox(t.bob.id, 'Work'))!.subscribed, false);
    await t.store.setSubscribed(t.bob.id, 'Work', true);
    assert.equal((await t.store.getMailbox(t.bob.id, 'Work'))!.subscribed, true);

    // Another process (the command-line tool): seen once data_version is asked again.
    assert.equal(await t.store.getMailbox(t.bob.id, 'Other'), null);
    await cli.createMailbox(t.bob.id, 'Other');
    await settle();
    assert.notEqual(await t.store.getMailbox(t.bob.id, 'Other'), null);
    await names();
    await cli.renameMailbox(t.bob.id, 'Work', 'Play');
    await settle();
    assert.equal(await t.store.getMailbox(t.bob.id, 'Work'), null);
    assert.deepEqual(await names(), ['INBOX', ...listed.filter((n) => n !== 'INBOX'), 'Other', 'Play'].sort((a, b) => (a === 'INBOX' ? -1 : b === 'INBOX' ? 1 : a < b ? -1 : 1)));
    await cli.setSubscribed(t.bob.id, 'Play', false);
    await settle();
    assert.equal((await t.store.listMailboxes(t.bob.id)).find((m) => m.name === 'Play')!.subscribed, false);
    await cli.append(t.inbox.id, testMessage({ subject: 'three' }));
    await settle();
    assert.equal((await t.store.getMailbox(t.bob.id, 'INBOX'))!.uidNext, 4);
    await cli.deleteMailbox(t.bob.id, 'Other');
    await settle();
    assert.equal(await t.store.getMailbox(t.bob.id, 'Other'), null);
    assert.ok(!(await names()).includes('Other'));
  } finally {
    await cli.close();
    await t.store.close();
    await t.cleanup().catch(() => undefined);
  }
});

test("sqlite: changesSince sees this store's writes at once and another process's within milliseconds, though it keeps mailbox heads", async () => {
  const t = await setup();
  const cli = await openSqliteStore({ dir: t.dir });
  try {
    await t.store.append(t.inbox.id, testMessage({ subject: 'one' }));
    const first = await t.store.changesSince(t.inbox.id, asModSeq(0), asUid(1));
    assert.deepEqual(first.added.map((a) => a.uid), [1]);
    // Asked again with nothing changed: the answer that keeps the head.
    const quiet = await t.store.changesSince(t.inbox.id, first.highestModSeq, asUid(2));
    assert.deepEqual([quiet.added.length, quiet.changed.length, quiet.expunged.length], [0, 0, 0]);
    // This store's own write: seen by the very next call.
    await t.store.append(t.inbox.id, testMessage({ subject: 'two' }));
    const own = await t.store.changesSince(t.inbox.id, first.highestModSeq, asUid(2));
    assert.deepEqual(own.added.map((a) => a.uid), [2]);
    await t.store.setFlags(t.inbox.id, [asUid(1)], 'add', ['\\Seen']);
    const flagged = await t.store.changesSince(t.inbox.id, own.highestModSeq, asUid(3));
    assert.deepEqual(flagged.changed.map((c) => [c.uid, [...c.flags]]), [[1, ['\\Seen']]]);
    // Another process (the command-line tool): seen once data_version is asked again.
    await cli.append(t.inbox.id, testMessage({ subject: 'three' }));
    await new Promise((r) => setTimeout(r, 5));
    const other = await t.store.changesSince(t.inbox.id, flagged.highestModSeq, asUid(3));
    assert.deepEqual(other.added.map((a) => a.uid), [3]);
    await t.store.changesSince(t.inbox.id, other.highestModSeq, asUid(4));
    await cli.setFlags(t.inbox.id, [asUid(2)], 'add', ['\\Flagged']);
    await new Promise((r) => setTimeout(r, 5));
    const otherFlags = await t.store.changesSince(t.inbox.id, other.highestModSeq, asUid(4));
    assert.deepEqual(otherFlags.changed.map((c) => [c.uid, [...c.flags]]), [[2, ['\\Flagged']]]);
    await cli.expunge(t.inbox.id, [asUid(1)]);
    await new Promise((r) => setTimeout(r, 5));
    const gone = await t.store.changesSince(t.inbox.id, otherFlags.highestModSeq, asUid(4));
    assert.deepEqual(gone.expunged, [1]);
  } finally {
    await cli.close();
    await t.store.close();
    await t.cleanup().catch(() => undefined);
  }
});
