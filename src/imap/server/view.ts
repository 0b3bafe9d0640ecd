/**
 * A session's view of its selected mailbox: the message sequence numbers it has announced, the
 * UID of each, and the flags the client was last told (RFC 9051 §2.3.1.2, §7.5.1).
 *
 * Invariants:
 * - Sequence numbers change only when this session announces them: an EXISTS extends the view,
 *   an EXPUNGE removes one message. A message expunged by another session stays in the view,
 *   held, until a command during which an EXPUNGE response is allowed (RFC 9051 §7.5.1: not during
 *   FETCH, STORE or SEARCH by sequence number, nor when no command is in progress).
 * - The view learns of changes only from the store's change log (changesSince), never by guessing.
 * - uids is strictly ascending (UIDs only grow within a UIDVALIDITY, RFC 9051 §2.3.1.1).
 */
import type { ModSeq, Uid } from '../../lib/brand.js';
import { asUid } from '../../lib/brand.js';
import type { Mailbox, MailStore, MessageEntry } from '../../store/types.js';
import type { ImapValue, SequenceSet } from '../protocol/ast.js';
import { BadError } from './errors.js';

export class MailboxView {
  readonly mailbox: Mailbox;
  readonly readOnly: boolean;
  /** Index i holds the UID of sequence number i + 1. */
  uids: Uid[];
  /** The entry of each UID in the view, with the flags the client was last told. */
  readonly entries: Map<Uid, MessageEntry>;
  /** Expunged in the store, not yet announced: still in uids. */
  readonly held = new Set<Uid>();
  private lastModSeq: ModSeq;
  private uidNext: Uid;
  /** RFC 5182 SEARCHRES: the UIDs of the last SEARCH ... RETURN (SAVE). */
  saved: Uid[] = [];

  private constructor(mailbox: Mailbox, readOnly: boolean, entries: MessageEntry[]) {
    this.mailbox = mailbox;
    this.readOnly = readOnly;
    this.uids = entries.map((e) => e.uid);
    this.entries = new Map(entries.map((e) => [e.uid, e]));
    this.lastModSeq = mailbox.highestModSeq;
    let next = mailbox.uidNext;
    for (const e of entries) if (e.uid >= next) next = asUid(e.uid + 1);
    this.uidNext = next;
  }

  /** Opens a view. The mailbox row is read before the entries, so a change made in between is
   * seen again by the next sync (its modseq is above the row's highestModSeq) rather than lost. */
  static async open(store: MailStore, mailbox: Mailbox, readOnly: boolean): Promise<MailboxView> {
    const entries = await store.listEntries(mailbox.id);
    return new MailboxView(mailbox, readOnly, entries);
  }

  get exists(): number {
    return this.uids.length;
  }

  /** 1-based sequence number of a UID in the view, or 0. Binary search: uids is ascending. */
  seqOf(uid: Uid): number {
    let lo = 0;
    let hi = this.uids.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const v = this.uids[mid]!;
      if (v === uid) return mid + 1;
      if (v < uid) lo = mid + 1;
      else hi = mid - 1;
    }
    return 0;
  }

  /** UIDs of a sequence-number set, ascending. RFC 9051 §9 seq-number: "*" is the last message;
   * a number beyond EXISTS is a client error (BAD). */
  resolveSeqs(set: SequenceSet): Uid[] {
    if (set.saved) return this.saved.filter((u) => this.entries.has(u));
    const n = this.uids.length;
    const picked = new Set<number>();
    for (const [a, b] of set.ranges) {
      const lo0 = a === '*' ? n : a;
      const hi0 = b === '*' ? n : b;
      const lo = Math.min(lo0, hi0);
      const hi = Math.max(lo0, hi0);
      if (lo === 0) continue; // "*" in an empty mailbox: nothing.
      if (hi > n) throw new BadError('Invalid message sequence number');
      for (let s = lo; s <= hi; s++) picked.add(s);
    }
    return [...picked].sort((x, y) => x - y).map((s) => this.uids[s - 1]!);
  }

  /** UIDs of a UID set that are in the view, ascending. RFC 9051 §9: "*" is the largest UID in
   * use; UIDs not in the view are ignored. */
  resolveUids(set: SequenceSet): Uid[] {
    if (set.saved) return this.saved.filter((u) => this.entries.has(u));
    if (this.uids.length === 0) return [];
    const max = this.uids[this.uids.length - 1]!;
    const picked = new Set<Uid>();
    for (const [a, b] of set.ranges) {
      const x = a === '*' ? max : a;
      const y = b === '*' ? max : b;
      const lo = Math.min(x, y);
      const hi = Math.max(x, y);
      for (let i = this.lowerBound(lo); i < this.uids.length && this.uids[i]! <= hi; i++) picked.add(this.uids[i]!);
    }
    return [...picked].sort((p, q) => p - q);
  }

  /** Index of the first UID >= uid. */
  private lowerBound(uid: number): number {
    let lo = 0;
    let hi = this.uids.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.uids[mid]! < uid) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** UIDs in the view that are not held expunged. */
  live(uids: readonly Uid[]): Uid[] {
    return uids.filter((u) => !this.held.has(u));
  }

  /** Records flags this session set itself, so a later sync does not announce them again. */
  remember(entries: readonly MessageEntry[]): void {
    for (const e of entries) if (this.entries.has(e.uid)) this.entries.set(e.uid, e);
  }

  /**
   * Catches up with the store and returns the untagged responses to send, in order: EXPUNGE
   * (when allowed), EXISTS, FETCH FLAGS. `withUid`: include UID in FETCH responses.
   */
  async sync(store: MailStore, allowExpunge: boolean): Promise<ImapValue[][]> {
    const ch = await store.changesSince(this.mailbox.id, this.lastModSeq, this.uidNext);
    const out: ImapValue[][] = [];
    const gone = new Set<Uid>(ch.expunged);
    for (const uid of ch.expunged) if (this.entries.has(uid)) this.held.add(uid);
    if (allowExpunge && this.held.size > 0) {
      // Highest sequence number first: each EXPUNGE then leaves the numbers below it unchanged,
      // which is what the client computes too (RFC 9051 §7.5.1).
      const seqs = [...this.held].map((u) => this.seqOf(u)).filter((s) => s > 0).sort((a, b) => b - a);
      for (const seq of seqs) out.push([seq, { atom: 'EXPUNGE' }]);
      const keep: Uid[] = [];
      for (const u of this.uids) if (!this.held.has(u)) keep.push(u);
      for (const u of this.held) this.entries.delete(u);
      this.uids = keep;
      this.held.clear();
    }
    let added = false;
    const fresh = new Set<Uid>();
    for (const e of ch.added) {
      if (e.uid >= this.uidNext) this.uidNext = asUid(e.uid + 1);
      if (this.entries.has(e.uid) || gone.has(e.uid)) continue;
      if (this.uids.length > 0 && e.uid < this.uids[this.uids.length - 1]!) continue; // cannot happen: UIDs grow
      this.uids.push(e.uid);
      this.entries.set(e.uid, e);
      fresh.add(e.uid);
      added = true;
    }
    if (added) out.push([this.uids.length, { atom: 'EXISTS' }]);
    for (const e of ch.changed) {
      if (fresh.has(e.uid) || this.held.has(e.uid)) continue;
      const known = this.entries.get(e.uid);
      if (known === undefined) continue;
      this.entries.set(e.uid, e);
      if (sameFlags(known.flags, e.flags)) continue;
      out.push([this.seqOf(e.uid), { atom: 'FETCH' }, [{ atom: 'UID' }, e.uid, { atom: 'FLAGS' }, flagAtoms(e.flags)]]);
    }
    if (ch.highestModSeq > this.lastModSeq) this.lastModSeq = ch.highestModSeq;
    return out;
  }
}

export function flagAtoms(flags: readonly string[]): ImapValue[] {
  return flags.map((f) => ({ atom: f }));
}

function sameFlags(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  const set = new Set(a.map((f) => f.toLowerCase()));
  return b.every((f) => set.has(f.toLowerCase()));
}
