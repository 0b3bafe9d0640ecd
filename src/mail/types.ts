/**
 * What ingest learns about a message, once, when it is stored (DESIGN.md: "parsed once, at ingest,
 * and kept"). Everything a protocol needs later (IMAP ENVELOPE, BODYSTRUCTURE, BODY[1.2] byte
 * ranges, search text, preview, threading keys) comes from this record and the raw bytes; nothing
 * re-parses the message.
 *
 * All offsets are absolute byte offsets into the raw message as stored.
 */

/** RFC 9051 §7.5.2 ENVELOPE address. A group is opened by {mailbox: groupName, host: null} and
 * closed by an all-null address (RFC 3501 §7.4.2). Strings are as in the header (encoded words
 * kept, as IMAP servers return them), unquoted. A mailbox written without a domain has host ""
 * (never null, which would read as a group marker). */
export interface EnvelopeAddress {
  name: string | null;
  adl: string | null;
  mailbox: string | null;
  host: string | null;
}

/** RFC 9051 §7.5.2 ENVELOPE. String fields are the raw header values, unfolded, undecoded.
 * sender and replyTo default to from when absent (RFC 3501 §7.4.2). */
export interface Envelope {
  date: string | null;
  subject: string | null;
  from: EnvelopeAddress[] | null;
  sender: EnvelopeAddress[] | null;
  replyTo: EnvelopeAddress[] | null;
  to: EnvelopeAddress[] | null;
  cc: EnvelopeAddress[] | null;
  bcc: EnvelopeAddress[] | null;
  inReplyTo: string | null;
  messageId: string | null;
}

/** A parameter list in received order; names lowercased, values decoded (RFC 2231 continuations
 * and charsets joined into UTF-8). */
export type Params = Array<[name: string, value: string]>;

export interface MimePart {
  /** Offset of the part's first header line (for the root: 0). */
  headerStart: number;
  /** Offset of the first body byte: just after the blank line ending the header (or end of data). */
  bodyStart: number;
  /** Offset just past the last body byte (the CRLF before a boundary line is not part of the body). */
  bodyEnd: number;
  /** Lowercased; defaults per RFC 2045 §5.2 (text/plain; charset=us-ascii), or message/rfc822 in
   * a multipart/digest. */
  type: string;
  subtype: string;
  params: Params;
  id: string | null;
  description: string | null;
  /** Content-Transfer-Encoding as received, or null when absent (IMAP shows "7BIT"). */
  encoding: string | null;
  md5: string | null;
  disposition: { type: string; params: Params } | null;
  language: string[] | null;
  location: string | null;
  /** Number of lines in the body (for text/* and message/rfc822 in BODYSTRUCTURE); a last line
   * without a line end counts. Computed for text/* and message/*, 0 for other types. */
  lines: number;
  /** Children of a multipart, in order. Empty for non-multipart parts. A multipart always has at
   * least one child: when no boundary line is found (or nesting is too deep), a header-less
   * text/plain part covering the whole body stands in (headerStart === bodyStart). */
  parts: MimePart[];
  /** For message/rfc822 and message/global: the encapsulated message. Null when it cannot be
   * parsed in place (a transfer encoding other than 7bit/8bit/binary, or nesting too deep). */
  message: { envelope: Envelope; root: MimePart } | null;
}

export interface ParsedMessage {
  /** Format version of this record, so stored records can be upgraded. */
  version: 1;
  size: number;
  root: MimePart;
  envelope: Envelope;
  /** Decoded (RFC 2047) header values, for search, sort and display. */
  subject: string;
  from: DecodedAddress[];
  to: DecodedAddress[];
  cc: DecodedAddress[];
  /** Message-ID without angle brackets, or null. */
  messageId: string | null;
  inReplyTo: string[];
  references: string[];
  /** Date: header as epoch milliseconds, or null when missing or unparsable. */
  date: number | null;
  /** Decoded text of the text parts (HTML reduced to text), bounded (see mail/parse.ts). */
  text: string;
  /** Up to 256 characters of the first text part, whitespace folded (RFC 8970 PREVIEW). */
  preview: string;
  hasAttachment: boolean;
  /** What was wrong with the message; it was stored anyway. */
  warnings: string[];
}

export interface DecodedAddress {
  name: string;
  address: string;
}
