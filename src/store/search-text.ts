/**
 * What the text index holds for a message, derived once at ingest from the parse record, and
 * the header-field match that SEARCH HEADER needs (RFC 9051 §6.4.4). Shared by every backend.
 */
import type { DecodedAddress, EnvelopeAddress, ParsedMessage } from '../mail/types.js';

/** Bounds the header text kept for HEADER search; real headers are far smaller. */
export const MAX_INDEXED_HEADER_BYTES = 256 * 1024;

export interface SearchColumns {
  subject: string;
  from: string;
  to: string;
  cc: string;
  bcc: string;
  /** The raw top-level header section. */
  headers: string;
  body: string;
}

function decodedList(list: readonly DecodedAddress[]): string {
  return list.map((a) => (a.name ? `${a.name} <${a.address}>` : a.address)).join(', ');
}

function envelopeList(list: readonly EnvelopeAddress[] | null): string {
  if (list === null) return '';
  return list
    .filter((a) => a.mailbox !== null && a.host !== null)
    .map((a) => {
      const addr = `${a.mailbox ?? ''}@${a.host ?? ''}`;
      return a.name ? `${a.name} <${addr}>` : addr;
    })
    .join(', ');
}

export function searchColumns(raw: Buffer, parsed: ParsedMessage): SearchColumns {
  const headerEnd = Math.min(parsed.root.bodyStart, raw.length, MAX_INDEXED_HEADER_BYTES);
  return {
    subject: parsed.subject,
    from: decodedList(parsed.from),
    to: decodedList(parsed.to),
    cc: decodedList(parsed.cc),
    bcc: envelopeList(parsed.envelope.bcc),
    headers: raw.subarray(0, headerEnd).toString('utf8'),
    body: parsed.text,
  };
}

/**
 * Whether a header section has a field `name` whose unfolded value contains `needle`,
 * case-insensitively. An empty needle matches every message that has the field
 * (RFC 9051 §6.4.4 HEADER).
 */
export function headerContains(headers: string, name: string, needle: string): boolean {
  const want = name.toLowerCase();
  const lowerNeedle = needle.toLowerCase();
  // RFC 5322 §2.2.3: a line starting with white space continues the previous field.
  const unfolded = headers.replace(/\r?\n(?=[ \t])/g, '');
  for (const line of unfolded.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    if (line.slice(0, colon).trimEnd().toLowerCase() !== want) continue;
    if (line.slice(colon + 1).trim().toLowerCase().includes(lowerNeedle)) return true;
  }
  return false;
}
