/**
 * BINARY[section]<partial> and BINARY.SIZE[section] (RFC 3516): the content of a part with its
 * Content-Transfer-Encoding removed.
 *
 * Invariants:
 * - a leaf part is decoded (base64, quoted-printable) or passed as is (7bit, 8bit, binary, or no
 *   header); a multipart, an encapsulated message, or the whole message (BINARY[]) is returned
 *   raw, since a CTE there can only be an identity one (RFC 2045 §6.4);
 * - an encoding we cannot decode is an UnknownCteError, raised before anything is read, which the
 *   command turns into `NO [UNKNOWN-CTE]` (RFC 3516 §4.3);
 * - the partial applies to the decoded bytes (RFC 3516 §4.1).
 */
import type { MimePart, ParsedMessage } from '../../mail/types.js';
import { classifyTransferEncoding, decodeKnown, type TransferEncoding } from '../../mail/transfer.js';
import type { Partial, SectionSpec } from '../protocol/ast.js';
import {
  clipPartial,
  findPart,
  readSectionBytes,
  resolveSection,
  sectionBytes,
  type BlobReader,
  type SectionBytes,
  type SectionSource,
} from './section.js';

/** RFC 3516 §4.3: the part's Content-Transfer-Encoding is one the server cannot decode. */
export class UnknownCteError extends Error {
  /** The IMAP response code the command answers with: `NO [UNKNOWN-CTE]`. */
  readonly code = 'UNKNOWN-CTE';
  readonly encoding: string;
  constructor(encoding: string) {
    super(`Cannot decode content transfer encoding: ${encoding}`);
    this.name = 'UnknownCteError';
    this.encoding = encoding;
  }
}

export type BinarySource =
  | SectionSource
  | { kind: 'decode'; start: number; end: number; encoding: Exclude<TransferEncoding, 'identity'> };

function isLeaf(part: MimePart): boolean {
  if (part.type === 'multipart') return false;
  return !(part.type === 'message' && part.message !== null);
}

/** Resolves a BINARY section; throws UnknownCteError for an encoding we cannot decode. */
export function resolveBinary(parsed: ParsedMessage, section: SectionSpec): BinarySource {
  // RFC 3516 §4.1 section-binary is part numbers only; anything else is read as BODY would.
  if (section.text !== null) return resolveSection(parsed, section);
  if (section.part.length === 0) return { kind: 'range', start: 0, end: parsed.size };
  const part = findPart(parsed.root, section.part);
  if (part === null) return { kind: 'empty' };
  if (!isLeaf(part)) return { kind: 'range', start: part.bodyStart, end: part.bodyEnd };
  const kind = classifyTransferEncoding(part.encoding);
  if (kind === null) throw new UnknownCteError((part.encoding ?? '').trim());
  if (kind === 'identity') return { kind: 'range', start: part.bodyStart, end: part.bodyEnd };
  return { kind: 'decode', start: part.bodyStart, end: part.bodyEnd, encoding: kind };
}

async function decoded(source: { start: number; end: number; encoding: Exclude<TransferEncoding, 'identity'> }, blobHash: string, blobs: BlobReader): Promise<Buffer> {
  if (source.end <= source.start) return Buffer.alloc(0);
  return decodeKnown(await blobs.readBlob(blobHash, source.start, source.end), source.encoding);
}

/** The decoded bytes of a BINARY section, partial applied. */
export async function binaryBytes(source: BinarySource, partial: Partial | null, blobHash: string, blobs: BlobReader): Promise<SectionBytes> {
  if (source.kind !== 'decode') return sectionBytes(source, partial, blobHash, blobs);
  const data = await decoded(source, blobHash, blobs);
  const { from, to } = clipPartial(data.length, partial);
  return { kind: 'buffer', data: data.subarray(from, to) };
}

/** RFC 3516 §4.2 BINARY.SIZE: the size of the decoded content (no read for identity parts). */
export async function binarySize(source: BinarySource, blobHash: string, blobs: BlobReader): Promise<number> {
  switch (source.kind) {
    case 'empty':
      return 0;
    case 'range':
      return Math.max(0, source.end - source.start);
    case 'fields':
      return (await readSectionBytes(await sectionBytes(source, null, blobHash, blobs), blobHash, blobs)).length;
    case 'decode':
      return (await decoded(source, blobHash, blobs)).length;
  }
}
