/**
 * A backup's view of the SQLite queue (`<data>/queue.db`) while a server may be delivering from
 * it: its own connection and one read transaction (WAL: later commits do not change what it
 * sees and it does not block the worker). Message bytes are read in chunks so memory stays flat.
 *
 * Leases are not read: a recipient being attempted at this instant is `queued` in the snapshot
 * and is attempted again after a restore (docs/operations.md).
 */
import Database from 'better-sqlite3';
import { snapshotMessageColumns, SNAPSHOT_RECIPIENT_COLUMNS, snapshotMessage, type SnapshotMessageRow, type SnapshotRecipientRow } from './snapshot-row.js';
import type { QueueSnapshot } from './types.js';

const CHUNK = 1024 * 1024;

export function openSqliteQueueSnapshot(path: string): QueueSnapshot {
  const db = new Database(path, { fileMustExist: true });
  try {
    db.pragma('busy_timeout = 5000');
    // The snapshot starts at the first read of the transaction.
    db.exec('BEGIN');
    db.prepare('SELECT count(*) FROM messages').get();
  } catch (err) {
    db.close();
    throw err;
  }
  const page = db.prepare(
    `SELECT ${snapshotMessageColumns(db.prepare("SELECT 1 FROM pragma_table_info('messages') WHERE name = 'tls_optional'").get() !== undefined)}
       FROM messages WHERE id > ? ORDER BY id LIMIT ?`,
  );
  const recipients = db.prepare(`SELECT ${SNAPSHOT_RECIPIENT_COLUMNS} FROM recipients WHERE message_id = ? ORDER BY id`);
  const chunk = db.prepare('SELECT substr(body, ?, ?) AS d FROM messages WHERE id = ?').pluck();
  return {
    async messages(afterId, limit) {
      return (page.all(afterId, limit) as SnapshotMessageRow[]).map((m) => snapshotMessage(m, recipients.all(m.id) as SnapshotRecipientRow[]));
    },
    async *body(id, size) {
      for (let off = 0; off < size; off += CHUNK) {
        const d = chunk.get(off + 1, Math.min(CHUNK, size - off), id) as Buffer | null | undefined;
        if (!Buffer.isBuffer(d) || d.length === 0) throw new Error(`Cannot back up queued message ${id}: its bytes are short`);
        yield d;
      }
    },
    async close() {
      if (db.inTransaction) db.exec('COMMIT');
      db.close();
    },
  };
}
