/**
 * The POP3 maildrop of one session: INBOX as it was at login (docs/pop3-imap.md).
 *
 * Invariants:
 * - Built once from store.listEntries at login; STAT, LIST and UIDL answer from it without I/O.
 * - Message numbers are positions in UID order and never change during the session, whatever
 *   IMAP does meanwhile (RFC 1939 §5: numbers are fixed for the session).
 * - Entries marked pop3Hidden (the 'hide' delete policy) are not part of it.
 * - The deleted marks live only here until QUIT (RFC 1939 §6: DELE only marks; RSET unmarks).
 */
import type { MailboxId, Uid } from '../../lib/brand.js';
import type { MessageEntry } from '../../store/types.js';
import { toUniqueId, type UniqueId } from '../protocol/response.js';

export interface MaildropMessage {
  /** RFC 1939 message number, from 1. */
  readonly number: number;
  readonly uid: Uid;
  readonly size: number;
  readonly blobHash: string;
  readonly pid: string;
  readonly uniqueId: UniqueId;
  deleted: boolean;
}

export class Maildrop {
  readonly mailboxId: MailboxId;
  private readonly messages: MaildropMessage[];

  constructor(mailboxId: MailboxId, entries: readonly MessageEntry[]) {
    this.mailboxId = mailboxId;
    const visible = entries.filter((e) => !e.pop3Hidden).sort((a, b) => a.uid - b.uid);
    this.messages = visible.map((e, i) => ({
      number: i + 1,
      uid: e.uid,
      size: e.size,
      blobHash: e.blobHash,
      pid: e.pid,
      uniqueId: toUniqueId(e.pid),
      deleted: false,
    }));
  }

  /** RFC 1939 §5 STAT: messages not marked deleted, and their total size. */
  stat(): { count: number; size: number } {
    let count = 0;
    let size = 0;
    for (const m of this.messages) {
      if (m.deleted) continue;
      count += 1;
      size += m.size;
    }
    return { count, size };
  }

  /** Messages not marked deleted, in order (LIST and UIDL without argument). */
  live(): MaildropMessage[] {
    return this.messages.filter((m) => !m.deleted);
  }

  /** The message with this number, whether deleted or not; null when out of range. */
  byNumber(n: number): MaildropMessage | null {
    if (!Number.isSafeInteger(n) || n < 1) return null;
    return this.messages[n - 1] ?? null;
  }

  /** RFC 1939 §5 RSET. */
  unmarkAll(): void {
    for (const m of this.messages) m.deleted = false;
  }

  /** UIDs to remove at QUIT: those marked deleted. */
  toRemove(): Uid[] {
    return this.messages.filter((m) => m.deleted).map((m) => m.uid);
  }
}
