/**
 * Header fields over raw bytes (RFC 5322 §2.2, §3.6): splitting into fields with byte ranges,
 * unfolding, BODY[HEADER.FIELDS (..)] filtering (RFC 9051 §6.4.5), and RFC 2047 decoding.
 *
 * Invariants: never throws; work is linear in the header size; offsets are byte offsets into the
 * buffer given; LF and CRLF both end a line, and the bytes are never rewritten. A header of more
 * than MAX_HEADER_FIELDS fields keeps the rest as one unnamed block (found by no name, kept in
 * HEADER and HEADER.FIELDS.NOT); RFC 2047 decoding reads at most MAX_DECODED_VALUE characters of
 * a value. Both are far past real mail (a long Received chain is a hundred fields) and stop a
 * message of millions of fields or encoded words from costing seconds of parsing at every ingest.
 */
import { isUtf8 } from 'node:buffer';
import { createCharsetDecoder, decodeUndeclared, type CharsetDecoder } from './charset.js';
import { decodeBase64Lenient } from './transfer.js';

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HT = 0x09;
const COLON = 0x3a;

/** Fields a header is split into (see the invariants). */
export const MAX_HEADER_FIELDS = 10_000;
/** Characters of a header value that RFC 2047 decoding reads (see the invariants). */
export const MAX_DECODED_VALUE = 1024 * 1024;

export interface HeaderField {
  /** Field name, lowercased ('' for a line that is not a field, kept so nothing is lost). */
  name: string;
  /** Offset of the field's first byte. */
  start: number;
  /** Offset just past the field's last line end (continuation lines included). */
  end: number;
  /** Offset just past the colon (equal to start for a line that is not a field). */
  valueStart: number;
}

export interface HeaderScan {
  fields: HeaderField[];
  /** Offset of the blank line ending the header, or the header's end when there is none. */
  headerEnd: number;
  /** Offset of the first body byte: after the blank line, or `end` when the header runs out. */
  bodyStart: number;
  /** True when the first line is not a header field: there is no header, the body starts at once. */
  noHeader: boolean;
  /** Number of lines in the header that are not fields nor continuations. */
  malformed: number;
  /** True when some header byte is not 7-bit (RFC 5322 allows none; RFC 6532 allows UTF-8). */
  eightBit: boolean;
}

/** RFC 5322 §3.6.8 ftext is printable US-ASCII except ":"; obsolete syntax allows WSP before ":". */
function fieldNameEnd(buf: Buffer, start: number, lineEnd: number): number {
  let i = start;
  while (i < lineEnd) {
    const c = buf[i]!;
    if (c === COLON || c <= SP || c >= 0x7f) break;
    i++;
  }
  if (i === start) return -1;
  let j = i;
  while (j < lineEnd && (buf[j] === SP || buf[j] === HT)) j++; // RFC 5322 §4.5.3 obs-optional
  return j < lineEnd && buf[j] === COLON ? i : -1;
}

/**
 * Scans the header that starts at `start`, up to `end` at most. The header ends at the first empty
 * line (RFC 5322 §2.1); when there is none, it runs to `end` and the body is empty. When the very
 * first line is not a field, there is no header at all and the body starts at `start`.
 */
export function scanHeader(buf: Buffer, start = 0, end = buf.length): HeaderScan {
  const view = end < buf.length ? buf.subarray(0, end) : buf;
  const fields: HeaderField[] = [];
  let current: HeaderField | null = null;
  let malformed = 0;
  let eightBit = false;
  let pos = start;
  while (pos < end) {
    const nl = view.indexOf(LF, pos);
    const lineEnd = nl < 0 ? end : nl > pos && buf[nl - 1] === CR ? nl - 1 : nl;
    const next = nl < 0 ? end : nl + 1;
    if (lineEnd === pos) {
      // The empty line separating header and body (RFC 5322 §2.1).
      return { fields, headerEnd: pos, bodyStart: next, noHeader: false, malformed, eightBit };
    }
    if (!eightBit) {
      for (let i = pos; i < lineEnd; i++) {
        if (buf[i]! >= 0x80) {
          eightBit = true;
          break;
        }
      }
    }
    const first = buf[pos]!;
    if ((first === SP || first === HT) && current !== null) {
      current.end = next; // RFC 5322 §2.2.3 folding: a continuation line
    } else if (fields.length >= MAX_HEADER_FIELDS) {
      // Past the bound: one unnamed block to the header's end.
      if (current!.name !== '') {
        current = { name: '', start: pos, end: next, valueStart: pos };
        fields.push(current);
      } else {
        current!.end = next;
      }
    } else {
      const nameEnd = first === SP || first === HT ? -1 : fieldNameEnd(buf, pos, lineEnd);
      if (nameEnd >= 0) {
        const colon = view.indexOf(COLON, nameEnd);
        current = {
          name: buf.toString('latin1', pos, nameEnd).toLowerCase(),
          start: pos,
          end: next,
          valueStart: colon + 1,
        };
        fields.push(current);
      } else if (fields.length === 0 && current === null) {
        // Not a header line on the first line: the part has no header (a body with no header).
        return { fields, headerEnd: start, bodyStart: start, noHeader: true, malformed, eightBit: false };
      } else {
        malformed++;
        current = { name: '', start: pos, end: next, valueStart: pos };
        fields.push(current);
      }
    }
    pos = next;
  }
  return { fields, headerEnd: end, bodyStart: end, noHeader: false, malformed, eightBit };
}

/**
 * The fields of a header block with their byte ranges, continuation lines and line end included.
 * Names are lowercased. Stops at the blank line ending the header, if any.
 */
export function splitHeaderFields(header: Buffer): Array<{ name: string; start: number; end: number }> {
  return scanHeader(header).fields.map((f) => ({ name: f.name, start: f.start, end: f.end }));
}

/**
 * BODY[HEADER.FIELDS (names)] and BODY[HEADER.FIELDS.NOT (names)] (RFC 9051 §6.4.5): the matching
 * fields as they are, in order, then the blank line that ends a header ("the result includes the
 * blank line"). Names compare case-insensitively. A last field with no line end gets CRLF so the
 * result stays a well-formed header.
 */
export function filterHeaderFields(header: Buffer, names: string[], not: boolean): Buffer {
  const wanted = new Set(names.map((n) => n.toLowerCase()));
  const scan = scanHeader(header);
  const chunks: Buffer[] = [];
  for (const f of scan.fields) {
    const match = f.name !== '' && wanted.has(f.name);
    if (match === not) continue;
    chunks.push(header.subarray(f.start, f.end));
    if (f.end === f.start || header[f.end - 1] !== LF) chunks.push(Buffer.from('\r\n'));
  }
  // The header's own blank line when there is one (keeping its line ending), else CRLF.
  const blank = scan.bodyStart > scan.headerEnd ? header.subarray(scan.headerEnd, scan.bodyStart) : null;
  chunks.push(blank !== null && blank.length > 0 ? blank : Buffer.from('\r\n'));
  return Buffer.concat(chunks);
}

/** Text of raw header bytes: UTF-8 when valid (RFC 6532), else Latin-1 (every byte kept). */
export function headerBytesToString(buf: Buffer, start: number, end: number): string {
  if (end <= start) return '';
  const slice = buf.subarray(start, end);
  for (let i = 0; i < slice.length; i++) {
    if (slice[i]! >= 0x80) return isUtf8(slice) ? slice.toString('utf8') : slice.toString('latin1');
  }
  return slice.toString('latin1');
}

function isWsp(c: number): boolean {
  return c === SP || c === HT || c === CR || c === LF;
}

/** Removes SP, HT, CR and LF at both ends. A loop, not a regular expression: /\s+$/ costs time
 * quadratic in the length of an inner run of whitespace. */
export function trimWsp(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && isWsp(s.charCodeAt(a))) a++;
  while (b > a && isWsp(s.charCodeAt(b - 1))) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
}

/** Removes RFC 5322 §3.2.2 comments (nested, with quoted pairs) outside quoted strings; each is
 * replaced by a space. An unclosed comment runs to the end. Linear time. */
export function stripComments(s: string): string {
  if (!s.includes('(')) return s;
  let out = '';
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (depth === 0 && quoted) {
      out += c;
      if (c === '\\' && i + 1 < s.length) out += s[++i];
      else if (c === '"') quoted = false;
      continue;
    }
    if (depth > 0 && c === '\\') {
      i++;
      continue;
    }
    if (c === '(') depth++;
    else if (c === ')' && depth > 0) {
      depth--;
      if (depth === 0) out += ' ';
    } else if (depth === 0) {
      if (c === '"') quoted = true;
      out += c;
    }
  }
  return out;
}

/** RFC 5322 §2.2.3 unfolding: a line end followed by whitespace is removed. */
export function unfold(value: string): string {
  return value.replace(/\r?\n(?=[ \t])/g, '').replace(/\r?\n$/, '');
}

/** The value of a field: after the colon, unfolded, surrounding whitespace and line end removed. */
export function fieldValue(buf: Buffer, field: HeaderField): string {
  return trimWsp(unfold(headerBytesToString(buf, field.valueStart, field.end)));
}

/** Unfolded raw value of the first field named `name`, or null. */
export function getHeaderValue(header: Buffer, name: string): string | null {
  const lower = name.toLowerCase();
  const scan = scanHeader(header);
  for (const f of scan.fields) if (f.name === lower) return fieldValue(header, f);
  return null;
}

/** Unfolded raw values of every field named `name`, in order. */
export function getHeaderValues(header: Buffer, name: string): string[] {
  const lower = name.toLowerCase();
  return scanHeader(header)
    .fields.filter((f) => f.name === lower)
    .map((f) => fieldValue(header, f));
}

/** Decoded value of the first field named `name` (RFC 2047 encoded words decoded), or null. */
export function getDecodedHeaderValue(header: Buffer, name: string): string | null {
  const v = getHeaderValue(header, name);
  return v === null ? null : decodeEncodedWords(v);
}

// RFC 2047 §2: =?charset?encoding?encoded-text?=, charset may carry an RFC 2231 §5 language.
const ENCODED_WORD = /=\?([^?\s]{1,80})\?([bBqQ])\?([^?\s]*)\?=/g;
const ONLY_SPACE = /^[ \t\r\n]*$/;

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

function decodeQ(text: string): Buffer {
  // RFC 2047 §4.2: "_" is a space, "=XX" a byte. A raw non-ASCII character (8-bit header text
  // read as UTF-8 or Latin-1) is kept as its UTF-8 bytes.
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5f) out.push(SP);
    else if (c === 0x3d && i + 2 < text.length && isHex(text.charCodeAt(i + 1)) && isHex(text.charCodeAt(i + 2))) {
      out.push(parseInt(text.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (c < 0x80) out.push(c);
    else for (const b of Buffer.from(text[i]!, 'utf8')) out.push(b);
  }
  return Buffer.from(out);
}

/**
 * Decodes RFC 2047 encoded words in a header value. Whitespace between adjacent encoded words is
 * dropped (RFC 2047 §6.2), and adjacent words in one charset are decoded together so a character
 * split across two words survives. Text outside encoded words is kept; raw 8-bit text has been
 * turned into characters already (see headerBytesToString). Unknown charsets fall back (see
 * charset.ts) and are added to `decoder.unknown`.
 */
export function decodeEncodedWords(whole: string, decoder: CharsetDecoder = createCharsetDecoder()): string {
  const value = whole.length > MAX_DECODED_VALUE ? whole.slice(0, MAX_DECODED_VALUE) : whole;
  if (!value.includes('=?')) return value;
  let out = '';
  let last = 0;
  let prevWord = false;
  let pendingCharset: string | null = null;
  let pending: Buffer[] = [];
  const flush = (): void => {
    if (pendingCharset !== null) out += decoder.decode(Buffer.concat(pending), pendingCharset);
    pendingCharset = null;
    pending = [];
  };
  for (const m of value.matchAll(ENCODED_WORD)) {
    const gap = value.slice(last, m.index);
    if (!(prevWord && ONLY_SPACE.test(gap))) {
      flush();
      out += gap;
    }
    const charset = m[1]!.split('*')[0]!.toLowerCase();
    const text = m[3]!;
    const bytes = m[2] === 'b' || m[2] === 'B' ? decodeBase64Lenient(Buffer.from(text, 'latin1')) : decodeQ(text);
    if (pendingCharset !== charset) flush();
    pendingCharset = charset;
    pending.push(bytes);
    prevWord = true;
    last = m.index + m[0].length;
  }
  flush();
  out += value.slice(last);
  return out;
}

export { decodeUndeclared };
