/**
 * SharedCounters (store/counters.ts) on PostgreSQL, for auth failure limits and RCPT probing
 * shared by every node.
 *
 * Design and invariants:
 * - Two UNLOGGED tables (migration 6): no WAL, so a counter write costs no flush, and a crash of
 *   the database empties them. That loses at most one window of counts and blocks, which is the
 *   state a restarted single node starts from too.
 * - A hit is one statement: an upsert of (key, bucket) that adds one, plus the sum of the key's
 *   other buckets in the window. The upsert's row lock makes concurrent hits from several nodes
 *   add up exactly.
 * - Rows carry their expiry; a sweep at most once a minute per node deletes the expired ones,
 *   in the background of the operation that noticed it was due, so the tables hold only what the
 *   windows and blocks still need.
 * - The clock is the node's (injectable for tests); nodes are expected to be NTP-synchronised,
 *   and the windows are minutes long.
 */
import type pg from 'pg';
import { bucketMs, type SharedCounters } from '../../counters.js';
import { StoreError } from '../../types.js';

const SWEEP_INTERVAL_MS = 60_000;

export interface PgCountersOptions {
  now?: () => number;
  /** Failures of the background sweep (the operations themselves throw StoreError). */
  onSweepError?: (err: unknown) => void;
}

export function createPgCounters(pool: pg.Pool, options: PgCountersOptions = {}): SharedCounters {
  const now = options.now ?? Date.now;
  let lastSweep = now();
  let sweeping = false;

  function maybeSweep(t: number): void {
    if (sweeping || t - lastSweep < SWEEP_INTERVAL_MS) return;
    sweeping = true;
    lastSweep = t;
    pool
      .query('WITH h AS (DELETE FROM rate_hits WHERE expires_at < $1) DELETE FROM rate_blocks WHERE until < $1', [t])
      .catch((err: unknown) => options.onSweepError?.(err))
      .finally(() => {
        sweeping = false;
      });
  }

  async function run<R extends pg.QueryResultRow>(what: string, sql: string, params: unknown[]): Promise<R[]> {
    const t = now();
    maybeSweep(t);
    try {
      return (await pool.query<R>(sql, params)).rows;
    } catch (err) {
      throw new StoreError('io', `Cannot ${what} a shared counter: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  /** The start of the oldest bucket counted, and the start of the current one. */
  function window(windowMs: number): { from: number; bucket: number; width: number } {
    const width = bucketMs(windowMs);
    const t = now();
    return { from: Math.floor((t - windowMs) / width) * width, bucket: Math.floor(t / width) * width, width };
  }

  return {
    async hit(key, windowMs) {
      const w = window(windowMs);
      // The outer SELECT sees the table as it was before the upsert (one snapshot), so the
      // current bucket is taken from the upsert's RETURNING and left out of the sum.
      const rows = await run<{ n: number }>(
        'hit',
        `WITH up AS (
           INSERT INTO rate_hits (key, bucket, hits, expires_at) VALUES ($1, $2, 1, $3)
           ON CONFLICT (key, bucket) DO UPDATE SET hits = rate_hits.hits + 1
           RETURNING hits)
         SELECT (SELECT hits FROM up) + COALESCE((SELECT sum(hits) FROM rate_hits WHERE key = $1 AND bucket >= $4 AND bucket <> $2), 0) AS n`,
        [key, w.bucket, w.bucket + w.width + windowMs, w.from],
      );
      return Number(rows[0]?.n ?? 1);
    },
    async count(key, windowMs) {
      const w = window(windowMs);
      const rows = await run<{ n: number }>('read', 'SELECT COALESCE(sum(hits), 0) AS n FROM rate_hits WHERE key = $1 AND bucket >= $2', [key, w.from]);
      return Number(rows[0]?.n ?? 0);
    },
    async block(key, ms) {
      await run(
        'set',
        `INSERT INTO rate_blocks (key, until) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET until = GREATEST(rate_blocks.until, EXCLUDED.until)`,
        [key, now() + ms],
      );
    },
    async blockedFor(key) {
      const t = now();
      const rows = await run<{ until: number }>('read', 'SELECT until FROM rate_blocks WHERE key = $1', [key]);
      const until = rows[0]?.until;
      return until === undefined ? 0 : Math.max(0, Number(until) - t);
    },
    async reset(key) {
      await run('reset', 'WITH h AS (DELETE FROM rate_hits WHERE key = $1) DELETE FROM rate_blocks WHERE key = $1', [key]);
    },
  };
}
