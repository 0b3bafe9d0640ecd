/**
 * Where a networked backend keeps message bytes outside its database: a small interface, so that
 * a directory shared by the nodes (NFS, a mounted volume) or an S3-compatible object store can
 * hold them. Keys are sha256 hex of the content, so a put is idempotent and a blob never changes.
 *
 * Contract for an implementation (an S3 one would map put/read/delete/list to PutObject,
 * GetObject with a Range header, DeleteObject and ListObjectsV2):
 * - put resolves only when the bytes are durable; a crash mid-put leaves nothing under the key
 *   (or an orphan that list reports, for collectGarbage).
 * - read(hash, start, end) returns exactly bytes [start, end), reading no more than it must.
 * - delete of a missing key succeeds.
 * - list reports every stored key with its last modification time, so garbage collection can
 *   leave young objects alone (another node may be between its put and its commit).
 * The metadata backend decides when a blob may be deleted (reference counts); the blob store
 * never does.
 */
import { open, stat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  TMP_DIR,
  blobPath,
  createBlobFileWriter,
  listBlobFiles,
  removeBlobFile,
  removeTempFile,
} from './sql/sqlite/blob-files.js';
import { StoreError } from './types.js';

export interface StoredBlob {
  hash: string;
  /** Last modification, epoch ms. */
  modified: number;
}

export interface BlobStore {
  /** A short description for logs and consistency reports ("directory /srv/blobs"). */
  readonly description: string;
  put(hash: string, data: Buffer): Promise<void>;
  /** Size in bytes, or null when the blob is absent. */
  size(hash: string): Promise<number | null>;
  read(hash: string, start: number, end: number): Promise<Buffer>;
  delete(hash: string): Promise<void>;
  list(): Promise<StoredBlob[]>;
  /** Removes interrupted writes older than maxAgeMs; returns how many. */
  removeStaleTemps(maxAgeMs: number): Promise<number>;
}

/** Blobs as files <dir>/ab/cdef..., written like the SQLite backend's (fsync, rename, fsync dir). */
export function createFileBlobStore(dir: string): BlobStore {
  const writer = createBlobFileWriter(dir);
  return {
    description: `directory ${dir}`,
    put: (hash, data) => writer.write(hash, data),
    async size(hash) {
      try {
        return (await stat(blobPath(dir, hash))).size;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw err;
      }
    },
    async read(hash, start, end) {
      let fh;
      try {
        fh = await open(blobPath(dir, hash), 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          throw new StoreError('not-found', `Cannot read message ${hash}: no such blob`);
        }
        throw new StoreError('io', `Cannot read message ${hash}: ${String(err)}`);
      }
      try {
        const buf = Buffer.allocUnsafe(Math.max(0, end - start));
        let off = 0;
        while (off < buf.length) {
          const { bytesRead } = await fh.read(buf, off, buf.length - off, start + off);
          if (bytesRead === 0) throw new StoreError('io', `Cannot read message ${hash}: file is short`);
          off += bytesRead;
        }
        return buf;
      } finally {
        await fh.close();
      }
    },
    async delete(hash) {
      removeBlobFile(dir, hash);
    },
    async list() {
      const { hashes } = await listBlobFiles(dir);
      const out: StoredBlob[] = [];
      for (const hash of hashes) {
        try {
          out.push({ hash, modified: (await stat(blobPath(dir, hash))).mtimeMs });
        } catch {
          // Removed meanwhile.
        }
      }
      return out;
    },
    async removeStaleTemps(maxAgeMs) {
      let removed = 0;
      const names = await readdir(join(dir, TMP_DIR)).catch(() => [] as string[]);
      for (const name of names) {
        if (writer.active.has(name)) continue;
        try {
          if (Date.now() - (await stat(join(dir, TMP_DIR, name))).mtimeMs < maxAgeMs) continue;
        } catch {
          continue;
        }
        removeTempFile(dir, name);
        removed += 1;
      }
      return removed;
    },
  };
}
