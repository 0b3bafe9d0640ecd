/**
 * WAL checkpoints on a worker thread, so the event loop never waits for one.
 *
 * Why: a checkpoint copies the WAL's pages into the database file and fsyncs both. Run by the
 * store's own connection (SQLite's wal_autocheckpoint) it happens inside a COMMIT on the event
 * loop, and every session of the process stalls for its duration: over a second was measured
 * under load (docs/benchmarks.md, SMTP ingest). A second connection on a worker thread runs the
 * checkpoint instead; SQLite coordinates the two connections through the WAL index.
 *
 * Invariants:
 * - Only PASSIVE checkpoints: they never take the write lock nor wait for readers, so the store's
 *   writes and reads go on while one runs. What a reader still needs stays in the WAL until a
 *   later checkpoint.
 * - One checkpoint at a time; a request while one runs is dropped (the next request after it
 *   ends covers the frames written meanwhile).
 * - Durability does not depend on this module: with synchronous=NORMAL SQLite fsyncs the WAL
 *   before copying frames and the database after; a crash mid-checkpoint is recovered from the
 *   WAL at the next open. The store acknowledges writes after its own WAL fdatasync, as before.
 * - The worker is started on the first request (a store that never writes much never starts
 *   one) and stopped by close(), before the store closes its connection, so the store's close
 *   is the last one and may remove the -wal file.
 */
import type { Worker } from 'node:worker_threads';
import { startSqliteWorker, stopSqliteWorker } from './worker-thread.js';

/** The worker's code, plain CommonJS: it needs no TypeScript loader in the worker. */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.file);
db.pragma('busy_timeout = 5000');
db.pragma('synchronous = NORMAL');
db.pragma('wal_autocheckpoint = 0');
parentPort.on('message', (msg) => {
  if (msg === 'close') {
    db.close();
    parentPort.close();
    return;
  }
  try {
    const row = db.pragma('wal_checkpoint(PASSIVE)')[0];
    parentPort.postMessage({ ok: true, frames: row.log, copied: row.checkpointed });
  } catch (err) {
    parentPort.postMessage({ ok: false, error: String((err && err.message) || err) });
  }
});
`;

type Reply = { ok: true; frames: number; copied: number } | { ok: false; error: string };

export interface CheckpointStats {
  /** Checkpoints completed. */
  checkpoints: number;
  /** The sum of what each reported as copied. SQLite counts the frames of the WAL in the
   * database file since the WAL last restarted, so a frame copied by one checkpoint counts again
   * in the next ones until the restart: an upper bound of the copying, not the WAL's traffic. */
  framesCopied: number;
}

/** What one checkpoint did: the WAL's frames when it started, and how many of them are now in
 * the database file. When that is all of them and nothing was committed since, SQLite writes
 * the WAL from its start again at the next write transaction. */
export interface CheckpointResult {
  frames: number;
  copied: number;
}

export class Checkpointer {
  readonly stats: CheckpointStats = { checkpoints: 0, framesCopied: 0 };
  readonly #file: string;
  readonly #onError: (err: Error) => void;
  #worker: Worker | null = null;
  #running = false;
  #closed = false;
  /** Told when the running checkpoint ends: its result, or null when it failed or never ran. */
  #done: ((result: CheckpointResult | null) => void) | null = null;

  constructor(file: string, onError: (err: Error) => void) {
    this.#file = file;
    this.#onError = onError;
  }

  /** True while a checkpoint runs. */
  get running(): boolean {
    return this.#running;
  }

  /** Starts a passive checkpoint unless one is running or the checkpointer is closed; `done`
   * is called when it ends (with null at once when it does not start). */
  request(done?: (result: CheckpointResult | null) => void): void {
    if (this.#closed || this.#running) {
      done?.(null);
      return;
    }
    this.#running = true;
    this.#done = done ?? null;
    (this.#worker ??= this.#start()).postMessage('checkpoint');
  }

  #finish(result: CheckpointResult | null): void {
    this.#running = false;
    const done = this.#done;
    this.#done = null;
    done?.(result);
  }

  #start(): Worker {
    // A checkpoint in progress does not keep a finished process alive; SQLite recovers an
    // interrupted one from the WAL.
    const worker = startSqliteWorker(WORKER_SOURCE, { file: this.#file });
    worker.on('message', (reply: Reply) => {
      if (reply.ok) {
        this.stats.checkpoints++;
        this.stats.framesCopied += Math.max(0, reply.copied);
        this.#finish({ frames: reply.frames, copied: reply.copied });
      } else {
        this.#onError(new Error(`WAL checkpoint failed: ${reply.error}`));
        this.#finish(null);
      }
    });
    worker.on('error', (err) => {
      this.#worker = null;
      this.#onError(err);
      this.#finish(null);
    });
    return worker;
  }

  /** Stops the worker after the checkpoint in progress, if any, and closes its connection. */
  async close(): Promise<void> {
    this.#closed = true;
    const worker = this.#worker;
    this.#worker = null;
    if (worker === null) return;
    try {
      await stopSqliteWorker(worker, 'close');
    } finally {
      if (this.#running) this.#finish(null);
    }
  }
}
