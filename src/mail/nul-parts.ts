/**
 * Re-encodes the parts of a message that hold NUL octets as base64, so the message can be served
 * as an IMAP literal again.
 *
 * Why: a client may APPEND binary content with a literal8 (RFC 3516 §4.4), but BODY[...] answers
 * use the plain literal, which may not contain NUL (RFC 9051 §4.3, CHAR8). Storing such a part as
 * received would leave no valid way to return it to a client that does not use BINARY. A leaf
 * part whose Content-Transfer-Encoding is an identity one (7bit, 8bit, binary or absent) carries
 * its data as is, so encoding that data as base64 keeps the content: BINARY[part] decodes to the
 * same octets, and BINARY.SIZE is unchanged.
 *
 * Invariants: only leaf parts are rewritten (headers, preambles and boundaries are never touched
 * but for the part's own Content-Transfer-Encoding field); the result holds no NUL, or the
 * function returns null and the caller refuses the message (RFC 3516 §4.4: NO [UNKNOWN-CTE]).
 */
import { classifyTransferEncoding } from './transfer.js';
import type { MimePart, ParsedMessage } from './types.js';

interface Edit {
  start: number;
  end: number;
  data: Buffer;
}

const CTE_BASE64 = Buffer.from('Content-Transfer-Encoding: base64\r\n');
/** RFC 2045 §6.8: encoded lines are at most 76 characters. */
const LINE = 76;

/**
 * Returns the message with every NUL-holding leaf part re-encoded as base64, the message itself
 * when it holds no NUL, or null when a NUL sits where re-encoding cannot remove it (a header, a
 * multipart preamble, a part already in base64 or quoted-printable).
 */
export function encodeNulParts(raw: Buffer, parsed: ParsedMessage): Buffer | null {
  if (!raw.includes(0)) return raw;
  const edits: Edit[] = [];
  if (!collect(raw, parsed.root, edits)) return null;
  edits.sort((a, b) => a.start - b.start);
  const chunks: Buffer[] = [];
  let at = 0;
  for (const e of edits) {
    chunks.push(raw.subarray(at, e.start), e.data);
    at = e.end;
  }
  chunks.push(raw.subarray(at));
  const out = Buffer.concat(chunks);
  return out.includes(0) ? null : out;
}

/** Adds the edits for `part`; false when a NUL in it cannot be re-encoded. */
function collect(raw: Buffer, part: MimePart, edits: Edit[]): boolean {
  if (part.parts.length > 0) return part.parts.every((p) => collect(raw, p, edits));
  if (part.message !== null) return collect(raw, part.message.root, edits);
  const body = raw.subarray(part.bodyStart, part.bodyEnd);
  if (!body.includes(0)) return true;
  // A stand-in part without a header of its own has nowhere to say base64.
  if (part.headerStart === part.bodyStart) return false;
  if (classifyTransferEncoding(part.encoding) !== 'identity') return false;
  edits.push(headerEdit(raw, part), { start: part.bodyStart, end: part.bodyEnd, data: base64Lines(body) });
  return true;
}

/** Replaces the part's Content-Transfer-Encoding field (with its folded lines), or adds one at
 * the end of the header section, before the blank line. */
function headerEdit(raw: Buffer, part: MimePart): Edit {
  const header = raw.subarray(part.headerStart, part.bodyStart);
  let lineStart = 0;
  let fieldStart = -1;
  while (lineStart < header.length) {
    let lineEnd = header.indexOf(0x0a, lineStart);
    lineEnd = lineEnd < 0 ? header.length : lineEnd + 1;
    const first = header[lineStart];
    const continuation = first === 0x20 || first === 0x09;
    if (fieldStart >= 0 && !continuation) {
      return { start: part.headerStart + fieldStart, end: part.headerStart + lineStart, data: CTE_BASE64 };
    }
    if (!continuation && /^content-transfer-encoding[ \t]*:/i.test(header.toString('latin1', lineStart, Math.min(lineEnd, lineStart + 40)))) {
      fieldStart = lineStart;
    }
    lineStart = lineEnd;
  }
  // No field: insert before the blank line that ends the header (the header's last line).
  const blank = blankLineStart(header);
  return { start: part.headerStart + blank, end: part.headerStart + blank, data: CTE_BASE64 };
}

/** Offset of the empty line closing a header section (the section's end when there is none). */
function blankLineStart(header: Buffer): number {
  if (header.length >= 2 && header[header.length - 1] === 0x0a) {
    return header[header.length - 2] === 0x0d ? header.length - 2 : header.length - 1;
  }
  return header.length;
}

function base64Lines(data: Buffer): Buffer {
  const text = data.toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < text.length; i += LINE) lines.push(text.slice(i, i + LINE));
  return Buffer.from(lines.join('\r\n'), 'latin1');
}
