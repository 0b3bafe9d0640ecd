/**
 * Canonical forms of the names the store keys on: domains and addresses (lowercased), mailbox
 * names ('/' hierarchy, INBOX case-insensitive). Shared by every backend.
 */
import { StoreError } from './types.js';

export const HIERARCHY_SEPARATOR = '/';
/** Bounds the stored name; RFC 9051 sets no limit, this keeps a client from storing megabytes. */
export const MAX_MAILBOX_NAME_LENGTH = 1024;
export const MAX_ADDRESS_LENGTH = 320;

export function normalizeDomain(name: string): string {
  const d = name.trim().toLowerCase().replace(/\.$/, '');
  if (d.length === 0 || d.length > 253 || !/^[^\s@]+$/u.test(d)) {
    throw new StoreError('invalid', `Cannot use domain ${JSON.stringify(name)}: not a domain name`);
  }
  return d;
}

/** local@domain lowercased. Local parts are matched case-insensitively, as users expect. */
export function normalizeAddress(address: string): string {
  const a = address.trim().toLowerCase();
  const at = a.lastIndexOf('@');
  if (at <= 0 || at === a.length - 1 || a.length > MAX_ADDRESS_LENGTH || /\s/u.test(a)) {
    throw new StoreError('invalid', `Cannot use address ${JSON.stringify(address)}: not local@domain`);
  }
  return a;
}

/** An alias source: local@domain, or @domain for the domain's catch-all. */
export function normalizeAliasSource(source: string): string {
  const s = source.trim().toLowerCase();
  if (s.startsWith('@')) return `@${normalizeDomain(s.slice(1))}`;
  return normalizeAddress(s);
}

export function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1);
}

/**
 * Validates a mailbox name and returns its stored form: INBOX in any case is "INBOX", also as
 * the first level of a hierarchy (RFC 9051 §5.1: INBOX is case-insensitive).
 */
export function normalizeMailboxName(name: string): string {
  if (name.length === 0 || name.length > MAX_MAILBOX_NAME_LENGTH) {
    throw new StoreError('invalid', `Cannot use mailbox name: length must be 1 to ${MAX_MAILBOX_NAME_LENGTH}`);
  }
  if (/[\x00-\x1f\x7f]/.test(name)) {
    throw new StoreError('invalid', 'Cannot use mailbox name: it contains a control character');
  }
  const parts = name.split(HIERARCHY_SEPARATOR);
  if (parts.some((p) => p.length === 0)) {
    throw new StoreError('invalid', `Cannot use mailbox name ${JSON.stringify(name)}: empty hierarchy level`);
  }
  if (parts[0]?.toUpperCase() === 'INBOX') parts[0] = 'INBOX';
  return parts.join(HIERARCHY_SEPARATOR);
}

/** "a/b/c" -> ["a", "a/b"]. */
export function parentNames(name: string): string[] {
  const parts = name.split(HIERARCHY_SEPARATOR);
  const out: string[] = [];
  for (let i = 1; i < parts.length; i++) out.push(parts.slice(0, i).join(HIERARCHY_SEPARATOR));
  return out;
}

export const MAX_APP_PASSWORD_NAME_LENGTH = 64;

/** An app password's name as given (case kept): 1-64 characters, trimmed, no control characters. */
export function checkAppPasswordName(name: string): string {
  const n = name.trim();
  if (n.length === 0 || n.length > MAX_APP_PASSWORD_NAME_LENGTH || /\p{Cc}/u.test(n)) {
    throw new StoreError('invalid', `Cannot use app password name ${JSON.stringify(name)}: 1-64 characters, no control characters`);
  }
  return n;
}

/** A TOTP secret (base32, RFC 4648 §6) or a step as the store accepts them. */
export function checkTotp(secret: string | null | undefined, step: number | null | undefined): void {
  if (secret !== undefined && secret !== null && !/^[A-Z2-7]{16,128}$/.test(secret)) {
    throw new StoreError('invalid', 'Cannot set TOTP secret: not 16-128 base32 characters (A-Z, 2-7)');
  }
  if (step !== undefined && step !== null && (!Number.isSafeInteger(step) || step < 0)) {
    throw new StoreError('invalid', `Cannot set TOTP step ${step}: not a non-negative integer`);
  }
}
