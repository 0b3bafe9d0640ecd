/**
 * View cache snapshots across restarts (store/view-snapshot.ts, view-cache.ts): a store is closed
 * (writing the snapshot of every view it held), the mailbox is changed by a store that does not
 * touch the snapshot (another process, or one that crashed), and a new store on the same data
 * must hand out the mailbox exactly as its rows say. Each kind of change is checked with the
 * snapshot in use (the cache's counters say it started from it), so a cache that served the
 * snapshot without applying what changed after it fails here; each kind of unusable snapshot is
 * checked to be read whole instead. SQLite by default, PostgreSQL with FACTEUR_TEST_STORE=postgres.
 */
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { test } from 'node:test';
import { crc32 } from 'node:zlib';
import Database from 'better-sqlite3';
import pg from 'pg';
import type { MailboxId } from '../../src/lib/brand.js';
import { asUid } from '../../src/lib/brand.js';
import { openPgStore, parsePgStoreUrl } from '../../src/store/sql/postgres/pg-store.js';
import { openSqliteStore } from '../../src/store/sql/sqlite/sqlite-store.js';
import { StoreError } from '../../src/store/types.js';
import type { AccountId } from '../../src/lib/brand.js';
import type { MailStore } from '../../src/store/types.js';
import { VIEW_WARM_MESSAGES, viewCacheStats } from '../../src/store/view-cache.js';
import { decodeViewSnapshot, encodeViewSnapshot } from '../../src/store/view-snapshot.js';
import { testMessage, testStoreLocation } from '../helpers/store.js';
import { assertViewCurrent } from './store-suite.js';

const postgres = process.env.FACTEUR_TEST_STORE === 'postgres';

/** A store on the location; snapshots for views of any size unless told otherwise. */
function open(location: string, snapshotMin = 1): Promise<MailStore> {
  if (postgres) return openPgStore({ ...parsePgStoreUrl(location), blobs: 'database', viewSnapshotMin: snapshotMin });
  return openSqliteStore({ dir: location, viewSnapshotMin: snapshotMin });
}

/** A server's store (warm-up on, budget `warm`), snapshots from `snapshotMin` messages. */
function openWarm(location: string, snapshotMin: number, warm: number): Promise<MailStore> {
  if (postgres) return openPgStore({ ...parsePgStoreUrl(location), blobs: 'database', viewSnapshotMin: snapshotMin, viewWarmMessages: warm });
  return openSqliteStore({ dir: location, viewSnapshotMin: snapshotMin, viewWarmMessages: warm });
}

/** Waits until the store's view cache holds one mailbox (loaded by the warm-up). */
async function warmed(s: MailStore): Promise<void> {
  for (let waited = 0; viewCacheStats(s)?.mailboxes !== 1; waited += 20) {
    assert.ok(waited < 5000, 'warmed without any read');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Runs SQL on the store's database directly ("?" placeholders), as another program would. */
async function sql(location: string, text: string, params: unknown[] = []): Promise<Array<Record<string, unknown>>> {
  if (postgres) {
    const { url, schema } = parsePgStoreUrl(location);
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      await c.query(`SET search_path = "${schema ?? 'public'}"`);
      let i = 0;
      return (await c.query(text.replace(/\?/g, () => `$${++i}`), params)).rows as Array<Record<string, unknown>>;
    } finally {
      await c.end();
    }
  }
  const db = new Database(join(location, 'facteur.db'));
  try {
    const st = db.prepare(text);
    if (st.reader) return st.all(...params) as Array<Record<string, unknown>>;
    st.run(...params);
    return [];
  } finally {
    db.close();
  }
}

async function storedSnapshot(location: string, id: MailboxId): Promise<{ modseq: number; data: Buffer } | null> {
  const row = (await sql(location, 'SELECT modseq, data FROM view_snapshots WHERE mailbox_id = ?', [id]))[0];
  return row === undefined ? null : { modseq: Number(row.modseq), data: row.data as Buffer };
}

async function writeSnapshot(location: string, id: MailboxId, data: Uint8Array): Promise<void> {
  await sql(location, 'UPDATE view_snapshots SET data = ? WHERE mailbox_id = ?', [Buffer.from(data), id]);
}

interface Fixture {
  location: string;
  account: AccountId;
  box: MailboxId;
  cleanup(): Promise<void>;
}

/**
 * A mailbox "Projects" of 40 messages (mixed flags and keywords) whose view was read whole by a
 * store, then closed: the snapshot is stored as of its modseq.
 */
async function withSnapshot(fn: (f: Fixture) => Promise<void>): Promise<void> {
  const loc = await testStoreLocation();
  try {
    const s = await open(loc.location);
    let f: Fixture;
    try {
      await s.addDomain('example.com');
      const bob = await s.createAccount({ address: 'bob@example.com', passwordHash: 'hash' });
      const box = await s.createMailbox(bob.id, 'Projects');
      const flags = (i: number): string[] => [
        ...(i % 3 === 0 ? ['\\Seen'] : []),
        ...(i % 7 === 0 ? ['\\Flagged'] : []),
        ...(i % 5 === 0 ? ['$Important'] : []),
      ];
      await s.appendMany(box.id, Array.from({ length: 40 }, (_, i) => testMessage({ subject: `m${i}` }, { flags: flags(i) })));
      await assertViewCurrent(s, box.id, 'first read');
      assert.equal(viewCacheStats(s)?.wholeReads, 1);
      f = { location: loc.location, account: bob.id, box: box.id, cleanup: loc.cleanup };
    } finally {
      await s.close();
    }
    const snap = await storedSnapshot(loc.location, f.box);
    assert.ok(snap !== null, 'the close stored a snapshot');
    assert.equal(decodeViewSnapshot(snap.data)?.n, 40);
    await fn(f);
  } finally {
    await loc.cleanup();
  }
}

/** Changes the mailbox with a store that holds no view of it: the snapshot stays as it was. */
async function change(f: Fixture, fn: (s: MailStore) => Promise<void>, deletes = false): Promise<void> {
  const before = await storedSnapshot(f.location, f.box);
  const s = await open(f.location, Infinity);
  try {
    await fn(s);
  } finally {
    await s.close();
  }
  assert.deepEqual(await storedSnapshot(f.location, f.box), deletes ? null : before, 'the writer left the snapshot alone, or deleted it with its mailbox');
}

/** Opens a store, checks the view is exact and how it was made, checks consistency. */
async function reopenAndCheck(f: Fixture, how: 'snapshot' | 'whole', what: string, box = f.box): Promise<void> {
  const s = await open(f.location);
  try {
    await assertViewCurrent(s, box, what);
    const st = viewCacheStats(s);
    assert.deepEqual(
      { fromSnapshot: st?.fromSnapshot, wholeReads: st?.wholeReads },
      how === 'snapshot' ? { fromSnapshot: 1, wholeReads: 0 } : { fromSnapshot: 0, wholeReads: 1 },
      `made from ${how} (${what})`,
    );
    assert.deepEqual(await s.checkConsistency(), []);
  } finally {
    await s.close();
  }
}

test('view snapshot: flags and keywords changed after the snapshot are applied on top of it', () =>
  withSnapshot(async (f) => {
    await change(f, async (s) => {
      await s.setFlags(f.box, [1, 2, 3, 4].map(asUid), 'add', ['\\Seen', '$Later']);
      await s.setFlags(f.box, [6, 9].map(asUid), 'remove', ['\\Seen']);
      await s.setFlags(f.box, [asUid(10)], 'set', ['\\Answered', 'NewKeyword']);
    });
    await reopenAndCheck(f, 'snapshot', 'after flag changes');
  }));

test('view snapshot: messages appended after the snapshot are added to it', () =>
  withSnapshot(async (f) => {
    await change(f, async (s) => {
      await s.appendMany(f.box, [testMessage({ subject: 'new 1' }, { flags: ['\\Draft'] }), testMessage({ subject: 'new 2' })]);
    });
    await reopenAndCheck(f, 'snapshot', 'after appends');
  }));

test('view snapshot: messages expunged or moved away after the snapshot leave it', () =>
  withSnapshot(async (f) => {
    await change(f, async (s) => {
      await s.setFlags(f.box, [2, 5, 40].map(asUid), 'add', ['\\Deleted']);
      await s.expunge(f.box);
      const inbox = await s.getMailbox(f.account, 'INBOX');
      assert.ok(inbox);
      await s.move(f.box, [asUid(7)], inbox.id);
    });
    await reopenAndCheck(f, 'snapshot', 'after expunges and a move');
  }));

test('view snapshot: a store closed after catching up stores a newer one, and changes after that apply too', () =>
  withSnapshot(async (f) => {
    const first = await storedSnapshot(f.location, f.box);
    await change(f, (s) => s.setFlags(f.box, [asUid(1)], 'add', ['\\Answered']).then(() => undefined));
    await reopenAndCheck(f, 'snapshot', 'after one change');
    const second = await storedSnapshot(f.location, f.box);
    assert.ok(second !== null && first !== null && second.modseq > first.modseq, 'rewritten at the newer modseq');
    await change(f, async (s) => {
      await s.appendMany(f.box, [testMessage({ subject: 'later' })]);
      await s.expunge(f.box, [asUid(3)], false);
    });
    await reopenAndCheck(f, 'snapshot', 'after more changes');
  }));

test('view snapshot: when expunge log rows are missing (pruned), the message count refuses the snapshot', () =>
  withSnapshot(async (f) => {
    await change(f, async (s) => {
      await s.expunge(f.box, [4, 8, 12].map(asUid), false);
    });
    await sql(f.location, 'DELETE FROM expunged WHERE mailbox_id = ?', [f.box]);
    await reopenAndCheck(f, 'whole', 'after expunges whose log is gone');
  }));

test('view snapshot: a renamed mailbox (same id) keeps its snapshot; a deleted one loses it', () =>
  withSnapshot(async (f) => {
    await change(f, async (s) => {
      await s.renameMailbox(f.account, 'Projects', 'Old/Projects');
      await s.setFlags(f.box, [asUid(11)], 'add', ['\\Seen']);
    });
    await reopenAndCheck(f, 'snapshot', 'after a rename');
    await change(f, (s) => s.deleteMailbox(f.account, 'Old/Projects'), true);
    const s = await open(f.location);
    try {
      await assert.rejects(s.listViewEntries(f.box), (err: unknown) => err instanceof StoreError && err.code === 'not-found');
    } finally {
      await s.close();
    }
  }));

test('view snapshot: a mailbox deleted and created again under the same name starts without one', () =>
  withSnapshot(async (f) => {
    let again: MailboxId | null = null;
    await change(f, async (s) => {
      await s.deleteMailbox(f.account, 'Projects');
      again = (await s.createMailbox(f.account, 'Projects')).id;
      await s.appendMany(again, [testMessage({ subject: 'in the new one' }, { flags: ['\\Seen'] })]);
    }, true);
    assert.ok(again !== null && again !== f.box, 'a new mailbox id');
    assert.equal(await storedSnapshot(f.location, again), null);
    await reopenAndCheck(f, 'whole', 'the new mailbox', again);
  }));

test('view snapshot: one of another UIDVALIDITY is ignored', () =>
  withSnapshot(async (f) => {
    await sql(f.location, 'UPDATE mailboxes SET uid_validity = uid_validity - 100000 WHERE id = ?', [f.box]);
    await reopenAndCheck(f, 'whole', 'after a UIDVALIDITY change');
  }));

test('view snapshot: one of another format, a corrupt one, a truncated one are ignored and replaced', async () => {
  const spoil: Array<[string, (b: Buffer) => Buffer]> = [
    [
      'another format',
      (b) => {
        const c = Buffer.from(b);
        c.writeUInt32LE(2, 4);
        c.writeUInt32LE(crc32(c.subarray(0, c.length - 4)), c.length - 4);
        return c;
      },
    ],
    [
      'one byte changed',
      (b) => {
        const c = Buffer.from(b);
        c[c.length - 20] = c[c.length - 20]! ^ 0x10;
        return c;
      },
    ],
    ['truncated', (b) => b.subarray(0, b.length - 9)],
    ['not a snapshot', () => Buffer.from('garbage')],
  ];
  for (const [what, fn] of spoil) {
    await withSnapshot(async (f) => {
      const snap = await storedSnapshot(f.location, f.box);
      assert.ok(snap !== null);
      await writeSnapshot(f.location, f.box, fn(snap.data));
      await reopenAndCheck(f, 'whole', what);
      // The store that read it whole wrote a sound one at close.
      const now = await storedSnapshot(f.location, f.box);
      assert.ok(now !== null && decodeViewSnapshot(now.data) !== null, `replaced (${what})`);
    });
  }
});

test('view snapshot: one ahead of the mailbox (modseq or UIDNEXT above the row) is ignored', async () => {
  for (const field of ['modseq', 'uidNext'] as const) {
    await withSnapshot(async (f) => {
      const snap = await storedSnapshot(f.location, f.box);
      const state = snap === null ? null : decodeViewSnapshot(snap.data);
      assert.ok(state !== null);
      const data = encodeViewSnapshot({ ...state, [field]: state[field] + 1000 }, state.n);
      assert.ok(data !== null);
      await writeSnapshot(f.location, f.box, data);
      await reopenAndCheck(f, 'whole', `${field} ahead`);
    });
  }
});

test('view snapshot: its content is what a cold load serves up to its modseq (the snapshot is really read)', () =>
  withSnapshot(async (f) => {
    const snap = await storedSnapshot(f.location, f.box);
    const state = snap === null ? null : decodeViewSnapshot(snap.data);
    assert.ok(state !== null);
    // A different flag list for the first message, at the same modseq: only a load that reads
    // the snapshot can show it (no change after the snapshot says otherwise).
    const other = state.flagIds[0] === 0 ? 1 : 0;
    assert.ok(other < state.flagSets.length);
    state.flagIds[0] = other;
    await writeSnapshot(f.location, f.box, encodeViewSnapshot(state, state.n)!);
    const s = await open(f.location);
    try {
      const v = await s.listViewEntries(f.box);
      assert.deepEqual(v.flagSets[v.flagIds[0]!], state.flagSets[other]);
      assert.equal(viewCacheStats(s)?.fromSnapshot, 1);
      // A change to that message after the snapshot corrects it (its modseq is newer).
      await s.setFlags(f.box, [asUid(v.uids[0]!)], 'add', ['$Fixed']);
      await assertViewCurrent(s, f.box, 'after the message changed');
    } finally {
      await s.close();
    }
  }));

test('view snapshot: two stores on the same data (two processes or nodes) keep the newest snapshot, and each view is exact', () =>
  withSnapshot(async (f) => {
    const a = await open(f.location);
    const b = await open(f.location);
    try {
      await assertViewCurrent(a, f.box, 'A from the snapshot');
      await a.setFlags(f.box, [asUid(1)], 'add', ['$ByA']);
      await assertViewCurrent(b, f.box, 'B from the snapshot');
      await b.setFlags(f.box, [asUid(2), asUid(3)], 'add', ['$ByB']);
      await b.appendMany(f.box, [testMessage({ subject: 'by B' })]);
      await b.expunge(f.box, [asUid(5)], false);
      await assertViewCurrent(b, f.box, 'B after its changes');
      await b.close();
      const byB = await storedSnapshot(f.location, f.box);
      // A has not looked since B's changes: its view is older than B's snapshot, and is not
      // written over it.
      await a.close();
      assert.deepEqual(await storedSnapshot(f.location, f.box), byB, "A's older view did not replace B's snapshot");
    } finally {
      await b.close();
      await a.close();
    }
    await reopenAndCheck(f, 'snapshot', 'after two stores');
  }));

test('view snapshot: a view read whole is stored in the background (no close needed), once', () =>
  withSnapshot(async (f) => {
    await sql(f.location, 'DELETE FROM view_snapshots');
    const s = await open(f.location);
    try {
      await assertViewCurrent(s, f.box, 'read whole');
      assert.equal(await storedSnapshot(f.location, f.box), null, 'not written during the read');
      for (let waited = 0; viewCacheStats(s)?.snapshotsWritten !== 1; waited += 100) {
        assert.ok(waited < 10_000, 'written within the delay');
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok((await storedSnapshot(f.location, f.box)) !== null, 'stored');
    } finally {
      await s.close();
    }
  }));

test('view snapshot: the warm-up also reads a large mailbox that has no snapshot (never opened, or filled by another process), and stores its snapshot', () =>
  withSnapshot(async (f) => {
    await sql(f.location, 'DELETE FROM view_snapshots');
    // Below the size that gets snapshots: not loaded.
    const below = await openWarm(f.location, 1_000_000, VIEW_WARM_MESSAGES);
    try {
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(viewCacheStats(below)?.mailboxes, 0);
    } finally {
      await below.close();
    }
    assert.equal(await storedSnapshot(f.location, f.box), null, 'none stored');
    const s = await openWarm(f.location, 1, VIEW_WARM_MESSAGES);
    try {
      await warmed(s);
      await assertViewCurrent(s, f.box, 'warmed');
      assert.deepEqual([viewCacheStats(s)?.fromSnapshot, viewCacheStats(s)?.wholeReads], [0, 1], 'read whole, by the warm-up');
      for (let waited = 0; (await storedSnapshot(f.location, f.box)) === null; waited += 20) {
        assert.ok(waited < 5000, 'snapshot stored');
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      await s.close();
    }
  }));

test('view snapshot: a server\'s store loads the snapshotted views in the background at open (warm-up), within its budget; others do not', () =>
  withSnapshot(async (f) => {
    const s = await openWarm(f.location, 1, VIEW_WARM_MESSAGES);
    try {
      await warmed(s);
      await assertViewCurrent(s, f.box, 'warmed');
      assert.deepEqual([viewCacheStats(s)?.fromSnapshot, viewCacheStats(s)?.wholeReads], [1, 0], 'loaded once, by the warm-up');
    } finally {
      await s.close();
    }
    // A budget below the mailbox's size: nothing loaded until asked.
    const small = await openWarm(f.location, 1, 39);
    // No warm-up unless asked (a command-line tool opens the store for a moment).
    const plain = await open(f.location);
    try {
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(viewCacheStats(small)?.mailboxes, 0);
      assert.equal(viewCacheStats(plain)?.mailboxes, 0);
    } finally {
      await small.close();
      await plain.close();
    }
  }));
