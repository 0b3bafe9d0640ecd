/**
 * Opens the store named by configuration: a data directory (SQLite, the embedded default) or a
 * database URL. The one place besides tests that picks a concrete backend for the server.
 */
import { StoreError } from './types.js';
import { VIEW_WARM_MESSAGES } from './view-cache.js';
import type { MailStore } from './types.js';

export interface OpenStoreOptions {
  /** PostgreSQL only: 'database' (default) or a directory shared by the nodes. The URL's
   * ?blobs= parameter, when present, wins. */
  blobs?: string;
  /** SQLite only: the page cache, KiB (SqliteStoreOptions.pageCacheKiB). */
  pageCacheKiB?: number;
  /** A server: load the most recently used mailbox views in the background at open (their
   * snapshots, view-cache.ts), so the first SELECTs after a start find them. Not for a
   * command-line tool that opens the store for a moment. */
  warmViews?: boolean;
}

/**
 * postgres://user@host:5432/db[?schema=NAME][&blobs=/shared/dir][&pool_size=N] opens the PostgreSQL backend
 * (many nodes, docs/scaling.md); anything else that is not a URL is a SQLite data directory.
 */
export async function openStore(location: string, options: OpenStoreOptions = {}): Promise<MailStore> {
  if (/^postgres(ql)?:\/\//i.test(location)) {
    // Each backend is loaded when it is the one configured (pg or better-sqlite3, not both).
    const { openPgStore, parsePgStoreUrl } = await import('./sql/postgres/pg-store.js');
    const parsed = parsePgStoreUrl(location);
    return openPgStore({ ...parsed, blobs: parsed.blobs ?? options.blobs ?? 'database', ...warm(options) });
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(location)) {
    throw new StoreError('invalid', `Cannot open store: unknown store URL scheme in ${location.split(':')[0] ?? ''}://`);
  }
  if (location.length === 0) throw new StoreError('invalid', 'Cannot open store: empty data directory');
  const { openSqliteStore } = await import('./sql/sqlite/sqlite-store.js');
  return openSqliteStore({ dir: location, ...(options.pageCacheKiB === undefined ? {} : { pageCacheKiB: options.pageCacheKiB }), ...warm(options) });
}

function warm(options: OpenStoreOptions): { viewWarmMessages?: number } {
  return options.warmViews === true ? { viewWarmMessages: VIEW_WARM_MESSAGES } : {};
}
