/**
 * SORT (RFC 5256 §3, with RFC 5957 DISPLAYFROM/DISPLAYTO): orders the messages a search matched.
 *
 * Invariants:
 * - the result is a permutation of the indexes given; messages equal under every criterion keep
 *   sequence order ("sorted according to the order in which they appear in the mailbox",
 *   RFC 5256 §3), REVERSE never applies to that final order;
 * - parse records are loaded only when a criterion needs one (all but ARRIVAL and SIZE), once per
 *   message, a bounded number at a time.
 */
import { decodeEncodedWords } from '../../mail/headers.js';
import { baseSubject } from '../../mail/subject.js';
import type { EnvelopeAddress, ParsedMessage } from '../../mail/types.js';
import type { MailStore, MessageEntry } from '../../store/types.js';
import type { SortCriterion } from '../protocol/ast.js';

export interface SortView {
  /** The session's messages in sequence order. */
  entries: readonly MessageEntry[];
  store: Pick<MailStore, 'getParsed'>;
}

/** i;ascii-casemap (RFC 4790 §9.2), the collation RFC 5256 §3 uses for the address keys. */
function asciiCasemap(s: string): string {
  return s.replace(/[a-z]+/g, (m) => m.toUpperCase());
}

/** i;unicode-casemap (RFC 5051) approximated by compatibility normalisation and mapping to
 * upper case (as i;ascii-casemap does, so "[" and "_" sort after letters, as with Dovecot): what
 * RFC 5957 asks for the display keys and what servers use for the base subject. */
function unicodeCasemap(s: string): string {
  return s.normalize('NFKC').toUpperCase();
}

/** RFC 5256 §3 "addr-mailbox of the first ... address". A group's start marker counts: its
 * mailbox is the group name (Dovecot's imaptest sort-addresses expects this). */
function firstMailbox(list: EnvelopeAddress[] | null): string {
  return list?.[0]?.mailbox ?? '';
}

/** RFC 5957 §3: the display name of the first address, else its addr-spec. When the first
 * address is a group, the group's display name (Dovecot's imaptest sort-display-to expects this:
 * "a: x@y;" sorts as "a"). */
function displayKey(envelope: EnvelopeAddress[] | null, decoded: ParsedMessage['from']): string {
  const first = envelope?.[0];
  if (first !== undefined && first.host === null && first.mailbox !== null) return decodeEncodedWords(first.mailbox).trim();
  const a = decoded[0];
  if (a === undefined) return '';
  return a.name.trim() !== '' ? a.name.trim() : a.address;
}

function needsParse(c: SortCriterion): boolean {
  return c.key !== 'ARRIVAL' && c.key !== 'SIZE';
}

type Key = number | string;

function keyOf(c: SortCriterion, e: MessageEntry, p: ParsedMessage | undefined): Key {
  switch (c.key) {
    case 'ARRIVAL':
      return e.internalDate; // RFC 5256 §3 ARRIVAL: INTERNALDATE
    case 'SIZE':
      return e.size;
    case 'DATE':
      // RFC 5256 §3 DATE: the sent date; "If the sent date cannot be determined ... the
      // INTERNALDATE for that message is used".
      return p?.date ?? e.internalDate;
    case 'CC':
      return asciiCasemap(firstMailbox(p?.envelope.cc ?? null));
    case 'FROM':
      return asciiCasemap(firstMailbox(p?.envelope.from ?? null));
    case 'TO':
      return asciiCasemap(firstMailbox(p?.envelope.to ?? null));
    case 'SUBJECT':
      // RFC 5256 §2.1 base subject of the raw Subject (encoded words decoded there).
      return unicodeCasemap(baseSubject(p?.envelope.subject ?? ''));
    case 'DISPLAYFROM':
      return unicodeCasemap(displayKey(p?.envelope.from ?? null, p?.from ?? []));
    case 'DISPLAYTO':
      return unicodeCasemap(displayKey(p?.envelope.to ?? null, p?.to ?? []));
  }
}

function compareKeys(a: Key, b: Key): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  const x = String(a);
  const y = String(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** Sorts `indexes` (0-based positions in view.entries) by the criteria, RFC 5256 §3. */
export async function sortMessages(indexes: readonly number[], criteria: readonly SortCriterion[], view: SortView): Promise<number[]> {
  const parse = criteria.some(needsParse);
  const records = new Map<number, ParsedMessage>();
  if (parse) {
    for (let s = 0; s < indexes.length; s += 64) {
      const batch = indexes.slice(s, s + 64);
      const got = await Promise.all(batch.map((i) => view.store.getParsed(view.entries[i]!.blobHash)));
      batch.forEach((i, j) => records.set(i, got[j]!));
    }
  }
  const keys = new Map<number, Key[]>();
  for (const i of indexes) {
    const e = view.entries[i]!;
    keys.set(
      i,
      criteria.map((c) => keyOf(c, e, records.get(i))),
    );
  }
  return [...indexes].sort((a, b) => {
    const ka = keys.get(a)!;
    const kb = keys.get(b)!;
    for (let c = 0; c < criteria.length; c++) {
      const d = compareKeys(ka[c]!, kb[c]!);
      if (d !== 0) return criteria[c]!.reverse ? -d : d;
    }
    return a - b;
  });
}
