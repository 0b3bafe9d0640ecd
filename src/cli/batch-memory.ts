/**
 * Memory of the CLI's long batch commands (import, backup, restore, export): they stream, so
 * their live heap is small and flat (about 20 MB with the modules loaded), but V8 sizes its heap
 * for a server's throughput and lets it grow to three or four times the live set between two
 * full collections, and the store's page cache is sized for a server's hot pages. Both are set
 * lower here so that a 200,000-message import stays well under 200 MB of RSS
 * (docs/benchmarks.md, import).
 */
import { setFlagsFromString } from 'node:v8';
import type { OpenStoreOptions } from '../store/open.js';

/** SQLite page cache of the store a batch command opens: its writes append, its reads are few. */
export const BATCH_STORE_OPTIONS: OpenStoreOptions = { pageCacheKiB: 8 * 1024 };

/**
 * The heap grows by at most 25% over the live set after a full collection (V8's
 * --heap-growing-percent; read at each collection, so setting it once the process runs takes
 * effect). Costs a few more collections, each of a small heap.
 */
export function favourSmallHeap(): void {
  setFlagsFromString('--heap-growing-percent=25');
}
