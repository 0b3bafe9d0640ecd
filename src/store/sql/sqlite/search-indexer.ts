/**
 * The full-text index of a SQLite store, written on a worker thread into its own database file.
 *
 * Why: the trigram index (FTS5) is the costliest thing a delivery writes. Adding a message's text
 * takes about 1.8 ms of CPU per 100 KB; on the store's event loop that was over a third of the
 * loop's time while 100 KB messages arrived (docs/benchmarks.md, SMTP ingest), and every session
 * of the process waited behind it. Here a worker thread does it, with its own connections:
 * - search.db (SEARCH_DB, beside facteur.db) holds the index and its marks; only this worker
 *   writes it. A second database file, not a second connection writing facteur.db: SQLite has
 *   one write lock per file, and the store's COMMITs on the event loop would wait for the
 *   worker's (busy-waiting, the loop blocked), and every commit of another connection empties a
 *   connection's page cache for that file.
 * - facteur.db, read-only: the text to index (blob_text) and the removals (search_gone).
 * The store reads the index through a third connection, read-only, on facteur.db with search.db
 * attached (searchText): attached to the store's own connection, search.db would be locked by
 * its BEGIN IMMEDIATE (which takes the write lock of every attached database) against the
 * worker.
 *
 * Invariants:
 * - Mark `indexed` (search_state): every blob id up to it is in the index, or gone. Blobs above
 *   it are found by SEARCH in blob_text directly. The mark moves in the transaction that adds the
 *   documents, so it always describes the index, whatever stops the process when.
 * - Removals: the store's sweep deletes a blob's rows and adds its id to search_gone in one
 *   transaction. A run deletes from the index the gone ids up to the `indexed` mark it started
 *   with (those above it were never indexed, and never will be: their text is gone from the
 *   snapshot the run reads), and moves mark `gone` (the search_gone seq done) in the same
 *   transaction; the store prunes search_gone up to that mark later. Ids are never reused
 *   (blobs is AUTOINCREMENT), so an index entry left behind (a removal not yet processed) can
 *   only name a blob that no entry references: SEARCH's join drops it.
 * - A run reads facteur.db in one read transaction (one snapshot) and writes search.db in one
 *   write transaction (BEGIN IMMEDIATE on a connection that has only search.db: the store's
 *   write lock is never taken). Two processes' workers serialize on search.db's lock, and each
 *   reads the marks inside its transaction: nothing is indexed twice.
 * - search.db is synchronous=NORMAL: its WAL is fsync'd at checkpoints only, never on the path
 *   of a delivery's acknowledgement (the store's own WAL fdatasync is). A power cut may take back
 *   the last runs, marks and index together: blobs are indexed again, and removals whose
 *   search_gone rows the store pruned meanwhile leave index entries that name no blob (SEARCH's
 *   join drops them).
 */
import type { Worker } from 'node:worker_threads';
import { startSqliteWorker, stopSqliteWorker } from './worker-thread.js';

/** The index's database file, in the data directory beside facteur.db. */
export const SEARCH_DB = 'search.db';

/** search.db's tables, created by the store at open (before the worker starts). Contentless with
 * contentless_delete: the text is in facteur.db's blob_text already, and removing a document
 * needs no re-tokenizing. detail=column: SEARCH needs no positions (the matches are verified on
 * the text), which would double the index size and its cost. */
export const SEARCH_DB_SCHEMA = `
CREATE VIRTUAL TABLE IF NOT EXISTS search USING fts5(
  subject, addr_from, addr_to, addr_cc, addr_bcc, headers, body,
  tokenize = 'trigram', detail = column, content = '', contentless_delete = 1
);
CREATE TABLE IF NOT EXISTS search_state (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
`;

/** The marks in search_state (see the invariants above). */
export const MARK_INDEXED = 'indexed';
export const MARK_GONE = 'gone';

/** Removals processed per run, at most. */
const GONE_PER_RUN = 10_000;

/** The worker's code, plain CommonJS: it needs no TypeScript loader in the worker. */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const search = new Database(workerData.search, { fileMustExist: true });
search.pragma('busy_timeout = 10000');
search.pragma('synchronous = NORMAL');
const store = new Database(workerData.store, { readonly: true, fileMustExist: true });
store.pragma('busy_timeout = 10000');
const markOf = search.prepare('SELECT value FROM search_state WHERE name = ?').pluck();
const setMark = search.prepare('INSERT OR REPLACE INTO search_state (name, value) VALUES (?, ?)');
const add = search.prepare('INSERT INTO search (rowid, subject, addr_from, addr_to, addr_cc, addr_bcc, headers, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
const remove = search.prepare('DELETE FROM search WHERE rowid = ?');
const texts = store.prepare('SELECT id, subject, addr_from, addr_to, addr_cc, addr_bcc, headers, body FROM blob_text WHERE id > ? ORDER BY id LIMIT ?').raw();
const goneRows = store.prepare('SELECT seq, id FROM search_gone WHERE seq > ? ORDER BY seq LIMIT ?').raw();
const given = store.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'blobs'").pluck();
const [beginWrite, commitWrite, rollbackWrite] = ['BEGIN IMMEDIATE', 'COMMIT', 'ROLLBACK'].map((sql) => search.prepare(sql));
const [beginRead, endRead] = ['BEGIN', 'COMMIT'].map((sql) => store.prepare(sql));

function run(maxBlobs, maxText) {
  beginWrite.run();
  try {
    const indexed = markOf.get(${JSON.stringify(MARK_INDEXED)}) ?? 0;
    const goneDone = markOf.get(${JSON.stringify(MARK_GONE)}) ?? 0;
    const docs = [];
    let gone;
    let more = false;
    let upTo = indexed;
    let text = 0;
    beginRead.run();
    try {
      // Row by row: the rows past the text budget stay unread.
      for (const row of texts.iterate(indexed, maxBlobs)) {
        if (text >= maxText) {
          more = true;
          break;
        }
        docs.push(row);
        for (let i = 1; i < row.length; i++) text += row[i].length;
        upTo = row[0];
      }
      if (docs.length === maxBlobs) more = true;
      // Every id given so far once all were read (ids are never reused).
      if (!more) upTo = Math.max(indexed, given.get() ?? 0);
      gone = goneRows.all(goneDone, ${GONE_PER_RUN});
    } finally {
      endRead.run();
    }
    for (const [, id] of gone) if (id <= indexed) remove.run(id);
    for (const row of docs) add.run(row);
    if (upTo !== indexed) setMark.run(${JSON.stringify(MARK_INDEXED)}, upTo);
    if (gone.length > 0) setMark.run(${JSON.stringify(MARK_GONE)}, gone[gone.length - 1][0]);
    commitWrite.run();
    return { indexed: docs.length, removed: gone.length, more: more || gone.length === ${GONE_PER_RUN} };
  } catch (err) {
    if (search.inTransaction) rollbackWrite.run();
    throw err;
  }
}

parentPort.on('message', (msg) => {
  if (msg.kind === 'close') {
    // The WAL copied into search.db and emptied: the store's search reader, read-only, closes
    // after this connection and cannot do it, so the next open has nothing to replay.
    try {
      search.pragma('wal_checkpoint(TRUNCATE)');
    } catch {
      // Busy with another process's reader: its last close does it.
    }
    search.close();
    store.close();
    parentPort.close();
    return;
  }
  try {
    const t0 = performance.now();
    const r = run(msg.maxBlobs, msg.maxText);
    parentPort.postMessage({ ok: true, ...r, ms: performance.now() - t0 });
  } catch (err) {
    parentPort.postMessage({ ok: false, error: String((err && err.message) || err) });
  }
});
`;

type Reply = { ok: true; indexed: number; removed: number; more: boolean; ms: number } | { ok: false; error: string };

/** What one run did. `more`: blobs or removals were left for the next run. */
export interface IndexRun {
  indexed: number;
  removed: number;
  more: boolean;
}

export interface SearchIndexerStats {
  /** Runs completed, documents added, removals processed, and the worker's time in runs. */
  runs: number;
  indexed: number;
  removed: number;
  ms: number;
}

export interface SearchIndexerOptions {
  /** Blobs added per run, at most. */
  maxBlobs: number;
  /** Text added per run, at most (characters; the blob that passes it is the run's last). */
  maxText: number;
}

/** One run at a time; the worker starts on the first run and stops at close(). */
export class SearchIndexer {
  readonly stats: SearchIndexerStats = { runs: 0, indexed: 0, removed: 0, ms: 0 };
  readonly #storeFile: string;
  readonly #searchFile: string;
  readonly #options: SearchIndexerOptions;
  #worker: Worker | null = null;
  #closed = false;
  /** The run in progress: its settlement. */
  #pending: { resolve: (r: IndexRun) => void; reject: (e: Error) => void } | null = null;
  #running: Promise<IndexRun> | null = null;

  constructor(storeFile: string, searchFile: string, options: SearchIndexerOptions) {
    this.#storeFile = storeFile;
    this.#searchFile = searchFile;
    this.#options = options;
  }

  /** True while a run is in progress. */
  get running(): boolean {
    return this.#running !== null;
  }

  /** Runs once (after the run in progress, if any). Rejects when the worker fails or is closed. */
  async run(): Promise<IndexRun> {
    while (this.#running !== null) await this.#running.catch(() => undefined);
    if (this.#closed) throw new Error('The search indexer is closed');
    const running = new Promise<IndexRun>((resolve, reject) => {
      this.#pending = { resolve, reject };
    });
    this.#running = running;
    const clear = (): void => {
      if (this.#running === running) this.#running = null;
    };
    running.then(clear, clear);
    (this.#worker ??= this.#start()).postMessage({ kind: 'run', maxBlobs: this.#options.maxBlobs, maxText: this.#options.maxText });
    return running;
  }

  #settle(reply: Reply | Error): void {
    const p = this.#pending;
    this.#pending = null;
    if (p === null) return;
    if (reply instanceof Error) p.reject(reply);
    else if (!reply.ok) p.reject(new Error(`Full-text index run failed: ${reply.error}`));
    else {
      this.stats.runs++;
      this.stats.indexed += reply.indexed;
      this.stats.removed += reply.removed;
      this.stats.ms += reply.ms;
      p.resolve({ indexed: reply.indexed, removed: reply.removed, more: reply.more });
    }
  }

  #start(): Worker {
    // An index run in progress does not keep a finished process alive: its transaction is
    // rolled back and the blobs stay above the mark, for the next run.
    const worker = startSqliteWorker(WORKER_SOURCE, { store: this.#storeFile, search: this.#searchFile });
    worker.on('message', (reply: Reply) => this.#settle(reply));
    worker.on('error', (err) => {
      this.#worker = null;
      this.#settle(err);
    });
    worker.on('exit', () => {
      if (this.#worker === worker) this.#worker = null;
      this.#settle(new Error('The search indexer stopped'));
    });
    return worker;
  }

  /** Waits for the run in progress, then stops the worker and closes its connections. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#running !== null) await this.#running.catch(() => undefined);
    const worker = this.#worker;
    this.#worker = null;
    if (worker === null) return;
    await stopSqliteWorker(worker, { kind: 'close' });
  }
}
