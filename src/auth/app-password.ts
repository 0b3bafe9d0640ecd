/**
 * App passwords: per-device secrets an account's mail clients log in with instead of the main
 * password (named, revocable, their last use recorded; see docs/security.md).
 *
 * Why a plain SHA-256 and not scrypt: an app password is not chosen by a person; it is 16
 * characters of base32 from crypto.randomBytes, 80 bits of entropy. A slow hash protects
 * guessable passwords against an offline attack on a stolen database; 2^80 SHA-256 computations
 * are out of reach anyway, so the slow hash would only make every login (and every mail client
 * polling every few minutes) cost 50 ms of CPU for nothing. The digest is domain-separated
 * ("facteur app password" prefix) so it cannot be matched against digests made for another
 * purpose, and it is not salted so that a login finds its row with one indexed lookup.
 *
 * Invariants:
 * - The secret is shown once, at creation; only `sha256$<base64 digest>` is stored.
 * - The form users type is forgiving (case, dashes and spaces ignored); anything that is not
 *   16 base32 characters after that is not an app password and is never looked up.
 */
import { createHash, randomBytes } from 'node:crypto';
import { base32Encode } from './totp.js';

/** 16 base32 characters = 80 bits. */
const SECRET_CHARS = 16;
const SHAPE = new RegExp(`^[a-z2-7]{${SECRET_CHARS}}$`);

/** A new app password, in groups of four for reading aloud or typing: abcd-efgh-ijkl-mnop. */
export function generateAppPassword(): string {
  const chars = base32Encode(randomBytes((SECRET_CHARS * 5) / 8)).toLowerCase();
  return (chars.match(/.{4}/g) ?? []).join('-');
}

/** The canonical form of something typed as an app password, or null when it cannot be one. */
export function appPasswordCandidate(password: string): string | null {
  const s = password.replace(/[\s-]/g, '').toLowerCase();
  return SHAPE.test(s) ? s : null;
}

/** The stored hash of an app password (given in any accepted form); null when it cannot be one. */
export function hashAppPassword(password: string): string | null {
  const s = appPasswordCandidate(password);
  if (s === null) return null;
  return `sha256$${createHash('sha256').update('facteur app password\0').update(s).digest('base64')}`;
}
