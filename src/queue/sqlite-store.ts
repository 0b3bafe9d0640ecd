/**
 * The outbound queue in its own SQLite database (`<data>/queue.db`), apart from the mail store
 * so that a busy queue never holds the store's write lock.
 *
 * Durability: WAL with synchronous=FULL, so every commit is fsync'd before it returns; the
 * message bytes are a BLOB column written in the same transaction as the rows, so an enqueue
 * that resolved cannot leave a recipient without its message.
 *
 * Schema: SCHEMA is version 0, the first release's; each later change is a step of MIGRATIONS,
 * applied in order at open inside one transaction with the `user_version` it reaches, so a
 * queue.db of any earlier release opens with its queued mail intact.
 */
import Database from 'better-sqlite3';
import { formatNotify, parseNotify } from './notify-column.js';
import type {
  DueRecipient,
  NewQueuedMessage,
  QueuedMessageInfo,
  QueuedMessageRecord,
  QueueDepth,
  QueueStore,
  RecipientInfo,
  RecipientState,
  StoredStsPolicy,
} from './types.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS messages (
  id TEXT PRIMARY KEY,
  sender TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  size INTEGER NOT NULL,
  body BLOB NOT NULL,
  envid TEXT,
  ret TEXT,
  requiretls INTEGER NOT NULL DEFAULT 0,
  is_report INTEGER NOT NULL DEFAULT 0,
  held INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS recipients (
  id INTEGER PRIMARY KEY,
  message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
  address TEXT NOT NULL,
  domain TEXT NOT NULL,
  notify TEXT,
  orcpt TEXT,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt INTEGER NOT NULL,
  last_error TEXT,
  delay_notified INTEGER NOT NULL DEFAULT 0,
  lease_until INTEGER NOT NULL DEFAULT 0,
  updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS recipients_due ON recipients(state, next_attempt);
CREATE INDEX IF NOT EXISTS recipients_message ON recipients(message_id);
CREATE TABLE IF NOT EXISTS mta_sts (
  domain TEXT PRIMARY KEY,
  policy TEXT NOT NULL
);
`;

/** Step i takes the schema from user_version i to i + 1. Never edit a step; add one. */
const MIGRATIONS: readonly string[] = [
  // 1: RFC 8689 §4.2.2, `TLS-Required: No`.
  `ALTER TABLE messages ADD COLUMN tls_optional INTEGER NOT NULL DEFAULT 0`,
];

/** Brings a queue database to the current schema; refuses one written by a newer release. */
export function migrateQueueDb(db: Database.Database): void {
  db.exec(SCHEMA);
  db.transaction(() => {
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > MIGRATIONS.length) {
      throw new Error(`Cannot open the queue database: its schema version ${version} is newer than this release's (${MIGRATIONS.length})`);
    }
    for (let v = version; v < MIGRATIONS.length; v++) db.exec(MIGRATIONS[v]!);
    if (version !== MIGRATIONS.length) db.pragma(`user_version = ${MIGRATIONS.length}`);
  }).immediate();
}

export interface DueRow {
  id: number;
  message_id: string;
  address: string;
  domain: string;
  notify: string | null;
  orcpt: string | null;
  attempts: number;
  delay_notified: number;
  last_error: string | null;
  sender: string;
  created_at: number;
  size: number;
  envid: string | null;
  ret: string | null;
  requiretls: number;
  tls_optional: number;
  is_report: number;
}

interface MessageRow {
  id: string;
  sender: string;
  created_at: number;
  size: number;
  held: number;
  is_report: number;
  requiretls: number;
  tls_optional: number;
}

interface RecipientRow {
  id: number;
  message_id: string;
  address: string;
  state: string;
  attempts: number;
  next_attempt: number;
  last_error: string | null;
  updated_at: number;
}

export function openSqliteQueueStore(path: string): QueueStore {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  // Every commit fsync'd: an enqueue acknowledged with 250 survives a power cut (DESIGN.md inv. 1).
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  migrateQueueDb(db);

  const insertMessage = db.prepare(
    `INSERT INTO messages (id, sender, created_at, size, body, envid, ret, requiretls, tls_optional, is_report)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const insertRecipient = db.prepare(
    `INSERT INTO recipients (message_id, address, domain, notify, orcpt, state, next_attempt, updated_at)
     VALUES (?, ?, ?, ?, ?, 'queued', ?, ?)`,
  );
  const selectDue = db.prepare(
    `SELECT r.id, r.message_id, r.address, r.domain, r.notify, r.orcpt, r.attempts, r.delay_notified, r.last_error,
            m.sender, m.created_at, m.size, m.envid, m.ret, m.requiretls, m.tls_optional, m.is_report
       FROM recipients r JOIN messages m ON m.id = r.message_id
      WHERE r.state = 'queued' AND r.next_attempt <= ? AND r.lease_until <= ? AND m.held = 0
      ORDER BY r.next_attempt, r.id
      LIMIT ?`,
  );
  const restoreMessage = db.prepare(
    `INSERT INTO messages (id, sender, created_at, size, body, envid, ret, requiretls, tls_optional, is_report, held)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING`,
  );
  const restoreRecipient = db.prepare(
    `INSERT INTO recipients (message_id, address, domain, notify, orcpt, state, attempts, next_attempt, last_error, delay_notified, updated_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const lease = db.prepare(`UPDATE recipients SET lease_until = ? WHERE id = ?`);
  const readBody = db.prepare(`SELECT body FROM messages WHERE id = ?`).pluck();
  const finish = db.prepare(
    `UPDATE recipients SET state = ?, last_error = ?, lease_until = 0, updated_at = ? WHERE id = ? AND state = 'queued'`,
  );
  const deferOne = db.prepare(
    `UPDATE recipients SET next_attempt = ?, attempts = COALESCE(?, attempts), last_error = COALESCE(?, last_error),
            lease_until = 0, updated_at = ? WHERE id = ? AND state = 'queued'`,
  );
  const delayNotified = db.prepare(`UPDATE recipients SET delay_notified = 1 WHERE id = ?`);
  const queuedCount = db.prepare(`SELECT COUNT(*) FROM recipients WHERE message_id = ? AND state = 'queued'`).pluck();
  const deleteMessage = db.prepare(`DELETE FROM messages WHERE id = ?`);
  const messageOf = db.prepare(`SELECT message_id FROM recipients WHERE id = ?`).pluck();
  const depth = db.prepare(
    `SELECT count(*) AS recipients, count(DISTINCT r.message_id) AS messages,
            count(DISTINCT CASE WHEN m.held = 1 THEN r.message_id END) AS held
       FROM recipients r JOIN messages m ON m.id = r.message_id WHERE r.state = 'queued'`,
  );
  const nextDue = db.prepare(
    `SELECT MIN(MAX(r.next_attempt, r.lease_until)) FROM recipients r JOIN messages m ON m.id = r.message_id
      WHERE r.state = 'queued' AND m.held = 0`,
  ).pluck();
  const sweep = db.prepare(
    `DELETE FROM messages WHERE NOT EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = messages.id AND r.state = 'queued')`,
  );
  const clearLeases = db.prepare(`UPDATE recipients SET lease_until = 0 WHERE lease_until <> 0`);
  const listMessages = db.prepare(
    `SELECT id, sender, created_at, size, held, is_report, requiretls, tls_optional FROM messages ORDER BY created_at, id`,
  );
  const getMessage = db.prepare(`SELECT id, sender, created_at, size, held, is_report, requiretls, tls_optional FROM messages WHERE id = ?`);
  const allRecipients = db.prepare(
    `SELECT id, message_id, address, state, attempts, next_attempt, last_error, updated_at FROM recipients ORDER BY id`,
  );
  const messageRecipients = db.prepare(
    `SELECT id, message_id, address, state, attempts, next_attempt, last_error, updated_at FROM recipients WHERE message_id = ? ORDER BY id`,
  );
  const setHeld = db.prepare(`UPDATE messages SET held = ? WHERE id = ?`);
  const retryNow = db.prepare(`UPDATE recipients SET next_attempt = ?, updated_at = ? WHERE message_id = ? AND state = 'queued'`);
  const getPolicy = db.prepare(`SELECT policy FROM mta_sts WHERE domain = ?`).pluck();
  const putPolicy = db.prepare(
    `INSERT INTO mta_sts (domain, policy) VALUES (?, ?) ON CONFLICT(domain) DO UPDATE SET policy = excluded.policy`,
  );

  /**
   * Group commit: writes requested in the same turn of the event loop share one transaction
   * (one fsync). Each runs in its own savepoint, so one failing write does not undo the others,
   * and each promise resolves only after the commit that holds its write.
   */
  type Pending = { run: () => unknown; resolve: (v: unknown) => void; reject: (e: unknown) => void };
  let batch: Pending[] = [];
  const flush = () => {
    const current = batch;
    batch = [];
    const results: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    try {
      db.transaction(() => {
        for (const p of current) {
          try {
            results.push({ ok: true, value: db.transaction(p.run)() });
          } catch (error) {
            results.push({ ok: false, error });
          }
        }
      })();
    } catch (error) {
      for (const p of current) p.reject(error);
      return;
    }
    current.forEach((p, i) => {
      const r = results[i]!;
      if (r.ok) p.resolve(r.value);
      else p.reject(r.error);
    });
  };
  const write = <T>(run: () => T): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      if (batch.length === 0) setImmediate(flush);
      batch.push({ run, resolve: resolve as (v: unknown) => void, reject });
    });

  const toRecipientInfo = (r: RecipientRow): RecipientInfo => ({
    id: r.id,
    address: r.address,
    state: r.state as RecipientState,
    attempts: r.attempts,
    nextAttempt: r.next_attempt,
    lastError: r.last_error,
    updatedAt: r.updated_at,
  });
  const toInfo = (m: MessageRow, recipients: RecipientInfo[]): QueuedMessageInfo => ({
    id: m.id,
    sender: m.sender,
    createdAt: m.created_at,
    size: m.size,
    held: m.held !== 0,
    isReport: m.is_report !== 0,
    requireTls: m.requiretls !== 0,
    tlsOptional: m.tls_optional !== 0,
    recipients,
  });

  const insertTx = (message: NewQueuedMessage, nextAttempt: number) => {
    insertMessage.run(
      message.id,
      message.sender,
      message.createdAt,
      message.body.length,
      message.body,
      message.envid,
      message.ret,
      message.requireTls ? 1 : 0,
      message.tlsOptional ? 1 : 0,
      message.isReport ? 1 : 0,
    );
    for (const r of message.recipients) {
      insertRecipient.run(message.id, r.address, r.domain, formatNotify(r.notify), r.orcpt, nextAttempt, message.createdAt);
    }
  };
  const restoreTx = (m: QueuedMessageRecord, body: Buffer): boolean => {
    const b = (x: boolean) => (x ? 1 : 0);
    if (restoreMessage.run(m.id, m.sender, m.createdAt, body.length, body, m.envid, m.ret, b(m.requireTls), b(m.tlsOptional), b(m.isReport), b(m.held)).changes === 0) {
      return false;
    }
    for (const r of m.recipients) {
      restoreRecipient.run(m.id, r.address, r.domain, formatNotify(r.notify), r.orcpt, r.state, r.attempts, r.nextAttempt, r.lastError, b(r.delayNotified), r.updatedAt);
    }
    return true;
  };
  const claimTx = db.transaction((now: number, limit: number, leaseUntil: number): DueRow[] => {
    const rows = selectDue.all(now, now, limit) as DueRow[];
    for (const r of rows) lease.run(leaseUntil, r.id);
    return rows;
  });
  const finishTx = (ids: readonly number[], state: string, detail: string, now: number, removeIfDone: boolean): boolean => {
    for (const id of ids) finish.run(state, detail, now, id);
    if (!removeIfDone || ids.length === 0) return false;
    const messageId = messageOf.get(ids[0]) as string | undefined;
    return messageId !== undefined && removeTx(messageId);
  };
  const deferTx = (ids: readonly number[], next: number, attempts: number | null, error: string | null, now: number) => {
    for (const id of ids) deferOne.run(next, attempts, error, now, id);
  };
  const removeTx = (id: string): boolean => {
    if ((queuedCount.get(id) as number) > 0) return false;
    return deleteMessage.run(id).changes > 0;
  };

  return {
    async insert(message, nextAttempt) {
      await write(() => insertTx(message, nextAttempt));
    },
    async claimDue(now, limit, leaseUntil) {
      // The lease is not durable (see QueueStore): no fsync for this commit; the next FULL
      // commit syncs the WAL up to and including it.
      db.pragma('synchronous = NORMAL');
      let rows: DueRow[];
      try {
        rows = claimTx(now, limit, leaseUntil);
      } finally {
        db.pragma('synchronous = FULL');
      }
      return rows.map(
        (r): DueRecipient => ({
          id: r.id,
          messageId: r.message_id,
          address: r.address,
          domain: r.domain,
          notify: parseNotify(r.notify),
          orcpt: r.orcpt,
          attempts: r.attempts,
          delayNotified: r.delay_notified !== 0,
          lastError: r.last_error,
          sender: r.sender,
          createdAt: r.created_at,
          size: r.size,
          envid: r.envid,
          ret: r.ret === 'FULL' || r.ret === 'HDRS' ? r.ret : null,
          requireTls: r.requiretls !== 0,
          tlsOptional: r.tls_optional !== 0,
          isReport: r.is_report !== 0,
        }),
      );
    },
    async readBody(messageId) {
      const b = readBody.get(messageId) as Buffer | undefined;
      return b ?? null;
    },
    async finish(ids, state, detail, now, removeIfDone = false) {
      return write(() => finishTx(ids, state, detail, now, removeIfDone));
    },
    async defer(ids, nextAttempt, attempts, error, now) {
      await write(() => deferTx(ids, nextAttempt, attempts, error, now));
    },
    async markDelayNotified(ids) {
      db.transaction(() => {
        for (const id of ids) delayNotified.run(id);
      })();
    },
    async removeIfFinished(id) {
      return write(() => removeTx(id));
    },
    async nextDue() {
      const v = nextDue.get() as number | null;
      return v ?? null;
    },
    async depth() {
      return depth.get() as QueueDepth;
    },
    async sweepFinished() {
      return sweep.run().changes;
    },
    async clearLeases() {
      clearLeases.run();
    },
    async listMessages() {
      const byMessage = new Map<string, RecipientInfo[]>();
      for (const r of allRecipients.all() as RecipientRow[]) {
        let list = byMessage.get(r.message_id);
        if (!list) byMessage.set(r.message_id, (list = []));
        list.push(toRecipientInfo(r));
      }
      return (listMessages.all() as MessageRow[]).map((m) => toInfo(m, byMessage.get(m.id) ?? []));
    },
    async getMessage(id) {
      const m = getMessage.get(id) as MessageRow | undefined;
      if (!m) return null;
      return toInfo(m, (messageRecipients.all(id) as RecipientRow[]).map(toRecipientInfo));
    },
    async setHeld(id, held) {
      return setHeld.run(held ? 1 : 0, id).changes > 0;
    },
    async retryNow(id, now) {
      return retryNow.run(now, now, id).changes;
    },
    async drop(id) {
      return deleteMessage.run(id).changes > 0;
    },
    async restore(message, body) {
      return write(() => restoreTx(message, body));
    },
    async getStsPolicy(domain) {
      const v = getPolicy.get(domain) as string | undefined;
      return v === undefined ? null : (JSON.parse(v) as StoredStsPolicy);
    },
    async putStsPolicy(policy) {
      putPolicy.run(policy.domain, JSON.stringify(policy));
    },
    async close() {
      db.close();
    },
  };
}
