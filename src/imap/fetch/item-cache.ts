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
 *   variant), and given only to sessions of that kind;
 * - bounded by bytes (each blob's items and a fixed overhead), never by entries alone: a header
 *   item may be a 64 KiB literal.
 */
import { WeightedLru } from '../../lib/lru.js';
import type { FetchAtt } from '../protocol/ast.js';
import type { Serialized } from '../protocol/serialize.js';

/** Default bound: the items of about 10,000 messages with an ENVELOPE, a BODYSTRUCTURE and a
 * header list each. */
export const DEFAULT_FETCH_ITEM_CACHE_BYTES = 16 * 1024 * 1024;

/** Map and key overhead of a blob's slot and of each item, for the weight. */
const SLOT_BYTES = 200;
const ITEM_BYTES = 100;

/** What a session's responses depend on besides the message (fetch.ts FetchOptions). */
export interface ItemVariant {
  rev2: boolean;
  utf8Accept: boolean;
}

interface Slot {
  items: Map<string, Serialized>;
  weight: number;
}

export class FetchItemCache {
  readonly #lru: WeightedLru<string, Slot>;
  /** The key of each cacheable item of a command, by variant: computed once per command (the
   * same FetchAtt objects serve every message of it), not once per message. */
  readonly #keys = new WeakMap<FetchAtt, string[]>();

  constructor(maxBytes = DEFAULT_FETCH_ITEM_CACHE_BYTES) {
    this.#lru = new WeightedLru(maxBytes);
  }

  get bytes(): number {
    return this.#lru.weight;
  }

  /** The key of an item that depends on the message's content alone, or null for any other
   * (FLAGS, UID, MODSEQ ... change or belong to the entry; body sections are bytes the store's
   * caches already hold, or streams). */
  keyOf(att: FetchAtt, v: ItemVariant): string | null {
    const n = (v.rev2 ? 1 : 0) + (v.utf8Accept ? 2 : 0);
    let keys = this.#keys.get(att);
    if (keys === undefined) {
      const base = itemKey(att);
      if (base === null) return null;
      keys = [0, 1, 2, 3].map((k) => `${k} ${base}`);
      this.#keys.set(att, keys);
    }
    return keys[n]!;
  }

  get(blobHash: string, key: string): Serialized | undefined {
    return this.#lru.get(blobHash)?.items.get(key);
  }

  set(blobHash: string, key: string, value: Serialized): void {
    const slot = this.#lru.get(blobHash) ?? { items: new Map<string, Serialized>(), weight: SLOT_BYTES };
    const had = slot.items.get(key);
    if (had !== undefined) slot.weight -= had.bytes.length + ITEM_BYTES + 2 * key.length;
    slot.items.set(key, value);
    slot.weight += value.bytes.length + ITEM_BYTES + 2 * key.length;
    // Set again with its new weight (the cache evicts by weight as it does).
    this.#lru.set(blobHash, slot, slot.weight);
  }
}

/** The part of an item's key that names it; see keyOf. */
function itemKey(att: FetchAtt): string | null {
  switch (att.kind) {
    case 'ENVELOPE':
    case 'BODY':
    case 'BODYSTRUCTURE':
      return att.kind;
    case 'BODY[]': {
      const s = att.section;
      if (att.legacy !== undefined || (s.text !== 'HEADER.FIELDS' && s.text !== 'HEADER.FIELDS.NOT')) return null;
      // Field names as the client wrote them: the response echoes them (RFC 9051 §7.5.2).
      const partial = att.partial === null ? '' : `<${att.partial.offset}.${att.partial.length}>`;
      return `BODY[${s.part.join('.')} ${s.text} (${(s.fields ?? []).join(' ')})]${partial}`;
    }
    default:
      return null;
  }
}
