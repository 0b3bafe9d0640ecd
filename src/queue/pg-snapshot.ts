/**
 * A backup's view of the PostgreSQL queue (pg-store.ts) while nodes deliver from it: one
 * connection in one REPEATABLE READ READ ONLY transaction, so every page and every chunk of bytes
 * is read as of the first statement, whatever the nodes claim, finish or drop meanwhile.
 *
 * Leases are not read: a recipient being attempted at this instant is `queued` in the snapshot
 * and is attempted again after a restore (docs/operations.md), as with the SQLite queue.
 */
import pg from 'pg';
import { snapshotMessageColumns, SNAPSHOT_RECIPIENT_COLUMNS, snapshotMessage, type SnapshotMessageRow, type SnapshotRecipientRow } from './snapshot-row.js';
import { checkQueueSchema, QUEUE_PG_TYPES } from './pg-store.js';
import type { QueueSnapshot } from './types.js';

const CHUNK = 1024 * 1024;

/** null when the queue's schema has no tables yet: no node has opened the queue. */
export async function openPgQueueSnapshot(url: string, schema: string): Promise<QueueSnapshot | null> {
  checkQueueSchema(schema);
  const client = new pg.Client({ connectionString: url, types: QUEUE_PG_TYPES });
  await client.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    // The snapshot is taken at this first query: the existence check and every later read agree.
    const exists = (await client.query('SELECT to_regclass($1) IS NOT NULL AS ok', [`"${schema}".messages`])).rows[0]?.ok === true;
    if (!exists) {
      await client.end();
      return null;
    }
  } catch (err) {
    await client.end().catch(() => undefined);
    throw err;
  }
  const t = (name: string) => `"${schema}".${name}`;
  let columns: string;
  try {
    const has = await client.query(
      `SELECT 1 FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'messages' AND column_name = 'tls_optional'`,
      [schema],
    );
    columns = snapshotMessageColumns(has.rows.length > 0);
  } catch (err) {
    await client.end().catch(() => undefined);
    throw err;
  }
  return {
    async messages(afterId, limit) {
      const ms = (
        await client.query(
          `SELECT ${columns} FROM ${t('messages')}
            WHERE id COLLATE "C" > $1 ORDER BY id COLLATE "C" LIMIT $2`,
          [afterId, limit],
        )
      ).rows as SnapshotMessageRow[];
      if (ms.length === 0) return [];
      const rs = (
        await client.query(
          `SELECT ${SNAPSHOT_RECIPIENT_COLUMNS} FROM ${t('recipients')} WHERE message_id = ANY($1::text[]) ORDER BY id`,
          [ms.map((m) => m.id)],
        )
      ).rows as SnapshotRecipientRow[];
      const byMessage = new Map<string, SnapshotRecipientRow[]>();
      for (const r of rs) {
        let list = byMessage.get(r.message_id);
        if (!list) byMessage.set(r.message_id, (list = []));
        list.push(r);
      }
      return ms.map((m) => snapshotMessage(m, byMessage.get(m.id) ?? []));
    },
    async *body(id, size) {
      for (let off = 0; off < size; off += CHUNK) {
        const r = await client.query(`SELECT substring(body FROM $1 FOR $2) AS d FROM ${t('messages')} WHERE id = $3`, [off + 1, Math.min(CHUNK, size - off), id]);
        const d = r.rows[0]?.d as Buffer | null | undefined;
        if (!Buffer.isBuffer(d) || d.length === 0) throw new Error(`Cannot back up queued message ${id}: its bytes are short`);
        yield d;
      }
    },
    async close() {
      await client.query('COMMIT').catch(() => undefined);
      await client.end();
    },
  };
}
