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
import { mkdir, open, readdir, rename, unlink, writeFile } from 'node:fs/promises';
import { readFileSync, readdirSync, unlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

export const TMP_DIR = 'tmp';
/**
 * Holds: one file per backup in progress (another process). Its snapshot may reference blob
 * files whose rows were deleted after it began, so while a hold exists no blob file is removed;
 * the files left behind are orphans that collectGarbage removes once the holds are gone.
 */
export const HOLDS_DIR = 'holds';

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

/** Whether a backup holds the blob files (synchronous: checked right before a removal). */
export function filesHeld(root: string): boolean {
  try {
    return readdirSync(join(root, HOLDS_DIR)).length > 0;
  } catch {
    return false;
  }
}

/** Takes a hold for this process; the returned function releases it. */
export async function holdFiles(root: string): Promise<() => Promise<void>> {
  await mkdir(join(root, HOLDS_DIR), { recursive: true });
  const path = join(root, HOLDS_DIR, `${process.pid}.${randomBytes(6).toString('hex')}`);
  await writeFile(path, JSON.stringify({ pid: process.pid, host: hostname(), since: new Date().toISOString() }));
  return () => unlink(path).catch(() => undefined);
}

/** Removes the holds of processes of this host that are gone (a backup killed mid-way). */
export function removeStaleHolds(root: string): void {
  let names: string[];
  try {
    names = readdirSync(join(root, HOLDS_DIR));
  } catch {
    return;
  }
  for (const name of names) {
    const path = join(root, HOLDS_DIR, name);
    try {
      const h = JSON.parse(readFileSync(path, 'utf8')) as { pid?: number; host?: string };
      if (h.host !== hostname() || typeof h.pid !== 'number') continue;
      try {
        process.kill(h.pid, 0);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ESRCH') unlinkSync(path);
      }
    } catch {
      // Unreadable or half-written: left alone, an operator can remove it.
    }
  }
}
