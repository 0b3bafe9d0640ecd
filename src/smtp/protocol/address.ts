/**
 * SMTP paths and mailboxes (RFC 5321 §4.1.2, with RFC 6531 §3.3 UTF-8 extensions).
 *
 * Invariants: a parsed Mailbox is grammatical; `domain` is lowercased (or an address literal kept
 * in brackets); `address` is the canonical form (a quoted local part is re-quoted only when it is
 * not a Dot-string), so the same mailbox always gives the same string. Source routes are parsed
 * and dropped (RFC 5321 §4.1.1.3 and Appendix C: servers MUST accept and SHOULD ignore them).
 */
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

const ATEXT = /[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]/;
const LET_DIG = /[A-Za-z0-9]/;

function isUtf8NonAscii(ch: string): boolean {
  return ch.codePointAt(0)! > 0x7f;
}

function isAtext(ch: string, utf8: boolean): boolean {
  return ATEXT.test(ch) || (utf8 && isUtf8NonAscii(ch));
}

/** RFC 5321 §4.1.2 Dot-string = Atom *("." Atom). */
export function isDotString(s: string, utf8 = true): boolean {
  if (s.length === 0) return false;
  for (const atom of s.split('.')) {
    if (atom.length === 0) return false;
    for (const ch of atom) if (!isAtext(ch, utf8)) return false;
  }
  return true;
}

/** RFC 5321 §4.1.2 Domain = sub-domain *("." sub-domain), sub-domain = Let-dig [Ldh-str];
 * RFC 6531 §3.3 adds U-labels. A trailing dot is not part of the grammar. */
export function isDomain(s: string): boolean {
  if (s.length === 0 || Buffer.byteLength(s) > DOMAIN_MAX) return false;
  for (const label of s.split('.')) {
    if (label.length === 0 || label.length > 63) return false;
    const chars = [...label];
    const first = chars[0]!;
    const last = chars[chars.length - 1]!;
    if (!(LET_DIG.test(first) || isUtf8NonAscii(first))) return false;
    if (!(LET_DIG.test(last) || isUtf8NonAscii(last))) return false;
    for (const ch of chars) if (!(LET_DIG.test(ch) || ch === '-' || isUtf8NonAscii(ch))) return false;
  }
  return true;
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
      const ch = String.fromCodePoint(s.codePointAt(i)!);
      if (ch === '.' || isAtext(ch, true)) {
        if (isUtf8NonAscii(ch)) utf8 = true;
        i += ch.length;
      } else break;
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
    if ([...domain].some(isUtf8NonAscii)) utf8 = true;
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
