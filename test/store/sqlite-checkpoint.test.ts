/**
 * The SQLite store checkpoints its WAL on a worker thread, not in a COMMIT on the event loop
 * (src/store/sql/sqlite/checkpointer.ts).
 */
import { strict as assert } from 'node:assert';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { openSqliteStore, sqliteCheckpointStats, sqliteStoreStats, DB_FILE } from '../../src/store/sql/sqlite/sqlite-store.js';
import type { MailStore } from '../../src/store/types.js';
import { testMessage } from '../helpers/store.js';

async function withDir(run: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'facteur-ckpt-'));
  try {
    await run(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function seed(store: MailStore) {
  await store.addDomain('example.com');
  const bob = await store.createAccount({ address: 'bob@example.com', passwordHash: 'h' });
  return (await store.getMailbox(bob.id, 'INBOX'))!;
}

test('after writes the WAL is checkpointed by the worker; the data survives reopening', async () => {
  await withDir(async (dir) => {
    const store = await openSqliteStore({ dir, checkpointIntervalMs: 0, checkpointMinWalBytes: 0 });
    const inbox = await seed(store);
    for (let i = 0; i < 20; i++) await store.append(inbox.id, testMessage({ subject: `m${i}` }));
    const stats = sqliteCheckpointStats(store)!;
    for (let i = 0; i < 200 && stats.checkpoints === 0; i++) {
      await sleep(25);
      await store.append(inbox.id, testMessage({ subject: `extra${i}` }));
    }
    assert.ok(stats.checkpoints > 0, 'a checkpoint ran');
    assert.ok(stats.framesCopied > 0, 'frames were copied into the database file');
    // A WAL far below walRestartBytes (64 MiB by default) never holds the writes.
    assert.equal(sqliteStoreStats(store)!.holds, 0);
    // The database file itself (not only the WAL) now holds pages written by the store.
    assert.ok((await stat(join(dir, DB_FILE))).size > 4096);
    const count = (await store.listEntries(inbox.id)).length;
    await store.close();
    const again = await openSqliteStore({ dir });
    try {
      assert.equal((await again.listEntries(inbox.id)).length, count);
      assert.deepEqual(await again.checkConsistency(), []);
    } finally {
      await again.close();
    }
  });
});

test('a store that wrote little starts no checkpoint; close checkpoints and removes the WAL', async () => {
  await withDir(async (dir) => {
    const store = await openSqliteStore({ dir, checkpointIntervalMs: 0 });
    const inbox = await seed(store);
    for (let i = 0; i < 5; i++) await store.append(inbox.id, testMessage({ subject: `m${i}` }));
    assert.equal(sqliteCheckpointStats(store)!.checkpoints, 0);
    await store.close();
    await assert.rejects(stat(join(dir, `${DB_FILE}-wal`)), /ENOENT/);
    const db = new Database(join(dir, DB_FILE), { readonly: true });
    try {
      assert.equal((db.prepare('SELECT count(*) AS n FROM entries').get() as { n: number }).n, 5);
    } finally {
      db.close();
    }
  });
});

test('closing while a checkpoint runs waits for it and leaves a consistent store', async () => {
  await withDir(async (dir) => {
    const store = await openSqliteStore({ dir, checkpointIntervalMs: 0, checkpointMinWalBytes: 0 });
    const inbox = await seed(store);
    await Promise.all(Array.from({ length: 50 }, (_, i) => store.append(inbox.id, testMessage({ subject: `c${i}` }))));
    await store.append(inbox.id, testMessage({ subject: 'last' }));
    await store.close();
    const again = await openSqliteStore({ dir });
    try {
      assert.equal((await again.listEntries(inbox.id)).length, 51);
      assert.deepEqual(await again.checkConsistency(), []);
    } finally {
      await again.close();
    }
  });
});

test('under writes that never pause, the WAL is still restarted: its file stays a fraction of what was written', async () => {
  await withDir(async (dir) => {
    const store = await openSqliteStore({ dir, checkpointIntervalMs: 100, checkpointMinWalBytes: 256 * 1024, walRestartBytes: 512 * 1024 });
    let count: number;
    try {
      const inbox = await seed(store);
      const body = `${'x'.repeat(2000)}\r\n`;
      // Ten writers, each appending as soon as its previous append is acknowledged: a commit
      // happens during every checkpoint, so a passive checkpoint alone never empties the WAL.
      let n = 0;
      let written = 0;
      const until = Date.now() + 2500;
      await Promise.all(
        Array.from({ length: 10 }, async () => {
          while (Date.now() < until) {
            const m = testMessage({ subject: `w${n++}`, body });
            await store.append(inbox.id, m);
            written += m.raw.length;
          }
        }),
      );
      const size = (await stat(join(dir, `${DB_FILE}-wal`))).size;
      assert.ok(sqliteStoreStats(store)!.holds > 0, 'writes were held for a catch-up checkpoint');
      // Each message adds about ten pages to the WAL (its rows, index entries, full-text
      // segment): never restarted, the file would be over ten times the messages' bytes.
      assert.ok(size < written * 5, `WAL ${size} bytes after ${written} bytes of messages`);
      count = (await store.listEntries(inbox.id)).length;
      assert.equal(count, n);
    } finally {
      await store.close();
    }
    const again = await openSqliteStore({ dir });
    try {
      assert.equal((await again.listEntries((await again.getMailbox((await again.getAccountByAddress('bob@example.com'))!.id, 'INBOX'))!.id)).length, count);
      assert.deepEqual(await again.checkConsistency(), []);
    } finally {
      await again.close();
    }
  });
});
