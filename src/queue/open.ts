/**
 * Where the outbound queue lives, decided by where the store is (the one place besides tests that
 * picks a concrete queue backend):
 * - a SQLite store (a data directory): `<data>/queue.db`, private to this node;
 * - a PostgreSQL store (postgres:// URL): tables in the same database, in their own schema, so
 *   every node claims from one queue (FOR UPDATE SKIP LOCKED, leases that expire; pg-store.ts).
 *   The queue's schema is "facteur_queue" beside the default "public" store schema, and
 *   "facteur_queue_<schema>" beside a store in ?schema=<schema>.
 */
import { createHash } from 'node:crypto';
import { access, rename } from 'node:fs/promises';
import { parsePgStoreUrl } from '../store/sql/postgres/pg-store.js';
import { queueDbPath } from './admin.js';
import { openPgQueueSnapshot } from './pg-snapshot.js';
import { openPgQueueStore, type PgQueueOptions } from './pg-store.js';
import { openSqliteQueueSnapshot } from './sqlite-snapshot.js';
import { openSqliteQueueStore } from './sqlite-store.js';
import type { QueueSnapshot, QueueStore } from './types.js';

export type QueueLocation = { backend: 'sqlite'; path: string } | { backend: 'postgres'; url: string; schema: string };

export function isPgLocation(storeLocation: string): boolean {
  return /^postgres(ql)?:\/\//i.test(storeLocation);
}

/**
 * The queue's schema beside a store schema: one per store schema (two installations in one
 * database never share a queue), an identifier of at most 63 bytes.
 */
export function pgQueueSchema(storeSchema: string): string {
  if (storeSchema === 'public') return 'facteur_queue';
  // 'facteur_queue_' + 49 bytes is 63; longer names go by their hash, under a prefix no short
  // name produces.
  return storeSchema.length <= 49 ? `facteur_queue_${storeSchema}` : `facteur_queueh_${createHash('sha256').update(storeSchema).digest('hex').slice(0, 40)}`;
}

/** storeLocation: the data directory (SQLite store) or the store's postgres:// URL. */
export function queueLocation(dataDir: string, storeLocation: string): QueueLocation {
  if (!isPgLocation(storeLocation)) return { backend: 'sqlite', path: queueDbPath(dataDir) };
  const { url, schema = 'public' } = parsePgStoreUrl(storeLocation);
  return { backend: 'postgres', url, schema: pgQueueSchema(schema) };
}

export async function openQueueStore(location: QueueLocation, options: Pick<PgQueueOptions, 'poolSize'> = {}): Promise<QueueStore> {
  if (location.backend === 'sqlite') return openSqliteQueueStore(location.path);
  return openPgQueueStore({ url: location.url, schema: location.schema, ...options });
}

/**
 * A consistent read of the queue for a backup, or null when there is nothing to read (no
 * queue.db yet: this node never queued anything).
 */
export async function openQueueSnapshot(location: QueueLocation): Promise<QueueSnapshot | null> {
  if (location.backend === 'postgres') return openPgQueueSnapshot(location.url, location.schema);
  if (!(await access(location.path).then(() => true, () => false))) return null;
  return openSqliteQueueSnapshot(location.path);
}

/**
 * Moves the messages of a `<data>/queue.db` left by a version that kept the queue there whatever
 * the store into the shared PostgreSQL queue, then renames the file `queue.db.moved` so it is
 * done once. Safe to run again after a crash: a message already in the target (same id) is
 * skipped. Leases are not carried: a recipient that was being attempted is attempted again.
 * Returns how many messages were written, or null when there is no queue.db.
 */
export async function moveSqliteQueue(path: string, target: QueueStore): Promise<number | null> {
  if (!(await access(path).then(() => true, () => false))) return null;
  const snap = openSqliteQueueSnapshot(path);
  let moved = 0;
  try {
    for (let after = ''; ; ) {
      const page = await snap.messages(after, 100);
      if (page.length === 0) break;
      for (const m of page) {
        const chunks: Buffer[] = [];
        for await (const c of snap.body(m.id, m.size)) chunks.push(c);
        if (await target.restore(m, Buffer.concat(chunks))) moved++;
      }
      after = page[page.length - 1]!.id;
    }
  } finally {
    await snap.close();
  }
  await rename(path, `${path}.moved`);
  return moved;
}
