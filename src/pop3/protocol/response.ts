/**
 * POP3 responses built from typed values (RFC 1939 §3, RFC 2449 §8 response codes, RFC 5034 §4
 * challenges). Nothing a client sent is ever pasted into a response: texts are the server's own
 * constants and numbers, checked here so that a programming mistake cannot put a CR or LF on the
 * wire and forge a second response.
 */
import { createHash } from 'node:crypto';
import { MAX_UNIQUE_ID_LENGTH } from './limits.js';

/** RFC 2449 §8 extended response codes (with RFC 3206's SYS/ and AUTH). */
export type RespCode = 'IN-USE' | 'LOGIN-DELAY' | 'AUTH' | 'SYS/TEMP' | 'SYS/PERM';

const CRLF = '\r\n';

function checkText(text: string): string {
  // Printable ASCII only: responses are ASCII (RFC 1939 §3), and no CR/LF can split a line.
  if (!/^[\x20-\x7e]*$/.test(text)) throw new Error('POP3 response text must be printable ASCII');
  return text;
}

/** "+OK text" (RFC 1939 §3). */
export function ok(text = ''): string {
  return text.length > 0 ? `+OK ${checkText(text)}${CRLF}` : `+OK${CRLF}`;
}

/** "-ERR [CODE] text" (RFC 2449 §8: the code in brackets directly after -ERR). */
export function err(text: string, code: RespCode | null = null): string {
  const prefix = code === null ? '' : `[${code}] `;
  return `-ERR ${prefix}${checkText(text)}${CRLF}`;
}

/**
 * A multi-line response (RFC 1939 §3): the +OK line, each line dot-stuffed, then ".". For
 * server-built listings (CAPA, LIST, UIDL); message content goes through DotStuffer instead.
 */
export function multiline(first: string, lines: readonly string[]): string {
  let out = ok(first);
  for (const line of lines) {
    checkText(line);
    out += (line.startsWith('.') ? '.' : '') + line + CRLF;
  }
  return out + '.' + CRLF;
}

/** RFC 5034 §4: a server challenge is "+" SP base64 (possibly empty). */
export function challenge(data: Buffer): string {
  return `+ ${data.toString('base64')}${CRLF}`;
}

/** A scan listing line, "n size" (RFC 1939 §5 LIST). */
export function scanListing(msg: number, size: number): string {
  return `${msg} ${size}`;
}

/** A unique-id listing line, "n unique-id" (RFC 1939 §7 UIDL). */
export function uniqueIdListing(msg: number, uid: UniqueId): string {
  return `${msg} ${uid}`;
}

declare const uniqueIdBrand: unique symbol;
/** A value that satisfies RFC 1939 §7's unique-id syntax. */
export type UniqueId = string & { readonly [uniqueIdBrand]: true };

/** RFC 1939 §7: 1 to 70 characters, each in 0x21..0x7E. */
export function isValidUniqueId(value: string): value is UniqueId {
  return value.length >= 1 && value.length <= MAX_UNIQUE_ID_LENGTH && /^[\x21-\x7e]+$/.test(value);
}

/**
 * The UIDL value of an entry: its permanent id (MessageEntry.pid) when that already satisfies
 * RFC 1939 §7, else a value derived from it by SHA-256 (64 hex digits plus a marker), which is just
 * as stable and never collides in practice. The store's ids are in the first form; the second is a
 * guard so that no stored value can ever put an invalid unique-id on the wire.
 */
export function toUniqueId(pid: string): UniqueId {
  if (isValidUniqueId(pid)) return pid;
  const derived = `h${createHash('sha256').update(pid, 'utf8').digest('hex')}`;
  return derived as UniqueId;
}
