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
import { formatSet } from '../protocol/serialize.js';
import { BadError } from './errors.js';
import type { RecentTracker } from './session.js';

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
  /** This session's \Recent messages (RFC 3501 §2.3.2); empty under IMAP4rev2, which removed
   * the flag (RFC 9051 §2.3.2). */
  readonly recent = new Set<Uid>();
  /** Whether \Recent is shown (IMAP4rev1). */
  private showRecent = false;
  /** Keywords announced in the last FLAGS response, by lowercase name. */
  private readonly keywords = new Map<string, string>();

  private constructor(mailbox: Mailbox, readOnly: boolean, entries: MessageEntry[]) {
    this.mailbox = mailbox;
    this.readOnly = readOnly;
    this.uids = entries.map((e) => e.uid);
    this.entries = new Map(entries.map((e) => [e.uid, e]));
    this.lastModSeq = mailbox.highestModSeq;
    let next = mailbox.uidNext;
    for (const e of entries) if (e.uid >= next) next = asUid(e.uid + 1);
    this.uidNext = next;
    for (const e of entries) this.learnKeywords(e.flags);
  }

  private learnKeywords(flags: readonly string[]): boolean {
    let added = false;
    for (const f of flags) {
      if (f.startsWith('\\') || this.keywords.has(f.toLowerCase())) continue;
      this.keywords.set(f.toLowerCase(), f);
      added = true;
    }
    return added;
  }

  /** The FLAGS response: system flags and every keyword in use (RFC 9051 §7.3.5). */
  flagsResponse(): ImapValue[] {
    return [{ atom: 'FLAGS' }, flagAtoms([...SYSTEM_FLAGS, ...this.keywords.values()])];
  }

  /** A new FLAGS response when these entries carry keywords the client was not told of: a
   * client may reject a keyword it did not see in FLAGS (RFC 9051 §7.3.5). */
  keywordUpdate(entries: readonly MessageEntry[]): ImapValue[] | null {
    let added = false;
    for (const e of entries) if (this.learnKeywords(e.flags)) added = true;
    return added ? this.flagsResponse() : null;
  }

  /** Opens a view. The mailbox row is read before the entries, so a change made in between is
   * seen again by the next sync (its modseq is above the row's highestModSeq) rather than lost. */
  static async open(store: MailStore, mailbox: Mailbox, readOnly: boolean, recent: RecentTracker | null): Promise<MailboxView> {
    const entries = await store.listEntries(mailbox.id);
    const view = new MailboxView(mailbox, readOnly, entries);
    if (recent !== null) {
      view.showRecent = true;
      view.takeRecent(view.uids, recent);
    }
    return view;
  }

  /** Marks as recent the UIDs above the mailbox's floor; a read-write view claims them, so no
   * other session sees them as recent (RFC 3501 §2.3.2); EXAMINE does not change the state. */
  private takeRecent(uids: readonly Uid[], tracker: RecentTracker): void {
    if (uids.length === 0) return;
    const max = uids[uids.length - 1]!;
    const floor = this.readOnly ? tracker.floor(this.mailbox.id) : tracker.claim(this.mailbox.id, max);
    for (const u of uids) if (u > floor) this.recent.add(u);
  }

  /** Flags as the client sees them: the entry's, plus \Recent (IMAP4rev1). */
  flagsOf(uid: Uid): string[] {
    const flags = this.entries.get(uid)?.flags ?? [];
    return this.showRecent && this.recent.has(uid) ? [...flags, '\\Recent'] : flags;
  }

  isRecent(uid: Uid): boolean {
    return this.showRecent && this.recent.has(uid);
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
    const ranges: Array<[number, number]> = [];
    for (const [a, b] of set.ranges) {
      const lo0 = a === '*' ? n : a;
      const hi0 = b === '*' ? n : b;
      const lo = Math.min(lo0, hi0);
      const hi = Math.max(lo0, hi0);
      if (lo === 0) continue; // "*" in an empty mailbox: nothing.
      if (hi > n) throw new BadError('Invalid message sequence number');
      ranges.push([lo, hi]);
    }
    const out: Uid[] = [];
    for (const [lo, hi] of mergeRanges(ranges)) for (let seq = lo; seq <= hi; seq++) out.push(this.uids[seq - 1]!);
    return out;
  }

  /** UIDs of a UID set that are in the view, ascending. RFC 9051 §9: "*" is the largest UID in
   * use; UIDs not in the view are ignored. */
  resolveUids(set: SequenceSet): Uid[] {
    if (set.saved) return this.saved.filter((u) => this.entries.has(u));
    if (this.uids.length === 0) return [];
    const max = this.uids[this.uids.length - 1]!;
    const ranges = set.ranges.map(([a, b]): [number, number] => {
      const x = a === '*' ? max : a;
      const y = b === '*' ? max : b;
      return [Math.min(x, y), Math.max(x, y)];
    });
    const out: Uid[] = [];
    for (const [lo, hi] of mergeRanges(ranges)) {
      for (let i = this.lowerBound(lo); i < this.uids.length && this.uids[i]! <= hi; i++) out.push(this.uids[i]!);
    }
    return out;
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
  /** The highest modseq the client has been brought up to (RFC 7162 §3.1.2.1 HIGHESTMODSEQ). */
  get highestModSeq(): ModSeq {
    return this.lastModSeq;
  }

  /**
   * `modes.modseq`: CONDSTORE is enabled, FETCH responses carry MODSEQ (RFC 7162 §3.1.4.1);
   * `modes.vanished`: QRESYNC is enabled, expunges are one VANISHED response (RFC 7162 §3.2.10).
   */
  async sync(store: MailStore, allowExpunge: boolean, tracker: RecentTracker, modes: SyncModes = NO_MODES): Promise<ImapValue[][]> {
    const ch = await store.changesSince(this.mailbox.id, this.lastModSeq, this.uidNext);
    const out: ImapValue[][] = [];
    const gone = new Set<Uid>(ch.expunged);
    for (const uid of ch.expunged) if (this.entries.has(uid)) this.held.add(uid);
    if (allowExpunge && this.held.size > 0) {
      // Highest sequence number first: each EXPUNGE then leaves the numbers below it unchanged,
      // which is what the client computes too (RFC 9051 §7.5.1).
      if (modes.vanished) {
        // RFC 7162 §3.2.10: once QRESYNC is enabled, VANISHED with the UIDs replaces EXPUNGE.
        const uids = [...this.held].filter((u) => this.seqOf(u) > 0).sort((a, b) => a - b);
        if (uids.length > 0) out.push([{ atom: 'VANISHED' }, { atom: formatSet(uids) }]);
      } else {
        const seqs = [...this.held].map((u) => this.seqOf(u)).filter((s) => s > 0).sort((a, b) => b - a);
        for (const seq of seqs) out.push([seq, { atom: 'EXPUNGE' }]);
      }
      const keep: Uid[] = [];
      for (const u of this.uids) if (!this.held.has(u)) keep.push(u);
      for (const u of this.held) {
        this.entries.delete(u);
        this.recent.delete(u);
      }
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
    const flagsUpdate = this.keywordUpdate([...ch.added.filter((e) => fresh.has(e.uid)), ...ch.changed]);
    if (flagsUpdate !== null) out.push(flagsUpdate);
    if (added) {
      out.push([this.uids.length, { atom: 'EXISTS' }]);
      if (this.showRecent) {
        this.takeRecent([...fresh], tracker);
        // RFC 3501 §7.3.2: RECENT goes with the new EXISTS.
        out.push([this.recent.size, { atom: 'RECENT' }]);
      }
    }
    for (const e of ch.changed) {
      if (fresh.has(e.uid) || this.held.has(e.uid)) continue;
      const known = this.entries.get(e.uid);
      if (known === undefined) continue;
      this.entries.set(e.uid, e);
      if (sameFlags(known.flags, e.flags) || modes.flags === false) continue;
      const items: ImapValue[] = [{ atom: 'UID' }, e.uid, { atom: 'FLAGS' }, flagAtoms(this.flagsOf(e.uid))];
      if (modes.modseq) items.push({ atom: 'MODSEQ' }, [e.modseq]); // RFC 7162 §3.1.4.1
      out.push([this.seqOf(e.uid), { atom: 'FETCH' }, items]);
    }
    if (ch.highestModSeq > this.lastModSeq) this.lastModSeq = ch.highestModSeq;
    return out;
  }
}

export interface SyncModes {
  modseq: boolean;
  vanished: boolean;
  /** false: flag changes update the view without a FETCH response (NOTIFY without FlagChange). */
  flags?: boolean;
}

const NO_MODES: SyncModes = { modseq: false, vanished: false };

/** Whether a UID is in a UID set; "*" stands for `star` (RFC 9051 §9). */
export function inUidSet(set: SequenceSet, uid: number, star: number): boolean {
  for (const [a, b] of set.ranges) {
    const x = a === '*' ? star : a;
    const y = b === '*' ? star : b;
    if (uid >= Math.min(x, y) && uid <= Math.max(x, y)) return true;
  }
  return false;
}

/** Sorted, non-overlapping ranges: each message is then visited once, so a set of many
 * overlapping ranges (`1:*,1:*,…`) costs no more than one. */
function mergeRanges(ranges: Array<[number, number]>): Array<[number, number]> {
  const sorted = [...ranges].sort((p, q) => p[0] - q[0]);
  const out: Array<[number, number]> = [];
  for (const [lo, hi] of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && lo <= last[1] + 1) last[1] = Math.max(last[1], hi);
    else out.push([lo, hi]);
  }
  return out;
}

export const SYSTEM_FLAGS = ['\\Answered', '\\Flagged', '\\Deleted', '\\Seen', '\\Draft'];

export function flagAtoms(flags: readonly string[]): ImapValue[] {
  return flags.map((f) => ({ atom: f }));
}

function sameFlags(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  const set = new Set(a.map((f) => f.toLowerCase()));
  return b.every((f) => set.has(f.toLowerCase()));
}
