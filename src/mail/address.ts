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
import { decodeEncodedWords } from './headers.js';

/** An address header longer than this is cut before parsing: it bounds the tokenizer's work and
 * memory for a hostile header (a real one with thousands of recipients stays well below). */
export const MAX_ADDRESS_HEADER = 256 * 1024;

interface Mailbox0 {
  name: string;
  address: string;
}
type Entry = { kind: 'mailbox'; mailbox: Mailbox0 } | { kind: 'group'; name: string; members: Mailbox0[] };

function entries(value: string): Entry[] {
  const input = value.length > MAX_ADDRESS_HEADER ? value.slice(0, MAX_ADDRESS_HEADER) : value;
  let list: addressparser.AddressOrGroup[];
  try {
    list = addressparser(input);
  } catch {
    return [];
  }
  const out: Entry[] = [];
  for (const item of list) {
    if ('group' in item && Array.isArray(item.group)) {
      // Nested groups are not RFC 5322 syntax; their members join the outer group.
      const members: Mailbox0[] = [];
      const flatten = (xs: addressparser.AddressOrGroup[]): void => {
        for (const x of xs) {
          if ('group' in x && Array.isArray(x.group)) flatten(x.group);
          else if ('address' in x) members.push({ name: x.name ?? '', address: x.address ?? '' });
        }
      };
      flatten(item.group);
      out.push({ kind: 'group', name: item.name ?? '', members });
    } else if ('address' in item) {
      const m = { name: item.name ?? '', address: item.address ?? '' };
      if (m.name === '' && m.address === '') continue;
      out.push({ kind: 'mailbox', mailbox: m });
    }
  }
  return out;
}

function toEnvelope(m: Mailbox0): EnvelopeAddress {
  let address = m.address.trim();
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
