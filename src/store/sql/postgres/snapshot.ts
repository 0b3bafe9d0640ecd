/**
 * A backup's view of a PostgreSQL store in use: one connection in one REPEATABLE READ READ ONLY
 * transaction, so every query sees the database as of its first statement while the nodes keep
 * writing. Blob bytes in blob_chunks belong to that snapshot too; bytes in an external blob
 * directory do not: a message whose last reference goes away during the backup may lose its
 * file before it is read, and the backup then fails (run it again).
 */
import pg from 'pg';
import type { SnapshotAccount, SnapshotEntry, SnapshotMailbox, SnapshotMetadata, StoreSnapshot } from '../../../backup/snapshot.js';
import { createFileBlobStore } from '../../blob-store.js';
import { APP_PASSWORDS_SNAPSHOT_SQL, snapshotAccounts, snapshotEntry } from '../rows.js';
import type { AccountRowOf, AppPasswordSnapshotRow, EntryRecordRow } from '../rows.js';
import { StoreError } from '../../types.js';
import type { SpecialUse } from '../../types.js';
import { PG_MIGRATIONS } from './schema.js';
import { BLOB_CHUNK, TYPES, parsePgStoreUrl } from './pg-store.js';

export async function openPgSnapshot(location: string): Promise<StoreSnapshot> {
  const { url, schema = 'public', blobs } = parsePgStoreUrl(location);
  const external = typeof blobs === 'string' && blobs !== 'database' ? createFileBlobStore(blobs) : null;
  const client = new pg.Client({ connectionString: url, options: `-c search_path=${schema},public`, types: TYPES });
  await client.connect();
  try {
    const v = (await client.query('SELECT max(version) AS v FROM schema_version')).rows[0]?.v as number | null;
    const latest = PG_MIGRATIONS[PG_MIGRATIONS.length - 1]?.version ?? 0;
    if (v !== latest) throw new StoreError('invalid', `Cannot back up: the store is at schema version ${String(v)}, this program expects ${latest}`);
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  } catch (err) {
    await client.end();
    throw err;
  }
  const rows = async <R>(sql: string, params: unknown[] = []): Promise<R[]> => (await client.query(sql, params)).rows as R[];
  return {
    backend: 'postgres',
    async domains() {
      return (await rows<{ name: string; created_at: number }>('SELECT name, created_at FROM domains ORDER BY name COLLATE "C"')).map((r) => ({
        name: r.name,
        createdAt: r.created_at,
      }));
    },
    async accounts(): Promise<SnapshotAccount[]> {
      return snapshotAccounts(
        await rows<AccountRowOf<boolean>>('SELECT * FROM accounts ORDER BY id'),
        await rows<{ account_id: number; name: string }>('SELECT account_id, name FROM subscriptions ORDER BY account_id, name COLLATE "C"'),
        await rows<AppPasswordSnapshotRow>(APP_PASSWORDS_SNAPSHOT_SQL),
      );
    },
    async aliases() {
      return rows<{ source: string; target: string }>('SELECT source, target FROM aliases ORDER BY source COLLATE "C", target COLLATE "C"');
    },
    async mailboxes(accountId: number): Promise<SnapshotMailbox[]> {
      return (
        await rows<{ id: number; name: string; uid_validity: number; uid_next: number; highest_modseq: number; special_use: SpecialUse | null }>(
          'SELECT id, name, uid_validity, uid_next, highest_modseq, special_use FROM mailboxes WHERE account_id = $1 ORDER BY name COLLATE "C"',
          [accountId],
        )
      ).map((r) => ({ id: r.id, name: r.name, uidValidity: r.uid_validity, uidNext: r.uid_next, highestModSeq: r.highest_modseq, specialUse: r.special_use }));
    },
    async entries(mailboxId: number, afterUid: number, limit: number): Promise<SnapshotEntry[]> {
      return (await rows<EntryRecordRow>('SELECT * FROM entries WHERE mailbox_id = $1 AND uid > $2 ORDER BY uid LIMIT $3', [mailboxId, afterUid, limit])).map(
        snapshotEntry,
      );
    },
    async blobsBefore(hashes: readonly string[], at: { accountId: number; mailbox: string; uid: number }) {
      if (hashes.length === 0) return new Set<string>();
      // Names compare in byte order (COLLATE "C"), as mailboxes() orders them.
      const found = await rows<{ h: string }>(
        `SELECT DISTINCT e.blob_hash AS h FROM entries e JOIN mailboxes m ON m.id = e.mailbox_id
          WHERE e.blob_hash = ANY($1::text[])
            AND (m.account_id < $2 OR (m.account_id = $2 AND (m.name COLLATE "C" < $3 COLLATE "C" OR (m.name = $3 AND e.uid < $4))))`,
        [hashes, at.accountId, at.mailbox, at.uid],
      );
      return new Set(found.map((r) => r.h));
    },
    async expunged(mailboxId: number, after: [number, number], limit: number) {
      return (
        await rows<{ uid: number; modseq: number }>(
          'SELECT uid, modseq FROM expunged WHERE mailbox_id = $1 AND (modseq, uid) > ($2, $3) ORDER BY modseq, uid LIMIT $4',
          [mailboxId, after[0], after[1], limit],
        )
      ).map((r): [number, number] => [r.uid, r.modseq]);
    },
    async metadata(accountId: number): Promise<SnapshotMetadata[]> {
      return (
        await rows<{ mailbox_id: number; name: string; value: Buffer }>(
          'SELECT mailbox_id, name, value FROM metadata WHERE account_id = $1 ORDER BY mailbox_id, name COLLATE "C"',
          [accountId],
        )
      ).map((r) => ({ mailboxId: r.mailbox_id, name: r.name, value: r.value }));
    },
    async *blob(hash: string, size: number) {
      const b = (await rows<{ id: number; external: boolean }>('SELECT id, external FROM blobs WHERE hash = $1', [hash]))[0];
      if (b === undefined) throw new StoreError('io', `Cannot back up blob ${hash}: no such row`);
      if (b.external) {
        if (external === null) throw new StoreError('io', `Cannot back up blob ${hash}: no blob directory in the store URL (?blobs=)`);
        for (let pos = 0; pos < size; pos += BLOB_CHUNK) yield await external.read(hash, pos, Math.min(size, pos + BLOB_CHUNK));
        return;
      }
      const chunks = Math.ceil(size / BLOB_CHUNK);
      for (let n = 0; n < chunks; n++) {
        const r = (await rows<{ data: Buffer }>('SELECT data FROM blob_chunks WHERE blob_id = $1 AND n = $2', [b.id, n]))[0];
        if (r === undefined) throw new StoreError('io', `Cannot back up blob ${hash}: chunk ${n} is missing`);
        yield r.data;
      }
    },
    async close() {
      try {
        await client.query('COMMIT');
      } finally {
        await client.end();
      }
    },
  };
}
