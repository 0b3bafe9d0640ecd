/**
 * Counters shared by every node of an installation: the "in-memory counters" role of the store
 * (auth failure counts and blocks, RCPT probing). A backend needs five atomic operations on keys;
 * PostgreSQL implements them (sql/postgres/pg-counters.ts), and a Redis-like store would with
 * INCR/EXPIRE on bucket keys and SET ... PX for blocks.
 *
 * Contract:
 * - hit and count use a sliding window approximated by time buckets (at most 1/15 of the window,
 *   at least 1 s): the count covers the last windowMs and at most one bucket more, so it may
 *   count a few old events, never miss a recent one (a limit can only trigger early, by less than
 *   one bucket).
 * - One key is always used with one window (the caller's key names say what they count).
 * - A block lasts until its end; a new block never shortens an existing one.
 * - Every operation is atomic across nodes: two nodes hitting one key at once count two events.
 */
export interface SharedCounters {
  /** Records one event; returns the events of the key within the window, this one included. */
  hit(key: string, windowMs: number): Promise<number>;
  /** Events of the key within the window. */
  count(key: string, windowMs: number): Promise<number>;
  /** Blocks the key for ms from now (or longer, when it already is). */
  block(key: string, ms: number): Promise<void>;
  /** Milliseconds left on the key's block; 0 when it is not blocked. */
  blockedFor(key: string): Promise<number>;
  /** Forgets the key's events and block. */
  reset(key: string): Promise<void>;
}

/** The bucket width for a window (see the contract above). */
export function bucketMs(windowMs: number): number {
  return Math.max(1000, Math.ceil(windowMs / 15));
}
