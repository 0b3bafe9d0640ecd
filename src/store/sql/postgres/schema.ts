/**
 * The PostgreSQL schema, as numbered migrations applied in order at open, each in its own
 * transaction with its number recorded in schema_version. Several nodes may start at once: the
 * whole upgrade runs under one advisory lock, so exactly one of them applies a migration and the
 * others find it done. Never edit a released migration: add the next one.
 *
 * Mirrors the SQLite schema (sql/sqlite/schema.ts) table for table, with these differences:
 * - blobs: the bytes are rows of blob_chunks (1 MiB each, so a byte range reads only the chunks
 *   it needs) or, with an external blob store, not in the database at all (`external`).
 * - search: blob_text.doc is the lowercased text of every searched column (lowercased in
 *   JavaScript, so the case folding is exactly the SQLite backend's), with a GIN trigram index
 *   (pg_trgm) that narrows a LIKE '%needle%' to the candidates, verified afterwards.
 * - ids are bigserial: never reused, like SQLite's AUTOINCREMENT.
 */
import type pg from 'pg';
import { StoreError } from '../../types.js';

export interface PgMigration {
  version: number;
  sql: string;
}

/** Key of the advisory lock taken around migrations (any node, any schema of the database). */
export const MIGRATION_LOCK_KEY = 0x46616374; // "Fact"

export const PG_MIGRATIONS: readonly PgMigration[] = [
  {
    version: 1,
    sql: `
CREATE TABLE counters (name text PRIMARY KEY, value bigint NOT NULL);
INSERT INTO counters (name, value) VALUES ('uidvalidity', 0);

CREATE TABLE domains (name text PRIMARY KEY, created_at bigint NOT NULL);

CREATE TABLE accounts (
  id bigserial PRIMARY KEY,
  address text NOT NULL UNIQUE,
  domain text NOT NULL,
  password_hash text NOT NULL,
  scram text,
  quota_bytes bigint,
  quota_messages bigint,
  pop3_delete_policy text NOT NULL DEFAULT 'expunge',
  disabled boolean NOT NULL DEFAULT false,
  created_at bigint NOT NULL,
  modseq bigint NOT NULL DEFAULT 1,
  pid_counter bigint NOT NULL DEFAULT 0,
  used_bytes bigint NOT NULL DEFAULT 0,
  used_messages bigint NOT NULL DEFAULT 0
);
CREATE INDEX accounts_domain ON accounts (domain);

CREATE TABLE aliases (source text NOT NULL, target text NOT NULL, PRIMARY KEY (source, target));
CREATE INDEX aliases_target ON aliases (target);

CREATE TABLE mailboxes (
  id bigserial PRIMARY KEY,
  account_id bigint NOT NULL,
  name text NOT NULL,
  uid_validity bigint NOT NULL UNIQUE,
  uid_next bigint NOT NULL DEFAULT 1,
  highest_modseq bigint NOT NULL,
  special_use text,
  messages bigint NOT NULL DEFAULT 0,
  unseen bigint NOT NULL DEFAULT 0,
  deleted bigint NOT NULL DEFAULT 0,
  size bigint NOT NULL DEFAULT 0,
  UNIQUE (account_id, name)
);

CREATE TABLE subscriptions (account_id bigint NOT NULL, name text NOT NULL, PRIMARY KEY (account_id, name));

CREATE TABLE blobs (
  id bigserial PRIMARY KEY,
  hash text NOT NULL UNIQUE,
  size bigint NOT NULL,
  header_end bigint NOT NULL,
  refs bigint NOT NULL,
  external boolean NOT NULL
);

CREATE TABLE blob_chunks (
  blob_id bigint NOT NULL REFERENCES blobs (id) ON DELETE CASCADE,
  n integer NOT NULL,
  data bytea NOT NULL,
  PRIMARY KEY (blob_id, n)
);

CREATE TABLE blob_text (
  id bigint PRIMARY KEY REFERENCES blobs (id) ON DELETE CASCADE,
  parsed text NOT NULL,
  subject text NOT NULL,
  addr_from text NOT NULL,
  addr_to text NOT NULL,
  addr_cc text NOT NULL,
  addr_bcc text NOT NULL,
  headers text NOT NULL,
  body text NOT NULL,
  doc text NOT NULL
);
CREATE INDEX blob_text_doc ON blob_text USING gin (doc gin_trgm_ops);

CREATE TABLE entries (
  mailbox_id bigint NOT NULL,
  uid bigint NOT NULL,
  modseq bigint NOT NULL,
  flags integer NOT NULL,
  keywords text NOT NULL,
  internal_date bigint NOT NULL,
  save_date bigint NOT NULL,
  size bigint NOT NULL,
  blob_hash text NOT NULL,
  email_id text NOT NULL,
  thread_id text NOT NULL,
  pid text NOT NULL,
  pop3_hidden boolean NOT NULL DEFAULT false,
  PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX entries_modseq ON entries (mailbox_id, modseq);
CREATE INDEX entries_blob ON entries (blob_hash);

CREATE TABLE expunged (
  mailbox_id bigint NOT NULL,
  modseq bigint NOT NULL,
  uid bigint NOT NULL,
  PRIMARY KEY (mailbox_id, modseq, uid)
);

CREATE TABLE thread_keys (
  account_id bigint NOT NULL,
  message_id text NOT NULL,
  thread_id text NOT NULL,
  PRIMARY KEY (account_id, message_id)
);
`,
  },
  {
    version: 2,
    sql: `
-- TOTP second factor (RFC 6238): base32 secret, and the last accepted time step (a code is
-- accepted once, RFC 6238 §5.2).
ALTER TABLE accounts ADD COLUMN totp_secret text;
ALTER TABLE accounts ADD COLUMN totp_last_step bigint;

-- Per-device passwords. hash: see auth/app-password.ts (the secret itself is never stored).
CREATE TABLE app_passwords (
  id bigserial PRIMARY KEY,
  account_id bigint NOT NULL,
  name text NOT NULL,
  hash text NOT NULL,
  created_at bigint NOT NULL,
  last_used_at bigint,
  last_used_protocol text,
  last_used_ip text,
  UNIQUE (account_id, name)
);
CREATE INDEX app_passwords_hash ON app_passwords (account_id, hash);
`,
  },
  {
    version: 5,
    sql: `
-- RFC 5464 METADATA (see the SQLite schema): mailbox_id 0 holds the account's server entries.
CREATE TABLE metadata (
  account_id bigint NOT NULL,
  mailbox_id bigint NOT NULL,
  name text NOT NULL,
  value bytea NOT NULL,
  PRIMARY KEY (account_id, mailbox_id, name)
);
`,
  },
  {
    version: 6,
    sql: `
-- Counters shared by the nodes (store/counters.ts, pg-counters.ts): auth failures and blocks,
-- RCPT probing. UNLOGGED: no WAL flush per hit; a database crash empties them, losing at most
-- one window of counts.
CREATE UNLOGGED TABLE rate_hits (
  key text NOT NULL,
  bucket bigint NOT NULL,
  hits integer NOT NULL,
  expires_at bigint NOT NULL,
  PRIMARY KEY (key, bucket)
);
CREATE INDEX rate_hits_expires ON rate_hits (expires_at);
CREATE UNLOGGED TABLE rate_blocks (
  key text PRIMARY KEY,
  until bigint NOT NULL
);
CREATE INDEX rate_blocks_until ON rate_blocks (until);
`,
  },
  {
    version: 7,
    sql: `
-- SORT and THREAD keys of each blob (mail/sort-keys.ts), written with the blob: SORT and THREAD
-- on a large mailbox read these columns instead of every parse record (RFC 5256). refs: the
-- References ids, newline-separated. Rows of blobs stored before this version are written at
-- open (backfillSortKeys); they go with their blob.
CREATE TABLE sort_keys (
  hash text PRIMARY KEY REFERENCES blobs (hash) ON DELETE CASCADE,
  sent_date bigint,
  subject text NOT NULL,
  reply boolean NOT NULL,
  addr_from text NOT NULL,
  addr_to text NOT NULL,
  addr_cc text NOT NULL,
  display_from text NOT NULL,
  display_to text NOT NULL,
  message_id text,
  refs text NOT NULL
);
`,
  },
  {
    version: 8,
    sql: `
-- What THREAD reads of each blob besides its date (see the SQLite schema); NULL until written:
-- rows of earlier versions are filled at open (backfillThreadText). SORT and THREAD read
-- sort_keys joined with entries (a hash join; SQLite keeps a per-entry sort_index instead).
ALTER TABLE sort_keys ADD COLUMN thread_text text;
`,
  },
  {
    version: 9,
    sql: `
-- pid (the POP3 UIDL) looked up by value: a restore's or an import's check that a UIDL is not
-- used by another entry of the account, POP3 UIDL lookups, an import's re-run finding what it
-- stored. Without it each of those reads the whole entries table.
CREATE INDEX entries_pid ON entries (pid);
`,
  },
  {
    version: 10,
    sql: `
-- The numbers of THREAD's base subjects and Message-IDs (RFC 5256 §4), one per distinct string,
-- given at first use (pg-store.ts nameNumbers); sort_keys.thread_text holds them instead of
-- 53-bit hashes, which two strings could share. See SQLite's migration 10.
CREATE TABLE thread_names (
  id bigserial PRIMARY KEY,
  name text NOT NULL UNIQUE
);
-- Rewritten with the numbers at open (backfillThreadText), which the removed mark lets run.
UPDATE sort_keys SET thread_text = NULL;
DELETE FROM counters WHERE name = 'backfill_done';
`,
  },
  {
    version: 11,
    sql: `
-- The view cache's snapshot of a mailbox (store/view-snapshot.ts), as on SQLite: derived data,
-- a missing, old or unreadable one is only slower.
CREATE TABLE view_snapshots (
  mailbox_id bigint PRIMARY KEY,
  modseq bigint NOT NULL,
  stored_at bigint NOT NULL,
  data bytea NOT NULL
);
`,
  },
  {
    version: 12,
    sql: `
-- sort_keys keyed by the blob's id instead of its hash, as on SQLite (its migration 12): a new
-- blob's keys go at the end of the primary key's index instead of on a random page. SORT and
-- THREAD reach them from the entries through blobs (hash to id).
CREATE TABLE sort_keys_by_id (
  id bigint PRIMARY KEY REFERENCES blobs (id) ON DELETE CASCADE,
  sent_date bigint,
  subject text NOT NULL,
  reply boolean NOT NULL,
  addr_from text NOT NULL,
  addr_to text NOT NULL,
  addr_cc text NOT NULL,
  display_from text NOT NULL,
  display_to text NOT NULL,
  message_id text,
  refs text NOT NULL,
  thread_text text
);
INSERT INTO sort_keys_by_id
SELECT b.id, k.sent_date, k.subject, k.reply, k.addr_from, k.addr_to, k.addr_cc, k.display_from, k.display_to, k.message_id, k.refs, k.thread_text
  FROM sort_keys k JOIN blobs b ON b.hash = k.hash ORDER BY b.id;
DROP TABLE sort_keys;
ALTER TABLE sort_keys_by_id RENAME TO sort_keys;
ALTER TABLE sort_keys RENAME CONSTRAINT sort_keys_by_id_pkey TO sort_keys_pkey;
ALTER TABLE sort_keys RENAME CONSTRAINT sort_keys_by_id_id_fkey TO sort_keys_id_fkey;
`,
  },
];

/**
 * Applies the missing migrations under the migration lock. Refuses a database written by a newer
 * version. pg_trgm is created in the public schema so that every Facteur schema of the database
 * (search_path "schema", public) shares it.
 */
export async function migratePg(client: pg.ClientBase): Promise<number> {
  const latest = PG_MIGRATIONS[PG_MIGRATIONS.length - 1]?.version ?? 0;
  await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
  try {
    await client.query('CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public');
    await client.query('CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, applied_at bigint NOT NULL)');
    const r = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM schema_version');
    const current = r.rows[0]?.v ?? 0;
    if (current > latest) {
      throw new StoreError('invalid', `Cannot open store: schema version ${current} is newer than this program (${latest})`);
    }
    // Every migration not recorded yet (numbers may land out of order, see the SQLite migrate).
    const applied = new Set((await client.query<{ version: number }>('SELECT version FROM schema_version')).rows.map((row) => row.version));
    for (const m of PG_MIGRATIONS) {
      if (applied.has(m.version)) continue;
      await client.query('BEGIN');
      try {
        await client.query(m.sql);
        await client.query('INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)', [m.version, Date.now()]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK');
        throw err;
      }
    }
    return latest;
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]);
  }
}
