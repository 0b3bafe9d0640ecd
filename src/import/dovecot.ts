/**
 * Readers for the files Dovecot keeps next to a Maildir: `dovecot-uidlist` (IMAP UIDs, the
 * UIDVALIDITY, recorded POP3 UIDLs) and `dovecot-keywords` (the keyword behind each maildir
 * flag letter a..z), and the POP3 UIDL Dovecot derives from `pop3_uidl_format`.
 *
 * Pure functions over text: no file system access, so each rule is a table test.
 */
import { decodeMutf7, encodeMutf7 } from '../imap/protocol/mutf7.js';

/** One line of dovecot-uidlist: the message whose file name starts with `base` has `uid`. */
export interface UidlistEntry {
  uid: number;
  /** The file name up to the maildir info (":2,FLAGS"), as Dovecot records it. */
  base: string;
  /** The POP3 UIDL Dovecot recorded for it (extension field P), when any. */
  pop3Uidl?: string;
  /** The message's GUID (extension field G), when any: `%g` in pop3_uidl_format. */
  guid?: string;
}

export interface Uidlist {
  version: number;
  uidValidity: number;
  nextUid: number;
  /** Mailbox GUID (header field G, version 3), when any. */
  guid?: string;
  /** In file order, which Dovecot keeps ascending by UID. */
  entries: UidlistEntry[];
}

export class DovecotFormatError extends Error {}

const MAX_UID = 0xffff_ffff;

function uint32(s: string, what: string): number {
  if (!/^\d{1,10}$/.test(s)) throw new DovecotFormatError(`Cannot parse dovecot-uidlist: ${what} "${s}" is not a number`);
  const n = Number(s);
  if (n > MAX_UID) throw new DovecotFormatError(`Cannot parse dovecot-uidlist: ${what} ${n} is over 2^32-1`);
  return n;
}

/**
 * Parses a dovecot-uidlist file. Version 3: header `3 V<uidvalidity> N<nextuid> [G<guid>] ...`,
 * lines `<uid> [<key><value> ...] :<filename base>`. Version 1: header `1 <uidvalidity> <nextuid>`,
 * lines `<uid> <filename>`. Lines with a UID not above the previous one are refused: Dovecot never
 * writes them, and keeping them would break "UIDs ascend" (RFC 9051 §2.3.1.1).
 */
export function parseUidlist(text: string): Uidlist {
  const header = parseUidlistHeader(text);
  const entries = [...uidlistEntries(text, header)];
  const last = entries[entries.length - 1]?.uid ?? 0;
  const { bodyStart: _, ...rest } = header;
  return { ...rest, nextUid: Math.max(header.nextUid, last + 1), entries };
}

export interface UidlistHeader extends Omit<Uidlist, 'entries'> {
  /** Offset of the first entry line in the text. */
  bodyStart: number;
}

/** The header line of a dovecot-uidlist (see parseUidlist). */
export function parseUidlistHeader(text: string): UidlistHeader {
  const nl = text.indexOf('\n');
  const header = (nl < 0 ? text : text.slice(0, nl)).replace(/\r$/, '');
  const fields = header.split(' ').filter((f) => f !== '');
  const version = Number(fields[0]);
  let uidValidity = 0;
  let nextUid = 1;
  let guid: string | undefined;
  if (version === 1) {
    if (fields.length < 3) throw new DovecotFormatError(`Cannot parse dovecot-uidlist: version 1 header "${header}" needs UIDVALIDITY and next UID`);
    uidValidity = uint32(fields[1]!, 'UIDVALIDITY');
    nextUid = uint32(fields[2]!, 'next UID');
  } else if (version === 3) {
    for (const f of fields.slice(1)) {
      const key = f[0];
      const value = f.slice(1);
      if (key === 'V') uidValidity = uint32(value, 'UIDVALIDITY');
      else if (key === 'N') nextUid = uint32(value, 'next UID');
      else if (key === 'G') guid = value;
    }
  } else {
    throw new DovecotFormatError(`Cannot parse dovecot-uidlist: version "${fields[0] ?? ''}" is not 1 or 3`);
  }
  if (uidValidity === 0) throw new DovecotFormatError('Cannot parse dovecot-uidlist: no UIDVALIDITY in the header');
  return { version, uidValidity, nextUid, ...(guid === undefined ? {} : { guid }), bodyStart: nl < 0 ? text.length : nl + 1 };
}

/**
 * The entries of a dovecot-uidlist, parsed one line at a time (a 200,000-message folder is not
 * turned into 200,000 objects at once).
 */
export function* uidlistEntries(text: string, header: UidlistHeader): Generator<UidlistEntry> {
  const parse = uidlistLineParser(header);
  for (let pos = header.bodyStart; pos < text.length; ) {
    const nl = text.indexOf('\n', pos);
    const end = nl < 0 ? text.length : nl;
    const entry = parse(text.slice(pos, end));
    pos = end + 1;
    if (entry !== null) yield entry;
  }
}

/**
 * A parser of the entry lines that follow the header, fed one line at a time (without its "\n")
 * in file order: the entry, or null for an empty line. Throws DovecotFormatError on a bad line.
 * Reading the file as a stream of lines, nothing but the current line is held.
 */
export function uidlistLineParser(header: Pick<UidlistHeader, 'version'>): (line: string) => UidlistEntry | null {
  let last = 0;
  let lineNo = 1;
  return (raw) => {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    lineNo++;
    if (line === '') return null;
    const sp = line.indexOf(' ');
    if (sp < 0) throw new DovecotFormatError(`Cannot parse dovecot-uidlist line ${lineNo}: no file name`);
    const uid = uint32(line.slice(0, sp), `line ${lineNo} UID`);
    if (uid === 0 || uid <= last) throw new DovecotFormatError(`Cannot parse dovecot-uidlist line ${lineNo}: UID ${uid} is not above the previous ${last}`);
    last = uid;
    const rest = line.slice(sp + 1);
    const entry: UidlistEntry = { uid, base: '' };
    if (header.version === 3) {
      // The file name follows the first " :" or a leading ":"; extension fields come before it.
      const colon = rest.startsWith(':') ? 0 : rest.indexOf(' :') + 1;
      if (colon <= 0 && !rest.startsWith(':')) throw new DovecotFormatError(`Cannot parse dovecot-uidlist line ${lineNo}: no ":" before the file name`);
      entry.base = rest.slice(colon + 1);
      for (const ext of rest.slice(0, colon).split(' ')) {
        if (ext === '') continue;
        if (ext[0] === 'P') entry.pop3Uidl = ext.slice(1);
        else if (ext[0] === 'G') entry.guid = ext.slice(1);
      }
    } else {
      entry.base = rest;
    }
    // Some Dovecot versions keep the flags part in the recorded name; the match is on the base.
    entry.base = maildirBase(entry.base);
    if (entry.base === '') throw new DovecotFormatError(`Cannot parse dovecot-uidlist line ${lineNo}: empty file name`);
    return entry;
  };
}

/**
 * One level of a mailbox name as a Maildir++ folder name holds it (levels are joined with '.'):
 * modified UTF-7 as Dovecot writes names (RFC 3501 §5.1.3), then '%' and '.' written %25 and
 * %2E so that a '.' inside a level is not taken for the separator.
 */
export function encodeMaildirLevel(level: string): string {
  return encodeMutf7(level).replace(/%/g, '%25').replace(/\./g, '%2E');
}

/**
 * The mailbox name level of a Maildir++ folder name level (encodeMaildirLevel undone). Only %25
 * and %2E are escapes (any case); another '%' stays as it is. Modified UTF-7 is decoded when the
 * level has a '&' (a name without one, 8-bit names of other programs included, is kept as is).
 */
export function decodeMaildirLevel(part: string): string {
  const unescaped = part.replace(/%(25|2E)/gi, (_, hex: string) => (hex === '25' ? '%' : '.'));
  return unescaped.includes('&') ? decodeMutf7(unescaped) : unescaped;
}

/** The part of a maildir file name before the info (":2,FLAGS"; Dovecot's maildir_info_sep ':'). */
export function maildirBase(name: string): string {
  const colon = name.indexOf(':');
  return colon < 0 ? name : name.slice(0, colon);
}

/**
 * dovecot-keywords: lines `<index> <keyword>`, index 0 for flag letter 'a' up to 25 for 'z'.
 * Returns the 26 slots (undefined where none is defined). Bad lines are skipped, like Dovecot does.
 */
export function parseKeywords(text: string): Array<string | undefined> {
  const slots: Array<string | undefined> = new Array<string | undefined>(26).fill(undefined);
  for (const raw of text.split('\n')) {
    const m = /^(\d{1,2}) (\S+)\r?$/.exec(raw);
    if (!m) continue;
    const idx = Number(m[1]);
    if (idx < 26) slots[idx] = m[2]!;
  }
  return slots;
}

/** What a Maildir file name's info says: system flags and keyword letters (RFC 9051 §2.3.2). */
export interface MaildirFlags {
  flags: string[];
  /** Letters a..z with no keyword in dovecot-keywords. */
  unknownLetters: string[];
}

/**
 * Flags of a maildir file name (`base:2,<letters>`, letters in ASCII order): P passed (no IMAP
 * flag), R replied -> \Answered, S seen -> \Seen, T trashed -> \Deleted, D draft -> \Draft,
 * F flagged -> \Flagged; a..z are keywords from dovecot-keywords. Files in new/ have no info.
 */
export function maildirFlags(name: string, keywords: ReadonlyArray<string | undefined>): MaildirFlags {
  const flags: string[] = [];
  const unknownLetters: string[] = [];
  const info = name.lastIndexOf(':2,');
  if (info < 0) return { flags, unknownLetters };
  for (const c of name.slice(info + 3)) {
    switch (c) {
      case 'R': flags.push('\\Answered'); break;
      case 'S': flags.push('\\Seen'); break;
      case 'T': flags.push('\\Deleted'); break;
      case 'D': flags.push('\\Draft'); break;
      case 'F': flags.push('\\Flagged'); break;
      default:
        if (c >= 'a' && c <= 'z') {
          const kw = keywords[c.charCodeAt(0) - 97];
          if (kw === undefined) unknownLetters.push(c);
          else if (!flags.includes(kw)) flags.push(kw);
        }
    }
  }
  return { flags, unknownLetters };
}

export interface UidlVariables {
  uid: number;
  uidValidity: number;
  /** Mailbox-relative file name (Maildir base), for %f. */
  filename?: string;
  /** Message GUID, for %g. */
  guid?: string;
}

/**
 * The POP3 UIDL Dovecot sends for a message, from its pop3_uidl_format (default `%08Xu%08Xv`:
 * UID then UIDVALIDITY, each as 8 lower-case hex digits). Supported variables: %u (UID),
 * %v (UIDVALIDITY), %f (file name), %g (GUID), with an optional zero-padded width and X/x for
 * hex; %% is a percent sign. Anything else (%m needs Dovecot's header MD5) is refused, so that
 * the import never keeps UIDLs that differ from the old server's.
 */
export function formatPop3Uidl(format: string, v: UidlVariables): string {
  let out = '';
  for (let i = 0; i < format.length; i++) {
    const c = format[i]!;
    if (c !== '%') {
      out += c;
      continue;
    }
    const m = /^(0?)(\d*)([Xx]?)([uvfg%])/.exec(format.slice(i + 1));
    if (!m) throw new DovecotFormatError(`Unsupported pop3_uidl_format variable at "${format.slice(i)}": only %u, %v, %f, %g`);
    i += m[0].length;
    const [, zero, width, hex, name] = m;
    if (name === '%') {
      out += '%';
      continue;
    }
    let value: string;
    if (name === 'u' || name === 'v') {
      const n = name === 'u' ? v.uid : v.uidValidity;
      // Dovecot's var_expand writes hex in lower case for both %X and %x (seen on 2.3: UIDL
      // "000000016b0983f4" for %08Xu%08Xv).
      value = hex !== '' ? n.toString(16) : String(n);
    } else {
      const s = name === 'f' ? v.filename : v.guid;
      if (s === undefined) throw new DovecotFormatError(`pop3_uidl_format uses %${name} but the message has no ${name === 'f' ? 'file name' : 'GUID'}`);
      value = s;
    }
    if (width !== '') value = value.padStart(Number(width), zero === '0' ? '0' : ' ');
    out += value;
  }
  return out;
}
