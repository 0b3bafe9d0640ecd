/**
 * SMTP paths and mailboxes (RFC 5321 §4.1.2, with RFC 6531 §3.3 UTF-8 extensions).
 *
 * Invariants: a parsed Mailbox is grammatical; `domain` is lowercased (or an address literal kept
 * in brackets); `address` is the canonical form (a quoted local part is re-quoted only when it is
 * not a Dot-string), so the same mailbox always gives the same string. Source routes are parsed
 * and dropped (RFC 5321 §4.1.1.3 and Appendix C: servers MUST accept and SHOULD ignore them).
 */
import { domainToASCII, domainToUnicode } from 'node:url';
import { DOMAIN_MAX, LOCAL_PART_MAX, PATH_MAX } from './limits.js';

export interface Mailbox {
  /** Local part, unquoted (quoted-pair escapes removed). */
  local: string;
  /** Lowercased domain, or "[...]" for an address literal. */
  domain: string;
  /** True for an address literal (RFC 5321 §4.1.3). */
  literal: boolean;
  /** Whether the mailbox needs SMTPUTF8 (RFC 6531 §3.3). */
  utf8: boolean;
  /** Canonical local@domain. */
  address: string;
}

export type ParseResult<T> = { ok: true; value: T; end: number } | { ok: false; error: string };

// The checks below go by UTF-16 unit, without a regular expression per character (each MAIL,
// RCPT and EHLO runs them): every unit of a non-ASCII character is above 0x7f, so a unit's class
// is its character's.
const DOT = 0x2e;
const HYPHEN = 0x2d;

/** RFC 5322 §3.2.3 atext, the ASCII part: letters, digits and these. */
const ATEXT_ASCII = new Uint8Array(0x80);
for (const ch of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-/=?^_`{|}~") ATEXT_ASCII[ch.charCodeAt(0)] = 1;

/** RFC 5321 §4.1.2 atext by code point or unit; UTF8-non-ascii too when `utf8` (RFC 6531 §3.3). */
function isAtext(c: number, utf8: boolean): boolean {
  return c > 0x7f ? utf8 : ATEXT_ASCII[c] === 1;
}

/** RFC 5321 §4.1.2 Let-dig, or UTF8-non-ascii (RFC 6531 §3.3 U-labels). */
function isLetDigOrUtf8(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c > 0x7f;
}

/** RFC 5321 §4.1.2 Dot-string = Atom *("." Atom). */
export function isDotString(s: string, utf8 = true): boolean {
  if (s.length === 0) return false;
  let atomStart = 0;
  for (let i = 0; i <= s.length; i++) {
    const c = i === s.length ? DOT : s.charCodeAt(i);
    if (c === DOT) {
      if (i === atomStart) return false;
      atomStart = i + 1;
    } else if (!isAtext(c, utf8)) {
      return false;
    }
  }
  return true;
}

/** RFC 5321 §4.1.2 Domain = sub-domain *("." sub-domain), sub-domain = Let-dig [Ldh-str];
 * RFC 6531 §3.3 adds U-labels. A trailing dot is not part of the grammar. */
export function isDomain(s: string): boolean {
  if (s.length === 0 || Buffer.byteLength(s) > DOMAIN_MAX) return false;
  let labelStart = 0;
  let nonAscii = false;
  for (let i = 0; i <= s.length; i++) {
    const c = i === s.length ? DOT : s.charCodeAt(i);
    if (c === DOT) {
      const length = i - labelStart;
      if (length === 0 || length > 63) return false;
      // A sub-domain starts with a Let-dig and its Ldh-str ends with one: no hyphen first or last.
      if (s.charCodeAt(labelStart) === HYPHEN || s.charCodeAt(i - 1) === HYPHEN) return false;
      labelStart = i + 1;
    } else if (!(isLetDigOrUtf8(c) || c === HYPHEN)) {
      return false;
    } else if (c > 0x7f) {
      nonAscii = true;
    }
  }
  return !nonAscii || isIdn(s);
}

/** Non-ASCII labels must be U-labels (RFC 5890 §2.3.2.1): IDNA takes the name to A-labels and
 * back unchanged, but for case. Controls, line separators, and characters IDNA maps away
 * (soft hyphen, zero-width space) are refused. */
function isIdn(s: string): boolean {
  const ascii = domainToASCII(s);
  return ascii !== '' && domainToUnicode(ascii) === s.normalize('NFC').toLowerCase();
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** RFC 5321 §4.1.3 address-literal (without brackets): IPv4, "IPv6:" + address, or a general
 * literal "tag:dcontent". */
export function isAddressLiteralBody(s: string): boolean {
  if (IPV4.test(s)) return true;
  const m = /^([A-Za-z0-9-]*[A-Za-z0-9]):([\x21-\x5a\x5e-\x7e]+)$/.exec(s);
  if (!m) return false;
  if (m[1]!.toLowerCase() === 'ipv6') return /^[0-9A-Fa-f:.]+$/.test(m[2]!) && m[2]!.includes(':');
  return true;
}

/** Parses a Mailbox (RFC 5321 §4.1.2) starting at `pos`; stops at the first character that cannot
 * continue it. */
export function parseMailbox(s: string, pos: number): ParseResult<Mailbox> {
  let i = pos;
  let local = '';
  let quoted = false;
  let utf8 = false;
  if (s[i] === '"') {
    quoted = true;
    i++;
    for (;;) {
      const ch = s[i];
      if (ch === undefined) return { ok: false, error: 'Unterminated quoted local part' };
      if (ch === '"') {
        i++;
        break;
      }
      if (ch === '\\') {
        // RFC 5321 §4.1.2 quoted-pairSMTP = %d92 %d32-126
        const next = s[i + 1];
        if (next === undefined || next < ' ' || next > '~') return { ok: false, error: 'Bad quoted pair' };
        local += next;
        i += 2;
        continue;
      }
      const cp = ch.codePointAt(0)!;
      // qtextSMTP = %d32-33 / %d35-91 / %d93-126, plus UTF8-non-ascii (RFC 6531 §3.3)
      if (cp > 0x7f) {
        utf8 = true;
      } else if (cp < 32 || cp > 126) {
        return { ok: false, error: 'Bad character in quoted local part' };
      }
      local += ch;
      i += ch.length;
    }
  } else {
    const start = i;
    while (i < s.length) {
      const c = s.charCodeAt(i);
      if (c !== DOT && !isAtext(c, true)) break;
      if (c > 0x7f) utf8 = true;
      i++;
    }
    local = s.slice(start, i);
    if (!isDotString(local)) return { ok: false, error: 'Bad local part' };
  }
  if (Buffer.byteLength(local) > LOCAL_PART_MAX) return { ok: false, error: 'Local part too long' };
  if (s[i] !== '@') return { ok: false, error: 'Missing @domain' };
  i++;
  let domain: string;
  let literal = false;
  if (s[i] === '[') {
    const close = s.indexOf(']', i);
    if (close === -1) return { ok: false, error: 'Unterminated address literal' };
    const body = s.slice(i + 1, close);
    if (!isAddressLiteralBody(body)) return { ok: false, error: 'Bad address literal' };
    domain = `[${body.toLowerCase()}]`;
    literal = true;
    i = close + 1;
  } else {
    const start = i;
    while (i < s.length && s[i] !== '>' && s[i] !== ' ') i++;
    domain = s.slice(start, i);
    if (!isDomain(domain)) return { ok: false, error: 'Bad domain' };
    if (/[^\x00-\x7f]/.test(domain)) utf8 = true;
    domain = domain.toLowerCase();
  }
  const localOut = quoted && !isDotString(local) ? `"${local.replace(/(["\\])/g, '\\$1')}"` : local;
  return { ok: true, value: { local, domain, literal, utf8, address: `${localOut}@${domain}` }, end: i };
}

/** RFC 5321 §4.1.2 Path = "<" [ A-d-l ":" ] Mailbox ">". The source route (A-d-l) is checked and
 * dropped (RFC 5321 §4.1.1.3). `allowNull` accepts "<>" (Reverse-path). */
export function parsePath(s: string, pos: number, allowNull: boolean): ParseResult<Mailbox | null> {
  let i = pos;
  if (s[i] !== '<') return { ok: false, error: 'Path must be in angle brackets' };
  i++;
  if (s[i] === '>') {
    if (!allowNull) return { ok: false, error: 'Empty path' };
    return { ok: true, value: null, end: i + 1 };
  }
  if (s[i] === '@') {
    // A-d-l = At-domain *( "," At-domain ), At-domain = "@" Domain
    const colon = s.indexOf(':', i);
    if (colon === -1) return { ok: false, error: 'Bad source route' };
    for (const hop of s.slice(i, colon).split(',')) {
      if (!hop.startsWith('@') || !isDomain(hop.slice(1))) return { ok: false, error: 'Bad source route' };
    }
    i = colon + 1;
  }
  const mb = parseMailbox(s, i);
  if (!mb.ok) return mb;
  if (s[mb.end] !== '>') return { ok: false, error: 'Path must end with >' };
  if (Buffer.byteLength(s.slice(pos, mb.end + 1)) > PATH_MAX) return { ok: false, error: 'Path too long' };
  return { ok: true, value: mb.value, end: mb.end + 1 };
}
