/**
 * A fresh store in a temp directory for a test. `cleanup()` verifies every store invariant
 * (checkConsistency) and fails the test on any problem, then closes the store and removes the
 * directory. The backend is SQLite; FACTEUR_TEST_STORES will select others when they exist.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseMessage } from '../../src/mail/parse.js';
import { openSqliteStore } from '../../src/store/sql/sqlite/sqlite-store.js';
import type { SqliteStoreOptions } from '../../src/store/sql/sqlite/sqlite-store.js';
import type { AppendInput, MailStore } from '../../src/store/types.js';
import { makeMessage } from './messages.js';
import type { TestMessageOptions } from './messages.js';

export interface TestStore {
  store: MailStore;
  dir: string;
  cleanup(): Promise<void>;
}

export async function openTestStore(options: Omit<SqliteStoreOptions, 'dir'> = {}): Promise<TestStore> {
  const dir = await mkdtemp(join(tmpdir(), 'facteur-store-'));
  const store = await openSqliteStore({ ...options, dir });
  let cleaned = false;
  return {
    store,
    dir,
    async cleanup() {
      if (cleaned) return;
      cleaned = true;
      let problems: string[] = [];
      try {
        problems = await store.checkConsistency();
      } finally {
        await store.close();
        await rm(dir, { recursive: true, force: true });
      }
      if (problems.length > 0) throw new Error(`store is inconsistent:\n  ${problems.join('\n  ')}`);
    },
  };
}

/** A real message and its real parse record, ready for append/deliver. */
export function testMessage(
  opts: Partial<TestMessageOptions> = {},
  extra: Pick<AppendInput, 'flags' | 'internalDate'> = {},
): AppendInput {
  const raw = makeMessage({
    from: 'Alice Sender <alice@example.org>',
    to: 'bob@example.com',
    subject: 'Hello',
    body: 'Hello there.\r\n',
    ...opts,
  });
  return { raw, parsed: parseMessage(raw), ...extra };
}
