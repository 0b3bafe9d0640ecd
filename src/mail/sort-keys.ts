/**
 * What SORT and THREAD (RFC 5256, RFC 5957) compare of a message, derived from its parse record.
 * The store computes these once at ingest and keeps them beside the message, so SORT and THREAD
 * on a large mailbox read a few columns instead of parsing every message.
 *
 * Invariants: never throws; the same parse record always gives the same keys.
 */
import { decodeEncodedWords } from './headers.js';
import { extractBaseSubject } from './subject.js';
import type { EnvelopeAddress, ParsedMessage } from './types.js';

export interface SortKeys {
  /** The Date: header, epoch ms; null when absent or unreadable (SORT DATE and THREAD then use
   * INTERNALDATE, RFC 5256 §3 and §2.2). */
  sentDate: number | null;
  /** SORT SUBJECT: the base subject (RFC 5256 §2.1), casemapped. */
  subject: string;
  /** THREAD: whether a reply or forward marker was removed from the subject (RFC 5256 §2.1). */
  reply: boolean;
  /** SORT FROM / TO / CC: addr-mailbox of the first address, i;ascii-casemap (RFC 5256 §3). */
  from: string;
  to: string;
  cc: string;
  /** SORT DISPLAYFROM / DISPLAYTO (RFC 5957 §3), casemapped. */
  displayFrom: string;
  displayTo: string;
  /** THREAD=REFERENCES (RFC 5256 §4 step 1): the Message-ID, and the References (else the
   * first In-Reply-To id), oldest first. */
  messageId: string | null;
  references: string[];
}

/** i;ascii-casemap (RFC 4790 §9.2), the collation RFC 5256 §3 uses for the address keys. */
function asciiCasemap(s: string): string {
  return s.replace(/[a-z]+/g, (m) => m.toUpperCase());
}

/** i;unicode-casemap (RFC 5051) approximated by compatibility normalisation and mapping to
 * upper case (as i;ascii-casemap does, so "[" and "_" sort after letters, as with Dovecot): what
 * RFC 5957 asks for the display keys and what servers use for the base subject. */
export function unicodeCasemap(s: string): string {
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

/** The keys of a message. The body text is not needed (a stored parse record lacks it). */
export function sortKeysOf(p: Omit<ParsedMessage, 'text'>): SortKeys {
  const base = extractBaseSubject(p.envelope.subject ?? '');
  return {
    sentDate: p.date,
    subject: unicodeCasemap(base.subject),
    reply: base.replyOrForward,
    from: asciiCasemap(firstMailbox(p.envelope.from)),
    to: asciiCasemap(firstMailbox(p.envelope.to)),
    cc: asciiCasemap(firstMailbox(p.envelope.cc)),
    displayFrom: unicodeCasemap(displayKey(p.envelope.from, p.from)),
    displayTo: unicodeCasemap(displayKey(p.envelope.to, p.to)),
    messageId: p.messageId,
    // RFC 5256 §4 REFERENCES step 1.B: References, else the first In-Reply-To id.
    references: p.references.length > 0 ? p.references : p.inReplyTo.slice(0, 1),
  };
}

/** Bits of the THREAD flags. */
export const THREAD_REPLY = 1; // a reply or forward marker was removed from the subject (RFC 5256 §2.1)
export const THREAD_NO_SUBJECT = 2; // the base subject is empty

/**
 * The strings THREAD compares of a message (RFC 5256 §4 compares base subjects and Message-IDs
 * as strings): what the store numbers (threadText) before writing a message's keys.
 */
export function threadNames(k: Pick<SortKeys, 'subject' | 'messageId'>, references: readonly string[]): string[] {
  return k.messageId === null ? [k.subject, ...references] : [k.subject, k.messageId, ...references];
}

/**
 * What THREAD reads of a message besides its date, as stored (sort_keys.thread_text):
 * "flags subject id,ref,ref...": the flags above in decimal, then the numbers `number` gives the
 * base subject, the Message-ID (empty without one) and the references (oldest first), in base
 * 36. `number` is the store's numbering of names (thread_names): one number per distinct string,
 * never 0, so equal numbers are equal strings and THREAD compares numbers exactly as strings.
 * `references`: as stored in sort_keys.refs (ids with a line break are left out there).
 */
export function threadText(
  k: Pick<SortKeys, 'subject' | 'reply' | 'messageId'>,
  references: readonly string[],
  number: (name: string) => number,
): string {
  const flags = (k.reply ? THREAD_REPLY : 0) | (k.subject === '' ? THREAD_NO_SUBJECT : 0);
  const b36 = (name: string): string => number(name).toString(36);
  const ids = [k.messageId === null ? '' : b36(k.messageId), ...references.map(b36)].join(',');
  return `${flags} ${b36(k.subject)} ${ids}`;
}
