/**
 * Content-Transfer-Encoding decoding (RFC 2045 §6), for search text at ingest and for IMAP
 * BINARY[] (RFC 3516).
 *
 * Invariants: never throws on any input; decoding is linear in the input; an encoding we do not
 * know is reported as such (IMAP answers NO [UNKNOWN-CTE], RFC 3516 §4.3), never guessed.
 */

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HT = 0x09;
const EQ = 0x3d;

/** The identity encodings of RFC 2045 §6.2: the body is the data. */
const IDENTITY: ReadonlySet<string> = new Set(['7bit', '8bit', 'binary']);

export type TransferEncoding = 'identity' | 'base64' | 'quoted-printable';

/**
 * Classifies a Content-Transfer-Encoding value. A missing header means 7bit (RFC 2045 §6.1).
 * Returns null for an encoding this server cannot decode.
 */
export function classifyTransferEncoding(encoding: string | null | undefined): TransferEncoding | null {
  if (encoding === null || encoding === undefined) return 'identity';
  const e = encoding.trim().toLowerCase();
  if (e === '' || IDENTITY.has(e)) return 'identity';
  if (e === 'base64') return 'base64';
  if (e === 'quoted-printable') return 'quoted-printable';
  return null;
}

export type DecodeResult = { ok: true; data: Buffer } | { ok: false; reason: 'unknown-cte'; encoding: string };

/**
 * Decodes a part body by its Content-Transfer-Encoding. `{ ok: false }` means the encoding is
 * unknown: RFC 3516 §4.3 has the server answer NO [UNKNOWN-CTE] rather than guess.
 */
export function decodeTransfer(body: Buffer, encoding: string | null | undefined): DecodeResult {
  const kind = classifyTransferEncoding(encoding);
  if (kind === null) return { ok: false, reason: 'unknown-cte', encoding: (encoding ?? '').trim() };
  return { ok: true, data: decodeKnown(body, kind) };
}

export function decodeKnown(body: Buffer, kind: TransferEncoding): Buffer {
  switch (kind) {
    case 'identity':
      return body;
    case 'base64':
      return decodeBase64Lenient(body);
    case 'quoted-printable':
      return decodeQuotedPrintable(body);
  }
}

/** Value of each base64 alphabet byte (RFC 4648 §4), -1 elsewhere. Also accepts the URL-safe
 * alphabet (RFC 4648 §5), which some broken senders use. */
function base64Table(): Int8Array {
  const t = new Int8Array(256).fill(-1);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  for (let i = 0; i < alphabet.length; i++) t[alphabet.charCodeAt(i)] = i;
  t[0x2d] = 62; // '-'
  t[0x5f] = 63; // '_'
  return t;
}

const B64 = base64Table();

/**
 * Lenient base64: characters outside the alphabet (line breaks, spaces, garbage) are skipped, as
 * RFC 2045 §6.8 asks ("Any characters outside of the base64 alphabet are to be ignored"); padding
 * ends a quantum and decoding resumes after it (concatenated encodings); a trailing partial
 * quantum yields the whole bytes it holds.
 */
export function decodeBase64Lenient(input: Buffer): Buffer {
  const out = Buffer.allocUnsafe(Math.floor((input.length * 3) / 4) + 3);
  let o = 0;
  let acc = 0;
  let n = 0;
  for (let i = 0; i < input.length; i++) {
    const c = input[i]!;
    if (c === EQ) {
      // Padding: flush what the partial quantum holds and start a new one.
      if (n === 2) out[o++] = (acc >> 4) & 0xff;
      else if (n === 3) {
        out[o++] = (acc >> 10) & 0xff;
        out[o++] = (acc >> 2) & 0xff;
      }
      acc = 0;
      n = 0;
      continue;
    }
    const v = B64[c]!;
    if (v < 0) continue;
    acc = (acc << 6) | v;
    n++;
    if (n === 4) {
      out[o++] = (acc >> 16) & 0xff;
      out[o++] = (acc >> 8) & 0xff;
      out[o++] = acc & 0xff;
      acc = 0;
      n = 0;
    }
  }
  if (n === 2) out[o++] = (acc >> 4) & 0xff;
  else if (n === 3) {
    out[o++] = (acc >> 10) & 0xff;
    out[o++] = (acc >> 2) & 0xff;
  }
  return out.subarray(0, o);
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/**
 * Quoted-printable (RFC 2045 §6.7): "=XX" is a byte; "=" at the end of a line is a soft line
 * break; trailing whitespace on a line is transport padding and dropped (rule 3). A "=" not
 * followed by two hex digits is kept as is (the robust reading §6.7 suggests).
 */
export function decodeQuotedPrintable(input: Buffer): Buffer {
  const out = Buffer.allocUnsafe(input.length);
  let o = 0;
  let i = 0;
  const len = input.length;
  while (i < len) {
    const c = input[i]!;
    if (c === EQ) {
      const h1 = i + 1 < len ? hexValue(input[i + 1]!) : -1;
      const h2 = i + 2 < len ? hexValue(input[i + 2]!) : -1;
      if (h1 >= 0 && h2 >= 0) {
        out[o++] = (h1 << 4) | h2;
        i += 3;
        continue;
      }
      // Soft line break: "=" then optional whitespace then the line end (RFC 2045 §6.7 rule 5).
      let j = i + 1;
      while (j < len && (input[j] === SP || input[j] === HT)) j++;
      if (j < len && input[j] === CR && input[j + 1] === LF) {
        i = j + 2;
        continue;
      }
      if (j < len && input[j] === LF) {
        i = j + 1;
        continue;
      }
      if (j >= len) {
        i = len;
        continue;
      }
      out[o++] = c;
      i++;
      continue;
    }
    if (c === SP || c === HT) {
      // Trailing whitespace before a line end is padding (RFC 2045 §6.7 rule 3).
      let j = i;
      while (j < len && (input[j] === SP || input[j] === HT)) j++;
      if (j >= len || input[j] === LF || (input[j] === CR && input[j + 1] === LF)) {
        i = j;
        continue;
      }
      while (i < j) out[o++] = input[i++]!;
      continue;
    }
    out[o++] = c;
    i++;
  }
  return out.subarray(0, o);
}
