/**
 * Row mappers shared by the SQL backends and their backup snapshots. SQLite stores booleans as
 * 0/1 and PostgreSQL as booleans: the mappers take either.
 */
import type { SnapshotAccount, SnapshotAppPassword, SnapshotEntry } from '../../backup/snapshot.js';
import { asAccountId, asModSeq, asUid } from '../../lib/brand.js';
import { flagList } from '../flags.js';
import { toAppPassword, type AppPasswordRow } from './app-password-row.js';
import type { Account, EntryFacts, EntrySortKeys, MessageEntry, Pop3DeletePolicy } from '../types.js';
import { threadNames, threadText } from '../../mail/sort-keys.js';

type Bool = number | boolean;
const truthy = (b: Bool): boolean => b === true || b === 1;

export interface AccountRowOf<B extends Bool> {
  id: number;
  address: string;
  domain: string;
  password_hash: string;
  scram: string | null;
  quota_bytes: number | null;
  quota_messages: number | null;
  pop3_delete_policy: Pop3DeletePolicy;
  disabled: B;
  created_at: number;
  modseq: number;
  pid_counter: number;
  used_bytes: number;
  used_messages: number;
  totp_secret: string | null;
  totp_last_step: number | string | null;
}

export function toAccount(r: AccountRowOf<Bool>): Account {
  return {
    id: asAccountId(r.id),
    address: r.address,
    domain: r.domain,
    passwordHash: r.password_hash,
    scram: r.scram,
    quotaBytes: r.quota_bytes,
    quotaMessages: r.quota_messages,
    pop3DeletePolicy: r.pop3_delete_policy,
    disabled: truthy(r.disabled),
    createdAt: r.created_at,
    totpSecret: r.totp_secret,
    totpLastStep: r.totp_last_step === null ? null : Number(r.totp_last_step),
  };
}

export type { AppPasswordRow as AppPasswordSnapshotRow } from './app-password-row.js';

/** The app passwords a backup keeps, as both backends read them, in a stable order. */
export const APP_PASSWORDS_SNAPSHOT_SQL = 'SELECT * FROM app_passwords ORDER BY account_id, id';

/** Accounts with their modseq, subscriptions and app passwords (rows in any account order). */
export function snapshotAccounts(
  rows: ReadonlyArray<AccountRowOf<Bool>>,
  subscriptions: ReadonlyArray<{ account_id: number; name: string }>,
  appPasswords: ReadonlyArray<AppPasswordRow>,
): SnapshotAccount[] {
  const subs = new Map<number, string[]>();
  for (const s of subscriptions) {
    const l = subs.get(s.account_id) ?? [];
    l.push(s.name);
    subs.set(s.account_id, l);
  }
  const apps = new Map<number, SnapshotAppPassword[]>();
  for (const row of appPasswords) {
    const { accountId, name, hash, createdAt, lastUsed } = toAppPassword(row);
    const l = apps.get(accountId) ?? [];
    l.push({ name, hash, createdAt, lastUsed });
    apps.set(accountId, l);
  }
  return rows.map((r) => ({ ...toAccount(r), modseq: r.modseq, subscriptions: subs.get(r.id) ?? [], appPasswords: apps.get(Number(r.id)) ?? [] }));
}

export interface EntryRecordRow {
  uid: number;
  modseq: number;
  flags: number;
  keywords: string;
  internal_date: number;
  save_date: number;
  size: number;
  blob_hash: string;
  email_id: string;
  thread_id: string;
  pid: string;
  pop3_hidden: Bool;
}

export function snapshotEntry(r: EntryRecordRow): SnapshotEntry {
  return {
    uid: asUid(r.uid),
    modseq: asModSeq(r.modseq),
    flags: flagList(r.flags, r.keywords),
    internalDate: r.internal_date,
    saveDate: r.save_date,
    size: r.size,
    blobHash: r.blob_hash,
    emailId: r.email_id,
    threadId: r.thread_id,
    pid: r.pid,
    pop3Hidden: truthy(r.pop3_hidden),
  };
}

/** The columns listSortKeys reads, in order: an entry's uid, internal_date and size, then its
 * sort_keys row (SORT_KEY_COLS). */
export const SORT_KEY_COLS =
  'e.uid, e.internal_date, e.size, k.sent_date, k.subject, k.reply, k.addr_from, k.addr_to, k.addr_cc, k.display_from, k.display_to, k.message_id, k.refs';

export type SortKeyRow = [
  uid: number,
  internalDate: number,
  size: number,
  sentDate: number | null,
  subject: string,
  reply: Bool,
  from: string,
  to: string,
  cc: string,
  displayFrom: string,
  displayTo: string,
  messageId: string | null,
  refs: string,
];

export function toSortKeys(r: SortKeyRow): EntrySortKeys {
  return {
    uid: asUid(r[0]),
    internalDate: Number(r[1]),
    size: Number(r[2]),
    sentDate: r[3] === null ? null : Number(r[3]),
    subject: r[4],
    reply: truthy(r[5]),
    from: r[6],
    to: r[7],
    cc: r[8],
    displayFrom: r[9],
    displayTo: r[10],
    messageId: r[11],
    references: r[12] === '' ? [] : r[12].split('\n'),
  };
}

/** The sort_keys columns thread_text is made of (for rows written before it existed, or before
 * the names were numbered, schema version 10). */
export interface ThreadTextSource {
  /** The blob's id (sort_keys' key since schema version 12; a string from PostgreSQL's bigint). */
  id: number | string;
  subject: string;
  reply: Bool;
  message_id: string | null;
  refs: string;
}

function threadSource(r: ThreadTextSource): { k: { subject: string; reply: boolean; messageId: string | null }; refs: string[] } {
  return { k: { subject: r.subject, reply: truthy(r.reply), messageId: r.message_id }, refs: r.refs === '' ? [] : r.refs.split('\n') };
}

/** The names to number for threadTextOf. */
export function threadNamesOf(r: ThreadTextSource): string[] {
  const { k, refs } = threadSource(r);
  return threadNames(k, refs);
}

export function threadTextOf(r: ThreadTextSource, number: (name: string) => number): string {
  const { k, refs } = threadSource(r);
  return threadText(k, refs, number);
}

/** What never changes of an entry (MailStore.getEntryFacts). */
export function entryFacts(e: MessageEntry): EntryFacts {
  return {
    mailboxId: e.mailboxId,
    uid: e.uid,
    internalDate: e.internalDate,
    saveDate: e.saveDate,
    size: e.size,
    blobHash: e.blobHash,
    emailId: e.emailId,
    threadId: e.threadId,
    pid: e.pid,
  };
}

/** ViewSource.warmList (view-cache.ts), both dialects (`param`: the placeholder of the minimum
 * size): the mailboxes with a snapshot, most recently stored first, then those of at least that
 * many messages without one, largest first. */
export function warmListSql(param: string): string {
  return `SELECT mailbox_id, messages FROM (
            SELECT s.mailbox_id, m.messages, 0 AS k, s.stored_at AS o FROM view_snapshots s JOIN mailboxes m ON m.id = s.mailbox_id
            UNION ALL
            SELECT m.id, m.messages, 1, m.messages FROM mailboxes m
             WHERE m.messages >= ${param} AND NOT EXISTS (SELECT 1 FROM view_snapshots s WHERE s.mailbox_id = m.id)
          ) w ORDER BY k, o DESC`;
}
