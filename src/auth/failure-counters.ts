/**
 * Authentication failure counters with temporary blocks, per client IP and per account.
 *
 * The Authenticator talks to the `AuthFailureCounters` interface only. The in-memory version
 * serves one process (SQLite); the shared version keeps the counts and blocks in the store's
 * SharedCounters (PostgreSQL), so a client blocked on one node is blocked on every node.
 *
 * Invariants:
 * - A key that reaches its failure limit within the window is blocked for blockMs; while blocked,
 *   no password is checked for it (the attacker gets no answer and costs no CPU).
 * - Memory is bounded (see rate-limit.ts): counters and blocks hold at most maxKeys keys each.
 */
import type { SharedCounters } from '../store/counters.js';
import { createRateLimiter, DEFAULT_MAX_KEYS } from './rate-limit.js';

export type FailureScope = 'ip' | 'account';

export interface AuthFailureCounters {
  /** Milliseconds left on the key's block; 0 when it is not blocked. */
  blockedFor(scope: FailureScope, key: string): Promise<number>;
  /** Records a failure; returns the failures now in the window (at most the scope's limit) and
   * blocks the key when its limit is reached. */
  recordFailure(scope: FailureScope, key: string): Promise<number>;
  /** Forgets the key's failures and block (after a successful login). */
  reset(scope: FailureScope, key: string): Promise<void>;
}

export interface FailureLimits {
  /** Failures from one IP (IPv6: one /64) within the window before it is blocked. Default 30. */
  maxFailuresPerIp?: number;
  /** Failures on one account (or unknown user name) within the window before it is blocked.
   * Default 10. */
  maxFailuresPerAccount?: number;
  /** Default 15 minutes. */
  windowMs?: number;
  /** How long a block lasts. Default 15 minutes. */
  blockMs?: number;
  now?: () => number;
  maxKeys?: number;
}

export const FAILURE_DEFAULTS = {
  maxFailuresPerIp: 30,
  maxFailuresPerAccount: 10,
  windowMs: 15 * 60_000,
  blockMs: 15 * 60_000,
} as const;

export function createMemoryFailureCounters(limits: FailureLimits = {}): AuthFailureCounters {
  const now = limits.now ?? Date.now;
  const windowMs = limits.windowMs ?? FAILURE_DEFAULTS.windowMs;
  const blockMs = limits.blockMs ?? FAILURE_DEFAULTS.blockMs;
  const maxKeys = limits.maxKeys ?? DEFAULT_MAX_KEYS;
  const limiters = {
    ip: createRateLimiter({ limit: limits.maxFailuresPerIp ?? FAILURE_DEFAULTS.maxFailuresPerIp, windowMs, now, maxKeys }),
    account: createRateLimiter({
      limit: limits.maxFailuresPerAccount ?? FAILURE_DEFAULTS.maxFailuresPerAccount,
      windowMs,
      now,
      maxKeys,
    }),
  };
  // scope + ' ' + key -> blocked until (epoch ms); insertion order = oldest block first.
  const blocks = new Map<string, number>();

  return {
    async blockedFor(scope, key) {
      const id = `${scope} ${key}`;
      const until = blocks.get(id);
      if (until === undefined) return 0;
      const left = until - now();
      if (left <= 0) {
        blocks.delete(id);
        return 0;
      }
      return left;
    },
    async recordFailure(scope, key) {
      const limiter = limiters[scope];
      const count = limiter.hit(key);
      if (count >= limiter.limit) {
        const id = `${scope} ${key}`;
        blocks.delete(id);
        if (blocks.size >= maxKeys) {
          const oldest = blocks.keys().next();
          if (!oldest.done) blocks.delete(oldest.value);
        }
        blocks.set(id, now() + blockMs);
      }
      return count;
    },
    async reset(scope, key) {
      limiters[scope].reset(key);
      blocks.delete(`${scope} ${key}`);
    },
  };
}

/**
 * Failure counters in SharedCounters: every node counts into, and checks, the same keys. Same
 * limits and answers as the in-memory version; the window is approximated by time buckets
 * (store/counters.ts), so a block may come up to one bucket (one minute for 15 minutes) early.
 */
export function createSharedFailureCounters(shared: SharedCounters, limits: FailureLimits = {}): AuthFailureCounters {
  const windowMs = limits.windowMs ?? FAILURE_DEFAULTS.windowMs;
  const blockMs = limits.blockMs ?? FAILURE_DEFAULTS.blockMs;
  const limit = {
    ip: limits.maxFailuresPerIp ?? FAILURE_DEFAULTS.maxFailuresPerIp,
    account: limits.maxFailuresPerAccount ?? FAILURE_DEFAULTS.maxFailuresPerAccount,
  };
  const key = (scope: FailureScope, k: string) => `auth-${scope}:${k}`;
  return {
    blockedFor: (scope, k) => shared.blockedFor(key(scope, k)),
    async recordFailure(scope, k) {
      const count = await shared.hit(key(scope, k), windowMs);
      if (count >= limit[scope]) await shared.block(key(scope, k), blockMs);
      return Math.min(count, limit[scope]);
    },
    reset: (scope, k) => shared.reset(key(scope, k)),
  };
}
