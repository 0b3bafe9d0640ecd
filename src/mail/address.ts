/**
 * Addresses: RFC 5322 §3.4 address lists (mailboxes and groups) for IMAP ENVELOPE and for
 * display/search, and RFC 5321 mailbox normalisation for SMTP.
 *
 * Invariants: never throws; list parsing is bounded by MAX_ADDRESS_HEADER characters.
 */
import { domainToASCII } from 'node:url';
import addressparser from 'nodemailer/lib/addressparser/index.js';
import type { DecodedAddress, EnvelopeAddress } from './types.js';
import { createCharsetDecoder, type CharsetDecoder } from './charset.js';
import { decodeEncodedWords, stripComments } from './headers.js';

/** An address header longer than this is cut before parsing: it bounds the tokenizer's work and
 * memory for a hostile header (a real one with thousands of recipients stays well below). */
export const MAX_ADDRESS_HEADER = 256 * 1024;
/** Addresses read from one header; the rest are dropped. Bounds the stored parse record. */
export const MAX_ADDRESSES = 10_000;

interface Mailbox0 {
  name: string;
  address: string;
}
type Entry = { kind: 'mailbox'; mailbox: Mailbox0 } | { kind: 'group'; name: string; members: Mailbox0[] };

/**
 * Splits an address list at its top-level commas, outside quoted strings, comments and angle
 * brackets, and finds groups ("name: a, b;", RFC 5322 §3.4). addressparser then reads each
 * mailbox alone: on a whole list its work grows with the square of the number of addresses.
 */
function splitList(input: string): Array<{ group: string | null; items: string[] }> {
  const out: Array<{ group: string | null; items: string[] }> = [];
  let group: { group: string | null; items: string[] } | null = null;
  let start = 0;
  let quote = false;
  let comment = 0;
  let angle = false;
  let count = 0;
  const flush = (end: number): void => {
    const item = input.slice(start, end);
    if (item.trim() !== '' && count++ < MAX_ADDRESSES) {
      if (group !== null) group.items.push(item);
      else out.push({ group: null, items: [item] });
    }
    start = end + 1;
  };
  for (let i = 0; i < input.length; i++) {
    const c = input[i];
    if (quote) {
      if (c === '\\') i++;
      else if (c === '"') quote = false;
      continue;
    }
    if (comment > 0) {
      if (c === '\\') i++;
      else if (c === '(') comment++;
      else if (c === ')') comment--;
      continue;
    }
    if (c === '"') quote = true;
    else if (c === '(') comment = 1;
    else if (angle) {
      if (c === '>') angle = false;
    } else if (c === '<') angle = true;
    else if (c === ',') flush(i);
    else if (c === ':' && group === null) {
      // RFC 5322 §3.4 group: display-name ":" [group-list] ";"
      group = { group: input.slice(start, i), items: [] };
      out.push(group);
      start = i + 1;
    } else if (c === ';') {
      flush(i);
      group = null;
    }
  }
  flush(input.length);
  return out;
}

// Shapes most mailboxes have, read without the general tokenizer (its per-call cost dominates
// for headers with thousands of recipients): "local@domain", "word", "Name <addr>", "\"Name\" <addr>".
const SPECIALS = '\\s"(),:;<>@\\[\\]\\\\';
const BARE = new RegExp(`^[^${SPECIALS}]+(?:@[^${SPECIALS}]+)?$`);
const NAME_ADDR = new RegExp(`^(?:([^${SPECIALS}]+(?:\\s+[^${SPECIALS}]+)*)|"([^"\\\\]*)")?\\s*<([^${SPECIALS}]+@[^${SPECIALS}]+)>$`);

function trimComments(s: string): string {
  return s.includes('(') ? stripComments(s).trim() : s.trim();
}

function parseOne(raw: string): Mailbox0[] {
  const item = raw.trim();
  if (BARE.test(item)) return [item.includes('@') ? { name: '', address: item } : { name: item, address: '' }];
  const na = NAME_ADDR.exec(item);
  if (na !== null) return [{ name: (na[1] ?? na[2] ?? '').trim(), address: na[3]! }];
  // A comment alone is no address ("group2: (foo) ;" is an empty group, RFC 5322 §3.4).
  if (trimComments(item) === '') return [];
  let list: addressparser.AddressOrGroup[];
  try {
    list = addressparser(item);
  } catch {
    return [];
  }
  const out: Mailbox0[] = [];
  const flatten = (xs: addressparser.AddressOrGroup[]): void => {
    for (const x of xs) {
      if ('group' in x && Array.isArray(x.group)) flatten(x.group);
      else if ('address' in x) {
        // CFWS inside an addr-spec is not part of it (RFC 5322 §3.4.1, §4.4):
        // "<user (c)@ (c) domain.org>" is user@domain.org.
        const address = x.address ?? '';
        const m = { name: x.name ?? '', address: address.includes('(') || /\s/.test(address) ? trimComments(address).replace(/\s+/g, '') : address };
        if (m.name !== '' || m.address !== '') out.push(m);
      }
    }
  };
  flatten(list);
  return out;
}

function groupName(raw: string): string {
  const t = stripComments(raw).trim().replace(/\s+/g, ' ');
  return t.startsWith('"') && t.endsWith('"') && t.length >= 2 ? t.slice(1, -1).replace(/\\(.)/g, '$1') : t;
}

function entries(value: string): Entry[] {
  const input = value.length > MAX_ADDRESS_HEADER ? value.slice(0, MAX_ADDRESS_HEADER) : value;
  const out: Entry[] = [];
  for (const chunk of splitList(input)) {
    if (chunk.group !== null) {
      out.push({ kind: 'group', name: groupName(chunk.group), members: chunk.items.flatMap(parseOne) });
    } else {
      for (const item of chunk.items) for (const m of parseOne(item)) out.push({ kind: 'mailbox', mailbox: m });
    }
  }
  return out;
}

function toEnvelope(m: Mailbox0): EnvelopeAddress {
  let address = m.address.trim();
  if (address === '' && /^[^\s<>()@,;:"]+$/.test(m.name)) {
    // A bare word ("To: nodomain") is a local part without a domain, not a display name.
    return { name: null, adl: null, mailbox: m.name, host: '' };
  }
  let adl: string | null = null;
  // RFC 5322 §4.4 obs-route: "@a,@b:user@host" — the route goes to the ENVELOPE adl field.
  if (address.startsWith('@')) {
    const colon = address.indexOf(':');
    if (colon > 0) {
      adl = address.slice(0, colon);
      address = address.slice(colon + 1);
    }
  }
  const at = address.lastIndexOf('@');
  // A mailbox without a domain keeps host "" rather than NIL: NIL host means a group marker
  // (RFC 9051 §7.5.2), which would corrupt the list for the client.
  return {
    name: m.name === '' ? null : m.name,
    adl,
    mailbox: at < 0 ? address : address.slice(0, at),
    host: at < 0 ? '' : address.slice(at + 1),
  };
}

/**
 * An address list as IMAP ENVELOPE wants it (RFC 9051 §7.5.2): a group opens with
 * {mailbox: name, host: null} and closes with an all-null address. Names keep their encoded
 * words, as in the header. Returns [] when nothing parses.
 */
export function parseAddressList(value: string): EnvelopeAddress[] {
  const out: EnvelopeAddress[] = [];
  for (const e of entries(value)) {
    if (e.kind === 'mailbox') out.push(toEnvelope(e.mailbox));
    else {
      out.push({ name: null, adl: null, mailbox: e.name, host: null });
      for (const m of e.members) out.push(toEnvelope(m));
      out.push({ name: null, adl: null, mailbox: null, host: null });
    }
  }
  return out;
}

/** The mailboxes of an address list, group members flattened, display names RFC 2047 decoded. */
export function decodeAddressList(value: string, decoder: CharsetDecoder = createCharsetDecoder()): DecodedAddress[] {
  const out: DecodedAddress[] = [];
  const add = (m: Mailbox0): void => {
    out.push({ name: decodeEncodedWords(m.name, decoder).trim(), address: m.address.trim() });
  };
  for (const e of entries(value)) {
    if (e.kind === 'mailbox') add(e.mailbox);
    else for (const m of e.members) add(m);
  }
  return out;
}

export interface Mailbox {
  /** As written (RFC 5321 §2.4: the local part is case-sensitive), unquoted when it is a dot-atom. */
  localPart: string;
  /** Lowercased, without a trailing dot, IDNA A-labels; or an address literal "[...]". */
  domain: string;
  /** localPart@domain */
  address: string;
}

// RFC 5322 §3.2.3 atext, plus any non-ASCII character (RFC 6531 §3.3 SMTPUTF8 local parts).
const DOT_ATOM = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\uffff-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\uffff-]+)*$/;
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * Parses and normalises one mailbox for SMTP ("Local@Domain." -> local part kept, domain
 * "domain"). Accepts angle brackets and ignores an RFC 5321 §4.1.2 source route (§C says it
 * SHOULD be ignored). Returns null when it is not a mailbox.
 */
export function parseMailbox(input: string): Mailbox | null {
  let s = input.trim();
  if (s.startsWith('<') && s.endsWith('>')) s = s.slice(1, -1).trim();
  if (s.startsWith('@')) {
    const colon = s.indexOf(':');
    if (colon < 0) return null;
    s = s.slice(colon + 1);
  }
  const at = s.lastIndexOf('@');
  if (at <= 0 || at === s.length - 1) return null;
  let local = s.slice(0, at);
  let domain = s.slice(at + 1);

  if (local.startsWith('"')) {
    // RFC 5321 §4.1.2 Quoted-string: qtextSMTP or quoted pairs.
    if (local.length < 2 || !local.endsWith('"')) return null;
    let inner = '';
    for (let i = 1; i < local.length - 1; i++) {
      const c = local[i]!;
      if (c === '\\') {
        const n = local[i + 1];
        if (n === undefined || i + 1 >= local.length - 1) return null;
        inner += n;
        i++;
      } else if (c === '"') return null;
      else inner += c;
    }
    if (/[\x00-\x1f\x7f]/.test(inner)) return null;
    // A quoted local part that needs no quotes is the same mailbox as its dot-atom (§4.1.2).
    local = DOT_ATOM.test(inner) ? inner : '"' + inner.replace(/(["\\])/g, '\\$1') + '"';
  } else if (!DOT_ATOM.test(local)) return null;
  if (Buffer.byteLength(local) > 64) return null; // RFC 5321 §4.5.3.1.1

  if (domain.startsWith('[')) {
    // RFC 5321 §4.1.3 address literal.
    if (!domain.endsWith(']') || domain.length < 3) return null;
  } else {
    if (domain.endsWith('.')) domain = domain.slice(0, -1); // the root label, same domain
    const ascii = /^[\x21-\x7e]*$/.test(domain) ? domain.toLowerCase() : domainToASCII(domain).toLowerCase();
    if (ascii === '' || ascii.length > 253) return null; // RFC 5321 §4.5.3.1.2
    for (const label of ascii.split('.')) if (!LABEL.test(label)) return null;
    domain = ascii;
  }
  return { localPart: local, domain, address: `${local}@${domain}` };
}
