/**
 * Per-process caches of what FETCH reads over and over: the first bytes of stored messages (the
 * header that HEADER.FIELDS filters, or the whole of a small message), parse records, and the
 * facts of entries (what never changes of an entry: its blob, size, dates and ids). An IMAP
 * client lists the same messages again and again (FETCH 1:100 (ENVELOPE BODY.PEEK[HEADER.FIELDS
 * (...)])); without them each message of each FETCH is one statement, and a JSON parse, whatever
 * the database's own page cache holds. Dovecot keeps the same in its cache file.
 *
 * Invariants:
 * - a blob is immutable and named by the hash of its bytes, so a cached value can never be
 *   wrong for its hash; the store still deletes a hash's values when its blob is removed, so that
 *   a removed blob reads as missing, and memory is not held for it;
 * - each cache is bounded by bytes (an estimate for parse records) and by entries, never by
 *   entries alone: one parse record may hold up to MAX_TEXT characters of text;
 * - returned Buffers are views of the cached bytes: callers never write into them.
 */
import { WeightedLru } from '../lib/lru.js';
import type { ParsedMessage } from '../mail/types.js';
import type { Uid } from '../lib/brand.js';
import type { EntryFacts } from './types.js';

/** Default bound of the message-bytes cache. */
export const DEFAULT_BLOB_CACHE_BYTES = 16 * 1024 * 1024;
/** Default bound of the parse-record cache (estimated bytes, see parsedWeight). */
export const DEFAULT_PARSED_CACHE_BYTES = 32 * 1024 * 1024;
/** Reads longer than this are not cached: one large body would evict many headers. */
export const BLOB_CACHE_MAX_READ = 64 * 1024;

/** Whether a read of [start, end) should read the blob from its start, so that the prefix can be
 * kept: any read from the start, and a range that ends early in the blob (BODY[TEXT] or BODY[1]
 * of a small message): a few KiB more in the same read. */
export function readFromStart(start?: number, end?: number): boolean {
  return (start ?? 0) <= 0 || (end !== undefined && end <= BLOB_CACHE_MAX_READ);
}

/** The bytes [0, n) of blobs, read from their start. */
export class BlobPrefixCache {
  readonly #lru: WeightedLru<string, { size: number; data: Buffer }>;

  constructor(maxBytes: number) {
    this.#lru = new WeightedLru(maxBytes);
  }

  get bytes(): number {
    return this.#lru.weight;
  }

  /** Bytes [start, end) (clamped to the blob as readBlob does) when the cached prefix holds them. */
  get(hash: string, start?: number, end?: number): Buffer | undefined {
    const hit = this.#lru.get(hash);
    if (hit === undefined) return undefined;
    const s = Math.min(Math.max(0, start ?? 0), hit.size);
    const e = Math.min(Math.max(s, end ?? hit.size), hit.size);
    return e <= hit.data.length ? hit.data.subarray(s, e) : undefined;
  }

  /** Keeps `data`, the bytes [0, data.length) of a blob of `size` bytes, unless a longer prefix
   * is already held or it is too long to be worth holding. */
  put(hash: string, size: number, data: Buffer): void {
    if (data.length > BLOB_CACHE_MAX_READ) return;
    const had = this.#lru.get(hash);
    if (had !== undefined && had.data.length >= data.length) return;
    // Its own memory, not a slice that would keep a larger buffer alive.
    this.#lru.set(hash, { size, data: Buffer.from(data) }, data.length + 64);
  }

  delete(hash: string): void {
    this.#lru.delete(hash);
  }
}

/**
 * Estimated memory of a parse record from the lengths of its stored forms: the JSON of the
 * structure becomes objects about twice its size, the text a string of its length (two bytes a
 * character at worst).
 */
export function parsedWeight(jsonLength: number, textLength: number): number {
  return 2 * jsonLength + 2 * textLength + 256;
}

export class ParsedCache {
  readonly #lru: WeightedLru<string, ParsedMessage>;

  constructor(maxBytes: number, maxEntries?: number) {
    this.#lru = new WeightedLru(maxBytes, maxEntries);
  }

  get bytes(): number {
    return this.#lru.weight;
  }

  get(hash: string): ParsedMessage | undefined {
    return this.#lru.get(hash);
  }

  set(hash: string, parsed: ParsedMessage, weight: number): void {
    this.#lru.set(hash, parsed, weight);
  }

  delete(hash: string): void {
    this.#lru.delete(hash);
  }
}

/** Default bound of the entry facts cache: about 21,000 entries (590 bytes each with the memo
 * and the usual string lengths). */
export const DEFAULT_FACTS_CACHE_BYTES = 12 * 1024 * 1024;

/** The memory a reader may keep with a facts object beside it (the IMAP FETCH memo: an object of
 * four fields and an INTERNALDATE text, fetch.ts), in the facts' weight. */
export const FACTS_MEMO_BYTES = 160;

/**
 * Entry facts (MailStore.getEntryFacts) by mailbox and UID: FETCH reads them for every message it
 * answers, and they never change. The store drops the keys of what it expunges; those of a
 * removed mailbox age out (mailbox ids are never reused). Weight: an estimate of the object and
 * its four strings.
 */
/**
 * The cache key of an entry: one number while the mailbox id leaves room for a 32-bit UID below
 * 2^53, else text. A key built as text for every lookup (a rope of three parts) costs a Map its
 * hash and a comparison through the rope each time; a number costs neither.
 */
function factsKey(mailboxId: number, uid: number): number | string {
  return mailboxId < 2 ** 21 ? mailboxId * 2 ** 32 + uid : `${mailboxId}:${uid}`;
}

export class EntryFactsCache {
  readonly #lru: WeightedLru<number | string, EntryFacts>;

  constructor(maxBytes: number) {
    this.#lru = new WeightedLru(maxBytes);
  }

  get bytes(): number {
    return this.#lru.weight;
  }

  get(mailboxId: number, uid: number): EntryFacts | undefined {
    return this.#lru.get(factsKey(mailboxId, uid));
  }

  set(f: EntryFacts): void {
    // 200: the object; FACTS_MEMO_BYTES: what a reader may keep with it (the IMAP FETCH memo,
    // fetch.ts), counted whether or not it does, so the bound holds.
    const weight = 200 + FACTS_MEMO_BYTES + 2 * (f.blobHash.length + f.emailId.length + f.threadId.length + f.pid.length);
    this.#lru.set(factsKey(f.mailboxId, f.uid), f, weight);
  }

  delete(mailboxId: number, uid: number): void {
    this.#lru.delete(factsKey(mailboxId, uid));
  }

  /** MailStore.getEntryFacts over this cache: what it holds, the rest from `read` (kept when
   * `keep`), in UID order. */
  async lookup(mailboxId: number, uids: readonly Uid[], keep: boolean, read: (missing: Uid[]) => EntryFacts[] | Promise<EntryFacts[]>): Promise<EntryFacts[]> {
    const out: EntryFacts[] = [];
    let missing: Uid[] | null = null;
    for (const uid of uids) {
      const f = this.get(mailboxId, uid);
      if (f !== undefined) out.push(f);
      else (missing ??= []).push(uid);
    }
    if (missing === null) return out.length > 1 ? out.sort((a, b) => a.uid - b.uid) : out;
    for (const f of await read(missing)) {
      if (keep) this.set(f);
      out.push(f);
    }
    return out.sort((a, b) => a.uid - b.uid);
  }
}
