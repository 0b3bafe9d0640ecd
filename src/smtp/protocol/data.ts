/**
 * Message body receiver for DATA (RFC 5321 §4.1.1.4, §4.5.2) and BDAT (RFC 3030), sans-IO.
 *
 * Invariants:
 * - In 'dot' mode the only end of data is CR LF "." CR LF, where the first CR LF is the end of
 *   the previous line or of the DATA command (RFC 5321 §4.1.1.4). A bare LF or bare CR next to a
 *   dot never ends the message and never starts a second one (SMTP smuggling, CVE-2023-51764).
 * - Line endings are normalised: a bare LF or a bare CR becomes CR LF in the stored message
 *   (IMAP requires CR LF, RFC 9051 §2.2), and a line that began after a bare line ending is never
 *   an SMTP line start: no dot-unstuffing, no end of data there. `bareLineEndings` counts them.
 * - Dot-unstuffing (RFC 5321 §4.5.2): a leading "." is removed from every line that is not the
 *   terminator.
 * - Output stops being collected (but input is still scanned to its end) once the message is over
 *   `maxSize` or a line is over `maxLineLength`; the caller refuses the message after its end, so
 *   the client stays in sync (RFC 1870 §6: 552 after the data).
 * - What is collected is copied into pages, never kept as views of the input: memory is the
 *   message's size whatever its shape (a view per bare LF or stuffed dot costs a hundred bytes of
 *   heap for two of input, and a message of them ran a process out of memory).
 */

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const CRLF = Buffer.from('\r\n');
const LF_ONLY = Buffer.from('\n');

/** Pages grow with the message: small messages stay small, large ones are not many pieces. */
const PAGE_MIN = 16 * 1024;
const PAGE_MAX = 1024 * 1024;

const enum S {
  LineStart,
  Mid,
  Cr,
  Dot,
  DotCr,
}

export interface ReceiverOptions {
  /** 'dot': DATA (dot-stuffed, ends at CRLF.CRLF); 'raw': BDAT chunk contents. */
  mode: 'dot' | 'raw';
  maxSize: number;
  maxLineLength: number;
}

export class MessageReceiver {
  private readonly mode: 'dot' | 'raw';
  private readonly maxSize: number;
  private readonly maxLineLength: number;
  private state: S = S.LineStart;
  /** Full pages of collected content, and the page being filled (used bytes in `pageUsed`). */
  private pages: Buffer[] = [];
  private page: Buffer | null = null;
  private pageUsed = 0;
  private collected = 0;
  private collecting = true;
  /** CR of ".\r" held back across a chunk boundary (it is part of the terminator or bare). */
  private pendingCr = false;
  private lineLength = 0;
  /** Bytes of message content seen (after unstuffing and normalisation), collected or not. */
  size = 0;
  tooBig = false;
  lineTooLong = false;
  bareLineEndings = 0;

  constructor(options: ReceiverOptions) {
    this.mode = options.mode;
    this.maxSize = options.maxSize;
    this.maxLineLength = options.maxLineLength;
  }

  private emit(buf: Buffer): void {
    if (buf.length === 0) return;
    this.size += buf.length;
    if (this.size > this.maxSize) {
      this.tooBig = true;
      this.stopCollecting();
    }
    if (this.collecting) this.collect(buf);
  }

  private collect(buf: Buffer): void {
    let off = 0;
    while (off < buf.length) {
      if (this.page === null || this.pageUsed === this.page.length) {
        if (this.page !== null) this.pages.push(this.page);
        this.page = Buffer.allocUnsafe(Math.min(PAGE_MAX, Math.max(PAGE_MIN, this.collected)));
        this.pageUsed = 0;
      }
      const n = buf.copy(this.page, this.pageUsed, off);
      this.pageUsed += n;
      off += n;
    }
    this.collected += buf.length;
  }

  private stopCollecting(): void {
    this.collecting = false;
    this.pages = [];
    this.page = null;
  }

  /**
   * Feeds bytes. Returns -1 while the message continues, or (dot mode) the index in `chunk` just
   * past the terminating CRLF.CRLF: the bytes from there on are the next commands (pipelining).
   */
  push(chunk: Buffer): number {
    const dotMode = this.mode === 'dot';
    const n = chunk.length;
    let runStart = 0;
    let i = 0;
    for (; i < n; i++) {
      const b = chunk[i]!;
      switch (this.state) {
        case S.LineStart:
          if (dotMode && b === DOT) {
            // Hold the dot: it is either the terminator or removed (RFC 5321 §4.5.2).
            this.emit(chunk.subarray(runStart, i));
            runStart = i + 1;
            this.state = S.Dot;
            continue;
          }
          this.state = S.Mid;
          break;
        case S.Cr:
          if (b === LF) {
            this.state = S.LineStart;
            this.lineLength = 0;
            continue;
          }
          // Bare CR: complete it to CRLF; the next line is not an SMTP line start.
          this.emit(chunk.subarray(runStart, i));
          this.emit(LF_ONLY);
          this.bareLineEndings++;
          this.lineLength = 0;
          runStart = i;
          this.state = S.Mid;
          break;
        case S.Dot:
          if (b === CR) {
            this.state = S.DotCr;
            // runStart already points at this CR (the dot was dropped).
            continue;
          }
          // A dot followed by anything else: the dot is removed and the line continues.
          this.state = S.Mid;
          break;
        case S.DotCr:
          if (b === LF) {
            // CR LF . CR LF: end of data (RFC 5321 §4.1.1.4). Nothing of ".\r\n" is content.
            this.pendingCr = false;
            this.state = S.LineStart;
            return i + 1;
          }
          // ".\r" then something else: the dot was stuffing, the CR is bare.
          if (this.pendingCr) {
            this.emit(CRLF);
            this.pendingCr = false;
          } else {
            this.emit(chunk.subarray(runStart, i));
            this.emit(LF_ONLY);
          }
          this.bareLineEndings++;
          this.lineLength = 0;
          runStart = i;
          this.state = S.Mid;
          break;
        case S.Mid:
          break;
      }
      // Mid-line byte.
      if (b === CR) {
        this.state = S.Cr;
      } else if (b === LF) {
        // Bare LF: normalised to CRLF, and deliberately not a line start (no unstuffing, no end).
        this.emit(chunk.subarray(runStart, i));
        this.emit(CRLF);
        this.bareLineEndings++;
        this.lineLength = 0;
        runStart = i + 1;
      } else if (++this.lineLength > this.maxLineLength && !this.lineTooLong) {
        this.lineTooLong = true;
        this.stopCollecting();
      }
    }
    if (this.state === S.DotCr && !this.pendingCr) {
      // The CR at the end of this chunk might belong to the terminator: hold it.
      this.emit(chunk.subarray(runStart, n - 1));
      this.pendingCr = true;
    } else {
      this.emit(chunk.subarray(runStart, n));
    }
    return -1;
  }

  /** The message as received. In raw mode a trailing bare CR is completed to CRLF first. */
  finish(): Buffer {
    if (this.mode === 'raw' && this.state === S.Cr) {
      this.emit(LF_ONLY);
      this.bareLineEndings++;
      this.state = S.LineStart;
    }
    let out: Buffer = Buffer.alloc(0);
    if (this.collecting && this.page !== null) {
      const last = this.page.subarray(0, this.pageUsed);
      out = this.pages.length === 0 ? last : Buffer.concat([...this.pages, last], this.collected);
    }
    this.pages = [];
    this.page = null;
    return out;
  }
}

/** Byte queue of received input with line extraction, for command and AUTH lines. */
export class InputBuffer {
  private buf: Buffer = Buffer.alloc(0);
  /** True while discarding the rest of an over-long line. */
  private skipping = false;

  get length(): number {
    return this.buf.length;
  }

  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
  }

  unshift(chunk: Buffer): void {
    if (chunk.length > 0) this.buf = this.buf.length === 0 ? chunk : Buffer.concat([chunk, this.buf]);
  }

  /** Everything buffered (emptying the buffer). */
  takeAll(): Buffer {
    const out = this.buf;
    this.buf = Buffer.alloc(0);
    return out;
  }

  /** Up to n bytes. */
  take(n: number): Buffer {
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(out.length);
    return out;
  }

  clear(): void {
    this.buf = Buffer.alloc(0);
    this.skipping = false;
  }

  /**
   * The next line without its terminator (LF, with an optional CR before it), 'too-long' once
   * for a line over `max` octets (whose remainder is then discarded up to its LF), or null when
   * no complete line is buffered.
   */
  readLine(max: number): Buffer | 'too-long' | null {
    for (;;) {
      const lf = this.buf.indexOf(LF);
      if (this.skipping) {
        if (lf === -1) {
          this.buf = Buffer.alloc(0);
          return null;
        }
        this.buf = this.buf.subarray(lf + 1);
        this.skipping = false;
        continue;
      }
      if (lf === -1) {
        if (this.buf.length > max) {
          this.buf = Buffer.alloc(0);
          this.skipping = true;
          return 'too-long';
        }
        return null;
      }
      if (lf + 1 > max) {
        this.buf = this.buf.subarray(lf + 1);
        return 'too-long';
      }
      const end = lf > 0 && this.buf[lf - 1] === CR ? lf - 1 : lf;
      const line = this.buf.subarray(0, end);
      this.buf = this.buf.subarray(lf + 1);
      return line;
    }
  }
}
