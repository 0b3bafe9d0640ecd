/**
 * A consistent, read-only view of a whole store, as a backup reads it: every record as of one
 * instant while the server keeps running (SQLite: one read transaction on a WAL snapshot;
 * PostgreSQL: one REPEATABLE READ READ ONLY transaction). Reads are paged so that memory stays
 * bounded whatever the size of a mailbox.
 */
import type { Account, Alias, AppPassword, Domain, MessageEntry, SpecialUse } from '../store/types.js';

/** An app password as a backup keeps it (the hash, never a secret). */
export type SnapshotAppPassword = Pick<AppPassword, 'name' | 'hash' | 'createdAt' | 'lastUsed'>;

/** An account with what only a restore needs: its modseq, subscriptions and app passwords. */
export type SnapshotAccount = Account & { modseq: number; subscriptions: string[]; appPasswords: SnapshotAppPassword[] };

export interface SnapshotMailbox {
  id: number;
  name: string;
  uidValidity: number;
  uidNext: number;
  highestModSeq: number;
  specialUse: SpecialUse | null;
}

export type SnapshotEntry = Omit<MessageEntry, 'mailboxId'>;

/** One RFC 5464 annotation row: mailboxId 0 is an account's server entry. */
export interface SnapshotMetadata {
  mailboxId: number;
  name: string;
  value: Buffer;
}

export interface StoreSnapshot {
  readonly backend: 'sqlite' | 'postgres';
  domains(): Promise<Domain[]>;
  accounts(): Promise<SnapshotAccount[]>;
  aliases(): Promise<Alias[]>;
  mailboxes(accountId: number): Promise<SnapshotMailbox[]>;
  /** Entries with uid > afterUid, ascending, at most limit. */
  entries(mailboxId: number, afterUid: number, limit: number): Promise<SnapshotEntry[]>;
  /**
   * Which of `hashes` an entry before `at` references, in the order a backup reads entries
   * (accounts by id, their mailboxes by name in byte order, entries by UID): blobs a backup has
   * already written, found by one indexed query per page instead of a set of every hash.
   */
  blobsBefore(hashes: readonly string[], at: { accountId: number; mailbox: string; uid: number }): Promise<Set<string>>;
  /** Expunge log rows after (modseq, uid), in that order, at most limit: [uid, modseq]. */
  expunged(mailboxId: number, after: [number, number], limit: number): Promise<Array<[number, number]>>;
  /** Every annotation of the account (server entries first, then by mailbox), names in byte
   * order. Bounded by the per-account metadata limit. */
  metadata(accountId: number): Promise<SnapshotMetadata[]>;
  /** The bytes of a blob the snapshot references, in chunks. */
  blob(hash: string, size: number): AsyncIterable<Buffer>;
  close(): Promise<void>;
}

/** Page sizes: a few hundred rows per query keeps memory flat and round trips few. */
export const ENTRY_PAGE = 500;
export const EXPUNGED_PAGE = 5000;
