/**
 * The disk's fdatasync latency right now, in a directory: 4 KiB rewritten in place then
 * fdatasync'd, `n` times (the WAL's case once it has been recycled; a file that grows also makes
 * the file system commit its journal). On a shared machine this moves with the other work, so a
 * benchmark reports it beside its figures.
 */
import { closeSync, fdatasyncSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export interface FsyncProbe {
  medianMs: number;
  p90Ms: number;
  perSecond: number;
}

export function probeFsync(dir: string, n = 200): FsyncProbe {
  const path = join(dir, `fsync-probe-${process.pid}`);
  const fd = openSync(path, 'w');
  try {
    const page = Buffer.alloc(4096, 0x61);
    writeSync(fd, page, 0, page.length, 0);
    fdatasyncSync(fd);
    const lat: number[] = [];
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      writeSync(fd, page, 0, page.length, 0);
      const t = performance.now();
      fdatasyncSync(fd);
      lat.push(performance.now() - t);
    }
    const total = performance.now() - t0;
    lat.sort((a, b) => a - b);
    return { medianMs: lat[n >> 1]!, p90Ms: lat[Math.floor(n * 0.9)]!, perSecond: (n / total) * 1000 };
  } finally {
    closeSync(fd);
    unlinkSync(path);
  }
}

export function formatProbe(p: FsyncProbe): string {
  return `fdatasync of 4 KiB: median ${p.medianMs.toFixed(2)} ms, p90 ${p.p90Ms.toFixed(2)} ms (${p.perSecond.toFixed(0)}/s back to back)`;
}
