/**
 * The worker threads of the SQLite store (checkpointer.ts, search-indexer.ts): started from
 * plain CommonJS source with their own connections to the store's files, stopped at close.
 */
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/** Starts a worker from CommonJS `source`; `workerData.driver` is better-sqlite3's path, for the
 * worker's `require`. Unreferenced: work in progress never keeps a finished process alive (each
 * caller's SQLite transaction is rolled back or recovered at the next open). */
export function startSqliteWorker(source: string, data: Record<string, unknown>): Worker {
  const driver = createRequire(import.meta.url).resolve('better-sqlite3');
  const worker = new Worker(source, { eval: true, workerData: { ...data, driver } });
  worker.unref();
  return worker;
}

/** Asks the worker to close its connections (`message`) and waits for it to end; terminated
 * after 10 s should it not. */
export async function stopSqliteWorker(worker: Worker, message: unknown): Promise<void> {
  const exited = once(worker, 'exit');
  worker.postMessage(message);
  const timer = setTimeout(() => void worker.terminate(), 10_000);
  try {
    await exited;
  } finally {
    clearTimeout(timer);
  }
}
