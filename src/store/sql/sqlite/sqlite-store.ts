/**
 * MailStore on SQLite (better-sqlite3), the embedded default.
 *
 * Design and invariants:
 * - One connection, WAL mode, synchronous=NORMAL: a COMMIT only write()s the WAL frames into the
 *   page cache, on the event-loop thread (no fsync there). Durability comes from an asynchronous
 *   fdatasync of the -wal file on libuv's thread pool (below), and nothing is acknowledged before
 *   it: a promise that resolved survives kill -9 and power loss (DESIGN.md invariant 1).
 * - Group commit. Every write is a job in one queue; the queue is flushed on the next turn of the
 *   event loop (setImmediate) as ONE transaction, each job inside its own SAVEPOINT so a refused
 *   job rolls back alone (a refused job is rejected at once: it changed nothing). While a WAL sync
 *   is in flight the queue is not flushed: the sync's completion flushes it, so the jobs that
 *   arrived meanwhile make one transaction. They could not be acknowledged before that sync's
 *   end anyway (it started before their COMMIT), and one COMMIT of n jobs writes far fewer WAL
 *   pages than n commits (page 1, the account and mailbox rows, index leaves and the FTS
 *   segment are shared), which is CPU on the event loop and bytes for the next fdatasync.
 * - Commit then sync. After a batch's COMMIT its callers are NOT resolved: the batch waits for an
 *   fdatasync of the WAL that STARTED after that COMMIT returned (fsync flushes the inode's dirty
 *   pages whoever wrote them). One sync is in flight at a time; a batch that commits meanwhile
 *   (one scheduled before the sync started, or the rest of a queue longer than maxBatch) waits
 *   for the next one. When a sync completes, its batches settle in commit order: change events
 *   published, removed blob files unlinked, callers resolved (events of batch N before N+1).
 *   - The WAL file exists from open on: SQLite creates the -wal file when it opens a WAL database
 *     (migrate reads it), and open checks it is there, opens it read-only (fsync needs no write
 *     access) and fsyncs the data directory so its directory entry is durable too.
 *   - SQLite truncates (journal_size_limit) or restarts the WAL after a checkpoint in place: same
 *     inode, so the descriptor stays valid. The checkpoint itself fsyncs the WAL before copying
 *     and the database after (synchronous=NORMAL keeps those). It runs on a worker thread with
 *     its own connection (checkpointer.ts), at most once per interval after writes, never in a
 *     COMMIT on the loop.
 *   - The descriptor is closed at store close, after the last sync settled, before the database
 *     (whose close checkpoints and removes the -wal file).
 *   - A failed fdatasync rejects every batch waiting for it and every batch committed since
 *     (never acknowledged), and marks the store failed: after a failed fsync the page cache
 *     state is unknown (the kernel may have dropped the dirty pages), so every later write
 *     rejects with StoreError 'io' until the process restarts and SQLite recovers from disk.
 *   - Reads are not delayed: a read may see a committed write a few milliseconds before it is
 *     durable (its writer is not acknowledged yet). Only a power loss inside that window can undo
 *     what a reader saw; kill -9 cannot (the page cache survives the process).
 * - Blob files are removed only after the sync that made their row's deletion durable, so the
 *   database never references a file that is gone.
 * - Blobs are content-addressed by sha256 with a reference count (DESIGN.md invariant 6): one
 *   row per content however many entries point at it. Up to inlineMaxBytes (256 KiB) the bytes
 *   are in the row (covered by the same fsync as the metadata); above, they are a file
 *   blobs/ab/cdef... written, fsync'd, renamed and its directory fsync'd BEFORE the job that
 *   references it is queued (blob-files.ts), so an entry never points at missing bytes.
 * - A file blob is removed only when its row is gone and no ingest holds it (`pending`), checked
 *   and unlinked synchronously after the commit, so an ingest that decided "the file is there"
 *   cannot lose it to a concurrent expunge.
 * - The parse record is stored once per blob (JSON without its text; the text lives in the FTS
 *   table, which indexes it anyway).
 * - Every write takes a new modseq from its account's counter. Flags, appends and copies are
 *   recorded by the entry's own modseq; expunges by rows of `expunged`, kept forever (QRESYNC).
 * - Mailbox counters (messages, unseen, deleted, size) and account usage are maintained by every
 *   write and verified by checkConsistency.
 * - One process owns a data directory (tryLock is an in-process map).
 */
import { createHash } from 'node:crypto';
import { mkdir, open, stat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { existsSync, fdatasync, fstatSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Checkpointer, type CheckpointResult, type CheckpointStats } from './checkpointer.js';
import { MARK_GONE, MARK_INDEXED, SEARCH_DB, SEARCH_DB_SCHEMA, SearchIndexer, type SearchIndexerStats } from './search-indexer.js';
import Database from 'better-sqlite3';
import type { AccountId, MailboxId, ModSeq, Uid } from '../../../lib/brand.js';
import { asAccountId, asMailboxId, asModSeq, asUid, asUidValidity } from '../../../lib/brand.js';
import { sortKeysOf, threadText } from '../../../mail/sort-keys.js';
import type { ParsedMessage } from '../../../mail/types.js';
import { createLocalFeed } from '../../feed.js';
import type { LocalFeed } from '../../feed.js';
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
import type { FlagGroup, FlagSet, FlagTransition } from '../../flags.js';
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
import { planMetadata } from '../../metadata.js';
import { MAX_ALIAS_DEPTH, resolveAddress, type ResolvedAddress } from '../../recipients.js';
import { SORT_KEY_COLS, threadTextOf, toAccount, toSortKeys, warmListSql, type SortKeyRow, type ThreadTextSource } from '../rows.js';
import { parseRankGroups, parseThreadRows, rankNumbers } from '../sort-columns.js';
import { BLOB_CACHE_MAX_READ, BlobPrefixCache, DEFAULT_BLOB_CACHE_BYTES, DEFAULT_FACTS_CACHE_BYTES, DEFAULT_PARSED_CACHE_BYTES, EntryFactsCache, ParsedCache, parsedWeight, readFromStart } from '../../read-cache.js';
import { ViewCache } from '../../view-cache.js';
import type { MailboxHead, ViewCacheStats, ViewDelta, ViewRow, ViewSource } from '../../view-cache.js';
import type { AccountRowOf } from '../rows.js';
import { checkAccountRestore, checkEntryRestores, checkExpungedRestore, checkMailboxRestore, pidCounterFloor, restoreTotals, threadKeys } from '../../restore.js';
import { toAppPassword, type AppPasswordRow } from '../app-password-row.js';
import { UNINDEXED_HEADER_FIELDS, headerContains, searchColumns, trigramQuery } from '../../search-text.js';
import { DEFAULT_MAILBOXES, SPECIAL_USES, StoreError } from '../../types.js';
import type {
  Account,
  AccountRestore,
  AccountPatch,
  Alias,
  AppPassword,
  AppPasswordUse,
  AppendInput,
  AppendResult,
  ChangeEvent,
  ChangeFeed,
  CopyOptions,
  CopyResult,
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
  FlagUpdate,
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
import {
  TMP_DIR,
  blobPath,
  createBlobFileWriter,
  filesHeld,
  listBlobFiles,
  removeBlobFile,
  removeStaleHolds,
  removeTempFile,
  syncDir,
} from './blob-files.js';
import type { BlobFileWriter } from './blob-files.js';
import { LookupCache } from './lookup-cache.js';
import { migrate } from './schema.js';

export interface SqliteStoreOptions {
  /** Data directory: facteur.db and blobs/ live in it. Created if missing. */
  dir: string;
  blobs?: {
    /** Larger blobs are stored as files. Default 256 KiB. */
    inlineMaxBytes?: number;
  };
  /** Parse records kept in memory, at most. Default 65,536 (the byte bound decides first). */
  parsedCacheSize?: number;
  /** Bound of the parse-record cache, estimated bytes (read-cache.ts). Default 32 MiB. */
  parsedCacheBytes?: number;
  /** Bound of the cache of message bytes read from their start (headers, small messages),
   * bytes (read-cache.ts). Default 16 MiB; 0 turns it off. */
  blobCacheBytes?: number;
  /** Bound of the cache of entry facts that FETCH reads (read-cache.ts), estimated bytes.
   * Default 8 MiB (about 30,000 entries); 0 turns it off. */
  factsCacheBytes?: number;
  /** SQLite's page cache of the store's connection, KiB. Default 32 MiB (a server's hot pages);
   * a batch command that mostly writes (import, restore) gets by with less. */
  pageCacheKiB?: number;
  /** Bound of the view cache, in messages (view-cache.ts). */
  viewCacheMessages?: number;
  /** Mailboxes of at least this many messages are caught up in the background after each change. */
  viewCacheEagerMin?: number;
  /** Views of at least this many messages are kept as snapshots in view_snapshots (default
   * 10,000; Infinity: never), so the first SELECT after a start reads one blob, not every row. */
  viewSnapshotMin?: number;
  /** At open, the views of the most recently snapshotted mailboxes (then of large ones without a
   * snapshot) are loaded in the background, up to this many messages (default 0: none;
   * `facteur serve` asks for VIEW_WARM_MESSAGES). */
  viewWarmMessages?: number;
  /** Most jobs committed in one transaction. Default 1000. */
  maxBatch?: number;
  /** New blobs are added to the full-text index in batches (see #scheduleIndex): once this many
   * wait (default 64), or this long after the first (default 200 ms). */
  searchIndexBatch?: number;
  searchIndexDelayMs?: number;
  /** Text (characters) the index's worker adds per run, at most (default 4 Mi): bounds a run's
   * transaction on search.db; the blob that passes it is the run's last. */
  searchIndexRunText?: number;
  /** Where a throwing feed listener's error goes (default: a process warning). */
  onListenerError?: (err: unknown) => void;
  /** Makes the WAL durable (default: fdatasync of its descriptor, on libuv's thread pool). Tests inject one
   * they can hold or fail. */
  fdatasync?: (wal: FileHandle) => Promise<void>;
  /** Least time between two WAL checkpoints, which run on a worker thread (checkpointer.ts) after
   * writes. Default 1000 ms. */
  checkpointIntervalMs?: number;
  /** No checkpoint while the WAL file is smaller (default 4 MiB): a store that writes little
   * never starts the worker; its WAL is checkpointed at close. */
  checkpointMinWalBytes?: number;
  /** Past this much WAL content (default 64 MiB, the journal_size_limit) a checkpoint that left
   * frames behind is followed by a catch-up checkpoint with writes held, so that SQLite can
   * restart the WAL (see #catchUp). */
  walRestartBytes?: number;
  /** A blob whose last reference goes keeps its rows (bytes, text, index entries) until a sweep
   * this long after (default 5 s; see #sweep); an APPEND of the same bytes meanwhile finds them. */
  sweepDelayMs?: number;
}

export const DB_FILE = 'facteur.db';
/** SQLite's write-ahead log beside the database (WAL mode). */
const WAL_FILE = `${DB_FILE}-wal`;
export const BLOB_DIR = 'blobs';
const DEFAULT_INLINE_MAX = 256 * 1024;
/** Unreferenced blobs removed by one sweep job (the next follows at once while more are left). */
const SWEEP_BATCH = 500;
const STREAM_CHUNK = 64 * 1024;
/** Blobs added to the full-text index per run of its worker, at most. */
const SEARCH_INDEX_MAX = 1000;
/** Text added to the full-text index per run, at most (characters; see searchIndexRunText). */
const SEARCH_INDEX_TEXT = 4 * 1024 * 1024;
/** Beside search.db: a SEARCH found it damaged, the next open builds it again (prepareSearchDb). */
const SEARCH_REBUILD = 'search.db.rebuild';
/** The name the search reader gives search.db (ATTACH; see #searchReader). */
const SEARCH_SCHEMA = 'fts';
/** Above this many runs, a UID set is passed as a JSON list instead of BETWEEN ranges. */
const MAX_UID_RANGES = 16;
/** A STORE's set of at most this many UIDs is read row by row before the write (see
 * #flagStates), a larger one as a GROUP BY of its states. Measured on sparse sets of a 20,000
 * message mailbox in eight flag states: rows cost 1.2 ms of CPU per STORE of 100 UIDs against
 * 3.8 for the GROUP BY and its read-back, 8.9 against 10.3 at 1,000 UIDs, 19 against 21 at
 * 3,000; the bound keeps one JS row per UID for the larger sets out. */
const STATE_ROWS_MAX = 1000;
/** Whether the mailbox `m` of a query is subscribed (subscriptions are by name, RFC 9051 §6.3.7). */
const SUBSCRIBED = 'EXISTS (SELECT 1 FROM subscriptions s WHERE s.account_id = m.account_id AND s.name = m.name)';
/** A UID set is read as one range while the range holds at most this many UIDs per UID of the
 * set (see denseSpan). */
const DENSE_SPAN = 4;
/** The WAL file's size kept after a checkpoint (journal_size_limit), and the WAL content past
 * which writes are held for a restart (#catchUp). */
const WAL_LIMIT_BYTES = 64 * 1024 * 1024;
/** One WAL frame: a 4 KiB page (SQLite's default page size, which the store keeps) and its
 * 24-byte header. */
const WAL_FRAME_BYTES = 4096 + 24;
/** Longest hold of the writes for a catch-up checkpoint (#catchUp), should the worker not answer. */
const HOLD_MAX_MS = 250;
/** Problems reported per check, so a badly broken store still gives a readable report. */
const MAX_PROBLEMS_PER_CHECK = 50;
/** How long a check of PRAGMA data_version answers for the mailbox heads (see #head): a change
 * by another process is seen by the syncs that start this long after its commit. */
const HEADS_CHECK_MS = 1;
/** Mailbox heads #heads holds at most. */
const MAX_HEADS = 10_000;

/** A mailbox row with whether its name is subscribed (the subscription in the same statement:
 * each statement outside a transaction takes the WAL read lock anew). */
type MailboxListRow = MailboxRow & { subscribed: number };

/** An account's mailbox rows kept between writes (#mailboxNamed): those read by name, and all
 * of them in LIST's order when the account was listed whole (else null). */
interface MailboxListing {
  all: readonly MailboxListRow[] | null;
  byName: Map<string, MailboxListRow>;
}

/** A mailbox's (highest_modseq, uid_next), and the last changesSince answer given from it (see
 * #head). */
interface HeadEntry {
  head: readonly [number, number];
  last: { since: number; uidNext: number; changes: MailboxChanges } | null;
}

type AccountRow = AccountRowOf<number>;

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
  pop3Hidden: number,
];

function toEntry(r: EntryRow): MessageEntry {
  // Properties set on the facts object: a spread that adds properties (`{ ...facts, modseq }`)
  // takes V8's slow path, microseconds an object.
  const e = toFacts(r) as MessageEntry;
  e.modseq = asModSeq(r[2]);
  e.flags = flagList(r[3], r[4]);
  e.pop3Hidden = r[12] !== 0;
  return e;
}

function toFacts(r: EntryRow): EntryFacts {
  return {
    mailboxId: asMailboxId(r[0]),
    uid: asUid(r[1]),
    internalDate: r[5],
    saveDate: r[6],
    size: r[7],
    blobHash: r[8],
    emailId: r[9],
    threadId: r[10],
    pid: r[11],
  };
}

/** The sort_index column of each SORT key (schema version 8). */
const SORT_INDEX_COLUMN: Record<SortKeyName, string> = {
  ARRIVAL: 'arrival',
  SIZE: 'size',
  DATE: 'sent',
  SUBJECT: 'subject',
  FROM: 'addr_from',
  TO: 'addr_to',
  CC: 'addr_cc',
  DISPLAYFROM: 'display_from',
  DISPLAYTO: 'display_to',
};

const INSERT_SORT_KEYS = `INSERT OR REPLACE INTO sort_keys
  (id, sent_date, subject, reply, addr_from, addr_to, addr_cc, display_from, display_to, message_id, refs, thread_text)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`;

/** What the SQL function facteur_pair(a, b) collects during one statement. */
interface Pairs {
  a: Float64Array;
  b: Float64Array;
  n: number;
}

function newPairs(): Pairs {
  return { a: new Float64Array(1024), b: new Float64Array(1024), n: 0 };
}

/** The number of a THREAD name in thread_names (schema version 10), given at first use: in the
 * caller's transaction, so a name is never numbered twice. */
type NameNumber = (name: string) => number;

function nameNumbers(db: Database.Database): NameNumber {
  const find = db.prepare('SELECT id FROM thread_names WHERE name = ?').pluck();
  const add = db.prepare('INSERT INTO thread_names (name) VALUES (?)');
  return (name) => (find.get(name) as number | undefined) ?? Number(add.run(name).lastInsertRowid);
}

/** The keys of the blob with this id (schema version 12: sort_keys is keyed by the blob's id). */
function insertSortKeys(stmt: Stmt, number: NameNumber, id: number, parsed: Omit<ParsedMessage, 'text'>): void {
  const k = sortKeysOf(parsed);
  // A line break cannot be part of a message id (RFC 5322 §3.6.4): refs are stored one per line.
  const refs = k.references.filter((id) => !id.includes('\n'));
  const thread = threadText(k, refs, number);
  stmt.run(id, k.sentDate, k.subject, k.reply ? 1 : 0, k.from, k.to, k.cc, k.displayFrom, k.displayTo, k.messageId, refs.join('\n'), thread);
}

/** Writes the sort keys of blobs stored before the sort_keys table existed (schema version 7),
 * a thousand per transaction; none left afterwards, so this costs one query at later opens. */
function backfillSortKeys(db: Database.Database): void {
  const missing = db.prepare(
    `SELECT b.id, c.parsed FROM blobs b JOIN blob_content c ON c.id = b.id
      WHERE NOT EXISTS (SELECT 1 FROM sort_keys k WHERE k.id = b.id) LIMIT 1000`,
  );
  const insert = db.prepare(INSERT_SORT_KEYS);
  const number = nameNumbers(db);
  for (;;) {
    const rows = missing.all() as Array<{ id: number; parsed: string }>;
    if (rows.length === 0) return;
    db.transaction(() => {
      for (const r of rows) insertSortKeys(insert, number, r.id, JSON.parse(r.parsed) as Omit<ParsedMessage, 'text'>);
    })();
  }
}

/** Writes thread_text of sort_keys rows from before schema version 8, or from before the names
 * were numbered (version 10), from their columns (no parse record read), a thousand per
 * transaction; the sort_index triggers carry it to the entries. */
function backfillThreadText(db: Database.Database): void {
  const missing = db.prepare('SELECT id, subject, reply, message_id, refs FROM sort_keys WHERE thread_text IS NULL LIMIT 1000');
  const update = db.prepare('UPDATE sort_keys SET thread_text = ? WHERE id = ?');
  const number = nameNumbers(db);
  for (;;) {
    const rows = missing.all() as ThreadTextSource[];
    if (rows.length === 0) return;
    db.transaction(() => {
      for (const r of rows) update.run(threadTextOf(r, number), r.id);
    })();
  }
}

/** UIDs from group_concat(uid) (decimal, comma-separated), ascending whatever order the scan gave. */
function parseUidList(text: string | null): number[] {
  const out: number[] = [];
  if (text === null) return out;
  let v = 0;
  let ascending = true;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 44;
    if (c !== 44) {
      v = v * 10 + (c - 48);
      continue;
    }
    if (out.length > 0 && v <= out[out.length - 1]!) ascending = false;
    out.push(v);
    v = 0;
  }
  return ascending ? out : out.sort((x, y) => x - y);
}

/** [uid, flags, keywords] rows from group_concat(uid || ' ' || flags || ' ' || keywords, char(10)), in UID order. */
function parseFlagRows(text: string | null): Array<[number, number, string]> {
  const out: Array<[number, number, string]> = [];
  if (text === null) return out;
  let ascending = true;
  for (let p = 0; p < text.length; ) {
    let end = text.indexOf('\n', p);
    if (end < 0) end = text.length;
    const a = text.indexOf(' ', p);
    const b = text.indexOf(' ', a + 1);
    const row: [number, number, string] = [Number(text.slice(p, a)), Number(text.slice(a + 1, b)), text.slice(b + 1, end)];
    if (out.length > 0 && row[0] <= out[out.length - 1]![0]) ascending = false;
    out.push(row);
    p = end + 1;
  }
  return ascending ? out : out.sort((x, y) => x[0] - y[0]);
}

/** [uid, modseq, flags, keywords] rows from group_concat(uid || ' ' || modseq || ' ' || flags ||
 * ' ' || keywords, char(10)), in the order given. */
function parseStateRows(text: string | null): Array<[number, number, number, string]> {
  const out: Array<[number, number, number, string]> = [];
  if (text === null) return out;
  for (let p = 0; p < text.length; ) {
    let end = text.indexOf('\n', p);
    if (end < 0) end = text.length;
    const a = text.indexOf(' ', p);
    const b = text.indexOf(' ', a + 1);
    const c = text.indexOf(' ', b + 1);
    out.push([Number(text.slice(p, a)), Number(text.slice(a + 1, b)), Number(text.slice(b + 1, c)), text.slice(c + 1, end)]);
    p = end + 1;
  }
  return out;
}

/** A row of a STORE's set as #flagStates reads it: [uid, modseq, flags, keywords]. */
type StateRow = [number, number, number, string];

/**
 * The SQL of a STORE's state changes for one UPDATE: `set` assigns each row of a `from` state its
 * `to` state (SQLite evaluates every SET expression on the row as it was before the UPDATE),
 * `from` keeps only the rows of those states. The list is padded to a power of two by
 * repeating its last state (the same WHEN twice changes nothing), so a STORE's statement is one
 * of five texts per set condition, not one per count (the statement cache keeps each).
 */
function transitionCases(transitions: readonly FlagTransition[]): { set: string; setArgs: unknown[]; from: string; fromArgs: unknown[] } {
  if (transitions.length === 1) {
    const t = transitions[0]!;
    return { set: 'flags = ?, keywords = ?', setArgs: [t.to.mask, t.to.keywords], from: 'flags = ? AND keywords = ?', fromArgs: [t.from.mask, t.from.keywords] };
  }
  let n = 2;
  while (n < transitions.length) n *= 2;
  const padded = Array.from({ length: n }, (_, i) => transitions[Math.min(i, transitions.length - 1)]!);
  const when = 'WHEN flags = ? AND keywords = ? THEN ?';
  const whens = Array(n).fill(when).join(' ');
  return {
    set: `flags = CASE ${whens} ELSE flags END, keywords = CASE ${whens} ELSE keywords END`,
    setArgs: [...padded.flatMap((t) => [t.from.mask, t.from.keywords, t.to.mask]), ...padded.flatMap((t) => [t.from.mask, t.from.keywords, t.to.keywords])],
    from: `(${Array(n).fill('(flags = ? AND keywords = ?)').join(' OR ')})`,
    fromArgs: padded.flatMap((t) => [t.from.mask, t.from.keywords]),
  };
}

/** The updates of a STORE whose set was read whole before the write (#flagStates): each row of
 * an unrefused state that changes, in UID order, one shared flag list per new state. */
function updatesFromRows(rows: readonly StateRow[], since: number, transitions: readonly FlagTransition[], modseq: ModSeq): FlagUpdate[] {
  const lists = transitions.map((t) => flagList(t.to.mask, t.to.keywords));
  return changedByTransition(rows, since, transitions).map(([uid, i]) => ({ uid: asUid(uid), modseq, flags: lists[i]! }));
}

/** The range [lo, hi] of a UID set when it holds at most DENSE_SPAN UIDs per UID of the set: then
 * reading every row of the range and keeping the set's costs less than naming the set in SQL
 * (a JSON list past MAX_UID_RANGES runs, parsed by each statement; an OR of ranges below). */
function denseSpan(uids: readonly number[]): { lo: number; hi: number } | null {
  if (uids.length === 0) return null;
  let lo = Number.POSITIVE_INFINITY;
  let hi = 0;
  for (const u of uids) {
    if (u < lo) lo = u;
    if (u > hi) hi = u;
  }
  return hi - lo + 1 <= DENSE_SPAN * uids.length ? { lo, hi } : null;
}

/** Marks the backfills above as complete (the schema version they bring the rows to): later
 * opens read this row instead of looking for rows without keys among every blob (a scan of the
 * whole store, 0.25 s per 100,000 messages at each start). Written only after both finished,
 * so a crash in between runs them again. No row can lack its keys afterwards: every writer at
 * this schema version writes them, and older programs refuse to open a newer schema. */
const BACKFILL_DONE = 'backfill_done';
const BACKFILL_VERSION = 10;

function backfill(db: Database.Database): void {
  const done = db.prepare('SELECT value FROM counters WHERE name = ?').pluck().get(BACKFILL_DONE) as number | undefined;
  if (done !== undefined && done >= BACKFILL_VERSION) return;
  backfillSortKeys(db);
  backfillThreadText(db);
  db.prepare('INSERT OR REPLACE INTO counters (name, value) VALUES (?, ?)').run(BACKFILL_DONE, BACKFILL_VERSION);
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

const POP3_POLICIES: ReadonlySet<string> = new Set<Pop3DeletePolicy>(['expunge', 'trash', 'hide']);

/** Columns of the search table, and the one each TextQuery field searches. */
const SEARCH_COLUMNS = ['subject', 'addr_from', 'addr_to', 'addr_cc', 'addr_bcc', 'headers', 'body'] as const;
const SEARCH_COLUMN_OF = {
  body: 'body',
  subject: 'subject',
  from: 'addr_from',
  to: 'addr_to',
  cc: 'addr_cc',
  bcc: 'addr_bcc',
} as const;

/** A message's bytes ready to be referenced by a job: hashed, and on disk if large. */
interface IngestBlob {
  hash: string;
  raw: Buffer;
  parsed: ParsedMessage;
  /** Whether a file with these bytes is durably in place (written now or already referenced). */
  fileReady: boolean;
}

interface WriteContext {
  events: ChangeEvent[];
  /** Blobs whose row this job deleted (a sweep, see #removeDead). */
  removed: Array<{ hash: string; inFile: boolean }>;
  /** Whether this job left a blob without references (a sweep follows, see #sweep). */
  orphaned: boolean;
  /** The entries this job stored (#ingest) and removed (#removeEntries), in order: the entry
   * facts cache takes the new ones once the batch is committed (see #keepFacts). */
  facts?: Array<{ stored: EntryRow } | { mailboxId: number; removed: readonly number[] }>;
}

/** The #write flag of the jobs that write mailbox contents only (see Job.contentOnly). */
const CONTENT_ONLY = true;

interface Job {
  run: (ctx: WriteContext) => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
  /** Writes mailbox contents only (entries, blobs, counters, usage), never domains, accounts'
   * settings or aliases: the recipient lookups' answers stay valid (see #lookups). */
  contentOnly: boolean;
}

/** A committed batch waiting for a WAL sync that started after its COMMIT. */
interface CommittedBatch {
  /** Publishes its events, removes its dead blob files, resolves its callers. */
  settle: () => void;
  fail: (err: StoreError) => void;
}

type Stmt = Database.Statement<unknown[], unknown>;

/** Where the write path spends its time (ms), for benchmarks: jobs and COMMIT run on the event
 * loop thread, the WAL fdatasync off it. */
export interface SqliteStoreStats {
  batches: number;
  jobs: number;
  run: number;
  commit: number;
  maxCommit: number;
  sync: number;
  /** WAL fdatasyncs completed (sync / syncs is their mean latency). */
  syncs: number;
  /** Writes held for a catch-up checkpoint (see #catchUp), and for how long in all. */
  holds: number;
  held: number;
  /** Mailbox heads changesSince read from the database (the others came from #heads). */
  headReads: number;
  /** Changes changesSince read from the database (the others were the last answer again). */
  deltaReads: number;
  /** Mailbox rows read by getMailbox and listMailboxes (the others were kept, #mailboxNamed). */
  mailboxReads: number;
}

class SqliteStore implements MailStore {
  readonly stats: SqliteStoreStats = { batches: 0, jobs: 0, run: 0, commit: 0, maxCommit: 0, sync: 0, syncs: 0, holds: 0, held: 0, headReads: 0, deltaReads: 0, mailboxReads: 0 };
  readonly feed: ChangeFeed;
  readonly #db: Database.Database;
  readonly #blobRoot: string;
  readonly #inlineMax: number;
  readonly #maxBatch: number;
  readonly #files: BlobFileWriter;
  readonly #local: LocalFeed;
  readonly #parsedCache: ParsedCache;
  readonly #blobCache: BlobPrefixCache;
  readonly #factsCache: EntryFactsCache;
  readonly #views: ViewCache;
  /** The RCPT path's answers (isLocalDomain, #resolve), kept as lookup-cache.ts says. */
  readonly #lookups = new LookupCache<ResolvedAddress<Account>>();
  /** What changesSince read of mailboxes since the last write: see #head. */
  readonly #heads = new Map<number, HeadEntry>();
  /** The mailbox rows read by name or listed since the last write, per account (#mailboxNamed). */
  readonly #mailboxes = new Map<number, MailboxListing>();
  /** PRAGMA data_version when #heads and #mailboxes were last checked against it, and when
   * (performance.now()). */
  #headsVersion = -1;
  #headsCheckedAt = Number.NEGATIVE_INFINITY;
  readonly #stmts = new Map<string, Stmt>();
  readonly #rawStmts = new Map<string, Stmt>();
  /** Blob hashes held by ingests in progress: their files must not be removed. */
  readonly #pending = new Map<string, number>();
  readonly #locks = new Map<string, symbol>();
  readonly #ids = createIdGenerator();
  readonly #threadName: NameNumber;
  /** What facteur_pair(a, b) collects during one statement (rankSortKey), grown as needed. */
  #pairs = newPairs();
  #queue: Job[] = [];
  #flushScheduled = false;
  /** A job of the batch being run stored an entry (see WriteContext.facts). */
  #batchStored = false;
  readonly #searchIndexBatch: number;
  readonly #searchIndexDelay: number;
  /** Blobs this process created that may not be in the full-text index yet, and its sweeps
   * whose removals the index's worker has not done (a hint for #scheduleIndex). */
  #unindexed = 0;
  #indexTimer: NodeJS.Timeout | null = null;
  #indexQueued = false;
  /** close() has begun: no more index batches are scheduled (close indexes what waits). */
  #closing = false;
  #closed = false;
  #idleWaiters: Array<() => void> = [];
  readonly #wal: FileHandle;
  readonly #fdatasync: (wal: FileHandle) => Promise<void>;
  readonly #checkpointer: Checkpointer;
  readonly #indexer: SearchIndexer;
  /**
   * Reads for SEARCH: a read-only connection on facteur.db with search.db attached, so that one
   * statement reads the index, its mark and the store's rows. Not the store's connection: its
   * BEGIN IMMEDIATE would take search.db's write lock too, against the indexer's worker.
   */
  readonly #searchReader: Database.Database;
  readonly #searchStmts = new Map<string, Stmt>();
  /** SEARCH found search.db damaged (see #candidates). */
  #searchDamaged = false;
  readonly #dir: string;
  readonly #checkpointInterval: number;
  readonly #checkpointMinWal: number;
  readonly #walRestartBytes: number;
  #lastCheckpoint = 0;
  /** Committed batches no sync has started for yet, in commit order. */
  #unsynced: CommittedBatch[] = [];
  #syncing = false;
  /** Writes wait (no COMMIT) while the checkpoint that lets SQLite restart the WAL runs. */
  #holding = false;
  /** Set by a failed WAL sync: every later write is refused with it. */
  #failed: StoreError | null = null;
  readonly #sweepDelay: number;
  #sweepTimer: NodeJS.Timeout | null = null;

  constructor(db: Database.Database, wal: FileHandle, blobRoot: string, options: SqliteStoreOptions) {
    this.#db = db;
    this.#threadName = nameNumbers(db);
    // An SQL function that hands pairs of numbers to this process without a row per pair
    // (better-sqlite3 builds an array per row: 2.5 µs; a call is about 0.1 µs).
    db.function('facteur_pair', { deterministic: false, directOnly: true }, (a: unknown, b: unknown) => {
      const p = this.#pairs;
      if (p.n === p.a.length) {
        const grow = (x: Float64Array): Float64Array => {
          const y = new Float64Array(x.length * 2);
          y.set(x);
          return y;
        };
        p.a = grow(p.a);
        p.b = grow(p.b);
      }
      p.a[p.n] = Number(a);
      p.b[p.n++] = Number(b);
      return null;
    });
    this.#wal = wal;
    this.#checkpointer = new Checkpointer(join(options.dir, DB_FILE), (err) =>
      process.emitWarning(`store: ${err.message}`),
    );
    this.#dir = options.dir;
    this.#searchReader = new Database(join(options.dir, DB_FILE), { readonly: true, fileMustExist: true });
    this.#searchReader.pragma('busy_timeout = 5000');
    this.#searchReader.prepare(`ATTACH DATABASE ? AS ${SEARCH_SCHEMA}`).run(join(options.dir, SEARCH_DB));
    this.#indexer = new SearchIndexer(join(options.dir, DB_FILE), join(options.dir, SEARCH_DB), {
      maxBlobs: SEARCH_INDEX_MAX,
      maxText: Math.max(1, options.searchIndexRunText ?? SEARCH_INDEX_TEXT),
    });
    this.#checkpointInterval = options.checkpointIntervalMs ?? 1000;
    this.#checkpointMinWal = options.checkpointMinWalBytes ?? 4 * 1024 * 1024;
    this.#walRestartBytes = options.walRestartBytes ?? WAL_LIMIT_BYTES;
    // The callback form on the descriptor: FileHandle.datasync() adds its own promise and
    // bookkeeping per call, once per batch.
    this.#fdatasync =
      options.fdatasync ?? ((fh) => new Promise<void>((resolve, reject) => fdatasync(fh.fd, (err) => (err ? reject(err) : resolve()))));
    this.#blobRoot = blobRoot;
    this.#inlineMax = options.blobs?.inlineMaxBytes ?? DEFAULT_INLINE_MAX;
    this.#maxBatch = Math.max(1, options.maxBatch ?? 1000);
    this.#sweepDelay = options.sweepDelayMs ?? 5000;
    this.#searchIndexBatch = Math.max(1, options.searchIndexBatch ?? 64);
    this.#searchIndexDelay = Math.max(0, options.searchIndexDelayMs ?? 200);
    this.#files = createBlobFileWriter(blobRoot);
    this.#local = createLocalFeed(
      options.onListenerError ??
        ((err) => process.emitWarning(`change feed listener failed: ${err instanceof Error ? err.stack : String(err)}`)),
    );
    this.feed = this.#local.feed;
    this.#parsedCache = new ParsedCache(options.parsedCacheBytes ?? DEFAULT_PARSED_CACHE_BYTES, options.parsedCacheSize ?? 65_536);
    this.#blobCache = new BlobPrefixCache(options.blobCacheBytes ?? DEFAULT_BLOB_CACHE_BYTES);
    this.#factsCache = new EntryFactsCache(options.factsCacheBytes ?? DEFAULT_FACTS_CACHE_BYTES);
    this.#views = new ViewCache(this.#viewSource(), this.feed, {
      maxMessages: options.viewCacheMessages,
      eagerMinMessages: options.viewCacheEagerMin,
      snapshotMinMessages: options.viewSnapshotMin,
      warmMessages: options.viewWarmMessages,
      onError: (err) => process.emitWarning(`view cache: ${String(err)}`),
    });
    this.#views.warm();
    // Blobs left unreferenced by a process that stopped before its sweep.
    if (this.#q('SELECT 1 FROM blobs WHERE refs <= 0 LIMIT 1').get() !== undefined) this.#scheduleSweep();
    // Blobs left out of the full-text index, or removals left in it, by a process that stopped
    // before its worker's run.
    const given = (db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'blobs'").pluck().get() as number | undefined) ?? 0;
    const indexed = this.#indexMark(MARK_INDEXED);
    const removals = this.#q('SELECT 1 FROM search_gone WHERE seq > ? LIMIT 1').get(this.#indexMark(MARK_GONE)) !== undefined;
    if (given > indexed || removals) {
      this.#unindexed = Math.max(1, given - indexed);
      this.#scheduleIndex();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Statement cache and the write queue.

  #q(sql: string): Stmt {
    let s = this.#stmts.get(sql);
    if (s === undefined) {
      s = this.#db.prepare(sql);
      this.#stmts.set(sql, s);
    }
    return s;
  }

  /** Same, returning rows as arrays (entries: no per-row object with 13 keys). */
  #qr(sql: string): Stmt {
    return rawStatement(this.#db, this.#rawStmts, sql);
  }

  /**
   * After a COMMIT: the facts of the entries the batch's jobs stored go into the entry facts
   * cache (new mail is what clients fetch next: the first FETCH of a message then reads no row).
   * Only once committed: a job rolled back leaves its UIDs to be stored again with other facts.
   * In the jobs' order, a removal after a store taking the entry out again.
   */
  #keepFacts(outcomes: ReadonlyArray<{ ctx: WriteContext; ok: boolean }>): void {
    for (const o of outcomes) {
      if (!o.ok || o.ctx.facts === undefined) continue;
      for (const f of o.ctx.facts) {
        if ('stored' in f) this.#factsCache.set(toFacts(f.stored));
        else for (const uid of f.removed) this.#factsCache.delete(f.mailboxId, uid);
      }
    }
  }

  /** `contentOnly`: see Job. */
  #write<T>(run: (ctx: WriteContext) => T, contentOnly = false): Promise<T> {
    if (this.#closed) return Promise.reject(new StoreError('io', 'Cannot write: the store is closed'));
    if (this.#failed !== null) return Promise.reject(this.#failed);
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ run, resolve: resolve as (v: unknown) => void, reject, contentOnly });
      this.#scheduleFlush();
    });
  }

  /** `nextTurn`: on the next turn of the event loop's check phase rather than this one. */
  #scheduleFlush(nextTurn = false): void {
    // While a sync is in flight the queue waits: its completion schedules the flush, so the
    // jobs that arrived meanwhile commit as one batch instead of one each (see the notes above).
    if (this.#flushScheduled || this.#syncing || this.#holding) return;
    this.#flushScheduled = true;
    if (nextTurn) setImmediate(() => setImmediate(() => this.#flush()));
    else setImmediate(() => this.#flush());
  }

  /** Runs one batch of jobs as one transaction (group commit). */
  #flush(): void {
    this.#flushScheduled = false;
    // Every write of this connection runs here, synchronously: the heads and mailbox rows read
    // before it may be changed by it (see #head, #mailboxNamed).
    this.#heads.clear();
    this.#mailboxes.clear();
    // Scheduled before a hold began: the end of the hold schedules the flush again.
    if (this.#holding) return;
    const jobs = this.#queue.splice(0, this.#maxBatch);
    if (this.#queue.length > 0) this.#scheduleFlush();
    if (jobs.length === 0) {
      this.#startSync();
      return this.#notifyIdle();
    }
    if (this.#failed !== null) {
      for (const job of jobs) job.reject(this.#failed);
      return this.#notifyIdle();
    }
    const t0 = performance.now();
    const st = this.stats;
    st.batches++;
    st.jobs += jobs.length;

    const outcomes: Array<{ job: Job; ctx: WriteContext; ok: boolean; value: unknown }> = [];
    try {
      // Prepared once (#q), like the savepoints: exec() parsed the text again for every batch.
      this.#q('BEGIN IMMEDIATE').run();
    } catch (err) {
      for (const job of jobs) job.reject(new StoreError('io', `Cannot begin transaction: ${String(err)}`));
      this.#startSync();
      return this.#notifyIdle();
    }
    // A job that fails leaves no trace: its savepoint is rolled back, or with a batch of one job
    // (one sender at a time), the transaction, which saves two statements per batch.
    const alone = jobs.length === 1;
    this.#batchStored = false;
    for (const job of jobs) {
      const ctx: WriteContext = { events: [], removed: [], orphaned: false };
      if (!alone) this.#q('SAVEPOINT job').run();
      try {
        const value = job.run(ctx);
        if (!alone) this.#q('RELEASE job').run();
        outcomes.push({ job, ctx, ok: true, value });
      } catch (err) {
        if (this.#db.inTransaction) {
          if (alone) {
            this.#db.exec('ROLLBACK');
          } else {
            this.#db.exec('ROLLBACK TO job');
            this.#db.exec('RELEASE job');
          }
        }
        outcomes.push({ job, ctx, ok: false, value: err });
        // SQLite rolled back the whole transaction itself (e.g. disk full): the batch is lost.
        if (!this.#db.inTransaction) break;
      }
    }
    const only = outcomes[0];
    if (alone && only !== undefined && !only.ok) {
      // Rolled back above (or by SQLite): nothing to commit.
      st.run += performance.now() - t0;
      only.job.reject(only.value);
      this.#startSync();
      return this.#notifyIdle();
    }
    let committed = false;
    let commitError: unknown = null;
    const t1 = performance.now();
    st.run += t1 - t0;
    if (this.#db.inTransaction) {
      try {
        this.#q('COMMIT').run();
        const dc = performance.now() - t1;
        st.commit += dc;
        st.maxCommit = Math.max(st.maxCommit, dc);
        committed = true;
      } catch (err) {
        commitError = err;
        if (this.#db.inTransaction) this.#db.exec('ROLLBACK');
      }
    } else {
      commitError = new Error('transaction rolled back by SQLite');
    }
    // Before any read that could fill the lookup cache from what this batch changed.
    if (committed && jobs.some((j) => !j.contentOnly)) this.#lookups.clear();
    if (committed) {
      for (const o of outcomes) if (!o.ok) o.job.reject(o.value);
      this.#keepFacts(outcomes);
    } else {
      // Built only on failure: an Error captures a stack trace, a cost on every batch otherwise.
      const failure = new StoreError('io', `Cannot commit: ${String(commitError)}`);
      // Jobs never attempted because the transaction died are failed too.
      const done = new Set(outcomes.map((o) => o.job));
      for (const job of jobs) if (!done.has(job)) job.reject(failure);
      for (const o of outcomes) o.job.reject(o.ok ? failure : o.value);
    }
    if (committed) {
      const ok = outcomes.filter((o) => o.ok);
      if (ok.some((o) => o.ctx.orphaned)) this.#scheduleSweep();
      if (ok.length > 0) {
        // Acknowledged only once a sync that starts after this COMMIT has completed.
        this.#unsynced.push({
          settle: () => {
            for (const o of ok) this.#local.publish(o.ctx.events);
            for (const o of ok) {
              for (const r of o.ctx.removed) {
                this.#parsedCache.delete(r.hash);
                this.#blobCache.delete(r.hash);
                if (r.inFile) this.#maybeRemoveFile(r.hash);
              }
            }
            for (const o of ok) o.job.resolve(o.value);
          },
          fail: (err) => {
            for (const o of ok) o.job.reject(err);
          },
        });
      }
    }
    this.#startSync();
    this.#notifyIdle();
  }

  /** After writes, a checkpoint on the worker thread at most once per interval: the WAL stays
   * small (readers search less of it) and the event loop never copies pages itself. */
  #maybeCheckpoint(): void {
    const now = performance.now();
    if (now - this.#lastCheckpoint < this.#checkpointInterval || this.#checkpointer.running) return;
    this.#lastCheckpoint = now;
    // The file keeps its size when SQLite restarts the WAL after a checkpoint, so once it has
    // grown past the bound every interval with writes gets a checkpoint: cheap when few frames
    // are new. One fstat per interval.
    if (fstatSync(this.#wal.fd).size < this.#checkpointMinWal) return;
    const batches = this.stats.batches;
    this.#checkpointer.request((r) => this.#catchUp(r, this.stats.batches !== batches));
  }

  /**
   * A passive checkpoint copies the frames there were when it started; what is committed while it
   * runs stays in the WAL. SQLite writes the WAL from its start again only once every frame is in
   * the database file, so under steady writes that never happens: the file grows without bound
   * (over 100 MB in 10 s of the SMTP benchmark) until the automatic checkpoint at
   * wal_autocheckpoint pages (about 400 MB), which runs in a COMMIT on the event loop, and a
   * crash leaves all of it to replay. So after a checkpoint that left frames behind,
   * once the WAL holds more than walRestartBytes, writes are held (queued, not committed) while
   * a second one copies those few, then the next COMMIT restarts the WAL in place. The hold
   * lasts one small checkpoint (two fsyncs: 10 to 60 ms measured under load, over 100 ms with
   * the disk saturated), at most once per interval, and at most HOLD_MAX_MS should the worker
   * not answer; the threshold keeps it rare (at 32 MB of WAL a second, about every 2 s).
   * `committed`: whether a batch was committed since the first was requested (its result counts
   * only the frames there were when it started).
   */
  #catchUp(first: CheckpointResult | null, committed: boolean): void {
    if (first === null || (first.copied >= first.frames && !committed) || this.#closed || this.#holding) return;
    if (first.frames * WAL_FRAME_BYTES < this.#walRestartBytes) return;
    this.#holding = true;
    this.stats.holds++;
    const t0 = performance.now();
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      clearTimeout(timer);
      this.#holding = false;
      this.stats.held += performance.now() - t0;
      if (this.#queue.length > 0) this.#scheduleFlush();
      this.#notifyIdle();
    };
    const timer = setTimeout(release, HOLD_MAX_MS);
    this.#checkpointer.request(release);
  }

  /** The full-text index's worker runs so far (for tests and benchmarks). */
  get searchIndexerStats(): SearchIndexerStats {
    return this.#indexer.stats;
  }

  /** Checkpoints run off the event loop so far (for tests and benchmarks). */
  get checkpointStats(): CheckpointStats {
    return this.#checkpointer.stats;
  }

  /** Starts a WAL sync for every batch committed so far, unless one is in flight (then they wait
   * for the next: a sync that started before their COMMIT does not cover them). */
  #startSync(): void {
    if (this.#syncing || this.#unsynced.length === 0) return;
    this.#syncing = true;
    const batches = this.#unsynced;
    this.#unsynced = [];
    const t0 = performance.now();
    let synced: Promise<void>;
    try {
      synced = this.#fdatasync(this.#wal);
    } catch (err) {
      synced = Promise.reject(err);
    }
    synced.then(
      () => {
        this.stats.sync += performance.now() - t0;
        this.stats.syncs++;
        this.#syncing = false;
        this.#maybeCheckpoint();
        for (const b of batches) {
          try {
            b.settle();
          } catch (err) {
            // One batch's cleanup failing must not leave the later batches unacknowledged.
            process.emitWarning(`store: settling a committed batch failed: ${String(err)}`);
          }
        }
        // Jobs queued during the sync commit next, and the next sync covers them with whatever
        // else is waiting; on the next turn of the loop, so that the replies to the jobs just
        // settled (which IMAP sessions hand to their sockets on this turn's check phase) go out
        // before that batch's statements and COMMIT, not after: the clients' next commands come
        // sooner.
        if (this.#queue.length > 0) this.#scheduleFlush(true);
        else this.#startSync();
        this.#notifyIdle();
      },
      (err: unknown) => {
        this.#syncing = false;
        this.#failed ??= new StoreError('io', `Cannot make the write-ahead log durable: ${String(err)}`);
        // Batches committed since cannot be trusted either: the dirty pages may be gone.
        const waiting = [...batches, ...this.#unsynced];
        this.#unsynced = [];
        for (const b of waiting) b.fail(this.#failed);
        // Jobs queued during the sync are refused by the flush (the store has failed).
        if (this.#queue.length > 0) this.#scheduleFlush();
        this.#notifyIdle();
      },
    );
  }

  #notifyIdle(): void {
    if (this.#queue.length > 0 || this.#flushScheduled || this.#syncing || this.#unsynced.length > 0) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const w of waiters) w();
  }

  #whenIdle(): Promise<void> {
    if (this.#queue.length === 0 && !this.#flushScheduled && !this.#syncing && this.#unsynced.length === 0) {
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  // ---------------------------------------------------------------------------------------------
  // Blobs.

  #hold(hash: string): void {
    this.#pending.set(hash, (this.#pending.get(hash) ?? 0) + 1);
  }

  /** Ends an ingest's hold; a large blob's file is removed if nothing came to reference it. */
  #release(blob: IngestBlob): void {
    const n = (this.#pending.get(blob.hash) ?? 1) - 1;
    if (n > 0) this.#pending.set(blob.hash, n);
    else {
      this.#pending.delete(blob.hash);
      if (blob.raw.length > this.#inlineMax) this.#removeFileWhenDurable(blob.hash);
    }
  }

  /** The row's absence may come from a commit not yet synced: the file goes only after a sync
   * that covers every commit so far, so a power loss cannot leave a row without its file. */
  #removeFileWhenDurable(hash: string): void {
    if (!this.#syncing && this.#unsynced.length === 0) return this.#maybeRemoveFile(hash);
    this.#unsynced.push({ settle: () => this.#maybeRemoveFile(hash), fail: () => undefined });
    this.#startSync();
  }

  /** Removes the file of a hash unless an ingest holds it or a file-backed row references it. */
  #maybeRemoveFile(hash: string): void {
    if (this.#pending.has(hash) || this.#closed || filesHeld(this.#blobRoot)) return;
    const row = this.#q('SELECT in_file FROM blobs WHERE hash = ?').get(hash) as
      | { in_file: number }
      | undefined;
    if (row !== undefined && row.in_file !== 0) return;
    try {
      removeBlobFile(this.#blobRoot, hash);
    } catch {
      // Left for collectGarbage; the metadata is already right.
    }
  }

  /** Hashes the bytes and, for a large message, makes its file durable before any job runs. */
  async #prepareBlob(raw: Buffer, parsed: ParsedMessage): Promise<IngestBlob> {
    const hash = createHash('sha256').update(raw).digest('hex');
    this.#hold(hash);
    try {
      let fileReady = false;
      if (raw.length > this.#inlineMax) {
        const row = this.#q('SELECT in_file FROM blobs WHERE hash = ?').get(hash) as
          | { in_file: number }
          | undefined;
        if (row !== undefined && row.in_file !== 0) {
          fileReady = true; // referenced, so present; our hold keeps it from removal
        } else if (row === undefined) {
          await this.#files.write(hash, raw);
          fileReady = true;
        }
      }
      return { hash, raw, parsed, fileReady };
    } catch (err) {
      this.#release({ hash, raw, parsed, fileReady: false });
      throw new StoreError('io', `Cannot store message bytes: ${String(err)}`);
    }
  }

  /** Adds n references to a blob, creating its row (and index entry) on first use. */
  #addBlobRefs(ctx: WriteContext, blob: IngestBlob, n: number): void {
    const r = this.#q('UPDATE blobs SET refs = refs + ? WHERE hash = ?').run(n, blob.hash);
    if (r.changes > 0) return;
    // A large blob whose file could not be confirmed (its row vanished meanwhile) goes inline:
    // always correct, only less compact.
    const data = blob.fileReady ? null : blob.raw;
    const { text, ...rest } = blob.parsed;
    void text;
    const ins = this.#q('INSERT INTO blobs (hash, size, header_end, refs, in_file) VALUES (?, ?, ?, ?, ?)').run(
      blob.hash,
      blob.raw.length,
      Math.min(Math.max(0, blob.parsed.root.bodyStart), blob.raw.length),
      n,
      data === null ? 1 : 0,
    );
    this.#q('INSERT INTO blob_content (id, data, parsed) VALUES (?, ?, ?)').run(ins.lastInsertRowid, data, JSON.stringify(rest));
    const c = searchColumns(blob.raw, blob.parsed);
    this.#q(
      'INSERT INTO blob_text (id, subject, addr_from, addr_to, addr_cc, addr_bcc, headers, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    ).run(ins.lastInsertRowid, c.subject, c.from, c.to, c.cc, c.bcc, c.headers, c.body);
    insertSortKeys(this.#q(INSERT_SORT_KEYS), this.#threadName, Number(ins.lastInsertRowid), blob.parsed);
    // Indexed later, by the worker: see #scheduleIndex.
    this.#unindexed++;
    this.#scheduleIndex();
  }

  /**
   * The full-text index (FTS5) costs a delivery more than any other table, so it is written by a
   * worker thread into search.db (search-indexer.ts), never by the event loop. A new blob's text
   * is written to blob_text with the blob, and added to the index later, many blobs per run (one
   * index segment for all): once searchIndexBatch wait, or searchIndexDelayMs after the first.
   * Until then SEARCH reads those blobs' text directly (searchText: the blobs above the index's
   * `indexed` mark, found by id). Another process writing the store is covered the same way
   * (whichever worker indexes first moves the mark).
   */
  #scheduleIndex(): void {
    if (this.#indexQueued || this.#closing) return;
    if (this.#unindexed >= this.#searchIndexBatch) {
      this.#queueIndex();
    } else if (this.#indexTimer === null) {
      this.#indexTimer = setTimeout(() => this.#queueIndex(), this.#searchIndexDelay);
      this.#indexTimer.unref();
    }
  }

  #queueIndex(): void {
    if (this.#indexTimer !== null) clearTimeout(this.#indexTimer);
    this.#indexTimer = null;
    if (this.#indexQueued || this.#closing) return;
    this.#indexQueued = true;
    this.#unindexed = 0;
    this.#indexer.run().then(
      (r) => {
        this.#indexQueued = false;
        if (r.more) {
          this.#unindexed = this.#searchIndexBatch;
          this.#scheduleIndex();
        }
      },
      (err: unknown) => {
        // Left above the mark, found by SEARCH anyway; the next blob or open tries again.
        this.#indexQueued = false;
        if (!this.#closing) process.emitWarning(`store: full-text index: ${String(err)}`);
      },
    );
  }

  /** A mark of the full-text index (search-indexer.ts), as this connection reads search.db now. */
  #indexMark(name: string): number {
    return (this.#sq(`SELECT value FROM ${SEARCH_SCHEMA}.search_state WHERE name = ?`).get(name) as [number] | undefined)?.[0] ?? 0;
  }

  /** A statement of the search reader (raw rows), prepared once. */
  #sq(sql: string): Stmt {
    return rawStatement(this.#searchReader, this.#searchStmts, sql);
  }

  /** Reference count changes as one statement per call, whatever the number of blobs. */
  #incRefs(counts: Map<string, number>): void {
    if (counts.size === 0) return;
    const r = this.#q(
      `UPDATE blobs SET refs = refs + d.n FROM (SELECT value ->> 0 AS hash, value ->> 1 AS n FROM json_each(?)) AS d
        WHERE blobs.hash = d.hash`,
    ).run(JSON.stringify([...counts]));
    if (r.changes !== counts.size) throw new StoreError('io', 'Cannot copy: a referenced blob is missing');
  }

  /**
   * Drops references. A blob left without any keeps its rows for now: the sweep (#sweep) removes
   * it a little later with the others, in one job. An expunge then writes only the entries' pages
   * (a blob's removal rewrites its bytes' pages, its text, its full-text index entries and its
   * sort keys: about as many pages as storing it), and a message stored again meanwhile (a client
   * that copies then expunges, undo in a webmail, the same message delivered again) finds its blob
   * and takes a reference instead of writing it all again. Nothing reads an unreferenced blob:
   * every read goes through an entry.
   */
  #decRefs(ctx: WriteContext, counts: Map<string, number>): void {
    if (counts.size === 0) return;
    const left = this.#q(
      `UPDATE blobs SET refs = refs - d.n FROM (SELECT value ->> 0 AS hash, value ->> 1 AS n FROM json_each(?)) AS d
        WHERE blobs.hash = d.hash RETURNING blobs.refs`,
    )
      .pluck()
      .all(JSON.stringify([...counts])) as number[];
    if (left.some((n) => n <= 0)) ctx.orphaned = true;
  }

  /** The sweep `delayMs` from now, unless one is already due sooner. */
  #scheduleSweep(delayMs = this.#sweepDelay): void {
    if (this.#sweepTimer !== null || this.#closed) return;
    this.#sweepTimer = setTimeout(() => this.#sweep(), delayMs);
    this.#sweepTimer.unref();
  }

  /** Removes unreferenced blobs, SWEEP_BATCH per job, the next job at once while more are left. */
  #sweep(): void {
    this.#sweepTimer = null;
    if (this.#closed) return;
    this.#write((ctx) => this.#removeDead(ctx, SWEEP_BATCH), CONTENT_ONLY).then(
      (n) => {
        if (n === SWEEP_BATCH) this.#scheduleSweep(0);
      },
      (err: unknown) => {
        // Left for the next sweep (after the next expunge, or the next start).
        if (!this.#closed) process.emitWarning(`store: removing unreferenced blobs failed: ${String(err)}`);
      },
    );
  }

  /**
   * Deletes up to `limit` (-1: all) blobs without references: rows, text, sort keys, full-text
   * entries, and (after the commit, see #flush) files and cached copies. Their count read again
   * in this job: an ingest committed since the sweep was planned may have taken one back.
   */
  #removeDead(ctx: WriteContext, limit: number): number {
    const dead = this.#q('SELECT id, hash, in_file FROM blobs WHERE refs <= 0 LIMIT ?').all(limit) as Array<{
      id: number;
      hash: string;
      in_file: number;
    }>;
    if (dead.length === 0) return 0;
    const ids = JSON.stringify(dead.map((r) => r.id));
    for (const table of ['blobs', 'blob_content', 'blob_text', 'sort_keys']) {
      this.#q(`DELETE FROM ${table} WHERE id IN (SELECT value FROM json_each(?))`).run(ids);
    }
    // Their index entries go in the worker's next run (search-indexer.ts); the removals it has
    // done already are pruned here.
    this.#q('INSERT INTO search_gone (id) SELECT value FROM json_each(?)').run(ids);
    this.#q('DELETE FROM search_gone WHERE seq <= ?').run(this.#indexMark(MARK_GONE));
    this.#unindexed++;
    this.#scheduleIndex();
    for (const r of dead) ctx.removed.push({ hash: r.hash, inFile: r.in_file !== 0 });
    return dead.length;
  }

  // ---------------------------------------------------------------------------------------------
  // Row helpers (run inside jobs or reads).

  #accountRow(id: number): AccountRow | undefined {
    return this.#q('SELECT * FROM accounts WHERE id = ?').get(id) as AccountRow | undefined;
  }

  #mailboxRow(id: number): MailboxRow | undefined {
    return this.#q('SELECT * FROM mailboxes WHERE id = ?').get(id) as MailboxRow | undefined;
  }

  #mailboxByName(accountId: number, name: string): MailboxRow | undefined {
    return this.#q('SELECT * FROM mailboxes WHERE account_id = ? AND name = ?').get(accountId, name) as
      | MailboxRow
      | undefined;
  }

  #requireMailbox(id: number): MailboxRow {
    const row = this.#mailboxRow(id);
    if (row === undefined) throw new StoreError('not-found', `Cannot find mailbox ${id}`);
    return row;
  }

  #requireAccount(id: number): AccountRow {
    const row = this.#accountRow(id);
    if (row === undefined) throw new StoreError('not-found', `Cannot find account ${id}`);
    return row;
  }

  #nextModseq(accountId: number): number {
    const row = this.#q('UPDATE accounts SET modseq = modseq + 1 WHERE id = ? RETURNING modseq').get(accountId) as
      | { modseq: number }
      | undefined;
    if (row === undefined) throw new StoreError('not-found', `Cannot find account ${accountId}`);
    return row.modseq;
  }

  /** Never reused, even for a recreated name (RFC 9051 §2.3.1.1): above every earlier value. */
  #nextUidValidity(): number {
    const row = this.#q("SELECT value FROM counters WHERE name = 'uidvalidity'").get() as { value: number };
    const v = Math.max(Math.floor(Date.now() / 1000), row.value + 1);
    this.#q("UPDATE counters SET value = ? WHERE name = 'uidvalidity'").run(v);
    return v;
  }

  #insertMailbox(accountId: number, name: string, specialUse: SpecialUse | null, modseq: number): MailboxRow {
    return this.#q(
      'INSERT INTO mailboxes (account_id, name, uid_validity, uid_next, highest_modseq, special_use) VALUES (?, ?, ?, 1, ?, ?) RETURNING *',
    ).get(accountId, name, this.#nextUidValidity(), modseq, specialUse) as MailboxRow;
  }

  #createMissingParents(accountId: number, name: string, modseq: number): void {
    for (const parent of parentNames(name)) {
      if (this.#mailboxByName(accountId, parent) === undefined) this.#insertMailbox(accountId, parent, null, modseq);
    }
  }

  /** Applies counter deltas to a mailbox and raises its HIGHESTMODSEQ (and UIDNEXT if given). */
  #bumpMailbox(
    id: number,
    d: { messages: number; unseen: number; deleted: number; size: number },
    modseq: number,
    uidNext: number | null,
  ): void {
    this.#q(
      `UPDATE mailboxes SET messages = messages + ?, unseen = unseen + ?, deleted = deleted + ?, size = size + ?,
         highest_modseq = max(highest_modseq, ?), uid_next = coalesce(?, uid_next) WHERE id = ?`,
    ).run(d.messages, d.unseen, d.deleted, d.size, modseq, uidNext, id);
  }

  #bumpUsage(accountId: number, bytes: number, messages: number): void {
    this.#q('UPDATE accounts SET used_bytes = used_bytes + ?, used_messages = used_messages + ? WHERE id = ?').run(
      bytes,
      messages,
      accountId,
    );
  }

  #overQuota(account: AccountRow, bytes: number, messages: number): boolean {
    if (account.quota_bytes !== null && account.used_bytes + bytes > account.quota_bytes) return true;
    if (account.quota_messages !== null && account.used_messages + messages > account.quota_messages) return true;
    return false;
  }

  #insertEntry(r: EntryRow): void {
    this.#q(`INSERT INTO entries (${ENTRY_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(...r);
  }

  /** THREADID (RFC 8474 §5.2): the thread of any known message this one is linked to. */
  #threadFor(accountId: number, parsed: ParsedMessage): string {
    const keys = threadKeys(parsed);
    let threadId: string | null = null;
    const find = this.#q('SELECT thread_id FROM thread_keys WHERE account_id = ? AND message_id = ?').pluck();
    for (const k of keys) {
      const t = find.get(accountId, k) as string | undefined;
      if (t !== undefined) {
        threadId = t;
        break;
      }
    }
    threadId ??= this.#ids.threadId();
    this.#linkThread(accountId, keys, threadId);
    return threadId;
  }

  /** Records the thread of Message-IDs not seen before (the first message to name one wins). */
  #linkThread(accountId: number, keys: readonly string[], threadId: string): void {
    const ins = this.#q('INSERT OR IGNORE INTO thread_keys (account_id, message_id, thread_id) VALUES (?, ?, ?)');
    for (const k of keys) ins.run(accountId, k, threadId);
  }

  /** Stores one new message (delivery or APPEND) in a mailbox; quota already checked. */
  #ingest(
    ctx: WriteContext,
    account: AccountRow,
    mailbox: MailboxRow,
    blob: IngestBlob,
    flags: FlagSet,
    internalDate: number,
  ): AppendResult {
    const mailboxId = mailbox.id;
    const size = blob.raw.length;
    // The account's modseq and its quota usage in one statement (one row, written once).
    const modseq = (
      this.#q('UPDATE accounts SET modseq = modseq + 1, used_bytes = used_bytes + ?, used_messages = used_messages + 1 WHERE id = ? RETURNING modseq').get(
        size,
        account.id,
      ) as { modseq: number }
    ).modseq;
    const emailId = this.#ids.emailId();
    const threadId = this.#threadFor(account.id, blob.parsed);
    const uid = mailbox.uid_next;
    const row: EntryRow = [
      mailboxId,
      uid,
      modseq,
      flags.mask,
      encodeKeywords(flags.keywords),
      internalDate,
      Date.now(),
      size,
      blob.hash,
      emailId,
      threadId,
      emailId,
      0,
    ];
    this.#insertEntry(row);
    (ctx.facts ??= []).push({ stored: row });
    this.#batchStored = true;
    this.#bumpMailbox(
      mailboxId,
      { messages: 1, unseen: seenDelta(flags.mask), deleted: deletedDelta(flags.mask), size },
      modseq,
      uid + 1,
    );
    this.#addBlobRefs(ctx, blob, 1);
    ctx.events.push({
      accountId: asAccountId(account.id),
      mailboxId: asMailboxId(mailboxId),
      modseq: asModSeq(modseq),
      kind: 'append',
    });
    return { uidValidity: asUidValidity(mailbox.uid_validity), uid: asUid(uid), modseq: asModSeq(modseq), emailId };
  }

  /**
   * A condition on `uid` selecting the given UIDs: a few BETWEEN ranges when the set is made of
   * few runs (1:*, 1:100,200:300: the common IMAP sets), else a json_each list.
   */
  #uidCondition(uids: readonly Uid[]): { sql: string; args: unknown[] } {
    // Sessions pass sets already ascending; sort (and deduplicate) only when they are not.
    let ascending = true;
    for (let i = 1; i < uids.length && ascending; i++) ascending = (uids[i] ?? 0) > (uids[i - 1] ?? 0);
    const sorted: readonly number[] = ascending ? uids : [...new Set<number>(uids)].sort((x, y) => x - y);
    const ranges: Array<[number, number]> = [];
    for (const u of sorted) {
      const last = ranges[ranges.length - 1];
      if (last !== undefined && u === last[1] + 1) last[1] = u;
      else ranges.push([u, u]);
    }
    if (ranges.length <= MAX_UID_RANGES) {
      return { sql: `(${ranges.map(() => 'uid BETWEEN ? AND ?').join(' OR ')})`, args: ranges.flat() };
    }
    return { sql: 'uid IN (SELECT value FROM json_each(?))', args: [JSON.stringify(sorted)] };
  }

  /** Entries of a mailbox among uids, in UID order, in one query; with `onlyDeleted`, only those
   * flagged \Deleted. */
  #selectRows(mailbox: Pick<MailboxRow, 'id'>, uids: readonly Uid[], onlyDeleted = false): EntryRow[] {
    if (uids.length === 0) return [];
    const deleted = onlyDeleted ? ` AND (flags & ${FLAG_DELETED}) != 0` : '';
    const span = onlyDeleted ? denseSpan(uids) : null;
    if (span !== null) {
      // EXPUNGE names every UID its session knows: after some expunges, more runs than
      // MAX_UID_RANGES, and the JSON list cost three times a scan of the whole span (75 against
      // 28 us for 130 UIDs). The scan returns only the \Deleted rows, filtered here; a sparse
      // set in a large mailbox still reads only its own rows (see denseSpan).
      const named = new Set<number>(uids);
      const rows = this.#qr(`SELECT ${ENTRY_COLS} FROM entries WHERE mailbox_id = ? AND uid BETWEEN ? AND ?${deleted} ORDER BY uid`).all(
        mailbox.id,
        span.lo,
        span.hi,
      ) as EntryRow[];
      return rows.filter((r) => named.has(r[1]));
    }
    const cond = this.#uidCondition(uids);
    return this.#qr(`SELECT ${ENTRY_COLS} FROM entries WHERE mailbox_id = ? AND ${cond.sql}${deleted} ORDER BY uid`).all(
      mailbox.id,
      ...cond.args,
    ) as EntryRow[];
  }

  /** Removes entries (already read) from a mailbox, logging their UIDs as expunged at modseq. */
  #removeEntries(ctx: WriteContext, mailbox: MailboxRow, rows: ReadonlyArray<EntryRow>, modseq: number, keepBlobs: boolean): void {
    if (rows.length === 0) return;
    for (const r of rows) this.#factsCache.delete(mailbox.id, r[1]);
    // Again after the commit, should an earlier job of the batch have stored one of them.
    if (this.#batchStored) (ctx.facts ??= []).push({ mailboxId: mailbox.id, removed: rows.map((r) => r[1]) });
    const uidsJson = JSON.stringify(rows.map((r) => r[1]));
    this.#q('DELETE FROM entries WHERE mailbox_id = ? AND uid IN (SELECT value FROM json_each(?))').run(mailbox.id, uidsJson);
    // RFC 7162 §3.2.10: expunged UIDs are remembered for VANISHED (EARLIER).
    this.#q('INSERT INTO expunged (mailbox_id, modseq, uid) SELECT ?, ?, value FROM json_each(?)').run(
      mailbox.id,
      modseq,
      uidsJson,
    );
    const d = { messages: 0, unseen: 0, deleted: 0, size: 0 };
    const refs = new Map<string, number>();
    for (const r of rows) {
      d.messages -= 1;
      d.unseen -= seenDelta(r[3]);
      d.deleted -= deletedDelta(r[3]);
      d.size -= r[7];
      refs.set(r[8], (refs.get(r[8]) ?? 0) + 1);
    }
    this.#bumpMailbox(mailbox.id, d, modseq, null);
    if (!keepBlobs) {
      this.#bumpUsage(mailbox.account_id, d.size, d.messages);
      this.#decRefs(ctx, refs);
    }
    ctx.events.push({
      accountId: asAccountId(mailbox.account_id),
      mailboxId: asMailboxId(mailbox.id),
      modseq: asModSeq(modseq),
      kind: 'expunge',
    });
  }

  /** COPY and MOVE (RFC 4315 COPYUID, RFC 6851): new UIDs in the destination, in source order. */
  #transfer(ctx: WriteContext, fromId: number, uids: readonly Uid[], toId: number, move: boolean, whole: boolean): CopyResult & { expunged: Uid[] } {
    const src = this.#requireMailbox(fromId);
    const dst = this.#requireMailbox(toId);
    if (src.account_id !== dst.account_id) {
      throw new StoreError('invalid', 'Cannot copy between accounts');
    }
    const rows = this.#selectRows(src, uids);
    const gone = rows.length === uids.length ? [] : absentUids(uids, rows.map((r) => r[1]));
    if (rows.length === 0 || (whole && gone.length > 0)) return { uidValidity: asUidValidity(dst.uid_validity), pairs: [], expunged: [], gone };
    const account = this.#requireAccount(src.account_id);
    const bytes = rows.reduce((n, r) => n + r[7], 0);
    // A move within the account changes no usage; a copy adds to it (RFC 9208 §4.3 OVERQUOTA).
    if (!move && this.#overQuota(account, bytes, rows.length)) {
      throw new StoreError('over-quota', 'Cannot copy: the account is over its quota');
    }
    const modseq = this.#nextModseq(account.id);
    const now = Date.now();
    let uid = dst.uid_next;
    let pidCounter = account.pid_counter;
    const pairs: Array<[Uid, Uid]> = [];
    const d = { messages: 0, unseen: 0, deleted: 0, size: 0 };
    const refs = new Map<string, number>();
    const news: Array<[number, number, string, number]> = [];
    for (const r of rows) {
      news.push([r[1], uid, move ? r[11] : copyPid(r[9], ++pidCounter), move ? r[12] : 0]);
      pairs.push([asUid(r[1]), asUid(uid)]);
      uid += 1;
      d.messages += 1;
      d.unseen += seenDelta(r[3]);
      d.deleted += deletedDelta(r[3]);
      d.size += r[7];
      refs.set(r[8], (refs.get(r[8]) ?? 0) + 1);
    }
    // One statement for the whole set (SQLite materialises the SELECT when from === to); CROSS
    // JOIN keeps the list as the outer loop, with a primary-key lookup per UID.
    this.#q(
      `INSERT INTO entries (${ENTRY_COLS})
       SELECT ?, n.value ->> 1, ?, e.flags, e.keywords, e.internal_date, ?, e.size, e.blob_hash, e.email_id, e.thread_id,
              n.value ->> 2, n.value ->> 3
         FROM json_each(?) n CROSS JOIN entries e ON e.mailbox_id = ? AND e.uid = n.value ->> 0`,
    ).run(toId, modseq, now, JSON.stringify(news), fromId);
    this.#bumpMailbox(toId, d, modseq, uid);
    ctx.events.push({ accountId: asAccountId(account.id), mailboxId: asMailboxId(toId), modseq: asModSeq(modseq), kind: 'append' });
    if (move) {
      // Source row re-read: when from === to its UIDNEXT and counters just changed.
      this.#removeEntries(ctx, this.#requireMailbox(fromId), rows, modseq, true);
    } else {
      this.#q('UPDATE accounts SET pid_counter = ? WHERE id = ?').run(pidCounter, account.id);
      this.#bumpUsage(account.id, d.size, d.messages);
      this.#incRefs(refs);
    }
    return {
      uidValidity: asUidValidity(dst.uid_validity),
      pairs,
      expunged: move ? rows.map((r) => asUid(r[1])) : [],
      gone,
    };
  }

  #mailboxEvent(ctx: WriteContext, accountId: number, modseq: number): void {
    ctx.events.push({ accountId: asAccountId(accountId), mailboxId: null, modseq: asModSeq(modseq), kind: 'mailbox' });
  }

  // ---------------------------------------------------------------------------------------------
  // Domains, accounts, aliases.

  async addDomain(name: string, createdAt = Date.now()): Promise<Domain> {
    const d = normalizeDomain(name);
    return this.#write(() => {
      if (this.#q('SELECT 1 FROM domains WHERE name = ?').get(d) !== undefined) {
        throw new StoreError('exists', `Cannot add domain ${d}: it exists`);
      }
      this.#q('INSERT INTO domains (name, created_at) VALUES (?, ?)').run(d, createdAt);
      return { name: d, createdAt };
    });
  }

  async listDomains(): Promise<Domain[]> {
    const rows = this.#q('SELECT name, created_at FROM domains ORDER BY name').all() as Array<{ name: string; created_at: number }>;
    return rows.map((r) => ({ name: r.name, createdAt: r.created_at }));
  }

  async removeDomain(name: string, force = false): Promise<void> {
    const d = normalizeDomain(name);
    return this.#write((ctx) => {
      if (this.#q('SELECT 1 FROM domains WHERE name = ?').get(d) === undefined) {
        throw new StoreError('not-found', `Cannot remove domain ${d}: it is not local`);
      }
      const ids = (this.#q('SELECT id FROM accounts WHERE domain = ?').all(d) as Array<{ id: number }>).map((r) => r.id);
      if (ids.length > 0 && !force) {
        throw new StoreError('conflict', `Cannot remove domain ${d}: it has ${ids.length} account(s)`);
      }
      for (const id of ids) this.#deleteAccountRows(ctx, id);
      this.#q("DELETE FROM aliases WHERE source = ? OR source LIKE ? ESCAPE '\\'").run(`@${d}`, `%@${likeEscape(d)}`);
      this.#q('DELETE FROM domains WHERE name = ?').run(d);
    });
  }

  async isLocalDomain(name: string): Promise<boolean> {
    let d: string;
    try {
      d = normalizeDomain(name);
    } catch {
      return false;
    }
    // `facteur domain add` writes from another process while the server runs: the cache is
    // checked against data_version at each call (a set read once missed the new domain until a
    // restart, refusing its mail).
    const lookups = this.#checkedLookups();
    let local = lookups.domain(d);
    if (local === undefined) {
      local = this.#q('SELECT 1 FROM domains WHERE name = ?').get(d) !== undefined;
      lookups.setDomain(d, local);
    }
    return local;
  }

  /** The lookup cache, emptied first if another connection committed since its last use. */
  #checkedLookups(): LookupCache<ResolvedAddress<Account>> {
    this.#lookups.check(this.#q('PRAGMA data_version').pluck().get() as number);
    return this.#lookups;
  }

  async createAccount(input: { address: string; passwordHash: string; scram?: string | null }): Promise<Account> {
    const address = normalizeAddress(input.address);
    const domain = domainOf(address);
    return this.#write(() => {
      if (this.#q('SELECT 1 FROM domains WHERE name = ?').get(domain) === undefined) {
        throw new StoreError('not-found', `Cannot create account ${address}: domain ${domain} is not local`);
      }
      if (this.#q('SELECT 1 FROM accounts WHERE address = ?').get(address) !== undefined) {
        throw new StoreError('exists', `Cannot create account ${address}: it exists`);
      }
      const row = this.#q(
        'INSERT INTO accounts (address, domain, password_hash, scram, created_at) VALUES (?, ?, ?, ?, ?) RETURNING *',
      ).get(address, domain, input.passwordHash, input.scram ?? null, Date.now()) as AccountRow;
      const modseq = this.#nextModseq(row.id);
      for (const m of DEFAULT_MAILBOXES) {
        this.#insertMailbox(row.id, m.name, m.specialUse, modseq);
        this.#q('INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?, ?)').run(row.id, m.name);
      }
      return toAccount(row);
    });
  }

  async getAccount(id: AccountId): Promise<Account | null> {
    const row = this.#accountRow(id);
    return row === undefined ? null : toAccount(row);
  }

  async getAccountByAddress(address: string): Promise<Account | null> {
    const row = this.#q('SELECT * FROM accounts WHERE address = ?').get(address.trim().toLowerCase()) as AccountRow | undefined;
    return row === undefined ? null : toAccount(row);
  }

  async listAccounts(domain?: string): Promise<Account[]> {
    const rows = (
      domain === undefined
        ? this.#q('SELECT * FROM accounts ORDER BY address').all()
        : this.#q('SELECT * FROM accounts WHERE domain = ? ORDER BY address').all(normalizeDomain(domain))
    ) as AccountRow[];
    return rows.map(toAccount);
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
    return this.#write(() => {
      this.#requireAccount(id);
      const sets: string[] = [];
      const args: unknown[] = [];
      const put = (col: string, v: unknown): void => {
        sets.push(`${col} = ?`);
        args.push(v);
      };
      if (patch.passwordHash !== undefined) put('password_hash', patch.passwordHash);
      if (patch.scram !== undefined) put('scram', patch.scram);
      if (patch.quotaBytes !== undefined) put('quota_bytes', patch.quotaBytes);
      if (patch.quotaMessages !== undefined) put('quota_messages', patch.quotaMessages);
      if (patch.pop3DeletePolicy !== undefined) put('pop3_delete_policy', patch.pop3DeletePolicy);
      if (patch.disabled !== undefined) put('disabled', patch.disabled ? 1 : 0);
      if (patch.totpSecret !== undefined) put('totp_secret', patch.totpSecret);
      if (patch.totpLastStep !== undefined) put('totp_last_step', patch.totpLastStep);
      if (sets.length === 0) return;
      this.#q(`UPDATE accounts SET ${sets.join(', ')} WHERE id = ?`).run(...args, id);
    });
  }

  async deleteAccount(id: AccountId): Promise<void> {
    return this.#write((ctx) => {
      this.#requireAccount(id);
      this.#deleteAccountRows(ctx, id);
    });
  }

  #deleteAccountRows(ctx: WriteContext, id: number): void {
    const account = this.#requireAccount(id);
    const rows = this.#q(
      'DELETE FROM entries WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE account_id = ?) RETURNING blob_hash',
    ).all(id) as Array<{ blob_hash: string }>;
    const refs = new Map<string, number>();
    for (const r of rows) refs.set(r.blob_hash, (refs.get(r.blob_hash) ?? 0) + 1);
    this.#decRefs(ctx, refs);
    this.#q('DELETE FROM expunged WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE account_id = ?)').run(id);
    this.#q('DELETE FROM view_snapshots WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE account_id = ?)').run(id);
    this.#q('DELETE FROM mailboxes WHERE account_id = ?').run(id);
    this.#q('DELETE FROM subscriptions WHERE account_id = ?').run(id);
    this.#q('DELETE FROM thread_keys WHERE account_id = ?').run(id);
    this.#q('DELETE FROM metadata WHERE account_id = ?').run(id);
    this.#q('DELETE FROM app_passwords WHERE account_id = ?').run(id);
    this.#q('DELETE FROM aliases WHERE target = ?').run(account.address);
    this.#q('DELETE FROM accounts WHERE id = ?').run(id);
    this.#mailboxEvent(ctx, id, account.modseq + 1);
  }

  async acceptTotpStep(id: AccountId, step: number): Promise<boolean> {
    checkTotp(undefined, step);
    return this.#write(() => {
      // One conditional UPDATE: two logins racing with the same code cannot both succeed.
      const r = this.#q(
        'UPDATE accounts SET totp_last_step = ? WHERE id = ? AND totp_secret IS NOT NULL AND (totp_last_step IS NULL OR totp_last_step < ?)',
      ).run(step, id, step);
      return r.changes === 1;
    });
  }

  async addAppPassword(
    accountId: AccountId,
    input: { name: string; hash: string; createdAt?: number; lastUsed?: AppPasswordUse | null },
  ): Promise<AppPassword> {
    const name = checkAppPasswordName(input.name);
    return this.#write(() => {
      this.#requireAccount(accountId);
      if (this.#q('SELECT 1 FROM app_passwords WHERE account_id = ? AND name = ?').get(accountId, name) !== undefined) {
        throw new StoreError('exists', `Cannot add app password ${JSON.stringify(name)}: the account has one so named`);
      }
      const used = input.lastUsed ?? null;
      const row = this.#q(
        `INSERT INTO app_passwords (account_id, name, hash, created_at, last_used_at, last_used_protocol, last_used_ip)
         VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *`,
      ).get(accountId, name, input.hash, input.createdAt ?? Date.now(), used?.at ?? null, used?.protocol ?? null, used?.ip ?? null) as AppPasswordRow;
      return toAppPassword(row);
    });
  }

  async listAppPasswords(accountId: AccountId): Promise<AppPassword[]> {
    const rows = this.#q('SELECT * FROM app_passwords WHERE account_id = ? ORDER BY name, id').all(accountId) as AppPasswordRow[];
    return rows.map(toAppPassword);
  }

  async findAppPassword(accountId: AccountId, hash: string): Promise<AppPassword | null> {
    const row = this.#q('SELECT * FROM app_passwords WHERE account_id = ? AND hash = ? ORDER BY id LIMIT 1').get(accountId, hash) as
      | AppPasswordRow
      | undefined;
    return row === undefined ? null : toAppPassword(row);
  }

  async removeAppPassword(accountId: AccountId, name: string): Promise<void> {
    return this.#write(() => {
      const r = this.#q('DELETE FROM app_passwords WHERE account_id = ? AND name = ?').run(accountId, name.trim());
      if (r.changes === 0) throw new StoreError('not-found', `Cannot revoke app password ${JSON.stringify(name)}: the account has none so named`);
    });
  }

  async recordAppPasswordUse(id: number, use: AppPasswordUse): Promise<void> {
    return this.#write(() => {
      this.#q('UPDATE app_passwords SET last_used_at = ?, last_used_protocol = ?, last_used_ip = ? WHERE id = ?').run(use.at, use.protocol, use.ip, id);
    });
  }

  async addAlias(source: string, target: string): Promise<void> {
    const s = normalizeAliasSource(source);
    const t = normalizeAddress(target);
    const domain = domainOf(s);
    return this.#write(() => {
      if (this.#q('SELECT 1 FROM domains WHERE name = ?').get(domain) === undefined) {
        throw new StoreError('not-found', `Cannot add alias ${s}: domain ${domain} is not local`);
      }
      if (this.#q('SELECT 1 FROM aliases WHERE source = ? AND target = ?').get(s, t) !== undefined) {
        throw new StoreError('exists', `Cannot add alias ${s} -> ${t}: it exists`);
      }
      this.#q('INSERT INTO aliases (source, target) VALUES (?, ?)').run(s, t);
    });
  }

  async removeAlias(source: string): Promise<void> {
    const s = normalizeAliasSource(source);
    return this.#write(() => {
      if (this.#q('DELETE FROM aliases WHERE source = ?').run(s).changes === 0) {
        throw new StoreError('not-found', `Cannot remove alias ${s}: no such alias`);
      }
    });
  }

  async listAliases(domain?: string): Promise<Alias[]> {
    const rows = (
      domain === undefined
        ? this.#q('SELECT source, target FROM aliases ORDER BY source, target').all()
        : this.#q("SELECT source, target FROM aliases WHERE source LIKE ? ESCAPE '\\' ORDER BY source, target").all(
            `%@${likeEscape(normalizeDomain(domain))}`,
          )
    ) as Array<{ source: string; target: string }>;
    return rows.map((r) => ({ source: r.source, target: r.target }));
  }

  async resolveRecipient(address: string): Promise<AccountId[]> {
    return (await this.#resolve(address)).accounts.map((a) => a.id);
  }

  async resolveRecipientAccounts(address: string): Promise<Account[]> {
    // Copies: the cached accounts stay as read.
    return (await this.#resolve(address)).accounts.map((a) => ({ ...a }));
  }

  async resolveRecipientRoute(address: string): Promise<RecipientRoute> {
    const r = await this.#resolve(address);
    return { accounts: r.accounts.map((a) => ({ ...a })), forwards: [...r.forwards] };
  }

  /** The accounts an address reaches (store/recipients.ts): one statement per address visited,
   * the account's row and the alias targets together (one WAL read lock instead of three), or
   * none when the lookup cache has the answer. */
  async #resolve(address: string): Promise<ResolvedAddress<Account>> {
    let start: string;
    try {
      start = normalizeAddress(address);
    } catch {
      return { accounts: [], forwards: [] };
    }
    const lookups = this.#checkedLookups();
    const cached = lookups.address(start);
    if (cached !== undefined) return cached;
    const generation = lookups.generation;
    const stmt = this.#q(
      `SELECT a.*, (SELECT json_group_array(target) FROM (SELECT target FROM aliases WHERE source = @addr ORDER BY target)) AS alias_targets
         FROM (SELECT 1) LEFT JOIN accounts a ON a.address = @addr`,
    );
    const rows = await resolveAddress(start, (addr) => {
      const row = stmt.get({ addr }) as (AccountRow & { id: number | null; alias_targets: string }) | undefined;
      return {
        account: row !== undefined && row.id !== null ? row : undefined,
        targets: row === undefined ? [] : (JSON.parse(row.alias_targets) as string[]),
      };
    }, (domain) => this.isLocalDomain(domain));
    const resolved = { accounts: rows.accounts.map(toAccount), forwards: rows.forwards };
    lookups.setAddress(start, resolved, generation);
    return resolved;
  }

  async sendableAddresses(accountId: AccountId): Promise<string[]> {
    const account = this.#accountRow(accountId);
    if (account === undefined) return [];
    const sourcesOf = this.#q('SELECT source FROM aliases WHERE target = ?');
    const seen = new Set<string>([account.address]);
    let frontier = [account.address];
    for (let depth = 0; depth < MAX_ALIAS_DEPTH && frontier.length > 0; depth++) {
      const next: string[] = [];
      for (const addr of frontier) {
        for (const r of sourcesOf.all(addr) as Array<{ source: string }>) {
          if (seen.has(r.source)) continue;
          seen.add(r.source);
          next.push(r.source);
        }
      }
      frontier = next;
    }
    const [own, ...rest] = [...seen];
    return [own ?? account.address, ...rest.sort()];
  }

  // ---------------------------------------------------------------------------------------------
  // Mailboxes.

  async listMailboxes(accountId: AccountId): Promise<Mailbox[]> {
    // New objects each time: the rows are kept (#mailboxList), the callers' objects are theirs.
    return this.#mailboxList(accountId).map((r) => toMailbox(r, r.subscribed !== 0));
  }

  #isSubscribed(accountId: number, name: string): boolean {
    return this.#q('SELECT 1 FROM subscriptions WHERE account_id = ? AND name = ?').get(accountId, name) !== undefined;
  }

  async getMailbox(accountId: AccountId, name: string): Promise<Mailbox | null> {
    let n: string;
    try {
      n = normalizeMailboxName(name);
    } catch {
      return null;
    }
    const row = this.#mailboxNamed(accountId, n);
    return row === null ? null : toMailbox(row, row.subscribed !== 0);
  }

  async getMailboxById(id: MailboxId): Promise<Mailbox | null> {
    const row = this.#q(`SELECT m.*, ${SUBSCRIBED} AS subscribed FROM mailboxes m WHERE m.id = ?`).get(id) as
      | (MailboxRow & { subscribed: number })
      | undefined;
    return row === undefined ? null : toMailbox(row, row.subscribed !== 0);
  }

  async createMailbox(accountId: AccountId, name: string, specialUse: SpecialUse | null = null): Promise<Mailbox> {
    const n = normalizeMailboxName(name);
    if (specialUse !== null && !SPECIAL_USES.has(specialUse)) {
      throw new StoreError('invalid', `Cannot create mailbox with special use ${String(specialUse)}`);
    }
    return this.#write((ctx) => {
      this.#requireAccount(accountId);
      if (this.#mailboxByName(accountId, n) !== undefined) {
        throw new StoreError('exists', `Cannot create mailbox ${n}: it exists`);
      }
      const modseq = this.#nextModseq(accountId);
      this.#createMissingParents(accountId, n, modseq);
      const row = this.#insertMailbox(accountId, n, specialUse, modseq);
      this.#mailboxEvent(ctx, accountId, modseq);
      return toMailbox(row, this.#isSubscribed(accountId, n));
    });
  }

  async renameMailbox(accountId: AccountId, from: string, to: string): Promise<void> {
    const f = normalizeMailboxName(from);
    const t = normalizeMailboxName(to);
    return this.#write((ctx) => {
      const src = this.#mailboxByName(accountId, f);
      if (src === undefined) throw new StoreError('not-found', `Cannot rename mailbox ${f}: it does not exist`);
      if (this.#mailboxByName(accountId, t) !== undefined) {
        throw new StoreError('exists', `Cannot rename mailbox ${f} to ${t}: ${t} exists`);
      }
      if (t.startsWith(`${f}/`)) throw new StoreError('invalid', `Cannot rename mailbox ${f} into itself`);
      const modseq = this.#nextModseq(accountId);
      if (f === 'INBOX') {
        // RFC 9051 §6.3.9: renaming INBOX moves its messages to a new mailbox; INBOX stays, empty,
        // and its inferior names are not renamed.
        this.#createMissingParents(accountId, t, modseq);
        const dst = this.#insertMailbox(accountId, t, null, modseq);
        const all = this.#qr(`SELECT uid FROM entries WHERE mailbox_id = ? ORDER BY uid`).all(src.id) as Array<[number]>;
        this.#transfer(ctx, src.id, all.map((r) => asUid(r[0])), dst.id, true, false);
        // RFC 5464 §4.1: INBOX keeps its annotations and the new mailbox gets a copy.
        this.#q('INSERT INTO metadata (account_id, mailbox_id, name, value) SELECT account_id, ?, name, value FROM metadata WHERE account_id = ? AND mailbox_id = ?').run(
          dst.id,
          accountId,
          src.id,
        );
        this.#mailboxEvent(ctx, accountId, modseq);
        return;
      }
      const children = this.#q(
        'SELECT id, name FROM mailboxes WHERE account_id = ? AND substr(name, 1, ?) = ?',
      ).all(accountId, f.length + 1, `${f}/`) as Array<{ id: number; name: string }>;
      const moves = [{ id: src.id, from: f, to: t }, ...children.map((c) => ({ id: c.id, from: c.name, to: t + c.name.slice(f.length) }))];
      for (const m of moves.slice(1)) {
        if (this.#mailboxByName(accountId, m.to) !== undefined) {
          throw new StoreError('exists', `Cannot rename mailbox ${f} to ${t}: ${m.to} exists`);
        }
      }
      // Two steps so that no intermediate state collides on (account_id, name).
      const setName = this.#q('UPDATE mailboxes SET name = ? WHERE id = ?');
      for (const m of moves) setName.run(`\u0000renaming\u0000${m.id}`, m.id);
      for (const m of moves) setName.run(m.to, m.id);
      this.#createMissingParents(accountId, t, modseq);
      // Subscriptions follow the mailboxes they name.
      const moveSub = this.#q('UPDATE OR REPLACE subscriptions SET name = ? WHERE account_id = ? AND name = ?');
      for (const m of moves) moveSub.run(m.to, accountId, m.from);
      this.#mailboxEvent(ctx, accountId, modseq);
    });
  }

  async deleteMailbox(accountId: AccountId, name: string): Promise<void> {
    const n = normalizeMailboxName(name);
    return this.#write((ctx) => {
      if (n === 'INBOX') throw new StoreError('invalid', 'Cannot delete INBOX');
      const mb = this.#mailboxByName(accountId, n);
      if (mb === undefined) throw new StoreError('not-found', `Cannot delete mailbox ${n}: it does not exist`);
      const modseq = this.#nextModseq(accountId);
      const rows = this.#q('DELETE FROM entries WHERE mailbox_id = ? RETURNING size, blob_hash').all(mb.id) as Array<{
        size: number;
        blob_hash: string;
      }>;
      const refs = new Map<string, number>();
      let bytes = 0;
      for (const r of rows) {
        refs.set(r.blob_hash, (refs.get(r.blob_hash) ?? 0) + 1);
        bytes += r.size;
      }
      this.#bumpUsage(accountId, -bytes, -rows.length);
      this.#decRefs(ctx, refs);
      this.#q('DELETE FROM expunged WHERE mailbox_id = ?').run(mb.id);
      this.#q('DELETE FROM view_snapshots WHERE mailbox_id = ?').run(mb.id);
      // RFC 5464 §4.1: a mailbox created later with the same name does not inherit annotations.
      this.#q('DELETE FROM metadata WHERE account_id = ? AND mailbox_id = ?').run(accountId, mb.id);
      this.#q('DELETE FROM mailboxes WHERE id = ?').run(mb.id);
      // Subscriptions are kept (RFC 9051 §6.3.7).
      this.#mailboxEvent(ctx, accountId, modseq);
    });
  }

  async setSubscribed(accountId: AccountId, name: string, subscribed: boolean): Promise<void> {
    const n = normalizeMailboxName(name);
    return this.#write((ctx) => {
      this.#requireAccount(accountId);
      const r = subscribed
        ? this.#q('INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?, ?)').run(accountId, n)
        : this.#q('DELETE FROM subscriptions WHERE account_id = ? AND name = ?').run(accountId, n);
      if (r.changes > 0) this.#mailboxEvent(ctx, accountId, this.#nextModseq(accountId));
    });
  }

  async listSubscriptions(accountId: AccountId): Promise<string[]> {
    const rows = this.#q('SELECT name FROM subscriptions WHERE account_id = ? ORDER BY name').all(accountId) as Array<{ name: string }>;
    return rows.map((r) => r.name);
  }

  // ---------------------------------------------------------------------------------------------
  // Annotations (RFC 5464).

  /** The mailbox id column of a target: 0 for server entries; the mailbox must be the account's. */
  #metadataTarget(accountId: number, mailboxId: MailboxId | null): number {
    if (mailboxId === null) return 0;
    const mb = this.#mailboxRow(mailboxId);
    if (mb === undefined || mb.account_id !== accountId) throw new StoreError('not-found', `Cannot find mailbox ${mailboxId}`);
    return mb.id;
  }

  async getMetadata(accountId: AccountId, mailboxId: MailboxId | null): Promise<MetadataEntry[]> {
    const target = this.#metadataTarget(accountId, mailboxId);
    const rows = this.#q('SELECT name, value FROM metadata WHERE account_id = ? AND mailbox_id = ? ORDER BY name').all(accountId, target) as Array<{
      name: string;
      value: Buffer;
    }>;
    return rows.map((r) => ({ name: r.name, value: Buffer.from(r.value) }));
  }

  async setMetadata(accountId: AccountId, mailboxId: MailboxId | null, changes: readonly MetadataChange[], limits: MetadataLimits): Promise<void> {
    return this.#write((ctx) => {
      this.#requireAccount(accountId);
      const target = this.#metadataTarget(accountId, mailboxId);
      const rows = this.#q('SELECT name, length(value) AS size FROM metadata WHERE account_id = ? AND mailbox_id = ?').all(accountId, target) as Array<{
        name: string;
        size: number;
      }>;
      const plan = planMetadata(new Map(rows.map((r) => [r.name, r.size])), this.#metadataBytes(accountId), changes, limits);
      if (plan.upserts.length === 0 && plan.deletes.length === 0) return;
      const put = this.#q('INSERT OR REPLACE INTO metadata (account_id, mailbox_id, name, value) VALUES (?, ?, ?, ?)');
      for (const u of plan.upserts) put.run(accountId, target, u.name, u.value);
      const del = this.#q('DELETE FROM metadata WHERE account_id = ? AND mailbox_id = ? AND name = ?');
      for (const name of plan.deletes) del.run(accountId, target, name);
      const event: ChangeEvent = { accountId, mailboxId, modseq: asModSeq(this.#nextModseq(accountId)), kind: 'metadata' };
      if (plan.eventNames !== undefined) event.entries = plan.eventNames;
      ctx.events.push(event);
    });
  }

  #metadataBytes(accountId: number): number {
    return (this.#q('SELECT coalesce(sum(length(value)), 0) AS n FROM metadata WHERE account_id = ?').get(accountId) as { n: number }).n;
  }

  async metadataUsage(accountId: AccountId): Promise<number> {
    return this.#metadataBytes(accountId);
  }

  async mailboxCounts(mailboxId: MailboxId): Promise<MailboxCounts> {
    const mb = this.#requireMailbox(mailboxId);
    return { messages: mb.messages, unseen: mb.unseen, deleted: mb.deleted, size: mb.size };
  }

  // ---------------------------------------------------------------------------------------------
  // Messages: reads.

  async listEntries(mailboxId: MailboxId): Promise<MessageEntry[]> {
    const rows = this.#qr(`SELECT ${ENTRY_COLS} FROM entries WHERE mailbox_id = ? ORDER BY uid`).all(mailboxId) as EntryRow[];
    return rows.map(toEntry);
  }

  async listViewEntries(mailboxId: MailboxId): Promise<ViewEntries> {
    return this.#views.get(mailboxId);
  }

  /** See viewCacheStats (view-cache.ts). */
  get viewCacheStats(): ViewCacheStats {
    return this.#views.stats;
  }

  /** The narrow reads of the view cache. Synchronous underneath: each answer is one state. */
  #viewSource(): ViewSource {
    const head = (id: number): MailboxHead | null => {
      const r = this.#qr('SELECT account_id, uid_validity, uid_next, highest_modseq, messages FROM mailboxes WHERE id = ?').get(id) as
        | [number, number, number, number, number]
        | undefined;
      return r === undefined ? null : { accountId: r[0], uidValidity: r[1], uidNext: r[2], highestModSeq: r[3], messages: r[4] };
    };
    return {
      head: async (id) => head(id),
      // In primary key order, which is UID order (the cache checks, and sorts if it ever is not).
      rows: async (id) =>
        ((this.#q(`SELECT group_concat(uid || ' ' || modseq || ' ' || flags || ' ' || keywords, char(10)) AS t FROM entries WHERE mailbox_id = ?`).get(id) as {
          t: string | null;
        }).t ?? ''),
      // One read transaction: the count check needs the head and the rows of one state, also when
      // another process writes the same file.
      since: async (id, modseq, uidNext) => this.#readSnapshot((): ViewDelta => {
        // The mailbox row and the rows in one read transaction: the cache checks the count.
        const h = head(id);
        if (h === null) return { head: null, added: [], changed: [], expunged: [] };
        return { head: h, ...this.#deltaRows(id, modseq, uidNext) };
      }),
      loadSnapshot: async (id) => ((this.#qr('SELECT data FROM view_snapshots WHERE mailbox_id = ?').get(id) as [Buffer] | undefined) ?? [null])[0],
      // A job of its own in the write queue (not durable by itself: a lost one is rebuilt). Rows
      // of mailboxes deleted meanwhile are not written, and those left by a crash are removed.
      saveSnapshot: (id, snap) =>
        this.#write(() => {
          this.#q(
            `INSERT INTO view_snapshots (mailbox_id, modseq, stored_at, data) SELECT id, ?, ?, ? FROM mailboxes WHERE id = ? AND uid_validity = ?
               ON CONFLICT (mailbox_id) DO UPDATE SET modseq = excluded.modseq, stored_at = excluded.stored_at, data = excluded.data
               WHERE excluded.modseq >= view_snapshots.modseq`,
          ).run(snap.modseq, Date.now(), snap.data, id, snap.uidValidity);
          this.#q('DELETE FROM view_snapshots WHERE mailbox_id NOT IN (SELECT id FROM mailboxes)').run();
        }, CONTENT_ONLY),
      warmList: async (minMessages) =>
        (
          this.#qr(
            warmListSql('?'),
          ).all(Number.isFinite(minMessages) ? minMessages : Number.MAX_SAFE_INTEGER) as Array<[MailboxId, number]>
        ).map(([mailboxId, messages]) => ({ mailboxId, messages })),
    };
  }

  async listSortKeys(mailboxId: MailboxId): Promise<EntrySortKeys[]> {
    const rows = this.#qr(
      `SELECT ${SORT_KEY_COLS} FROM entries e JOIN blobs b ON b.hash = e.blob_hash JOIN sort_keys k ON k.id = b.id WHERE e.mailbox_id = ? ORDER BY e.uid`,
    ).all(mailboxId) as SortKeyRow[];
    return rows.map(toSortKeys);
  }

  async rankSortKey(mailboxId: MailboxId, key: SortKeyName): Promise<SortRanks> {
    if (key === 'ARRIVAL' || key === 'SIZE' || key === 'DATE') {
      // Integer keys: the (uid, key) pairs straight into typed arrays (facteur_pair), ranked by
      // one numeric sort here; no text made or read.
      const pairs = this.#pairs;
      pairs.n = 0;
      this.#q(`SELECT count(facteur_pair(uid, ${SORT_INDEX_COLUMN[key]})) FROM sort_index WHERE mailbox_id = ?`).pluck().get(mailboxId);
      const got = rankNumbers(pairs.a.slice(0, pairs.n), pairs.b.slice(0, pairs.n));
      // Nothing kept between statements.
      this.#pairs = newPairs();
      return got;
    }
    // One string for the whole mailbox (materialising a row per message costs ten times more):
    // the UIDs of each distinct key value, groups in key order. Text keys compare as UTF-8 bytes
    // (BINARY), the stored keys being casemapped at ingest (mail/sort-keys.ts).
    const col = SORT_INDEX_COLUMN[key];
    const text = this.#q(
      `SELECT group_concat(g, ';' ORDER BY k) FROM (SELECT ${col} AS k, group_concat(uid) AS g FROM sort_index WHERE mailbox_id = ? GROUP BY ${col})`,
    )
      .pluck()
      .get(mailboxId) as string | null;
    return parseRankGroups(text);
  }

  async listThreadKeys(mailboxId: MailboxId): Promise<ThreadKeyColumns> {
    const text = this.#q(
      "SELECT group_concat(uid || ' ' || thread, ';') FROM sort_index WHERE mailbox_id = ?",
    )
      .pluck()
      .get(mailboxId) as string | null;
    return parseThreadRows(text);
  }

  async getEntries(mailboxId: MailboxId, uids: readonly Uid[]): Promise<MessageEntry[]> {
    // No mailbox row first: a mailbox that is gone has no entries either (FETCH reads a chunk
    // of entries per 500 messages, and the row read was a third of that).
    return this.#selectRows({ id: mailboxId }, uids).map(toEntry);
  }

  async getEntryFacts(mailboxId: MailboxId, uids: readonly Uid[], keep: boolean): Promise<EntryFacts[]> {
    return this.#factsCache.lookup(mailboxId, uids, keep, (missing) => this.#selectRows({ id: mailboxId }, missing).map(toFacts));
  }


  async findEntries(mailboxId: MailboxId, column: 'pid' | 'blobHash', values: readonly string[]): Promise<MessageEntry[]> {
    if (values.length === 0) return [];
    const col = column === 'pid' ? 'pid' : 'blob_hash';
    const rows = this.#qr(
      `SELECT ${ENTRY_COLS} FROM entries WHERE mailbox_id = ? AND ${col} IN (SELECT value FROM json_each(?)) ORDER BY uid`,
    ).all(mailboxId, JSON.stringify(values)) as EntryRow[];
    return rows.map(toEntry);
  }

  async highestUid(mailboxId: MailboxId): Promise<number> {
    const row = this.#q('SELECT max(uid) AS uid FROM entries WHERE mailbox_id = ?').get(mailboxId) as { uid: number | null };
    return row.uid ?? 0;
  }

  async changesSince(mailboxId: MailboxId, since: ModSeq, knownUidNext: Uid): Promise<MailboxChanges> {
    // Every IMAP command's sync asks this, and most often nothing changed. No entry has a
    // modseq above HIGHESTMODSEQ or a UID at or above UIDNEXT (checkConsistency checks both),
    // and an expunge raises HIGHESTMODSEQ to its modseq in the same write; so while
    // HIGHESTMODSEQ is still `since` and UIDNEXT is not above the caller's, the three reads
    // below would find nothing (an operator's restore may add entries with old modseqs, but it
    // raises UIDNEXT): one statement says so.
    const entry = this.#head(mailboxId);
    if (entry === undefined) throw new StoreError('not-found', `Cannot find mailbox ${mailboxId}`);
    const head = entry.head;
    const highest = head[0];
    if (highest === since && head[1] <= knownUidNext) return { highestModSeq: since, added: [], changed: [], expunged: [] };
    // The question the last reader of this mailbox asked since the last write: the sessions of a
    // mailbox (a client's, its IDLE connection's) were mostly at the same point before a change,
    // and each asks for it once. The same state, so the same answer, shared.
    const last = entry.last;
    if (last !== null && last.since === since && last.uidNext === knownUidNext) return last.changes;
    // Otherwise the three other reads, as one statement: one state for all of them (a statement
    // is its own read transaction) at the cost of one statement, not three plus BEGIN and COMMIT.
    // They see at least the state of `highest` (read before them); a write by another process in
    // between (a command-line import) can only add rows above it, which the next sync reports
    // again: never a change lost.
    const changes = this.#changesSince(mailboxId, since, knownUidNext, highest);
    this.stats.deltaReads++;
    entry.last = { since, uidNext: knownUidNext, changes };
    return changes;
  }

  /**
   * The mailbox's (HIGHESTMODSEQ, UIDNEXT) and the last changesSince answer, from #heads when it
   * holds them, else the head read and kept; undefined for a mailbox that does not exist. Every
   * command of every IMAP session asks, and between two write batches most ask about the same
   * few mailboxes again.
   * - This connection's writes all run in #flush, which empties #heads first: a session's own
   *   write is seen by its next sync, as when the row was read each time.
   * - Other processes (the command-line tool) write the same file: PRAGMA data_version changes
   *   when another connection committed, and #heads is emptied then. It is checked at most
   *   HEADS_CHECK_MS before each use (a check costs half a head read), so a change committed by
   *   another process is seen by every sync that starts HEADS_CHECK_MS after its commit; one
   *   that starts sooner is as one that ran just before the commit, and the next reports it.
   *   Never a change lost: the view asks from its own modseq each time.
   */
  #head(mailboxId: number): HeadEntry | undefined {
    this.#forgetOthersWrites();
    let entry = this.#heads.get(mailboxId);
    if (entry === undefined) {
      const head = this.#qr('SELECT highest_modseq, uid_next FROM mailboxes WHERE id = ?').get(mailboxId) as [number, number] | undefined;
      this.stats.headReads++;
      if (head === undefined) return undefined;
      // Bounded: emptied rather than aged (it is emptied at every write batch anyway).
      if (this.#heads.size >= MAX_HEADS) this.#heads.clear();
      entry = { head, last: null };
      this.#heads.set(mailboxId, entry);
    }
    return entry;
  }

  /** Empties what is kept between this connection's writes (#heads, #mailboxes) when another
   * connection has committed since the last look (at most HEADS_CHECK_MS ago; see #head). */
  #forgetOthersWrites(): void {
    const now = performance.now();
    if (now - this.#headsCheckedAt <= HEADS_CHECK_MS) return;
    const version = this.#q('PRAGMA data_version').pluck().get() as number;
    if (version !== this.#headsVersion) {
      this.#heads.clear();
      this.#mailboxes.clear();
      this.#headsVersion = version;
    }
    this.#headsCheckedAt = now;
  }

  /**
   * A mailbox's row with its subscription, by account and normalized name, or null. Kept from
   * one write batch to the next like the heads (#head): every change to a mailbox row or a
   * subscription is a write of this connection, which empties #mailboxes, or another process's,
   * seen through PRAGMA data_version. APPEND, STATUS and SELECT name their mailbox each time
   * (3% of the thread's busy samples in the logout=0 mix went to these reads and LIST's).
   */
  #mailboxNamed(accountId: number, name: string): MailboxListRow | null {
    this.#forgetOthersWrites();
    let listing = this.#mailboxes.get(accountId);
    const kept = listing?.byName.get(name);
    if (kept !== undefined) return kept;
    // Listed whole since the last write: a name it lacks is no mailbox.
    if (listing !== undefined && listing.all !== null) return null;
    const row = this.#q(`SELECT m.*, ${SUBSCRIBED} AS subscribed FROM mailboxes m WHERE m.account_id = ? AND m.name = ?`).get(accountId, name) as
      | MailboxListRow
      | undefined;
    this.stats.mailboxReads++;
    if (row === undefined) return null;
    if (listing === undefined) {
      if (this.#mailboxes.size >= MAX_HEADS) this.#mailboxes.clear();
      listing = { all: null, byName: new Map() };
      this.#mailboxes.set(accountId, listing);
    }
    listing.byName.set(name, row);
    return row;
  }

  /** Every mailbox row of an account, INBOX first, then by name; kept as #mailboxNamed says. */
  #mailboxList(accountId: number): readonly MailboxListRow[] {
    this.#forgetOthersWrites();
    const listing = this.#mailboxes.get(accountId);
    if (listing !== undefined && listing.all !== null) return listing.all;
    const rows = this.#q(
      `SELECT m.*, s.name IS NOT NULL AS subscribed FROM mailboxes m
         LEFT JOIN subscriptions s ON s.account_id = m.account_id AND s.name = m.name
       WHERE m.account_id = ? ORDER BY m.name != 'INBOX', m.name`,
    ).all(accountId) as MailboxListRow[];
    this.stats.mailboxReads++;
    if (listing === undefined && this.#mailboxes.size >= MAX_HEADS) this.#mailboxes.clear();
    this.#mailboxes.set(accountId, { all: rows, byName: new Map(rows.map((r) => [r.name, r])) });
    return rows;
  }

  /** Runs reads in one read transaction: one state for all of them, and one WAL read lock
   * instead of one per statement (about 8 us each outside a transaction). Synchronous, so no
   * write job of this connection can start in between. */
  #readSnapshot<T>(fn: () => T): T {
    if (this.#db.inTransaction) return fn();
    this.#q('BEGIN').run();
    try {
      return fn();
    } finally {
      // An error may have ended it already (SQLite rolls back on some): never mask that error.
      if (this.#db.inTransaction) this.#q('COMMIT').run();
    }
  }

  #changesSince(mailboxId: MailboxId, since: ModSeq, knownUidNext: Uid, highest: number): MailboxChanges {
    const d = this.#deltaRows(mailboxId, since, knownUidNext);
    const list = sharedFlagLists();
    const known = (r: ViewRow): FlagUpdate => ({ uid: asUid(r[0]), modseq: asModSeq(r[1]), flags: list(r[2], r[3]) });
    return { highestModSeq: asModSeq(highest), added: d.added.map(known), changed: d.changed.map(known), expunged: d.expunged.map(asUid) };
  }

  /**
   * What changed in a mailbox after modseq `since` for a reader that knew the UIDs below
   * `uidNext`, in one statement (its own read snapshot): rows added (UIDs from uidNext on),
   * changed (+uid: searched by (mailbox_id, modseq), not by the UID range, which is the whole
   * mailbox), and the UIDs expunged (those the reader never knew are left out), each ascending.
   * Only what a view tracks (uid, modseq, flags), not the wide rows: a session catching up after
   * another one's STORE 1:* reads 100,000 of them. For changesSince and the view cache's deltas.
   */
  #deltaRows(mailboxId: number, since: number, uidNext: number): { added: ViewRow[]; changed: ViewRow[]; expunged: number[] } {
    const rows = this.#qr(
      `SELECT 0, uid, modseq, flags, keywords FROM entries WHERE mailbox_id = @m AND uid >= @u
       UNION ALL
       SELECT 1, uid, modseq, flags, keywords FROM entries WHERE mailbox_id = @m AND modseq > @s AND +uid < @u
       UNION ALL
       SELECT 2, uid, 0, 0, '' FROM expunged WHERE mailbox_id = @m AND modseq > @s AND uid < @u
       ORDER BY 1, 2`,
    ).all({ m: mailboxId, s: since, u: uidNext }) as Array<[number, number, number, number, string]>;
    const added: ViewRow[] = [];
    const changed: ViewRow[] = [];
    const expunged: number[] = [];
    for (const r of rows) {
      if (r[0] === 2) expunged.push(r[1]);
      else (r[0] === 0 ? added : changed).push([r[1], r[2], r[3], r[4]]);
    }
    return { added, changed, expunged };
  }

  async getParsed(blobHash: string): Promise<ParsedMessage> {
    const cached = this.#parsedCache.get(blobHash);
    if (cached !== undefined) return cached;
    const row = this.#q('SELECT c.parsed, s.body FROM blobs b JOIN blob_content c ON c.id = b.id JOIN blob_text s ON s.id = b.id WHERE b.hash = ?').get(blobHash) as
      | { parsed: string; body: string }
      | undefined;
    if (row === undefined) throw new StoreError('not-found', `Cannot find parse record of ${blobHash}`);
    const parsed = JSON.parse(row.parsed) as ParsedMessage;
    parsed.text = row.body; // set, not spread: see toEntry
    this.#parsedCache.set(blobHash, parsed, parsedWeight(row.parsed.length, row.body.length));
    return parsed;
  }

  #range(size: number, start?: number, end?: number): [number, number] {
    const s = Math.min(Math.max(0, start ?? 0), size);
    const e = Math.min(Math.max(s, end ?? size), size);
    return [s, e];
  }

  /** The blob's size, and its bytes [start, end) when they are in the database (null when in a
   * file): one statement, where a blob row and then its content were two (FETCH of a body runs
   * this once per message). The range is clamped to the blob as #range does: substr stops at
   * the end of the data, and its length is never negative. */
  #inlineRange(blobHash: string, start?: number, end?: number): { size: number; data: Buffer | null } {
    const s = Math.max(0, start ?? 0);
    const len = Math.max(0, (end ?? Number.MAX_SAFE_INTEGER) - s);
    // substr on a BLOB counts bytes, 1-based.
    const row = this.#qr(
      'SELECT b.size, CASE WHEN b.in_file = 0 THEN coalesce(substr(c.data, ?, ?), zeroblob(0)) END FROM blobs b JOIN blob_content c ON c.id = b.id WHERE b.hash = ?',
    ).get(s + 1, Math.min(len, 0x7fffffff), blobHash) as [number, Buffer | null] | undefined;
    if (row === undefined) throw new StoreError('not-found', `Cannot read message ${blobHash}: no such blob`);
    return { size: row[0], data: row[1] };
  }

  async readBlob(blobHash: string, start?: number, end?: number): Promise<Buffer> {
    const cached = this.#blobCache.get(blobHash, start, end);
    if (cached !== undefined) return cached;
    // Read from the start where the prefix can be kept (read-cache.ts): the same statement.
    const fromStart = readFromStart(start, end);
    const blob = this.#inlineRange(blobHash, fromStart ? 0 : start, end);
    if (blob.data !== null) {
      if (!fromStart) return blob.data;
      // Only bytes from the database: read and kept in one synchronous step, so a removal that
      // settles meanwhile (and deletes the hash from the cache) cannot be undone by this read.
      this.#blobCache.put(blobHash, blob.size, blob.data);
      const [s, e] = this.#range(blob.size, start, end);
      return s === 0 && e === blob.data.length ? blob.data : blob.data.subarray(s, e);
    }
    const [s, e] = this.#range(blob.size, start, end);
    if (e === s) return Buffer.alloc(0);
    const fh = await this.#openBlobFile(blobHash);
    try {
      const buf = Buffer.allocUnsafe(e - s);
      let off = 0;
      while (off < buf.length) {
        const { bytesRead } = await fh.read(buf, off, buf.length - off, s + off);
        if (bytesRead === 0) throw new StoreError('io', `Cannot read message ${blobHash}: file is short`);
        off += bytesRead;
      }
      return buf;
    } finally {
      await fh.close();
    }
  }

  async #openBlobFile(hash: string): Promise<import('node:fs/promises').FileHandle> {
    try {
      return await open(blobPath(this.#blobRoot, hash), 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new StoreError('not-found', `Cannot read message ${hash}: no such blob`);
      }
      throw new StoreError('io', `Cannot read message ${hash}: ${String(err)}`);
    }
  }

  async *streamBlob(blobHash: string, start?: number, end?: number): AsyncIterable<Buffer> {
    const blob = this.#inlineRange(blobHash, start, end);
    if (blob.data !== null) {
      const data = blob.data;
      for (let off = 0; off < data.length; off += STREAM_CHUNK) yield data.subarray(off, off + STREAM_CHUNK);
      return;
    }
    const [s, e] = this.#range(blob.size, start, end);
    const fh = await this.#openBlobFile(blobHash);
    try {
      let pos = s;
      while (pos < e) {
        const buf = Buffer.allocUnsafe(Math.min(STREAM_CHUNK, e - pos));
        const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
        if (bytesRead === 0) throw new StoreError('io', `Cannot read message ${blobHash}: file is short`);
        pos += bytesRead;
        yield bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
      }
    } finally {
      await fh.close();
    }
  }

  async searchText(mailboxId: MailboxId, query: TextQuery): Promise<Set<Uid>> {
    const needle = query.value;
    const lower = needle.toLowerCase();
    const base = 'FROM entries e JOIN blobs b ON b.hash = e.blob_hash JOIN blob_text s ON s.id = b.id WHERE e.mailbox_id = ?';
    // The index query runs once (MATERIALIZED) and drives the join (CROSS JOIN fixes the order):
    // each hit finds its entries through entries_blob, instead of every entry of the mailbox
    // probing the hits.
    // Blobs not in the index yet (above the mark, see #scheduleIndex) are candidates too; one
    // statement, so the mark and the index are read from the same snapshot of search.db.
    const indexed = (select: string): string =>
      `WITH hits AS MATERIALIZED (
         SELECT rowid FROM ${SEARCH_SCHEMA}.search WHERE search MATCH ?
         UNION ALL
         SELECT id FROM blob_text WHERE id > coalesce((SELECT value FROM ${SEARCH_SCHEMA}.search_state WHERE name = '${MARK_INDEXED}'), 0))
       SELECT ${select} FROM hits h CROSS JOIN blobs b ON b.id = h.rowid CROSS JOIN entries e ON e.blob_hash = b.hash
         CROSS JOIN blob_text s ON s.id = h.rowid WHERE e.mailbox_id = ?`;
    if (query.field === 'header') {
      const name = (query.header ?? '').toLowerCase();
      if (name.length === 0) throw new StoreError('invalid', 'Cannot search a header without its name');
      if (UNINDEXED_HEADER_FIELDS.has(name)) return this.#searchRawHeaders(mailboxId, name, needle);
      const match = trigramQuery(needle, ['headers']);
      const rows = this.#candidates(mailboxId, match, indexed('e.uid, s.headers'), `SELECT e.uid, s.headers ${base}`) as Array<[number, string]>;
      return new Set(rows.filter((r) => headerContains(r[1], name, needle)).map((r) => asUid(r[0])));
    }
    if (needle.length === 0) {
      const rows = this.#qr('SELECT uid FROM entries WHERE mailbox_id = ?').all(mailboxId) as Array<[number]>;
      return new Set(rows.map((r) => asUid(r[0])));
    }
    const cols = query.field === 'text' ? [...SEARCH_COLUMNS] : [SEARCH_COLUMN_OF[query.field]];
    // The text the match is verified on; NUL between columns so no match spans two of them.
    const text = cols.map((c) => `s.${c}`).join(' || char(0) || ');
    // The index (3+ characters) narrows the candidates; shorter needles scan the mailbox.
    const match = trigramQuery(needle, query.field === 'text' ? null : cols);
    const rows = this.#candidates(mailboxId, match, indexed(`e.uid, ${text}`), `SELECT e.uid, ${text} ${base}`) as Array<[number, string]>;
    return new Set(rows.filter((r) => r[1].toLowerCase().includes(lower)).map((r) => asUid(r[0])));
  }

  /**
   * The rows a text search verifies: through the index (`indexedSql`) when the needle gives a
   * MATCH, else every message of the mailbox (`scanSql`). The index is derived data: should
   * SQLite find search.db damaged, the search scans instead (the same answer, slower), with a
   * warning, and the file is marked to be moved aside and built again at the next open
   * (prepareSearchDb).
   */
  #candidates(mailboxId: MailboxId, match: string | null, indexedSql: string, scanSql: string): unknown[] {
    if (match !== null) {
      try {
        return this.#sq(indexedSql).all(match, mailboxId);
      } catch (err) {
        if (!(err as { code?: string }).code?.startsWith('SQLITE_CORRUPT')) throw err;
        if (!this.#searchDamaged) {
          this.#searchDamaged = true;
          process.emitWarning(`store: the full-text index cannot be read (${String(err)}); SEARCH reads the messages instead until the next open rebuilds it`);
          try {
            writeFileSync(join(this.#dir, SEARCH_REBUILD), '');
          } catch {
            // Without the mark the next open keeps the file; SEARCH still answers by reading.
          }
        }
      }
    }
    return this.#qr(scanSql).all(mailboxId);
  }

  /** HEADER search on a field kept out of the index: reads each message's header bytes. */
  async #searchRawHeaders(mailboxId: MailboxId, name: string, needle: string): Promise<Set<Uid>> {
    const rows = this.#qr(
      'SELECT e.uid, e.blob_hash, b.header_end FROM entries e JOIN blobs b ON b.hash = e.blob_hash WHERE e.mailbox_id = ?',
    ).all(mailboxId) as Array<[number, string, number]>;
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
    for (const i of inputs) {
      if (i.internalDate !== undefined && !Number.isSafeInteger(i.internalDate)) {
        throw new StoreError('invalid', `Cannot append: internal date ${i.internalDate} is not an integer of milliseconds`);
      }
    }
    const blobs: IngestBlob[] = [];
    try {
      for (const input of inputs) blobs.push(await this.#prepareBlob(input.raw, input.parsed));
      return await this.#write((ctx) => {
        const mailbox = this.#requireMailbox(mailboxId);
        const account = this.#requireAccount(mailbox.account_id);
        const bytes = inputs.reduce((n, i) => n + i.raw.length, 0);
        if (this.#overQuota(account, bytes, inputs.length)) {
          throw new StoreError('over-quota', 'Cannot append: the account is over its quota');
        }
        const now = Date.now();
        return blobs.map((blob, i) =>
          // Read again for each later message: the previous one moved its UIDNEXT.
          this.#ingest(ctx, account, i === 0 ? mailbox : this.#requireMailbox(mailboxId), blob, flagSets[i] ?? { mask: 0, keywords: [] }, inputs[i]?.internalDate ?? now),
        );
      }, CONTENT_ONLY);
    } finally {
      for (const b of blobs) this.#release(b);
    }
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
    try {
      return await this.#write((ctx) => {
        const now = Date.now();
        return distinct.map((t, i): DeliveryOutcome => {
          const account = this.#accountRow(t.accountId);
          if (account === undefined) return { accountId: t.accountId, ok: false, reason: 'no-account' };
          if (this.#overQuota(account, raw.length, 1)) return { accountId: t.accountId, ok: false, reason: 'over-quota' };
          let mailbox: MailboxRow | undefined;
          if (t.mailbox !== undefined) {
            try {
              mailbox = this.#mailboxByName(account.id, normalizeMailboxName(t.mailbox));
            } catch {
              mailbox = undefined; // an invalid name falls back to INBOX like a missing one
            }
          }
          mailbox ??= this.#mailboxByName(account.id, 'INBOX');
          if (mailbox === undefined) throw new StoreError('io', `Account ${account.id} has no INBOX`);
          const r = this.#ingest(ctx, account, mailbox, blob, flagSets[i] ?? { mask: 0, keywords: [] }, now);
          return { accountId: t.accountId, ok: true, mailboxId: asMailboxId(mailbox.id), uid: r.uid };
        });
      }, CONTENT_ONLY);
    } finally {
      this.#release(blob);
    }
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
    return this.#write((ctx) => {
      const mailbox = this.#requireMailbox(mailboxId);
      const priorModSeq = asModSeq(mailbox.highest_modseq);
      if (uids.length === 0) return { updated: [], modified: [], priorModSeq, gone: [] };
      const since = unchangedSince ?? Number.MAX_SAFE_INTEGER;
      const read = this.#flagStates(mailboxId, uids, since);
      const { where, args } = read;
      const plan = planFlagChange(read.groups, mode, change);
      const gone = plan.total === uids.length ? [] : read.absent();
      // RFC 7162 §3.1.3: entries changed after UNCHANGEDSINCE are refused (MODIFIED).
      const modified = plan.refused === 0 ? [] : read.refused();
      if (plan.transitions.length === 0) return { updated: [], modified, priorModSeq, gone };
      // One new modseq for the whole STORE (RFC 7162 §3.1: a different one per command).
      const modseq = this.#nextModseq(mailbox.account_id);
      const m = asModSeq(modseq);
      const guard = plan.refused === 0 ? '' : ' AND modseq <= ?';
      const guardArgs = plan.refused === 0 ? [] : [since];
      // The rows written are read back by their new modseq (a fresh one, so exactly them) through
      // entries_modseq, in UID order: half the cost of UPDATE ... RETURNING, which SQLite
      // buffers row by row. As one text, not a row each: a row array per UID costs ten times
      // the read itself at 100,000 UIDs (allocation and collection).
      const changedRows = (): Array<[number, number, string]> =>
        parseFlagRows(
          this.#q(
            `SELECT group_concat(uid || ' ' || flags || ' ' || keywords, char(10)) AS t FROM entries WHERE mailbox_id = ? AND modseq = ?`,
          ).pluck().get(mailboxId, modseq) as string | null,
        );
      let updated: FlagUpdate[];
      if (plan.transitions.length <= MAX_FLAG_TRANSITIONS) {
        // Every state that changes in ONE pass over the set: a CASE maps each row's state to its
        // new one. One UPDATE per state walked the set once per state (3.9 of them per STORE in
        // imaptest's mix, each parsing the UID list again).
        const cases = transitionCases(plan.transitions);
        this.#q(`UPDATE entries SET ${cases.set}, modseq = ? WHERE ${where}${guard} AND ${cases.from}`).run(...cases.setArgs, modseq, ...args, ...guardArgs, ...cases.fromArgs);
        if (read.rows !== null) {
          // The set's rows were read before the write, in this same job: the rows written are
          // exactly those of an unrefused state that changes, so nothing is read back.
          updated = updatesFromRows(read.rows, since, plan.transitions, m);
        } else if (plan.transitions.length === 1) {
          // One new state: the UIDs alone (the index covers them), one shared flag list.
          const to = plan.transitions[0]!.to;
          const list = flagList(to.mask, to.keywords);
          const uids = parseUidList(this.#q('SELECT group_concat(uid) FROM entries WHERE mailbox_id = ? AND modseq = ?').pluck().get(mailboxId, modseq) as string | null);
          updated = uids.map((uid) => ({ uid: asUid(uid), modseq: m, flags: list }));
        } else {
          const list = sharedFlagLists();
          updated = changedRows().map((r) => ({ uid: asUid(r[0]), modseq: m, flags: list(r[1], r[2]) }));
        }
      } else if (change.keywords.length === 0 && mode !== 'set') {
        // Many states, system flags only: one UPDATE as bit operations.
        const add = mode === 'add' ? change.mask : 0;
        const remove = mode === 'remove' ? change.mask : 0;
        const next = '((flags | ?) & ~?)';
        this.#q(`UPDATE entries SET flags = ${next}, modseq = ? WHERE ${where} AND ${next} != flags${guard}`).run(add, remove, modseq, ...args, add, remove, ...guardArgs);
        const list = sharedFlagLists();
        updated = changedRows().map((r) => ({ uid: asUid(r[0]), modseq: m, flags: list(r[1], r[2]) }));
      } else {
        // Many distinct states and keywords (a keyword set on every message): row by row.
        updated = [];
        const to = new Map(plan.transitions.map((t) => [`${t.from.mask} ${t.from.keywords}`, t.to]));
        const list = sharedFlagLists();
        const upd = this.#q('UPDATE entries SET flags = ?, keywords = ?, modseq = ? WHERE mailbox_id = ? AND uid = ?');
        for (const r of this.#qr(`SELECT uid, flags, keywords FROM entries WHERE ${where}${guard} ORDER BY uid`).all(...args, ...guardArgs) as Array<[number, number, string]>) {
          const next = to.get(`${r[1]} ${r[2]}`);
          if (next === undefined) continue;
          upd.run(next.mask, next.keywords, modseq, mailboxId, r[0]);
          updated.push({ uid: asUid(r[0]), modseq: m, flags: list(next.mask, next.keywords) });
        }
      }
      this.#bumpMailbox(mailboxId, { messages: 0, unseen: plan.unseen, deleted: plan.deleted, size: 0 }, modseq, null);
      ctx.events.push({ accountId: asAccountId(mailbox.account_id), mailboxId: asMailboxId(mailboxId), modseq: m, kind: 'flags' });
      return { updated, modified, priorModSeq, gone };
    }, CONTENT_ONLY);
  }

  /**
   * What a STORE reads before it writes: the distinct flag states of the set's rows, each with
   * its count and whether UNCHANGEDSINCE `since` refuses it; the set's UIDs not in the store and
   * the refused ones, each asked only when needed; and the condition that names the set's rows
   * in the writes.
   *
   * A dense set (see denseSpan: a sequence range of a session's view) is read as the rows of its
   * range, kept by the set here: one statement that parses no UID list, and when the range holds
   * no row outside the set (the usual case: a session knows every UID below its UIDNEXT), the
   * writes name the range too. Another set of at most STATE_ROWS_MAX UIDs is read as its rows
   * too (a plain scan, grouped here: no sorter, as a GROUP BY needs). Either way `rows` holds the
   * set's rows, and the STORE needs no read after its write (updatesFromRows); with imaptest's
   * STOREs of 10-60 random UIDs this and the one-pass UPDATE took setFlags from about 430 to 280
   * µs of CPU. A larger set is one GROUP BY over it, its changed rows read back by modseq.
   */
  #flagStates(
    mailboxId: number,
    uids: readonly Uid[],
    since: number,
  ): { groups: FlagGroup[]; rows: StateRow[] | null; where: string; args: unknown[]; absent: () => Uid[]; refused: () => Uid[] } {
    const span = denseSpan(uids);
    if (span !== null) {
      const rows = parseStateRows(
        this.#q(
          `SELECT group_concat(uid || ' ' || modseq || ' ' || flags || ' ' || keywords, char(10)) FROM entries WHERE mailbox_id = ? AND uid BETWEEN ? AND ?`,
        )
          .pluck()
          .get(mailboxId, span.lo, span.hi) as string | null,
      );
      const named = new Set<number>(uids);
      const kept = rows.filter((r) => named.has(r[0]));
      const cond = kept.length < rows.length ? this.#uidCondition(uids) : { sql: 'uid BETWEEN ? AND ?', args: [span.lo, span.hi] };
      return this.#statesOfRows(kept, uids, since, `mailbox_id = ? AND ${cond.sql}`, [mailboxId, ...cond.args]);
    }
    const cond = this.#uidCondition(uids);
    const where = `mailbox_id = ? AND ${cond.sql}`;
    const args = [mailboxId, ...cond.args];
    if (uids.length <= STATE_ROWS_MAX) {
      // A small set (a client's STORE of a few messages): its rows, grouped here.
      const rows = parseStateRows(
        this.#q(`SELECT group_concat(uid || ' ' || modseq || ' ' || flags || ' ' || keywords, char(10)) FROM entries WHERE ${where}`)
          .pluck()
          .get(...args) as string | null,
      );
      return this.#statesOfRows(rows, uids, since, where, args);
    }
    // One pass over the set: its distinct flag states, each with its count (and whether
    // UNCHANGEDSINCE refuses it); the writes touch only the states that change.
    const groups = (
      this.#qr(`SELECT flags, keywords, modseq > ?, count(*) FROM entries WHERE ${where} GROUP BY 1, 2, 3`).all(since, ...args) as Array<
        [number, string, number, number]
      >
    ).map((r): FlagGroup => ({ mask: r[0], keywords: r[1], refused: r[2] !== 0, count: r[3] }));
    return {
      groups,
      rows: null,
      where,
      args,
      absent: () => absentUids(uids, (this.#qr(`SELECT uid FROM entries WHERE ${where}`).all(...args) as Array<[number]>).map((r) => r[0])),
      refused: () => (this.#qr(`SELECT uid FROM entries WHERE ${where} AND modseq > ? ORDER BY uid`).all(...args, since) as Array<[number]>).map((r) => asUid(r[0])),
    };
  }

  /** #flagStates from the set's rows, read whole: the groups, absent and refused UIDs counted here. */
  #statesOfRows(
    rows: StateRow[],
    uids: readonly Uid[],
    since: number,
    where: string,
    args: unknown[],
  ): { groups: FlagGroup[]; rows: StateRow[]; where: string; args: unknown[]; absent: () => Uid[]; refused: () => Uid[] } {
    return {
      groups: flagGroupsOfRows(rows, since),
      rows,
      where,
      args,
      absent: () => absentUids(uids, rows.map((r) => r[0])),
      refused: () => rows.filter((r) => r[1] > since).map((r) => asUid(r[0])).sort((a, b) => a - b),
    };
  }

  async copy(from: MailboxId, uids: readonly Uid[], to: MailboxId, options: CopyOptions = {}): Promise<CopyResult> {
    return this.#write((ctx) => {
      const r = this.#transfer(ctx, from, uids, to, false, options.whole === true);
      return { uidValidity: r.uidValidity, pairs: r.pairs, gone: r.gone };
    }, CONTENT_ONLY);
  }

  async move(from: MailboxId, uids: readonly Uid[], to: MailboxId, options: CopyOptions = {}): Promise<CopyResult & { expunged: Uid[] }> {
    return this.#write((ctx) => this.#transfer(ctx, from, uids, to, true, options.whole === true), CONTENT_ONLY);
  }

  async expunge(mailboxId: MailboxId, uids?: readonly Uid[], onlyDeleted = false): Promise<Uid[]> {
    return this.#write((ctx) => {
      const mailbox = this.#requireMailbox(mailboxId);
      // The mailbox's count of \Deleted messages (kept by every write; checkConsistency checks
      // it): none, so no row to read. IMAP clients send EXPUNGE far more often than there is
      // something to expunge, and the read scans every message the session knows.
      if ((uids === undefined || onlyDeleted) && mailbox.deleted === 0) return [];
      let rows: EntryRow[];
      if (uids === undefined) {
        rows = this.#qr(`SELECT ${ENTRY_COLS} FROM entries WHERE mailbox_id = ? AND (flags & ${FLAG_DELETED}) != 0 ORDER BY uid`).all(
          mailboxId,
        ) as EntryRow[];
      } else {
        // IMAP's EXPUNGE names every message the session knows: only the \Deleted ones are read.
        rows = this.#selectRows(mailbox, uids, onlyDeleted);
      }
      if (rows.length === 0) return [];
      const modseq = this.#nextModseq(mailbox.account_id);
      this.#removeEntries(ctx, mailbox, rows, modseq, false);
      return rows.map((r) => asUid(r[1]));
    }, CONTENT_ONLY);
  }

  async hideFromPop3(mailboxId: MailboxId, uids: readonly Uid[]): Promise<void> {
    // Invisible to IMAP, so no modseq and no event: IMAP clients must not see a change.
    return this.#write(() => {
      this.#requireMailbox(mailboxId);
      if (uids.length === 0) return;
      const cond = this.#uidCondition(uids);
      this.#q(`UPDATE entries SET pop3_hidden = 1 WHERE mailbox_id = ? AND ${cond.sql}`).run(mailboxId, ...cond.args);
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Restore and import.

  async restoreMailbox(accountId: AccountId, input: MailboxRestore): Promise<Mailbox> {
    const m = checkMailboxRestore(input);
    return this.#write((ctx) => {
      this.#requireAccount(accountId);
      const existing = this.#mailboxByName(accountId, m.name);
      // UIDNEXT only grows when a message is added: 1 means none ever was, so no client can
      // hold UIDs of the old identity.
      if (existing !== undefined && existing.uid_next !== 1) {
        throw new StoreError('conflict', `Cannot restore mailbox ${m.name}: it exists and has held messages`);
      }
      const clash = this.#q('SELECT id, uid_next FROM mailboxes WHERE uid_validity = ?').get(m.uidValidity) as
        | { id: number; uid_next: number }
        | undefined;
      const renumber = clash !== undefined && clash.id !== existing?.id;
      // A mailbox that never held a message may give its UIDVALIDITY up (no client holds UIDs
      // under it): UIDVALIDITYs are creation times, so an import's often meets a new mailbox's.
      if (renumber && clash.uid_next !== 1) {
        throw new StoreError('conflict', `Cannot restore mailbox ${m.name}: UIDVALIDITY ${m.uidValidity} is taken by another mailbox`);
      }
      let modseq = this.#nextModseq(accountId);
      if (m.highestModSeq !== null && m.highestModSeq > modseq) {
        this.#q('UPDATE accounts SET modseq = ? WHERE id = ?').run(m.highestModSeq, accountId);
        modseq = m.highestModSeq;
      }
      // RFC 9051 §2.3.1.1: a UIDVALIDITY is never given again, so the counter passes this one.
      this.#q("UPDATE counters SET value = max(value, ?) WHERE name = 'uidvalidity'").run(m.uidValidity);
      if (renumber) this.#q('UPDATE mailboxes SET uid_validity = ? WHERE id = ?').run(this.#nextUidValidity(), clash.id);
      const highest = m.highestModSeq ?? modseq;
      let row: MailboxRow;
      if (existing === undefined) {
        this.#createMissingParents(accountId, m.name, modseq);
        row = this.#q(
          'INSERT INTO mailboxes (account_id, name, uid_validity, uid_next, highest_modseq, special_use) VALUES (?, ?, ?, ?, ?, ?) RETURNING *',
        ).get(accountId, m.name, m.uidValidity, m.uidNext, highest, m.specialUse ?? null) as MailboxRow;
      } else {
        row = this.#q(
          'UPDATE mailboxes SET uid_validity = ?, uid_next = ?, highest_modseq = max(highest_modseq, ?), special_use = ? WHERE id = ? RETURNING *',
        ).get(m.uidValidity, m.uidNext, highest, m.specialUse === undefined ? existing.special_use : m.specialUse, existing.id) as MailboxRow;
      }
      if (m.subscribed === true) this.#q('INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?, ?)').run(accountId, m.name);
      if (m.subscribed === false) this.#q('DELETE FROM subscriptions WHERE account_id = ? AND name = ?').run(accountId, m.name);
      this.#mailboxEvent(ctx, accountId, modseq);
      return toMailbox(row, this.#isSubscribed(accountId, m.name));
    });
  }

  async restoreAccount(input: AccountRestore): Promise<Account> {
    const a = checkAccountRestore(input);
    return this.#write((ctx) => {
      if (this.#q('SELECT 1 FROM domains WHERE name = ?').get(a.domain) === undefined) {
        throw new StoreError('not-found', `Cannot restore account ${a.address}: domain ${a.domain} is not local`);
      }
      if (this.#q('SELECT 1 FROM accounts WHERE address = ?').get(a.address) !== undefined) {
        throw new StoreError('exists', `Cannot restore account ${a.address}: it exists`);
      }
      const row = this.#q(
        `INSERT INTO accounts (address, domain, password_hash, scram, quota_bytes, quota_messages, pop3_delete_policy, disabled, created_at, modseq)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
      ).get(a.address, a.domain, input.passwordHash, input.scram, input.quotaBytes, input.quotaMessages, input.pop3DeletePolicy,
        input.disabled ? 1 : 0, input.createdAt, input.modseq) as AccountRow;
      const sub = this.#q('INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?, ?)');
      for (const n of a.subscriptions) sub.run(row.id, n);
      this.#mailboxEvent(ctx, row.id, row.modseq);
      return toAccount(row);
    });
  }

  async restoreExpunged(mailboxId: MailboxId, items: ReadonlyArray<{ uid: Uid; modseq: ModSeq }>): Promise<void> {
    checkExpungedRestore(items);
    if (items.length === 0) return;
    return this.#write(() => {
      const mailbox = this.#requireMailbox(mailboxId);
      const list = JSON.stringify(items.map((i) => [i.uid, i.modseq]));
      const bad = this.#q(
        `SELECT value ->> 0 AS uid FROM json_each(?) WHERE value ->> 0 >= ?
            OR EXISTS (SELECT 1 FROM entries WHERE mailbox_id = ? AND uid = value ->> 0) LIMIT 1`,
      ).get(list, mailbox.uid_next, mailboxId) as { uid: number } | undefined;
      if (bad !== undefined) {
        throw new StoreError('invalid', `Cannot restore expunged uid ${bad.uid}: it is present or not below UIDNEXT ${mailbox.uid_next}`);
      }
      this.#q('INSERT OR IGNORE INTO expunged (mailbox_id, modseq, uid) SELECT ?, value ->> 1, value ->> 0 FROM json_each(?)').run(mailboxId, list);
      const top = items.reduce((m, i) => Math.max(m, i.modseq), 0);
      this.#q('UPDATE accounts SET modseq = max(modseq, ?) WHERE id = ?').run(top, mailbox.account_id);
      this.#q('UPDATE mailboxes SET highest_modseq = max(highest_modseq, ?) WHERE id = ?').run(top, mailboxId);
    });
  }

  async restoreEntries(mailboxId: MailboxId, entries: readonly EntryRestore[]): Promise<void> {
    if (entries.length === 0) return;
    const now = Date.now();
    const checked = checkEntryRestores(entries, now);
    const blobs: IngestBlob[] = [];
    try {
      for (const e of entries) blobs.push(await this.#prepareBlob(e.raw, e.parsed));
      await this.#write((ctx) => {
        const mailbox = this.#requireMailbox(mailboxId);
        const account = this.#requireAccount(mailbox.account_id);
        const held = this.#q(
          `SELECT max(coalesce((SELECT max(uid) FROM entries WHERE mailbox_id = ?), 0),
                      coalesce((SELECT max(uid) FROM expunged WHERE mailbox_id = ?), 0)) AS u`,
        ).get(mailboxId, mailboxId) as { u: number };
        const first = checked[0]?.input.uid ?? 0;
        if (first <= held.u) {
          throw new StoreError('invalid', `Cannot restore uid ${first}: the mailbox has held UIDs up to ${held.u}`);
        }
        // Kept modseqs first, so that the one new modseq is above every one of them.
        let top = account.modseq;
        for (const c of checked) top = Math.max(top, c.input.modseq ?? 0);
        if (top > account.modseq) this.#q('UPDATE accounts SET modseq = ? WHERE id = ?').run(top, account.id);
        const fresh = checked.some((c) => c.input.modseq === undefined) ? this.#nextModseq(account.id) : 0;
        let pidCounter = account.pid_counter;
        const rows: EntryRow[] = [];
        for (const [i, c] of checked.entries()) {
          const e = c.input;
          const emailId = e.emailId ?? this.#ids.emailId();
          const pid = e.pid ?? (e.emailId === undefined ? emailId : copyPid(emailId, ++pidCounter));
          let threadId = e.threadId;
          if (threadId === undefined) threadId = this.#threadFor(account.id, e.parsed);
          else this.#linkThread(account.id, threadKeys(e.parsed), threadId);
          const blob = blobs[i];
          if (blob === undefined) throw new StoreError('io', 'Cannot restore: message bytes missing');
          rows.push([
            mailboxId,
            e.uid,
            e.modseq ?? fresh,
            c.flags.mask,
            encodeKeywords(c.flags.keywords),
            e.internalDate,
            c.saveDate,
            e.raw.length,
            blob.hash,
            emailId,
            threadId,
            pid,
            e.pop3Hidden === true ? 1 : 0,
          ]);
        }
        const pids = rows.map((r) => r[11]);
        if (new Set(pids).size !== pids.length) throw new StoreError('conflict', 'Cannot restore: two entries have the same UIDL');
        const taken = this.#q(
          `SELECT e.pid FROM entries e JOIN mailboxes m ON m.id = e.mailbox_id
            WHERE m.account_id = ? AND e.pid IN (SELECT value FROM json_each(?)) LIMIT 1`,
        ).get(account.id, JSON.stringify(pids)) as { pid: string } | undefined;
        if (taken !== undefined) throw new StoreError('conflict', `Cannot restore: UIDL ${taken.pid} is used by another entry of the account`);
        pidCounter = Math.max(pidCounter, pidCounterFloor(pids));
        if (pidCounter !== account.pid_counter) this.#q('UPDATE accounts SET pid_counter = ? WHERE id = ?').run(pidCounter, account.id);
        for (const r of rows) this.#insertEntry(r);
        const { counts: d, highest, perBlob } = restoreTotals(rows.map((r) => ({ modseq: r[2], mask: r[3], size: r[7] })), blobs);
        for (const p of perBlob.values()) this.#addBlobRefs(ctx, p.blob, p.n);
        const last = rows[rows.length - 1]?.[1] ?? 0;
        this.#bumpMailbox(mailboxId, d, highest, Math.max(mailbox.uid_next, last + 1));
        // An operator's restore: usage is counted, the quota is not enforced.
        this.#bumpUsage(account.id, d.size, d.messages);
        ctx.events.push({ accountId: asAccountId(account.id), mailboxId: asMailboxId(mailboxId), modseq: asModSeq(highest), kind: 'append' });
      });
    } finally {
      for (const b of blobs) this.#release(b);
    }
  }

  async quotaUsage(accountId: AccountId): Promise<QuotaUsage> {
    const a = this.#requireAccount(accountId);
    return { bytes: a.used_bytes, messages: a.used_messages };
  }

  /** One process: the counters stay in its memory (auth/failure-counters.ts). */
  sharedCounters(): null {
    return null;
  }

  async tryLock(name: string): Promise<(() => Promise<void>) | null> {
    if (this.#locks.has(name)) return null;
    const token = Symbol(name);
    this.#locks.set(name, token);
    return async () => {
      if (this.#locks.get(name) === token) this.#locks.delete(name);
    };
  }

  // ---------------------------------------------------------------------------------------------
  // Maintenance.

  async checkConsistency(): Promise<string[]> {
    await this.#whenIdle();
    const problems: string[] = [];
    const check = (sql: string, describe: (r: Record<string, unknown>) => string): void => {
      const rows = this.#db.prepare(`${sql} LIMIT ${MAX_PROBLEMS_PER_CHECK}`).all() as Array<Record<string, unknown>>;
      for (const r of rows) problems.push(describe(r));
    };
    check(
      'SELECT e.mailbox_id, e.uid FROM entries e LEFT JOIN mailboxes m ON m.id = e.mailbox_id WHERE m.id IS NULL',
      (r) => `entry uid ${r.uid} is in missing mailbox ${r.mailbox_id}`,
    );
    check(
      `SELECT d.account_id, d.mailbox_id, d.name FROM metadata d LEFT JOIN mailboxes m ON m.id = d.mailbox_id
         WHERE (d.mailbox_id <> 0 AND (m.id IS NULL OR m.account_id <> d.account_id)) OR d.name <> lower(d.name)`,
      (r) => `metadata ${r.name} of account ${r.account_id} is on missing mailbox ${r.mailbox_id} or not lowercased`,
    );
    // sort_index follows entries and sort_keys (schema version 8 triggers).
    check(
      `SELECT e.mailbox_id, e.uid FROM entries e JOIN blobs b ON b.hash = e.blob_hash JOIN sort_keys k ON k.id = b.id
        WHERE NOT EXISTS (SELECT 1 FROM sort_index s WHERE s.mailbox_id = e.mailbox_id AND s.uid = e.uid AND s.thread IS NOT NULL)`,
      (r) => `mailbox ${r.mailbox_id}: uid ${r.uid} has no SORT and THREAD keys in sort_index`,
    );
    check(
      'SELECT s.mailbox_id, s.uid FROM sort_index s LEFT JOIN entries e ON e.mailbox_id = s.mailbox_id AND e.uid = s.uid WHERE e.uid IS NULL',
      (r) => `mailbox ${r.mailbox_id}: sort_index holds uid ${r.uid}, which has no entry`,
    );
    check(
      'SELECT m.id, m.account_id FROM mailboxes m LEFT JOIN accounts a ON a.id = m.account_id WHERE a.id IS NULL',
      (r) => `mailbox ${r.id} belongs to missing account ${r.account_id}`,
    );
    check(
      'SELECT e.mailbox_id, e.uid, m.uid_next FROM entries e JOIN mailboxes m ON m.id = e.mailbox_id WHERE e.uid < 1 OR e.uid >= m.uid_next',
      (r) => `mailbox ${r.mailbox_id}: uid ${r.uid} is not below UIDNEXT ${r.uid_next}`,
    );
    check(
      `SELECT e.mailbox_id, e.uid, e.modseq, m.highest_modseq, a.modseq AS account_modseq FROM entries e
         JOIN mailboxes m ON m.id = e.mailbox_id JOIN accounts a ON a.id = m.account_id
       WHERE e.modseq > m.highest_modseq OR e.modseq > a.modseq OR e.modseq < 1`,
      (r) =>
        `mailbox ${r.mailbox_id}: uid ${r.uid} has modseq ${r.modseq} above HIGHESTMODSEQ ${r.highest_modseq} or account modseq ${r.account_modseq}`,
    );
    check(
      'SELECT m.id, m.highest_modseq, a.modseq FROM mailboxes m JOIN accounts a ON a.id = m.account_id WHERE m.highest_modseq > a.modseq',
      (r) => `mailbox ${r.id}: HIGHESTMODSEQ ${r.highest_modseq} is above account modseq ${r.modseq}`,
    );
    check(
      `SELECT m.id, m.messages, m.unseen, m.deleted, m.size, count(e.uid) AS n,
              coalesce(sum((e.flags & ${FLAG_SEEN}) = 0), 0) AS u, coalesce(sum((e.flags & ${FLAG_DELETED}) != 0), 0) AS d,
              coalesce(sum(e.size), 0) AS s
         FROM mailboxes m LEFT JOIN entries e ON e.mailbox_id = m.id GROUP BY m.id
       HAVING m.messages != n OR m.unseen != u OR m.deleted != d OR m.size != s`,
      (r) =>
        `mailbox ${r.id}: counters messages=${r.messages} unseen=${r.unseen} deleted=${r.deleted} size=${r.size}, entries say ${r.n}/${r.u}/${r.d}/${r.s}`,
    );
    check(
      `SELECT a.id, a.used_bytes, a.used_messages, coalesce(sum(e.size), 0) AS s, count(e.uid) AS n
         FROM accounts a LEFT JOIN mailboxes m ON m.account_id = a.id LEFT JOIN entries e ON e.mailbox_id = m.id
       GROUP BY a.id HAVING a.used_bytes != s OR a.used_messages != n`,
      (r) => `account ${r.id}: usage ${r.used_bytes} bytes/${r.used_messages} messages, entries say ${r.s}/${r.n}`,
    );
    check(
      `SELECT b.hash, b.refs, (SELECT count(*) FROM entries e WHERE e.blob_hash = b.hash) AS n FROM blobs b WHERE b.refs != n`,
      (r) => `blob ${r.hash}: refcount ${r.refs} but ${r.n} entries reference it`,
    );
    check(
      'SELECT DISTINCT e.blob_hash FROM entries e LEFT JOIN blobs b ON b.hash = e.blob_hash WHERE b.id IS NULL',
      (r) => `blob ${r.blob_hash} is referenced but missing`,
    );
    check(
      'SELECT e.mailbox_id, e.uid, e.size, b.size AS bsize FROM entries e JOIN blobs b ON b.hash = e.blob_hash WHERE e.size != b.size',
      (r) => `mailbox ${r.mailbox_id}: uid ${r.uid} has size ${r.size} but its blob has ${r.bsize}`,
    );
    check(
      `SELECT b.hash, b.size, length(c.data) AS len FROM blobs b LEFT JOIN blob_content c ON c.id = b.id
       WHERE c.id IS NULL OR (b.in_file = 0 AND (c.data IS NULL OR length(c.data) != b.size)) OR (b.in_file != 0 AND c.data IS NOT NULL)`,
      (r) => `blob ${r.hash}: ${String(r.len ?? 'no')} bytes stored in the database, ${r.size} expected`,
    );
    check(
      'SELECT b.hash FROM blobs b WHERE NOT EXISTS (SELECT 1 FROM blob_text s WHERE s.id = b.id)',
      (r) => `blob ${r.hash} has no search text row`,
    );
    check(
      'SELECT c.id FROM blob_content c LEFT JOIN blobs b ON b.id = c.id WHERE b.id IS NULL',
      (r) => `blob content ${r.id} has no blob row`,
    );
    check(
      'SELECT t.id FROM blob_text t LEFT JOIN blobs b ON b.id = t.id WHERE b.id IS NULL',
      (r) => `search text ${r.id} has no blob row`,
    );
    check(
      `SELECT m.account_id, e.pid, count(*) AS n FROM entries e JOIN mailboxes m ON m.id = e.mailbox_id
       GROUP BY m.account_id, e.pid HAVING n > 1`,
      (r) => `account ${r.account_id}: pid ${r.pid} is used by ${r.n} entries`,
    );
    check(
      'SELECT uid_validity, count(*) AS n FROM mailboxes GROUP BY uid_validity HAVING n > 1',
      (r) => `UIDVALIDITY ${r.uid_validity} is used by ${r.n} mailboxes`,
    );
    check(
      `SELECT x.mailbox_id, x.uid FROM expunged x JOIN entries e ON e.mailbox_id = x.mailbox_id AND e.uid = x.uid`,
      (r) => `mailbox ${r.mailbox_id}: uid ${r.uid} is both expunged and present`,
    );
    const files = this.#q('SELECT hash, size FROM blobs WHERE in_file != 0').all() as Array<{ hash: string; size: number }>;
    for (const f of files) {
      try {
        const st = await stat(blobPath(this.#blobRoot, f.hash));
        if (st.size !== f.size) problems.push(`blob ${f.hash}: file has ${st.size} bytes, ${f.size} expected`);
      } catch {
        problems.push(`blob ${f.hash}: file is missing`);
      }
    }
    return problems;
  }

  async collectGarbage(): Promise<number> {
    removeStaleHolds(this.#blobRoot);
    const listed = await listBlobFiles(this.#blobRoot);
    return this.#write((ctx) => {
      // Rows without references: those the sweep has not reached yet (see #decRefs). Their
      // files go after the commit (#flush), not here: should it fail, a row would be left
      // without its file, and an APPEND of the same bytes could take that row back.
      let removed = this.#removeDead(ctx, -1);
      const removedNow = new Set(ctx.removed.map((r) => r.hash));
      const isFileBlob = this.#q('SELECT 1 FROM blobs WHERE hash = ? AND in_file != 0');
      // A backup's snapshot may still need files whose rows are gone.
      const held = filesHeld(this.#blobRoot);
      for (const hash of listed.hashes) {
        if (held || this.#pending.has(hash) || removedNow.has(hash) || isFileBlob.get(hash) !== undefined) continue;
        removeBlobFile(this.#blobRoot, hash);
        removed += 1;
      }
      for (const name of listed.temps) {
        if (this.#files.active.has(name)) continue;
        removeTempFile(this.#blobRoot, name);
        removed += 1;
      }
      return removed;
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    // Before the store refuses writes: the view cache writes its snapshots (view-cache.ts), and
    // the blobs waiting for the full-text index are added (the next open starts with none).
    await this.#views.close();
    // What a sweep would remove later goes now (a command-line process may not run again).
    if (this.#sweepTimer !== null) {
      clearTimeout(this.#sweepTimer);
      this.#sweepTimer = null;
      if (this.#failed === null) await this.#write((ctx) => this.#removeDead(ctx, -1)).catch(() => 0);
    }
    const unindexed = this.#indexTimer !== null || this.#unindexed > 0 || this.#indexQueued;
    // Nothing is scheduled from here on; what waits is indexed now, in as many batches as needed.
    this.#closing = true;
    if (this.#indexTimer !== null) clearTimeout(this.#indexTimer);
    this.#indexTimer = null;
    if (unindexed && this.#failed === null) {
      try {
        while ((await this.#indexer.run()).more);
      } catch {
        // The worker failed: the blobs stay above the mark, for the next open.
      }
    }
    await this.#indexer.close();
    await this.#whenIdle();
    this.#closed = true;
    this.#locks.clear();
    // The worker's connection closes first, so the store's close is the last one and may
    // checkpoint the rest and remove the -wal file.
    await this.#checkpointer.close();
    try {
      await this.#wal.close();
    } finally {
      this.#searchReader.close();
      this.#db.close();
    }
  }
}

/** A statement of `db` returning rows as arrays, prepared once and kept in `cache`. */
function rawStatement(db: Database.Database, cache: Map<string, Stmt>, sql: string): Stmt {
  let s = cache.get(sql);
  if (s === undefined) {
    s = db.prepare(sql).raw(true);
    cache.set(sql, s);
  }
  return s;
}

function likeEscape(s: string): string {
  return s.replace(/[\\%_]/g, (c) => `\\${c}`);
}

/**
 * Makes search.db's tables (search-indexer.ts) before the indexer's worker starts. The file is
 * derived data: one SQLite cannot read (not a database, or damaged) is moved aside, with a
 * warning, and made again empty; the worker then indexes every blob again and SEARCH reads the
 * text of those not indexed yet meanwhile, so a bad index never keeps the store from opening.
 */
function prepareSearchDb(dir: string): void {
  const file = join(dir, SEARCH_DB);
  const rebuild = join(dir, SEARCH_REBUILD);
  const make = (): void => {
    const search = new Database(file);
    try {
      search.pragma('busy_timeout = 5000');
      search.pragma('journal_mode = WAL');
      search.exec(SEARCH_DB_SCHEMA);
      // Both tables read once: the index's first use opens its structure (FTS5's config and
      // structure records), which a damaged file fails at.
      search.prepare('SELECT count(*) FROM search_state').get();
      search.prepare('SELECT rowid FROM search LIMIT 1').get();
    } finally {
      search.close();
    }
  };
  const moveAside = (why: string): void => {
    const aside = `${file}.unreadable-${Date.now()}`;
    process.emitWarning(`store: ${SEARCH_DB} ${why}; moved to ${aside}, the full-text index is built again`);
    renameSync(file, aside);
    for (const suffix of ['-wal', '-shm']) rmSync(file + suffix, { force: true });
  };
  if (existsSync(rebuild)) {
    // A SEARCH of the last run found it damaged (#candidates).
    if (existsSync(file)) moveAside('was found damaged by a search');
    rmSync(rebuild, { force: true });
  }
  try {
    make();
  } catch (err) {
    const code = (err as { code?: string }).code ?? '';
    if (code !== 'SQLITE_NOTADB' && !code.startsWith('SQLITE_CORRUPT')) throw err;
    moveAside(`cannot be read (${code})`);
    make();
  }
}

/** Opens (creating if needed) the store in a data directory. */
/** The write-path counters of a SQLite store (null for another backend). */
export function sqliteStoreStats(store: MailStore): SqliteStoreStats | null {
  return store instanceof SqliteStore ? store.stats : null;
}

/** The full-text index's worker runs of a SQLite store so far (null for another backend). */
export function sqliteSearchIndexerStats(store: MailStore): SearchIndexerStats | null {
  return store instanceof SqliteStore ? store.searchIndexerStats : null;
}

/** The worker-thread checkpoints of a SQLite store so far (null for another backend). */
export function sqliteCheckpointStats(store: MailStore): CheckpointStats | null {
  return store instanceof SqliteStore ? store.checkpointStats : null;
}

export async function openSqliteStore(options: SqliteStoreOptions): Promise<MailStore> {
  const blobRoot = join(options.dir, BLOB_DIR);
  await mkdir(join(blobRoot, TMP_DIR), { recursive: true });
  // Temp files are half-written blobs of a process that died: nothing references them.
  for (const name of (await listBlobFiles(blobRoot)).temps) removeTempFile(blobRoot, name);
  await syncDir(blobRoot);
  const db = new Database(join(options.dir, DB_FILE));
  try {
    db.pragma('journal_mode = WAL');
    // NORMAL: COMMIT does not fsync (that would block the event loop); the store fsyncs the WAL
    // asynchronously before acknowledging (see the notes at the top). Checkpoints still fsync.
    db.pragma('synchronous = NORMAL');
    db.pragma('busy_timeout = 5000');
    db.pragma('foreign_keys = OFF');
    db.pragma(`cache_size = -${Math.max(1024, Math.floor(options.pageCacheKiB ?? 32 * 1024))}`);
    db.pragma('temp_store = MEMORY');
    // Checkpoints run on a worker thread (checkpointer.ts), never inside a COMMIT on the event
    // loop. The automatic one stays only as a bound, should the worker fall far behind: 100,000
    // pages, about 400 MB of WAL. After a checkpoint SQLite truncates the WAL file to 64 MB.
    db.pragma('wal_autocheckpoint = 100000');
    db.pragma(`journal_size_limit = ${WAL_LIMIT_BYTES}`);
    migrate(db);
    backfill(db);
    prepareSearchDb(options.dir);
  } catch (err) {
    db.close();
    throw err;
  }
  let wal: FileHandle;
  try {
    // SQLite created the -wal file when it first read the database in WAL mode (migrate did).
    wal = await open(join(options.dir, WAL_FILE), 'r');
  } catch (err) {
    db.close();
    throw new StoreError('io', `Cannot open the write-ahead log: ${String(err)}`);
  }
  try {
    // The directory entries of the database and of its WAL, durable like their contents.
    await syncDir(options.dir);
  } catch (err) {
    await wal.close();
    db.close();
    throw err;
  }
  return new SqliteStore(db, wal, blobRoot, options);
}
