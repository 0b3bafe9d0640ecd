/**
 * The RCPT answers an SMTP worker process keeps for a moment (worker/main.ts): the sessions of a
 * busy MX then do not each wait for the owner of the store, across the IPC channel, for an address
 * it has just answered. With ten senders at once (bench/smtp-ingest/timeline.ts, senders=10), the
 * MAIL+RCPT+DATA round trip took 2.0 to 3.8 ms through the owner, whose event loop was busy with
 * the store, against 0.8 ms with the answer kept (docs/benchmarks.md).
 *
 * Invariants:
 * - Only an answer that depends on the address alone is kept: 'ok' for accounts without a quota.
 *   A refusal is never kept: an account created a moment after a 550 must not get a 550 again,
 *   and a refusal is cheap to ask for anyway. An answer that read a quota is never kept either:
 *   it depends on the message's size and on the account's usage.
 * - An answer is used for at most `ttlMs` (default 1 s) counted from when it was asked for: a
 *   change of accounts, aliases or domains reaches a worker's RCPT answers within that time. The
 *   owner checks each account again when it delivers (an account removed in between gets nothing:
 *   DeliveryOutcome 'no-account'; quotas are checked there too); an account disabled, or an alias
 *   changed, within that time may still receive what was accepted in it.
 * - Bounded: at most `maxEntries` answers, the least recently used dropped first.
 */
import type { RecipientAnswer } from '../../delivery/local.js';
import { LruCache } from '../../lib/lru.js';

/** The owner's answer to an RCPT, across the channel. */
type Ask = (domain: string, address: string, size: number | null) => Promise<RecipientAnswer>;

export interface RecipientCacheOptions {
  /** How long an answer is used (ms). */
  ttlMs?: number;
  maxEntries?: number;
  /** The clock (tests). */
  now?: () => number;
}

const RECIPIENT_CACHE_TTL_MS = 1000;
const RECIPIENT_CACHE_ENTRIES = 10_000;

export class RecipientCache {
  readonly #ask: Ask;
  readonly #ttl: number;
  readonly #now: () => number;
  readonly #kept: LruCache<string, { answer: RecipientAnswer; until: number }>;
  /** Answers given from memory, and questions sent to the owner. */
  readonly stats = { hits: 0, asked: 0 };

  constructor(ask: Ask, options: RecipientCacheOptions = {}) {
    this.#ask = ask;
    this.#ttl = options.ttlMs ?? RECIPIENT_CACHE_TTL_MS;
    this.#now = options.now ?? Date.now;
    this.#kept = new LruCache(options.maxEntries ?? RECIPIENT_CACHE_ENTRIES);
  }

  async lookup(domain: string, address: string, size: number | null): Promise<RecipientAnswer> {
    // The two parts as the session gave them: answers are shared only by the same spelling.
    const key = `${domain}\n${address}`;
    const kept = this.#kept.get(key);
    if (kept !== undefined) {
      if (this.#now() < kept.until) {
        this.stats.hits++;
        return kept.answer;
      }
      this.#kept.delete(key);
    }
    this.stats.asked++;
    // Counted from the question: the answer was true at some moment after it.
    const asked = this.#now();
    const answer = await this.#ask(domain, address, size);
    if (answer.kind === 'ok' && !answer.quotaChecked && this.#ttl > 0) {
      this.#kept.set(key, { answer, until: asked + this.#ttl });
    }
    return answer;
  }
}
