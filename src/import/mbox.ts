/**
 * Streaming mbox splitter (the "From_ line" family: mboxo, mboxrd, mboxcl, mboxcl2; RFC 4155
 * documents the format and its variants).
 *
 * Invariants:
 * - Input is read as a stream of chunks; at most one message (plus one line of lookahead) is held.
 * - A separator is a line "From " that looks like a real From_ line: "From SENDER DATE" with an
 *   asctime date (RFC 4155 §2). When the file's first From_ line has no such date, any "From "
 *   line after an empty line separates (the loose rule every reader falls back to).
 * - A message whose Content-Length header is right (the body ends exactly there, followed by end
 *   of file or an empty line and/or a From_ line) ends there, whatever From_ lines its body has
 *   (mboxcl/mboxcl2): its body is not unescaped. A wrong Content-Length (common after editing
 *   a file by hand) is ignored and the From_ rule applies.
 * - Otherwise the body is unescaped the mboxrd way: one '>' is removed from lines matching
 *   /^>+From /. For mboxo files this also turns a body's original ">From " into "From ": the
 *   format cannot tell them apart (RFC 4155 §2 calls it lossy); `unescape: 'none'` keeps bytes.
 * - The empty line before a separator (and at the end of the file) belongs to the mbox, not to
 *   the message.
 */

export interface MboxMessage {
  /** The message bytes, without the From_ line, unescaped. */
  raw: Buffer;
  /** The From_ line, without its line end. */
  fromLine: string;
  /** The date of the From_ line (epoch ms), when it has one. */
  date?: number;
  /** 1-based line number of the From_ line, for messages in the summary. */
  line: number;
  /** Flags from the Status / X-Status / X-Keywords headers (mutt, pine, Dovecot, UW-IMAP). */
  flags: string[];
  /** Whether a Content-Length header decided where the message ends. */
  byContentLength: boolean;
}

export interface MboxOptions {
  /** 'rd' (default): one '>' removed from ">+From " lines; 'none': bytes kept as they are. */
  unescape?: 'rd' | 'none';
}

export class MboxFormatError extends Error {}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
// "From sender Www Mmm dd hh:mm[:ss] [zone] yyyy [zone]" (asctime, as RFC 4155 §2 describes).
const STRICT_FROM =
  /^From (?:"[^"]*"|\S+)? +(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) +(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +(\d{1,2}) +(\d{1,2}):(\d\d)(?::(\d\d))?(?: +([A-Z]{1,5}|[+-]\d{4}))? +(\d{4})(?: +([+-]\d{4}|[A-Z]{1,5}))?\s*$/;

/** The date of a From_ line, epoch ms (UTC when the line has no numeric zone), or undefined. */
export function fromLineDate(line: string): number | undefined {
  const m = STRICT_FROM.exec(line);
  if (!m) return undefined;
  const [, mon, day, hh, mm, ss, zoneBefore, year, zoneAfter] = m;
  const zone = zoneAfter ?? zoneBefore;
  let t = Date.UTC(Number(year), MONTHS.indexOf(mon!), Number(day), Number(hh), Number(mm), Number(ss ?? 0));
  if (zone !== undefined && /^[+-]\d{4}$/.test(zone)) {
    const sign = zone[0] === '-' ? -1 : 1;
    t -= sign * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(3, 5))) * 60_000;
  }
  return Number.isFinite(t) ? t : undefined;
}

const isStrictFrom = (line: Buffer): boolean => line.length > 5 && line.subarray(0, 5).toString('latin1') === 'From ' && STRICT_FROM.test(trimEol(line).toString('latin1'));
const startsFrom = (line: Buffer): boolean => line.length >= 5 && line.subarray(0, 5).toString('latin1') === 'From ';
const isBlank = (line: Buffer): boolean => (line.length === 1 && line[0] === 10) || (line.length === 2 && line[0] === 13 && line[1] === 10);

function trimEol(line: Buffer): Buffer {
  let end = line.length;
  if (end > 0 && line[end - 1] === 10) end--;
  if (end > 0 && line[end - 1] === 13) end--;
  return line.subarray(0, end);
}

/** Lines (each with its "\n", the last maybe without) from a stream of chunks, with pushback. */
class LineReader {
  private readonly it: AsyncIterator<Buffer>;
  private buf: Buffer = Buffer.alloc(0);
  private done = false;
  private readonly back: Buffer[] = [];
  lineNo = 0;

  constructor(input: AsyncIterable<Buffer>) {
    this.it = input[Symbol.asyncIterator]();
  }

  async next(): Promise<Buffer | null> {
    this.lineNo++;
    const b = this.back.pop();
    if (b !== undefined) return b;
    for (;;) {
      const nl = this.buf.indexOf(10);
      if (nl >= 0) {
        const line = this.buf.subarray(0, nl + 1);
        this.buf = this.buf.subarray(nl + 1);
        return line;
      }
      if (this.done) {
        if (this.buf.length === 0) {
          this.lineNo--;
          return null;
        }
        const line = this.buf;
        this.buf = Buffer.alloc(0);
        return line;
      }
      const r = await this.it.next();
      if (r.done) this.done = true;
      else this.buf = this.buf.length === 0 ? Buffer.from(r.value) : Buffer.concat([this.buf, r.value]);
    }
  }

  /** Lines given back are read again, last given first. */
  unread(line: Buffer): void {
    this.lineNo--;
    this.back.push(line);
  }
}

function headerFlags(headers: string): { flags: string[]; contentLength?: number } {
  const flags: string[] = [];
  let contentLength: number | undefined;
  const unfolded = headers.replace(/\r?\n[ \t]+/g, ' ');
  for (const line of unfolded.split(/\r?\n/)) {
    const m = /^([A-Za-z-]+):[ \t]*(.*)$/.exec(line);
    if (!m) continue;
    const name = m[1]!.toLowerCase();
    const value = m[2]!.trim();
    if (name === 'content-length' && /^\d{1,12}$/.test(value)) contentLength = Number(value);
    else if (name === 'status') {
      if (value.includes('R')) flags.push('\\Seen');
    } else if (name === 'x-status') {
      if (value.includes('A')) flags.push('\\Answered');
      if (value.includes('F')) flags.push('\\Flagged');
      if (value.includes('T')) flags.push('\\Draft');
      if (value.includes('D')) flags.push('\\Deleted');
    } else if (name === 'x-keywords') {
      for (const k of value.split(/[\s,]+/)) if (/^[\x21-\x7e]+$/.test(k) && !/[(){%*"\\\]]/.test(k) && !flags.includes(k)) flags.push(k);
    }
  }
  return { flags: [...new Set(flags)], ...(contentLength === undefined ? {} : { contentLength }) };
}

function unescapeRd(line: Buffer): Buffer {
  // /^>+From / -> drop the first '>'
  if (line[0] !== 62) return line;
  let i = 0;
  while (line[i] === 62) i++;
  return line.subarray(i, i + 5).toString('latin1') === 'From ' ? line.subarray(1) : line;
}

export async function* splitMbox(input: AsyncIterable<Buffer>, options: MboxOptions = {}): AsyncGenerator<MboxMessage> {
  const unescape = options.unescape ?? 'rd';
  const r = new LineReader(input);
  let first = await r.next();
  while (first !== null && isBlank(first)) first = await r.next();
  if (first === null) return;
  if (!startsFrom(first)) throw new MboxFormatError(`Not an mbox file: line ${r.lineNo} does not start with "From "`);
  const strict = isStrictFrom(first);
  let prevBlank = true;
  // A separator: a From_ line of the file's kind (see the invariants above).
  const isSep = (line: Buffer, afterBlank: boolean): boolean => (strict ? isStrictFrom(line) : startsFrom(line) && afterBlank);

  let sep: Buffer | null = first;
  let sepLine = r.lineNo;
  while (sep !== null) {
    const fromLine = trimEol(sep).toString('latin1');
    const parts: Buffer[] = [];
    let headerText = '';
    let next: Buffer | null = null;
    let ended = false;
    // Headers, up to the empty line.
    for (;;) {
      const line = await r.next();
      if (line === null) { ended = true; break; }
      if (isSep(line, false) && !/^[!-9;-~]+:/.test(line.toString('latin1'))) { next = line; ended = true; break; }
      parts.push(line);
      if (isBlank(line)) break;
      headerText += line.toString('latin1');
    }
    const hf = headerFlags(headerText);
    let byContentLength = false;
    if (!ended && hf.contentLength !== undefined) {
      // Read exactly Content-Length bytes, then check what follows.
      const body: Buffer[] = [];
      let got = 0;
      while (got < hf.contentLength) {
        const line = await r.next();
        if (line === null) break;
        body.push(line);
        got += line.length;
      }
      let ok = false;
      const consumed: Buffer[] = [];
      if (got === hf.contentLength) {
        const a = await r.next();
        if (a === null) ok = true;
        else if (startsFrom(a)) { ok = true; next = a; }
        else if (isBlank(a)) {
          const b = await r.next();
          if (b === null) ok = true;
          else if (startsFrom(b)) { ok = true; next = b; }
          else consumed.push(a, b);
        } else consumed.push(a);
      }
      if (ok) {
        parts.push(...body);
        byContentLength = true;
        ended = true;
      } else {
        // Wrong Content-Length: read those lines again by the From_ rule.
        for (let i = consumed.length - 1; i >= 0; i--) r.unread(consumed[i]!);
        for (let i = body.length - 1; i >= 0; i--) r.unread(body[i]!);
        next = null;
      }
    }
    if (!ended) {
      prevBlank = parts.length > 0 && isBlank(parts[parts.length - 1]!);
      for (;;) {
        const line = await r.next();
        if (line === null) break;
        if (isSep(line, prevBlank)) { next = line; break; }
        prevBlank = isBlank(line);
        parts.push(unescape === 'rd' ? unescapeRd(line) : line);
      }
      // The empty line before the separator or at the end of the file is the mbox's.
      if (parts.length > 0 && isBlank(parts[parts.length - 1]!) && parts.length > 1) parts.pop();
    }
    const date = fromLineDate(fromLine);
    yield { raw: Buffer.concat(parts), fromLine, line: sepLine, flags: hf.flags, byContentLength, ...(date === undefined ? {} : { date }) };
    sep = next;
    sepLine = r.lineNo;
  }
}
