/**
 * The IMAP receiver: bytes in, complete commands out. Sans-IO: the session pushes what the socket
 * read and pulls events; nothing here touches a socket.
 *
 * A command is one or more lines joined by literals (RFC 9051 §4.3): `{n}` synchronising (the
 * server must answer "+" before the client sends the bytes), `{n+}` non-synchronising (RFC 7888
 * LITERAL+), `~{n}` / `~{n+}` binary (RFC 3516 literal8). The receiver strips the literal markers
 * and hands over the text segments and the literal bodies separately, so the parser never scans
 * literal bytes for syntax.
 *
 * Invariants:
 * - Memory held per connection is bounded by the limits below, whatever the client sends.
 * - Processing stops after each command event until the session pulls again, so the session can
 *   switch to line mode (IDLE's DONE, AUTHENTICATE responses) before pipelined bytes are read as
 *   commands.
 * - The result does not depend on how the input was split into chunks.
 */

/** A line (outside literals) longer than this is refused: stops a client from making the server
 * buffer an endless line. RFC 9051 §4 leaves line length to the server; 64 KiB fits any sane
 * command (RFC 7162 §4 recommends at least 8,192 octets). */
export const MAX_LINE_BYTES = 64 * 1024;
/** A literal in any command but APPEND (LOGIN password, SEARCH string, ID value) beyond this is
 * refused: stops memory exhaustion through a huge literal in a command that needs none. */
export const MAX_LITERAL_BYTES = 64 * 1024;
/** Total bytes of a command other than APPEND (lines plus literals): stops a client from growing
 * one command without bound through many small literals. */
export const MAX_COMMAND_BYTES = 1024 * 1024;
/** Literals in one command other than APPEND: stops a flood of tiny literals, each of which costs
 * a continuation round trip and bookkeeping. */
export const MAX_LITERALS_PER_COMMAND = 64;
/** Messages in one MULTIAPPEND (RFC 3502): the whole command is held in memory until it is
 * complete, so the number of messages is bounded too. */
export const MAX_APPEND_MESSAGES = 1000;
/** A whole APPEND command is held in memory: its total is bounded to this many times the
 * APPENDLIMIT (RFC 7889), which stops a MULTIAPPEND of many maximal messages. */
export const APPEND_COMMAND_FACTOR = 2;
/** Digits in a literal size: more than 10 cannot be a size below 2^32 (RFC 9051 §9 number). */
const MAX_SIZE_DIGITS = 10;

export interface Literal {
  data: Buffer;
  /** Sent as literal8 (`~{n}`, RFC 3516). */
  binary: boolean;
}

/** A complete command: segments[i] is followed by literals[i]; segments.length is one more than
 * literals.length. Segments have neither the literal markers nor the final CRLF. */
export interface RawCommand {
  /** The tag when the first segment starts with a valid one, else null. */
  tag: string | null;
  segments: Buffer[];
  literals: Literal[];
  size: number;
  /** Bytes reserved from the shared budget for this command: the session calls
   * Receiver.release(command) once the command is done. Absent means none. */
  reserved?: number;
}

export type ReceiverEvent =
  | { kind: 'command'; command: RawCommand }
  /** In line mode: one line without its CRLF. */
  | { kind: 'line'; line: Buffer }
  /** A synchronising literal was accepted: the session must send a "+" continuation. */
  | { kind: 'continue' }
  /**
   * The command was refused while being received. When fatal the receiver is finished: the
   * session answers, then sends BYE and closes. When not fatal the command is dropped (the client
   * was told before sending a synchronising literal) and reception goes on.
   */
  | { kind: 'reject'; tag: string | null; status: 'BAD' | 'NO'; code: RejectCode | null; text: string; fatal: boolean; limit?: number };

export interface ReceiverOptions {
  /** RFC 7889 APPENDLIMIT: the largest message APPEND accepts. */
  appendLimit: number;
  /**
   * A budget shared by every connection for the APPEND literal bytes held in memory: reserve()
   * is asked before each APPEND literal is accepted (false refuses it) and release() gives the
   * bytes back. Without it only the per-connection limits apply.
   */
  budget?: { reserve(bytes: number): boolean; release(bytes: number): void };
  /**
   * RFC 5464 §4.3: the largest annotation value SETMETADATA accepts. A synchronising literal
   * above it in SETMETADATA is refused before its bytes are sent, with NO [METADATA MAXSIZE n]
   * (the code carries `limit`); without it the general literal limit applies.
   */
  metadataMaxSize?: number;
}

export type RejectCode = 'TOOBIG' | 'UNAVAILABLE' | 'METADATA MAXSIZE';

type Mode = 'command' | 'line';

// RFC 9051 §9 tag = 1*<any ASTRING-CHAR except "+">.
const TAG_RE = /^[\x21\x23\x24\x26\x27\x2c-\x5b\x5d-\x7a\x7c\x7e]+$/;
const isTagByte = (b: number): boolean =>
  b > 0x20 && b < 0x7f && b !== 0x28 && b !== 0x29 && b !== 0x7b && b !== 0x25 && b !== 0x2a && b !== 0x22 && b !== 0x5c && b !== 0x2b;

export function isValidTag(tag: string): boolean {
  return TAG_RE.test(tag) && !tag.includes('+');
}

export class Receiver {
  private buf: Buffer = EMPTY;
  /** The growable buffer `buf` may be a view of (see push), and how much of it is filled. */
  private spare: Buffer | null = null;
  private spareUsed = 0;
  /** Where the LF search resumes, so a long line fed byte by byte is scanned once. */
  private scanFrom = 0;
  private mode: Mode = 'command';
  private dead = false;
  private segments: Buffer[] = [];
  private literals: Literal[] = [];
  private size = 0;
  private tag: string | null = null;
  private isAppend = false;
  private isSetMetadata = false;
  private readonly metadataMaxSize: number | undefined;
  /** Literal bytes announced by the command in progress. */
  private literalBytes = 0;
  /** Remaining bytes of the literal being read, or -1 outside a literal. */
  private literalLeft = -1;
  private literalBinary = false;
  private literalParts: Buffer[] = [];
  private readonly appendLimit: number;
  private readonly budget: ReceiverOptions['budget'];
  /** Bytes reserved from the budget by the command being received. */
  private reserved = 0;

  private authenticated = false;

  constructor(options: ReceiverOptions) {
    this.appendLimit = options.appendLimit;
    this.budget = options.budget;
    this.metadataMaxSize = options.metadataMaxSize;
  }

  /** Before login, APPEND is refused anyway: its literal gets the small limit, so an
   * unauthenticated client cannot make the server buffer APPENDLIMIT bytes. */
  setAuthenticated(value: boolean): void {
    this.authenticated = value;
  }

  push(chunk: Buffer): void {
    if (this.dead || chunk.length === 0) return;
    if (this.buf.length === 0) {
      this.buf = chunk;
      return;
    }
    // Appends into spare room of a buffer that at least doubles when full, so a line trickled in
    // one byte per packet costs linear time: concatenating on every push copied the whole
    // pending line each time (a 64 KiB line sent byte by byte took seconds of CPU).
    const used = this.buf.byteOffset + this.buf.length;
    const ownsTail =
      this.spare !== null && this.buf.buffer === this.spare.buffer && used === this.spare.byteOffset + this.spareUsed;
    if (ownsTail && this.spareUsed + chunk.length <= this.spare!.length) {
      chunk.copy(this.spare!, this.spareUsed);
      this.spareUsed += chunk.length;
      this.buf = this.spare!.subarray(this.buf.byteOffset - this.spare!.byteOffset, this.spareUsed);
      return;
    }
    const next = Buffer.allocUnsafe(Math.max(4096, 2 * (this.buf.length + chunk.length)));
    this.buf.copy(next, 0);
    chunk.copy(next, this.buf.length);
    this.spare = next;
    this.spareUsed = this.buf.length + chunk.length;
    this.buf = next.subarray(0, this.spareUsed);
  }

  /**
   * Drops the first n bytes. Once everything received is consumed, neither the last chunk nor the
   * growable buffer is kept: a connection that waits (IDLE) then holds no input buffer at all.
   */
  private consumed(n: number): void {
    if (n >= this.buf.length) {
      this.buf = EMPTY;
      this.spare = null;
      this.spareUsed = 0;
    } else {
      this.buf = this.buf.subarray(n);
    }
    this.scanFrom = 0;
  }

  /** Bytes received and not yet consumed (for the session's backpressure). */
  get buffered(): number {
    return this.buf.length;
  }

  /**
   * Null when no command is partly received; otherwise the literal bytes of the command in
   * progress received so far (0 for a partial line). The session bounds how long a started
   * command may take to arrive, with more time as its literal bytes come: announcing a large
   * literal buys no time, sending it does.
   */
  get partial(): { literalBytesReceived: number } | null {
    if (this.buf.length === 0 && this.segments.length === 0 && this.literalLeft < 0) return null;
    return { literalBytesReceived: this.literalBytes - Math.max(0, this.literalLeft) };
  }

  /** The next unit is read as a plain line (IDLE DONE, AUTHENTICATE responses), not a command. */
  readLine(): void {
    this.mode = 'line';
  }

  /** Hands over the bytes received and not yet consumed (COMPRESS: they must be inflated). */
  takeBuffered(): Buffer {
    const rest = this.buf;
    this.consumed(rest.length);
    return rest;
  }

  /** Drops every byte received so far: after STARTTLS nothing sent in clear may be read as a
   * command inside TLS (RFC 3501 §6.2.1, CVE-2011-0411). */
  discardBuffered(): void {
    this.consumed(this.buf.length);
  }

  /** The next event, or null when more input is needed. */
  next(): ReceiverEvent | null {
    if (this.dead) return null;
    for (;;) {
      if (this.literalLeft >= 0) {
        if (!this.readLiteral()) return null;
        continue;
      }
      const lf = this.buf.indexOf(0x0a, this.scanFrom);
      if (lf < 0) {
        this.scanFrom = this.buf.length;
        if (this.buf.length > MAX_LINE_BYTES) return this.fatal('BAD', null, 'Line too long');
        return null;
      }
      if (lf > MAX_LINE_BYTES) return this.fatal('BAD', null, 'Line too long');
      const end = lf > 0 && this.buf[lf - 1] === 0x0d ? lf - 1 : lf;
      const line = ownCopy(this.buf.subarray(0, end));
      this.consumed(lf + 1);
      if (this.mode === 'line') {
        this.mode = 'command';
        return { kind: 'line', line };
      }
      const event = this.onLine(line, lf + 1);
      if (event) return event;
    }
  }

  private onLine(line: Buffer, consumed: number): ReceiverEvent | null {
    if (this.segments.length === 0) this.startCommand(line);
    this.size += consumed;
    const marker = findLiteralMarker(line);
    if (!marker) {
      this.segments.push(line);
      const command: RawCommand = { tag: this.tag, segments: this.segments, literals: this.literals, size: this.size, reserved: this.reserved };
      this.reserved = 0; // now owned by the command
      this.resetCommand();
      return { kind: 'command', command };
    }
    this.segments.push(line.subarray(0, marker.start));
    if (this.isSetMetadata && !marker.nonSync && this.metadataMaxSize !== undefined && (marker.size === null || marker.size > this.metadataMaxSize)) {
      // RFC 5464 §4.3: the value is too large; the client has not sent it yet, so the command is
      // refused with the size the server accepts and reception goes on. (A non-synchronising one
      // within the general literal limit is read and refused by the handler with the same code.)
      const tag = this.tag;
      this.resetCommand();
      return { kind: 'reject', tag, status: 'NO', code: 'METADATA MAXSIZE', text: 'Annotation value too large', fatal: false, limit: this.metadataMaxSize };
    }
    const limit = this.isAppend ? this.appendLimit : MAX_LITERAL_BYTES;
    const total = this.isAppend ? this.appendLimit * APPEND_COMMAND_FACTOR + MAX_COMMAND_BYTES : MAX_COMMAND_BYTES;
    const count = this.isAppend ? MAX_APPEND_MESSAGES * 2 : MAX_LITERALS_PER_COMMAND;
    let problem: string | null = null;
    let code: RejectCode | null = 'TOOBIG';
    if (marker.size === null || marker.size > limit) {
      problem = this.isAppend ? 'Message is larger than APPENDLIMIT' : 'Literal too big';
    } else if (this.size + marker.size > total) {
      problem = 'Command too big';
    } else if (this.literals.length >= count) {
      problem = 'Too many literals';
      code = null;
    } else if (this.isAppend && this.budget !== undefined) {
      // Memory for APPEND literals is shared by all connections: one client's uploads must not
      // exhaust it for the others (DESIGN.md invariant 4).
      if (this.budget.reserve(marker.size)) this.reserved += marker.size;
      else {
        problem = 'Server busy, try again later';
        code = 'UNAVAILABLE';
      }
    }
    if (problem !== null) {
      const tag = this.tag;
      const append = this.isAppend;
      // RFC 7888 §4: the bytes of a non-synchronising literal are already on their way and cannot
      // be told apart from commands: refuse, then close. A synchronising literal was not sent yet:
      // refuse the command (RFC 7889: NO [TOOBIG] for APPEND) and go on reading commands.
      if (marker.nonSync) return this.fatal('BAD', tag, problem, code);
      this.resetCommand();
      return { kind: 'reject', tag, status: append ? 'NO' : 'BAD', code, text: problem, fatal: false };
    }
    const size = marker.size ?? 0;
    this.literalBytes += size;
    this.literalLeft = size;
    this.literalBinary = marker.binary;
    this.literalParts = [];
    this.size += size;
    return marker.nonSync ? null : { kind: 'continue' };
  }

  private readLiteral(): boolean {
    if (this.literalLeft > 0) {
      if (this.buf.length === 0) return false;
      const take = Math.min(this.literalLeft, this.buf.length);
      this.literalParts.push(ownCopy(this.buf.subarray(0, take)));
      this.consumed(take);
      this.literalLeft -= take;
      if (this.literalLeft > 0) return false;
    }
    const data = this.literalParts.length === 1 ? this.literalParts[0]! : Buffer.concat(this.literalParts);
    this.literals.push({ data, binary: this.literalBinary });
    this.literalParts = [];
    this.literalLeft = -1;
    this.scanFrom = 0;
    return true;
  }

  private startCommand(line: Buffer): void {
    let i = 0;
    while (i < line.length && isTagByte(line[i]!)) i++;
    const tag = i > 0 && (i === line.length || line[i] === 0x20) ? line.toString('latin1', 0, i) : null;
    this.tag = tag;
    let j = i + 1;
    while (j < line.length && line[j] !== 0x20) j++;
    const name = tag === null ? '' : line.toString('latin1', i + 1, j).toUpperCase();
    this.isAppend = name === 'APPEND' && this.authenticated;
    this.isSetMetadata = name === 'SETMETADATA' && this.authenticated;
  }

  /** Gives a finished command's reserved bytes back to the shared budget. */
  release(command: RawCommand): void {
    if ((command.reserved ?? 0) > 0) this.budget?.release(command.reserved ?? 0);
    command.reserved = 0;
  }

  /** The connection is gone: gives back what a half-received command had reserved. */
  dispose(): void {
    this.dead = true;
    this.consumed(this.buf.length);
    this.resetCommand();
  }

  private resetCommand(): void {
    if (this.reserved > 0) this.budget?.release(this.reserved);
    this.reserved = 0;
    this.segments = [];
    this.literals = [];
    this.size = 0;
    this.literalBytes = 0;
    this.tag = null;
    this.isAppend = false;
    this.isSetMetadata = false;
  }

  private fatal(status: 'BAD', tag: string | null, text: string, code: RejectCode | null = null): ReceiverEvent {
    this.dead = true;
    this.consumed(this.buf.length);
    this.resetCommand();
    return { kind: 'reject', tag, status, code, text, fatal: true };
  }
}

const EMPTY = Buffer.alloc(0);

/**
 * A copy of received bytes in memory of its own. Buffer.from would take small copies from Node's
 * shared 8 KiB pool, and a line kept while its command runs (IDLE, for hours) would then keep the
 * whole pool slab alive, one per waiting connection.
 */
function ownCopy(bytes: Buffer): Buffer {
  const out = Buffer.allocUnsafeSlow(bytes.length);
  bytes.copy(out);
  return out;
}

interface Marker {
  start: number;
  /** null when the size is not a number below 2^32. */
  size: number | null;
  nonSync: boolean;
  binary: boolean;
}

/** Finds a literal marker `{n}`, `{n+}`, `~{n}` or `~{n+}` at the very end of a line. */
function findLiteralMarker(line: Buffer): Marker | null {
  let i = line.length - 1;
  if (i < 2 || line[i] !== 0x7d) return null;
  i--;
  const nonSync = line[i] === 0x2b;
  if (nonSync) i--;
  const digitsEnd = i + 1;
  while (i >= 0 && line[i]! >= 0x30 && line[i]! <= 0x39) i--;
  const digits = digitsEnd - (i + 1);
  if (digits === 0 || i < 0 || line[i] !== 0x7b) return null;
  const binary = i > 0 && line[i - 1] === 0x7e;
  const start = binary ? i - 1 : i;
  let size: number | null = null;
  if (digits <= MAX_SIZE_DIGITS) {
    const n = Number(line.toString('latin1', i + 1, digitsEnd));
    if (n <= 0xffffffff) size = n;
  }
  return { start, size, nonSync, binary };
}
