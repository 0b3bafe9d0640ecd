/**
 * What every import source (Maildir, mbox, live IMAP, live POP3) gives the importer: mailboxes,
 * one at a time, and in each the messages in the order they should get UIDs.
 *
 * Invariants:
 * - A source yields one message at a time (the importer batches them): a source never holds
 *   more than one message's bytes, so an import runs in memory bounded by the batch size.
 * - `uid`, when present, ascends within a mailbox; messages without one come after those with one.
 */

export interface SourceMessage {
  kind: 'message';
  raw: Buffer;
  flags: string[];
  /** INTERNALDATE, epoch ms. */
  internalDate: number;
  /** The UID the old server gave it, under the mailbox's uidValidity. */
  uid?: number;
  /** The POP3 UIDL the old server gave it. */
  pop3Uidl?: string;
  /** Where it came from, for messages in the summary (file name, "UID 42"). */
  origin: string;
}

/** A message the source could not read; counted with its reason, the import goes on. */
export interface SkippedMessage {
  kind: 'skipped';
  origin: string;
  reason: string;
  uid?: number;
}

export interface SourceMailbox {
  /** Facteur mailbox name, hierarchy separator '/', INBOX as "INBOX". */
  name: string;
  /** Present when the source's UIDs can be kept (Dovecot Maildir, IMAP). */
  uidValidity?: number;
  uidNext?: number;
  /** The source's HIGHESTMODSEQ (RFC 7162), or a floor chosen for it. */
  highestModSeq?: number;
  subscribed?: boolean;
  /** Expected number of messages and bytes, for the progress bar; may be estimates. */
  expectedMessages: number;
  expectedBytes: number;
  /**
   * The messages, without those `skip` says are already imported (asked before their bytes are
   * read, so a resumed import does not download them again).
   */
  messages(skip?: SkipTest): AsyncIterable<SourceMessage | SkippedMessage>;
}

/** Whether a message is already imported, from what identifies it before its bytes are read. */
export type SkipTest = (id: { uid?: number; pop3Uidl?: string }) => boolean | Promise<boolean>;

export interface ImportSource {
  /** Shown in the summary: "maildir /srv/mail/bob", "imaps://bob@old.example:993". */
  readonly description: string;
  /** Mailboxes in an order where parents come before children. */
  mailboxes(): AsyncIterable<SourceMailbox>;
  /** Warnings found while reading (unknown keyword letters, an unreadable uidlist). */
  readonly warnings: string[];
  close(): Promise<void>;
}

/** When the old server received it: the date of the topmost Received header, else Date. */
export function receivedDate(raw: Buffer): number | undefined {
  // The header section ends at an empty line (CRLF, or LF as in Maildir and mbox files).
  let end = -1;
  for (let i = raw.indexOf(10); i >= 0 && end < 0; i = raw.indexOf(10, i + 1)) {
    if (raw[i + 1] === 10 || (raw[i + 1] === 13 && raw[i + 2] === 10)) end = i;
  }
  const head = raw.subarray(0, end < 0 ? Math.min(raw.length, 64 * 1024) : end).toString('latin1').replace(/\r?\n[ \t]+/g, ' ');
  const received = /^Received:[^\n]*;\s*([^\r\n]+)/im.exec(head);
  const date = /^Date:\s*([^\r\n]+)/im.exec(head);
  for (const v of [received?.[1], date?.[1]]) {
    if (v === undefined) continue;
    const t = Date.parse(v.replace(/\([^)]*\)/g, '').trim());
    if (Number.isFinite(t)) return t;
  }
  return undefined;
}

/** Mail is stored with CRLF line ends (as SMTP receives it, RFC 5322 §2.3); Maildir and mbox
 * files usually have bare LF. Converting keeps RFC822.SIZE equal to what Dovecot reported. */
export function toCrlf(raw: Buffer): Buffer {
  let bare = 0;
  for (let i = raw.indexOf(10); i >= 0; i = raw.indexOf(10, i + 1)) if (i === 0 || raw[i - 1] !== 13) bare++;
  if (bare === 0) return raw;
  const out = Buffer.allocUnsafe(raw.length + bare);
  let o = 0;
  let start = 0;
  for (let i = raw.indexOf(10); i >= 0; i = raw.indexOf(10, i + 1)) {
    if (i > 0 && raw[i - 1] === 13) continue;
    o += raw.copy(out, o, start, i);
    out[o++] = 13;
    out[o++] = 10;
    start = i + 1;
  }
  o += raw.copy(out, o, start);
  return out.subarray(0, o);
}
