/**
 * Passwords verified recently, so that a client logging in again and again (phones reconnecting,
 * a mail client opening one connection per folder, a sync tool polling every minute) pays the
 * password hash once per TTL rather than once per login. The hash is scrypt at tens of ms of CPU
 * (password.ts): without this, a few hundred logins a minute keep a core busy hashing the same
 * correct password. Dovecot's auth cache (auth_cache_size, auth_cache_ttl) answers the same need.
 *
 * Invariants:
 * - Only successes are remembered. A wrong password always runs the full hash and counts as a
 *   failure (authenticator.ts), so the cache gives an attacker no cheaper guess: to hit an entry
 *   one must already know the password.
 * - An entry is an HMAC, under a key drawn at start and never stored, of the account id, the
 *   account's stored password hash and the password. No password is kept, and a changed password
 *   (a new stored hash) can never match an entry made with the old one.
 * - Bounded: at most maxEntries (the oldest dropped first), each valid for ttlMs after it was
 *   last verified by the hash (a hit does not extend it: the password is re-hashed at least once
 *   per TTL).
 * - Checks that do not depend on the password (disabled account, second factor) are made by the
 *   caller on every login, cached or not.
 */
import { createHmac, randomBytes } from 'node:crypto';

export interface VerifiedPasswordsOptions {
  /** How long a verified password is trusted without hashing (0 disables the cache). */
  ttlMs: number;
  maxEntries?: number;
  now?: () => number;
}

export const DEFAULT_VERIFIED_PASSWORD_TTL_MS = 15 * 60_000;
const DEFAULT_MAX_ENTRIES = 10_000;

export class VerifiedPasswords {
  readonly #key = randomBytes(32);
  /** entry -> expiry time (ms); insertion order is age order. */
  readonly #entries = new Map<string, number>();
  readonly #ttlMs: number;
  readonly #max: number;
  readonly #now: () => number;

  constructor(options: VerifiedPasswordsOptions) {
    this.#ttlMs = options.ttlMs;
    this.#max = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
    this.#now = options.now ?? Date.now;
  }

  #entry(accountId: number, storedHash: string, password: string): string {
    // Length-prefixed: no choice of hash and password can produce another pair's input.
    return createHmac('sha256', this.#key).update(`${accountId}:${storedHash.length}:${storedHash}`).update(password, 'utf8').digest('base64');
  }

  /** True when this password was verified for this account (and this stored hash) within the TTL. */
  has(accountId: number, storedHash: string, password: string): boolean {
    if (this.#ttlMs <= 0) return false;
    const entry = this.#entry(accountId, storedHash, password);
    const expires = this.#entries.get(entry);
    if (expires === undefined) return false;
    if (expires <= this.#now()) {
      this.#entries.delete(entry);
      return false;
    }
    return true;
  }

  /** Records a password the hash just verified. */
  add(accountId: number, storedHash: string, password: string): void {
    if (this.#ttlMs <= 0 || this.#max <= 0) return;
    const entry = this.#entry(accountId, storedHash, password);
    this.#entries.delete(entry);
    this.#entries.set(entry, this.#now() + this.#ttlMs);
    while (this.#entries.size > this.#max) {
      const oldest = this.#entries.keys().next().value as string;
      this.#entries.delete(oldest);
    }
  }

  get size(): number {
    return this.#entries.size;
  }
}
