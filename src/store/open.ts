/**
 * Opens the store named by configuration: a data directory (SQLite, the embedded default) or a
 * database URL. The one place besides tests that picks a concrete backend for the server.
 */
import { openSqliteStore } from './sql/sqlite/sqlite-store.js';
import { StoreError } from './types.js';
import type { MailStore } from './types.js';

export async function openStore(location: string): Promise<MailStore> {
  if (/^postgres(ql)?:\/\//i.test(location)) {
    throw new StoreError('invalid', 'Cannot open store: the PostgreSQL backend is not available in this version');
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(location)) {
    throw new StoreError('invalid', `Cannot open store: unknown store URL scheme in ${location.split(':')[0] ?? ''}://`);
  }
  if (location.length === 0) throw new StoreError('invalid', 'Cannot open store: empty data directory');
  return openSqliteStore({ dir: location });
}
