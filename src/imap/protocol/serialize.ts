/**
 * ImapValue -> bytes. Sans-IO: the session writes what this returns. Every response is built from
 * typed values; client data can only appear as a quoted string or a literal, never as raw text, so
 * no CRLF or bracket a client sent can change the structure of a response.
 *
 * Invariants:
 * - A string is quoted only if it has no CR, LF or NUL, is short, and is 7-bit or the client
 *   accepts UTF-8 (RFC 6855 §3); otherwise it is a literal (RFC 9051 §4.3).
 * - Literal sizes are byte counts of exactly the bytes written after them.
 */
import type { ImapValue } from './ast.js';

/** Longer strings go out as literals: keeps lines short for clients with line limits. */
export const MAX_QUOTED_BYTES = 1024;

export interface SerializeOptions {
  /** UTF8=ACCEPT or IMAP4rev2 enabled: 8-bit UTF-8 may appear in quoted strings. */
  utf8: boolean;
}

export interface StreamPart {
  stream: AsyncIterable<Buffer>;
  size: number;
}

/** Bytes ready to write, with streamed literal bodies in place. */
export type Output = Array<Buffer | StreamPart>;

const CRLF = Buffer.from('\r\n');

function canQuote(bytes: Buffer, utf8: boolean): boolean {
  if (bytes.length > MAX_QUOTED_BYTES) return false;
  for (const b of bytes) {
    if (b === 0x00 || b === 0x0d || b === 0x0a) return false;
    if (b >= 0x80 && !utf8) return false;
  }
  return true;
}

function quote(bytes: Buffer): Buffer {
  const out: number[] = [0x22];
  for (const b of bytes) {
    if (b === 0x22 || b === 0x5c) out.push(0x5c);
    out.push(b);
  }
  out.push(0x22);
  return Buffer.from(out);
}

function literalHead(size: number, binary: boolean): Buffer {
  return Buffer.from(`${binary ? '~' : ''}{${size}}\r\n`, 'latin1');
}

/** Atoms are written as is; refuse anything that could break the response framing. */
function checkAtom(atom: string): string {
  if (atom.length === 0 || /[\s\x00-\x1f\x7f"{]/.test(atom)) throw new Error(`Cannot serialise atom: ${JSON.stringify(atom)}`);
  return atom;
}

/**
 * Gathers a response: atoms, numbers and punctuation as text, turned into one Buffer per run
 * between quoted strings and literals (a FETCH FLAGS response is then one Buffer, not one per
 * token: STORE 1:* answers 100,000 of them).
 */
class Builder {
  protected text = '';
  constructor(private readonly out: Output) {}

  add(text: string): void {
    this.text += text;
  }

  bytes(...parts: Array<Buffer | StreamPart>): void {
    this.end();
    this.out.push(...parts);
  }

  /** Hands the pending text over to out. */
  end(): void {
    if (this.text.length === 0) return;
    this.out.push(Buffer.from(this.text, 'latin1'));
    this.text = '';
  }
}

/** A Builder for text alone: a value that must be bytes (a literal, a string quoted with
 * escapes or 8-bit) marks it failed instead (see untaggedText). */
class TextBuilder extends Builder {
  failed = false;
  constructor() {
    super([]);
  }

  override bytes(): void {
    this.failed = true;
  }

  override end(): void {}

  get result(): string {
    return this.text;
  }
}

/**
 * Values already written out, kept to be written again as the same bytes: a message's ENVELOPE
 * or BODYSTRUCTURE never changes, and building and writing its value tree again for every FETCH
 * of it costs more than the rest of the response (see fetch/item-cache.ts). Only `of` makes one,
 * from typed values through this serializer, so the bytes keep every guarantee above; `kept`
 * gives back, with its `utf8`, the text of one that `of` made (the item cache keeps the text
 * alone).
 */
export class Serialized {
  private constructor(
    /** The bytes as a Latin-1 string (a character per byte): added to a response's text like
     * an atom, where a Buffer would end the text run (see Builder). */
    readonly text: string,
    /** Written for a client that accepts UTF-8 in quoted strings (SerializeOptions.utf8). */
    readonly utf8: boolean,
  ) {}

  /** The text of one that `of` made, kept meanwhile as text alone (the FETCH item cache keeps
   * it so), with the same `utf8`. */
  static kept(text: string, utf8: boolean): Serialized {
    return new Serialized(text, utf8);
  }

  /** `values` separated by SP, as writeValues writes them; null when one is a stream (its bytes
   * are not in hand). */
  static of(values: readonly ImapValue[], opts: SerializeOptions): Serialized | null {
    const out: Output = [];
    writeValues(values, opts, out);
    let text = '';
    for (const p of out) {
      if (!Buffer.isBuffer(p)) return null;
      text += p.toString('latin1');
    }
    return new Serialized(text, opts.utf8);
  }
}

const ASCII = /^[\x00-\x7f]*$/;

/** A quoted string when it needs no escaping and is plain ASCII: most strings in responses. */
const PLAIN_QUOTABLE = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

function build(value: ImapValue, opts: SerializeOptions, b: Builder): void {
  if (value === null) {
    b.add('NIL');
  } else if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) throw new Error(`Cannot serialise number: ${value}`);
    b.add(String(value));
  } else if (typeof value === 'string') {
    if (value.length <= MAX_QUOTED_BYTES && PLAIN_QUOTABLE.test(value)) {
      b.add(`"${value}"`);
      return;
    }
    const bytes = Buffer.from(value, 'utf8');
    if (canQuote(bytes, opts.utf8)) b.bytes(quote(bytes));
    else b.bytes(literalHead(bytes.length, false), bytes);
  } else if (Array.isArray(value)) {
    b.add('(');
    for (let i = 0; i < value.length; i++) {
      if (i > 0) b.add(' ');
      build(value[i]!, opts, b);
    }
    b.add(')');
  } else if (value instanceof Serialized) {
    // Bytes written for a client without UTF8=ACCEPT suit every client; the other way round, a
    // quoted string could carry 8-bit text to a client that cannot take it (RFC 6855 §3).
    if (value.utf8 && !opts.utf8) throw new Error('Cannot serialise: UTF-8 bytes for a client without UTF8=ACCEPT');
    b.add(value.text);
  } else if ('atom' in value) {
    b.add(checkAtom(value.atom));
  } else if ('concat' in value) {
    // Written back to back: multipart BODYSTRUCTURE children (RFC 9051 §9 body-type-mpart).
    for (const v of value.concat) build(v, opts, b);
  } else if ('literal' in value) {
    b.bytes(literalHead(value.literal.length, value.binary === true), value.literal);
  } else {
    b.bytes(literalHead(value.size, value.binary === true), { stream: value.stream, size: value.size });
  }
}

export function writeValue(value: ImapValue, opts: SerializeOptions, out: Output): void {
  const b = new Builder(out);
  build(value, opts, b);
  b.end();
}

/** Values separated by SP, without CRLF. */
export function writeValues(values: readonly ImapValue[], opts: SerializeOptions, out: Output): void {
  const b = new Builder(out);
  buildValues(values, opts, b);
  b.end();
}

function buildValues(values: readonly ImapValue[], opts: SerializeOptions, b: Builder): void {
  for (let i = 0; i < values.length; i++) {
    if (i > 0) b.add(' ');
    build(values[i]!, opts, b);
  }
}

/** A parenthesised list of atoms as response text, `(\\Seen $Work)`: for responses written as
 * text in bulk (STORE 1:* on a large mailbox), the same bytes `untagged` writes for it. */
export function atomListText(atoms: readonly string[]): string {
  return `(${atoms.map(checkAtom).join(' ')})`;
}

/** `* value value ...` CRLF. */
export function untagged(values: readonly ImapValue[], opts: SerializeOptions): Output {
  const out: Output = [];
  const b = new Builder(out);
  b.add('* ');
  buildValues(values, opts, b);
  b.add('\r\n');
  b.end();
  return out;
}

/**
 * The bytes `untagged` writes for these values, as Latin-1 text (a character per byte), when it
 * would write them as text alone: null when one must be bytes (a literal, a string quoted with
 * escapes or 8-bit). For responses gathered as text in bulk (FETCH of items in hand): no Buffer
 * for each of them.
 */
export function untaggedText(values: readonly ImapValue[], opts: SerializeOptions): string | null {
  const b = new TextBuilder();
  b.add('* ');
  buildValues(values, opts, b);
  if (b.failed) return null;
  b.add('\r\n');
  return b.result;
}

/**
 * `* name n n ...` CRLF: a response of an atom and numbers (SORT of a whole mailbox), written with
 * one join rather than a value per number (the same bytes untagged writes for them).
 */
export function untaggedNumbers(name: string, numbers: ArrayLike<number>): Output {
  const head = `* ${checkAtom(name)}`;
  // Digits written straight into the buffer: join and a string per number cost 20 ms for
  // 100,000 numbers. Numbers of response lists are 32-bit (RFC 9051 §9 number: nz-number).
  const out = Buffer.allocUnsafe(head.length + numbers.length * 11 + 2);
  let at = out.write(head, 'latin1');
  for (let q = 0; q < numbers.length; q++) {
    out[at++] = 0x20;
    at = writeNumber(out, at, numbers[q]!);
  }
  out[at++] = 0x0d;
  out[at++] = 0x0a;
  return [out.subarray(0, at)];
}

/**
 * Writes the decimal digits of a 32-bit number (RFC 9051 §9 number) at `at`, at most 10 bytes;
 * returns the position after them. For responses written in bulk without a string per number.
 */
export function writeNumber(out: Buffer, at: number, n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`Cannot serialise number: ${n}`);
  let digits = 1;
  for (let p = 10; p <= n; p *= 10) digits++;
  let v = n;
  for (let d = at + digits - 1; d >= at; d--) {
    const r = v % 10;
    out[d] = 0x30 + r;
    v = (v - r) / 10;
  }
  return at + digits;
}

/**
 * `* name bytes` CRLF where `bytes` are nested lists of numbers already written out (THREAD's
 * thread-lists for a whole mailbox: a value per message would cost more than threading it).
 * Anything but digits, spaces and parentheses is refused.
 */
export function untaggedNested(name: string, bytes: Buffer): Output {
  for (const b of bytes) {
    if (!((b >= 0x30 && b <= 0x39) || b === 0x20 || b === 0x28 || b === 0x29)) throw new Error('Cannot serialise nested numbers: unexpected byte');
  }
  return [Buffer.from(`* ${checkAtom(name)}${bytes.length > 0 ? ' ' : ''}`, 'latin1'), bytes, CRLF];
}

export type Status = 'OK' | 'NO' | 'BAD' | 'BYE' | 'PREAUTH';

/** Human-readable text is ours, never the client's; still, it must stay on one line. */
function safeText(text: string): string {
  return text.replace(/[\r\n\x00]/g, ' ');
}

/**
 * A status response: `tag SP status SP ["[" code "]" SP] text CRLF` (RFC 9051 §7.1), tag "*" for
 * untagged. The tag has been validated by the parser (RFC 9051 §9 tag).
 */
export function statusResponse(tag: string, status: Status, code: readonly ImapValue[] | null, text: string, opts: SerializeOptions): Output {
  // As one Buffer when the tag and the code are ASCII text (every command's OK): the same bytes
  // as the parts below, whose Latin-1 and UTF-8 encodings agree on ASCII.
  const head = `${checkAtom(tag)} ${status} `;
  let codeText: string | null = '';
  if (code !== null && code.length > 0) {
    const b = new TextBuilder();
    buildValues(code, opts, b);
    codeText = b.failed ? null : `[${b.result}] `;
  }
  if (codeText !== null && ASCII.test(head) && ASCII.test(codeText)) return [Buffer.from(`${head}${codeText}${safeText(text) || status}\r\n`, 'utf8')];
  const out: Output = [Buffer.from(head, 'latin1')];
  if (code !== null && code.length > 0) {
    out.push(Buffer.from('['));
    writeValues(code, opts, out);
    out.push(Buffer.from('] '));
  }
  out.push(Buffer.from(safeText(text) || status, 'utf8'), CRLF);
  return out;
}

/** `+ text` CRLF (RFC 9051 §7.6), or `+ base64` for a SASL challenge. */
export function continuation(text: string): Buffer {
  return Buffer.from(`+ ${safeText(text)}\r\n`, 'utf8');
}

/** Formats a sorted list of numbers as a sequence set ("1:3,5") for response codes. */
export function formatSet(numbers: readonly number[]): string {
  const parts: string[] = [];
  let i = 0;
  while (i < numbers.length) {
    const start = numbers[i]!;
    let end = start;
    while (i + 1 < numbers.length && numbers[i + 1] === end + 1) {
      i++;
      end = numbers[i]!;
    }
    parts.push(start === end ? String(start) : `${start}:${end}`);
    i++;
  }
  return parts.join(',');
}
