/**
 * Ingest parsing: raw message bytes in, ParsedMessage out (see types.ts). Runs once per message,
 * when it is stored; everything later (ENVELOPE, BODYSTRUCTURE, BODY[1.2], SEARCH, PREVIEW,
 * THREAD) reads the record and byte ranges of the raw message.
 *
 * Invariants:
 * - Never throws, whatever the bytes: malformed mail is stored and described as well as it can be,
 *   with what was wrong in `warnings`.
 * - The raw message is never converted to a string as a whole; the MIME walk works on byte
 *   offsets, and every offset is absolute and within [0, size]. A part's range lies within its
 *   parent's body range; siblings are ordered and do not overlap.
 * - LF and CRLF both end a line; offsets stay byte-exact either way.
 * - Bounded work: nesting depth <= MAX_DEPTH, parts <= MAX_PARTS (beyond, the rest is one opaque
 *   part), boundaries found with Buffer.indexOf, attachments never decoded; only text parts are
 *   decoded, and only up to MAX_TEXT characters in all.
 * - A multipart always has at least one child (a body-only text/plain part stands in when no
 *   boundary is found), so BODYSTRUCTURE can always be rendered.
 */
import libmime from 'libmime';
import type { DecodedAddress, Envelope, MimePart, ParsedMessage, Params } from './types.js';
import { decodeEncodedWords, fieldValue, scanHeader, stripComments } from './headers.js';
import { createCharsetDecoder, type CharsetDecoder } from './charset.js';
import { decodeAddressList, parseAddressList } from './address.js';
import { parseDate } from './date.js';
import { classifyTransferEncoding, decodeKnown } from './transfer.js';
import { htmlToText } from './html-text.js';
import { parseStructuredHeader } from './params.js';

/** Deeper parts are opaque leaves: stops stack exhaustion and quadratic rescans by nesting bombs. */
export const MAX_DEPTH = 64;
/** Parts beyond this are not split: bounds the record's size for a message of tiny parts. */
export const MAX_PARTS = 10_000;
/** Characters of search text kept per message (all text parts together). */
export const MAX_TEXT = 1024 * 1024;
/** RFC 8970 §3.1: a preview is at most 256 characters. */
export const PREVIEW_LENGTH = 256;
/** Distinct warnings kept per message. */
export const MAX_WARNINGS = 100;
/** Structured MIME header values (Content-Type, Content-Disposition) are cut to this length
 * before parameter parsing; no legitimate one comes close. */
export const MAX_STRUCTURED_HEADER = 64 * 1024;

const LF = 0x0a;
const CR = 0x0d;
const SP = 0x20;
const HT = 0x09;
const DASH = 0x2d;

/** Header fields the record needs, for a part or an (encapsulated) message. */
const WANTED: ReadonlySet<string> = new Set([
  'content-type', 'content-transfer-encoding', 'content-id', 'content-description', 'content-md5',
  'content-disposition', 'content-language', 'content-location', 'date', 'subject', 'from',
  'sender', 'reply-to', 'to', 'cc', 'bcc', 'in-reply-to', 'message-id', 'references',
]);

const TOKEN_TYPE = /^([!#$%&'*+.^_`|~0-9a-z-]+)\/([!#$%&'*+.^_`|~0-9a-z-]+)$/;

interface Ctx {
  raw: Buffer;
  warnings: string[];
  warned: Set<string>;
  parts: number;
  decoder: CharsetDecoder;
}

type Headers = Map<string, string>;

/** Strings of the record are stored by every backend (PostgreSQL text and jsonb refuse NUL) and
 * sent to IMAP clients (RFC 9051 §4.3: no NUL in a string): NUL becomes U+FFFD. */
function clean(s: string): string {
  return s.includes('\0') ? s.replace(/\0/g, '\ufffd') : s;
}

/** Cuts a string to at most `n` UTF-16 units without leaving half a surrogate pair. */
function cut(s: string, n: number): string {
  if (s.length <= n) return s;
  const c = s.charCodeAt(n - 1);
  return s.slice(0, c >= 0xd800 && c <= 0xdbff ? n - 1 : n);
}

function warn(ctx: Ctx, message: string): void {
  if (ctx.warned.has(message) || ctx.warnings.length >= MAX_WARNINGS) return;
  ctx.warned.add(message);
  ctx.warnings.push(message);
}

function parseStructured(ctx: Ctx, value: string): { value: string; params: Params } {
  const input = value.length > MAX_STRUCTURED_HEADER ? value.slice(0, MAX_STRUCTURED_HEADER) : value;
  const parsed = parseStructuredHeader(input, ctx.decoder);
  // RFC 2231 %00 would put a NUL in a value (see clean()).
  return { value: parsed.value, params: parsed.params.map(([k, v]) => [clean(k), clean(v)]) };
}

function param(params: Params, name: string): string | null {
  for (const [k, v] of params) if (k === name) return v;
  return null;
}

function countLines(raw: Buffer, start: number, end: number): number {
  if (end <= start) return 0;
  const view = raw.subarray(0, end);
  let n = 0;
  let p = view.indexOf(LF, start);
  while (p >= 0) {
    n++;
    p = view.indexOf(LF, p + 1);
  }
  // A last line without a line end (the CRLF before a boundary belongs to the boundary) counts.
  return raw[end - 1] === LF ? n : n + 1;
}

const DEFAULT_TEXT_PARAMS = (): Params => [['charset', 'us-ascii']];

function leaf(headerStart: number, bodyStart: number, bodyEnd: number): MimePart {
  return {
    headerStart,
    bodyStart,
    bodyEnd,
    type: 'text',
    subtype: 'plain',
    params: DEFAULT_TEXT_PARAMS(),
    id: null,
    description: null,
    encoding: null,
    md5: null,
    disposition: null,
    language: null,
    location: null,
    lines: 0,
    parts: [],
    message: null,
  };
}

/** A header-less text/plain part covering [start, end): stands in for the children of a
 * multipart that has none we can find (RFC 2045 §5.2 default type). */
function syntheticChild(ctx: Ctx, start: number, end: number): MimePart {
  ctx.parts++;
  const p = leaf(start, start, end);
  p.lines = countLines(ctx.raw, start, end);
  return p;
}

function parsePart(ctx: Ctx, start: number, end: number, depth: number, inDigest: boolean, opaque: boolean): { part: MimePart; headers: Headers; noHeader: boolean } {
  const raw = ctx.raw;
  ctx.parts++;
  const scan = scanHeader(raw, start, end);
  if (scan.malformed > 0) warn(ctx, 'malformed header line');
  if (scan.eightBit) warn(ctx, '8-bit header');
  const headers: Headers = new Map();
  for (const f of scan.fields) {
    if (f.name !== '' && WANTED.has(f.name) && !headers.has(f.name)) headers.set(f.name, clean(fieldValue(raw, f)));
  }

  const part = leaf(start, scan.bodyStart, end);

  const ct = headers.get('content-type');
  if (ct === undefined) {
    // RFC 2046 §5.1.5: in a multipart/digest the default type is message/rfc822.
    if (inDigest) {
      part.type = 'message';
      part.subtype = 'rfc822';
      part.params = [];
    }
  } else {
    const parsed = parseStructured(ctx, ct);
    const m = TOKEN_TYPE.exec(parsed.value.toLowerCase());
    if (m !== null) {
      part.type = m[1]!;
      part.subtype = m[2]!;
      part.params = parsed.params;
    } else {
      // RFC 2045 §5.2: an invalid Content-Type means the default, text/plain; charset=us-ascii.
      warn(ctx, 'invalid content type');
    }
  }

  const cte = headers.get('content-transfer-encoding');
  if (cte !== undefined) {
    const token = stripComments(cte).trim();
    part.encoding = token === '' ? null : token;
  }
  part.id = headers.get('content-id') ?? null;
  part.description = headers.get('content-description') ?? null;
  part.md5 = headers.get('content-md5') ?? null;
  part.location = headers.get('content-location') ?? null;
  const lang = headers.get('content-language');
  if (lang !== undefined) {
    // RFC 3282 §2: a comma-separated list of language tags.
    const tags = stripComments(lang)
      .split(',')
      .map((t) => t.trim())
      .filter((t) => t !== '');
    part.language = tags.length > 0 ? tags : null;
  }
  const cd = headers.get('content-disposition');
  if (cd !== undefined) {
    const parsed = parseStructured(ctx, cd);
    if (parsed.value !== '') part.disposition = { type: parsed.value.toLowerCase(), params: parsed.params };
  }

  if (part.type === 'multipart') {
    const boundary = param(part.params, 'boundary');
    if (opaque || depth >= MAX_DEPTH) {
      warn(ctx, opaque ? 'too many parts' : 'nesting too deep');
      part.parts.push(syntheticChild(ctx, part.bodyStart, end));
    } else if (boundary === null || boundary === '') {
      warn(ctx, 'multipart without boundary');
      part.parts.push(syntheticChild(ctx, part.bodyStart, end));
    } else {
      parseMultipart(ctx, part, boundary, depth, part.subtype === 'digest');
    }
  } else if (part.type === 'message' && (part.subtype === 'rfc822' || part.subtype === 'global')) {
    // An encapsulated message is parsed where it lies, so its offsets are absolute too. Only an
    // identity encoding leaves its bytes in place (RFC 2046 §5.2.1; RFC 6532 §3.5 allows
    // message/global to be encoded, which makes it an opaque leaf here).
    if (classifyTransferEncoding(part.encoding) !== 'identity') {
      warn(ctx, 'encoded message part');
    } else if (opaque || depth >= MAX_DEPTH || ctx.parts >= MAX_PARTS) {
      warn(ctx, opaque || ctx.parts >= MAX_PARTS ? 'too many parts' : 'nesting too deep');
    } else {
      const inner = parsePart(ctx, part.bodyStart, end, depth + 1, false, false);
      part.message = { envelope: buildEnvelope(inner.headers), root: inner.part };
    }
  }

  if (part.type === 'text' || part.type === 'message') part.lines = countLines(raw, part.bodyStart, end);
  return { part, headers, noHeader: scan.noHeader };
}

interface Delimiter {
  /** Offset of the "--" that starts the delimiter line. */
  lineStart: number;
  /** Offset of the line after the delimiter line (or the region end). */
  next: number;
  /** A close delimiter ("--boundary--", RFC 2046 §5.1.1). */
  close: boolean;
}

/**
 * Finds the next delimiter line of `delim` ("--" + boundary) in [from, end) that starts a line
 * (or the body). Transport padding (whitespace) may follow it (RFC 2046 §5.1.1); any other text
 * after "--boundary" means a longer boundary, not this one. A close delimiter may carry text.
 */
function findDelimiter(raw: Buffer, view: Buffer, bodyStart: number, from: number, end: number, delim: Buffer): Delimiter | null {
  let p = from;
  while (p < end) {
    const i = view.indexOf(delim, p);
    if (i < 0) return null;
    if (i === bodyStart || raw[i - 1] === LF) {
      let q = i + delim.length;
      let close = false;
      if (q + 1 < end && raw[q] === DASH && raw[q + 1] === DASH) {
        close = true;
        q += 2;
      }
      let r = q;
      while (r < end && (raw[r] === SP || raw[r] === HT)) r++;
      const atLineEnd = r >= end || raw[r] === LF || (raw[r] === CR && (r + 1 >= end || raw[r + 1] === LF));
      if (atLineEnd || close) {
        const nl = r >= end ? -1 : view.indexOf(LF, r);
        return { lineStart: i, next: nl < 0 ? end : nl + 1, close };
      }
    }
    p = i + 1;
  }
  return null;
}

/** The offset where the body before a delimiter ends: RFC 2046 §5.1.1, the line end preceding
 * the delimiter line is part of the delimiter. */
function bodyEndBefore(raw: Buffer, lineStart: number, floor: number): number {
  let e = lineStart;
  if (e > floor && raw[e - 1] === LF) {
    e--;
    if (e > floor && raw[e - 1] === CR) e--;
  }
  return Math.max(floor, e);
}

function parseMultipart(ctx: Ctx, part: MimePart, boundary: string, depth: number, digest: boolean): void {
  const raw = ctx.raw;
  const start = part.bodyStart;
  const end = part.bodyEnd;
  // The boundary came through the header's text decoding; RFC 2046 §5.1.1 bchars are ASCII, so
  // UTF-8 gives back the bytes for every valid boundary.
  let delim = Buffer.from('--' + boundary, 'utf8');
  const view = raw.subarray(0, end);
  let d = findDelimiter(raw, view, start, start, end, delim);
  if (d === null && /[^\x00-\x7f]/.test(boundary)) {
    // A non-ASCII boundary read from a Latin-1 header: look for its Latin-1 bytes.
    const latin1 = Buffer.from('--' + boundary, 'latin1');
    d = findDelimiter(raw, view, start, start, end, latin1);
    if (d !== null) delim = latin1;
  }
  if (d === null) {
    warn(ctx, 'missing boundary');
    part.parts.push(syntheticChild(ctx, start, end));
    return;
  }
  if (d.close) {
    warn(ctx, 'multipart without parts');
    part.parts.push(syntheticChild(ctx, start, bodyEndBefore(raw, d.lineStart, start)));
    return;
  }
  // The preamble, [start, first delimiter), is not part of any child (RFC 2046 §5.1.1).
  while (d !== null && !d.close) {
    const childStart = d.next;
    if (ctx.parts >= MAX_PARTS) {
      // Past the cap, the rest of this multipart is one opaque part: the bytes stay reachable.
      warn(ctx, 'too many parts');
      part.parts.push(parsePart(ctx, childStart, end, depth + 1, digest, true).part);
      return;
    }
    const nd = findDelimiter(raw, view, start, childStart, end, delim);
    const childEnd = nd === null ? end : bodyEndBefore(raw, nd.lineStart, childStart);
    if (nd === null) warn(ctx, 'missing closing boundary');
    part.parts.push(parsePart(ctx, childStart, childEnd, depth + 1, digest, false).part);
    d = nd;
  }
  // After the close delimiter comes the epilogue, also in no child.
}

function addresses(headers: Headers, name: string) {
  const v = headers.get(name);
  if (v === undefined) return null;
  const list = parseAddressList(v);
  return list.length > 0 ? list : null;
}

function buildEnvelope(headers: Headers): Envelope {
  const from = addresses(headers, 'from');
  return {
    date: headers.get('date') ?? null,
    subject: headers.get('subject') ?? null,
    from,
    // RFC 3501 §7.4.2 (kept by RFC 9051 §7.5.2): sender and reply-to default to from.
    sender: addresses(headers, 'sender') ?? from,
    replyTo: addresses(headers, 'reply-to') ?? from,
    to: addresses(headers, 'to'),
    cc: addresses(headers, 'cc'),
    bcc: addresses(headers, 'bcc'),
    inReplyTo: headers.get('in-reply-to') ?? null,
    messageId: headers.get('message-id') ?? null,
  };
}

/** RFC 5322 §3.6.4 msg-ids without angle brackets (CFWS inside removed, RFC 5322 §4.5.4). A
 * value with no bracketed id gives its '@'-bearing words (ids written without brackets). */
export function parseMessageIds(value: string | undefined | null): string[] {
  if (value === undefined || value === null) return [];
  const out: string[] = [];
  for (const m of value.matchAll(/<([^<>]*)>/g)) {
    const id = m[1]!.replace(/\s+/g, '');
    if (id !== '') out.push(id);
  }
  if (out.length === 0) {
    for (const w of value.split(/[\s,]+/)) if (w.includes('@')) out.push(w.replace(/^<|>$/g, ''));
  }
  return out;
}

interface TextState {
  chunks: string[];
  length: number;
  preview: string | null;
  hasAttachment: boolean;
}

function isAttachment(part: MimePart): boolean {
  const disp = part.disposition?.type;
  if (disp === 'attachment') return true;
  if (disp === 'inline') return false;
  if (part.message !== null) return true;
  const named = (part.disposition !== null && param(part.disposition.params, 'filename') !== null) || param(part.params, 'name') !== null;
  return named && part.type !== 'text';
}

/** The alternative read for text: the plain one, else HTML, else the last (RFC 2046 §5.1.4: the
 * last is the richest). */
function chooseAlternative(parts: MimePart[]): MimePart | undefined {
  return (
    parts.find((p) => p.type === 'text' && p.subtype === 'plain') ??
    parts.find((p) => p.type === 'text' && p.subtype === 'html') ??
    parts[parts.length - 1]
  );
}

function textOf(ctx: Ctx, part: MimePart, room: number): string {
  const html = part.subtype === 'html';
  let kind = classifyTransferEncoding(part.encoding);
  if (kind === null) {
    warn(ctx, `unknown transfer encoding ${part.encoding ?? ''}`.trim());
    kind = 'identity';
  }
  // Decode only what can fit: at most 4 bytes per UTF-16 unit, markup included for HTML.
  const budget = room * 4 * (html ? 2 : 1);
  const encodedBudget = kind === 'base64' ? Math.ceil(budget * 1.4) + 4 : kind === 'quoted-printable' ? budget * 3 : budget;
  const src = ctx.raw.subarray(part.bodyStart, Math.min(part.bodyEnd, part.bodyStart + encodedBudget));
  let bytes = decodeKnown(src, kind);
  if (bytes.length > budget) bytes = bytes.subarray(0, budget);
  let s = ctx.decoder.decode(bytes, param(part.params, 'charset'));
  if ((param(part.params, 'format') ?? '').toLowerCase() === 'flowed') {
    // RFC 3676 §4.2: soft line breaks joined for reading.
    try {
      s = libmime.decodeFlowed(s, (param(part.params, 'delsp') ?? '').toLowerCase() === 'yes');
    } catch {
      // keep the text as it is
    }
  }
  if (html) s = htmlToText(s);
  // Search text: line ends normalised, control characters other than tab and newline dropped.
  s = s.replace(/\r\n?/g, '\n').replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, '');
  return cut(s, room);
}

/** A character `\s` matches (and trim() removes): ECMAScript WhiteSpace and LineTerminator. */
function isSpace(c: number): boolean {
  if (c <= 0x20) return c === 0x20 || (c >= 0x09 && c <= 0x0d);
  if (c < 0xa0) return false;
  return (
    c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000 || c === 0xfeff
  );
}

/** How much of the folded text makePreview reads: PREVIEW_LENGTH characters of at most two
 * units each, and the unit after the last. */
const PREVIEW_FOLDED_UNITS = PREVIEW_LENGTH * 2 + 1;

function makePreview(text: string): string {
  // RFC 8970 §3.1: whitespace folded, at most 256 characters (code points, never half a pair).
  // The first PREVIEW_LENGTH * 8 units with each run of whitespace made one space, trimmed; built
  // only as far as the count below reads it (one pass, no regular expression over the text: a
  // message's preview is made at every delivery).
  const window = cut(text, PREVIEW_LENGTH * 8);
  let folded = '';
  let i = 0;
  while (i < window.length && folded.length < PREVIEW_FOLDED_UNITS) {
    let j = i;
    while (j < window.length && !isSpace(window.charCodeAt(j))) j++;
    folded += window.slice(i, j);
    let k = j;
    while (k < window.length && isSpace(window.charCodeAt(k))) k++;
    // Leading and trailing runs are trimmed.
    if (k > j && k < window.length && folded.length > 0) folded += ' ';
    i = k;
  }
  let units = 0;
  for (let n = 0; n < PREVIEW_LENGTH && units < folded.length; n++) {
    const c = folded.charCodeAt(units);
    units += c >= 0xd800 && c <= 0xdbff && units + 1 < folded.length ? 2 : 1;
  }
  return folded.slice(0, units);
}

function walk(ctx: Ctx, part: MimePart, st: TextState, wantText: boolean, depth: number): void {
  if (depth > MAX_DEPTH * 2 + 2) return;
  if (part.type === 'multipart') {
    const chosen = part.subtype === 'alternative' ? chooseAlternative(part.parts) : undefined;
    for (const child of part.parts) {
      walk(ctx, child, st, wantText && (chosen === undefined || child === chosen), depth + 1);
    }
    return;
  }
  const attachment = isAttachment(part);
  if (attachment) st.hasAttachment = true;
  if (part.message !== null) {
    walk(ctx, part.message.root, st, wantText, depth + 1);
    return;
  }
  if (!wantText || part.type !== 'text' || (part.subtype !== 'plain' && part.subtype !== 'html')) return;
  const room = MAX_TEXT - st.length;
  if (room <= 0) return;
  const t = textOf(ctx, part, room);
  if (t === '') return;
  const sep = st.chunks.length > 0 ? 1 : 0;
  const piece = cut(t, Math.max(0, room - sep));
  if (sep === 1 && piece !== '') st.chunks.push('\n');
  st.chunks.push(piece);
  st.length += piece.length + (sep === 1 && piece !== '' ? 1 : 0);
  if (st.preview === null && !attachment && t.trim() !== '') st.preview = makePreview(t);
}

function decodedList(ctx: Ctx, headers: Headers, name: string): DecodedAddress[] {
  const v = headers.get(name);
  return v === undefined ? [] : decodeAddressList(v, ctx.decoder).map((a) => ({ name: clean(a.name), address: clean(a.address) }));
}

/** Parses a raw message. Never throws (see the invariants at the top of this file). */
export function parseMessage(raw: Buffer): ParsedMessage {
  const ctx: Ctx = { raw, warnings: [], warned: new Set(), parts: 0, decoder: createCharsetDecoder() };
  let root: MimePart;
  let headers: Headers;
  try {
    const top = parsePart(ctx, 0, raw.length, 0, false, false);
    root = top.part;
    headers = top.headers;
    if (top.noHeader) warn(ctx, 'no header');
  } catch (err) {
    // Defensive: a bug here must not lose the message; store it as one opaque text part.
    warn(ctx, `parse failure: ${err instanceof Error ? err.message : String(err)}`);
    root = leaf(0, 0, raw.length);
    headers = new Map();
  }

  const st: TextState = { chunks: [], length: 0, preview: null, hasAttachment: false };
  try {
    walk(ctx, root, st, true, 0);
  } catch (err) {
    warn(ctx, `text extraction failure: ${err instanceof Error ? err.message : String(err)}`);
  }

  const envelope = buildEnvelope(headers);
  const subject = clean(decodeEncodedWords(headers.get('subject') ?? '', ctx.decoder));
  const from = decodedList(ctx, headers, 'from');
  const to = decodedList(ctx, headers, 'to');
  const cc = decodedList(ctx, headers, 'cc');
  for (const cs of ctx.decoder.unknown) warn(ctx, `unknown charset ${cs}`);

  return {
    version: 1,
    size: raw.length,
    root,
    envelope,
    subject,
    from,
    to,
    cc,
    messageId: parseMessageIds(headers.get('message-id'))[0] ?? null,
    inReplyTo: parseMessageIds(headers.get('in-reply-to')),
    references: parseMessageIds(headers.get('references')),
    date: parseDate(headers.get('date')),
    text: st.chunks.join(''),
    preview: st.preview ?? '',
    hasAttachment: st.hasAttachment,
    warnings: ctx.warnings,
  };
}
