/**
 * SORT (RFC 5256 §3, with RFC 5957 DISPLAYFROM/DISPLAYTO): orders the messages a search matched.
 *
 * Invariants:
 * - the result is a permutation of the indexes given, less the messages no longer in the store;
 *   messages equal under every criterion keep sequence order ("sorted according to the order in
 *   which they appear in the mailbox", RFC 5256 §3), REVERSE never applies to that final order;
 * - keys are compared as ranks (equal keys, equal ranks), never as strings or objects here: the
 *   store ranks a whole mailbox by one key in one read (storeSortView), or ranks are computed from
 *   the parse records for entries held in memory (sortViewOf);
 * - the work is one counting-sort pass per criterion over typed arrays, no comparison.
 */
import type { SortKeys } from '../../mail/sort-keys.js';
import { sortKeysOf, THREAD_NO_SUBJECT, THREAD_REPLY } from '../../mail/sort-keys.js';
import type { MailboxId, Uid } from '../../lib/brand.js';
import type { MailStore, ViewEntry, SortKeyName, SortRanks, ThreadKeyColumns } from '../../store/types.js';
import type { SortCriterion } from '../protocol/ast.js';

/** One key's ranks by position in the view: -1 for a message not in the store. */
export interface ViewRanks {
  ranks: Int32Array;
  /** The largest rank (-1 when there is none). */
  max: number;
}

/** THREAD's keys by position in the view (see ThreadKeyColumns). */
export interface ViewThreadKeys {
  /** The row of each position in `columns`, -1 for a message not in the store. */
  row: Int32Array;
  columns: ThreadKeyColumns;
}

export interface SortView {
  /** Number of messages in the view (positions 0 to count - 1). */
  count: number;
  ranks(key: SortKeyName): Promise<ViewRanks>;
  threadKeys(): Promise<ViewThreadKeys>;
}

/** Position of `uid` in the ascending `uids`, or -1. */
function positionOf(uids: ArrayLike<Uid>, uid: number): number {
  let lo = 0;
  let hi = uids.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const v = uids[mid]!;
    if (v < uid) lo = mid + 1;
    else if (v > uid) hi = mid - 1;
    else return mid;
  }
  return -1;
}

function isAscending(xs: Float64Array): boolean {
  for (let r = 1; r < xs.length; r++) if (xs[r]! <= xs[r - 1]!) return false;
  return true;
}

/** For each view position, the index of its UID in `storeUids` (any order), or -1: one merge
 * walk when the store's UIDs come ascending (as a scan of the mailbox gives them), a table by
 * UID when the UIDs are not much sparser than the messages, else a binary search each. */
function rowsByPosition(viewUids: ArrayLike<Uid>, storeUids: Float64Array): Int32Array {
  const row = new Int32Array(viewUids.length).fill(-1);
  const top = viewUids.length === 0 ? 0 : viewUids[viewUids.length - 1]!;
  if (top <= 4 * viewUids.length + 1024 && !isAscending(storeUids)) {
    const at = new Int32Array(top + 1).fill(-1);
    for (let p = 0; p < viewUids.length; p++) at[viewUids[p]!] = p;
    for (let r = 0; r < storeUids.length; r++) {
      const uid = storeUids[r]!;
      const p = uid <= top ? at[uid]! : -1;
      if (p >= 0) row[p] = r;
    }
    return row;
  }
  if (isAscending(storeUids)) {
    let p = 0;
    for (let r = 0; r < storeUids.length; r++) {
      const uid = storeUids[r]!;
      while (p < viewUids.length && viewUids[p]! < uid) p++;
      if (p === viewUids.length) break;
      if (viewUids[p] === uid) row[p] = r;
    }
    return row;
  }
  for (let r = 0; r < storeUids.length; r++) {
    const p = positionOf(viewUids, storeUids[r]!);
    if (p >= 0) row[p] = r;
  }
  return row;
}

function viewRanks(viewUids: ArrayLike<Uid>, got: SortRanks): ViewRanks {
  const row = rowsByPosition(viewUids, got.uids);
  const ranks = new Int32Array(viewUids.length);
  let max = -1;
  for (let p = 0; p < row.length; p++) {
    const r = row[p]!;
    const k = r < 0 ? -1 : got.ranks[r]!;
    ranks[p] = k;
    if (k > max) max = k;
  }
  return { ranks, max };
}

/**
 * A SortView over the keys the store computed at ingest: one read per key for the whole mailbox,
 * no parse record. `uids`: the view's UIDs in sequence order (ascending).
 */
export function storeSortView(store: Pick<MailStore, 'rankSortKey' | 'listThreadKeys'>, mailboxId: MailboxId, uids: ArrayLike<Uid>): SortView {
  return {
    count: uids.length,
    ranks: async (key) => viewRanks(uids, await store.rankSortKey(mailboxId, key)),
    async threadKeys() {
      const columns = await store.listThreadKeys(mailboxId);
      return { row: rowsByPosition(uids, columns.uids), columns };
    },
  };
}

/** A message's sort keys with what its entry adds (RFC 5256 §3 ARRIVAL, SIZE). */
interface MessageKeys extends SortKeys {
  internalDate: number;
  size: number;
}

function keyOf(key: SortKeyName, k: MessageKeys): number | string {
  switch (key) {
    case 'ARRIVAL':
      return k.internalDate; // RFC 5256 §3 ARRIVAL: INTERNALDATE
    case 'SIZE':
      return k.size;
    case 'DATE':
      // RFC 5256 §3 DATE: the sent date; "If the sent date cannot be determined ... the
      // INTERNALDATE for that message is used".
      return k.sentDate ?? k.internalDate;
    case 'CC':
      return k.cc;
    case 'FROM':
      return k.from;
    case 'TO':
      return k.to;
    case 'SUBJECT':
      return k.subject; // RFC 5256 §2.1 base subject
    case 'DISPLAYFROM':
      return k.displayFrom;
    case 'DISPLAYTO':
      return k.displayTo;
  }
}

/** Byte order of the UTF-8 forms (code point order), as the stores compare text keys. */
function compareKeys(a: number | string, b: number | string): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return Buffer.compare(Buffer.from(String(a)), Buffer.from(String(b)));
}

/**
 * A SortView that reads each message's parse record (a bounded number at a time) and derives its
 * keys: for entries held in memory, and as the plain reference the store's ranks are checked
 * against.
 */
export function sortViewOf(entries: readonly ViewEntry[], store: Pick<MailStore, 'getParsed'>): SortView {
  let loaded: Promise<Array<MessageKeys | null>> | null = null;
  const all = (): Promise<Array<MessageKeys | null>> =>
    (loaded ??= (async () => {
      const out: Array<MessageKeys | null> = [];
      for (let s = 0; s < entries.length; s += 64) {
        const batch = entries.slice(s, s + 64);
        const got = await Promise.all(batch.map((e) => store.getParsed(e.blobHash).catch(() => null)));
        batch.forEach((e, j) => {
          const p = got[j];
          // Assigned, not spread: a spread that adds properties takes V8's slow path.
          out.push(p === null || p === undefined ? null : Object.assign(sortKeysOf(p), { internalDate: e.internalDate, size: e.size }));
        });
      }
      return out;
    })());
  const ranksOf = async (key: SortKeyName): Promise<ViewRanks> => {
    const keys = await all();
    const present = keys.flatMap((k, i) => (k === null ? [] : [i]));
    const value = (i: number): number | string => keyOf(key, keys[i]!);
    present.sort((a, b) => compareKeys(value(a), value(b)));
    const ranks = new Int32Array(entries.length).fill(-1);
    let rank = -1;
    present.forEach((i, p) => {
      if (p === 0 || compareKeys(value(present[p - 1]!), value(i)) !== 0) rank++;
      ranks[i] = rank;
    });
    return { ranks, max: rank };
  };
  return {
    count: entries.length,
    ranks: ranksOf,
    async threadKeys() {
      const keys = await all();
      // Names numbered here as the store numbers them (thread_names): one number per string.
      const numbers = new Map<string, number>();
      const number = (text: string): number => {
        let n = numbers.get(text);
        if (n === undefined) numbers.set(text, (n = numbers.size + 1));
        return n;
      };
      const rows = keys.flatMap((k, i) => (k === null ? [] : [i]));
      const row = new Int32Array(entries.length).fill(-1);
      rows.forEach((i, r) => (row[i] = r));
      const refs: number[] = [];
      const refStart = new Uint32Array(rows.length + 1);
      rows.forEach((i, r) => {
        refStart[r] = refs.length;
        for (const id of keys[i]!.references) refs.push(number(id));
      });
      refStart[rows.length] = refs.length;
      const columns: ThreadKeyColumns = {
        uids: Float64Array.from(rows, (i) => entries[i]!.uid),
        dates: Float64Array.from(rows, (i) => keys[i]!.sentDate ?? keys[i]!.internalDate),
        flags: Uint8Array.from(rows, (i) => (keys[i]!.reply ? THREAD_REPLY : 0) | (keys[i]!.subject === '' ? THREAD_NO_SUBJECT : 0)),
        subjects: Float64Array.from(rows, (i) => number(keys[i]!.subject)),
        messageIds: Float64Array.from(rows, (i) => (keys[i]!.messageId === null ? 0 : number(keys[i]!.messageId!))),
        refStart,
        refs: Float64Array.from(refs),
      };
      return { row, columns };
    },
  };
}

/**
 * Sorts `indexes` (0-based positions in the view) by the criteria, RFC 5256 §3. A message no
 * longer in the store is left out.
 *
 * The ranks are dense small integers, so this is a least-significant-key-first counting sort: one
 * stable pass per criterion (last criterion first, REVERSE as max - rank) over the positions in
 * sequence order, O(messages + ranks) each, no comparison.
 */
export async function sortMessages(indexes: ArrayLike<number>, criteria: readonly SortCriterion[], view: SortView): Promise<number[]> {
  const cols = await Promise.all(criteria.map((c) => view.ranks(c.key)));
  let order = new Int32Array(indexes.length);
  let n = 0;
  let ascending = true;
  for (let j = 0; j < indexes.length; j++) {
    const i = indexes[j]!;
    let present = true;
    for (const col of cols) if (col.ranks[i]! < 0) present = false;
    if (!present) continue;
    if (n > 0 && i < order[n - 1]!) ascending = false;
    order[n++] = i;
  }
  order = order.subarray(0, n);
  // Messages equal under every criterion keep sequence order (RFC 5256 §3).
  if (!ascending) order.sort();
  let other = new Int32Array(n);
  for (let c = criteria.length - 1; c >= 0; c--) {
    const { ranks, max } = cols[c]!;
    const reverse = criteria[c]!.reverse;
    const start = new Int32Array(max + 2);
    for (let q = 0; q < n; q++) {
      const r = ranks[order[q]!]!;
      start[(reverse ? max - r : r) + 1]!++;
    }
    for (let k = 1; k < start.length; k++) start[k]! += start[k - 1]!;
    for (let q = 0; q < n; q++) {
      const i = order[q]!;
      const r = ranks[i]!;
      other[start[reverse ? max - r : r]!++] = i;
    }
    [order, other] = [other, order];
  }
  const out = new Array<number>(n);
  for (let q = 0; q < n; q++) out[q] = order[q]!;
  return out;
}
