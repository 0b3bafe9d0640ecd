/**
 * BODY[section]<partial> (RFC 9051 §6.4.5): which bytes of a stored message a section names.
 *
 * Invariants:
 * - the message is never parsed again: a section resolves to a byte range of the stored blob,
 *   from the offsets kept at ingest (ParsedMessage), or, for HEADER.FIELDS(.NOT), to the header
 *   range filtered field by field;
 * - a section naming a part that does not exist, or HEADER/TEXT of a part that is not an
 *   encapsulated message, gives an empty string (as Dovecot does) rather than an error;
 * - a partial <origin.octets> is applied last, on the section's bytes, and is clipped at their end.
 */
import type { MimePart, ParsedMessage } from '../../mail/types.js';
import { filterHeaderFields } from '../../mail/headers.js';
import type { Partial, SectionSpec } from '../protocol/ast.js';

/** What a section designates, before any byte is read. Ranges are absolute blob offsets. */
export type SectionSource =
  | { kind: 'range'; start: number; end: number }
  | { kind: 'fields'; start: number; end: number; names: string[]; not: boolean }
  | { kind: 'empty' };

/** Minimal read access to the stored bytes (a subset of MailStore). */
export interface BlobReader {
  readBlob(blobHash: string, start?: number, end?: number): Promise<Buffer>;
  streamBlob(blobHash: string, start?: number, end?: number): AsyncIterable<Buffer>;
}

function isMessagePart(part: MimePart): part is MimePart & { message: NonNullable<MimePart['message']> } {
  return part.type === 'message' && part.message !== null;
}

/** RFC 9051 §6.4.5: the parts numbered directly under a message. A non-multipart message "only
 * has a part 1": its body. */
function messageChildren(root: MimePart): MimePart[] {
  return root.type === 'multipart' ? root.parts : [root];
}

/** The parts numbered directly under a part: the children of a multipart, or the parts of the
 * message a MESSAGE/RFC822 (or MESSAGE/GLOBAL) part encapsulates. */
function partChildren(part: MimePart): MimePart[] {
  if (part.type === 'multipart') return part.parts;
  if (isMessagePart(part)) return messageChildren(part.message.root);
  return [];
}

/** Follows a part path ([] is the message itself, whose root is returned) or returns null when
 * some number names no part. */
export function findPart(root: MimePart, path: readonly number[]): MimePart | null {
  if (path.length === 0) return root;
  let current = root;
  let children = messageChildren(root);
  for (const n of path) {
    const next = children[n - 1];
    if (next === undefined || n < 1) return null;
    current = next;
    children = partChildren(current);
  }
  return current;
}

/**
 * Resolves a section against the parse record. RFC 9051 §6.4.5:
 * - no part and no text: the whole message; a part number alone: that part's body (for a
 *   MESSAGE/RFC822 part, the whole encapsulated message);
 * - HEADER, HEADER.FIELDS(.NOT), TEXT: of the message, or of the message a MESSAGE/RFC822 part
 *   encapsulates ("provided that the numeric part specifier refers to a part of type
 *   MESSAGE/RFC822 or MESSAGE/GLOBAL");
 * - MIME: the MIME header of the part (the message header for part 1 of a non-multipart message).
 */
export function resolveSection(parsed: ParsedMessage, section: SectionSpec): SectionSource {
  const part = findPart(parsed.root, section.part);
  if (part === null) return { kind: 'empty' };
  const top = section.part.length === 0;

  if (section.text === null) {
    if (top) return { kind: 'range', start: 0, end: parsed.size };
    return { kind: 'range', start: part.bodyStart, end: part.bodyEnd };
  }
  if (section.text === 'MIME') {
    // RFC 9051 §6.4.5: MIME needs a part number; the parser refuses [MIME] alone. If one comes
    // anyway, the message header is the nearest meaning.
    return { kind: 'range', start: part.headerStart, end: part.bodyStart };
  }

  // HEADER, HEADER.FIELDS(.NOT), TEXT: of a message.
  let msgRoot: MimePart;
  if (top) msgRoot = part;
  else if (isMessagePart(part)) msgRoot = part.message.root;
  else return { kind: 'empty' };

  switch (section.text) {
    case 'TEXT':
      return { kind: 'range', start: msgRoot.bodyStart, end: msgRoot.bodyEnd };
    case 'HEADER':
      return { kind: 'range', start: msgRoot.headerStart, end: msgRoot.bodyStart };
    case 'HEADER.FIELDS':
    case 'HEADER.FIELDS.NOT':
      return {
        kind: 'fields',
        start: msgRoot.headerStart,
        end: msgRoot.bodyStart,
        names: section.fields ?? [],
        not: section.text === 'HEADER.FIELDS.NOT',
      };
  }
}

/** The content of a section after the partial, either as bytes already in hand or as a range
 * of the blob still to read (so a large body can be streamed). */
export type SectionBytes = { kind: 'buffer'; data: Buffer } | { kind: 'range'; start: number; end: number };

/** RFC 9051 §6.4.5 partial: "<origin.octets>": octets from origin, clipped at the end; an origin
 * past the end gives an empty string. */
export function clipPartial(length: number, partial: Partial | null): { from: number; to: number } {
  if (partial === null) return { from: 0, to: length };
  const from = Math.min(partial.offset, length);
  const to = Math.min(from + partial.length, length);
  return { from, to };
}

/** Applies the partial and reads what must be read now (the header, for HEADER.FIELDS). */
export async function sectionBytes(
  source: SectionSource,
  partial: Partial | null,
  blobHash: string,
  blobs: BlobReader,
): Promise<SectionBytes> {
  switch (source.kind) {
    case 'empty':
      return { kind: 'buffer', data: Buffer.alloc(0) };
    case 'range': {
      const start = source.start;
      const end = Math.max(source.start, source.end);
      const { from, to } = clipPartial(end - start, partial);
      return { kind: 'range', start: start + from, end: start + to };
    }
    case 'fields': {
      const header = source.end > source.start ? await blobs.readBlob(blobHash, source.start, source.end) : Buffer.alloc(0);
      const data = filterHeaderFields(header, source.names, source.not);
      const { from, to } = clipPartial(data.length, partial);
      return { kind: 'buffer', data: data.subarray(from, to) };
    }
  }
}

/** Reads a section's bytes into one buffer (for small sections and tests). */
export async function readSectionBytes(bytes: SectionBytes, blobHash: string, blobs: BlobReader): Promise<Buffer> {
  if (bytes.kind === 'buffer') return bytes.data;
  if (bytes.end <= bytes.start) return Buffer.alloc(0);
  return blobs.readBlob(blobHash, bytes.start, bytes.end);
}
