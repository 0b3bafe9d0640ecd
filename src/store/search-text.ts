/**
 * What the text index holds for a message, derived once at ingest from the parse record, and
 * the header-field match that SEARCH HEADER needs (RFC 9051 §6.4.4). Shared by every backend.
 */
import type { DecodedAddress, EnvelopeAddress, ParsedMessage } from '../mail/types.js';

/** Bounds the header text kept for HEADER search; real headers are far smaller. */
export const MAX_INDEXED_HEADER_BYTES = 256 * 1024;

/**
 * Header fields left out of the indexed header text: trace and signature fields are long,
 * mostly base64 or machine data that nobody searches by substring, and would dominate the
 * index size and ingest cost. HEADER searches on them read the header bytes instead.
 */
export const UNINDEXED_HEADER_FIELDS: ReadonlySet<string> = new Set([
  'received',
  'x-received',
  'received-spf',
  'dkim-signature',
  'x-google-dkim-signature',
  'arc-seal',
  'arc-message-signature',
  'arc-authentication-results',
  'authentication-results',
  'x-gm-message-state',
]);

export interface SearchColumns {
  subject: string;
  from: string;
  to: string;
  cc: string;
  bcc: string;
  /** The raw top-level header section without the UNINDEXED_HEADER_FIELDS. */
  headers: string;
  body: string;
}

/** Splits a header section into whole fields (each with its continuation lines). */
function headerFields(section: string): string[] {
  const fields: string[] = [];
  for (const line of section.split(/(?<=\n)/)) {
    // RFC 5322 §2.2.3: a line starting with white space continues the previous field.
    if ((line.startsWith(' ') || line.startsWith('\t')) && fields.length > 0) fields[fields.length - 1] += line;
    else fields.push(line);
  }
  return fields;
}

function fieldName(field: string): string {
  const colon = field.indexOf(':');
  return colon <= 0 ? '' : field.slice(0, colon).trimEnd().toLowerCase();
}

/** The header section with the unindexed fields removed. */
export function indexedHeaders(section: string): string {
  return headerFields(section)
    .filter((f) => !UNINDEXED_HEADER_FIELDS.has(fieldName(f)))
    .join('');
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

/** Group names of an address list (RFC 5322 §3.4 `name: members;`): the envelope opens a group
 * with {mailbox: name, host: null}. SEARCH TO/CC/BCC match them too (as Dovecot does). */
function groupNames(list: readonly EnvelopeAddress[] | null): string {
  if (list === null) return '';
  return list.filter((a) => a.host === null && a.mailbox !== null).map((a) => a.mailbox).join(', ');
}

function withGroups(addresses: string, list: readonly EnvelopeAddress[] | null): string {
  const groups = groupNames(list);
  return groups === '' ? addresses : addresses === '' ? groups : `${addresses}, ${groups}`;
}

export function searchColumns(raw: Buffer, parsed: ParsedMessage): SearchColumns {
  const headerEnd = Math.min(parsed.root.bodyStart, raw.length, MAX_INDEXED_HEADER_BYTES);
  return {
    subject: parsed.subject,
    from: decodedList(parsed.from),
    to: withGroups(decodedList(parsed.to), parsed.envelope.to),
    cc: withGroups(decodedList(parsed.cc), parsed.envelope.cc),
    bcc: withGroups(envelopeList(parsed.envelope.bcc), parsed.envelope.bcc),
    headers: indexedHeaders(raw.subarray(0, headerEnd).toString('utf8')),
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
  for (const field of headerFields(headers)) {
    if (fieldName(field) !== want) continue;
    // Unfolded value (RFC 5322 §2.2.3): CRLF before white space removed.
    const value = field.slice(field.indexOf(':') + 1).replace(/\r?\n(?=[ \t])/g, '').trim();
    if (value.toLowerCase().includes(lowerNeedle)) return true;
  }
  return false;
}

/** Most trigrams put in one index query; more add little selectivity (the match is verified). */
const MAX_QUERY_TRIGRAMS = 24;

/**
 * An FTS5 query (trigram tokenizer) finding the rows that contain every trigram of the needle,
 * in the given columns: a superset of the substring matches, which the caller verifies. Null
 * when the needle is under 3 characters (the index cannot help).
 */
export function trigramQuery(needle: string, columns: readonly string[] | null): string | null {
  const chars = [...needle];
  if (chars.length < 3) return null;
  // Non-overlapping trigrams (every third position, plus the last) cover every character of the
  // needle: nearly as selective as all of them, and a third of the index lists to intersect.
  const grams = new Set<string>();
  for (let i = 0; i + 3 <= chars.length; i += 3) grams.add(chars.slice(i, i + 3).join(''));
  grams.add(chars.slice(-3).join(''));
  let list = [...grams];
  if (list.length > MAX_QUERY_TRIGRAMS) {
    const step = list.length / MAX_QUERY_TRIGRAMS;
    list = Array.from({ length: MAX_QUERY_TRIGRAMS }, (_, i) => list[Math.floor(i * step)] ?? '');
  }
  // FTS5 strings: double quotes, with "" for a quote inside.
  const expr = list.map((g) => `"${g.replace(/"/g, '""')}"`).join(' AND ');
  return columns === null ? `(${expr})` : `{${columns.join(' ')}} : (${expr})`;
}
