/**
 * The mailbox view cache: per process, the UID, modseq and flags of every message of recently
 * opened mailboxes, as typed arrays. A SELECT then shares three arrays instead of reading and
 * materialising one row per message (100,000 messages: 100+ ms of row reads). Shared by every
 * backend; like Dovecot's index files, but in memory and rebuilt from the database when missing.
 *
 * Invariants:
 * - An entry is the state of its mailbox as of (uidValidity, uidNext, highestModSeq): what a
 *   session's view holds after a sync up to that modseq (MailStore.changesSince semantics).
 * - An entry is never handed out unchecked: every get() asks the database what changed since the
 *   entry's modseq (a narrow query answered from the indexes; usually only the mailbox row comes
 *   back) and applies it. So writes by other processes or other nodes, or by paths no hook saw,
 *   are caught up there. The hooks (stored(): a setFlags result; feed events: a catch-up in the
 *   background) only move work out of the SELECT, they are not needed for correctness.
 * - A delta is applied only to the entry version it was asked for: when a hook changed the entry
 *   while the query ran, the delta is dropped and asked again. After a delta the message count
 *   must equal the mailbox row's (read in the same snapshot), else the entry is read again whole;
 *   anything else unexpected (a changed UID the entry does not hold) does the same.
 * - Catch-ups of one entry run one at a time (a queue per entry).
 * - Bounded: past maxMessages (sum over entries), the least recently used entries are dropped;
 *   a mailbox larger than that is read directly every time and not kept.
 * - Copy on write: get() hands out views of the entry's arrays (no copy), and marks them shared;
 *   the entry copies its arrays before changing one in place while they are shared (appending
 *   past the length handed out changes nothing a holder sees). Holders copy before they change
 *   anything (MailboxView does). Flag lists are never changed.
 * - Snapshots (view-snapshot.ts, when the backend stores them): an entry of at least
 *   snapshotMinMessages is written to the database when it was read whole, or when the rows it
 *   changed since its last snapshot reach snapshotDriftMessages (a timer, after the command that
 *   caused it), and at close (every such entry held); warm() loads the most recently stored
 *   ones in the background when a server's store opens, then large mailboxes without one. A
 *   missing entry starts from its mailbox's snapshot when there is a sound one (same format,
 *   checksum, UIDVALIDITY; modseq and UIDNEXT not above the mailbox's), then catches up exactly
 *   like a held entry: the changes since the snapshot's modseq (entries by modseq, the expunge
 *   log) are applied and the message count must then equal the mailbox row's. So a snapshot
 *   older than the last changes (a crash, another process or node writing) costs its delta,
 *   never correctness; an expunge log that lost rows (nothing prunes it today) leaves extra
 *   messages, which the count check catches (the entry is then read whole).
 * - A snapshot is the state of a whole, trusted entry: never one in the middle of a failed delta.
 */
import { asModSeq, asUid, asUidValidity } from '../lib/brand.js';
import type { AccountId, MailboxId } from '../lib/brand.js';
import { resized } from '../lib/typed-arrays.js';
import { flagList } from './flags.js';
import { StoreError } from './types.js';
import { decodeViewSnapshot, encodeViewSnapshot } from './view-snapshot.js';
import type { DecodedSnapshot, ViewState } from './view-snapshot.js';
import type { ChangeEvent, ChangeFeed, FlagUpdate, SetFlagsResult, ViewEntries } from './types.js';

/** The mailbox row fields the cache checks an entry against. */
export interface MailboxHead {
  accountId: number;
  uidValidity: number;
  uidNext: number;
  highestModSeq: number;
  /** The mailbox's message count (maintained by every write). */
  messages: number;
}

/** uid, modseq, system flag bits, encoded keywords (store/flags.ts). */
export type ViewRow = readonly [number, number, number, string];

/** What changed in a mailbox since a modseq, read in one snapshot (changesSince semantics). */
export interface ViewDelta {
  /** null: the mailbox no longer exists. */
  head: MailboxHead | null;
  /** Rows with uid >= the known UIDNEXT, ascending. */
  added: readonly ViewRow[];
  /** Rows with modseq above since and uid below the known UIDNEXT, ascending. */
  changed: readonly ViewRow[];
  /** UIDs below the known UIDNEXT expunged after since, ascending. */
  expunged: readonly number[];
}

/** The narrow reads a backend provides. */
export interface ViewSource {
  /** The mailbox row, or null when there is none. */
  head(mailboxId: MailboxId): Promise<MailboxHead | null>;
  /**
   * Every row of the mailbox as one text, a line per message in UID order: "uid modseq bits
   * keywords" (the keywords as stored, space-separated, maybe none), lines joined by "\n".
   * One value instead of 100,000 rows: the database builds it in C, and it is parsed here
   * straight into the arrays (half the CPU time of reading the rows, measured on SQLite).
   * Keywords hold no white space or control character (store/flags.ts), so the format is safe.
   */
  rows(mailboxId: MailboxId): Promise<string>;
  since(mailboxId: MailboxId, modseq: number, uidNext: number): Promise<ViewDelta>;
  /** The mailbox's stored snapshot (view-snapshot.ts), or null. A backend without the table
   * leaves both snapshot methods out. */
  loadSnapshot?(mailboxId: MailboxId): Promise<Uint8Array | null>;
  /** Stores a snapshot of the mailbox's view as of modseq, replacing one of a lower or equal
   * modseq (and noting the time: warm-up order); does nothing when a newer one is stored or the
   * mailbox (of this UIDVALIDITY) is gone. */
  saveSnapshot?(mailboxId: MailboxId, snapshot: StoredSnapshot): Promise<void>;
  /** What warm() loads, with the message counts: the mailboxes that have a snapshot, most
   * recently stored first, then those of at least `minMessages` that have none (never opened
   * since snapshots exist, or filled by another process), largest first. */
  warmList?(minMessages: number): Promise<Array<{ mailboxId: MailboxId; messages: number }>>;
}

export interface StoredSnapshot {
  uidValidity: number;
  modseq: number;
  data: Uint8Array;
}

export interface ViewCacheOptions {
  /** Bound on the messages held over all entries (16 bytes each, plus growth room). */
  maxMessages?: number;
  /** Entries of at least this many messages are caught up in the background when the feed
   * reports a change (e.g. another node's STORE 1:*), not at the next SELECT. */
  eagerMinMessages?: number;
  /** A background catch-up or snapshot write failed (the next get() tries again). */
  onError?: (err: unknown) => void;
  /** Entries of at least this many messages are stored as snapshots (default 10,000; Infinity:
   * never). Smaller ones are read whole quickly enough (10,000 rows: about 10 ms). */
  snapshotMinMessages?: number;
  /** Rows changed since an entry's last snapshot (as applied by this cache) before it is written
   * again: the delta a restart would read on top of it (default 2,000 rows, a few ms). */
  snapshotDriftMessages?: number;
  /** Delay before such a write, so that it follows the command that caused it and a burst of
   * changes makes one write (default 2,000 ms). */
  snapshotDelayMs?: number;
  /** warm() loads the snapshotted mailboxes, most recently stored first, up to this many messages
   * (default 0: no warm-up; a server asks for VIEW_WARM_MESSAGES, a command-line tool does not). */
  warmMessages?: number;
}

export interface ViewCacheStats {
  /** Entries held, and the messages in them. */
  mailboxes: number;
  messages: number;
  /** Entries made from a stored snapshot (then caught up), and by reading every row. */
  fromSnapshot: number;
  wholeReads: number;
  /** Snapshots written (or found already newer) by this cache. */
  snapshotsWritten: number;
}

/** The view cache's figures of a store that has one (both SQL backends), else null. */
export function viewCacheStats(store: object): ViewCacheStats | null {
  const stats = (store as { viewCacheStats?: unknown }).viewCacheStats;
  return typeof stats === 'object' && stats !== null ? (stats as ViewCacheStats) : null;
}

export const DEFAULT_VIEW_CACHE_MESSAGES = 1_000_000;
/** The warm-up budget a server uses: a quarter of the default cache, about 50 ms of CPU at start
 * per 250,000 messages. */
export const VIEW_WARM_MESSAGES = 250_000;
const DEFAULT_EAGER_MIN = 1000;
const DEFAULT_SNAPSHOT_MIN = 10_000;
const DEFAULT_SNAPSHOT_DRIFT = 2000;
const DEFAULT_SNAPSHOT_DELAY_MS = 2000;
/** Per-entry bookkeeping, counted in messages against maxMessages. */
const ENTRY_WEIGHT = 64;
/** Deltas dropped in a row because a hook moved the entry meanwhile, before a whole read. */
const MAX_RETRIES = 4;

class Entry implements ViewState {
  readonly id: MailboxId;
  accountId: number;
  uidValidity = 0;
  uidNext = 1;
  modseq = 0;
  n = 0;
  uids = new Uint32Array(0);
  modseqs = new Float64Array(0);
  flagIds = new Uint32Array(0);
  /** Distinct flag lists; an id indexes this. */
  flagSets: string[][] = [];
  /** Flag-list id by stored form ("bits" or "bits keywords") and by displayed form. */
  byRow = new Map<number | string, number>();
  byList = new Map<string, number>();
  /** Bumped by every change: a delta asked for an older version is dropped. */
  version = 0;
  /** The arrays were handed out since they were last copied: copy before changing in place. */
  shared = false;
  /** How many messages have each flag list: an unused list is not handed out (its keywords
   * are not in use), without a scan of the messages at each SELECT. */
  counts: number[] = [];
  /** The tail of this entry's catch-up queue. */
  queue: Promise<unknown> = Promise.resolve();
  refreshScheduled = false;
  /** Rows changed (added, changed, expunged; counted as applied) since the stored snapshot;
   * Infinity when none is known to be stored. */
  drift = Infinity;
  /** False while a failed delta is being replaced by a whole read: not to be snapshotted. */
  trusted = true;
  saveTimer: NodeJS.Timeout | null = null;

  constructor(id: MailboxId, accountId: number) {
    this.id = id;
    this.accountId = accountId;
  }

  reset(head: MailboxHead, capacity: number): void {
    const { uidValidity, uidNext, highestModSeq: modseq } = head;
    const empty = { uids: new Uint32Array(capacity), modseqs: new Float64Array(capacity), flagIds: new Uint32Array(capacity) };
    this.restore({ uidValidity, uidNext, modseq, n: 0, ...empty, flagSets: [], counts: [] }, head.accountId);
  }

  /** Takes a decoded snapshot's state (its arrays become this entry's); false when its flag
   * lists are not distinct (not one this cache wrote). */
  restore(s: DecodedSnapshot, accountId: number): boolean {
    this.accountId = accountId;
    this.uidValidity = s.uidValidity;
    this.uidNext = s.uidNext;
    this.modseq = s.modseq;
    this.n = s.n;
    this.uids = s.uids;
    this.modseqs = s.modseqs;
    this.flagIds = s.flagIds;
    this.flagSets = [];
    this.byRow.clear();
    this.byList.clear();
    this.counts = [];
    this.version++;
    this.shared = false;
    for (const [i, f] of s.flagSets.entries()) if (this.listFlags([...f]) !== i) return false;
    this.counts = s.counts;
    return true;
  }

  /** Makes the arrays this entry's own before a change in place (copy on write). */
  own(): void {
    if (!this.shared) return;
    this.uids = this.uids.slice();
    this.modseqs = this.modseqs.slice();
    this.flagIds = this.flagIds.slice();
    this.shared = false;
  }

  /** Sets the modseq and flags of the message at index i (the arrays are owned). */
  update(i: number, modseq: number, flagId: number): void {
    this.modseqs[i] = modseq;
    const old = this.flagIds[i]!;
    if (old !== flagId) {
      this.flagIds[i] = flagId;
      this.counts[old]!--;
      this.counts[flagId]!++;
    }
  }

  rowFlags(mask: number, keywords: string): number {
    const key = keywords === '' ? mask : `${mask} ${keywords}`;
    let id = this.byRow.get(key);
    if (id === undefined) {
      id = this.listFlags(flagList(mask, keywords));
      this.byRow.set(key, id);
    }
    return id;
  }

  listFlags(flags: string[]): number {
    const key = flags.join(' ');
    let id = this.byList.get(key);
    if (id === undefined) {
      id = this.flagSets.length;
      this.flagSets.push(flags);
      this.counts.push(0);
      this.byList.set(key, id);
    }
    return id;
  }

  /** Appends; the slot past n is not in any array handed out. */
  push(uid: number, modseq: number, flagId: number): void {
    if (this.n === this.uids.length) this.grow(this.n + 1);
    this.uids[this.n] = uid;
    this.modseqs[this.n] = modseq;
    this.flagIds[this.n] = flagId;
    this.counts[flagId]!++;
    this.n++;
  }

  grow(min: number): void {
    const cap = Math.max(min, Math.ceil(this.uids.length * 1.25) + 64);
    this.uids = resized(this.uids, this.n, cap);
    this.modseqs = resized(this.modseqs, this.n, cap);
    this.flagIds = resized(this.flagIds, this.n, cap);
    this.shared = false;
  }

  /** Puts the messages in UID order (a backend that did not keep it). */
  sortByUid(): void {
    const order = Array.from({ length: this.n }, (_, i) => i).sort((a, b) => this.uids[a]! - this.uids[b]!);
    const uids = this.uids.slice();
    const modseqs = this.modseqs.slice();
    const flagIds = this.flagIds.slice();
    order.forEach((from, to) => {
      this.uids[to] = uids[from]!;
      this.modseqs[to] = modseqs[from]!;
      this.flagIds[to] = flagIds[from]!;
    });
  }

  /** Index of uid, or -1; searches from `from` on (callers go in ascending UID order). */
  indexOf(uid: number, from = 0): number {
    let lo = from;
    let hi = this.n - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const v = this.uids[mid]!;
      if (v === uid) return mid;
      if (v < uid) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  /** Removes these UIDs (ascending); absent ones are ignored. */
  remove(gone: readonly number[]): void {
    if (gone.length === 0) return;
    this.own();
    let w = 0;
    let j = 0;
    for (let r = 0; r < this.n; r++) {
      const u = this.uids[r]!;
      while (j < gone.length && gone[j]! < u) j++;
      if (j < gone.length && gone[j] === u) {
        this.counts[this.flagIds[r]!]!--;
        continue;
      }
      if (w !== r) {
        this.uids[w] = u;
        this.modseqs[w] = this.modseqs[r]!;
        this.flagIds[w] = this.flagIds[r]!;
      }
      w++;
    }
    this.n = w;
  }

  /** Drops the flag lists no message uses any more, when they outnumber the ones in use: a
   * client storing ever new keywords cannot grow the table without bound. */
  compactFlags(): void {
    let used = 0;
    for (const c of this.counts) if (c > 0) used++;
    if (this.flagSets.length - used <= Math.max(64, used)) return;
    this.own();
    const remap = new Uint32Array(this.flagSets.length);
    const sets: string[][] = [];
    const counts: number[] = [];
    this.byList.clear();
    for (let f = 0; f < this.flagSets.length; f++) {
      if (this.counts[f] === 0) continue;
      remap[f] = sets.length;
      this.byList.set(this.flagSets[f]!.join(' '), sets.length);
      sets.push(this.flagSets[f]!);
      counts.push(this.counts[f]!);
    }
    for (let i = 0; i < this.n; i++) this.flagIds[i] = remap[this.flagIds[i]!]!;
    this.flagSets = sets;
    this.counts = counts;
    this.byRow.clear();
  }

  snapshot(): ViewEntries {
    this.compactFlags();
    this.shared = true;
    return {
      uidValidity: asUidValidity(this.uidValidity),
      uidNext: asUid(this.uidNext),
      highestModSeq: asModSeq(this.modseq),
      uids: this.uids.subarray(0, this.n),
      modseqs: this.modseqs.subarray(0, this.n),
      flagIds: this.flagIds.subarray(0, this.n),
      // Null for a list no message has (its keywords are not in use, RFC 9051 §7.3.5).
      flagSets: this.flagSets.map((f, i) => (this.counts[i]! > 0 ? f : null)),
    };
  }
}

export class ViewCache {
  readonly #source: ViewSource;
  readonly #feed: ChangeFeed;
  readonly #max: number;
  readonly #eagerMin: number;
  readonly #onError: (err: unknown) => void;
  /** Whether snapshots are read and written (the backend stores them). */
  readonly #snapshots: boolean;
  readonly #snapMin: number;
  readonly #snapDrift: number;
  readonly #snapDelay: number;
  readonly #warmMax: number;
  #warming: Promise<void> = Promise.resolve();
  readonly #counts = { fromSnapshot: 0, wholeReads: 0, snapshotsWritten: 0 };
  /** Snapshot writes in flight, awaited by close(). */
  readonly #saving = new Set<Promise<void>>();
  /** In least recently used order (Map insertion order, refreshed on use). */
  readonly #entries = new Map<MailboxId, Entry>();
  readonly #loading = new Map<MailboxId, Promise<Entry>>();
  /** Feed subscriptions, one per account with entries, and how many entries each serves. */
  readonly #subs = new Map<number, { off: () => void; count: number }>();
  #closed = false;

  constructor(source: ViewSource, feed: ChangeFeed, options: ViewCacheOptions = {}) {
    this.#source = source;
    this.#feed = feed;
    this.#max = options.maxMessages ?? DEFAULT_VIEW_CACHE_MESSAGES;
    this.#eagerMin = options.eagerMinMessages ?? DEFAULT_EAGER_MIN;
    this.#onError = options.onError ?? (() => {});
    this.#snapshots = source.loadSnapshot !== undefined && source.saveSnapshot !== undefined;
    this.#snapMin = options.snapshotMinMessages ?? DEFAULT_SNAPSHOT_MIN;
    this.#snapDrift = Math.max(1, options.snapshotDriftMessages ?? DEFAULT_SNAPSHOT_DRIFT);
    this.#snapDelay = options.snapshotDelayMs ?? DEFAULT_SNAPSHOT_DELAY_MS;
    this.#warmMax = Math.min(this.#max, options.warmMessages ?? 0);
  }

  /**
   * Loads, in the background, the views of the mailboxes that have a snapshot (those large and
   * recently used), most recently stored first, then of the large ones that have none (read
   * whole, which stores their snapshot), up to warmMessages: called once the store is open, so
   * that the first SELECT after a start (clients reconnect at once) finds its view held instead
   * of reading the snapshot, or every row, itself. One mailbox at a time, yielding in between; a SELECT
   * of a mailbox being loaded waits for that load rather than starting another.
   */
  warm(): void {
    if (!this.#snapshots || this.#warmMax <= 0 || this.#source.warmList === undefined) return;
    const run = async (): Promise<void> => {
      // After the opener's turn: a server starts listening first.
      await new Promise((resolve) => setImmediate(resolve));
      let budget = this.#warmMax;
      for (const { mailboxId, messages } of await this.#source.warmList!(this.#snapMin)) {
        if (this.#closed) return;
        if (messages + ENTRY_WEIGHT > budget) continue;
        budget -= messages + ENTRY_WEIGHT;
        if (this.#entries.has(mailboxId)) continue;
        await this.get(mailboxId).catch((err: unknown) => {
          if (!this.#closed && !(err instanceof StoreError && err.code === 'not-found')) this.#onError(err);
        });
        await new Promise((resolve) => setImmediate(resolve));
      }
    };
    this.#warming = run().catch((err: unknown) => {
      if (!this.#closed) this.#onError(err);
    });
  }

  /** The mailbox's messages as of now. StoreError 'not-found' when the mailbox does not exist. */
  async get(mailboxId: MailboxId): Promise<ViewEntries> {
    const cached = this.#entries.get(mailboxId);
    if (cached !== undefined) {
      this.#entries.delete(mailboxId);
      this.#entries.set(mailboxId, cached);
      await this.#serial(cached, () => this.#catchUp(cached));
      return cached.snapshot();
    }
    let loading = this.#loading.get(mailboxId);
    if (loading === undefined) {
      loading = this.#load(mailboxId).finally(() => this.#loading.delete(mailboxId));
      this.#loading.set(mailboxId, loading);
    }
    return (await loading).snapshot();
  }

  /** A setFlags result that committed: applied when the entry is at the state it was made on
   * (nothing else changed the mailbox in between). */
  stored(mailboxId: MailboxId, res: SetFlagsResult): SetFlagsResult {
    const e = this.#entries.get(mailboxId);
    if (e === undefined || res.updated.length === 0 || e.modseq !== res.priorModSeq) return res;
    if (!this.#applyUpdates(e, res.updated)) {
      this.#drop(e);
      return res;
    }
    e.drift += res.updated.length;
    this.#scheduleSave(e);
    return res;
  }

  /** Entries held and the messages in them, and how entries were made (tests, metrics). */
  get stats(): ViewCacheStats {
    let messages = 0;
    for (const e of this.#entries.values()) messages += e.n;
    return { mailboxes: this.#entries.size, messages, ...this.#counts };
  }

  /** Stops, after writing the snapshot of every entry that changed since its last one (the
   * backend must still accept writes until this resolves). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#warming;
    for (const e of this.#entries.values()) {
      if (e.saveTimer !== null) clearTimeout(e.saveTimer);
      e.saveTimer = null;
      // Unchanged ones too: rewritten, they are the most recently used for the next warm-up.
      if (this.#snapshots && e.n >= this.#snapMin) this.#save(e, true);
    }
    await Promise.all(this.#saving);
    for (const e of [...this.#entries.values()]) this.#drop(e);
  }

  #serial<T>(e: Entry, fn: () => Promise<T>): Promise<T> {
    const run = e.queue.then(fn, fn);
    e.queue = run.catch(() => {});
    return run;
  }

  async #load(mailboxId: MailboxId): Promise<Entry> {
    const e = new Entry(mailboxId, 0);
    if (!(await this.#restore(e))) await this.#fill(e);
    if (!this.#closed && e.n + ENTRY_WEIGHT <= this.#max && !this.#entries.has(mailboxId)) {
      this.#keep(e);
      this.#scheduleSave(e);
    }
    return e;
  }

  /** Starts the entry from its mailbox's snapshot and catches it up; false when there is no
   * sound snapshot or it does not fit the mailbox (the entry is then to be read whole). */
  async #restore(e: Entry): Promise<boolean> {
    if (!this.#snapshots) return false;
    const blob = await this.#source.loadSnapshot!(e.id);
    const snap = blob === null ? null : decodeViewSnapshot(blob);
    if (snap === null) return false;
    const delta = await this.#source.since(e.id, snap.modseq, snap.uidNext);
    const h = delta.head;
    if (h === null) throw notFound(e.id);
    // Another identity (UIDVALIDITY), or a state the mailbox never was in (ahead of it).
    if (h.uidValidity !== snap.uidValidity || snap.modseq > h.highestModSeq || snap.uidNext > h.uidNext) return false;
    if (!e.restore(snap, h.accountId)) return false;
    if (!this.#applyDelta(e, delta) || e.n !== h.messages) return false;
    e.drift = delta.added.length + delta.changed.length + delta.expunged.length;
    this.#counts.fromSnapshot++;
    return true;
  }

  /** Reads the mailbox row, then every row. A change committed in between is in the rows but
   * also above the head's modseq, so the next catch-up applies it again (harmlessly). */
  async #fill(e: Entry): Promise<void> {
    const head = await this.#source.head(e.id);
    if (head === null) throw notFound(e.id);
    const text = await this.#source.rows(e.id);
    e.reset(head, head.messages + 16);
    this.#counts.wholeReads++;
    e.drift = Infinity;
    e.trusted = true;
    let p = 0;
    let sorted = true;
    const int = (): number => {
      let v = 0;
      for (let c = text.charCodeAt(p); c >= 48 && c <= 57; c = text.charCodeAt(++p)) v = v * 10 + (c - 48);
      p++; // the space after it
      return v;
    };
    while (p < text.length) {
      const uid = int();
      const modseq = int();
      const mask = int();
      let end = text.indexOf('\n', p);
      if (end < 0) end = text.length;
      const keywords = end > p ? text.slice(p, end) : '';
      p = end + 1;
      if (e.n > 0 && uid <= e.uids[e.n - 1]!) sorted = false;
      e.push(uid, modseq, e.rowFlags(mask, keywords));
    }
    if (!sorted) e.sortByUid();
    const last = e.n > 0 ? e.uids[e.n - 1]! : 0;
    if (last >= e.uidNext) e.uidNext = last + 1;
  }

  async #catchUp(e: Entry): Promise<void> {
    for (let attempt = 0; attempt < MAX_RETRIES; attempt++) {
      const version = e.version;
      const delta = await this.#source.since(e.id, e.modseq, e.uidNext);
      if (delta.head === null) {
        this.#drop(e);
        throw notFound(e.id);
      }
      if (e.version !== version) continue; // stored() moved it meanwhile: ask again.
      if (delta.head.uidValidity !== e.uidValidity) break;
      if (this.#applyDelta(e, delta) && e.n === delta.head.messages) {
        e.drift += delta.added.length + delta.changed.length + delta.expunged.length;
        this.#scheduleSave(e);
        return;
      }
      break;
    }
    e.trusted = false;
    await this.#fill(e);
    this.#scheduleSave(e);
  }

  /** A snapshot write after snapshotDelayMs, when the entry is large and far from its last one. */
  #scheduleSave(e: Entry): void {
    if (!this.#snapshots || this.#closed || e.saveTimer !== null || e.n < this.#snapMin || e.drift < this.#snapDrift) return;
    if (this.#entries.get(e.id) !== e) return;
    e.saveTimer = setTimeout(() => {
      e.saveTimer = null;
      this.#save(e);
    }, this.#snapDelay);
    e.saveTimer.unref();
  }

  /** Writes the entry's state now (encoded at once, so it is one whole state; the write itself
   * runs in the background and holds up no catch-up). */
  #save(e: Entry, evenUnchanged = false): void {
    if (this.#entries.get(e.id) !== e || !e.trusted || (e.drift === 0 && !evenUnchanged)) return;
    const data = encodeViewSnapshot(e, e.n);
    if (data === null) return;
    const drift = e.drift;
    e.drift = 0;
    const write = this.#source.saveSnapshot!(e.id, { uidValidity: e.uidValidity, modseq: e.modseq, data })
      .then(() => {
        this.#counts.snapshotsWritten++;
      })
      .catch((err: unknown) => {
        e.drift += drift;
        this.#onError(err);
      })
      .finally(() => this.#saving.delete(write));
    this.#saving.add(write);
  }

  #applyDelta(e: Entry, d: ViewDelta): boolean {
    e.version++;
    e.remove(d.expunged);
    if (d.changed.length > 0) e.own();
    let from = 0;
    for (const [uid, modseq, mask, keywords] of d.changed) {
      const i = e.indexOf(uid, from);
      if (i < 0) return false;
      e.update(i, modseq, e.rowFlags(mask, keywords));
      from = i + 1;
    }
    for (const [uid, modseq, mask, keywords] of d.added) {
      const last = e.n > 0 ? e.uids[e.n - 1]! : 0;
      if (uid > last) {
        e.push(uid, modseq, e.rowFlags(mask, keywords));
      } else {
        // Already read by the whole read that made this entry (see #fill).
        const i = e.indexOf(uid);
        if (i < 0) return false;
        e.own();
        e.update(i, modseq, e.rowFlags(mask, keywords));
      }
      if (uid >= e.uidNext) e.uidNext = uid + 1;
    }
    if (d.head !== null) {
      if (d.head.uidNext > e.uidNext) e.uidNext = d.head.uidNext;
      if (d.head.highestModSeq > e.modseq) e.modseq = d.head.highestModSeq;
    }
    return true;
  }

  /** Applies a setFlags result (UID order); false when a UID is not in the entry. */
  #applyUpdates(e: Entry, updated: readonly FlagUpdate[]): boolean {
    e.version++;
    e.own();
    let from = 0;
    let lastList: readonly string[] | null = null;
    let lastId = 0;
    for (const u of updated) {
      const i = e.indexOf(u.uid, from);
      if (i < 0) return false;
      if (u.flags !== lastList) {
        lastList = u.flags;
        lastId = e.listFlags(u.flags);
      }
      e.update(i, u.modseq, lastId);
      if (u.modseq > e.modseq) e.modseq = u.modseq;
      from = i + 1;
    }
    return true;
  }

  #keep(e: Entry): void {
    this.#entries.set(e.id, e);
    let sub = this.#subs.get(e.accountId);
    if (sub === undefined) {
      const off = this.#feed.subscribe(e.accountId as AccountId, (event) => this.#heard(event));
      sub = { off, count: 0 };
      this.#subs.set(e.accountId, sub);
    }
    sub.count++;
    // Summed here rather than kept up to date: entries grow and shrink with every delta.
    let held = 0;
    for (const x of this.#entries.values()) held += x.n + ENTRY_WEIGHT;
    for (const old of [...this.#entries.values()]) {
      if (held <= this.#max) break;
      if (old === e) continue;
      held -= old.n + ENTRY_WEIGHT;
      this.#drop(old);
    }
  }

  #drop(e: Entry): void {
    if (this.#entries.get(e.id) !== e) return;
    this.#entries.delete(e.id);
    if (e.saveTimer !== null) clearTimeout(e.saveTimer);
    e.saveTimer = null;
    const sub = this.#subs.get(e.accountId);
    if (sub !== undefined && --sub.count === 0) {
      sub.off();
      this.#subs.delete(e.accountId);
    }
  }

  /** A change on this node or another: a large entry catches up now, in the background, so the
   * next SELECT finds it current. After the current turn, so a setFlags result (stored()) that
   * comes with the same write is applied first and the catch-up finds nothing left to read. */
  #heard(event: ChangeEvent): void {
    if (event.mailboxId === null) return;
    const e = this.#entries.get(event.mailboxId);
    if (e === undefined || e.refreshScheduled || e.n < this.#eagerMin || event.modseq <= e.modseq) return;
    e.refreshScheduled = true;
    setImmediate(() => {
      e.refreshScheduled = false;
      if (this.#entries.get(e.id) !== e || this.#closed) return;
      this.#serial(e, () => this.#catchUp(e)).catch((err: unknown) => {
        // A mailbox deleted meanwhile, or a store closed meanwhile: nothing to report.
        if (!this.#closed && !(err instanceof StoreError && err.code === 'not-found')) this.#onError(err);
      });
    });
  }
}

function notFound(id: MailboxId): StoreError {
  return new StoreError('not-found', `Cannot find mailbox ${id}`);
}
