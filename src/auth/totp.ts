/**
 * TOTP second factor (RFC 6238 over HOTP, RFC 4226): HMAC-SHA-1, 30-second steps, 6 digits, the
 * parameters every authenticator app assumes from an otpauth:// URI without parameters.
 *
 * Invariants:
 * - A code is accepted for the current step and one step either side (RFC 6238 §5.2 allows a
 *   window for clock drift and network delay; one step is the usual choice).
 * - A step is accepted at most once, and never one at or before the last accepted step
 *   (RFC 6238 §5.2: "the verifier MUST NOT accept the second attempt of the OTP after the
 *   successful validation has been issued for the first OTP"). `verifyTotp` returns the step so
 *   the caller can record it atomically (MailStore.acceptTotpStep).
 * - Codes are compared in constant time; anything but exactly `digits` ASCII digits fails.
 * - Secrets come from crypto.randomBytes: 20 bytes (160 bits, the HMAC-SHA-1 key length
 *   RFC 4226 §4 R6 recommends), written in base32 (RFC 4648 §6) without padding.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const TOTP_STEP_SECONDS = 30;
export const TOTP_DIGITS = 6;
/** Steps accepted either side of the current one. */
export const TOTP_WINDOW = 1;
const SECRET_BYTES = 20;
const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 §6 base32, upper case, without padding. */
export function base32Encode(bytes: Buffer): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

/** Decodes base32 (case, spaces and padding ignored, as apps display and accept it); null when
 * a character is outside the alphabet. */
export function base32Decode(text: string): Buffer | null {
  const clean = text.replace(/[\s=]/g, '').toUpperCase();
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const ch of clean) {
    const v = BASE32.indexOf(ch);
    if (v < 0) return null;
    value = ((value << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** A new secret in base32 (32 characters for 160 bits). */
export function generateTotpSecret(): string {
  return base32Encode(randomBytes(SECRET_BYTES));
}

/** RFC 4226 §5.3 HOTP: HMAC-SHA-1 of the 8-byte counter, dynamic truncation, modulo 10^digits. */
export function hotp(key: Buffer, counter: number, digits = TOTP_DIGITS): string {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac('sha1', key).update(msg).digest();
  const offset = mac[mac.length - 1]! & 0x0f;
  const binary = mac.readUInt32BE(offset) & 0x7fffffff;
  return String(binary % 10 ** digits).padStart(digits, '0');
}

/** RFC 6238 §4.2: T = floor((unix time - T0) / X), with T0 = 0 and X = 30 s. */
export function totpStep(unixMs: number): number {
  return Math.floor(unixMs / 1000 / TOTP_STEP_SECONDS);
}

/** The code for a time (ms since the epoch). */
export function totpCode(key: Buffer, unixMs: number, digits = TOTP_DIGITS): string {
  return hotp(key, totpStep(unixMs), digits);
}

export type TotpCheck = { ok: true; step: number } | { ok: false; reason: 'malformed' | 'wrong' | 'replayed' };

/**
 * Checks a code against a base32 secret at `now`, refusing steps at or before lastStep. On
 * success returns the step, which the caller must then record (MailStore.acceptTotpStep) before
 * granting anything. 'replayed': the code matched a step already used (logged apart from wrong).
 */
export function verifyTotp(secret: string, code: string, options: { now: number; lastStep: number | null }): TotpCheck {
  const key = base32Decode(secret);
  const given = code.replace(/\s/g, '');
  if (key === null || key.length === 0 || !new RegExp(`^\\d{${TOTP_DIGITS}}$`).test(given)) return { ok: false, reason: 'malformed' };
  const current = totpStep(options.now);
  let replayed = false;
  // Every candidate is computed and compared, so the time taken does not say which one matched.
  let matched: number | null = null;
  for (let step = current - TOTP_WINDOW; step <= current + TOTP_WINDOW; step++) {
    if (step < 0) continue;
    const same = timingSafeEqual(Buffer.from(hotp(key, step)), Buffer.from(given));
    if (!same) continue;
    if (options.lastStep !== null && step <= options.lastStep) replayed = true;
    else if (matched === null) matched = step;
  }
  if (matched !== null) return { ok: true, step: matched };
  return { ok: false, reason: replayed ? 'replayed' : 'wrong' };
}

/**
 * The otpauth:// URI authenticator apps read from a QR code (the Key Uri Format of Google
 * Authenticator, which every app follows): label "issuer:account", secret, issuer, and the
 * default algorithm, digits and period stated explicitly.
 */
export function otpauthUri(secret: string, account: string, issuer: string): string {
  const label = `${encodeURIComponent(issuer)}:${encodeURIComponent(account)}`;
  const params = new URLSearchParams({
    secret,
    issuer,
    algorithm: 'SHA1',
    digits: String(TOTP_DIGITS),
    period: String(TOTP_STEP_SECONDS),
  });
  return `otpauth://totp/${label}?${params.toString()}`;
}
