/**
 * The SQLite schema, as numbered migrations applied in order at open. Each migration runs in its
 * own transaction and records its number in schema_version, so a crash mid-upgrade leaves the
 * database at the previous version. Never edit a released migration: add the next one.
 */
import type { Database } from 'better-sqlite3';
import { StoreError } from '../../types.js';

export interface Migration {
  version: number;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    sql: `
-- Global counters: 'uidvalidity' is the last UIDVALIDITY given (never reused, RFC 9051 §2.3.1.1).
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO counters (name, value) VALUES ('uidvalidity', 0);

CREATE TABLE domains (name TEXT PRIMARY KEY, created_at INTEGER NOT NULL) WITHOUT ROWID;

-- modseq: the account's last given modification sequence (RFC 7162), shared by its mailboxes.
-- pid_counter: suffix of the pids given to copies. used_*: quota usage (sum over entries).
CREATE TABLE accounts (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  address TEXT NOT NULL UNIQUE,
  domain TEXT NOT NULL,
  password_hash TEXT NOT NULL,
  scram TEXT,
  quota_bytes INTEGER,
  quota_messages INTEGER,
  pop3_delete_policy TEXT NOT NULL DEFAULT 'expunge',
  disabled INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  modseq INTEGER NOT NULL DEFAULT 1,
  pid_counter INTEGER NOT NULL DEFAULT 0,
  used_bytes INTEGER NOT NULL DEFAULT 0,
  used_messages INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX accounts_domain ON accounts (domain);

-- source is local@domain or @domain (catch-all); a source may have several targets.
CREATE TABLE aliases (source TEXT NOT NULL, target TEXT NOT NULL, PRIMARY KEY (source, target)) WITHOUT ROWID;
CREATE INDEX aliases_target ON aliases (target);

-- AUTOINCREMENT: a mailbox id is never reused, sessions may hold one across a delete.
-- messages/unseen/deleted/size are kept up to date by every write (checked by checkConsistency).
CREATE TABLE mailboxes (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  account_id INTEGER NOT NULL,
  name TEXT NOT NULL,
  uid_validity INTEGER NOT NULL,
  uid_next INTEGER NOT NULL DEFAULT 1,
  highest_modseq INTEGER NOT NULL,
  special_use TEXT,
  messages INTEGER NOT NULL DEFAULT 0,
  unseen INTEGER NOT NULL DEFAULT 0,
  deleted INTEGER NOT NULL DEFAULT 0,
  size INTEGER NOT NULL DEFAULT 0,
  UNIQUE (account_id, name)
);

-- By name, not mailbox id: subscriptions outlive the mailbox (RFC 9051 §6.3.7).
CREATE TABLE subscriptions (account_id INTEGER NOT NULL, name TEXT NOT NULL, PRIMARY KEY (account_id, name)) WITHOUT ROWID;

-- One row per distinct content (sha256), narrow so that reference counting rewrites little.
-- AUTOINCREMENT: an id (also the search rowid) is never reused, even within one batch.
-- in_file: the bytes are in blobs/ab/cdef... instead of blob_content.data.
-- header_end: offset of the body, so HEADER searches can read just the header bytes.
CREATE TABLE blobs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  hash TEXT NOT NULL UNIQUE,
  size INTEGER NOT NULL,
  header_end INTEGER NOT NULL,
  refs INTEGER NOT NULL,
  in_file INTEGER NOT NULL
);
-- The bulky part of a blob, same id: the bytes when small, and the parse record (JSON without
-- its text, which lives in search.body).
CREATE TABLE blob_content (
  id INTEGER PRIMARY KEY,
  data BLOB,
  parsed TEXT NOT NULL
);

-- flags: bitmask of the system flags (store/flags.ts); keywords: space-separated.
CREATE TABLE entries (
  mailbox_id INTEGER NOT NULL,
  uid INTEGER NOT NULL,
  modseq INTEGER NOT NULL,
  flags INTEGER NOT NULL,
  keywords TEXT NOT NULL,
  internal_date INTEGER NOT NULL,
  save_date INTEGER NOT NULL,
  size INTEGER NOT NULL,
  blob_hash TEXT NOT NULL,
  email_id TEXT NOT NULL,
  thread_id TEXT NOT NULL,
  pid TEXT NOT NULL,
  pop3_hidden INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX entries_modseq ON entries (mailbox_id, modseq);
CREATE INDEX entries_blob ON entries (blob_hash);

-- The change log of removals. Appends and flag changes need no rows: an entry's own modseq
-- says when it last changed. Expunged UIDs are kept for QRESYNC VANISHED (RFC 7162 §3.2.10).
CREATE TABLE expunged (
  mailbox_id INTEGER NOT NULL,
  modseq INTEGER NOT NULL,
  uid INTEGER NOT NULL,
  PRIMARY KEY (mailbox_id, modseq, uid)
) WITHOUT ROWID;

-- Message-ID -> thread, per account, for THREADID (RFC 8474 §5.2).
CREATE TABLE thread_keys (
  account_id INTEGER NOT NULL,
  message_id TEXT NOT NULL,
  thread_id TEXT NOT NULL,
  PRIMARY KEY (account_id, message_id)
) WITHOUT ROWID;

-- The text SEARCH looks at, per blob (same id): decoded subject and addresses, the header
-- section without trace/signature fields, the body text (also ParsedMessage.text).
CREATE TABLE blob_text (
  id INTEGER PRIMARY KEY,
  subject TEXT NOT NULL,
  addr_from TEXT NOT NULL,
  addr_to TEXT NOT NULL,
  addr_cc TEXT NOT NULL,
  addr_bcc TEXT NOT NULL,
  headers TEXT NOT NULL,
  body TEXT NOT NULL
);

-- Full-text index over blob_text, rowid = blobs.id. Trigrams (case-folded) find the candidates
-- containing every trigram of a needle; the substring match is then verified on blob_text
-- (RFC 9051 §6.4.4 SEARCH semantics). detail=column: positions are not needed for that and
-- would double the index size and the ingest cost. Contentless with contentless_delete: the
-- text is in blob_text already, and removing a document needs no re-tokenizing (an expunge of
-- many messages is 10x faster).
CREATE VIRTUAL TABLE search USING fts5(
  subject, addr_from, addr_to, addr_cc, addr_bcc, headers, body,
  tokenize = 'trigram', detail = column, content = '', contentless_delete = 1
);
`,
  },
  {
    version: 2,
    sql: `
-- TOTP second factor (RFC 6238): base32 secret, and the last accepted time step (a code is
-- accepted once, RFC 6238 §5.2).
ALTER TABLE accounts ADD COLUMN totp_secret TEXT;
ALTER TABLE accounts ADD COLUMN totp_last_step INTEGER;

-- Per-device passwords. hash: see auth/app-password.ts (the secret itself is never stored).
CREATE TABLE app_passwords (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  account_id INTEGER NOT NULL,
  name TEXT NOT NULL,
  hash TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  last_used_at INTEGER,
  last_used_protocol TEXT,
  last_used_ip TEXT,
  UNIQUE (account_id, name)
);
CREATE INDEX app_passwords_hash ON app_passwords (account_id, hash);
`,
  },
  {
    version: 5,
    sql: `
-- RFC 5464 METADATA: annotations of a mailbox, or of the server (mailbox_id 0) as one account
-- sees it; /shared entries are stored per account too (one user per mailbox). name is the
-- lowercased entry name (entry names are case-insensitive, RFC 5464 §3.2). Rows go with their
-- mailbox (DELETE) and follow it through RENAME (same mailbox id).
CREATE TABLE metadata (
  account_id INTEGER NOT NULL,
  mailbox_id INTEGER NOT NULL,
  name TEXT NOT NULL,
  value BLOB NOT NULL,
  PRIMARY KEY (account_id, mailbox_id, name)
) WITHOUT ROWID;
`,
  },
  {
    version: 7,
    sql: `
-- SORT and THREAD keys of each blob (mail/sort-keys.ts), written with the blob: SORT and THREAD
-- on a large mailbox read these columns instead of every parse record (RFC 5256). refs: the
-- References ids, newline-separated. Rows of blobs stored before this version are written at
-- open (see backfillSortKeys).
CREATE TABLE sort_keys (
  hash TEXT PRIMARY KEY,
  sent_date INTEGER,
  subject TEXT NOT NULL,
  reply INTEGER NOT NULL,
  addr_from TEXT NOT NULL,
  addr_to TEXT NOT NULL,
  addr_cc TEXT NOT NULL,
  display_from TEXT NOT NULL,
  display_to TEXT NOT NULL,
  message_id TEXT,
  refs TEXT NOT NULL
) WITHOUT ROWID;
`,
  },
  {
    version: 8,
    sql: `
-- thread_text: what THREAD reads of the blob besides its date (mail/sort-keys.ts threadText):
-- flags, base subject and Message-IDs as numbers. NULL until written: rows of earlier versions
-- are filled at open (backfillThreadText).
ALTER TABLE sort_keys ADD COLUMN thread_text TEXT;

-- The SORT and THREAD keys of each entry (RFC 5256 §3 and §4, RFC 5957), beside its mailbox and
-- UID: SORT and THREAD read one mailbox's rows in a scan or in index order, without a lookup of
-- each entry's blob. sent: the Date: header, else INTERNALDATE (RFC 5256 §3 DATE); thread: sent
-- and thread_text, as text (THREAD reads it whole, without converting numbers). Kept by the
-- triggers below from entries and sort_keys, whatever writes them; checkConsistency verifies.
-- Indexes for the keys clients sort most by (DATE, ARRIVAL, SUBJECT, also THREAD's subjects);
-- the others are sorted when asked.
CREATE TABLE sort_index (
  mailbox_id INTEGER NOT NULL,
  uid INTEGER NOT NULL,
  arrival INTEGER NOT NULL,
  size INTEGER NOT NULL,
  sent INTEGER NOT NULL,
  subject TEXT NOT NULL,
  addr_from TEXT NOT NULL,
  addr_to TEXT NOT NULL,
  addr_cc TEXT NOT NULL,
  display_from TEXT NOT NULL,
  display_to TEXT NOT NULL,
  thread TEXT,
  PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX sort_index_sent ON sort_index (mailbox_id, sent);
CREATE INDEX sort_index_arrival ON sort_index (mailbox_id, arrival);
CREATE INDEX sort_index_subject ON sort_index (mailbox_id, subject);

CREATE TRIGGER sort_index_entry_insert AFTER INSERT ON entries BEGIN
  INSERT OR REPLACE INTO sort_index
  SELECT new.mailbox_id, new.uid, new.internal_date, new.size, coalesce(k.sent_date, new.internal_date), k.subject, k.addr_from, k.addr_to, k.addr_cc, k.display_from, k.display_to, coalesce(k.sent_date, new.internal_date) || ' ' || k.thread_text
    FROM sort_keys k WHERE k.hash = new.blob_hash;
END;
CREATE TRIGGER sort_index_entry_delete AFTER DELETE ON entries BEGIN
  DELETE FROM sort_index WHERE mailbox_id = old.mailbox_id AND uid = old.uid;
END;
CREATE TRIGGER sort_index_entry_update AFTER UPDATE OF mailbox_id, uid, internal_date, size, blob_hash ON entries BEGIN
  DELETE FROM sort_index WHERE mailbox_id = old.mailbox_id AND uid = old.uid;
  INSERT OR REPLACE INTO sort_index
  SELECT new.mailbox_id, new.uid, new.internal_date, new.size, coalesce(k.sent_date, new.internal_date), k.subject, k.addr_from, k.addr_to, k.addr_cc, k.display_from, k.display_to, coalesce(k.sent_date, new.internal_date) || ' ' || k.thread_text
    FROM sort_keys k WHERE k.hash = new.blob_hash;
END;
-- Keys written after their entries (a backfill, a rewrite): every entry of the blob.
CREATE TRIGGER sort_index_keys_insert AFTER INSERT ON sort_keys BEGIN
  INSERT OR REPLACE INTO sort_index
  SELECT e.mailbox_id, e.uid, e.internal_date, e.size, coalesce(new.sent_date, e.internal_date), new.subject, new.addr_from, new.addr_to, new.addr_cc, new.display_from, new.display_to, coalesce(new.sent_date, e.internal_date) || ' ' || new.thread_text
    FROM entries e WHERE e.blob_hash = new.hash;
END;
-- thread_text written at open for rows of earlier versions (backfillThreadText).
CREATE TRIGGER sort_index_keys_update AFTER UPDATE OF thread_text ON sort_keys BEGIN
  UPDATE sort_index SET thread = sent || ' ' || new.thread_text
   WHERE (mailbox_id, uid) IN (SELECT mailbox_id, uid FROM entries WHERE blob_hash = new.hash);
END;

INSERT INTO sort_index
SELECT e.mailbox_id, e.uid, e.internal_date, e.size, coalesce(k.sent_date, e.internal_date), k.subject, k.addr_from, k.addr_to, k.addr_cc, k.display_from, k.display_to, coalesce(k.sent_date, e.internal_date) || ' ' || k.thread_text
  FROM entries e JOIN sort_keys k ON k.hash = e.blob_hash;
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
-- THREAD (RFC 5256 §4) compares base subjects and Message-IDs as strings. Each distinct one gets
-- a number here at its first use, for the whole store, and sort_keys.thread_text holds these
-- numbers (until now 53-bit hashes of the strings, which two different strings could share).
-- Names are kept when the messages naming them go: a later message with the same name gets the
-- same number.
CREATE TABLE thread_names (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE
);
-- Rewritten with the numbers at open (backfillThreadText); the sort_index trigger follows. The
-- mark of finished backfills goes, so the next open runs them.
UPDATE sort_keys SET thread_text = NULL;
DELETE FROM counters WHERE name = 'backfill_done';
`,
  },
  {
    version: 11,
    sql: `
-- The view cache's snapshot of a mailbox (store/view-snapshot.ts: UIDs, modseqs and flags as
-- typed arrays in one blob, with the UIDVALIDITY, UIDNEXT and modseq it reflects), so the first
-- SELECT after a start reads one value instead of every entry. Derived data: a missing, old or
-- unreadable one is only slower (the changes since its modseq are applied on top).
-- stored_at (ms): the warm-up at open loads the most recently stored first.
CREATE TABLE view_snapshots (
  mailbox_id INTEGER PRIMARY KEY,
  modseq INTEGER NOT NULL,
  stored_at INTEGER NOT NULL,
  data BLOB NOT NULL
);
`,
  },
  {
    version: 12,
    sql: `
-- sort_keys keyed by the blob's id (the blobs row, blob_content and blob_text share it) instead
-- of its 64-character hash: a new blob's keys are appended at the end of the tree instead of
-- landing on a random leaf, which a delivery's commit wrote whole (a page of the WAL, and a
-- random page for the checkpoint, per message). The rows are copied; the sort_index triggers
-- find the keys of an entry's blob through the blobs hash index.
DROP TRIGGER sort_index_entry_insert;
DROP TRIGGER sort_index_entry_update;
CREATE TABLE sort_keys_by_id (
  id INTEGER PRIMARY KEY,
  sent_date INTEGER,
  subject TEXT NOT NULL,
  reply INTEGER NOT NULL,
  addr_from TEXT NOT NULL,
  addr_to TEXT NOT NULL,
  addr_cc TEXT NOT NULL,
  display_from TEXT NOT NULL,
  display_to TEXT NOT NULL,
  message_id TEXT,
  refs TEXT NOT NULL,
  thread_text TEXT
);
INSERT INTO sort_keys_by_id
SELECT b.id, k.sent_date, k.subject, k.reply, k.addr_from, k.addr_to, k.addr_cc, k.display_from, k.display_to, k.message_id, k.refs, k.thread_text
  FROM sort_keys k JOIN blobs b ON b.hash = k.hash ORDER BY b.id;
-- Also drops the triggers on sort_keys (sort_index_keys_insert, sort_index_keys_update).
DROP TABLE sort_keys;
ALTER TABLE sort_keys_by_id RENAME TO sort_keys;

CREATE TRIGGER sort_index_entry_insert AFTER INSERT ON entries BEGIN
  INSERT OR REPLACE INTO sort_index
  SELECT new.mailbox_id, new.uid, new.internal_date, new.size, coalesce(k.sent_date, new.internal_date), k.subject, k.addr_from, k.addr_to, k.addr_cc, k.display_from, k.display_to, coalesce(k.sent_date, new.internal_date) || ' ' || k.thread_text
    FROM blobs b JOIN sort_keys k ON k.id = b.id WHERE b.hash = new.blob_hash;
END;
CREATE TRIGGER sort_index_entry_update AFTER UPDATE OF mailbox_id, uid, internal_date, size, blob_hash ON entries BEGIN
  DELETE FROM sort_index WHERE mailbox_id = old.mailbox_id AND uid = old.uid;
  INSERT OR REPLACE INTO sort_index
  SELECT new.mailbox_id, new.uid, new.internal_date, new.size, coalesce(k.sent_date, new.internal_date), k.subject, k.addr_from, k.addr_to, k.addr_cc, k.display_from, k.display_to, coalesce(k.sent_date, new.internal_date) || ' ' || k.thread_text
    FROM blobs b JOIN sort_keys k ON k.id = b.id WHERE b.hash = new.blob_hash;
END;
-- Keys written after their entries (a new blob's, a backfill, a rewrite): every entry of the blob.
CREATE TRIGGER sort_index_keys_insert AFTER INSERT ON sort_keys BEGIN
  INSERT OR REPLACE INTO sort_index
  SELECT e.mailbox_id, e.uid, e.internal_date, e.size, coalesce(new.sent_date, e.internal_date), new.subject, new.addr_from, new.addr_to, new.addr_cc, new.display_from, new.display_to, coalesce(new.sent_date, e.internal_date) || ' ' || new.thread_text
    FROM entries e WHERE e.blob_hash = (SELECT hash FROM blobs WHERE id = new.id);
END;
-- thread_text written at open for rows of earlier versions (backfillThreadText).
CREATE TRIGGER sort_index_keys_update AFTER UPDATE OF thread_text ON sort_keys BEGIN
  UPDATE sort_index SET thread = sent || ' ' || new.thread_text
   WHERE (mailbox_id, uid) IN (SELECT mailbox_id, uid FROM entries WHERE blob_hash = (SELECT hash FROM blobs WHERE id = new.id));
END;

-- New blobs are added to the full-text index in batches after their delivery (sqlite-store.ts
-- #indexPending): every blob id up to search_indexed is in the index (or gone). Until now each
-- was indexed with its blob, so all of them are.
INSERT OR IGNORE INTO counters (name, value) SELECT 'search_indexed', coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'blobs'), 0);
`,
  },
  {
    version: 13,
    sql: `
-- Blobs whose last reference went wait for the store's sweep (sqlite-store.ts #decRefs, #sweep),
-- which finds them here instead of reading every blob row.
CREATE INDEX blobs_dead ON blobs (id) WHERE refs <= 0;
`,
  },
  {
    version: 14,
    sql: `
-- The full-text index moves to its own file, search.db, written by a worker thread
-- (search-indexer.ts); its marks move with it. The new file starts empty: the worker indexes
-- every blob again in the background, and SEARCH reads the text of those not indexed yet.
DROP TABLE search;
DELETE FROM counters WHERE name = 'search_indexed';
-- Blobs removed by the sweep, whose index entries the worker deletes (then the store prunes
-- the rows the worker has done, by seq).
CREATE TABLE search_gone (seq INTEGER PRIMARY KEY AUTOINCREMENT, id INTEGER NOT NULL);
`,
  },
];

/** Applies the missing migrations. Refuses a database written by a newer version. */
export function migrate(db: Database): number {
  db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)');
  const row = db.prepare('SELECT max(version) AS v FROM schema_version').get() as { v: number | null };
  const current = row.v ?? 0;
  const latest = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;
  if (current > latest) {
    throw new StoreError('invalid', `Cannot open store: schema version ${current} is newer than this program (${latest})`);
  }
  // Every migration not recorded yet, not only those above the highest: numbers are assigned
  // ahead and may land out of order, so a lower one can arrive after a higher one was applied.
  const applied = new Set((db.prepare('SELECT version FROM schema_version').all() as Array<{ version: number }>).map((r) => r.version));
  for (const m of MIGRATIONS) {
    if (applied.has(m.version)) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.prepare('INSERT INTO schema_version (version, applied_at) VALUES (?, ?)').run(m.version, Date.now());
    }).immediate();
  }
  return latest;
}
