/**
 * A fresh store in a temp directory for a test. `cleanup()` verifies every store invariant
 * (checkConsistency) and fails the test on any problem, then closes the store and removes the
 * directory. The backend is SQLite, or PostgreSQL when FACTEUR_TEST_STORE=postgres (with
 * FACTEUR_TEST_PG=postgres://...): then each store lives in a fresh schema, dropped at cleanup.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { parseMessage } from '../../src/mail/parse.js';
import { pgQueueSchema } from '../../src/queue/open.js';
import { openPgStore } from '../../src/store/sql/postgres/pg-store.js';
import type { PgStoreOptions } from '../../src/store/sql/postgres/pg-store.js';
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
  if (process.env.FACTEUR_TEST_STORE === 'postgres') {
    return openPgTestStore({
      ...(options.onListenerError === undefined ? {} : { onListenerError: options.onListenerError }),
      ...(options.blobs?.inlineMaxBytes === 0 ? { blobs: 'directory' as const } : {}),
    });
  }
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

/** The PostgreSQL server of the tests (FACTEUR_TEST_PG), or null when none is configured. */
export function testPgUrl(): string | null {
  const url = process.env.FACTEUR_TEST_PG;
  if (url === undefined || url === '') {
    if (process.env.FACTEUR_TEST_STORE === 'postgres') throw new Error('FACTEUR_TEST_STORE=postgres needs FACTEUR_TEST_PG=postgres://...');
    return null;
  }
  return url;
}

async function dropSchema(url: string, schema: string): Promise<void> {
  const admin = new pg.Client({ connectionString: url });
  try {
    await admin.connect();
    // The store's schema and, when an app ran on it, its outbound queue's (queue/open.ts).
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await admin.query(`DROP SCHEMA IF EXISTS "${pgQueueSchema(schema)}" CASCADE`);
  } finally {
    await admin.end().catch(() => undefined);
  }
}

/**
 * Where a test may open (and reopen, in a restart or another process) a store of the backend
 * under test: a fresh SQLite directory, or with FACTEUR_TEST_STORE=postgres a store URL naming a
 * fresh schema. cleanup() removes it.
 */
export async function testStoreLocation(): Promise<{ location: string; cleanup(): Promise<void> }> {
  if (process.env.FACTEUR_TEST_STORE === 'postgres') {
    const url = testPgUrl();
    if (url === null) throw new Error('FACTEUR_TEST_PG is not set');
    const schema = `t_${randomBytes(8).toString('hex')}`;
    const u = new URL(url);
    u.searchParams.set('schema', schema);
    return {
      location: u.toString(),
      cleanup: () => dropSchema(url, schema),
    };
  }
  const dir = await mkdtemp(join(tmpdir(), 'facteur-store-'));
  return { location: dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export interface PgTestStore extends TestStore {
  schema: string;
  url: string;
  /** Opens another store (another "node") on the same schema; closed by cleanup. */
  openNode(extra?: Partial<PgStoreOptions>): Promise<MailStore>;
}

/**
 * A PostgreSQL store in a fresh schema with a random name. blobs 'directory' puts the bytes in
 * the test's temp directory instead of the database. cleanup() checks consistency, closes every
 * node and drops the schema.
 */
export async function openPgTestStore(
  options: Omit<PgStoreOptions, 'url' | 'schema' | 'blobs'> & { blobs?: 'database' | 'directory' } = {},
): Promise<PgTestStore> {
  const url = testPgUrl();
  if (url === null) throw new Error('FACTEUR_TEST_PG is not set');
  const schema = `t_${randomBytes(8).toString('hex')}`;
  const dir = await mkdtemp(join(tmpdir(), 'facteur-pgstore-'));
  const { blobs, ...rest } = options;
  const storeOptions: PgStoreOptions = { ...rest, url, schema, blobs: blobs === 'directory' ? join(dir, 'blobs') : 'database' };
  const store = await openPgStore(storeOptions);
  const nodes: MailStore[] = [];
  let cleaned = false;
  return {
    store,
    dir,
    schema,
    url,
    async openNode(extra = {}) {
      const node = await openPgStore({ ...storeOptions, ...extra });
      nodes.push(node);
      return node;
    },
    async cleanup() {
      if (cleaned) return;
      cleaned = true;
      let problems: string[] = [];
      try {
        for (const n of nodes) await n.close();
        problems = await store.checkConsistency();
      } finally {
        await store.close();
        try {
          await dropSchema(url, schema);
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      }
      if (problems.length > 0) throw new Error(`store is inconsistent:\n  ${problems.join('\n  ')}`);
    },
  };
}
