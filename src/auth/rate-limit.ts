/**
 * A sliding-window event counter per key (IP address, account, IP+command ...), used for
 * authentication failures, SMTP RCPT probing and connection rates.
 *
 * Invariants:
 * - count(key) is the exact number of hits in the last windowMs, capped at `limit`: only the
 *   newest `limit` timestamps of a key are kept, which is all a limit decision needs (if `limit`
 *   hits are in the window, the newest `limit` timestamps are all in it).
 * - Memory is bounded: at most `maxKeys` keys (default 100,000), each at most `limit` numbers;
 *   when a new key would pass the cap the least recently hit key is dropped. An attacker
 *   spraying keys can only make the limiter forget old keys, never grow it.
 * - No timers: expiry happens lazily on access, with the injected clock.
 */
import type { SharedCounters } from '../store/counters.js';

export interface RateLimiterOptions {
  /** Hits within the window at which `limited` becomes true. */
  limit: number;
  windowMs: number;
  /** Clock (epoch ms); injected by tests. */
  now?: () => number;
  /** Cap on tracked keys (default 100,000). */
  maxKeys?: number;
}

export interface RateLimiter {
  readonly limit: number;
  readonly windowMs: number;
  /** Records one event; returns the count in the window including it (at most `limit`). */
  hit(key: string): number;
  /** Events in the window (at most `limit`). */
  count(key: string): number;
  /** Whether the key has reached the limit within the window. */
  limited(key: string): boolean;
  /** Milliseconds until count(key) drops below the limit (0 when not limited). */
  retryAfter(key: string): number;
  reset(key: string): void;
  /** Keys currently tracked (for tests and metrics). */
  readonly size: number;
}

export const DEFAULT_MAX_KEYS = 100_000;

/** The part of a limiter a policy needs, asynchronous so that the counts may live in a store
 * shared by several nodes (store/counters.ts). */
export interface EventLimiter {
  /** Records one event; returns the count in the window including it. */
  hit(key: string): Promise<number>;
  /** Whether the key has reached the limit within the window. */
  limited(key: string): Promise<boolean>;
  /** Events in the window (the memory limiter counts at most `limit`). */
  count(key: string): Promise<number>;
}

/** An EventLimiter over SharedCounters, its keys under `name`. */
export function createSharedEventLimiter(shared: SharedCounters, name: string, options: { limit: number; windowMs: number }): EventLimiter {
  const key = (k: string) => `${name}:${k}`;
  return {
    hit: (k) => shared.hit(key(k), options.windowMs),
    limited: async (k) => (await shared.count(key(k), options.windowMs)) >= options.limit,
    count: (k) => shared.count(key(k), options.windowMs),
  };
}

/** An EventLimiter in this process's memory. */
export function createMemoryEventLimiter(options: RateLimiterOptions): EventLimiter {
  const limiter = createRateLimiter(options);
  return {
    hit: async (k) => limiter.hit(k),
    limited: async (k) => limiter.limited(k),
    count: async (k) => limiter.count(k),
  };
}

export function createRateLimiter(options: RateLimiterOptions): RateLimiter {
  const { limit, windowMs } = options;
  if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`Cannot create rate limiter: limit ${limit} is not a positive integer`);
  if (!(windowMs > 0)) throw new RangeError(`Cannot create rate limiter: window ${windowMs} ms is not positive`);
  const now = options.now ?? Date.now;
  const maxKeys = options.maxKeys ?? DEFAULT_MAX_KEYS;
  // Map iteration order is insertion order: re-inserting on each hit keeps the least recently
  // hit key first, so eviction is O(1).
  const hits = new Map<string, number[]>();

  /** Drops timestamps out of the window; deletes the key when none is left. */
  function live(key: string, t: number): number[] | undefined {
    const times = hits.get(key);
    if (!times) return undefined;
    const cutoff = t - windowMs;
    let drop = 0;
    while (drop < times.length && (times[drop] ?? 0) <= cutoff) drop++;
    if (drop > 0) times.splice(0, drop);
    if (times.length === 0) {
      hits.delete(key);
      return undefined;
    }
    return times;
  }

  return {
    limit,
    windowMs,
    hit(key) {
      const t = now();
      const times = live(key, t) ?? [];
      times.push(t);
      if (times.length > limit) times.splice(0, times.length - limit);
      hits.delete(key);
      if (hits.size >= maxKeys) {
        const oldest = hits.keys().next();
        if (!oldest.done) hits.delete(oldest.value);
      }
      hits.set(key, times);
      return times.length;
    },
    count(key) {
      return live(key, now())?.length ?? 0;
    },
    limited(key) {
      return (live(key, now())?.length ?? 0) >= limit;
    },
    retryAfter(key) {
      const t = now();
      const times = live(key, t);
      if (!times || times.length < limit) return 0;
      // The oldest kept hit leaves the window first; then the count is limit - 1.
      return (times[0] ?? t) + windowMs - t;
    },
    reset(key) {
      hits.delete(key);
    },
    get size() {
      return hits.size;
    },
  };
}
