/**
 * Small helpers shared by the SASL mechanisms: strict UTF-8 decoding and identity comparison.
 * Pure functions, no state.
 */
import { saslprep } from './saslprep.js';

/** Decodes UTF-8, or null when the bytes are not valid UTF-8 (RFC 4616 §2 and RFC 5802 §5.1
 * require UTF-8; invalid bytes are a malformed message, not something to guess at). */
export function decodeUtf8(bytes: Buffer): string | null {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return null;
  }
}

/**
 * Whether an authorization identity names the authenticated user itself: Facteur supports no
 * proxy authorization, so an authzid is accepted only when it is empty or the same identity
 * (compared after SASLprep, case-insensitively, like user names everywhere).
 */
export function sameIdentity(authzid: string, authcid: string): boolean {
  if (authzid === '') return true;
  const a = saslprep(authzid);
  const b = saslprep(authcid);
  return a !== null && b !== null && a.toLowerCase() === b.toLowerCase();
}
