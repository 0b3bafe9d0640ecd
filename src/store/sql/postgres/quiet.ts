/**
 * Which mailboxes have not changed since a session last read their changes, known from the change
 * feed, so that changesSince answers "nothing" without a round trip to PostgreSQL.
 *
 * An IMAP session reads the changes of its mailbox after every command (the catch-up that sends
 * EXISTS, EXPUNGE and FETCH FLAGS); on PostgreSQL that is one statement per command, the most
 * frequent of all, and most of them find nothing. Every change is an event on the feed (this
 * node's after its COMMIT, other nodes' through LISTEN/NOTIFY), so a read that found nothing
 * stays true until an event names the mailbox.
 *
 * Invariants:
 * - A read's empty answer is remembered only if no event for its mailbox (and no gap in the
 *   feed) came between the moment the read was sent and its answer: an event that arrived
 *   meanwhile may be for a commit the read did not see.
 * - A gap in the feed (the listening connection lost, so events may be lost) forgets everything,
 *   and nothing is remembered while the feed is not listening.
 * - An answer is remembered at most maxAgeMs: a listening connection that stalls without an
 *   error delays a session's news by that much at most (IMAP lets a server report changes at a
 *   later command; a session's own changes never depend on this, its writes publish at COMMIT).
 * - Memory is bounded: at most maxEntries mailboxes in each map.
 */
import type { ChangeEvent } from '../../types.js';

export interface QuietOptions {
  maxAgeMs?: number;
  maxEntries?: number;
  now?: () => number;
}

const DEFAULT_MAX_AGE_MS = 1000;
const DEFAULT_MAX_ENTRIES = 10_000;

export class QuietMailboxes {
  readonly #maxAgeMs: number;
  readonly #maxEntries: number;
  readonly #now: () => number;
  /** Events (and gaps) seen so far: the clock reads are compared with. */
  #seq = 0;
  /** #seq at the last gap, or at the last event that names no mailbox (account-wide). */
  #gapSeq = 0;
  /** Mailbox -> #seq of its last event; the oldest are dropped past maxEntries... */
  readonly #lastEvent = new Map<number, number>();
  /** ...and the newest #seq dropped stands for every mailbox not in the map. */
  #droppedSeq = 0;
  readonly #quiet = new Map<number, { modseq: number; uidNext: number; at: number }>();

  constructor(options: QuietOptions = {}) {
    this.#maxAgeMs = options.maxAgeMs ?? DEFAULT_MAX_AGE_MS;
    this.#maxEntries = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
    this.#now = options.now ?? Date.now;
  }

  /** Taken before a read is sent; given back to found() with its answer. */
  mark(): number {
    return this.#seq;
  }

  events(events: readonly ChangeEvent[]): void {
    for (const e of events) {
      this.#seq++;
      if (e.mailboxId === null) {
        this.#gapSeq = this.#seq;
        this.#quiet.clear();
        continue;
      }
      const id = Number(e.mailboxId);
      this.#quiet.delete(id);
      // Re-inserted: the map stays in the order of last events, oldest first.
      this.#lastEvent.delete(id);
      this.#lastEvent.set(id, this.#seq);
      if (this.#lastEvent.size > this.#maxEntries) {
        const [oldest, seq] = this.#lastEvent.entries().next().value as [number, number];
        this.#lastEvent.delete(oldest);
        this.#droppedSeq = seq;
      }
    }
  }

  /** The feed may have lost events (its connection was lost or is being re-opened). */
  gap(): void {
    this.#seq++;
    this.#gapSeq = this.#seq;
    this.#quiet.clear();
  }

  /** Whether the mailbox is known unchanged since a read found it at (modseq, uidNext). */
  isQuiet(mailboxId: number, modseq: number, uidNext: number): boolean {
    const q = this.#quiet.get(mailboxId);
    if (q === undefined || q.modseq !== modseq || q.uidNext !== uidNext) return false;
    if (this.#now() - q.at > this.#maxAgeMs) {
      this.#quiet.delete(mailboxId);
      return false;
    }
    return true;
  }

  /** A read sent at `mark` found nothing new in the mailbox at (modseq, uidNext); `listening`:
   * the feed's connection is up. */
  found(mailboxId: number, modseq: number, uidNext: number, mark: number, listening: boolean): void {
    if (!listening || this.#gapSeq > mark) return;
    const last = this.#lastEvent.get(mailboxId) ?? (this.#droppedSeq > mark ? Number.POSITIVE_INFINITY : 0);
    if (last > mark) return;
    if (this.#quiet.size >= this.#maxEntries && !this.#quiet.has(mailboxId)) {
      const oldest = this.#quiet.keys().next().value as number;
      this.#quiet.delete(oldest);
    }
    this.#quiet.set(mailboxId, { modseq, uidNext, at: this.#now() });
  }
}
