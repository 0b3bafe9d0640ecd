/**
 * The outbound queue in PostgreSQL, for several Facteur nodes sharing one queue.
 *
 * Claims use FOR UPDATE SKIP LOCKED, so nodes claiming at the same time take disjoint recipients;
 * a claim leases its recipients until a time, and a node that dies leaves leases that simply
 * expire (clearLeases does nothing here: other nodes' attempts may be running). Commits are
 * durable with PostgreSQL's default synchronous_commit.
 */
import pg from 'pg';
import { formatNotify, parseNotify } from './notify-column.js';
import type {
  DueRecipient,
  QueuedMessageInfo,
  QueueStore,
  RecipientInfo,
  RecipientState,
  StoredStsPolicy,
} from './types.js';

export interface PgQueueOptions {
  url: string;
  /** Schema for the queue's tables ("facteur_queue" by default). */
  schema?: string;
  poolSize?: number;
}

const INT8_OID = 20;

/** Epoch milliseconds and ids are BIGINT: numbers, not strings (all stay below 2^53). */
export const QUEUE_PG_TYPES = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => (oid === INT8_OID ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format))) as typeof pg.types.getTypeParser,
};

/** Schema names are pasted into SQL: only plain lowercase identifiers are accepted. */
export function checkQueueSchema(schema: string): void {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new Error(`Cannot use queue schema "${schema}": not a plain lowercase identifier`);
}

function schemaSql(schema: string): string {
  // One statement string is one transaction: the advisory lock (held to its end) keeps nodes
  // that start together from racing on the same CREATE or ALTER. Changes after the first
  // release are idempotent statements at the end (ADD COLUMN IF NOT EXISTS).
  return `
SELECT pg_advisory_xact_lock(hashtext('facteur queue schema ${schema}'));
CREATE SCHEMA IF NOT EXISTS "${schema}";
CREATE TABLE IF NOT EXISTS "${schema}".messages (
  id TEXT PRIMARY KEY,
  sender TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  size BIGINT NOT NULL,
  body BYTEA NOT NULL,
  envid TEXT,
  ret TEXT,
  requiretls BOOLEAN NOT NULL DEFAULT false,
  is_report BOOLEAN NOT NULL DEFAULT false,
  held BOOLEAN NOT NULL DEFAULT false
);
CREATE TABLE IF NOT EXISTS "${schema}".recipients (
  id BIGSERIAL PRIMARY KEY,
  message_id TEXT NOT NULL REFERENCES "${schema}".messages(id) ON DELETE CASCADE,
  address TEXT NOT NULL,
  domain TEXT NOT NULL,
  notify TEXT,
  orcpt TEXT,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt BIGINT NOT NULL,
  last_error TEXT,
  delay_notified BOOLEAN NOT NULL DEFAULT false,
  lease_until BIGINT NOT NULL DEFAULT 0,
  updated_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS recipients_due ON "${schema}".recipients(state, next_attempt);
CREATE INDEX IF NOT EXISTS recipients_message ON "${schema}".recipients(message_id);
CREATE TABLE IF NOT EXISTS "${schema}".mta_sts (
  domain TEXT PRIMARY KEY,
  policy TEXT NOT NULL
);
ALTER TABLE "${schema}".messages ADD COLUMN IF NOT EXISTS tls_optional BOOLEAN NOT NULL DEFAULT false;`;
}

interface Row {
  [k: string]: unknown;
}


export async function openPgQueueStore(options: PgQueueOptions): Promise<QueueStore> {
  const schema = options.schema ?? 'facteur_queue';
  checkQueueSchema(schema);
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.poolSize ?? 5,
    types: QUEUE_PG_TYPES,
  });
  pool.on('error', () => {
    // An idle client's connection dropped: the pool replaces it; queries report their own errors.
  });
  await pool.query(schemaSql(schema));
  const t = (name: string) => `"${schema}".${name}`;

  async function tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const c = await pool.connect();
    try {
      await c.query('BEGIN');
      const r = await fn(c);
      await c.query('COMMIT');
      return r;
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      c.release();
    }
  }

  const removeIfDone = async (c: pg.PoolClient | pg.Pool, messageId: string): Promise<boolean> => {
    const r = await c.query(
      `DELETE FROM ${t('messages')} m WHERE m.id = $1
         AND NOT EXISTS (SELECT 1 FROM ${t('recipients')} r WHERE r.message_id = m.id AND r.state = 'queued')`,
      [messageId],
    );
    return (r.rowCount ?? 0) > 0;
  };

  const toRecipientInfo = (r: Row): RecipientInfo => ({
    id: r.id as number,
    address: r.address as string,
    state: r.state as RecipientState,
    attempts: r.attempts as number,
    nextAttempt: r.next_attempt as number,
    lastError: (r.last_error as string | null) ?? null,
    updatedAt: r.updated_at as number,
  });
  const toInfo = (m: Row, recipients: RecipientInfo[]): QueuedMessageInfo => ({
    id: m.id as string,
    sender: m.sender as string,
    createdAt: m.created_at as number,
    size: m.size as number,
    held: m.held as boolean,
    isReport: m.is_report as boolean,
    requireTls: m.requiretls as boolean,
    tlsOptional: m.tls_optional as boolean,
    recipients,
  });

  return {
    async insert(message, nextAttempt) {
      await tx(async (c) => {
        await c.query(
          `INSERT INTO ${t('messages')} (id, sender, created_at, size, body, envid, ret, requiretls, tls_optional, is_report)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
          [message.id, message.sender, message.createdAt, message.body.length, message.body, message.envid, message.ret, message.requireTls, message.tlsOptional, message.isReport],
        );
        for (const r of message.recipients) {
          await c.query(
            `INSERT INTO ${t('recipients')} (message_id, address, domain, notify, orcpt, state, next_attempt, updated_at)
             VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7)`,
            [message.id, r.address, r.domain, formatNotify(r.notify), r.orcpt, nextAttempt, message.createdAt],
          );
        }
      });
    },
    async claimDue(now, limit, leaseUntil) {
      const r = await pool.query(
        `WITH due AS (
           SELECT r.id FROM ${t('recipients')} r JOIN ${t('messages')} m ON m.id = r.message_id
            WHERE r.state = 'queued' AND r.next_attempt <= $1 AND r.lease_until <= $1 AND NOT m.held
            ORDER BY r.next_attempt, r.id
            LIMIT $2
            FOR UPDATE OF r SKIP LOCKED
         ), leased AS (
           UPDATE ${t('recipients')} r SET lease_until = $3 FROM due WHERE r.id = due.id RETURNING r.*
         )
         SELECT l.id, l.message_id, l.address, l.domain, l.notify, l.orcpt, l.attempts, l.delay_notified, l.last_error,
                m.sender, m.created_at, m.size, m.envid, m.ret, m.requiretls, m.tls_optional, m.is_report
           FROM leased l JOIN ${t('messages')} m ON m.id = l.message_id
          ORDER BY l.next_attempt, l.id`,
        [now, limit, leaseUntil],
      );
      return r.rows.map(
        (row: Row): DueRecipient => ({
          id: row.id as number,
          messageId: row.message_id as string,
          address: row.address as string,
          domain: row.domain as string,
          notify: parseNotify(row.notify as string | null),
          orcpt: (row.orcpt as string | null) ?? null,
          attempts: row.attempts as number,
          delayNotified: row.delay_notified as boolean,
          lastError: (row.last_error as string | null) ?? null,
          sender: row.sender as string,
          createdAt: row.created_at as number,
          size: row.size as number,
          envid: (row.envid as string | null) ?? null,
          ret: row.ret === 'FULL' || row.ret === 'HDRS' ? row.ret : null,
          requireTls: row.requiretls as boolean,
          tlsOptional: row.tls_optional as boolean,
          isReport: row.is_report as boolean,
        }),
      );
    },
    async readBody(messageId) {
      const r = await pool.query(`SELECT body FROM ${t('messages')} WHERE id = $1`, [messageId]);
      return (r.rows[0]?.body as Buffer | undefined) ?? null;
    },
    async finish(ids, state, detail, now, remove = false) {
      if (ids.length === 0) return false;
      return tx(async (c) => {
        const r = await c.query(
          `UPDATE ${t('recipients')} SET state = $1, last_error = $2, lease_until = 0, updated_at = $3
            WHERE id = ANY($4::bigint[]) AND state = 'queued' RETURNING message_id`,
          [state, detail, now, ids],
        );
        if (!remove) return false;
        const messageId =
          (r.rows[0]?.message_id as string | undefined) ??
          ((await c.query(`SELECT message_id FROM ${t('recipients')} WHERE id = $1`, [ids[0]])).rows[0]?.message_id as string | undefined);
        return messageId !== undefined && removeIfDone(c, messageId);
      });
    },
    async defer(ids, nextAttempt, attempts, error, now) {
      await pool.query(
        `UPDATE ${t('recipients')} SET next_attempt = $1, attempts = COALESCE($2, attempts), last_error = COALESCE($3, last_error),
                lease_until = 0, updated_at = $4
          WHERE id = ANY($5::bigint[]) AND state = 'queued'`,
        [nextAttempt, attempts, error, now, ids],
      );
    },
    async markDelayNotified(ids) {
      await pool.query(`UPDATE ${t('recipients')} SET delay_notified = true WHERE id = ANY($1::bigint[])`, [ids]);
    },
    async removeIfFinished(id) {
      return removeIfDone(pool, id);
    },
    async nextDue() {
      const r = await pool.query(
        `SELECT MIN(GREATEST(r.next_attempt, r.lease_until)) AS due FROM ${t('recipients')} r JOIN ${t('messages')} m ON m.id = r.message_id
          WHERE r.state = 'queued' AND NOT m.held`,
      );
      return (r.rows[0]?.due as number | null) ?? null;
    },
    async depth() {
      const r = await pool.query(
        `SELECT count(*)::int8 AS recipients, count(DISTINCT r.message_id)::int8 AS messages,
                count(DISTINCT r.message_id) FILTER (WHERE m.held)::int8 AS held
           FROM ${t('recipients')} r JOIN ${t('messages')} m ON m.id = r.message_id WHERE r.state = 'queued'`,
      );
      const row = r.rows[0] as Record<string, string | number>;
      return { recipients: Number(row.recipients), messages: Number(row.messages), held: Number(row.held) };
    },
    async sweepFinished() {
      const r = await pool.query(
        `DELETE FROM ${t('messages')} m WHERE NOT EXISTS (SELECT 1 FROM ${t('recipients')} r WHERE r.message_id = m.id AND r.state = 'queued')`,
      );
      return r.rowCount ?? 0;
    },
    async clearLeases() {
      // Several nodes: a lease may belong to a running attempt elsewhere; leases expire instead.
    },
    async listMessages() {
      const ms = await pool.query(`SELECT id, sender, created_at, size, held, is_report, requiretls, tls_optional FROM ${t('messages')} ORDER BY created_at, id`);
      const rs = await pool.query(`SELECT id, message_id, address, state, attempts, next_attempt, last_error, updated_at FROM ${t('recipients')} ORDER BY id`);
      const byMessage = new Map<string, RecipientInfo[]>();
      for (const r of rs.rows as Row[]) {
        const key = r.message_id as string;
        let list = byMessage.get(key);
        if (!list) byMessage.set(key, (list = []));
        list.push(toRecipientInfo(r));
      }
      return (ms.rows as Row[]).map((m) => toInfo(m, byMessage.get(m.id as string) ?? []));
    },
    async getMessage(id) {
      const ms = await pool.query(`SELECT id, sender, created_at, size, held, is_report, requiretls, tls_optional FROM ${t('messages')} WHERE id = $1`, [id]);
      const m = ms.rows[0] as Row | undefined;
      if (!m) return null;
      const rs = await pool.query(
        `SELECT id, message_id, address, state, attempts, next_attempt, last_error, updated_at FROM ${t('recipients')} WHERE message_id = $1 ORDER BY id`,
        [id],
      );
      return toInfo(m, (rs.rows as Row[]).map(toRecipientInfo));
    },
    async setHeld(id, held) {
      return ((await pool.query(`UPDATE ${t('messages')} SET held = $1 WHERE id = $2`, [held, id])).rowCount ?? 0) > 0;
    },
    async retryNow(id, now) {
      const r = await pool.query(`UPDATE ${t('recipients')} SET next_attempt = $1, updated_at = $1 WHERE message_id = $2 AND state = 'queued'`, [now, id]);
      return r.rowCount ?? 0;
    },
    async drop(id) {
      return ((await pool.query(`DELETE FROM ${t('messages')} WHERE id = $1`, [id])).rowCount ?? 0) > 0;
    },
    async restore(m, body) {
      return tx(async (c) => {
        const ins = await c.query(
          `INSERT INTO ${t('messages')} (id, sender, created_at, size, body, envid, ret, requiretls, tls_optional, is_report, held)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING`,
          [m.id, m.sender, m.createdAt, body.length, body, m.envid, m.ret, m.requireTls, m.tlsOptional, m.isReport, m.held],
        );
        if ((ins.rowCount ?? 0) === 0) return false;
        for (const r of m.recipients) {
          await c.query(
            `INSERT INTO ${t('recipients')} (message_id, address, domain, notify, orcpt, state, attempts, next_attempt, last_error, delay_notified, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
            [m.id, r.address, r.domain, formatNotify(r.notify), r.orcpt, r.state, r.attempts, r.nextAttempt, r.lastError, r.delayNotified, r.updatedAt],
          );
        }
        return true;
      });
    },
    async getStsPolicy(domain) {
      const r = await pool.query(`SELECT policy FROM ${t('mta_sts')} WHERE domain = $1`, [domain]);
      const v = r.rows[0]?.policy as string | undefined;
      return v === undefined ? null : (JSON.parse(v) as StoredStsPolicy);
    },
    async putStsPolicy(policy) {
      await pool.query(
        `INSERT INTO ${t('mta_sts')} (domain, policy) VALUES ($1, $2) ON CONFLICT (domain) DO UPDATE SET policy = excluded.policy`,
        [policy.domain, JSON.stringify(policy)],
      );
    },
    async close() {
      await pool.end();
    },
  };
}
