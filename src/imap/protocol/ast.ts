/**
 * Typed forms of the IMAP arguments shared by the parser (imap/protocol) and the evaluators
 * (imap/fetch, imap/search). The parser produces them; nothing here does I/O.
 */
import type { Serialized } from './serialize.js';

/** A sequence set (RFC 9051 §9 sequence-set): ranges with '*' resolved later against the view.
 * `star` stands for the largest number in use. Ranges are inclusive, in either order. */
export type SeqBound = number | '*';
export interface SequenceSet {
  ranges: Array<[SeqBound, SeqBound]>;
  /** `$` (RFC 5182 SEARCHRES): the saved search result. */
  saved?: boolean;
}

/**
 * A BODY[...] / BINARY[...] section (RFC 9051 §6.4.5). `part` is the part path ([] for the whole
 * message, [1, 2] for "1.2"); `text` selects what of that part.
 */
export interface SectionSpec {
  part: number[];
  text: null | 'HEADER' | 'TEXT' | 'MIME' | 'HEADER.FIELDS' | 'HEADER.FIELDS.NOT';
  /** For HEADER.FIELDS(.NOT): the field names as given (compared case-insensitively). */
  fields?: string[];
}

export interface Partial {
  offset: number;
  /** Octet count; RFC 9051 §6.4.5 <origin.octets>. */
  length: number;
}

export type FetchAtt =
  | { kind: 'FLAGS' }
  | { kind: 'INTERNALDATE' }
  | { kind: 'RFC822.SIZE' }
  | { kind: 'ENVELOPE' }
  | { kind: 'BODY' }
  | { kind: 'BODYSTRUCTURE' }
  | { kind: 'UID' }
  | { kind: 'MODSEQ' }
  | { kind: 'EMAILID' }
  | { kind: 'THREADID' }
  | { kind: 'SAVEDATE' }
  | { kind: 'PREVIEW'; lazy: boolean }
  /** RFC822, RFC822.HEADER, RFC822.TEXT (RFC 3501 only) are parsed into these with `legacy`. */
  | { kind: 'BODY[]'; section: SectionSpec; partial: Partial | null; peek: boolean; legacy?: 'RFC822' | 'RFC822.HEADER' | 'RFC822.TEXT' }
  | { kind: 'BINARY[]'; section: SectionSpec; partial: Partial | null; peek: boolean }
  | { kind: 'BINARY.SIZE'; section: SectionSpec };

/** RFC 9051 §6.4.4 search keys. Dates are calendar days 'YYYY-MM-DD' (compared in the
 * server's time zone for dates, per the RFC "disregarding time and timezone"). */
export type SearchKey =
  | { kind: 'all' }
  | { kind: 'seqset'; set: SequenceSet }
  | { kind: 'uid'; set: SequenceSet }
  | { kind: 'flag'; flag: string; present: boolean } // ANSWERED/UNANSWERED, DELETED, DRAFT, FLAGGED, SEEN, KEYWORD k, UNKEYWORD k
  | { kind: 'new' }
  | { kind: 'old' }
  | { kind: 'recent' }
  | { kind: 'header'; field: string; value: string } // HEADER f v; also BCC/CC/FROM/TO/SUBJECT
  | { kind: 'address'; field: 'from' | 'to' | 'cc' | 'bcc'; value: string }
  | { kind: 'subject'; value: string }
  | { kind: 'body'; value: string }
  | { kind: 'text'; value: string }
  | { kind: 'internaldate'; op: 'before' | 'on' | 'since'; date: string }
  | { kind: 'sentdate'; op: 'before' | 'on' | 'since'; date: string }
  | { kind: 'savedate'; op: 'before' | 'on' | 'since'; date: string }
  | { kind: 'savedatesupported' }
  | { kind: 'size'; op: 'larger' | 'smaller'; n: number }
  | { kind: 'older' | 'younger'; seconds: number } // RFC 5032 WITHIN
  | { kind: 'modseq'; modseq: number } // RFC 7162
  | { kind: 'emailid'; id: string } // RFC 8474
  | { kind: 'threadid'; id: string }
  | { kind: 'not'; key: SearchKey }
  | { kind: 'or'; a: SearchKey; b: SearchKey }
  | { kind: 'and'; keys: SearchKey[] };

/** RFC 5256 §3 sort-criterion (with RFC 5957 DISPLAYFROM/DISPLAYTO); `reverse` is REVERSE
 * before the key. Evaluated by imap/search/sort.ts. */
export interface SortCriterion {
  key: 'ARRIVAL' | 'CC' | 'DATE' | 'FROM' | 'SIZE' | 'SUBJECT' | 'TO' | 'DISPLAYFROM' | 'DISPLAYTO';
  reverse: boolean;
}

/**
 * A response value, serialised by imap/protocol/serialize.ts. Handlers build responses from these
 * typed tokens and never paste client data into strings (STYLE.md).
 * - null: NIL; number: a number; string: a string, quoted when it can be, else a literal;
 * - { atom }: written as is (atoms, flags, FETCH item names like BODY[1.2]<0>);
 * - { literal }: always a literal ({n}, or ~{n} when binary); { stream }: a literal of known
 *   size streamed with backpressure; arrays: parenthesised lists;
 * - { concat }: the values written back to back with no space between them, for the one place the
 *   grammar wants that: the child bodies of a multipart BODYSTRUCTURE (RFC 9051 §9 body-type-mpart
 *   = 1*body SP media-subtype), e.g. [{ concat: [[...], [...]] }, 'MIXED'] -> ((...)(...) "MIXED");
 * - Serialized: values the serializer wrote out earlier and that are kept (a message's ENVELOPE,
 *   see fetch/item-cache.ts), written again as those bytes.
 */
export type ImapValue =
  | null
  | number
  | string
  | { atom: string }
  | { literal: Buffer; binary?: boolean }
  | { stream: AsyncIterable<Buffer>; size: number; binary?: boolean }
  | { concat: ImapValue[] }
  | Serialized
  | ImapValue[];
