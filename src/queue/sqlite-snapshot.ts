/**
 * A backup's view of the SQLite queue (`<data>/queue.db`) while a server may be delivering from
 * it: its own connection and one read transaction (WAL: later commits do not change what it
 * sees and it does not block the worker). Message bytes are read in chunks so memory stays flat.
 *
 * Leases are not read: a recipient being attempted at this instant is `queued` in the snapshot
 * and is attempted again after a restore (docs/operations.md).
 */
import Database from 'better-sqlite3';
import { parseNotify } from './notify-column.js';
import type { DueRow } from './sqlite-store.js';
import type { QueuedMessageRecord, QueueSnapshot, RecipientState } from './types.js';

const CHUNK = 1024 * 1024;

type MessageRow = Pick<DueRow, 'sender' | 'created_at' | 'size' | 'envid' | 'ret' | 'requiretls' | 'is_report'> & { id: string; held: number };

type RecipientRow = Pick<DueRow, 'message_id' | 'address' | 'domain' | 'notify' | 'orcpt' | 'attempts' | 'last_error' | 'delay_notified'> & {
  state: string;
  next_attempt: number;
  updated_at: number;
};

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
    'SELECT id, sender, created_at, size, envid, ret, requiretls, is_report, held FROM messages WHERE id > ? ORDER BY id LIMIT ?',
  );
  const recipients = db.prepare(
    `SELECT message_id, address, domain, notify, orcpt, state, attempts, next_attempt, last_error, delay_notified, updated_at
       FROM recipients WHERE message_id = ? ORDER BY id`,
  );
  const chunk = db.prepare('SELECT substr(body, ?, ?) AS d FROM messages WHERE id = ?').pluck();
  return {
    async messages(afterId, limit) {
      return (page.all(afterId, limit) as MessageRow[]).map(
        (m): QueuedMessageRecord => ({
          id: m.id,
          sender: m.sender,
          createdAt: m.created_at,
          size: m.size,
          envid: m.envid,
          ret: m.ret === 'FULL' || m.ret === 'HDRS' ? m.ret : null,
          requireTls: m.requiretls !== 0,
          isReport: m.is_report !== 0,
          held: m.held !== 0,
          recipients: (recipients.all(m.id) as RecipientRow[]).map((r) => ({
            address: r.address,
            domain: r.domain,
            notify: parseNotify(r.notify),
            orcpt: r.orcpt,
            state: r.state as RecipientState,
            attempts: r.attempts,
            nextAttempt: r.next_attempt,
            lastError: r.last_error,
            delayNotified: r.delay_notified !== 0,
            updatedAt: r.updated_at,
          })),
        }),
      );
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
