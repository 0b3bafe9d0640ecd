/**
 * The FETCH items whose bytes depend on a message's content alone, kept written out by blob:
 * ENVELOPE, BODY, BODYSTRUCTURE and BODY[...HEADER.FIELDS (...)]. Clients list the same messages
 * again and again with the same items (FETCH 1:100 (ENVELOPE BODYSTRUCTURE) at every resync, a
 * header list at every scroll), and each time the value tree was built from the parse record,
 * the header filtered field by field and the tree serialised: most of the CPU of such a FETCH.
 * Dovecot keeps the same strings in its cache file (imap.envelope, imap.bodystructure).
 *
 * Invariants:
 * - a blob is immutable and named by the hash of its bytes, so a kept item is right for as long
 *   as any entry references the hash, and byte for byte the same again if the blob is stored
 *   again after a removal: nothing is ever invalidated;
 * - an item is kept in the form of one client kind (UTF8=ACCEPT or not, IMAP4rev2 or not, see
 *   ItemVariant), under a key of that kind only (set refuses another), and given only to
 *   sessions of that kind;
 * - bounded by bytes (each blob's items and a fixed overhead), never by entries alone: a header
 *   item may be a 64 KiB literal;
 * - a blob's items may also be found through a handle (handleOf) kept elsewhere (FETCH keeps it
 *   with the entry's facts, see fetch.ts): the handle gives them only while the cache holds them
 *   and is emptied when they go, so a kept handle holds no item and the bound stays true; a hit
 *   through it marks them used as a lookup does. Item keys are numbered per cache: a handle is
 *   only used with the cache that gave it.
 */
import { WeightedLru, type LruHandle } from '../../lib/lru.js';
import type { FetchAtt } from '../protocol/ast.js';
import { Serialized } from '../protocol/serialize.js';
import { itemName } from './fetch.js';

/** Default bound: the items of about 10,000 messages with an ENVELOPE, a BODYSTRUCTURE and a
 * header list each. */
export const DEFAULT_FETCH_ITEM_CACHE_BYTES = 16 * 1024 * 1024;

/** Map overhead of a blob's slot and of each item, for the weight (an item's text is a byte a
 * character; the text is kept alone, not in a Serialized: see KeptText). */
const SLOT_BYTES = 200;
const ITEM_BYTES = 64;

/** What a session's responses depend on besides the message (fetch.ts FetchOptions). */
export interface ItemVariant {
  rev2: boolean;
  utf8Accept: boolean;
}

/** How one item of a command is kept: under `key`, whole (`name` null), or only its value when
 * the same value answers several spellings of the item (a header list's names in another order
 * or case: the name, echoed as the client wrote it, is then written once per command). */
export interface ItemPlan {
  key: number;
  name: Serialized | null;
  /** The variant's UTF8=ACCEPT: every item kept under `key` was written so (see set). */
  utf8: boolean;
}

/**
 * A kept item: the text of its Serialized (Serialized.text), held as the string alone. FETCH
 * looks up a message's items for every message it answers, in a cache larger than the
 * processor's caches: each object between the lookup and the bytes is one more wait on memory
 * per item, and the Serialized around the text was one. Whether the text was written for a
 * UTF-8 client is its key's (ItemPlan.utf8), not stored per item.
 */
export type KeptText = string;

/** A blob's items as handleOf gives them: `value` undefined once the cache let them go. The
 * cache holds the map itself (its weight is the cache's), one object fewer between a message
 * and its items. */
export type KeptItemsHandle = LruHandle<ReadonlyMap<number, KeptText>>;

/** Distinct item keys numbered before the numbering starts again (see #numbers). */
const MAX_KEYS = 10_000;

export class FetchItemCache {
  readonly #lru: WeightedLru<string, Map<number, KeptText>>;
  /** The plan of each item of a command, by variant: made once per command (the same FetchAtt
   * objects serve every message of it), not once per message; null for items not kept. */
  readonly #plans = new WeakMap<FetchAtt, Array<ItemPlan | null | undefined>>();
  /**
   * Items are kept under numbers, not their key text: each command builds its keys anew, and a
   * Map compares such a string with the kept one character by character (a rope, as built) on
   * every lookup, where a number compares at once. A key text seen before gets its number
   * again; when MAX_KEYS texts are numbered the table starts over with numbers never used, so a
   * client that names ever new header fields cannot grow it (items kept under old numbers are
   * only found no more, and age out).
   */
  #numbers = new Map<string, number>();
  #nextNumber = 0;

  constructor(maxBytes = DEFAULT_FETCH_ITEM_CACHE_BYTES) {
    this.#lru = new WeightedLru(maxBytes);
  }

  get bytes(): number {
    return this.#lru.weight;
  }

  /** How an item is kept when it depends on the message's content alone, else null (FLAGS, UID,
   * MODSEQ ... change or belong to the entry; body sections are bytes the store's caches already
   * hold, or streams). */
  planOf(att: FetchAtt, v: ItemVariant): ItemPlan | null {
    const n = (v.rev2 ? 1 : 0) + (v.utf8Accept ? 2 : 0);
    let plans = this.#plans.get(att);
    if (plans === undefined) this.#plans.set(att, (plans = []));
    let plan = plans[n];
    if (plan === undefined) plans[n] = plan = this.#plan(att, n, v.utf8Accept);
    return plan;
  }

  #plan(att: FetchAtt, n: number, utf8: boolean): ItemPlan | null {
    const item = itemKey(att, n, utf8);
    if (item === null) return null;
    let key = this.#numbers.get(item.key);
    if (key === undefined) {
      if (this.#numbers.size >= MAX_KEYS) this.#numbers = new Map();
      key = this.#nextNumber++;
      this.#numbers.set(item.key, key);
    }
    return { key, name: item.name, utf8 };
  }

  /** The items kept of a blob, by key: one lookup for all the items of a message. */
  itemsOf(blobHash: string): ReadonlyMap<number, KeptText> | undefined {
    return this.#lru.get(blobHash);
  }

  /** itemsOf, as a handle that finds them again without a lookup while the cache holds them:
   * `FetchItemCache.itemsBy(handle)`. */
  handleOf(blobHash: string): KeptItemsHandle | undefined {
    return this.#lru.handle(blobHash);
  }

  /** The items a handle of this cache finds, marked used (see LruHandle); undefined once the
   * cache let them go. */
  static itemsBy(handle: KeptItemsHandle): ReadonlyMap<number, KeptText> | undefined {
    const items = handle.value;
    if (items === undefined) return undefined;
    handle.used = true;
    return items;
  }

  /** Keeps `value` as the item of `plan`; not when it was written for another variant than the
   * plan's (the key tells whether its bytes may go to a client without UTF8=ACCEPT). */
  set(blobHash: string, plan: ItemPlan, value: Serialized): void {
    if (value.utf8 !== plan.utf8) return;
    const key = plan.key;
    const text = value.text;
    const kept = this.#lru.handle(blobHash);
    const items = kept?.value ?? new Map<number, KeptText>();
    let weight = kept?.value === undefined ? SLOT_BYTES : kept.weight;
    const had = items.get(key);
    if (had !== undefined) weight -= had.length + ITEM_BYTES;
    items.set(key, text);
    weight += text.length + ITEM_BYTES;
    // Set again with its new weight (the cache evicts by weight as it does).
    this.#lru.set(blobHash, items, weight);
  }
}

/** The text that names an item of variant `n` (see planOf), and the name written before its
 * kept value when the value alone is kept. */
function itemKey(att: FetchAtt, n: number, utf8: boolean): { key: string; name: Serialized | null } | null {
  switch (att.kind) {
    case 'ENVELOPE':
    case 'BODY':
    case 'BODYSTRUCTURE':
      return { key: `${n} ${att.kind}`, name: null };
    case 'BODY[]': {
      const s = att.section;
      if (att.legacy !== undefined || (s.text !== 'HEADER.FIELDS' && s.text !== 'HEADER.FIELDS.NOT')) return null;
      // The fields picked depend on the set of names alone, compared case-insensitively
      // (RFC 9051 §6.4.5); they come out in the message's order.
      const names = [...new Set((s.fields ?? []).map((f) => f.toLowerCase()))].sort().join(' ');
      const partial = att.partial === null ? '' : `<${att.partial.offset}.${att.partial.length}>`;
      const name = Serialized.of(itemName('BODY', s, att.partial?.offset ?? null), { utf8 });
      if (name === null) throw new Error('unreachable: an item name is atoms and strings');
      return { key: `${n} BODY[${s.part.join('.')} ${s.text} (${names})]${partial}`, name };
    }
    default:
      return null;
  }
}
