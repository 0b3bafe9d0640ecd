/**
 * A backup's view of a SQLite store that a server may be using at the same time: its own
 * read-only connection, one read transaction for the whole backup (WAL mode: a snapshot that
 * later commits do not change and that does not block the writer), and a hold on the blob files
 * (blob-files.ts) taken BEFORE the snapshot, so that a file whose row is deleted after the
 * snapshot began stays until the backup ends.
 */
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { SnapshotAccount, SnapshotEntry, SnapshotMailbox, SnapshotMetadata, StoreSnapshot } from '../../../backup/snapshot.js';
import { APP_PASSWORDS_SNAPSHOT_SQL, snapshotAccounts, snapshotEntry } from '../rows.js';
import type { AccountRowOf, AppPasswordSnapshotRow, EntryRecordRow } from '../rows.js';
import { StoreError } from '../../types.js';
import type { SpecialUse } from '../../types.js';
import { blobPath, holdFiles } from './blob-files.js';
import { MIGRATIONS } from './schema.js';
import { BLOB_DIR, DB_FILE } from './sqlite-store.js';

const CHUNK = 1024 * 1024;

export async function openSqliteSnapshot(dir: string): Promise<StoreSnapshot> {
  const blobRoot = join(dir, BLOB_DIR);
  const release = await holdFiles(blobRoot);
  let db: Database.Database;
  try {
    db = new Database(join(dir, DB_FILE), { fileMustExist: true });
    db.pragma('busy_timeout = 5000');
    const v = (db.prepare('SELECT max(version) AS v FROM schema_version').get() as { v: number | null }).v ?? 0;
    const latest = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;
    if (v !== latest) throw new StoreError('invalid', `Cannot back up: the store is at schema version ${v}, this program expects ${latest}`);
    // The snapshot starts at the first read of the transaction, after the hold exists.
    db.exec('BEGIN');
    db.prepare('SELECT count(*) FROM domains').get();
  } catch (err) {
    await release();
    throw err;
  }
  const all = <R>(sql: string, ...args: unknown[]): R[] => db.prepare(sql).all(...args) as R[];
  return {
    backend: 'sqlite',
    async domains() {
      return all<{ name: string; created_at: number }>('SELECT name, created_at FROM domains ORDER BY name').map((r) => ({
        name: r.name,
        createdAt: r.created_at,
      }));
    },
    async accounts(): Promise<SnapshotAccount[]> {
      return snapshotAccounts(
        all<AccountRowOf<number>>('SELECT * FROM accounts ORDER BY id'),
        all<{ account_id: number; name: string }>('SELECT account_id, name FROM subscriptions ORDER BY account_id, name'),
        all<AppPasswordSnapshotRow>(APP_PASSWORDS_SNAPSHOT_SQL),
      );
    },
    async aliases() {
      return all<{ source: string; target: string }>('SELECT source, target FROM aliases ORDER BY source, target');
    },
    async mailboxes(accountId: number): Promise<SnapshotMailbox[]> {
      return all<{ id: number; name: string; uid_validity: number; uid_next: number; highest_modseq: number; special_use: SpecialUse | null }>(
        'SELECT id, name, uid_validity, uid_next, highest_modseq, special_use FROM mailboxes WHERE account_id = ? ORDER BY name',
        accountId,
      ).map((r) => ({ id: r.id, name: r.name, uidValidity: r.uid_validity, uidNext: r.uid_next, highestModSeq: r.highest_modseq, specialUse: r.special_use }));
    },
    async entries(mailboxId: number, afterUid: number, limit: number): Promise<SnapshotEntry[]> {
      return all<EntryRecordRow>('SELECT * FROM entries WHERE mailbox_id = ? AND uid > ? ORDER BY uid LIMIT ?', mailboxId, afterUid, limit).map(snapshotEntry);
    },
    async blobsBefore(hashes: readonly string[], at: { accountId: number; mailbox: string; uid: number }) {
      if (hashes.length === 0) return new Set<string>();
      // Names compare as BINARY (UTF-8 bytes), as mailboxes() orders them.
      const found = all<{ h: string }>(
        `SELECT DISTINCT e.blob_hash AS h FROM entries e JOIN mailboxes m ON m.id = e.mailbox_id
          WHERE e.blob_hash IN (SELECT value FROM json_each(?))
            AND (m.account_id < ? OR (m.account_id = ? AND (m.name < ? OR (m.name = ? AND e.uid < ?))))`,
        JSON.stringify(hashes),
        at.accountId,
        at.accountId,
        at.mailbox,
        at.mailbox,
        at.uid,
      );
      return new Set(found.map((r) => r.h));
    },
    async expunged(mailboxId: number, after: [number, number], limit: number) {
      return all<{ uid: number; modseq: number }>(
        'SELECT uid, modseq FROM expunged WHERE mailbox_id = ? AND (modseq, uid) > (?, ?) ORDER BY modseq, uid LIMIT ?',
        mailboxId,
        after[0],
        after[1],
        limit,
      ).map((r): [number, number] => [r.uid, r.modseq]);
    },
    async metadata(accountId: number): Promise<SnapshotMetadata[]> {
      return all<{ mailbox_id: number; name: string; value: Buffer }>(
        'SELECT mailbox_id, name, value FROM metadata WHERE account_id = ? ORDER BY mailbox_id, name',
        accountId,
      ).map((r) => ({ mailboxId: r.mailbox_id, name: r.name, value: Buffer.from(r.value) }));
    },
    async *blob(hash: string, size: number) {
      const row = db.prepare('SELECT b.in_file, b.id FROM blobs b WHERE b.hash = ?').get(hash) as { in_file: number; id: number } | undefined;
      if (row === undefined) throw new StoreError('io', `Cannot back up blob ${hash}: no such row`);
      if (row.in_file === 0) {
        for (let off = 0; off < size; off += CHUNK) {
          const r = db.prepare('SELECT substr(data, ?, ?) AS d FROM blob_content WHERE id = ?').get(off + 1, CHUNK, row.id) as { d: Buffer };
          yield r.d;
        }
        return;
      }
      const fh = await open(blobPath(blobRoot, hash), 'r');
      try {
        for (let pos = 0; pos < size; ) {
          const buf = Buffer.allocUnsafe(Math.min(CHUNK, size - pos));
          const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
          if (bytesRead === 0) throw new StoreError('io', `Cannot back up blob ${hash}: its file is short`);
          pos += bytesRead;
          yield buf.subarray(0, bytesRead);
        }
      } finally {
        await fh.close();
      }
    },
    async close() {
      try {
        if (db.inTransaction) db.exec('COMMIT');
        db.close();
      } finally {
        await release();
      }
    },
  };
}
