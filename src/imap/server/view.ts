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
import { asModSeq, asUid } from '../../lib/brand.js';
import { resized } from '../../lib/typed-arrays.js';
import type { EntryFacts, Mailbox, MailStore, MessageEntry, SetFlagsResult, ViewEntries, ViewEntry } from '../../store/types.js';
import type { ImapValue, SequenceSet } from '../protocol/ast.js';
import { atomListText, formatSet } from '../protocol/serialize.js';
import { BadError } from './errors.js';
import type { RecentTracker } from './session.js';

/** The part of a stored entry the view tracks: what the client was last told of its flags. */
export type KnownFlags = Pick<MessageEntry, 'uid' | 'modseq' | 'flags'>;

/** The view's UIDs in sequence order: a typed array whose elements are UIDs. */
export interface UidArray extends Uint32Array {
  readonly [index: number]: Uid;
}

export class MailboxView {
  readonly mailbox: Mailbox;
  readonly readOnly: boolean;
  /** Index i < n holds the UID of sequence number i + 1; the arrays have room to grow. */
  private uidArr: Uint32Array;
  /** Parallel to uidArr: the modseq and the flags (an index into flagTable) the client was last
   * told of each message. Typed arrays rather than an object per message: 16 bytes a message,
   * copied from the store's view cache at SELECT (a view of 100,000 messages in a millisecond). */
  private modseqs: Float64Array;
  private flagIds: Uint32Array;
  private n: number;
  /** The arrays are the store's (shared with its cache and other views): copied before the
   * first change in place. A SELECT thus costs no copy, and a view that never changes (an idle
   * client on a quiet mailbox) never holds one of its own. */
  private shared = true;
  /** uidArr[0, n), made when asked for and kept until the view changes. */
  private uidView: UidArray | null = null;
  /** Distinct flag lists, each once; flagIndex finds one by its space-joined form. */
  private readonly flagTable: string[][] = [];
  private readonly flagIndex = new Map<string, number>();
  /** The list intern was last given, and its index (see intern). */
  private internedLast: readonly string[] | null = null;
  private internedLastId = 0;
  /** flagTable's lists serialised (flagsTextAt), filled as needed. */
  private readonly flagTexts: Array<string | undefined> = [];
  /** Expunged in the store, not yet announced: still in uids. */
  readonly held = new Set<Uid>();
  private lastModSeq: ModSeq;
  private uidNext: Uid;
  /** RFC 5182 SEARCHRES: the UIDs of the last SEARCH ... RETURN (SAVE). */
  saved: Uid[] = [];
  /** This session's \Recent messages (RFC 3501 §2.3.2); empty under IMAP4rev2, which removed
   * the flag (RFC 9051 §2.3.2). */
  readonly recent = new RecentUids(this);
  /** Whether \Recent is shown (IMAP4rev1). */
  private showRecent = false;
  /** Keywords announced in the last FLAGS response, by lowercase name. */
  private readonly keywords = new Map<string, string>();

  private constructor(mailbox: Mailbox, readOnly: boolean, rows: ViewEntries) {
    // The entries are the state as of their own modseq, which may be newer than the row.
    this.mailbox = { ...mailbox, uidValidity: rows.uidValidity, uidNext: rows.uidNext, highestModSeq: rows.highestModSeq };
    this.readOnly = readOnly;
    this.uidArr = rows.uids;
    this.modseqs = rows.modseqs;
    this.n = rows.uids.length;
    // The store's flag lists become this view's table, in the same order (an unused one holds
    // its place, not findable by intern).
    this.flagIds = rows.flagIds;
    let same = true;
    const ids = rows.flagSets.map((f, i) => {
      if (f === null) return this.flagTable.push([]) - 1;
      const id = this.intern(f);
      if (id !== i) same = false;
      return id;
    });
    if (!same) {
      // Two lists of the same flags (not made by the store): the view's own ids, in a copy.
      this.flagIds = this.flagIds.map((f) => ids[f]!);
      this.shared = false;
    }
    this.lastModSeq = rows.highestModSeq;
    const last = this.n > 0 ? this.uidArr[this.n - 1]! : 0;
    this.uidNext = last >= rows.uidNext ? asUid(last + 1) : rows.uidNext;
    for (const f of rows.flagSets) if (f !== null) this.learnKeywords(f);
  }

  /** The UIDs of the view in sequence order. Shared: not to be changed, nor kept across a
   * command (the view replaces it when it changes). */
  get uids(): UidArray {
    if (this.uidView === null) this.uidView = this.uidArr.subarray(0, this.n) as UidArray;
    return this.uidView;
  }

  /** Makes the arrays this view's own before a change in place (copy on write). */
  private own(): void {
    if (!this.shared) return;
    this.uidArr = this.uidArr.slice(0, this.n);
    this.modseqs = this.modseqs.slice(0, this.n);
    this.flagIds = this.flagIds.slice(0, this.n);
    this.shared = false;
    this.uidView = null;
  }

  /** The UID of sequence number i + 1. */
  uidAt(i: number): Uid {
    return this.uidArr[i] as Uid;
  }

  private push(uid: Uid, modseq: number, flagId: number): void {
    if (this.shared || this.n === this.uidArr.length) {
      // Room for later EXISTS without a copy each time.
      const cap = this.n + Math.max(16, this.n >> 3);
      this.uidArr = resized(this.uidArr, this.n, cap);
      this.modseqs = resized(this.modseqs, this.n, cap);
      this.flagIds = resized(this.flagIds, this.n, cap);
      this.shared = false;
    }
    this.uidArr[this.n] = uid;
    this.modseqs[this.n] = modseq;
    this.flagIds[this.n] = flagId;
    this.n++;
    this.uidView = null;
  }

  /** The index of a flag list in flagTable, added when new. */
  private intern(flags: readonly string[]): number {
    // The list object interned last answers by identity: flag lists are never changed, and the
    // store hands one object to all the rows of a read that share a flag state (sharedFlagLists).
    if (flags === this.internedLast) return this.internedLastId;
    const key = flags.join(' ');
    let id = this.flagIndex.get(key);
    if (id === undefined) {
      id = this.flagTable.length;
      this.flagTable.push([...flags]);
      this.flagIndex.set(key, id);
    }
    this.internedLast = flags;
    this.internedLastId = id;
    return id;
  }

  /** Keywords in use in the mailbox (as far as this view has seen). */
  get keywordCount(): number {
    return this.keywords.size;
  }

  /** Of these keywords (lowercased), how many the mailbox does not use yet. */
  unknownKeywords(lowered: readonly string[]): number {
    let n = 0;
    for (const k of lowered) if (!this.keywords.has(k)) n++;
    return n;
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
  keywordUpdate(entries: readonly KnownFlags[]): ImapValue[] | null {
    let added = false;
    let last: readonly string[] | null = null;
    for (const e of entries) {
      // Updates of many messages often share one flag list: look at each list once.
      if (e.flags === last) continue;
      last = e.flags;
      if (this.learnKeywords(e.flags)) added = true;
    }
    return added ? this.flagsResponse() : null;
  }

  /** Opens a view. The mailbox row is read before the entries, so a change made in between is
   * seen again by the next sync (its modseq is above the row's highestModSeq) rather than lost. */
  static async open(store: MailStore, mailbox: Mailbox, readOnly: boolean, recent: RecentTracker | null): Promise<MailboxView> {
    const view = new MailboxView(mailbox, readOnly, await store.listViewEntries(mailbox.id));
    if (recent !== null) {
      view.showRecent = true;
      view.takeRecent(view.uids, recent);
    }
    return view;
  }

  /** Marks as recent the UIDs above the mailbox's floor; a read-write view claims them, so no
   * other session sees them as recent (RFC 3501 §2.3.2); EXAMINE does not change the state.
   * uids: the view's last messages (all of them at SELECT, the new ones at a sync), ascending. */
  private takeRecent(uids: ArrayLike<Uid>, tracker: RecentTracker): void {
    if (uids.length === 0) return;
    const max = uids[uids.length - 1]!;
    const floor = this.readOnly ? tracker.floor(this.mailbox.id) : tracker.claim(this.mailbox.id, max);
    // A range, not a UID each: after a restart every message of a 100,000-message mailbox is
    // recent for the first IMAP4rev1 SELECT.
    this.recent.add(Math.max(floor, uids[0]! - 1), max);
  }

  /** How many messages of the view have a UID in (lo, hi]. */
  countBetween(lo: number, hi: number): number {
    return this.upperBound(hi) - this.upperBound(lo);
  }

  /** The number of messages of the view whose UID is at most uid. */
  private upperBound(uid: number): number {
    let lo = 0;
    let hi = this.n;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.uidArr[mid]! <= uid) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Flags as the client sees them: the entry's, plus \\Recent (IMAP4rev1). */
  flagsOf(uid: Uid): string[] {
    const flags = this.knownFlags(uid);
    return this.showRecent && this.recent.has(uid) ? [...flags, '\\Recent'] : [...flags];
  }

  /** The flags the client was last told of a message in the view (no \\Recent); empty for a
   * UID not in the view. Shared: not to be changed by the caller. */
  knownFlags(uid: Uid): readonly string[] {
    const i = this.seqOf(uid) - 1;
    return i < 0 ? [] : this.flagTable[this.flagIds[i]!]!;
  }

  /** The FLAGS list of the message at 0-based index i as response text (flagsOf, serialised),
   * each distinct list serialised once: STORE 1:* writes 100,000 of them. */
  flagsTextAt(i: number): string {
    const id = this.flagIds[i]!;
    if (this.showRecent && this.recent.has(this.uidAt(i))) return atomListText([...this.flagTable[id]!, '\\Recent']);
    let text = this.flagTexts[id];
    if (text === undefined) {
      text = atomListText(this.flagTable[id]!);
      this.flagTexts[id] = text;
    }
    return text;
  }

  /** Flags of the message at 0-based index i (sequence number i + 1), as knownFlags. */
  flagsAt(i: number): readonly string[] {
    return this.flagTable[this.flagIds[i]!]!;
  }

  /** The modseq the client was last told of a message; 0 for a UID not in the view. */
  modseqOf(uid: Uid): number {
    const i = this.seqOf(uid) - 1;
    return i < 0 ? 0 : this.modseqs[i]!;
  }

  modseqAt(i: number): number {
    return this.modseqs[i]!;
  }

  has(uid: Uid): boolean {
    return this.seqOf(uid) > 0;
  }

  /** Whether another session expunged a message of this view that this session has not been
   * told of yet (a read of the changes since the view's modseq; the view itself is unchanged). */
  async expungedByOthers(store: MailStore): Promise<boolean> {
    // Known already and held back from the client (no EXPUNGE during SEARCH by number)...
    if (this.held.size > 0) return true;
    // ...or not read yet.
    const ch = await store.changesSince(this.mailbox.id, this.lastModSeq, this.uidNext);
    return ch.expunged.some((uid) => this.has(uid));
  }

  /** Sequence number of the first message without \\Seen, or 0 (RFC 3501 §7.1 UNSEEN). */
  firstUnseen(): number {
    const unseen: number[] = [];
    this.flagTable.forEach((f, id) => {
      // Not the placeholders of lists no message uses (not interned, see the constructor).
      if (!f.includes('\\Seen') && this.flagIndex.get(f.join(' ')) === id) unseen.push(id);
    });
    // Usually a few such flag lists: one native search each (indexOf on the typed array), each
    // bounded by the best position so far. A mailbox read but for its last messages would
    // otherwise cost a JavaScript loop over every message at SELECT.
    if (unseen.length <= MAX_NATIVE_SEARCHES) {
      let end = this.n;
      for (const id of unseen) {
        const i = this.flagIds.subarray(0, end).indexOf(id);
        if (i >= 0) end = i;
      }
      return end === this.n ? 0 : end + 1;
    }
    const isUnseen = new Set(unseen);
    for (let i = 0; i < this.n; i++) if (isUnseen.has(this.flagIds[i]!)) return i + 1;
    return 0;
  }

  /**
   * The stored entries of these UIDs (in the view, in the order given), with the flags and modseq
   * the client was last told, read from the store a chunk at a time. A message expunged in the
   * store meanwhile is left out (RFC 9051 §7.5.1 lets FETCH omit it) and handed to onGone.
   */
  async *entriesOf(store: MailStore, uids: ArrayLike<Uid>, onGone?: (uid: Uid) => void, chunk = 500): AsyncIterable<ViewEntry> {
    for await (const part of this.entryChunks(store, uids, onGone, chunk)) yield* part.entries;
  }

  /** entriesOf a chunk at a time, with each entry's index in the view (its sequence number - 1):
   * a FETCH then answers the messages of a chunk without an await (a promise and a turn of the
   * microtask queue) for each. */
  async *entryChunks(store: MailStore, uids: ArrayLike<Uid>, onGone?: (uid: Uid) => void, chunk = 500): AsyncIterable<{ entries: ViewEntry[]; indices: number[] }> {
    for await (const { facts, indices } of this.factChunks(store, uids, onGone, chunk)) {
      yield { entries: facts.map((f, k) => this.entryAt(f, indices[k]!)), indices };
    }
  }

  /** entryChunks without the entries: the store's facts of each message (shared: not to be
   * changed) and its index, from which entryAt makes the entry. A FETCH whose items are in hand
   * reads the flags and modseq from the view by index and makes no entry object a message. */
  async *factChunks(store: MailStore, uids: ArrayLike<Uid>, onGone?: (uid: Uid) => void, chunk = 500): AsyncIterable<{ facts: EntryFacts[]; indices: number[] }> {
    // The store keeps the facts it reads for requests of this size or less: a FETCH 1:* of a
    // large mailbox would only push the entries other commands read out of its cache.
    const keep = uids.length <= KEEP_FACTS_MAX;
    // Where the last UID was found: the next, when the UIDs ascend, is looked for after it.
    let from = 0;
    for (let s = 0; s < uids.length; s += chunk) {
      const part: Uid[] = [];
      for (let k = s; k < Math.min(s + chunk, uids.length); k++) part.push(uids[k]!);
      const facts = await store.getEntryFacts(this.mailbox.id, part, keep);
      const found: EntryFacts[] = [];
      const indices: number[] = [];
      // Both in UID order as a rule (getEntryFacts answers ascending, a FETCH names its UIDs so):
      // walked side by side; otherwise, or once the chunk goes back, a map.
      let byUid: Map<Uid, EntryFacts> | null = ascending(facts) ? null : new Map(facts.map((x) => [x.uid, x]));
      let at = 0;
      for (const uid of part) {
        const i = this.indexFrom(uid, from);
        if (i >= 0) from = i + 1;
        let f: EntryFacts | undefined;
        if (byUid === null) {
          while (at < facts.length && facts[at]!.uid < uid) at++;
          if (at < facts.length && facts[at]!.uid === uid) f = facts[at];
          else if (at > 0 && facts[at - 1]!.uid >= uid) {
            byUid = new Map(facts.map((x) => [x.uid, x]));
            f = byUid.get(uid);
          }
        } else {
          f = byUid.get(uid);
        }
        if (i < 0) continue;
        if (f === undefined) {
          onGone?.(uid);
          continue;
        }
        found.push(f);
        indices.push(i);
      }
      if (found.length > 0) yield { facts: found, indices };
    }
  }

  /** The entry of the message at index i (its sequence number - 1) from its facts: the flags and
   * modseq the client was last told. */
  entryAt(f: EntryFacts, i: number): ViewEntry {
    // Written out: V8 copies an object spread fast only when it adds no property, here
    // `{ ...f, flags, modseq }` cost about 4 us a message.
    return {
      mailboxId: f.mailboxId,
      uid: f.uid,
      modseq: asModSeq(this.modseqs[i]!),
      flags: this.flagTable[this.flagIds[i]!]!,
      internalDate: f.internalDate,
      saveDate: f.saveDate,
      size: f.size,
      blobHash: f.blobHash,
      emailId: f.emailId,
      threadId: f.threadId,
      pid: f.pid,
    };
  }

  /** Every message of the view as a stored entry (see entriesOf), in sequence order; null at the
   * index of a message no longer in the store. */
  async allEntries(store: MailStore): Promise<Array<ViewEntry | null>> {
    const out: Array<ViewEntry | null> = new Array<ViewEntry | null>(this.n).fill(null);
    // A copy: the view may change while the entries are read.
    for await (const e of this.entriesOf(store, this.uidArr.slice(0, this.n) as UidArray, undefined, 2000)) {
      const seq = this.seqOf(e.uid);
      if (seq > 0 && seq <= out.length) out[seq - 1] = e;
    }
    return out;
  }

  isRecent(uid: Uid): boolean {
    return this.showRecent && this.recent.has(uid);
  }

  get exists(): number {
    return this.n;
  }

  /** 1-based sequence number of a UID in the view, or 0. Binary search: uids is ascending. */
  seqOf(uid: Uid): number {
    let lo = 0;
    let hi = this.n - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const v = this.uidArr[mid]!;
      if (v === uid) return mid + 1;
      if (v < uid) lo = mid + 1;
      else hi = mid - 1;
    }
    return 0;
  }

  /** UIDs of a sequence-number set, ascending. RFC 9051 §9 seq-number: "*" is the last message;
   * a number beyond EXISTS is a client error (BAD). */
  resolveSeqs(set: SequenceSet): Uid[] {
    if (set.saved) return this.saved.filter((u) => this.has(u));
    const n = this.n;
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
    for (const [lo, hi] of mergeRanges(ranges)) for (let seq = lo; seq <= hi; seq++) out.push(this.uidAt(seq - 1));
    return out;
  }

  /** UIDs of a UID set that are in the view, ascending. RFC 9051 §9: "*" is the largest UID in
   * use; UIDs not in the view are ignored. */
  resolveUids(set: SequenceSet): Uid[] {
    if (set.saved) return this.saved.filter((u) => this.has(u));
    if (this.n === 0) return [];
    const max = this.uidAt(this.n - 1);
    const ranges = set.ranges.map(([a, b]): [number, number] => {
      const x = a === '*' ? max : a;
      const y = b === '*' ? max : b;
      return [Math.min(x, y), Math.max(x, y)];
    });
    const out: Uid[] = [];
    for (const [lo, hi] of mergeRanges(ranges)) {
      for (let i = this.lowerBound(lo); i < this.n && this.uidArr[i]! <= hi; i++) out.push(this.uidAt(i));
    }
    return out;
  }

  /** 0-based index of a UID in the view at or after index `from`, or -1. A caller walking
   * ascending UIDs passes the index after the last one found: near neighbours (STORE 1:*) cost
   * one comparison, not a binary search; an out-of-order UID falls back to the whole search. */
  indexFrom(uid: Uid, from: number): number {
    if (from < this.n && this.uidArr[from] === uid) return from;
    if (from >= this.n || this.uidArr[from]! > uid) return this.seqOf(uid) - 1;
    const i = this.lowerBound(uid, from);
    return i < this.n && this.uidArr[i] === uid ? i : -1;
  }

  /** Index of the first UID >= uid (at or after `from`). */
  private lowerBound(uid: number, from = 0): number {
    let lo = from;
    let hi = this.n;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.uidArr[mid]! < uid) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** UIDs in the view that are not held expunged. */
  live(uids: ArrayLike<Uid>): Uid[] {
    const out: Uid[] = [];
    for (let i = 0; i < uids.length; i++) if (!this.held.has(uids[i]!)) out.push(uids[i]!);
    return out;
  }

  /** Records the outcome of this session's own STORE (or \\Seen by FETCH), so a later sync does
   * not announce it again. When nothing else had changed the mailbox since the view's last sync
   * (the store's modseq before the change is not above it), the view is then up to date as of
   * the change: the next sync asks only for what came after, not for every entry just stored. */
  stored(res: SetFlagsResult): void {
    this.remember(res.updated);
    if (res.updated.length === 0 || res.priorModSeq > this.lastModSeq) return;
    let top = this.lastModSeq;
    for (const e of res.updated) if (e.modseq > top) top = e.modseq;
    this.lastModSeq = top;
  }

  remember(entries: readonly KnownFlags[]): void {
    if (entries.length === 0) return;
    this.own();
    let lastFlags: readonly string[] | null = null;
    let lastId = 0;
    // Entries come in UID order (a store result): each is looked for after the previous one.
    let from = 0;
    for (const e of entries) {
      const i = this.indexFrom(e.uid, from);
      if (i < 0) continue;
      from = i + 1;
      if (e.flags !== lastFlags) {
        lastFlags = e.flags;
        lastId = this.intern(e.flags);
      }
      this.modseqs[i] = e.modseq;
      this.flagIds[i] = lastId;
    }
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
    // The usual answer: nothing new, nothing held back to announce.
    if (ch.added.length === 0 && ch.changed.length === 0 && ch.expunged.length === 0 && (this.held.size === 0 || !allowExpunge)) {
      if (ch.highestModSeq > this.lastModSeq) this.lastModSeq = ch.highestModSeq;
      return [];
    }
    const out: ImapValue[][] = [];
    const gone = new Set<Uid>(ch.expunged);
    for (const uid of ch.expunged) if (this.has(uid)) this.held.add(uid);
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
      // In place: the arrays keep their room.
      this.own();
      let w = 0;
      for (let i = 0; i < this.n; i++) {
        const u = this.uidAt(i);
        if (this.held.has(u)) continue;
        this.uidArr[w] = u;
        this.modseqs[w] = this.modseqs[i]!;
        this.flagIds[w] = this.flagIds[i]!;
        w++;
      }
      this.n = w;
      this.uidView = null;
      // Out of the view, so out of the recent count too (RecentUids counts the view's UIDs).
      this.held.clear();
    }
    let added = false;
    const fresh = new Set<Uid>();
    for (const e of ch.added) {
      if (e.uid >= this.uidNext) this.uidNext = asUid(e.uid + 1);
      if (gone.has(e.uid) || this.has(e.uid)) continue;
      if (this.n > 0 && e.uid < this.uidAt(this.n - 1)) continue; // cannot happen: UIDs grow
      this.push(e.uid, e.modseq, this.intern(e.flags));
      fresh.add(e.uid);
      added = true;
    }
    const flagsUpdate = this.keywordUpdate([...ch.added.filter((e) => fresh.has(e.uid)), ...ch.changed]);
    if (flagsUpdate !== null) out.push(flagsUpdate);
    if (added) {
      out.push([this.n, { atom: 'EXISTS' }]);
      if (this.showRecent) {
        this.takeRecent([...fresh], tracker);
        // RFC 3501 §7.3.2: RECENT goes with the new EXISTS.
        out.push([this.recent.size, { atom: 'RECENT' }]);
      }
    }
    for (const e of ch.changed) {
      if (fresh.has(e.uid) || this.held.has(e.uid)) continue;
      const i = this.seqOf(e.uid) - 1;
      if (i < 0) continue;
      const known = this.flagTable[this.flagIds[i]!]!;
      this.own();
      this.modseqs[i] = e.modseq;
      this.flagIds[i] = this.intern(e.flags);
      if (sameFlags(known, e.flags) || modes.flags === false) continue;
      const items: ImapValue[] = [{ atom: 'UID' }, e.uid, { atom: 'FLAGS' }, flagAtoms(this.flagsOf(e.uid))];
      if (modes.modseq) items.push({ atom: 'MODSEQ' }, [e.modseq]); // RFC 7162 §3.1.4.1
      out.push([i + 1, { atom: 'FETCH' }, items]);
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
function ascending(facts: readonly EntryFacts[]): boolean {
  for (let k = 1; k < facts.length; k++) if (facts[k]!.uid <= facts[k - 1]!.uid) return false;
  return true;
}

/** entriesOf: the largest request whose entry facts the store keeps in its cache. */
const KEEP_FACTS_MAX = 2000;

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

/** Flag lists without \\Seen above which firstUnseen loops over the messages once instead. */
const MAX_NATIVE_SEARCHES = 16;

/**
 * A session's \Recent messages (RFC 3501 §2.3.2): the messages of its view whose UIDs fall in the
 * ranges it claimed, (lo, hi] each. A message expunged from the view leaves the set with it.
 */
export class RecentUids {
  /** lo0, hi0, lo1, hi1, ... ascending and disjoint; few (one per SELECT and per batch of new
   * messages, merged when they touch). */
  private readonly bounds: number[] = [];

  constructor(private readonly view: Pick<MailboxView, 'has' | 'countBetween'>) {}

  /** Ranges held (for tests). */
  get ranges(): number {
    return this.bounds.length >> 1;
  }

  add(lo: number, hi: number): void {
    if (hi <= lo) return;
    const b = this.bounds;
    if (b.length > 0 && lo <= b[b.length - 1]!) b[b.length - 1] = Math.max(b[b.length - 1]!, hi);
    else b.push(lo, hi);
  }

  has(uid: Uid): boolean {
    // Binary search for the last range starting below uid (FETCH asks for every message).
    const b = this.bounds;
    let lo = 0;
    let hi = b.length >> 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (b[2 * mid]! < uid) lo = mid + 1;
      else hi = mid;
    }
    return lo > 0 && uid <= b[2 * lo - 1]! && this.view.has(uid);
  }

  /** Also drops the ranges none of whose messages is left in the view: a session that stays
   * open while others take turns at claiming new messages gathers a range per turn. Such a
   * range stays empty: an expunged UID never comes back, and new messages have UIDs above every
   * one claimed (UIDs grow). */
  get size(): number {
    const b = this.bounds;
    let n = 0;
    let w = 0;
    for (let i = 0; i < b.length; i += 2) {
      const c = this.view.countBetween(b[i]!, b[i + 1]!);
      if (c === 0) continue;
      n += c;
      b[w++] = b[i]!;
      b[w++] = b[i + 1]!;
    }
    b.length = w;
    return n;
  }
}
