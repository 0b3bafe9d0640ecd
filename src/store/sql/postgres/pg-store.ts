/**
 * MailStore on PostgreSQL: many stateless Facteur nodes over one database.
 *
 * Design and invariants:
 * - Every write is one transaction on a pooled connection (READ COMMITTED) that resolves only
 *   after its COMMIT returned; the session runs with synchronous_commit = on, so the WAL is
 *   flushed first (DESIGN.md invariant 1). PostgreSQL groups concurrent commits itself.
 * - Writers of one account are serialised by its row: each write first locks `accounts`
 *   (SELECT ... FOR UPDATE, or the UPDATE that takes the next modseq), and only then reads the
 *   mailbox rows it changes, so modseqs, UIDs (`UPDATE mailboxes SET uid_next = uid_next + n
 *   RETURNING`), counters and quota checks are exact however many nodes write. Deliveries lock
 *   their accounts in id order, so two deliveries cannot deadlock each other. Unique constraints
 *   are the last line of defence; serialisation failures, deadlocks and unique violations are
 *   retried a bounded number of times (the retry sees the winner's commit and answers from it).
 * - Batches: a STORE, COPY, MOVE or EXPUNGE on thousands of messages is a few statements (sets
 *   passed as arrays: `= ANY($1)`, `unnest(...)`), never one per message.
 * - Round trips: every statement is one. A write may send its account lock and the reads after
 *   it with its BEGIN (#tx's `opening`), and the writes whose result it does not need with its
 *   COMMIT (WriteContext.tail), each as one simple-protocol query whose values are inlined
 *   (integers checked, strings escaped by the connection): a STORE of up to STATE_ROWS_MAX UIDs
 *   is two round trips.
 * - Blobs: content-addressed with a reference count, like SQLite. Bytes are in blob_chunks
 *   (1 MiB rows, inserted in the same transaction as the row that references them) or in an
 *   external BlobStore (blob-store.ts) written and synced BEFORE the transaction. A blob row is
 *   created, and a dead external blob deleted, under a transaction advisory lock on its hash, and
 *   the creator re-checks the external bytes under that lock: a node deleting an unreferenced
 *   blob can never remove bytes another node is about to reference.
 * - Change events are NOTIFYd inside the transaction and published locally after COMMIT
 *   (notify-feed.ts), so sessions on every node hear every change.
 * - tryLock is a session-level advisory lock on one dedicated connection, released by
 *   PostgreSQL if the process dies.
 */
import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import type { AccountId, MailboxId, ModSeq, Uid } from '../../../lib/brand.js';
import { asAccountId, asMailboxId, asModSeq, asUid, asUidValidity } from '../../../lib/brand.js';
import { BLOB_CACHE_MAX_READ, BlobPrefixCache, DEFAULT_BLOB_CACHE_BYTES, DEFAULT_FACTS_CACHE_BYTES, DEFAULT_PARSED_CACHE_BYTES, EntryFactsCache, ParsedCache, parsedWeight, readFromStart } from '../../read-cache.js';
import { sortKeysOf, threadNames, threadText } from '../../../mail/sort-keys.js';
import type { ParsedMessage } from '../../../mail/types.js';
import { createFileBlobStore } from '../../blob-store.js';
import type { BlobStore } from '../../blob-store.js';
import {
  FLAG_DELETED,
  FLAG_SEEN,
  encodeKeywords,
  flagList,
  sharedFlagLists,
  parseFlags,
  planFlagChange,
  flagGroupsOfRows,
  changedByTransition,
  MAX_FLAG_TRANSITIONS,
} from '../../flags.js';
import type { FlagGroup, FlagPlan, FlagSet } from '../../flags.js';
import { absentUids, copyPid, createIdGenerator } from '../../ids.js';
import {
  domainOf,
  normalizeAddress,
  normalizeAliasSource,
  normalizeDomain,
  normalizeMailboxName,
  parentNames,
  checkAppPasswordName,
  checkTotp,
} from '../../names.js';
import { toAppPassword, type AppPasswordRow } from '../app-password-row.js';
import { createNotifyFeed, encodeChangeEvent, quoteIdent } from '../../notify-feed.js';
import { ViewCache } from '../../view-cache.js';
import type { MailboxHead, ViewCacheOptions, ViewCacheStats, ViewRow, ViewSource } from '../../view-cache.js';
import type { NotifyFeed } from '../../notify-feed.js';
import { QuietMailboxes } from './quiet.js';
import { planMetadata } from '../../metadata.js';
import { MAX_ALIAS_DEPTH, resolveAddress, type ResolvedAddress } from '../../recipients.js';
import { entryFacts, SORT_KEY_COLS, threadNamesOf, threadTextOf, toAccount, toSortKeys, warmListSql, type SortKeyRow, type ThreadTextSource } from '../rows.js';
import { parseRankGroups, parseThreadRows } from '../sort-columns.js';
import type { AccountRowOf } from '../rows.js';
import { checkAccountRestore, checkEntryRestores, checkExpungedRestore, checkMailboxRestore, pidCounterFloor, restoreTotals, threadKeys } from '../../restore.js';
import { UNINDEXED_HEADER_FIELDS, headerContains, searchColumns } from '../../search-text.js';
import { DEFAULT_MAILBOXES, SPECIAL_USES, StoreError } from '../../types.js';
import type {
  Account,
  AccountRestore,
  AccountPatch,
  AppPassword,
  AppPasswordUse,
  Alias,
  AppendInput,
  AppendResult,
  ChangeEvent,
  ChangeFeed,
  CopyOptions,
  CopyResult,
  FlagUpdate,
  DeliveryOutcome,
  DeliveryTarget,
  Domain,
  EntryRestore,
  FlagMode,
  Mailbox,
  MailboxChanges,
  MailboxCounts,
  MailboxRestore,
  MailStore,
  EntrySortKeys,
  SortKeyName,
  SortRanks,
  ThreadKeyColumns,
  EntryFacts,
  MessageEntry,
  MetadataChange,
  MetadataEntry,
  MetadataLimits,
  ViewEntries,
  Pop3DeletePolicy,
  QuotaUsage,
  RecipientRoute,
  SetFlagsResult,
  SpecialUse,
  TextQuery,
} from '../../types.js';
import type { SharedCounters } from '../../counters.js';
import { createPgCounters } from './pg-counters.js';
import { migratePg } from './schema.js';

export interface PgStoreOptions {
  /** postgres://user@host:port/db (the store's own parameters, if any, already removed). */
  url: string;
  /** Schema holding the tables (created if missing). Default "public". */
  schema?: string;
  /** 'database' (default): bytes in blob_chunks. A directory path or a BlobStore: external. */
  blobs?: 'database' | string | BlobStore;
  /** Pooled connections for reads and writes. Default 10. */
  poolSize?: number;
  /** Bounds of this node's read caches (read-cache.ts; defaults there): parse records (bytes and
   * entries), message bytes read from their start, entry facts. */
  parsedCacheBytes?: number;
  parsedCacheSize?: number;
  blobCacheBytes?: number;
  factsCacheBytes?: number;
  /** Bound of the view cache, in messages (view-cache.ts). */
  viewCacheMessages?: number;
  /** Mailboxes of at least this many messages are caught up in the background after each change
   * (also another node's: the feed carries them). */
  viewCacheEagerMin?: number;
  /** Views of at least this many messages are kept as snapshots in view_snapshots (default
   * 10,000; Infinity: never): a node's first SELECT of the mailbox reads one value. */
  viewSnapshotMin?: number;
  /** At open, the views of the most recently snapshotted mailboxes (then of large ones without a
   * snapshot) are loaded in the background, up to this many messages (default 0: none;
   * `facteur serve` asks for VIEW_WARM_MESSAGES). */
  viewWarmMessages?: number;
  /**
   * NOTIFY after the writing COMMIT instead of inside it. PostgreSQL serialises the commits of
   * all notifying transactions of a database on one lock held across their WAL flush, which
   * caps the write rate at one commit per flush; after the commit, that lock is held for an
   * instant. The cost: a node that dies between its COMMIT and its NOTIFY leaves the other nodes'
   * sessions unaware of that change until their next command. Default false.
   */
  notifyAfterCommit?: boolean;
  onListenerError?: (err: unknown) => void;
  /** Connection-level problems (listener lost, idle client error). Default: a process warning. */
  onConnectionError?: (err: unknown) => void;
}

/** Chunk of blob bytes per row: a range read fetches only the chunks it overlaps. */
export const BLOB_CHUNK = 1024 * 1024;
const STREAM_CHUNK = 64 * 1024;
const MAX_PROBLEMS_PER_CHECK = 50;
/** Attempts of a transaction that hit a serialisation failure, deadlock or unique violation. */
const MAX_ATTEMPTS = 8;
/** External blobs younger than this are left alone by collectGarbage (a node may be mid-ingest). */
const GC_GRACE_MS = 60 * 60 * 1000;
/** A STORE's set of at most this many UIDs is read as its rows with the account lock (see
 * setFlags), a larger one as a GROUP BY of its states. The bound of the SQLite store, which keeps
 * one JS row per UID for the larger sets out. Measured here on sparse sets of a 5,000 message
 * mailbox in eight states (local server, busy 2-core machine): 21-25 ms per STORE of 900-1,000
 * UIDs read as rows (2 statements), 28-33 ms of 1,001-1,100 UIDs as a GROUP BY (4.7 statements);
 * the rows cost no more up to the bound. Random STOREs of 10-60 UIDs on mailboxes of 100-1,000
 * messages: 9.3 statements and 3.6-4.1 ms per setFlags before, 2 and 2.1-2.5 ms now. */
const STATE_ROWS_MAX = 1000;
/** SQLSTATEs worth retrying: serialization_failure, deadlock_detected, unique_violation. */
const RETRYABLE = new Set(['40001', '40P01', '23505']);

type AccountRow = AccountRowOf<boolean>;

interface MailboxRow {
  id: number;
  account_id: number;
  name: string;
  uid_validity: number;
  uid_next: number;
  highest_modseq: number;
  special_use: SpecialUse | null;
  messages: number;
  unseen: number;
  deleted: number;
  size: number;
}

const ENTRY_COLS =
  'mailbox_id, uid, modseq, flags, keywords, internal_date, save_date, size, blob_hash, email_id, thread_id, pid, pop3_hidden';
type EntryRow = [
  mailboxId: number,
  uid: number,
  modseq: number,
  flags: number,
  keywords: string,
  internalDate: number,
  saveDate: number,
  size: number,
  blobHash: string,
  emailId: string,
  threadId: string,
  pid: string,
  pop3Hidden: boolean,
];
/** unnest() casts of the entry columns, in ENTRY_COLS order. */
const ENTRY_TYPES = ['int8', 'int8', 'int8', 'int4', 'text', 'int8', 'int8', 'int8', 'text', 'text', 'text', 'text', 'bool'];

/**
 * The numbers of THREAD names in thread_names (schema version 10), given at first use, two
 * statements for all. Concurrent transactions numbering the same new name: the second waits for
 * the first and takes its number (ON CONFLICT); they insert in one order, so they cannot deadlock
 * over names. NUL is removed as from every stored text.
 */
async function nameNumbers(c: pg.ClientBase, names: readonly string[]): Promise<(name: string) => number> {
  const distinct = [...new Set(names.map(strip0))].sort();
  if (distinct.length === 0) return () => 0;
  await c.query('INSERT INTO thread_names (name) SELECT unnest($1::text[]) ON CONFLICT (name) DO NOTHING', [distinct]);
  const rows = (await c.query<{ id: string; name: string }>('SELECT id, name FROM thread_names WHERE name = ANY($1::text[])', [distinct])).rows;
  const ids = new Map(rows.map((r) => [r.name, Number(r.id)]));
  return (name) => {
    const id = ids.get(strip0(name));
    if (id === undefined) throw new Error(`thread name not numbered: ${JSON.stringify(name)}`);
    return id;
  };
}

/** Writes the sort keys of these blobs (their rows exist; by blob id, schema version 12), one
 * statement for all. */
async function insertSortKeys(c: pg.ClientBase, blobs: ReadonlyArray<readonly [number | string, Omit<ParsedMessage, 'text'>]>): Promise<void> {
  if (blobs.length === 0) return;
  const cols: unknown[][] = [[], [], [], [], [], [], [], [], [], [], [], []];
  const keys = blobs.map(([id, parsed]) => {
    const k = sortKeysOf(parsed);
    // A line break cannot be part of a message id (RFC 5322 §3.6.4): refs are stored one per line.
    return { id, k, refs: k.references.filter((id) => !id.includes('\n')) };
  });
  const number = await nameNumbers(c, keys.flatMap(({ k, refs }) => threadNames(k, refs)));
  for (const { id, k, refs } of keys) {
    const thread = threadText(k, refs, number);
    const values = [id, k.sentDate, k.subject, k.reply, k.from, k.to, k.cc, k.displayFrom, k.displayTo, k.messageId, refs.join('\n'), thread];
    values.forEach((v, i) => cols[i]!.push(typeof v === 'string' ? strip0(v) : v));
  }
  await c.query(
    `INSERT INTO sort_keys (id, sent_date, subject, reply, addr_from, addr_to, addr_cc, display_from, display_to, message_id, refs, thread_text)
     SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::bool[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
                          $10::text[], $11::text[], $12::text[])
     ON CONFLICT (id) DO NOTHING`,
    cols,
  );
}

/** Writes the sort keys of blobs stored before the sort_keys table existed (schema version 7),
 * a thousand at a time; none left afterwards, so this costs one query at later opens. */
async function backfillSortKeys(c: pg.ClientBase): Promise<void> {
  for (;;) {
    const rows = (
      await c.query<{ id: string; parsed: string }>(
        `SELECT b.id, t.parsed FROM blobs b JOIN blob_text t ON t.id = b.id
          WHERE NOT EXISTS (SELECT 1 FROM sort_keys k WHERE k.id = b.id) LIMIT 1000`,
      )
    ).rows;
    if (rows.length === 0) return;
    await insertSortKeys(
      c,
      rows.map((r) => [r.id, JSON.parse(r.parsed) as Omit<ParsedMessage, 'text'>]),
    );
  }
}

/** Writes thread_text of sort_keys rows from before schema version 8, or from before the names
 * were numbered (version 10), from their columns, a thousand at a time. */
async function backfillThreadText(c: pg.ClientBase): Promise<void> {
  for (;;) {
    const rows = (
      await c.query<ThreadTextSource>('SELECT id, subject, reply, message_id, refs FROM sort_keys WHERE thread_text IS NULL LIMIT 1000')
    ).rows;
    if (rows.length === 0) return;
    const number = await nameNumbers(c, rows.flatMap(threadNamesOf));
    await c.query(
      'UPDATE sort_keys k SET thread_text = v.t FROM unnest($1::int8[], $2::text[]) AS v(id, t) WHERE k.id = v.id',
      [rows.map((r) => r.id), rows.map((r) => threadTextOf(r, number))],
    );
  }
}

/** Marks the backfills above as complete, as the SQLite store does (sqlite-store.ts backfill):
 * later opens read one row, not every blob. The value is the schema version they bring the rows
 * to (migration 10 removes the mark). */
const BACKFILL_VERSION = 10;

async function backfill(c: pg.ClientBase): Promise<void> {
  const done = (await c.query<{ value: string }>("SELECT value FROM counters WHERE name = 'backfill_done'")).rows[0];
  if (done !== undefined && Number(done.value) >= BACKFILL_VERSION) return;
  await backfillSortKeys(c);
  await backfillThreadText(c);
  await c.query("INSERT INTO counters (name, value) VALUES ('backfill_done', $1) ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value", [
    BACKFILL_VERSION,
  ]);
}

/** The expression of each SORT key over entries e joined with sort_keys k. Text keys compare as
 * UTF-8 bytes (COLLATE "C", as SQLite's BINARY), the stored keys being casemapped at ingest. */
const SORT_KEY_EXPR: Record<SortKeyName, string> = {
  ARRIVAL: 'e.internal_date',
  SIZE: 'e.size',
  DATE: 'coalesce(k.sent_date, e.internal_date)',
  SUBJECT: 'k.subject COLLATE "C"',
  FROM: 'k.addr_from COLLATE "C"',
  TO: 'k.addr_to COLLATE "C"',
  CC: 'k.addr_cc COLLATE "C"',
  DISPLAYFROM: 'k.display_from COLLATE "C"',
  DISPLAYTO: 'k.display_to COLLATE "C"',
};

function toEntry(r: EntryRow): MessageEntry {
  return {
    mailboxId: asMailboxId(r[0]),
    uid: asUid(r[1]),
    modseq: asModSeq(r[2]),
    flags: flagList(r[3], r[4]),
    internalDate: r[5],
    saveDate: r[6],
    size: r[7],
    blobHash: r[8],
    emailId: r[9],
    threadId: r[10],
    pid: r[11],
    pop3Hidden: r[12],
  };
}

function toMailbox(r: MailboxRow, subscribed: boolean): Mailbox {
  return {
    id: asMailboxId(r.id),
    accountId: asAccountId(r.account_id),
    name: r.name,
    uidValidity: asUidValidity(r.uid_validity),
    uidNext: asUid(r.uid_next),
    highestModSeq: asModSeq(r.highest_modseq),
    specialUse: r.special_use,
    subscribed,
  };
}

const seenDelta = (mask: number): number => ((mask & FLAG_SEEN) === 0 ? 1 : 0);
const deletedDelta = (mask: number): number => ((mask & FLAG_DELETED) !== 0 ? 1 : 0);

/** LIKE pattern matching the text anywhere, with its wildcards and escape character escaped. */
function containsPattern(s: string): string {
  return `%${s.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

const POP3_POLICIES: ReadonlySet<string> = new Set<Pop3DeletePolicy>(['expunge', 'trash', 'hide']);

const SEARCH_COLUMN_OF = {
  body: 'body',
  subject: 'subject',
  from: 'addr_from',
  to: 'addr_to',
  cc: 'addr_cc',
  bcc: 'addr_bcc',
} as const;
const ALL_SEARCH_COLUMNS = ['subject', 'addr_from', 'addr_to', 'addr_cc', 'addr_bcc', 'headers', 'body'];

/** bigint (int8) and numeric as JavaScript numbers: every value here is below 2^53. */
export const TYPES: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: string) => {
    if (oid === 20 || oid === 1700) return (v: string) => Number(v);
    return pg.types.getTypeParser(oid, format as 'text');
  }) as pg.CustomTypesConfig['getTypeParser'],
};

type Tx = pg.PoolClient;

interface WriteContext {
  events: ChangeEvent[];
  /** Hashes of external blobs whose row this transaction deleted. */
  removedExternal: string[];
  removed: string[];
  /**
   * Writes whose result the transaction does not need, sent with its COMMIT as one
   * simple-protocol query (one round trip for all of them and the COMMIT): SQL text with every
   * value inlined through sqlInt/sqlInts/sqlTexts. Should one fail, the COMMIT is not run.
   */
  tail: string[];
  /** Nothing to keep (a STORE that changes no row, after taking a modseq to lock the account):
   * ROLLBACK instead of COMMIT, so the account's modseq is not used up. No events, no tail. */
  discard: boolean;
}

/** A row of a STORE's set as setFlags reads it (flags.ts FlagStateRow). */
type StateRow = [number, number, number, string];

/** The rows of an opening's result (read as arrays, see #tx) as objects named by its columns. */
function rowObjects<R>(result: pg.QueryResult | undefined): R[] {
  if (result === undefined) return [];
  const names = result.fields.map((f) => f.name);
  return (result.rows as unknown[][]).map((row) => Object.fromEntries(names.map((name, i) => [name, row[i]])) as R);
}

/** An integer inlined in SQL text (#tx's opening and tail): checked, so nothing can be injected. */
function sqlInt(v: number): string {
  if (!Number.isSafeInteger(v)) throw new StoreError('io', `Cannot write: ${v} is not an integer`);
  return String(v);
}

/** An array of integers inlined in SQL text, as an array literal of the given type. */
function sqlInts(values: readonly number[], type: 'int4' | 'int8'): string {
  return `'{${values.map(sqlInt).join(',')}}'::${type}[]`;
}

/** An array of strings inlined in SQL text, each quoted by the connection's escapeLiteral. */
function sqlTexts(c: pg.ClientBase, values: readonly string[]): string {
  return `ARRAY[${values.map((v) => c.escapeLiteral(v)).join(', ')}]::text[]`;
}

interface IngestBlob {
  hash: string;
  raw: Buffer;
  parsed: ParsedMessage;
}

class PgStore implements MailStore {
  readonly feed: ChangeFeed;
  readonly #pool: pg.Pool;
  readonly #notify: NotifyFeed;
  readonly #channel: string;
  readonly #external: BlobStore | null;
  /** Namespace (first key) of this schema's advisory locks. */
  readonly #lockSpace: number;
  readonly #connect: () => Promise<pg.Client>;
  readonly #onConnectionError: (err: unknown) => void;
  readonly #parsedCache: ParsedCache;
  readonly #blobCache: BlobPrefixCache;
  readonly #factsCache: EntryFactsCache;
  /** Blobs this node removed so far: a read that started before a removal does not put what it
   * read into a cache (the removal's delete of the hash came first and would be undone). */
  #removals = 0;
  readonly #views: ViewCache;
  /** Mailboxes a changesSince found unchanged, until the feed says otherwise (quiet.ts). */
  readonly #quiet = new QuietMailboxes();
  readonly #ids = createIdGenerator();
  readonly #locks = new Map<string, symbol>();
  #lockClient: pg.Client | null = null;
  #lockClientOpening: Promise<pg.Client> | null = null;
  #inFlight = 0;
  #idleWaiters: Array<() => void> = [];
  #closed = false;
  readonly #notifyAfterCommit: boolean;
  readonly #counters: SharedCounters;

  constructor(init: {
    pool: pg.Pool;
    notify: NotifyFeed;
    channel: string;
    external: BlobStore | null;
    lockSpace: number;
    connect: () => Promise<pg.Client>;
    onConnectionError: (err: unknown) => void;
    caches: { parsedBytes: number; parsedSize: number; blobBytes: number; factsBytes: number };
    notifyAfterCommit: boolean;
    viewCache: ViewCacheOptions;
  }) {
    this.#notifyAfterCommit = init.notifyAfterCommit;
    this.#pool = init.pool;
    this.#notify = init.notify;
    this.feed = init.notify.feed;
    init.notify.observe(this.#quiet);
    this.#channel = init.channel;
    this.#external = init.external;
    this.#lockSpace = init.lockSpace;
    this.#connect = init.connect;
    this.#onConnectionError = init.onConnectionError;
    this.#parsedCache = new ParsedCache(init.caches.parsedBytes, init.caches.parsedSize);
    this.#blobCache = new BlobPrefixCache(init.caches.blobBytes);
    this.#factsCache = new EntryFactsCache(init.caches.factsBytes);
    this.#counters = createPgCounters(init.pool, { onSweepError: init.onConnectionError });
    this.#views = new ViewCache(this.#viewSource(), this.feed, { ...init.viewCache, onError: init.onConnectionError });
    this.#views.warm();
  }

  // ---------------------------------------------------------------------------------------------
  // Queries and transactions.

  async #rows<R>(c: pg.ClientBase | pg.Pool, sql: string, params: unknown[] = []): Promise<R[]> {
    return (await c.query(sql, params)).rows as R[];
  }

  async #row<R>(c: pg.ClientBase | pg.Pool, sql: string, params: unknown[] = []): Promise<R | undefined> {
    return (await c.query(sql, params)).rows[0] as R | undefined;
  }

  async #arrays<R>(c: pg.ClientBase | pg.Pool, sql: string, params: unknown[] = []): Promise<R[]> {
    return (await c.query({ text: sql, values: params, rowMode: 'array' })).rows as R[];
  }

  /**
   * Runs fn in a transaction, retried on conflicts; publishes its events after COMMIT.
   *
   * `opening`: statements (SQL text, values inlined, see sqlInt) sent with the BEGIN as one
   * simple-protocol query, their results passed to fn: the account lock and the reads that
   * follow it in one round trip instead of one each. Each statement of such a query takes its
   * own snapshot (READ COMMITTED), so a read after the locking statement sees the previous
   * writer's commit, as it would as a query of its own.
   */
  async #tx<T>(fn: (c: Tx, ctx: WriteContext, opened: pg.QueryResult[]) => Promise<T>, opening?: string): Promise<T> {
    if (this.#closed) throw new StoreError('io', 'Cannot write: the store is closed');
    this.#inFlight += 1;
    try {
      for (let attempt = 1; ; attempt++) {
        let client: pg.PoolClient;
        try {
          client = await this.#pool.connect();
        } catch (err) {
          throw new StoreError('io', `Cannot connect to the database: ${String(err)}`);
        }
        const ctx: WriteContext = { events: [], removedExternal: [], removed: [], tail: [], discard: false };
        let broken: Error | undefined;
        try {
          let opened: pg.QueryResult[] = [];
          if (opening === undefined) {
            await client.query('BEGIN');
          } else {
            const results = (await client.query({ text: `BEGIN; ${opening}`, rowMode: 'array' })) as unknown as pg.QueryResult[];
            opened = results.slice(1);
          }
          const value = await fn(client, ctx, opened);
          const notify = ctx.events.length > 0 ? ctx.events.map(encodeChangeEvent) : null;
          // The tail's writes, then (before the COMMIT, in the same query) the NOTIFY.
          const before = [...ctx.tail];
          if (ctx.discard) {
            if (notify !== null || before.length > 0) throw new StoreError('io', 'Cannot roll back a transaction that wrote');
            await client.query('ROLLBACK');
          } else {
            if (notify !== null && !this.#notifyAfterCommit) {
              // Delivered to every listening node only if this transaction commits. Sent with the
              // COMMIT as one simple-protocol query (one round trip; should the NOTIFY fail, the
              // COMMIT is not run and the transaction is rolled back below).
              const list = notify.map((e) => client.escapeLiteral(e)).join(', ');
              before.push(`SELECT pg_notify(${client.escapeLiteral(this.#channel)}, e) FROM unnest(ARRAY[${list}]::text[]) e`);
            }
            await client.query([...before, 'COMMIT'].join('; '));
          }
          if (notify !== null && this.#notifyAfterCommit) {
            // Its own transaction, with no write to flush: the global NOTIFY lock is held only for
            // an instant instead of across the WAL flush of the writing COMMIT.
            await client.query('SELECT pg_notify($1, e) FROM unnest($2::text[]) e', [this.#channel, notify]).catch((err: unknown) => {
              this.#onConnectionError(err);
            });
          }
          client.release();
          this.#notify.publishLocal(ctx.events);
          if (ctx.removed.length > 0) this.#removals++;
          for (const h of ctx.removed) {
            this.#parsedCache.delete(h);
            this.#blobCache.delete(h);
          }
          for (const h of ctx.removedExternal) await this.#removeExternal(h);
          return value;
        } catch (err) {
          try {
            await client.query('ROLLBACK');
          } catch (e) {
            broken = e instanceof Error ? e : new Error(String(e));
          }
          client.release(broken);
          if (err instanceof StoreError) throw err;
          const code = (err as { code?: string }).code;
          if (code !== undefined && RETRYABLE.has(code) && attempt < MAX_ATTEMPTS) {
            await new Promise((r) => setTimeout(r, Math.random() * 5 * attempt));
            continue;
          }
          throw new StoreError('io', `Cannot commit: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
    } finally {
      this.#inFlight -= 1;
      if (this.#inFlight === 0) {
        const w = this.#idleWaiters;
        this.#idleWaiters = [];
        for (const f of w) f();
      }
    }
  }

  #whenIdle(): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Reads outside transactions: database errors become StoreError('io'). */
  async #read<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof StoreError) throw err;
      throw new StoreError('io', `Cannot read: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Blobs.

  async #prepareBlob(raw: Buffer, parsed: ParsedMessage): Promise<IngestBlob> {
    const hash = createHash('sha256').update(raw).digest('hex');
    if (this.#external !== null) {
      // Durable before the transaction that references it; re-checked under the hash lock there.
      try {
        if ((await this.#external.size(hash)) !== raw.length) await this.#external.put(hash, raw);
      } catch (err) {
        throw new StoreError('io', `Cannot store message bytes: ${String(err)}`);
      }
    }
    return { hash, raw, parsed };
  }

  async #lockHash(c: Tx, hash: string): Promise<void> {
    await c.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [this.#lockSpace, `blob:${hash}`]);
  }

  /**
   * Adds references to blobs, creating the rows, text and bytes of those seen for the first
   * time: five statements whatever the number of blobs.
   */
  async #addBlobRefs(c: Tx, items: ReadonlyArray<{ blob: IngestBlob; n: number }>): Promise<void> {
    if (items.length === 0) return;
    const found = await this.#rows<{ hash: string }>(
      c,
      'UPDATE blobs b SET refs = b.refs + v.n FROM unnest($1::text[], $2::int8[]) AS v(h, n) WHERE b.hash = v.h RETURNING b.hash',
      [items.map((i) => i.blob.hash), items.map((i) => i.n)],
    );
    const have = new Set(found.map((r) => r.hash));
    const missing = items.filter((i) => !have.has(i.blob.hash)).sort((x, y) => (x.blob.hash < y.blob.hash ? -1 : 1));
    if (missing.length === 0) return;
    // In hash order, so two transactions creating the same blobs cannot deadlock.
    await c.query('SELECT pg_advisory_xact_lock($1, hashtext(h)) FROM unnest($2::text[]) AS h', [
      this.#lockSpace,
      missing.map((i) => `blob:${i.blob.hash}`),
    ]);
    if (this.#external !== null) {
      for (const { blob } of missing) {
        // Removed by another node after our put (its last reference went away meanwhile).
        if ((await this.#external.size(blob.hash)) !== blob.raw.length) await this.#external.put(blob.hash, blob.raw);
      }
    }
    const ins = await this.#rows<{ id: number; hash: string; inserted: boolean }>(
      c,
      `INSERT INTO blobs (hash, size, header_end, refs, external)
       SELECT h, s, e, n, $5 FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[]) AS v(h, s, e, n)
       ON CONFLICT (hash) DO UPDATE SET refs = blobs.refs + EXCLUDED.refs RETURNING id, hash, (xmax = 0) AS inserted`,
      [
        missing.map((i) => i.blob.hash),
        missing.map((i) => i.blob.raw.length),
        missing.map((i) => Math.min(Math.max(0, i.blob.parsed.root.bodyStart), i.blob.raw.length)),
        missing.map((i) => i.n),
        this.#external !== null,
      ],
    );
    const idOf = new Map(ins.filter((r) => r.inserted).map((r) => [r.hash, r.id]));
    const created = missing.filter((i) => idOf.has(i.blob.hash));
    if (created.length === 0) return;
    const text: unknown[][] = [[], [], [], [], [], [], [], [], [], []];
    const chunkIds: number[] = [];
    const chunkNs: number[] = [];
    const chunkData: Buffer[] = [];
    for (const { blob } of created) {
      const id = idOf.get(blob.hash) ?? 0;
      const { text: body, ...rest } = blob.parsed;
      void body;
      const k = searchColumns(blob.raw, blob.parsed);
      // Lowercased here, not by PostgreSQL, so the case folding is JavaScript's, as in SQLite.
      const doc = [k.subject, k.from, k.to, k.cc, k.bcc, k.headers, k.body].join('\u0001').toLowerCase();
      const values = [id, JSON.stringify(rest), k.subject, k.from, k.to, k.cc, k.bcc, k.headers, k.body, doc];
      values.forEach((v, i) => text[i]?.push(typeof v === 'string' ? strip0(v) : v));
      if (this.#external === null) {
        for (let off = 0, n = 0; off < blob.raw.length; off += BLOB_CHUNK, n++) {
          chunkIds.push(id);
          chunkNs.push(n);
          chunkData.push(blob.raw.subarray(off, off + BLOB_CHUNK));
        }
      }
    }
    await c.query(
      `INSERT INTO blob_text (id, parsed, subject, addr_from, addr_to, addr_cc, addr_bcc, headers, body, doc)
       SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])`,
      text,
    );
    await insertSortKeys(
      c,
      created.map(({ blob }) => [idOf.get(blob.hash) ?? 0, blob.parsed]),
    );
    if (chunkIds.length > 0) {
      await c.query('INSERT INTO blob_chunks (blob_id, n, data) SELECT * FROM unnest($1::int8[], $2::int4[], $3::bytea[])', [
        chunkIds,
        chunkNs,
        chunkData,
      ]);
    }
  }

  async #incRefs(c: Tx, counts: Map<string, number>): Promise<void> {
    if (counts.size === 0) return;
    const r = await c.query(
      'UPDATE blobs b SET refs = b.refs + v.n FROM unnest($1::text[], $2::int8[]) AS v(h, n) WHERE b.hash = v.h',
      [[...counts.keys()], [...counts.values()]],
    );
    if ((r.rowCount ?? 0) !== counts.size) throw new StoreError('io', 'A referenced blob is missing');
  }

  /** Drops references; rows reaching zero go (text and chunks by cascade), external bytes after commit. */
  async #decRefs(c: Tx, ctx: WriteContext, counts: Map<string, number>): Promise<void> {
    if (counts.size === 0) return;
    const dead = await this.#rows<{ hash: string; external: boolean }>(
      c,
      `UPDATE blobs b SET refs = b.refs - v.n FROM unnest($1::text[], $2::int8[]) AS v(h, n)
        WHERE b.hash = v.h RETURNING b.hash, b.refs, b.external`,
      [[...counts.keys()], [...counts.values()]],
    ).then((rows) => (rows as Array<{ hash: string; refs: number; external: boolean }>).filter((r) => r.refs <= 0));
    if (dead.length === 0) return;
    await c.query('DELETE FROM blobs WHERE hash = ANY($1::text[]) AND refs <= 0', [dead.map((d) => d.hash)]);
    for (const d of dead) {
      ctx.removed.push(d.hash);
      if (d.external) ctx.removedExternal.push(d.hash);
    }
  }

  /** Deletes an external blob unless a row references it again, under the hash lock. */
  async #removeExternal(hash: string): Promise<boolean> {
    if (this.#external === null) return false;
    const c = await this.#pool.connect();
    try {
      await c.query('BEGIN');
      await this.#lockHash(c, hash);
      const still = await c.query('SELECT 1 FROM blobs WHERE hash = $1', [hash]);
      let removed = false;
      if ((still.rowCount ?? 0) === 0) {
        await this.#external.delete(hash);
        removed = true;
      }
      await c.query('COMMIT');
      c.release();
      return removed;
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      c.release();
      // Left for collectGarbage: the metadata is already right.
      this.#onConnectionError(err);
      return false;
    }
  }

  async #blobRow(hash: string): Promise<{ id: number; size: number; external: boolean }> {
    const row = await this.#row<{ id: number; size: number; external: boolean }>(
      this.#pool,
      'SELECT id, size, external FROM blobs WHERE hash = $1',
      [hash],
    );
    if (row === undefined) throw new StoreError('not-found', `Cannot read message ${hash}: no such blob`);
    return row;
  }

  // ---------------------------------------------------------------------------------------------
  // Row helpers.

  async #accountRow(c: pg.ClientBase | pg.Pool, id: number, lock = false): Promise<AccountRow | undefined> {
    return this.#row<AccountRow>(c, `SELECT * FROM accounts WHERE id = $1${lock ? ' FOR UPDATE' : ''}`, [id]);
  }

  async #requireAccount(c: pg.ClientBase | pg.Pool, id: number, lock = false): Promise<AccountRow> {
    const row = await this.#accountRow(c, id, lock);
    if (row === undefined) throw new StoreError('not-found', `Cannot find account ${id}`);
    return row;
  }

  async #mailboxRow(c: pg.ClientBase | pg.Pool, id: number): Promise<MailboxRow | undefined> {
    return this.#row<MailboxRow>(c, 'SELECT * FROM mailboxes WHERE id = $1', [id]);
  }

  async #mailboxByName(c: pg.ClientBase | pg.Pool, accountId: number, name: string): Promise<MailboxRow | undefined> {
    return this.#row<MailboxRow>(c, 'SELECT * FROM mailboxes WHERE account_id = $1 AND name = $2', [accountId, name]);
  }

  /**
   * The mailbox row read after locking its account: every writer of the account is serialised
   * from here on, so the row's UIDNEXT and counters stay exact until COMMIT.
   */
  async #lockMailbox(c: Tx, id: number): Promise<{ mailbox: MailboxRow; account: AccountRow }> {
    // The account found through the mailbox in the locking statement itself (a mailbox never
    // changes accounts); the mailbox row is read by the next statement, whose snapshot is taken
    // once the lock is held (one taken before waiting could miss the previous writer's commit).
    const account = await this.#row<AccountRow>(c, 'SELECT * FROM accounts WHERE id = (SELECT account_id FROM mailboxes WHERE id = $1) FOR UPDATE', [id]);
    if (account === undefined) throw new StoreError('not-found', `Cannot find mailbox ${id}`);
    const mailbox = await this.#mailboxRow(c, id);
    if (mailbox === undefined) throw new StoreError('not-found', `Cannot find mailbox ${id}`);
    return { mailbox, account };
  }

  async #nextModseq(c: Tx, accountId: number): Promise<number> {
    const row = await this.#row<{ modseq: number }>(c, 'UPDATE accounts SET modseq = modseq + 1 WHERE id = $1 RETURNING modseq', [
      accountId,
    ]);
    if (row === undefined) throw new StoreError('not-found', `Cannot find account ${accountId}`);
    return row.modseq;
  }

  /** Never reused, even for a recreated name (RFC 9051 §2.3.1.1): above every earlier value. */
  async #nextUidValidity(c: Tx): Promise<number> {
    const row = await this.#row<{ value: number }>(
      c,
      "UPDATE counters SET value = GREATEST(value + 1, $1) WHERE name = 'uidvalidity' RETURNING value",
      [Math.floor(Date.now() / 1000)],
    );
    if (row === undefined) throw new StoreError('io', 'The uidvalidity counter is missing');
    return row.value;
  }

  async #insertMailbox(c: Tx, accountId: number, name: string, specialUse: SpecialUse | null, modseq: number): Promise<MailboxRow> {
    const row = await this.#row<MailboxRow>(
      c,
      `INSERT INTO mailboxes (account_id, name, uid_validity, uid_next, highest_modseq, special_use)
       VALUES ($1, $2, $3, 1, $4, $5) RETURNING *`,
      [accountId, name, await this.#nextUidValidity(c), modseq, specialUse],
    );
    if (row === undefined) throw new StoreError('io', 'Cannot create mailbox');
    return row;
  }

  async #createMissingParents(c: Tx, accountId: number, name: string, modseq: number): Promise<void> {
    for (const parent of parentNames(name)) {
      if ((await this.#mailboxByName(c, accountId, parent)) === undefined) await this.#insertMailbox(c, accountId, parent, null, modseq);
    }
  }

  async #bumpMailbox(
    c: Tx,
    id: number,
    d: { messages: number; unseen: number; deleted: number; size: number },
    modseq: number,
  ): Promise<void> {
    await c.query(
      `UPDATE mailboxes SET messages = messages + $1, unseen = unseen + $2, deleted = deleted + $3, size = size + $4,
         highest_modseq = GREATEST(highest_modseq, $5) WHERE id = $6`,
      [d.messages, d.unseen, d.deleted, d.size, modseq, id],
    );
  }

  /** Takes n UIDs of a mailbox: returns the first. */
  async #takeUids(c: Tx, mailboxId: number, n: number): Promise<number> {
    const row = await this.#row<{ first: number }>(
      c,
      'UPDATE mailboxes SET uid_next = uid_next + $1 WHERE id = $2 RETURNING uid_next - $1 AS first',
      [n, mailboxId],
    );
    if (row === undefined) throw new StoreError('not-found', `Cannot find mailbox ${mailboxId}`);
    return row.first;
  }

  async #bumpUsage(c: Tx, accountId: number, bytes: number, messages: number): Promise<void> {
    await c.query('UPDATE accounts SET used_bytes = used_bytes + $1, used_messages = used_messages + $2 WHERE id = $3', [
      bytes,
      messages,
      accountId,
    ]);
  }

  #overQuota(account: AccountRow, bytes: number, messages: number): boolean {
    if (account.quota_bytes !== null && account.used_bytes + bytes > account.quota_bytes) return true;
    if (account.quota_messages !== null && account.used_messages + messages > account.quota_messages) return true;
    return false;
  }

  /** Inserts entries in one statement (columns as arrays). */
  async #insertEntries(c: Tx, rows: readonly EntryRow[]): Promise<void> {
    if (rows.length === 0) return;
    const cols = ENTRY_TYPES.map((_, i) => rows.map((r) => r[i]));
    const args = ENTRY_TYPES.map((t, i) => `$${i + 1}::${t}[]`).join(', ');
    await c.query(`INSERT INTO entries (${ENTRY_COLS}) SELECT * FROM unnest(${args})`, cols);
  }

  /**
   * THREADID (RFC 8474 §5.2) of each message, in order: the thread of any known message it is
   * linked to, counting the messages before it in the same batch. One read and one write.
   */
  async #threadsFor(c: Tx, accountId: number, messages: readonly ParsedMessage[]): Promise<string[]> {
    const keysOf = messages.map(threadKeys);
    const all = [...new Set(keysOf.flat())];
    const known = new Map<string, string>();
    if (all.length > 0) {
      const rows = await this.#rows<{ message_id: string; thread_id: string }>(
        c,
        'SELECT message_id, thread_id FROM thread_keys WHERE account_id = $1 AND message_id = ANY($2::text[])',
        [accountId, all],
      );
      for (const r of rows) known.set(r.message_id, r.thread_id);
    }
    const added = new Map<string, string>();
    const out = keysOf.map((keys) => {
      let threadId: string | undefined;
      for (const k of keys) {
        threadId = known.get(k);
        if (threadId !== undefined) break;
      }
      threadId ??= this.#ids.threadId();
      // First writer of a key wins, as with INSERT OR IGNORE one message at a time.
      for (const k of keys) {
        if (!known.has(k)) {
          known.set(k, threadId);
          added.set(k, threadId);
        }
      }
      return threadId;
    });
    if (added.size > 0) {
      await c.query(
        `INSERT INTO thread_keys (account_id, message_id, thread_id) SELECT $1, k, t FROM unnest($2::text[], $3::text[]) AS v(k, t)
         ON CONFLICT DO NOTHING`,
        [accountId, [...added.keys()], [...added.values()]],
      );
    }
    return out;
  }

  /** Stores new messages in one mailbox; account locked and quota checked by the caller. */
  async #ingest(
    c: Tx,
    ctx: WriteContext,
    account: AccountRow,
    mailboxId: number,
    items: ReadonlyArray<{ blob: IngestBlob; flags: FlagSet; internalDate: number }>,
  ): Promise<AppendResult[]> {
    const d = { messages: 0, unseen: 0, deleted: 0, size: 0 };
    for (const item of items) {
      d.messages += 1;
      d.unseen += seenDelta(item.flags.mask);
      d.deleted += deletedDelta(item.flags.mask);
      d.size += item.blob.raw.length;
    }
    // The modseq and the usage (the account's row), the UIDs and counters (the mailbox's) in one
    // statement: the mailbox's update takes the modseq from the account's, a data-modifying CTE.
    // No row: the mailbox is not there (or not the account's), and the transaction rolls back.
    const mb = await this.#row<{ first: number; uid_validity: number; modseq: number }>(
      c,
      `WITH acc AS (UPDATE accounts SET modseq = modseq + 1, used_bytes = used_bytes + $6, used_messages = used_messages + $3
                     WHERE id = $7 RETURNING modseq)
       UPDATE mailboxes SET uid_next = uid_next + $2, messages = messages + $3, unseen = unseen + $4, deleted = deleted + $5,
         size = size + $6, highest_modseq = GREATEST(highest_modseq, (SELECT modseq FROM acc))
       WHERE id = $1 AND account_id = $7 RETURNING uid_next - $2 AS first, uid_validity, (SELECT modseq FROM acc) AS modseq`,
      [mailboxId, items.length, d.messages, d.unseen, d.deleted, d.size, account.id],
    );
    if (mb === undefined) throw new StoreError('not-found', `Cannot find mailbox ${mailboxId}`);
    const modseq = mb.modseq;
    const threads = await this.#threadsFor(c, account.id, items.map((i) => i.blob.parsed));
    const now = Date.now();
    const rows: EntryRow[] = [];
    const results: AppendResult[] = [];
    for (const [i, item] of items.entries()) {
      const emailId = this.#ids.emailId();
      const uid = mb.first + i;
      rows.push([mailboxId, uid, modseq, item.flags.mask, encodeKeywords(item.flags.keywords), item.internalDate, now, item.blob.raw.length, item.blob.hash, emailId, threads[i] ?? this.#ids.threadId(), emailId, false]);
      results.push({ uidValidity: asUidValidity(mb.uid_validity), uid: asUid(uid), modseq: asModSeq(modseq), emailId });
    }
    // Blob rows first: an entry never points at a missing blob, even inside the transaction.
    const perBlob = new Map<string, { blob: IngestBlob; n: number }>();
    for (const item of items) {
      const p = perBlob.get(item.blob.hash);
      if (p === undefined) perBlob.set(item.blob.hash, { blob: item.blob, n: 1 });
      else p.n += 1;
    }
    await this.#addBlobRefs(c, [...perBlob.values()]);
    await this.#insertEntries(c, rows);
    ctx.events.push({ accountId: asAccountId(account.id), mailboxId: asMailboxId(mailboxId), modseq: asModSeq(modseq), kind: 'append' });
    return results;
  }

  /** A condition on `uid` selecting the given UIDs, as one array parameter. */
  #uidArray(uids: readonly Uid[]): number[] {
    return [...new Set<number>(uids)].sort((a, b) => a - b);
  }

  async #selectRows(c: pg.ClientBase | pg.Pool, mailboxId: number, uids: readonly Uid[]): Promise<EntryRow[]> {
    if (uids.length === 0) return [];
    return this.#arrays<EntryRow>(
      c,
      `SELECT ${ENTRY_COLS} FROM entries WHERE mailbox_id = $1 AND uid = ANY($2::int8[]) ORDER BY uid`,
      [mailboxId, this.#uidArray(uids)],
    );
  }

  /**
   * Removes entries of a mailbox whose account is locked: the entries, their VANISHED record,
   * the mailbox's counters and (unless the blobs stay, as in a MOVE) the account's usage and the
   * blobs' references in ONE statement (data-modifying CTEs, one table each, so none needs to see
   * another's effect) instead of five; the blobs left unreferenced are deleted with the COMMIT.
   */
  async #removeEntries(
    c: Tx,
    ctx: WriteContext,
    mailbox: Pick<MailboxRow, 'id' | 'account_id'>,
    rows: readonly EntryRow[],
    modseq: number,
    keepBlobs: boolean,
  ): Promise<void> {
    if (rows.length === 0) return;
    const list = rows.map((r) => r[1]);
    // UIDs are never reused: dropped now even should the transaction roll back (read again then).
    for (const uid of list) this.#factsCache.delete(mailbox.id, uid);
    const d = { messages: 0, unseen: 0, deleted: 0, size: 0 };
    const refs = new Map<string, number>();
    for (const r of rows) {
      d.messages -= 1;
      d.unseen -= seenDelta(r[3]);
      d.deleted -= deletedDelta(r[3]);
      d.size -= r[7];
      refs.set(r[8], (refs.get(r[8]) ?? 0) + 1);
    }
    const ctes = [
      'gone AS (DELETE FROM entries WHERE mailbox_id = $1 AND uid = ANY($2::int8[]))',
      // RFC 7162 §3.2.10: expunged UIDs are remembered for VANISHED (EARLIER).
      'vanished AS (INSERT INTO expunged (mailbox_id, modseq, uid) SELECT $1, $3, u FROM unnest($2::int8[]) AS u)',
      `box AS (UPDATE mailboxes SET messages = messages + $4, unseen = unseen + $5, deleted = deleted + $6, size = size + $7,
         highest_modseq = GREATEST(highest_modseq, $3) WHERE id = $1)`,
    ];
    const args: unknown[] = [mailbox.id, list, modseq, d.messages, d.unseen, d.deleted, d.size];
    if (keepBlobs) {
      await c.query(`WITH ${ctes.join(', ')} SELECT 1`, args);
    } else {
      ctes.push(
        'used AS (UPDATE accounts SET used_bytes = used_bytes + $7, used_messages = used_messages + $4 WHERE id = $8)',
        `refs AS (UPDATE blobs b SET refs = b.refs - v.n FROM unnest($9::text[], $10::int8[]) AS v(h, n)
           WHERE b.hash = v.h RETURNING b.hash, b.refs, b.external)`,
      );
      const dead = await this.#arrays<[string, boolean]>(c, `WITH ${ctes.join(', ')} SELECT hash, external FROM refs WHERE refs <= 0`, [
        ...args,
        mailbox.account_id,
        [...refs.keys()],
        [...refs.values()],
      ]);
      if (dead.length > 0) {
        // `refs <= 0` again at COMMIT: a later statement of this transaction may have referenced
        // the blob again.
        ctx.tail.push(`DELETE FROM blobs WHERE hash = ANY(${sqlTexts(c, dead.map((r) => r[0]))}) AND refs <= 0`);
        for (const [hash, external] of dead) {
          ctx.removed.push(hash);
          if (external) ctx.removedExternal.push(hash);
        }
      }
    }
    ctx.events.push({ accountId: asAccountId(mailbox.account_id), mailboxId: asMailboxId(mailbox.id), modseq: asModSeq(modseq), kind: 'expunge' });
  }

  /** COPY and MOVE (RFC 4315 COPYUID, RFC 6851): new UIDs in the destination, in source order. */
  async #transfer(c: Tx, ctx: WriteContext, fromId: number, uids: readonly Uid[], toId: number, move: boolean, whole: boolean): Promise<CopyResult & { expunged: Uid[] }> {
    const { mailbox: src, account } = await this.#lockMailbox(c, fromId);
    const dst = await this.#mailboxRow(c, toId);
    if (dst === undefined) throw new StoreError('not-found', `Cannot find mailbox ${toId}`);
    if (src.account_id !== dst.account_id) throw new StoreError('invalid', 'Cannot copy between accounts');
    const rows = await this.#selectRows(c, fromId, uids);
    const gone = rows.length === uids.length ? [] : absentUids(uids, rows.map((r) => r[1]));
    if (rows.length === 0 || (whole && gone.length > 0)) return { uidValidity: asUidValidity(dst.uid_validity), pairs: [], expunged: [], gone };
    const bytes = rows.reduce((n, r) => n + r[7], 0);
    // A move within the account changes no usage; a copy adds to it (RFC 9208 §4.3 OVERQUOTA).
    if (!move && this.#overQuota(account, bytes, rows.length)) {
      throw new StoreError('over-quota', 'Cannot copy: the account is over its quota');
    }
    const modseq = await this.#nextModseq(c, account.id);
    const first = await this.#takeUids(c, toId, rows.length);
    const now = Date.now();
    let pidCounter = account.pid_counter;
    const pairs: Array<[Uid, Uid]> = [];
    const d = { messages: 0, unseen: 0, deleted: 0, size: 0 };
    const refs = new Map<string, number>();
    const inserted: EntryRow[] = rows.map((r, i) => {
      const uid = first + i;
      pairs.push([asUid(r[1]), asUid(uid)]);
      d.messages += 1;
      d.unseen += seenDelta(r[3]);
      d.deleted += deletedDelta(r[3]);
      d.size += r[7];
      refs.set(r[8], (refs.get(r[8]) ?? 0) + 1);
      const pid = move ? r[11] : copyPid(r[9], ++pidCounter);
      return [toId, uid, modseq, r[3], r[4], r[5], now, r[7], r[8], r[9], r[10], pid, move ? r[12] : false];
    });
    ctx.events.push({ accountId: asAccountId(account.id), mailboxId: asMailboxId(toId), modseq: asModSeq(modseq), kind: 'append' });
    if (move) {
      // Source row re-read: when from === to its UIDNEXT just changed.
      const srcNow = await this.#mailboxRow(c, fromId);
      if (srcNow === undefined) throw new StoreError('not-found', `Cannot find mailbox ${fromId}`);
      await this.#removeEntries(c, ctx, srcNow, rows, modseq, true);
    } else {
      await this.#incRefs(c, refs);
    }
    await this.#insertEntries(c, inserted);
    await this.#bumpMailbox(c, toId, d, modseq);
    if (!move) {
      await c.query(
        'UPDATE accounts SET pid_counter = $1, used_bytes = used_bytes + $2, used_messages = used_messages + $3 WHERE id = $4',
        [pidCounter, d.size, d.messages, account.id],
      );
    }
    return { uidValidity: asUidValidity(dst.uid_validity), pairs, expunged: move ? rows.map((r) => asUid(r[1])) : [], gone };
  }

  #mailboxEvent(ctx: WriteContext, accountId: number, modseq: number): void {
    ctx.events.push({ accountId: asAccountId(accountId), mailboxId: null, modseq: asModSeq(modseq), kind: 'mailbox' });
  }

  // ---------------------------------------------------------------------------------------------
  // Domains, accounts, aliases.

  async addDomain(name: string, createdAt = Date.now()): Promise<Domain> {
    const d = normalizeDomain(name);
    return this.#tx(async (c) => {
      const r = await c.query('INSERT INTO domains (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING', [d, createdAt]);
      if ((r.rowCount ?? 0) === 0) throw new StoreError('exists', `Cannot add domain ${d}: it exists`);
      return { name: d, createdAt };
    });
  }

  async listDomains(): Promise<Domain[]> {
    return this.#read(async () => {
      const rows = await this.#rows<{ name: string; created_at: number }>(this.#pool, 'SELECT name, created_at FROM domains ORDER BY name');
      return rows.map((r) => ({ name: r.name, createdAt: r.created_at }));
    });
  }

  async removeDomain(name: string, force = false): Promise<void> {
    const d = normalizeDomain(name);
    return this.#tx(async (c, ctx) => {
      if ((await c.query('SELECT 1 FROM domains WHERE name = $1 FOR UPDATE', [d])).rowCount === 0) {
        throw new StoreError('not-found', `Cannot remove domain ${d}: it is not local`);
      }
      const ids = (await this.#rows<{ id: number }>(c, 'SELECT id FROM accounts WHERE domain = $1 ORDER BY id', [d])).map((r) => r.id);
      if (ids.length > 0 && !force) throw new StoreError('conflict', `Cannot remove domain ${d}: it has ${ids.length} account(s)`);
      for (const id of ids) await this.#deleteAccountRows(c, ctx, id);
      await c.query("DELETE FROM aliases WHERE source = $1 OR source LIKE $2 ESCAPE '\\'", [`@${d}`, `%@${d.replace(/[\\%_]/g, (x) => `\\${x}`)}`]);
      await c.query('DELETE FROM domains WHERE name = $1', [d]);
    });
  }

  async isLocalDomain(name: string): Promise<boolean> {
    let d: string;
    try {
      d = normalizeDomain(name);
    } catch {
      return false;
    }
    return this.#read(async () => ((await this.#pool.query('SELECT 1 FROM domains WHERE name = $1', [d])).rowCount ?? 0) > 0);
  }

  async createAccount(input: { address: string; passwordHash: string; scram?: string | null }): Promise<Account> {
    const address = normalizeAddress(input.address);
    const domain = domainOf(address);
    return this.#tx(async (c) => {
      if ((await c.query('SELECT 1 FROM domains WHERE name = $1 FOR SHARE', [domain])).rowCount === 0) {
        throw new StoreError('not-found', `Cannot create account ${address}: domain ${domain} is not local`);
      }
      const row = await this.#row<AccountRow>(
        c,
        `INSERT INTO accounts (address, domain, password_hash, scram, created_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (address) DO NOTHING RETURNING *`,
        [address, domain, input.passwordHash, input.scram ?? null, Date.now()],
      );
      if (row === undefined) throw new StoreError('exists', `Cannot create account ${address}: it exists`);
      const modseq = await this.#nextModseq(c, row.id);
      for (const m of DEFAULT_MAILBOXES) await this.#insertMailbox(c, row.id, m.name, m.specialUse, modseq);
      await c.query('INSERT INTO subscriptions (account_id, name) SELECT $1, n FROM unnest($2::text[]) AS n ON CONFLICT DO NOTHING', [
        row.id,
        DEFAULT_MAILBOXES.map((m) => m.name),
      ]);
      return toAccount(row);
    });
  }

  async getAccount(id: AccountId): Promise<Account | null> {
    return this.#read(async () => {
      const row = await this.#accountRow(this.#pool, id);
      return row === undefined ? null : toAccount(row);
    });
  }

  async getAccountByAddress(address: string): Promise<Account | null> {
    return this.#read(async () => {
      const row = await this.#row<AccountRow>(this.#pool, 'SELECT * FROM accounts WHERE address = $1', [address.trim().toLowerCase()]);
      return row === undefined ? null : toAccount(row);
    });
  }

  async listAccounts(domain?: string): Promise<Account[]> {
    const d = domain === undefined ? undefined : normalizeDomain(domain);
    return this.#read(async () => {
      const rows =
        d === undefined
          ? await this.#rows<AccountRow>(this.#pool, 'SELECT * FROM accounts ORDER BY address COLLATE "C"')
          : await this.#rows<AccountRow>(this.#pool, 'SELECT * FROM accounts WHERE domain = $1 ORDER BY address COLLATE "C"', [d]);
      return rows.map(toAccount);
    });
  }

  async updateAccount(
    id: AccountId,
    patch: Partial<AccountPatch>,
  ): Promise<void> {
    checkTotp(patch.totpSecret, patch.totpLastStep);
    if (patch.pop3DeletePolicy !== undefined && !POP3_POLICIES.has(patch.pop3DeletePolicy)) {
      throw new StoreError('invalid', `Cannot set POP3 delete policy ${String(patch.pop3DeletePolicy)}`);
    }
    for (const q of [patch.quotaBytes, patch.quotaMessages]) {
      if (q !== undefined && q !== null && (!Number.isSafeInteger(q) || q < 0)) {
        throw new StoreError('invalid', `Cannot set quota ${q}: not a non-negative integer`);
      }
    }
    return this.#tx(async (c) => {
      await this.#requireAccount(c, id, true);
      const sets: string[] = [];
      const args: unknown[] = [];
      const put = (col: string, v: unknown): void => {
        args.push(v);
        sets.push(`${col} = $${args.length}`);
      };
      if (patch.passwordHash !== undefined) put('password_hash', patch.passwordHash);
      if (patch.scram !== undefined) put('scram', patch.scram);
      if (patch.quotaBytes !== undefined) put('quota_bytes', patch.quotaBytes);
      if (patch.quotaMessages !== undefined) put('quota_messages', patch.quotaMessages);
      if (patch.pop3DeletePolicy !== undefined) put('pop3_delete_policy', patch.pop3DeletePolicy);
      if (patch.disabled !== undefined) put('disabled', patch.disabled);
      if (patch.totpSecret !== undefined) put('totp_secret', patch.totpSecret);
      if (patch.totpLastStep !== undefined) put('totp_last_step', patch.totpLastStep);
      if (sets.length === 0) return;
      args.push(id);
      await c.query(`UPDATE accounts SET ${sets.join(', ')} WHERE id = $${args.length}`, args);
    });
  }

  async deleteAccount(id: AccountId): Promise<void> {
    return this.#tx(async (c, ctx) => {
      await this.#requireAccount(c, id, true);
      await this.#deleteAccountRows(c, ctx, id);
    });
  }

  async #deleteAccountRows(c: Tx, ctx: WriteContext, id: number): Promise<void> {
    const account = await this.#requireAccount(c, id, true);
    const rows = await this.#rows<{ blob_hash: string }>(
      c,
      'DELETE FROM entries WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE account_id = $1) RETURNING blob_hash',
      [id],
    );
    const refs = new Map<string, number>();
    for (const r of rows) refs.set(r.blob_hash, (refs.get(r.blob_hash) ?? 0) + 1);
    await this.#decRefs(c, ctx, refs);
    await c.query('DELETE FROM expunged WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE account_id = $1)', [id]);
    await c.query('DELETE FROM view_snapshots WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE account_id = $1)', [id]);
    await c.query('DELETE FROM mailboxes WHERE account_id = $1', [id]);
    await c.query('DELETE FROM subscriptions WHERE account_id = $1', [id]);
    await c.query('DELETE FROM thread_keys WHERE account_id = $1', [id]);
    await c.query('DELETE FROM metadata WHERE account_id = $1', [id]);
    await c.query('DELETE FROM app_passwords WHERE account_id = $1', [id]);
    await c.query('DELETE FROM aliases WHERE target = $1', [account.address]);
    await c.query('DELETE FROM accounts WHERE id = $1', [id]);
    this.#mailboxEvent(ctx, id, account.modseq + 1);
  }

  async acceptTotpStep(id: AccountId, step: number): Promise<boolean> {
    checkTotp(undefined, step);
    return this.#tx(async (c) => {
      // One conditional UPDATE: two nodes racing with the same code cannot both succeed.
      const r = await c.query(
        'UPDATE accounts SET totp_last_step = $1 WHERE id = $2 AND totp_secret IS NOT NULL AND (totp_last_step IS NULL OR totp_last_step < $1)',
        [step, id],
      );
      return r.rowCount === 1;
    });
  }

  async addAppPassword(
    accountId: AccountId,
    input: { name: string; hash: string; createdAt?: number; lastUsed?: AppPasswordUse | null },
  ): Promise<AppPassword> {
    const name = checkAppPasswordName(input.name);
    return this.#tx(async (c) => {
      await this.#requireAccount(c, accountId, true);
      const used = input.lastUsed ?? null;
      const row = await this.#row<AppPasswordRow>(
        c,
        `INSERT INTO app_passwords (account_id, name, hash, created_at, last_used_at, last_used_protocol, last_used_ip)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (account_id, name) DO NOTHING RETURNING *`,
        [accountId, name, input.hash, input.createdAt ?? Date.now(), used?.at ?? null, used?.protocol ?? null, used?.ip ?? null],
      );
      if (row === undefined) throw new StoreError('exists', `Cannot add app password ${JSON.stringify(name)}: the account has one so named`);
      return toAppPassword(row);
    });
  }

  async listAppPasswords(accountId: AccountId): Promise<AppPassword[]> {
    return this.#read(async () => {
      const rows = await this.#rows<AppPasswordRow>(this.#pool, 'SELECT * FROM app_passwords WHERE account_id = $1 ORDER BY name COLLATE "C", id', [
        accountId,
      ]);
      return rows.map(toAppPassword);
    });
  }

  async findAppPassword(accountId: AccountId, hash: string): Promise<AppPassword | null> {
    return this.#read(async () => {
      const row = await this.#row<AppPasswordRow>(
        this.#pool,
        'SELECT * FROM app_passwords WHERE account_id = $1 AND hash = $2 ORDER BY id LIMIT 1',
        [accountId, hash],
      );
      return row === undefined ? null : toAppPassword(row);
    });
  }

  async removeAppPassword(accountId: AccountId, name: string): Promise<void> {
    return this.#tx(async (c) => {
      const r = await c.query('DELETE FROM app_passwords WHERE account_id = $1 AND name = $2', [accountId, name.trim()]);
      if (r.rowCount === 0) throw new StoreError('not-found', `Cannot revoke app password ${JSON.stringify(name)}: the account has none so named`);
    });
  }

  async recordAppPasswordUse(id: number, use: AppPasswordUse): Promise<void> {
    return this.#tx(async (c) => {
      await c.query('UPDATE app_passwords SET last_used_at = $1, last_used_protocol = $2, last_used_ip = $3 WHERE id = $4', [
        use.at,
        use.protocol,
        use.ip,
        id,
      ]);
    });
  }

  async addAlias(source: string, target: string): Promise<void> {
    const s = normalizeAliasSource(source);
    const t = normalizeAddress(target);
    const domain = domainOf(s);
    return this.#tx(async (c) => {
      if ((await c.query('SELECT 1 FROM domains WHERE name = $1 FOR SHARE', [domain])).rowCount === 0) {
        throw new StoreError('not-found', `Cannot add alias ${s}: domain ${domain} is not local`);
      }
      const r = await c.query('INSERT INTO aliases (source, target) VALUES ($1, $2) ON CONFLICT DO NOTHING', [s, t]);
      if ((r.rowCount ?? 0) === 0) throw new StoreError('exists', `Cannot add alias ${s} -> ${t}: it exists`);
    });
  }

  async removeAlias(source: string): Promise<void> {
    const s = normalizeAliasSource(source);
    return this.#tx(async (c) => {
      if (((await c.query('DELETE FROM aliases WHERE source = $1', [s])).rowCount ?? 0) === 0) {
        throw new StoreError('not-found', `Cannot remove alias ${s}: no such alias`);
      }
    });
  }

  async listAliases(domain?: string): Promise<Alias[]> {
    const d = domain === undefined ? undefined : normalizeDomain(domain);
    return this.#read(async () => {
      const rows =
        d === undefined
          ? await this.#rows<Alias>(this.#pool, 'SELECT source, target FROM aliases ORDER BY source COLLATE "C", target COLLATE "C"')
          : await this.#rows<Alias>(
              this.#pool,
              `SELECT source, target FROM aliases WHERE source LIKE $1 ESCAPE '\\' ORDER BY source COLLATE "C", target COLLATE "C"`,
              [`%@${d.replace(/[\\%_]/g, (x) => `\\${x}`)}`],
            );
      return rows.map((r) => ({ source: r.source, target: r.target }));
    });
  }

  async resolveRecipient(address: string): Promise<AccountId[]> {
    return (await this.#resolve(address)).accounts.map((r) => asAccountId(Number(r.id)));
  }

  async resolveRecipientAccounts(address: string): Promise<Account[]> {
    return (await this.#resolve(address)).accounts.map(toAccount);
  }

  async resolveRecipientRoute(address: string): Promise<RecipientRoute> {
    const r = await this.#resolve(address);
    return { accounts: r.accounts.map(toAccount), forwards: r.forwards };
  }

  /** The account rows an address reaches (store/recipients.ts): one round trip per address
   * visited, the account's row and the alias targets together. */
  async #resolve(address: string): Promise<ResolvedAddress<AccountRow>> {
    let start: string;
    try {
      start = normalizeAddress(address);
    } catch {
      return { accounts: [], forwards: [] };
    }
    return this.#read(() =>
      resolveAddress(start, async (addr) => {
        const row = await this.#row<AccountRow & { id: number | null; alias_targets: string[] }>(
          this.#pool,
          `SELECT a.*, ARRAY(SELECT target FROM aliases WHERE source = $1 ORDER BY target COLLATE "C") AS alias_targets
             FROM (SELECT 1) AS one LEFT JOIN accounts a ON a.address = $1`,
          [addr],
        );
        return { account: row !== undefined && row.id !== null ? row : undefined, targets: row?.alias_targets ?? [] };
      }, async (domain) => ((await this.#pool.query('SELECT 1 FROM domains WHERE name = $1', [domain])).rowCount ?? 0) > 0),
    );
  }

  async sendableAddresses(accountId: AccountId): Promise<string[]> {
    return this.#read(async () => {
      const account = await this.#accountRow(this.#pool, accountId);
      if (account === undefined) return [];
      const seen = new Set<string>([account.address]);
      let frontier = [account.address];
      for (let depth = 0; depth < MAX_ALIAS_DEPTH && frontier.length > 0; depth++) {
        const rows = await this.#rows<{ source: string }>(this.#pool, 'SELECT source FROM aliases WHERE target = ANY($1::text[])', [frontier]);
        const next: string[] = [];
        for (const r of rows) {
          if (seen.has(r.source)) continue;
          seen.add(r.source);
          next.push(r.source);
        }
        frontier = next;
      }
      const [own, ...rest] = [...seen];
      return [own ?? account.address, ...rest.sort()];
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Mailboxes.

  async listMailboxes(accountId: AccountId): Promise<Mailbox[]> {
    return this.#read(async () => {
      const rows = await this.#rows<MailboxRow & { subscribed: boolean }>(
        this.#pool,
        `SELECT m.*, s.name IS NOT NULL AS subscribed FROM mailboxes m
           LEFT JOIN subscriptions s ON s.account_id = m.account_id AND s.name = m.name
         WHERE m.account_id = $1 ORDER BY m.name <> 'INBOX', m.name COLLATE "C"`,
        [accountId],
      );
      return rows.map((r) => toMailbox(r, r.subscribed));
    });
  }

  async #isSubscribed(accountId: number, name: string): Promise<boolean> {
    return ((await this.#pool.query('SELECT 1 FROM subscriptions WHERE account_id = $1 AND name = $2', [accountId, name])).rowCount ?? 0) > 0;
  }

  async getMailbox(accountId: AccountId, name: string): Promise<Mailbox | null> {
    let n: string;
    try {
      n = normalizeMailboxName(name);
    } catch {
      return null;
    }
    return this.#read(() => this.#subscribedMailbox('m.account_id = $1 AND m.name = $2', [accountId, n]));
  }

  async getMailboxById(id: MailboxId): Promise<Mailbox | null> {
    return this.#read(() => this.#subscribedMailbox('m.id = $1', [id]));
  }

  /** One mailbox and whether it is subscribed, in one statement (SELECT and STATUS ask by name). */
  async #subscribedMailbox(where: string, params: unknown[]): Promise<Mailbox | null> {
    const row = await this.#row<MailboxRow & { subscribed: boolean }>(
      this.#pool,
      `SELECT m.*, s.name IS NOT NULL AS subscribed FROM mailboxes m
         LEFT JOIN subscriptions s ON s.account_id = m.account_id AND s.name = m.name WHERE ${where}`,
      params,
    );
    return row === undefined ? null : toMailbox(row, row.subscribed);
  }

  async createMailbox(accountId: AccountId, name: string, specialUse: SpecialUse | null = null): Promise<Mailbox> {
    const n = normalizeMailboxName(name);
    if (specialUse !== null && !SPECIAL_USES.has(specialUse)) {
      throw new StoreError('invalid', `Cannot create mailbox with special use ${String(specialUse)}`);
    }
    const row = await this.#tx(async (c, ctx) => {
      await this.#requireAccount(c, accountId, true);
      if ((await this.#mailboxByName(c, accountId, n)) !== undefined) throw new StoreError('exists', `Cannot create mailbox ${n}: it exists`);
      const modseq = await this.#nextModseq(c, accountId);
      await this.#createMissingParents(c, accountId, n, modseq);
      const r = await this.#insertMailbox(c, accountId, n, specialUse, modseq);
      this.#mailboxEvent(ctx, accountId, modseq);
      return r;
    });
    return toMailbox(row, await this.#read(() => this.#isSubscribed(accountId, n)));
  }

  async renameMailbox(accountId: AccountId, from: string, to: string): Promise<void> {
    const f = normalizeMailboxName(from);
    const t = normalizeMailboxName(to);
    return this.#tx(async (c, ctx) => {
      await this.#requireAccount(c, accountId, true);
      const src = await this.#mailboxByName(c, accountId, f);
      if (src === undefined) throw new StoreError('not-found', `Cannot rename mailbox ${f}: it does not exist`);
      if ((await this.#mailboxByName(c, accountId, t)) !== undefined) throw new StoreError('exists', `Cannot rename mailbox ${f} to ${t}: ${t} exists`);
      if (t.startsWith(`${f}/`)) throw new StoreError('invalid', `Cannot rename mailbox ${f} into itself`);
      const modseq = await this.#nextModseq(c, accountId);
      if (f === 'INBOX') {
        // RFC 9051 §6.3.9: renaming INBOX moves its messages to a new mailbox; INBOX stays, empty,
        // and its inferior names are not renamed.
        await this.#createMissingParents(c, accountId, t, modseq);
        const dst = await this.#insertMailbox(c, accountId, t, null, modseq);
        const all = await this.#arrays<[number]>(c, 'SELECT uid FROM entries WHERE mailbox_id = $1 ORDER BY uid', [src.id]);
        await this.#transfer(c, ctx, src.id, all.map((r) => asUid(r[0])), dst.id, true, false);
        // RFC 5464 §4.1: INBOX keeps its annotations and the new mailbox gets a copy.
        await c.query(
          'INSERT INTO metadata (account_id, mailbox_id, name, value) SELECT account_id, $1, name, value FROM metadata WHERE account_id = $2 AND mailbox_id = $3',
          [dst.id, accountId, src.id],
        );
        this.#mailboxEvent(ctx, accountId, modseq);
        return;
      }
      const children = await this.#rows<{ id: number; name: string }>(
        c,
        'SELECT id, name FROM mailboxes WHERE account_id = $1 AND left(name, $2) = $3',
        [accountId, f.length + 1, `${f}/`],
      );
      const moves = [{ id: src.id, from: f, to: t }, ...children.map((ch) => ({ id: ch.id, from: ch.name, to: t + ch.name.slice(f.length) }))];
      for (const m of moves.slice(1)) {
        if ((await this.#mailboxByName(c, accountId, m.to)) !== undefined) {
          throw new StoreError('exists', `Cannot rename mailbox ${f} to ${t}: ${m.to} exists`);
        }
      }
      // Two steps so that no intermediate state collides on (account_id, name).
      const ids = moves.map((m) => m.id);
      await c.query("UPDATE mailboxes SET name = E'\\\\x01renaming' || id WHERE id = ANY($1::int8[])", [ids]);
      await c.query('UPDATE mailboxes m SET name = v.name FROM unnest($1::int8[], $2::text[]) AS v(id, name) WHERE m.id = v.id', [
        ids,
        moves.map((m) => m.to),
      ]);
      await this.#createMissingParents(c, accountId, t, modseq);
      // Subscriptions follow the mailboxes they name (replacing a subscription to the new name).
      for (const m of moves) {
        const had = await c.query('DELETE FROM subscriptions WHERE account_id = $1 AND name = $2', [accountId, m.from]);
        if ((had.rowCount ?? 0) > 0) {
          await c.query('INSERT INTO subscriptions (account_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING', [accountId, m.to]);
        }
      }
      this.#mailboxEvent(ctx, accountId, modseq);
    });
  }

  async deleteMailbox(accountId: AccountId, name: string): Promise<void> {
    const n = normalizeMailboxName(name);
    return this.#tx(async (c, ctx) => {
      if (n === 'INBOX') throw new StoreError('invalid', 'Cannot delete INBOX');
      await this.#requireAccount(c, accountId, true);
      const mb = await this.#mailboxByName(c, accountId, n);
      if (mb === undefined) throw new StoreError('not-found', `Cannot delete mailbox ${n}: it does not exist`);
      const modseq = await this.#nextModseq(c, accountId);
      const rows = await this.#rows<{ size: number; blob_hash: string }>(c, 'DELETE FROM entries WHERE mailbox_id = $1 RETURNING size, blob_hash', [mb.id]);
      const refs = new Map<string, number>();
      let bytes = 0;
      for (const r of rows) {
        refs.set(r.blob_hash, (refs.get(r.blob_hash) ?? 0) + 1);
        bytes += r.size;
      }
      await this.#bumpUsage(c, accountId, -bytes, -rows.length);
      await this.#decRefs(c, ctx, refs);
      await c.query('DELETE FROM expunged WHERE mailbox_id = $1', [mb.id]);
      await c.query('DELETE FROM view_snapshots WHERE mailbox_id = $1', [mb.id]);
      // RFC 5464 §4.1: a mailbox created later with the same name does not inherit annotations.
      await c.query('DELETE FROM metadata WHERE account_id = $1 AND mailbox_id = $2', [accountId, mb.id]);
      await c.query('DELETE FROM mailboxes WHERE id = $1', [mb.id]);
      // Subscriptions are kept (RFC 9051 §6.3.7).
      this.#mailboxEvent(ctx, accountId, modseq);
    });
  }

  async setSubscribed(accountId: AccountId, name: string, subscribed: boolean): Promise<void> {
    const n = normalizeMailboxName(name);
    return this.#tx(async (c, ctx) => {
      await this.#requireAccount(c, accountId, true);
      const r = subscribed
        ? await c.query('INSERT INTO subscriptions (account_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING', [accountId, n])
        : await c.query('DELETE FROM subscriptions WHERE account_id = $1 AND name = $2', [accountId, n]);
      if ((r.rowCount ?? 0) > 0) this.#mailboxEvent(ctx, accountId, await this.#nextModseq(c, accountId));
    });
  }

  async listSubscriptions(accountId: AccountId): Promise<string[]> {
    return this.#read(async () =>
      (await this.#rows<{ name: string }>(this.#pool, 'SELECT name FROM subscriptions WHERE account_id = $1 ORDER BY name COLLATE "C"', [accountId])).map(
        (r) => r.name,
      ),
    );
  }

  // ---------------------------------------------------------------------------------------------
  // Annotations (RFC 5464).

  /** The mailbox id column of a target: 0 for server entries; the mailbox must be the account's. */
  async #metadataTarget(c: pg.ClientBase | pg.Pool, accountId: number, mailboxId: MailboxId | null): Promise<number> {
    if (mailboxId === null) return 0;
    const mb = await this.#mailboxRow(c, mailboxId);
    if (mb === undefined || Number(mb.account_id) !== accountId) throw new StoreError('not-found', `Cannot find mailbox ${mailboxId}`);
    return Number(mb.id);
  }

  async getMetadata(accountId: AccountId, mailboxId: MailboxId | null): Promise<MetadataEntry[]> {
    return this.#read(async () => {
      const target = await this.#metadataTarget(this.#pool, accountId, mailboxId);
      const rows = await this.#rows<{ name: string; value: Buffer }>(
        this.#pool,
        'SELECT name, value FROM metadata WHERE account_id = $1 AND mailbox_id = $2 ORDER BY name COLLATE "C"',
        [accountId, target],
      );
      return rows.map((r) => ({ name: r.name, value: r.value }));
    });
  }

  async setMetadata(accountId: AccountId, mailboxId: MailboxId | null, changes: readonly MetadataChange[], limits: MetadataLimits): Promise<void> {
    return this.#tx(async (c, ctx) => {
      // The account row lock serialises the limit check with every other write of the account.
      await this.#requireAccount(c, accountId, true);
      const target = await this.#metadataTarget(c, accountId, mailboxId);
      const rows = await this.#rows<{ name: string; size: number }>(
        c,
        'SELECT name, octet_length(value) AS size FROM metadata WHERE account_id = $1 AND mailbox_id = $2',
        [accountId, target],
      );
      const plan = planMetadata(new Map(rows.map((r) => [r.name, Number(r.size)])), await this.#metadataBytes(c, accountId), changes, limits);
      if (plan.upserts.length === 0 && plan.deletes.length === 0) return;
      if (plan.upserts.length > 0) {
        await c.query(
          `INSERT INTO metadata (account_id, mailbox_id, name, value) SELECT $1, $2, n, v FROM unnest($3::text[], $4::bytea[]) AS u(n, v)
           ON CONFLICT (account_id, mailbox_id, name) DO UPDATE SET value = EXCLUDED.value`,
          [accountId, target, plan.upserts.map((u) => u.name), plan.upserts.map((u) => u.value)],
        );
      }
      if (plan.deletes.length > 0) {
        await c.query('DELETE FROM metadata WHERE account_id = $1 AND mailbox_id = $2 AND name = ANY($3::text[])', [accountId, target, plan.deletes]);
      }
      const event: ChangeEvent = { accountId, mailboxId, modseq: asModSeq(await this.#nextModseq(c, accountId)), kind: 'metadata' };
      if (plan.eventNames !== undefined) event.entries = plan.eventNames;
      ctx.events.push(event);
    });
  }

  async #metadataBytes(c: pg.ClientBase | pg.Pool, accountId: number): Promise<number> {
    const row = await this.#row<{ n: string | number }>(c, 'SELECT coalesce(sum(octet_length(value)), 0) AS n FROM metadata WHERE account_id = $1', [accountId]);
    return Number(row?.n ?? 0);
  }

  async metadataUsage(accountId: AccountId): Promise<number> {
    return this.#read(() => this.#metadataBytes(this.#pool, accountId));
  }

  async mailboxCounts(mailboxId: MailboxId): Promise<MailboxCounts> {
    return this.#read(async () => {
      const mb = await this.#mailboxRow(this.#pool, mailboxId);
      if (mb === undefined) throw new StoreError('not-found', `Cannot find mailbox ${mailboxId}`);
      return { messages: mb.messages, unseen: mb.unseen, deleted: mb.deleted, size: mb.size };
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Messages: reads.

  async listEntries(mailboxId: MailboxId): Promise<MessageEntry[]> {
    return this.#read(async () =>
      (await this.#arrays<EntryRow>(this.#pool, `SELECT ${ENTRY_COLS} FROM entries WHERE mailbox_id = $1 ORDER BY uid`, [mailboxId])).map(toEntry),
    );
  }

  async listViewEntries(mailboxId: MailboxId): Promise<ViewEntries> {
    return this.#read(() => this.#views.get(mailboxId));
  }

  /** See viewCacheStats (view-cache.ts). */
  get viewCacheStats(): ViewCacheStats {
    return this.#views.stats;
  }

  /** The narrow reads of the view cache. */
  #viewSource(): ViewSource {
    const HEAD = 'SELECT account_id, uid_validity, uid_next, highest_modseq, messages FROM mailboxes WHERE id = $1';
    const toHead = (r: [number, number, number, number, number]): MailboxHead => ({
      accountId: r[0],
      uidValidity: r[1],
      uidNext: r[2],
      highestModSeq: r[3],
      messages: r[4],
    });
    return {
      head: async (id) => {
        const r = (await this.#arrays<[number, number, number, number, number]>(this.#pool, HEAD, [id]))[0];
        return r === undefined ? null : toHead(r);
      },
      rows: async (id) =>
        (await this.#arrays<[string | null]>(
          this.#pool,
          `SELECT string_agg(uid || ' ' || modseq || ' ' || flags || ' ' || keywords, E'\n' ORDER BY uid) FROM entries WHERE mailbox_id = $1`,
          [id],
        ))[0]?.[0] ?? '',
      since: async (id, modseq, uidNext) => {
        // One statement: one snapshot (the count check needs the head and the rows to agree), one
        // round trip. Tag 0: added; 1: changed; 2: expunged; 3: the mailbox row.
        const rows = await this.#arrays<[number, number, number, number, string, number]>(
          this.#pool,
          `(SELECT 0, uid, modseq, flags, keywords, 0 FROM entries WHERE mailbox_id = $1 AND uid >= $3 ORDER BY uid)
           UNION ALL (SELECT 1, uid, modseq, flags, keywords, 0 FROM entries WHERE mailbox_id = $1 AND modseq > $2 AND uid < $3 ORDER BY uid)
           UNION ALL (SELECT 2, uid, modseq, 0, '', 0 FROM expunged WHERE mailbox_id = $1 AND modseq > $2 AND uid < $3 ORDER BY uid)
           UNION ALL SELECT 3, account_id, uid_validity, uid_next, highest_modseq::text, messages FROM mailboxes WHERE id = $1`,
          [id, modseq, uidNext],
        );
        const delta: { head: MailboxHead | null; added: ViewRow[]; changed: ViewRow[]; expunged: number[] } = { head: null, added: [], changed: [], expunged: [] };
        for (const r of rows) {
          if (r[0] === 0) delta.added.push([r[1], r[2], r[3], r[4]]);
          else if (r[0] === 1) delta.changed.push([r[1], r[2], r[3], r[4]]);
          else if (r[0] === 2) delta.expunged.push(r[1]);
          else delta.head = toHead([r[1], r[2], r[3], Number(r[4]), r[5]]);
        }
        // UNION ALL keeps each branch's rows together, but not necessarily in order: sort.
        delta.added.sort((a, b) => a[0] - b[0]);
        delta.changed.sort((a, b) => a[0] - b[0]);
        delta.expunged.sort((a, b) => a - b);
        return delta;
      },
      loadSnapshot: async (id) => (await this.#arrays<[Buffer]>(this.#pool, 'SELECT data FROM view_snapshots WHERE mailbox_id = $1', [id]))[0]?.[0] ?? null,
      // Outside any account lock (derived data, not part of the account's state): a newer one
      // (another node's) is kept, and nothing is written for a mailbox gone or renumbered.
      saveSnapshot: async (id, snap) => {
        await this.#pool.query(
          `INSERT INTO view_snapshots (mailbox_id, modseq, stored_at, data) SELECT id, $2, $5, $3 FROM mailboxes WHERE id = $1 AND uid_validity = $4
             ON CONFLICT (mailbox_id) DO UPDATE SET modseq = EXCLUDED.modseq, stored_at = EXCLUDED.stored_at, data = EXCLUDED.data
             WHERE view_snapshots.modseq <= EXCLUDED.modseq`,
          [id, snap.modseq, Buffer.from(snap.data.buffer, snap.data.byteOffset, snap.data.length), snap.uidValidity, Date.now()],
        );
      },
      warmList: async (minMessages) =>
        (
          await this.#arrays<[string, number]>(
            this.#pool,
            warmListSql('$1'),
            [Number.isFinite(minMessages) ? minMessages : Number.MAX_SAFE_INTEGER],
          )
        ).map(([id, messages]) => ({ mailboxId: asMailboxId(Number(id)), messages: Number(messages) })),
    };
  }

  async listSortKeys(mailboxId: MailboxId): Promise<EntrySortKeys[]> {
    return this.#read(async () =>
      (
        await this.#arrays<SortKeyRow>(
          this.#pool,
          `SELECT ${SORT_KEY_COLS} FROM entries e JOIN blobs b ON b.hash = e.blob_hash JOIN sort_keys k ON k.id = b.id WHERE e.mailbox_id = $1 ORDER BY e.uid`,
          [mailboxId],
        )
      ).map(toSortKeys),
    );
  }

  async rankSortKey(mailboxId: MailboxId, key: SortKeyName): Promise<SortRanks> {
    // One string for the mailbox, as with SQLite (sort-columns.ts): the UIDs of each key value,
    // groups in key order.
    const expr = SORT_KEY_EXPR[key];
    return this.#read(async () => {
      const r = await this.#pool.query<{ t: string | null }>(
        `SELECT string_agg(g, ';' ORDER BY v) AS t FROM (
           SELECT ${expr} AS v, string_agg(e.uid::text, ',') AS g FROM entries e JOIN blobs b ON b.hash = e.blob_hash JOIN sort_keys k ON k.id = b.id
            WHERE e.mailbox_id = $1 GROUP BY 1) s`,
        [mailboxId],
      );
      return parseRankGroups(r.rows[0]?.t ?? null);
    });
  }

  async listThreadKeys(mailboxId: MailboxId): Promise<ThreadKeyColumns> {
    return this.#read(async () => {
      const r = await this.#pool.query<{ t: string | null }>(
        `SELECT string_agg(e.uid || ' ' || coalesce(k.sent_date, e.internal_date) || ' ' || k.thread_text, ';') AS t
           FROM entries e JOIN blobs b ON b.hash = e.blob_hash JOIN sort_keys k ON k.id = b.id WHERE e.mailbox_id = $1`,
        [mailboxId],
      );
      return parseThreadRows(r.rows[0]?.t ?? null);
    });
  }

  async getEntries(mailboxId: MailboxId, uids: readonly Uid[]): Promise<MessageEntry[]> {
    return this.#read(async () => (await this.#selectRows(this.#pool, mailboxId, uids)).map(toEntry));
  }

  async getEntryFacts(mailboxId: MailboxId, uids: readonly Uid[], keep: boolean): Promise<EntryFacts[]> {
    return this.#factsCache.lookup(mailboxId, uids, keep, async (missing) => (await this.getEntries(mailboxId, missing)).map(entryFacts));
  }


  async findEntries(mailboxId: MailboxId, column: 'pid' | 'blobHash', values: readonly string[]): Promise<MessageEntry[]> {
    if (values.length === 0) return [];
    const col = column === 'pid' ? 'pid' : 'blob_hash';
    return this.#read(async () =>
      (
        await this.#arrays<EntryRow>(
          this.#pool,
          `SELECT ${ENTRY_COLS} FROM entries WHERE mailbox_id = $1 AND ${col} = ANY($2::text[]) ORDER BY uid`,
          [mailboxId, values],
        )
      ).map(toEntry),
    );
  }

  async highestUid(mailboxId: MailboxId): Promise<number> {
    return this.#read(async () => {
      const rows = await this.#arrays<[string | number | null]>(this.#pool, 'SELECT max(uid) FROM entries WHERE mailbox_id = $1', [mailboxId]);
      return Number(rows[0]?.[0] ?? 0);
    });
  }

  async changesSince(mailboxId: MailboxId, since: ModSeq, knownUidNext: Uid): Promise<MailboxChanges> {
    if (this.#quiet.isQuiet(mailboxId, since, knownUidNext)) return { highestModSeq: since, added: [], changed: [], expunged: [] };
    const mark = this.#quiet.mark();
    return this.#read(async () => {
      // One statement: one snapshot, one round trip (a session in IDLE runs this at each change).
      // Only what a view tracks (uid, modseq, flags), not the wide rows: a session catching up
      // after another one's STORE 1:* reads 100,000 of them.
      // Tag 0: added; 1: changed; 2: expunged (UIDs the caller never knew, >= its UIDNEXT, are
      // not reported); 3: the mailbox's HIGHESTMODSEQ.
      const rows = await this.#arrays<[tag: number, uid: number, modseq: number, flags: number, keywords: string]>(
        this.#pool,
        `(SELECT 0, uid, modseq, flags, keywords FROM entries WHERE mailbox_id = $1 AND uid >= $3 ORDER BY uid)
         UNION ALL (SELECT 1, uid, modseq, flags, keywords FROM entries WHERE mailbox_id = $1 AND modseq > $2 AND uid < $3 ORDER BY uid)
         UNION ALL (SELECT 2, uid, modseq, 0, '' FROM expunged WHERE mailbox_id = $1 AND modseq > $2 AND uid < $3 ORDER BY uid)
         UNION ALL SELECT 3, 0, highest_modseq, 0, '' FROM mailboxes WHERE id = $1`,
        [mailboxId, since, knownUidNext],
      );
      const out: MailboxChanges = { highestModSeq: asModSeq(0), added: [], changed: [], expunged: [] };
      const list = sharedFlagLists();
      let found = false;
      for (const r of rows) {
        if (r[0] === 0 || r[0] === 1) (r[0] === 0 ? out.added : out.changed).push({ uid: asUid(r[1]), modseq: asModSeq(r[2]), flags: list(r[3], r[4]) });
        else if (r[0] === 2) out.expunged.push(asUid(r[1]));
        else {
          found = true;
          out.highestModSeq = asModSeq(r[2]);
        }
      }
      if (!found) throw new StoreError('not-found', `Cannot find mailbox ${mailboxId}`);
      // UNION ALL keeps each branch's rows together, but not necessarily in order: sort.
      out.added.sort((a, b) => a.uid - b.uid);
      out.changed.sort((a, b) => a.uid - b.uid);
      out.expunged.sort((a, b) => a - b);
      if (out.highestModSeq === since && out.added.length === 0 && out.changed.length === 0 && out.expunged.length === 0) {
        this.#quiet.found(mailboxId, since, knownUidNext, mark, this.#notify.listening);
      }
      return out;
    });
  }

  async getParsed(blobHash: string): Promise<ParsedMessage> {
    const cached = this.#parsedCache.get(blobHash);
    if (cached !== undefined) return cached;
    const removals = this.#removals;
    return this.#read(async () => {
      const row = await this.#row<{ parsed: string; body: string }>(
        this.#pool,
        'SELECT t.parsed, t.body FROM blobs b JOIN blob_text t ON t.id = b.id WHERE b.hash = $1',
        [blobHash],
      );
      if (row === undefined) throw new StoreError('not-found', `Cannot find parse record of ${blobHash}`);
      // Set, not spread: a spread that adds a property takes V8's slow path.
      const parsed = JSON.parse(row.parsed) as ParsedMessage;
      parsed.text = row.body;
      if (this.#removals === removals) this.#parsedCache.set(blobHash, parsed, parsedWeight(row.parsed.length, row.body.length));
      return parsed;
    });
  }

  #range(size: number, start?: number, end?: number): [number, number] {
    const s = Math.min(Math.max(0, start ?? 0), size);
    const e = Math.min(Math.max(s, end ?? size), size);
    return [s, e];
  }

  async #readRange(blob: { id: number; size: number; external: boolean }, hash: string, s: number, e: number): Promise<Buffer> {
    if (e === s) return Buffer.alloc(0);
    if (blob.external) {
      if (this.#external === null) throw new StoreError('io', `Cannot read message ${hash}: no external blob store is configured`);
      return this.#external.read(hash, s, e);
    }
    const firstChunk = Math.floor(s / BLOB_CHUNK);
    const lastChunk = Math.floor((e - 1) / BLOB_CHUNK);
    const rows = await this.#arrays<[number, Buffer]>(
      this.#pool,
      'SELECT n, data FROM blob_chunks WHERE blob_id = $1 AND n BETWEEN $2 AND $3 ORDER BY n',
      [blob.id, firstChunk, lastChunk],
    );
    if (rows.length !== lastChunk - firstChunk + 1) throw new StoreError('not-found', `Cannot read message ${hash}: no such blob`);
    const whole = rows.length === 1 ? rows[0]![1] : Buffer.concat(rows.map((r) => r[1]));
    const base = firstChunk * BLOB_CHUNK;
    return whole.subarray(s - base, e - base);
  }

  async readBlob(blobHash: string, start?: number, end?: number): Promise<Buffer> {
    const cached = this.#blobCache.get(blobHash, start, end);
    if (cached !== undefined) return cached;
    // Read from the start where the prefix can be kept (read-cache.ts); longer reads are not kept.
    const fromStart = readFromStart(start, end);
    const removals = this.#removals;
    return this.#read(async () => {
      const blob = await this.#blobRow(blobHash);
      const [s, e] = this.#range(blob.size, start, end);
      if (!fromStart || e > BLOB_CACHE_MAX_READ) return this.#readRange(blob, blobHash, s, e);
      const head = await this.#readRange(blob, blobHash, 0, e);
      if (this.#removals === removals) this.#blobCache.put(blobHash, blob.size, head);
      return head.subarray(s, e);
    });
  }

  async *streamBlob(blobHash: string, start?: number, end?: number): AsyncIterable<Buffer> {
    const blob = await this.#read(() => this.#blobRow(blobHash));
    const [s, e] = this.#range(blob.size, start, end);
    // One chunk row (or external range) at a time: memory stays bounded for large messages.
    for (let pos = s; pos < e; ) {
      const stop = Math.min(e, (Math.floor(pos / BLOB_CHUNK) + 1) * BLOB_CHUNK);
      const data = await this.#read(() => this.#readRange(blob, blobHash, pos, stop));
      for (let off = 0; off < data.length; off += STREAM_CHUNK) yield data.subarray(off, off + STREAM_CHUNK);
      pos = stop;
    }
  }

  async searchText(mailboxId: MailboxId, query: TextQuery): Promise<Set<Uid>> {
    const needle = query.value;
    const lower = needle.toLowerCase();
    const base = 'FROM entries e JOIN blobs b ON b.hash = e.blob_hash JOIN blob_text t ON t.id = b.id WHERE e.mailbox_id = $1';
    // The trigram index on doc narrows to rows containing the lowercased needle somewhere; the
    // field is then checked exactly as the SQLite backend does (RFC 9051 §6.4.4 substring).
    const docFilter = ' AND t.doc LIKE $2';
    return this.#read(async () => {
      if (query.field === 'header') {
        const name = (query.header ?? '').toLowerCase();
        if (name.length === 0) throw new StoreError('invalid', 'Cannot search a header without its name');
        if (UNINDEXED_HEADER_FIELDS.has(name)) return this.#searchRawHeaders(mailboxId, name, needle);
        const rows =
          // A needle with white space may span a folded line (RFC 5322 §2.2.3), which the
          // stored text still has: no narrowing then.
          needle.length === 0 || /[\s\u0000]/.test(needle)
            ? await this.#arrays<[number, string]>(this.#pool, `SELECT e.uid, t.headers ${base}`, [mailboxId])
            : await this.#arrays<[number, string]>(this.#pool, `SELECT e.uid, t.headers ${base}${docFilter}`, [mailboxId, containsPattern(lower)]);
        return new Set(rows.filter((r) => headerContains(r[1], name, needle)).map((r) => asUid(r[0])));
      }
      if (needle.length === 0) {
        const rows = await this.#arrays<[number]>(this.#pool, 'SELECT uid FROM entries WHERE mailbox_id = $1', [mailboxId]);
        return new Set(rows.map((r) => asUid(r[0])));
      }
      // PostgreSQL text holds no NUL (stripped at ingest), so a needle with one matches nothing.
      if (needle.includes('\u0000')) return new Set<Uid>();
      const cols = query.field === 'text' ? ALL_SEARCH_COLUMNS : [SEARCH_COLUMN_OF[query.field]];
      const rows = await this.#arrays<string[]>(
        this.#pool,
        `SELECT e.uid::text, ${cols.map((col) => `t.${col}`).join(', ')} ${base}${docFilter}`,
        [mailboxId, containsPattern(lower)],
      );
      return new Set(rows.filter((r) => r.slice(1).some((v) => v.toLowerCase().includes(lower))).map((r) => asUid(Number(r[0]))));
    });
  }

  /** HEADER search on a field kept out of the index: reads each message's header bytes. */
  async #searchRawHeaders(mailboxId: MailboxId, name: string, needle: string): Promise<Set<Uid>> {
    const rows = await this.#arrays<[number, string, number]>(
      this.#pool,
      'SELECT e.uid, e.blob_hash, b.header_end FROM entries e JOIN blobs b ON b.hash = e.blob_hash WHERE e.mailbox_id = $1',
      [mailboxId],
    );
    const verdict = new Map<string, boolean>();
    const out = new Set<Uid>();
    for (const [uid, hash, headerEnd] of rows) {
      let ok = verdict.get(hash);
      if (ok === undefined) {
        try {
          ok = headerContains((await this.readBlob(hash, 0, headerEnd)).toString('utf8'), name, needle);
        } catch (err) {
          // Expunged meanwhile: not a match.
          if (!(err instanceof StoreError && err.code === 'not-found')) throw err;
          ok = false;
        }
        verdict.set(hash, ok);
      }
      if (ok) out.add(asUid(uid));
    }
    return out;
  }

  // ---------------------------------------------------------------------------------------------
  // Messages: writes.

  async append(mailboxId: MailboxId, input: AppendInput): Promise<AppendResult> {
    const [result] = await this.appendMany(mailboxId, [input]);
    if (result === undefined) throw new StoreError('io', 'Cannot append: no result');
    return result;
  }

  async appendMany(mailboxId: MailboxId, inputs: readonly AppendInput[]): Promise<AppendResult[]> {
    if (inputs.length === 0) return [];
    const flagSets = inputs.map((i) => parseFlags(i.flags ?? []));
    const blobs: IngestBlob[] = [];
    for (const input of inputs) blobs.push(await this.#prepareBlob(input.raw, input.parsed));
    const removals = this.#removals;
    // The account locked with the BEGIN (one round trip); #ingest's update of the mailbox row,
    // which finds it by id and account, says whether the mailbox is there.
    const opening = `SELECT * FROM accounts WHERE id = (SELECT account_id FROM mailboxes WHERE id = ${sqlInt(mailboxId)}) FOR UPDATE`;
    const results = await this.#tx(async (c, ctx, opened) => {
      const [account] = rowObjects<AccountRow>(opened[0]);
      if (account === undefined) throw new StoreError('not-found', `Cannot find mailbox ${mailboxId}`);
      const bytes = inputs.reduce((n, i) => n + i.raw.length, 0);
      if (this.#overQuota(account, bytes, inputs.length)) throw new StoreError('over-quota', 'Cannot append: the account is over its quota');
      const now = Date.now();
      return this.#ingest(
        c,
        ctx,
        account,
        mailboxId,
        blobs.map((blob, i) => ({ blob, flags: flagSets[i] ?? { mask: 0, keywords: [] }, internalDate: inputs[i]?.internalDate ?? now })),
      );
    }, opening);
    this.#keepNew(blobs, removals);
    return results;
  }

  /**
   * The bytes of messages this node just stored, kept as if read (their start, see read-cache.ts):
   * new mail is what clients fetch next, and every node would otherwise read it back from the
   * database once, two round trips. Not when a removal ran meanwhile (see #removals).
   */
  #keepNew(blobs: readonly IngestBlob[], removals: number): void {
    if (this.#removals !== removals) return;
    for (const b of blobs) this.#blobCache.put(b.hash, b.raw.length, b.raw.subarray(0, Math.min(b.raw.length, BLOB_CACHE_MAX_READ)));
  }

  async deliver(raw: Buffer, parsed: ParsedMessage, targets: readonly DeliveryTarget[]): Promise<DeliveryOutcome[]> {
    if (targets.length === 0) return [];
    // One entry per distinct account: the first target naming it decides mailbox and flags.
    const distinct: DeliveryTarget[] = [];
    const seen = new Set<number>();
    for (const t of targets) {
      if (seen.has(t.accountId)) continue;
      seen.add(t.accountId);
      distinct.push(t);
    }
    const flagSets = distinct.map((t) => parseFlags(t.flags ?? []));
    const blob = await this.#prepareBlob(raw, parsed);
    const removals = this.#removals;
    // Every target account locked up front, in id order (concurrent deliveries cannot deadlock),
    // with the BEGIN: one round trip.
    const opening = `SELECT * FROM accounts WHERE id = ANY(${sqlInts([...seen].sort((a, b) => a - b), 'int8')}) ORDER BY id FOR UPDATE`;
    const outcomes = await this.#tx(async (c, ctx, opened) => {
      const accounts = rowObjects<AccountRow>(opened[0]);
      const byId = new Map(accounts.map((a) => [a.id, a]));
      const now = Date.now();
      const out: DeliveryOutcome[] = [];
      for (const [i, t] of distinct.entries()) {
        const account = byId.get(t.accountId);
        if (account === undefined) {
          out.push({ accountId: t.accountId, ok: false, reason: 'no-account' });
          continue;
        }
        if (this.#overQuota(account, raw.length, 1)) {
          out.push({ accountId: t.accountId, ok: false, reason: 'over-quota' });
          continue;
        }
        let mailbox: MailboxRow | undefined;
        if (t.mailbox !== undefined) {
          let name: string | null = null;
          try {
            name = normalizeMailboxName(t.mailbox);
          } catch {
            name = null; // an invalid name falls back to INBOX like a missing one
          }
          if (name !== null) mailbox = await this.#mailboxByName(c, account.id, name);
        }
        mailbox ??= await this.#mailboxByName(c, account.id, 'INBOX');
        if (mailbox === undefined) throw new StoreError('io', `Account ${account.id} has no INBOX`);
        const [r] = await this.#ingest(c, ctx, account, mailbox.id, [{ blob, flags: flagSets[i] ?? { mask: 0, keywords: [] }, internalDate: now }]);
        if (r === undefined) throw new StoreError('io', 'Cannot deliver: no result');
        out.push({ accountId: t.accountId, ok: true, mailboxId: asMailboxId(mailbox.id), uid: r.uid });
      }
      return out;
    }, opening);
    if (outcomes.some((o) => o.ok)) this.#keepNew([blob], removals);
    return outcomes;
  }

  async setFlags(...args: Parameters<MailStore['setFlags']>): Promise<SetFlagsResult> {
    // The view cache takes the new flags from the result: no re-read of every row a STORE 1:* changed.
    return this.#views.stored(args[0], await this.#setFlags(...args));
  }

  async #setFlags(
    mailboxId: MailboxId,
    uids: readonly Uid[],
    mode: FlagMode,
    flags: readonly string[],
    unchangedSince?: ModSeq,
  ): Promise<SetFlagsResult> {
    const change = parseFlags(flags);
    const list = this.#uidArray(uids);
    const since = unchangedSince ?? Number.MAX_SAFE_INTEGER;
    const small = list.length <= STATE_ROWS_MAX;
    const id = sqlInt(mailboxId);
    // The account locked by the UPDATE that takes the STORE's modseq (one new modseq for the
    // whole STORE, RFC 7162 §3.1: a different one per command), then the mailbox's row and the
    // set's rows (a small set) read after it: with the BEGIN, one round trip. A STORE that
    // changes nothing rolls back, so the modseq is not used up.
    const opening = [
      `UPDATE accounts SET modseq = modseq + 1 WHERE id = (SELECT account_id FROM mailboxes WHERE id = ${id}) RETURNING id, modseq`,
      small
        ? `SELECT m.highest_modseq, e.uid, e.modseq, e.flags, e.keywords FROM mailboxes m
             LEFT JOIN entries e ON e.mailbox_id = m.id AND e.uid = ANY(${sqlInts(list, 'int8')}) WHERE m.id = ${id}`
        : `SELECT highest_modseq FROM mailboxes WHERE id = ${id}`,
    ].join('; ');
    return this.#tx(async (c, ctx, opened) => {
      const acc = opened[0]?.rows[0] as [number, number] | undefined;
      const read = (opened[1]?.rows ?? []) as Array<[number, number | null, number | null, number | null, string | null]>;
      const head = read[0];
      if (acc === undefined || head === undefined) throw new StoreError('not-found', `Cannot find mailbox ${mailboxId}`);
      const [accountId, modseq] = acc;
      const priorModSeq = asModSeq(head[0]);
      const m = asModSeq(modseq);
      const bump = (plan: FlagPlan): void => {
        ctx.tail.push(
          `UPDATE mailboxes SET unseen = unseen + ${sqlInt(plan.unseen)}, deleted = deleted + ${sqlInt(plan.deleted)},
             highest_modseq = GREATEST(highest_modseq, ${sqlInt(modseq)}) WHERE id = ${id}`,
        );
        ctx.events.push({ accountId: asAccountId(accountId), mailboxId: asMailboxId(mailboxId), modseq: m, kind: 'flags' });
      };
      if (small) {
        // The set's rows, grouped here: groups, absent and refused UIDs need no query, and the
        // rows that change are known before the write, which needs no RETURNING and goes with
        // the COMMIT. A STORE is two round trips (one that changes nothing: two, the second a
        // ROLLBACK) instead of 9.3 on average (BEGIN, lock, mailbox row, GROUP BY, absent UIDs,
        // refused UIDs, modseq, UPDATE, counters, COMMIT).
        const rows: StateRow[] = [];
        for (const r of read) if (r[1] !== null) rows.push([r[1], r[2]!, r[3]!, r[4]!]);
        const plan = planFlagChange(flagGroupsOfRows(rows, since), mode, change);
        const gone = plan.total === list.length ? [] : absentUids(uids, rows.map((r) => r[0]));
        // RFC 7162 §3.1.3: entries changed after UNCHANGEDSINCE are refused (MODIFIED); they stay
        // as they are (no other writer of the account runs until COMMIT: the rows read are current).
        const modified = plan.refused === 0 ? [] : rows.filter((r) => r[1] > since).map((r) => asUid(r[0])).sort((a, b) => a - b);
        if (plan.transitions.length === 0) {
          ctx.discard = true;
          return { updated: [], modified, priorModSeq, gone };
        }
        // Each changed row names its new state by index into the list of new states.
        const lists = plan.transitions.map((t) => flagList(t.to.mask, t.to.keywords));
        const changed = changedByTransition(rows, since, plan.transitions);
        const ts = plan.transitions;
        ctx.tail.push(
          `UPDATE entries e SET flags = (${sqlInts(ts.map((t) => t.to.mask), 'int4')})[v.i], keywords = (${sqlTexts(c, ts.map((t) => t.to.keywords))})[v.i],
             modseq = ${sqlInt(modseq)}
             FROM unnest(${sqlInts(changed.map((r) => r[0]), 'int8')}, ${sqlInts(changed.map((r) => r[1] + 1), 'int4')}) AS v(uid, i)
            WHERE e.mailbox_id = ${id} AND e.uid = v.uid`,
        );
        bump(plan);
        return { updated: changed.map(([uid, i]) => ({ uid: asUid(uid), modseq: m, flags: lists[i]! })), modified, priorModSeq, gone };
      }
      const inSet = 'mailbox_id = $1 AND uid = ANY($2::int8[])';
      // A large set (STORE 1:* on a large mailbox): one pass over it, its distinct flag states,
      // each with its count (and whether UNCHANGEDSINCE refuses it); the writes below touch only
      // the states that change.
      const groups = (
        await this.#arrays<[number, string, boolean, number]>(c, `SELECT flags, keywords, modseq > $3, count(*)::int4 FROM entries WHERE ${inSet} GROUP BY 1, 2, 3`, [
          mailboxId,
          list,
          since,
        ])
      ).map((r): FlagGroup => ({ mask: r[0], keywords: r[1], refused: r[2], count: r[3] }));
      const plan = planFlagChange(groups, mode, change);
      const gone =
        plan.total === list.length ? [] : absentUids(uids, (await this.#arrays<[number]>(c, `SELECT uid FROM entries WHERE ${inSet}`, [mailboxId, list])).map((r) => r[0]));
      // RFC 7162 §3.1.3: entries changed after UNCHANGEDSINCE are refused (MODIFIED).
      const modified =
        plan.refused === 0
          ? []
          : (await this.#arrays<[number]>(c, `SELECT uid FROM entries WHERE ${inSet} AND modseq > $3 ORDER BY uid`, [mailboxId, list, since])).map((r) => asUid(r[0]));
      if (plan.transitions.length === 0) {
        ctx.discard = true;
        return { updated: [], modified, priorModSeq, gone };
      }
      // RFC 7162 §3.1.3: the refused rows stay as they are; `at` is the parameter's number.
      const guard = (at: number): string => (plan.refused === 0 ? '' : ` AND modseq <= $${at}`);
      const guardArgs = plan.refused === 0 ? [] : [since];
      let updated: FlagUpdate[];
      if (change.keywords.length === 0 && mode !== 'set') {
        // System flags only (STORE 1:* +FLAGS (\Seen)): one UPDATE as bit operations, over the
        // rows whose bits change.
        const next = '((flags | $3::int4) & ~$4::int4)';
        const rows = await this.#arrays<[number, number, string]>(
          c,
          `UPDATE entries SET flags = ${next}, modseq = $5 WHERE ${inSet} AND ${next} <> flags${guard(6)} RETURNING uid, flags, keywords`,
          [mailboxId, list, mode === 'add' ? change.mask : 0, mode === 'remove' ? change.mask : 0, modseq, ...guardArgs],
        );
        rows.sort((a, b) => a[0] - b[0]);
        const flagsOf = sharedFlagLists();
        updated = rows.map((r) => ({ uid: asUid(r[0]), modseq: m, flags: flagsOf(r[1], r[2]) }));
      } else if (plan.transitions.length <= MAX_FLAG_TRANSITIONS) {
        // Keywords or a replacement: every flag state that changes in ONE UPDATE, the rows
        // joined to the list of states (from -> to) on their state: one round trip and one walk
        // of the set, not one of each per state (3.9 states per STORE in imaptest's mix). Each
        // row returns its state's index, so the rows of a state share one flag list.
        const ts = plan.transitions;
        const rows = await this.#arrays<[number, number]>(
          c,
          `UPDATE entries e SET flags = t.tf, keywords = t.tk, modseq = $3
             FROM unnest($4::int4[], $5::text[], $6::int4[], $7::text[]) WITH ORDINALITY AS t(ff, fk, tf, tk, i)
            WHERE e.mailbox_id = $1 AND e.uid = ANY($2::int8[]) AND e.flags = t.ff AND e.keywords = t.fk${guard(8)} RETURNING e.uid, t.i::int4`,
          [
            mailboxId,
            list,
            modseq,
            ts.map((t) => t.from.mask),
            ts.map((t) => t.from.keywords),
            ts.map((t) => t.to.mask),
            ts.map((t) => t.to.keywords),
            ...guardArgs,
          ],
        );
        const lists = ts.map((t) => flagList(t.to.mask, t.to.keywords));
        rows.sort((a, b) => a[0] - b[0]);
        updated = rows.map(([uid, i]) => ({ uid: asUid(uid), modseq: m, flags: lists[i - 1]! }));
      } else {
        // Many distinct states (keywords on every message): the new state of each row, in one
        // UPDATE from arrays.
        const to = new Map(plan.transitions.map((t) => [`${t.from.mask} ${t.from.keywords}`, t.to]));
        const rows = await this.#arrays<[number, number, string]>(c, `SELECT uid, flags, keywords FROM entries WHERE ${inSet}${guard(3)} ORDER BY uid`, [mailboxId, list, ...guardArgs]);
        const changed: Array<[number, { mask: number; keywords: string }]> = [];
        for (const r of rows) {
          const next = to.get(`${r[1]} ${r[2]}`);
          if (next !== undefined) changed.push([r[0], next]);
        }
        await c.query(
          `UPDATE entries e SET flags = v.f, keywords = v.k, modseq = $2
             FROM unnest($3::int8[], $4::int4[], $5::text[]) AS v(uid, f, k) WHERE e.mailbox_id = $1 AND e.uid = v.uid`,
          [mailboxId, modseq, changed.map((r) => r[0]), changed.map((r) => r[1].mask), changed.map((r) => r[1].keywords)],
        );
        const flagsOf = sharedFlagLists();
        updated = changed.map(([uid, next]) => ({ uid: asUid(uid), modseq: m, flags: flagsOf(next.mask, next.keywords) }));
      }
      bump(plan);
      return { updated, modified, priorModSeq, gone };
    }, opening);
  }

  async copy(from: MailboxId, uids: readonly Uid[], to: MailboxId, options: CopyOptions = {}): Promise<CopyResult> {
    return this.#tx(async (c, ctx) => {
      const r = await this.#transfer(c, ctx, from, uids, to, false, options.whole === true);
      return { uidValidity: r.uidValidity, pairs: r.pairs, gone: r.gone };
    });
  }

  async move(from: MailboxId, uids: readonly Uid[], to: MailboxId, options: CopyOptions = {}): Promise<CopyResult & { expunged: Uid[] }> {
    return this.#tx((c, ctx) => this.#transfer(c, ctx, from, uids, to, true, options.whole === true));
  }

  async expunge(mailboxId: MailboxId, uids?: readonly Uid[], onlyDeleted = false): Promise<Uid[]> {
    const id = sqlInt(mailboxId);
    const deleted = `(flags & ${FLAG_DELETED}) <> 0`;
    const which = uids === undefined ? deleted : `uid = ANY(${sqlInts(this.#uidArray(uids), 'int8')})${onlyDeleted ? ` AND ${deleted}` : ''}`;
    // The account locked by the UPDATE that takes the modseq, then the rows read: with the BEGIN,
    // one round trip; an EXPUNGE that finds nothing rolls back, so the modseq is not used up.
    const opening = `UPDATE accounts SET modseq = modseq + 1 WHERE id = (SELECT account_id FROM mailboxes WHERE id = ${id}) RETURNING id, modseq;
      SELECT ${ENTRY_COLS} FROM entries WHERE mailbox_id = ${id} AND ${which} ORDER BY uid`;
    return this.#tx(async (c, ctx, opened) => {
      const acc = opened[0]?.rows[0] as [number, number] | undefined;
      if (acc === undefined) throw new StoreError('not-found', `Cannot find mailbox ${mailboxId}`);
      const rows = (opened[1]?.rows ?? []) as EntryRow[];
      if (rows.length === 0) {
        ctx.discard = true;
        return [];
      }
      await this.#removeEntries(c, ctx, { id: mailboxId, account_id: acc[0] }, rows, acc[1], false);
      return rows.map((r) => asUid(r[1]));
    }, opening);
  }

  async hideFromPop3(mailboxId: MailboxId, uids: readonly Uid[]): Promise<void> {
    // Invisible to IMAP, so no modseq and no event: IMAP clients must not see a change. The
    // account's lock goes with the BEGIN and the UPDATE with the COMMIT: two round trips where
    // BEGIN, lock, mailbox row, UPDATE and COMMIT were five.
    const id = sqlInt(mailboxId);
    const opening = `SELECT id FROM accounts WHERE id = (SELECT account_id FROM mailboxes WHERE id = ${id}) FOR UPDATE`;
    return this.#tx(async (_c, ctx, opened) => {
      if (opened[0]?.rows[0] === undefined) throw new StoreError('not-found', `Cannot find mailbox ${mailboxId}`);
      if (uids.length === 0) {
        ctx.discard = true;
        return;
      }
      ctx.tail.push(`UPDATE entries SET pop3_hidden = true WHERE mailbox_id = ${id} AND uid = ANY(${sqlInts(this.#uidArray(uids), 'int8')})`);
    }, opening);
  }

  // ---------------------------------------------------------------------------------------------
  // Restore and import.

  async restoreMailbox(accountId: AccountId, input: MailboxRestore): Promise<Mailbox> {
    const m = checkMailboxRestore(input);
    return this.#tx(async (c, ctx) => {
      const account = await this.#requireAccount(c, accountId, true);
      const existing = await this.#mailboxByName(c, account.id, m.name);
      // UIDNEXT only grows when a message is added: 1 means none ever was, so no client can
      // hold UIDs of the old identity.
      if (existing !== undefined && existing.uid_next !== 1) {
        throw new StoreError('conflict', `Cannot restore mailbox ${m.name}: it exists and has held messages`);
      }
      const clash = await this.#row<{ id: number; uid_next: number }>(c, 'SELECT id, uid_next FROM mailboxes WHERE uid_validity = $1 FOR UPDATE', [
        m.uidValidity,
      ]);
      const renumber = clash !== undefined && clash.id !== existing?.id;
      // A mailbox that never held a message may give its UIDVALIDITY up (no client holds UIDs
      // under it): UIDVALIDITYs are creation times, so an import's often meets a new mailbox's.
      if (renumber && clash.uid_next !== 1) {
        throw new StoreError('conflict', `Cannot restore mailbox ${m.name}: UIDVALIDITY ${m.uidValidity} is taken by another mailbox`);
      }
      const acc = await this.#row<{ modseq: number }>(
        c,
        'UPDATE accounts SET modseq = GREATEST(modseq + 1, $2::int8) WHERE id = $1 RETURNING modseq',
        [account.id, m.highestModSeq ?? 0],
      );
      const modseq = acc?.modseq ?? account.modseq + 1;
      // RFC 9051 §2.3.1.1: a UIDVALIDITY is never given again, so the counter passes this one.
      await c.query("UPDATE counters SET value = GREATEST(value, $1::int8) WHERE name = 'uidvalidity'", [m.uidValidity]);
      if (renumber) await c.query('UPDATE mailboxes SET uid_validity = $1 WHERE id = $2', [await this.#nextUidValidity(c), clash.id]);
      const highest = m.highestModSeq ?? modseq;
      let row: MailboxRow | undefined;
      if (existing === undefined) {
        await this.#createMissingParents(c, account.id, m.name, modseq);
        row = await this.#row<MailboxRow>(
          c,
          `INSERT INTO mailboxes (account_id, name, uid_validity, uid_next, highest_modseq, special_use)
           VALUES ($1, $2, $3, $4, $5, $6) RETURNING *`,
          [account.id, m.name, m.uidValidity, m.uidNext, highest, m.specialUse ?? null],
        );
      } else {
        row = await this.#row<MailboxRow>(
          c,
          `UPDATE mailboxes SET uid_validity = $1, uid_next = $2, highest_modseq = GREATEST(highest_modseq, $3), special_use = $4
            WHERE id = $5 RETURNING *`,
          [m.uidValidity, m.uidNext, highest, m.specialUse === undefined ? existing.special_use : m.specialUse, existing.id],
        );
      }
      if (row === undefined) throw new StoreError('io', `Cannot restore mailbox ${m.name}`);
      if (m.subscribed === true) {
        await c.query('INSERT INTO subscriptions (account_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING', [account.id, m.name]);
      } else if (m.subscribed === false) {
        await c.query('DELETE FROM subscriptions WHERE account_id = $1 AND name = $2', [account.id, m.name]);
      }
      const sub = await c.query('SELECT 1 FROM subscriptions WHERE account_id = $1 AND name = $2', [account.id, m.name]);
      this.#mailboxEvent(ctx, account.id, modseq);
      return toMailbox(row, (sub.rowCount ?? 0) > 0);
    });
  }

  async restoreAccount(input: AccountRestore): Promise<Account> {
    const a = checkAccountRestore(input);
    return this.#tx(async (c, ctx) => {
      if ((await c.query('SELECT 1 FROM domains WHERE name = $1 FOR SHARE', [a.domain])).rowCount === 0) {
        throw new StoreError('not-found', `Cannot restore account ${a.address}: domain ${a.domain} is not local`);
      }
      const row = await this.#row<AccountRow>(
        c,
        `INSERT INTO accounts (address, domain, password_hash, scram, quota_bytes, quota_messages, pop3_delete_policy, disabled, created_at, modseq)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (address) DO NOTHING RETURNING *`,
        [a.address, a.domain, input.passwordHash, input.scram, input.quotaBytes, input.quotaMessages, input.pop3DeletePolicy,
          input.disabled, input.createdAt, input.modseq],
      );
      if (row === undefined) throw new StoreError('exists', `Cannot restore account ${a.address}: it exists`);
      await c.query('INSERT INTO subscriptions (account_id, name) SELECT $1, n FROM unnest($2::text[]) AS n ON CONFLICT DO NOTHING', [
        row.id,
        a.subscriptions,
      ]);
      this.#mailboxEvent(ctx, row.id, row.modseq);
      return toAccount(row);
    });
  }

  async restoreExpunged(mailboxId: MailboxId, items: ReadonlyArray<{ uid: Uid; modseq: ModSeq }>): Promise<void> {
    checkExpungedRestore(items);
    if (items.length === 0) return;
    await this.#tx(async (c) => {
      const { mailbox, account } = await this.#lockMailbox(c, mailboxId);
      const uids = items.map((i) => i.uid);
      const bad = await this.#row<{ uid: number }>(
        c,
        `SELECT u AS uid FROM unnest($1::int8[]) AS u WHERE u >= $2
            OR EXISTS (SELECT 1 FROM entries WHERE mailbox_id = $3 AND uid = u) LIMIT 1`,
        [uids, mailbox.uid_next, mailboxId],
      );
      if (bad !== undefined) {
        throw new StoreError('invalid', `Cannot restore expunged uid ${bad.uid}: it is present or not below UIDNEXT ${mailbox.uid_next}`);
      }
      await c.query(
        'INSERT INTO expunged (mailbox_id, modseq, uid) SELECT $1, m, u FROM unnest($2::int8[], $3::int8[]) AS v(u, m) ON CONFLICT DO NOTHING',
        [mailboxId, uids, items.map((i) => i.modseq)],
      );
      const top = items.reduce((m, i) => Math.max(m, i.modseq), 0);
      await c.query('UPDATE accounts SET modseq = GREATEST(modseq, $1) WHERE id = $2', [top, account.id]);
      await c.query('UPDATE mailboxes SET highest_modseq = GREATEST(highest_modseq, $1) WHERE id = $2', [top, mailboxId]);
    });
  }

  async restoreEntries(mailboxId: MailboxId, entries: readonly EntryRestore[]): Promise<void> {
    if (entries.length === 0) return;
    const now = Date.now();
    const checked = checkEntryRestores(entries, now);
    const blobs: IngestBlob[] = [];
    for (const e of entries) blobs.push(await this.#prepareBlob(e.raw, e.parsed));
    await this.#tx(async (c, ctx) => {
      const { account } = await this.#lockMailbox(c, mailboxId);
      const held = await this.#row<{ u: number }>(
        c,
        `SELECT GREATEST(coalesce((SELECT max(uid) FROM entries WHERE mailbox_id = $1), 0),
                         coalesce((SELECT max(uid) FROM expunged WHERE mailbox_id = $1), 0)) AS u`,
        [mailboxId],
      );
      const first = checked[0]?.input.uid ?? 0;
      if (first <= (held?.u ?? 0)) {
        throw new StoreError('invalid', `Cannot restore uid ${first}: the mailbox has held UIDs up to ${held?.u ?? 0}`);
      }
      // Kept modseqs first, so that the one new modseq is above every one of them.
      let top = account.modseq;
      for (const x of checked) top = Math.max(top, x.input.modseq ?? 0);
      const needFresh = checked.some((x) => x.input.modseq === undefined);
      const acc = await this.#row<{ modseq: number }>(c, 'UPDATE accounts SET modseq = $2 WHERE id = $1 RETURNING modseq', [
        account.id,
        needFresh ? top + 1 : top,
      ]);
      const fresh = needFresh ? (acc?.modseq ?? top + 1) : 0;
      // Threads named by the source first, so messages threaded here can join them.
      const named = checked.filter((x) => x.input.threadId !== undefined);
      const keys: string[] = [];
      const threads: string[] = [];
      for (const x of named) {
        for (const k of threadKeys(x.input.parsed)) {
          keys.push(k);
          threads.push(x.input.threadId ?? '');
        }
      }
      if (keys.length > 0) {
        await c.query(
          `INSERT INTO thread_keys (account_id, message_id, thread_id) SELECT $1, k, t FROM unnest($2::text[], $3::text[]) AS v(k, t)
           ON CONFLICT DO NOTHING`,
          [account.id, keys, threads],
        );
      }
      const unnamed = checked.filter((x) => x.input.threadId === undefined);
      const found = await this.#threadsFor(c, account.id, unnamed.map((x) => x.input.parsed));
      const threadOf = new Map(unnamed.map((x, i) => [x, found[i] ?? this.#ids.threadId()]));
      let pidCounter = account.pid_counter;
      const rows: EntryRow[] = checked.map((x, i) => {
        const e = x.input;
        const emailId = e.emailId ?? this.#ids.emailId();
        const pid = e.pid ?? (e.emailId === undefined ? emailId : copyPid(emailId, ++pidCounter));
        const hash = blobs[i]?.hash ?? '';
        return [mailboxId, e.uid, e.modseq ?? fresh, x.flags.mask, encodeKeywords(x.flags.keywords), e.internalDate, x.saveDate,
          e.raw.length, hash, emailId, e.threadId ?? threadOf.get(x) ?? '', pid, e.pop3Hidden === true];
      });
      const pids = rows.map((r) => r[11]);
      if (new Set(pids).size !== pids.length) throw new StoreError('conflict', 'Cannot restore: two entries have the same UIDL');
      const taken = await this.#row<{ pid: string }>(
        c,
        'SELECT e.pid FROM entries e JOIN mailboxes m ON m.id = e.mailbox_id WHERE m.account_id = $1 AND e.pid = ANY($2::text[]) LIMIT 1',
        [account.id, pids],
      );
      if (taken !== undefined) throw new StoreError('conflict', `Cannot restore: UIDL ${taken.pid} is used by another entry of the account`);
      pidCounter = Math.max(pidCounter, pidCounterFloor(pids));
      const { counts: d, highest, perBlob } = restoreTotals(rows.map((r) => ({ modseq: r[2], mask: r[3], size: r[7] })), blobs);
      // Blob rows first: an entry never points at a missing blob, even inside the transaction.
      await this.#addBlobRefs(c, [...perBlob.values()]);
      await this.#insertEntries(c, rows);
      const last = rows[rows.length - 1]?.[1] ?? 0;
      await c.query(
        `UPDATE mailboxes SET messages = messages + $2, unseen = unseen + $3, deleted = deleted + $4, size = size + $5,
           highest_modseq = GREATEST(highest_modseq, $6), uid_next = GREATEST(uid_next, $7) WHERE id = $1`,
        [mailboxId, d.messages, d.unseen, d.deleted, d.size, highest, last + 1],
      );
      // An operator's restore: usage is counted, the quota is not enforced.
      await c.query(
        'UPDATE accounts SET pid_counter = $2, used_bytes = used_bytes + $3, used_messages = used_messages + $4 WHERE id = $1',
        [account.id, pidCounter, d.size, d.messages],
      );
      ctx.events.push({ accountId: asAccountId(account.id), mailboxId: asMailboxId(mailboxId), modseq: asModSeq(highest), kind: 'append' });
    });
  }

  async quotaUsage(accountId: AccountId): Promise<QuotaUsage> {
    return this.#read(async () => {
      const a = await this.#requireAccount(this.#pool, accountId);
      return { bytes: a.used_bytes, messages: a.used_messages };
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Locks.

  /** The connection holding this node's advisory locks; if it dies, PostgreSQL frees them all. */
  async #lockConnection(): Promise<pg.Client> {
    if (this.#lockClient !== null) return this.#lockClient;
    this.#lockClientOpening ??= (async () => {
      const c = await this.#connect();
      c.on('error', (err) => {
        // Every lock of this node is gone with the session: forget them so they can be retaken.
        if (this.#lockClient === c) {
          this.#lockClient = null;
          this.#locks.clear();
        }
        this.#onConnectionError(err);
      });
      this.#lockClient = c;
      return c;
    })().finally(() => {
      this.#lockClientOpening = null;
    });
    return this.#lockClientOpening;
  }

  sharedCounters(): SharedCounters {
    return this.#counters;
  }

  async tryLock(name: string): Promise<(() => Promise<void>) | null> {
    if (this.#closed) throw new StoreError('io', 'Cannot lock: the store is closed');
    // Session advisory locks are re-entrant for their session: holders on this node are
    // refused here, holders on other nodes by PostgreSQL.
    if (this.#locks.has(name)) return null;
    const token = Symbol(name);
    this.#locks.set(name, token);
    let c: pg.Client;
    let got: boolean;
    try {
      c = await this.#lockConnection();
      const r = await c.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok', [this.#lockSpace, `lock:${name}`]);
      got = r.rows[0]?.ok === true;
    } catch (err) {
      if (this.#locks.get(name) === token) this.#locks.delete(name);
      throw new StoreError('io', `Cannot take lock ${name}: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (!got) {
      if (this.#locks.get(name) === token) this.#locks.delete(name);
      return null;
    }
    return async () => {
      if (this.#locks.get(name) !== token) return;
      this.#locks.delete(name);
      if (this.#lockClient !== c) return; // that session is gone, and the lock with it
      await c.query('SELECT pg_advisory_unlock($1, hashtext($2))', [this.#lockSpace, `lock:${name}`]).catch((err: unknown) => this.#onConnectionError(err));
    };
  }

  // ---------------------------------------------------------------------------------------------
  // Maintenance.

  async checkConsistency(): Promise<string[]> {
    await this.#whenIdle();
    return this.#read(async () => {
      const problems: string[] = [];
      const check = async (sql: string, describe: (r: Record<string, unknown>) => string): Promise<void> => {
        const rows = await this.#rows<Record<string, unknown>>(this.#pool, `${sql} LIMIT ${MAX_PROBLEMS_PER_CHECK}`);
        for (const r of rows) problems.push(describe(r));
      };
      await check(
        'SELECT e.mailbox_id, e.uid FROM entries e LEFT JOIN mailboxes m ON m.id = e.mailbox_id WHERE m.id IS NULL',
        (r) => `entry uid ${r.uid} is in missing mailbox ${r.mailbox_id}`,
      );
      await check(
        `SELECT d.account_id, d.mailbox_id, d.name FROM metadata d LEFT JOIN mailboxes m ON m.id = d.mailbox_id
           WHERE (d.mailbox_id <> 0 AND (m.id IS NULL OR m.account_id <> d.account_id)) OR d.name <> lower(d.name)`,
        (r) => `metadata ${r.name} of account ${r.account_id} is on missing mailbox ${r.mailbox_id} or not lowercased`,
      );
      await check(
        'SELECT m.id, m.account_id FROM mailboxes m LEFT JOIN accounts a ON a.id = m.account_id WHERE a.id IS NULL',
        (r) => `mailbox ${r.id} belongs to missing account ${r.account_id}`,
      );
      await check(
        'SELECT e.mailbox_id, e.uid, m.uid_next FROM entries e JOIN mailboxes m ON m.id = e.mailbox_id WHERE e.uid < 1 OR e.uid >= m.uid_next',
        (r) => `mailbox ${r.mailbox_id}: uid ${r.uid} is not below UIDNEXT ${r.uid_next}`,
      );
      await check(
        `SELECT e.mailbox_id, e.uid, e.modseq, m.highest_modseq, a.modseq AS account_modseq FROM entries e
           JOIN mailboxes m ON m.id = e.mailbox_id JOIN accounts a ON a.id = m.account_id
         WHERE e.modseq > m.highest_modseq OR e.modseq > a.modseq OR e.modseq < 1`,
        (r) => `mailbox ${r.mailbox_id}: uid ${r.uid} has modseq ${r.modseq} above HIGHESTMODSEQ ${r.highest_modseq} or account modseq ${r.account_modseq}`,
      );
      await check(
        'SELECT m.id, m.highest_modseq, a.modseq FROM mailboxes m JOIN accounts a ON a.id = m.account_id WHERE m.highest_modseq > a.modseq',
        (r) => `mailbox ${r.id}: HIGHESTMODSEQ ${r.highest_modseq} is above account modseq ${r.modseq}`,
      );
      await check(
        `SELECT m.id, m.messages, m.unseen, m.deleted, m.size, count(e.uid) AS n,
                count(e.uid) FILTER (WHERE (e.flags & ${FLAG_SEEN}) = 0) AS u,
                count(e.uid) FILTER (WHERE (e.flags & ${FLAG_DELETED}) <> 0) AS d, coalesce(sum(e.size), 0) AS s
           FROM mailboxes m LEFT JOIN entries e ON e.mailbox_id = m.id GROUP BY m.id
         HAVING m.messages <> count(e.uid) OR m.unseen <> count(e.uid) FILTER (WHERE (e.flags & ${FLAG_SEEN}) = 0)
             OR m.deleted <> count(e.uid) FILTER (WHERE (e.flags & ${FLAG_DELETED}) <> 0) OR m.size <> coalesce(sum(e.size), 0)`,
        (r) => `mailbox ${r.id}: counters messages=${r.messages} unseen=${r.unseen} deleted=${r.deleted} size=${r.size}, entries say ${r.n}/${r.u}/${r.d}/${r.s}`,
      );
      await check(
        `SELECT a.id, a.used_bytes, a.used_messages, coalesce(sum(e.size), 0) AS s, count(e.uid) AS n
           FROM accounts a LEFT JOIN mailboxes m ON m.account_id = a.id LEFT JOIN entries e ON e.mailbox_id = m.id
         GROUP BY a.id HAVING a.used_bytes <> coalesce(sum(e.size), 0) OR a.used_messages <> count(e.uid)`,
        (r) => `account ${r.id}: usage ${r.used_bytes} bytes/${r.used_messages} messages, entries say ${r.s}/${r.n}`,
      );
      await check(
        `SELECT b.hash, b.refs, (SELECT count(*) FROM entries e WHERE e.blob_hash = b.hash) AS n FROM blobs b
          WHERE b.refs <> (SELECT count(*) FROM entries e WHERE e.blob_hash = b.hash)`,
        (r) => `blob ${r.hash}: refcount ${r.refs} but ${r.n} entries reference it`,
      );
      await check(
        'SELECT DISTINCT e.blob_hash FROM entries e LEFT JOIN blobs b ON b.hash = e.blob_hash WHERE b.id IS NULL',
        (r) => `blob ${r.blob_hash} is referenced but missing`,
      );
      await check(
        'SELECT e.mailbox_id, e.uid, e.size, b.size AS bsize FROM entries e JOIN blobs b ON b.hash = e.blob_hash WHERE e.size <> b.size',
        (r) => `mailbox ${r.mailbox_id}: uid ${r.uid} has size ${r.size} but its blob has ${r.bsize}`,
      );
      await check(
        `SELECT b.hash, b.size, coalesce(sum(length(c.data)), 0) AS len, count(c.n) AS chunks, coalesce(max(c.n), -1) AS last
           FROM blobs b LEFT JOIN blob_chunks c ON c.blob_id = b.id GROUP BY b.id
         HAVING (NOT b.external AND (coalesce(sum(length(c.data)), 0) <> b.size OR count(c.n) <> coalesce(max(c.n), -1) + 1))
             OR (b.external AND count(c.n) > 0)`,
        (r) => `blob ${r.hash}: ${r.len} bytes in ${r.chunks} chunks stored in the database, ${r.size} expected`,
      );
      await check('SELECT b.hash FROM blobs b WHERE NOT EXISTS (SELECT 1 FROM blob_text t WHERE t.id = b.id)', (r) => `blob ${r.hash} has no search text row`);
      await check(
        `SELECT m.account_id, e.pid, count(*) AS n FROM entries e JOIN mailboxes m ON m.id = e.mailbox_id
         GROUP BY m.account_id, e.pid HAVING count(*) > 1`,
        (r) => `account ${r.account_id}: pid ${r.pid} is used by ${r.n} entries`,
      );
      await check(
        'SELECT x.mailbox_id, x.uid FROM expunged x JOIN entries e ON e.mailbox_id = x.mailbox_id AND e.uid = x.uid',
        (r) => `mailbox ${r.mailbox_id}: uid ${r.uid} is both expunged and present`,
      );
      const ext = await this.#rows<{ hash: string; size: number }>(this.#pool, 'SELECT hash, size FROM blobs WHERE external');
      for (const f of ext) {
        if (this.#external === null) {
          problems.push(`blob ${f.hash}: stored externally but no external blob store is configured`);
          continue;
        }
        const size = await this.#external.size(f.hash);
        if (size === null) problems.push(`blob ${f.hash}: missing from ${this.#external.description}`);
        else if (size !== f.size) problems.push(`blob ${f.hash}: ${size} bytes in ${this.#external.description}, ${f.size} expected`);
      }
      return problems;
    });
  }

  async collectGarbage(): Promise<number> {
    let removed = 0;
    // Rows without references (none are left by the write paths; repairs and old crashes).
    removed += await this.#tx(async (c, ctx) => {
      const dead = await this.#rows<{ hash: string; external: boolean }>(c, 'DELETE FROM blobs WHERE refs <= 0 RETURNING hash, external');
      for (const d of dead) {
        ctx.removed.push(d.hash);
        if (d.external) ctx.removedExternal.push(d.hash);
      }
      return dead.length;
    });
    if (this.#external !== null) {
      const now = Date.now();
      for (const b of await this.#external.list()) {
        // Young blobs may belong to an ingest on another node that has not committed yet.
        if (now - b.modified < GC_GRACE_MS) continue;
        const known = await this.#pool.query('SELECT 1 FROM blobs WHERE hash = $1', [b.hash]);
        if ((known.rowCount ?? 0) > 0) continue;
        if (await this.#removeExternal(b.hash)) removed += 1;
      }
      removed += await this.#external.removeStaleTemps(GC_GRACE_MS);
    }
    return removed;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    await this.#whenIdle();
    this.#closed = true;
    this.#locks.clear();
    // Its snapshot writes use the pool, not #tx: they are let through after #closed.
    await this.#views.close();
    const lock = this.#lockClient;
    this.#lockClient = null;
    if (lock !== null) await lock.end().catch(() => undefined);
    await this.#notify.close();
    await this.#pool.end();
  }
}

/** PostgreSQL text cannot hold NUL; the search text loses it (a NUL never matches a needle). */
function strip0(s: string): string {
  return s.includes('\u0000') ? s.replace(/\u0000/g, '') : s;
}

const SCHEMA_RE = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Opens (creating or upgrading the schema if needed) a PostgreSQL store. Every connection runs
 * with synchronous_commit = on and search_path = "schema", public (pg_trgm lives in public).
 */
export async function openPgStore(options: PgStoreOptions): Promise<MailStore> {
  const schema = options.schema ?? 'public';
  if (!SCHEMA_RE.test(schema)) throw new StoreError('invalid', `Cannot open store: invalid schema name ${JSON.stringify(schema)}`);
  const connectionOptions = `-c search_path=${schema},public -c synchronous_commit=on`;
  const base: pg.ClientConfig = { connectionString: options.url, options: connectionOptions, types: TYPES };
  const onConnectionError =
    options.onConnectionError ?? ((err: unknown) => process.emitWarning(`PostgreSQL store: ${err instanceof Error ? err.message : String(err)}`));
  const connect = async (): Promise<pg.Client> => {
    const c = new pg.Client(base);
    await c.connect();
    return c;
  };

  let external: BlobStore | null = null;
  if (typeof options.blobs === 'string' && options.blobs !== 'database') {
    await mkdir(join(options.blobs, 'tmp'), { recursive: true });
    external = createFileBlobStore(options.blobs);
  } else if (typeof options.blobs === 'object') {
    external = options.blobs;
  }

  let setup: pg.Client;
  try {
    setup = await connect();
  } catch (err) {
    throw new StoreError('io', `Cannot open store: cannot connect to PostgreSQL: ${err instanceof Error ? err.message : String(err)}`);
  }
  let lockSpace: number;
  try {
    if (schema !== 'public') await setup.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`).catch(async (err: unknown) => {
      // Two nodes creating it at once: one wins, the other finds it.
      if ((err as { code?: string }).code !== '23505') throw err;
    });
    await migratePg(setup);
    await backfill(setup);
    lockSpace = (await setup.query<{ k: number }>('SELECT hashtext($1) AS k', [`facteur:${schema}`])).rows[0]?.k ?? 0;
  } finally {
    await setup.end().catch(() => undefined);
  }

  const pool = new pg.Pool({ ...base, max: options.poolSize ?? 10 });
  pool.on('error', onConnectionError);
  // Channel names are identifiers, at most 63 bytes: long schema names go by their hash.
  const channel = `facteur_changes_${schema.length <= 46 ? schema : createHash('sha256').update(schema).digest('hex').slice(0, 40)}`;
  let notify: NotifyFeed;
  try {
    notify = await createNotifyFeed({
      connect,
      channel,
      onListenerError:
        options.onListenerError ?? ((err) => process.emitWarning(`change feed listener failed: ${err instanceof Error ? err.stack : String(err)}`)),
      onConnectionError,
    });
  } catch (err) {
    await pool.end();
    throw new StoreError('io', `Cannot open store: cannot listen for changes: ${err instanceof Error ? err.message : String(err)}`);
  }
  return new PgStore({ pool, notify, channel, external, lockSpace, connect, onConnectionError,
    caches: {
      parsedBytes: options.parsedCacheBytes ?? DEFAULT_PARSED_CACHE_BYTES,
      parsedSize: options.parsedCacheSize ?? 65_536,
      blobBytes: options.blobCacheBytes ?? DEFAULT_BLOB_CACHE_BYTES,
      factsBytes: options.factsCacheBytes ?? DEFAULT_FACTS_CACHE_BYTES,
    },
    notifyAfterCommit: options.notifyAfterCommit ?? false,
    viewCache: { maxMessages: options.viewCacheMessages, eagerMinMessages: options.viewCacheEagerMin, snapshotMinMessages: options.viewSnapshotMin, warmMessages: options.viewWarmMessages },
  });
}

/**
 * Splits a store URL into the connection URL and the store's own parameters:
 * postgres://user@host:5432/db?schema=mail&blobs=/srv/facteur/blobs
 */
export function parsePgStoreUrl(location: string): Pick<PgStoreOptions, 'url' | 'schema' | 'blobs' | 'poolSize'> {
  let u: URL;
  try {
    u = new URL(location);
  } catch {
    throw new StoreError('invalid', 'Cannot open store: malformed postgres:// URL');
  }
  const schema = u.searchParams.get('schema') ?? undefined;
  const blobs = u.searchParams.get('blobs') ?? undefined;
  const pool = u.searchParams.get('pool_size');
  // Each node's connections (docs/scaling.md sizes them against the server's max_connections).
  if (pool !== null && !(/^\d{1,4}$/.test(pool) && Number(pool) >= 1 && Number(pool) <= 1000)) {
    throw new StoreError('invalid', 'Cannot open store: pool_size must be a whole number from 1 to 1000');
  }
  u.searchParams.delete('schema');
  u.searchParams.delete('blobs');
  u.searchParams.delete('pool_size');
  return {
    url: u.toString(),
    ...(schema === undefined ? {} : { schema }),
    ...(blobs === undefined ? {} : { blobs }),
    ...(pool === null ? {} : { poolSize: Number(pool) }),
  };
}
