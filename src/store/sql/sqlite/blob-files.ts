/**
 * Large blobs as files: <root>/ab/cdef... (sha256 hex split after two characters, so no
 * directory holds more than 1/256 of the files).
 *
 * Durability order (DESIGN.md invariant 1, store/types.ts): write a temp file, fsync it, rename
 * it into place, fsync the directory, and only then commit the metadata that points at it. A
 * crash before the commit leaves at worst an orphan file, which collectGarbage removes; never an
 * entry without its bytes.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, unlink } from 'node:fs/promises';
import { unlinkSync } from 'node:fs';
import { join } from 'node:path';

export const TMP_DIR = 'tmp';

export function blobPath(root: string, hash: string): string {
  return join(root, hash.slice(0, 2), hash.slice(2));
}

/** fsync of a directory makes a rename or a new entry in it durable (POSIX leaves it to us). */
export async function syncDir(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export interface BlobFileWriter {
  /** Temp files being written now, which garbage collection must leave alone. */
  readonly active: ReadonlySet<string>;
  write(hash: string, data: Buffer): Promise<void>;
}

export function createBlobFileWriter(root: string): BlobFileWriter {
  const active = new Set<string>();
  return {
    active,
    async write(hash, data) {
      const name = `${hash}.${randomBytes(6).toString('hex')}`;
      const tmp = join(root, TMP_DIR, name);
      active.add(name);
      try {
        const fh = await open(tmp, 'wx', 0o600);
        try {
          await fh.writeFile(data);
          await fh.sync();
        } finally {
          await fh.close();
        }
        const dir = join(root, hash.slice(0, 2));
        const created = await mkdir(dir, { recursive: true });
        if (created !== undefined) await syncDir(root);
        await rename(tmp, blobPath(root, hash));
        await syncDir(dir);
      } catch (err) {
        await unlink(tmp).catch(() => undefined);
        throw err;
      } finally {
        active.delete(name);
      }
    },
  };
}

/** Synchronous so that no ingest can slip a new file in between the check and the removal. */
export function removeBlobFile(root: string, hash: string): void {
  try {
    unlinkSync(blobPath(root, hash));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

export function removeTempFile(root: string, name: string): void {
  try {
    unlinkSync(join(root, TMP_DIR, name));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** Every blob file (by hash) and temp file under root. */
export async function listBlobFiles(root: string): Promise<{ hashes: string[]; temps: string[] }> {
  const hashes: string[] = [];
  const dirs = await readdir(root, { withFileTypes: true });
  for (const d of dirs) {
    if (!d.isDirectory() || !/^[0-9a-f]{2}$/.test(d.name)) continue;
    for (const f of await readdir(join(root, d.name))) {
      if (/^[0-9a-f]{62}$/.test(f)) hashes.push(d.name + f);
    }
  }
  const temps = await readdir(join(root, TMP_DIR)).catch(() => [] as string[]);
  return { hashes, temps };
}
