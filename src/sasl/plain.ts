/**
 * PLAIN (RFC 4616): one message, `[authzid] NUL authcid NUL passwd`, UTF-8.
 * Pure parsing; the session (session.ts) checks the password.
 */
import { decodeUtf8, sameIdentity } from './text.js';

/** RFC 4616 §2 asks servers to accept at least 255 octets per field; names are capped at 320
 * (an address plus room), passwords at 1024 (long passphrases), the message at their sum. */
export const PLAIN_MAX_NAME_BYTES = 320;
export const PLAIN_MAX_PASSWORD_BYTES = 1024;
export const PLAIN_MAX_MESSAGE_BYTES = 2 * PLAIN_MAX_NAME_BYTES + PLAIN_MAX_PASSWORD_BYTES + 2;

export type PlainMessage =
  | { ok: true; authzid: string; authcid: string; password: string }
  /** malformed: not the RFC 4616 §2 grammar; invalid: well-formed but asks to act as someone else. */
  | { ok: false; reason: 'malformed' | 'invalid' };

export function parsePlain(message: Buffer): PlainMessage {
  if (message.length > PLAIN_MAX_MESSAGE_BYTES) return { ok: false, reason: 'malformed' };
  const first = message.indexOf(0);
  const second = first < 0 ? -1 : message.indexOf(0, first + 1);
  // RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL passwd; exactly two NULs.
  if (first < 0 || second < 0 || message.indexOf(0, second + 1) >= 0) return { ok: false, reason: 'malformed' };
  const authzidBytes = message.subarray(0, first);
  const authcidBytes = message.subarray(first + 1, second);
  const passwordBytes = message.subarray(second + 1);
  // RFC 4616 §2: authcid = 1*SAFE, passwd = 1*SAFE.
  if (authcidBytes.length === 0 || passwordBytes.length === 0) return { ok: false, reason: 'malformed' };
  if (
    authzidBytes.length > PLAIN_MAX_NAME_BYTES ||
    authcidBytes.length > PLAIN_MAX_NAME_BYTES ||
    passwordBytes.length > PLAIN_MAX_PASSWORD_BYTES
  ) {
    return { ok: false, reason: 'malformed' };
  }
  const authzid = decodeUtf8(authzidBytes);
  const authcid = decodeUtf8(authcidBytes);
  const password = decodeUtf8(passwordBytes);
  if (authzid === null || authcid === null || password === null) return { ok: false, reason: 'malformed' };
  // RFC 4616 §2: the server verifies that authcid may act as authzid; only itself may.
  if (!sameIdentity(authzid, authcid)) return { ok: false, reason: 'invalid' };
  return { ok: true, authzid, authcid, password };
}
