/**
 * `facteur backup OUT` / `facteur restore IN` (also `export installation` / `import
 * installation`): the whole store in one file, from either backend into either backend
 * (docs/operations.md). The backup runs beside a live server: it reads one snapshot of the store
 * and one of the outbound queue (`<data>/queue.db` beside a SQLite store, the shared queue in the
 * database of a PostgreSQL store: queue/open.ts); a restore writes into the queue of the target.
 */
import { access } from 'node:fs/promises';
import { resolve } from 'node:path';
import { restoreBackup, storeIsEmpty, verifyBackupFile, writeBackup } from '../backup/backup.js';
import type { BackupSummary } from '../backup/backup.js';
import type { StoreSnapshot } from '../backup/snapshot.js';
import { exportAccount } from '../backup/export-account.js';
import { openQueueSnapshot, openQueueStore, queueLocation } from '../queue/open.js';
import { openStore } from '../store/open.js';
import { openPgSnapshot } from '../store/sql/postgres/snapshot.js';
import { openSqliteSnapshot } from '../store/sql/sqlite/snapshot.js';
import { parse, UsageError } from './args.js';
import { BATCH_STORE_OPTIONS, favourSmallHeap } from './batch-memory.js';
import { dataDirFrom, dataDirStore } from './data-dir.js';

const describe = (s: BackupSummary): string =>
  `${s.domains} domains, ${s.accounts} accounts, ${s.mailboxes} mailboxes, ${s.entries} messages (${s.blobs} distinct), ` +
  `${s.expunged} expunged UIDs, ${s.aliases} aliases, ${s.metadata} annotations, ${s.queued} queued messages`;

async function openSnapshot(location: string): Promise<StoreSnapshot> {
  return /^postgres(ql)?:\/\//i.test(location) ? openPgSnapshot(location) : openSqliteSnapshot(location);
}

export async function backupCmd(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { 'no-gzip': { type: 'boolean' } });
  const [out] = positionals;
  if (out === undefined || positionals.length > 1) throw new UsageError('backup OUT [--no-gzip]');
  const path = resolve(out);
  if (await access(path).then(() => true, () => false)) throw new Error(`${path} exists: choose another name`);
  const dir = dataDirFrom(values.data as string | undefined);
  const { location } = await dataDirStore(dir);
  favourSmallHeap();
  const snapshot = await openSnapshot(location);
  try {
    // null: no queue yet (the server never queued anything).
    const queue = await openQueueSnapshot(queueLocation(dir, location));
    try {
      const sum = await writeBackup(snapshot, path, { gzip: values['no-gzip'] !== true, queue });
      process.stdout.write(`backed up ${describe(sum)} to ${path}\n`);
      return 0;
    } finally {
      await queue?.close();
    }
  } finally {
    await snapshot.close();
  }
}

export async function restoreCmd(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { 'into-non-empty': { type: 'boolean' } });
  const [input] = positionals;
  if (input === undefined || positionals.length > 1) throw new UsageError('restore IN [--into-non-empty]');
  const path = resolve(input);
  // The whole file first: a damaged or cut backup is refused before anything is written.
  await verifyBackupFile(path);
  const dir = dataDirFrom(values.data as string | undefined);
  const { location } = await dataDirStore(dir);
  favourSmallHeap();
  const store = await openStore(location, BATCH_STORE_OPTIONS);
  let queue;
  try {
    queue = await openQueueStore(queueLocation(dir, location));
  } catch (err) {
    await store.close();
    throw err;
  }
  try {
    if (values['into-non-empty'] !== true && !(await storeIsEmpty(store))) {
      throw new Error('The store already has accounts or aliases: restore into an empty store, or pass --into-non-empty to add to it');
    }
    let sum: BackupSummary;
    try {
      sum = await restoreBackup(store, path, { queue });
    } catch (err) {
      throw new Error(`${(err as Error).message}. The store holds what was restored before this error: empty it before trying again`);
    }
    const problems = await store.checkConsistency();
    if (problems.length > 0) throw new Error(`Restored, but the store is inconsistent:\n  ${problems.join('\n  ')}`);
    process.stdout.write(`restored ${describe(sum)}\n`);
    return 0;
  } finally {
    await queue.close();
    await store.close();
  }
}

export async function exportAccountCmd(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { format: { type: 'string' } });
  const [address, out] = positionals;
  const format = values.format;
  if (address === undefined || out === undefined || positionals.length > 2 || (format !== 'maildir' && format !== 'mbox')) {
    throw new UsageError('export account ADDRESS --format maildir|mbox OUT');
  }
  const { location } = await dataDirStore(dataDirFrom(values.data as string | undefined));
  favourSmallHeap();
  const store = await openStore(location, BATCH_STORE_OPTIONS);
  try {
    const sum = await exportAccount(store, address, format, resolve(out));
    process.stdout.write(`exported ${sum.messages} messages in ${sum.mailboxes} mailboxes of ${address} to ${resolve(out)} (${format})\n`);
    return 0;
  } finally {
    await store.close();
  }
}
