/**
 * SORT (RFC 5256 §3, with RFC 5957 DISPLAYFROM/DISPLAYTO): orders the messages a search matched.
 *
 * Invariants:
 * - the result is a permutation of the indexes given; messages equal under every criterion keep
 *   sequence order ("sorted according to the order in which they appear in the mailbox",
 *   RFC 5256 §3), REVERSE never applies to that final order;
 * - the keys come from the store, computed once at ingest (storeSortView), or from the parse
 *   records, a bounded number at a time (sortViewOf); a message no longer in the store is left
 *   out.
 */
import type { SortKeys } from '../../mail/sort-keys.js';
import { sortKeysOf } from '../../mail/sort-keys.js';
import type { MailboxId, Uid } from '../../lib/brand.js';
import type { MailStore, MessageEntry } from '../../store/types.js';
import type { SortCriterion } from '../protocol/ast.js';

/** A message's sort keys with what its entry adds (RFC 5256 §3 ARRIVAL, SIZE). */
export interface MessageKeys extends SortKeys {
  internalDate: number;
  size: number;
}

export interface SortView {
  /** The keys of the messages at these 0-based positions in the session's view; a message no
   * longer in the store is left out. */
  keys(indexes: readonly number[]): Promise<Map<number, MessageKeys>>;
}

/** A SortView that reads each message's parse record (a bounded number at a time) and derives
 * its keys: for entries held in memory. */
export function sortViewOf(entries: readonly MessageEntry[], store: Pick<MailStore, 'getParsed'>): SortView {
  return {
    async keys(indexes) {
      const out = new Map<number, MessageKeys>();
      for (let s = 0; s < indexes.length; s += 64) {
        const batch = indexes.slice(s, s + 64);
        const got = await Promise.all(batch.map((i) => store.getParsed(entries[i]!.blobHash)));
        batch.forEach((i, j) => out.set(i, { ...sortKeysOf(got[j]!), internalDate: entries[i]!.internalDate, size: entries[i]!.size }));
      }
      return out;
    },
  };
}

/**
 * A SortView over the keys the store computed at ingest (MailStore.listSortKeys): one read of a
 * few columns for the whole mailbox, no parse record. `uids`: the view's UIDs in sequence order.
 */
export function storeSortView(store: Pick<MailStore, 'listSortKeys'>, mailboxId: MailboxId, uids: readonly Uid[]): SortView {
  return {
    async keys(indexes) {
      const wanted = new Uint8Array(uids.length);
      for (const i of indexes) wanted[i] = 1;
      const out = new Map<number, MessageKeys>();
      // Both lists are in UID order: one merge pass.
      let i = 0;
      for (const row of await store.listSortKeys(mailboxId)) {
        while (i < uids.length && uids[i]! < row.uid) i++;
        if (i === uids.length) break;
        if (uids[i] === row.uid && wanted[i] === 1) out.set(i, row);
      }
      return out;
    },
  };
}

type Key = number | string;

function keyOf(c: SortCriterion, k: MessageKeys): Key {
  switch (c.key) {
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

function compareKeys(a: Key, b: Key): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  const x = String(a);
  const y = String(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** Sorts `indexes` (0-based positions in the view) by the criteria, RFC 5256 §3. A message no
 * longer in the store is left out. */
export async function sortMessages(indexes: readonly number[], criteria: readonly SortCriterion[], view: SortView): Promise<number[]> {
  const all = await view.keys(indexes);
  const present = indexes.filter((i) => all.has(i));
  // One key array per criterion, by position in `present`: the comparator reads arrays only.
  const cols = criteria.map((c) => present.map((i) => keyOf(c, all.get(i)!)));
  const order = present.map((_, p) => p);
  order.sort((a, b) => {
    for (let c = 0; c < criteria.length; c++) {
      const col = cols[c]!;
      const d = compareKeys(col[a]!, col[b]!);
      if (d !== 0) return criteria[c]!.reverse ? -d : d;
    }
    return present[a]! - present[b]!;
  });
  return order.map((p) => present[p]!);
}
