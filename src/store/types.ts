/**
 * The store: the one place where mail state lives, under every protocol.
 *
 * Invariants (each is checked by `checkConsistency` and by tests):
 * - A write that resolved is durable (fsync'd) before the promise resolves.
 * - Raw message bytes are stored once per content hash (sha256), with a reference count; an
 *   entry never points at a missing blob (blob written and synced before the metadata commit).
 * - UIDs only grow within a UIDVALIDITY and stay below UIDNEXT; UIDVALIDITY changes only when a
 *   mailbox is recreated (a new mailbox row).
 * - Every change (append, flags, expunge, mailbox create/rename/delete) takes a new account
 *   modseq and is recorded in the change log; the feed publishes it after commit.
 * - Nothing but the write operations below changes state. Protocol code never writes SQL.
 *
 * The interface is asynchronous so that a networked backend (PostgreSQL) fits behind it.
 */
import type { AccountId, MailboxId, ModSeq, Uid, UidValidity } from '../lib/brand.js';
import type { SortKeys } from '../mail/sort-keys.js';
import type { ParsedMessage } from '../mail/types.js';
import type { SharedCounters } from './counters.js';

export type SpecialUse = '\\Drafts' | '\\Sent' | '\\Trash' | '\\Junk' | '\\Archive' | '\\All' | '\\Flagged';

/** The special uses a mailbox may have (RFC 6154 §2). */
export const SPECIAL_USES: ReadonlySet<string> = new Set<SpecialUse>([
  '\\Drafts',
  '\\Sent',
  '\\Trash',
  '\\Junk',
  '\\Archive',
  '\\All',
  '\\Flagged',
]);

/** The mailboxes every account is created with (RFC 6154). */
export const DEFAULT_MAILBOXES: ReadonlyArray<{ name: string; specialUse: SpecialUse | null }> = [
  { name: 'INBOX', specialUse: null },
  { name: 'Drafts', specialUse: '\\Drafts' },
  { name: 'Sent', specialUse: '\\Sent' },
  { name: 'Trash', specialUse: '\\Trash' },
  { name: 'Junk', specialUse: '\\Junk' },
  { name: 'Archive', specialUse: '\\Archive' },
];

/** What POP3 DELE + QUIT does (docs/pop3-imap.md). */
export type Pop3DeletePolicy = 'expunge' | 'trash' | 'hide';

export interface Domain {
  name: string;
  createdAt: number;
}

export interface Account {
  id: AccountId;
  /** Primary address, lowercased: local@domain. */
  address: string;
  domain: string;
  /** Encoded password hash (see auth/password.ts); never a clear password. */
  passwordHash: string;
  /** SCRAM-SHA-256 verifier (RFC 7677), or null when not yet derived. */
  scram: string | null;
  quotaBytes: number | null;
  quotaMessages: number | null;
  pop3DeletePolicy: Pop3DeletePolicy;
  disabled: boolean;
  createdAt: number;
  /** TOTP second factor (RFC 6238): the shared secret in base32, or null when the account has
   * none. With one, IMAP/POP3/SMTP accept only app passwords (docs/security.md). */
  totpSecret: string | null;
  /** The last TOTP time step accepted (RFC 6238 §5.2: a code is accepted once), or null. */
  totpLastStep: number | null;
}

/** Where an app password was last used (for `facteur user app-password list`). */
export interface AppPasswordUse {
  at: number;
  protocol: string;
  ip: string;
}

/** A per-device password of an account: named, revocable, its last use recorded. */
export interface AppPassword {
  id: number;
  accountId: AccountId;
  /** Unique within the account (1-64 characters, no control characters). */
  name: string;
  /** Encoded hash of the secret (see auth/app-password.ts); never the secret itself. */
  hash: string;
  createdAt: number;
  lastUsed: AppPasswordUse | null;
}

export interface Alias {
  /** local@domain, or @domain for the domain's catch-all. Lowercased. */
  source: string;
  /** Destination address: a local account or another alias (expanded recursively, bounded). */
  target: string;
}

export interface Mailbox {
  id: MailboxId;
  accountId: AccountId;
  /** Full UTF-8 name, hierarchy separator '/'. INBOX is always exactly "INBOX". */
  name: string;
  uidValidity: UidValidity;
  uidNext: Uid;
  highestModSeq: ModSeq;
  specialUse: SpecialUse | null;
  subscribed: boolean;
}

export interface MailboxCounts {
  messages: number;
  unseen: number;
  deleted: number;
  /** Sum of RFC822.SIZE of the messages (RFC 8438 STATUS=SIZE). */
  size: number;
}

/** One message in one mailbox. */
export interface MessageEntry {
  mailboxId: MailboxId;
  uid: Uid;
  modseq: ModSeq;
  /** System flags (\Seen, \Answered, \Flagged, \Deleted, \Draft) and keywords, no duplicates
   * (case-insensitive), system flags in canonical case. */
  flags: string[];
  /** INTERNALDATE, epoch ms. */
  internalDate: number;
  /** SAVEDATE (RFC 8514): when the entry was added to this mailbox, epoch ms. */
  saveDate: number;
  size: number;
  /** sha256 hex of the raw bytes: the blob key. */
  blobHash: string;
  /** RFC 8474 EMAILID: shared by copies of the same message within an account. */
  emailId: string;
  /** RFC 8474 THREADID. */
  threadId: string;
  /** Permanent id of this entry: kept by MOVE (also out of INBOX and back), new for COPY,
   * never reused. Equal to emailId for the entry a delivery or APPEND created. POP3 UIDL. */
  pid: string;
  /** Set by the POP3 'hide' delete policy: POP3 never lists the entry again; IMAP still does. */
  pop3Hidden: boolean;
}

/** An entry's fields that never change once it is written (an entry is a mailbox and a UID,
 * and a UID is never used again in its mailbox): all but its flags, modseq and POP3 state. */
export type EntryFacts = Omit<MessageEntry, 'flags' | 'modseq' | 'pop3Hidden'>;

/** A message as an IMAP view knows it: its facts, with the flags and modseq the view holds. */
export type ViewEntry = EntryFacts & Pick<MessageEntry, 'flags' | 'modseq'>;

/** What a session's view of a mailbox holds of each message (RFC 9051 §2.3.1.2), in UID order,
 * as parallel typed arrays (16 bytes a message, no object per message), with the mailbox state
 * they are the state of. The arrays may be shared with the store's cache and other callers:
 * read-only, copy before changing. */
export interface ViewEntries {
  uidValidity: UidValidity;
  /** Above every UID in uids. */
  uidNext: Uid;
  /** The mailbox's HIGHESTMODSEQ these entries are current to (RFC 7162 §3.1.2.1). */
  highestModSeq: ModSeq;
  uids: Uint32Array;
  modseqs: Float64Array;
  /** Index into flagSets of each message's flags. */
  flagIds: Uint32Array;
  /** The distinct flag lists (as MessageEntry.flags), each once; shared, not to be changed. Null
   * at the index of a list no message has now (flagIds never points there). */
  flagSets: ReadonlyArray<readonly string[] | null>;
}

/** An entry's SORT and THREAD keys (RFC 5256), as computed at ingest (mail/sort-keys.ts). */
export interface EntrySortKeys extends SortKeys {
  uid: Uid;
  internalDate: number;
  size: number;
}

/** A SORT key (RFC 5256 §3, RFC 5957 §3) by which the store ranks a mailbox's messages. */
export type SortKeyName = 'ARRIVAL' | 'SIZE' | 'DATE' | 'SUBJECT' | 'FROM' | 'TO' | 'CC' | 'DISPLAYFROM' | 'DISPLAYTO';

/** A mailbox's messages ranked by one SORT key: the message uids[i] has rank ranks[i] (0 first);
 * messages with equal keys share a rank. In no particular order. */
export interface SortRanks {
  uids: Float64Array;
  ranks: Uint32Array;
}

/** What THREAD (RFC 5256 §4) reads of a mailbox's messages, one column per key, in no particular
 * order. Base subjects and Message-IDs are numbers (the store's thread_names: one per distinct
 * string, mail/sort-keys.ts threadText), 0 for none. */
export interface ThreadKeyColumns {
  uids: Float64Array;
  /** The sent date, else INTERNALDATE (RFC 5256 §2.2), epoch ms. */
  dates: Float64Array;
  /** THREAD_REPLY and THREAD_NO_SUBJECT (mail/sort-keys.ts). */
  flags: Uint8Array;
  subjects: Float64Array;
  messageIds: Float64Array;
  /** The references of message i are refs[refStart[i]] to refs[refStart[i + 1] - 1], oldest first. */
  refStart: Uint32Array;
  refs: Float64Array;
}

export interface AppendInput {
  raw: Buffer;
  parsed: ParsedMessage;
  flags?: readonly string[];
  /** epoch ms; defaults to now. */
  internalDate?: number;
}

export interface AppendResult {
  uidValidity: UidValidity;
  uid: Uid;
  modseq: ModSeq;
  emailId: string;
}

/** A mailbox with the identity it had elsewhere (restore, import). */
export interface MailboxRestore {
  name: string;
  uidValidity: UidValidity;
  /** Floor for UIDNEXT (the source's UIDNEXT). */
  uidNext: Uid;
  /** Floor for HIGHESTMODSEQ: a CONDSTORE client that cached the source's value must never see a lower one. */
  highestModSeq?: ModSeq;
  specialUse?: SpecialUse | null;
  subscribed?: boolean;
}

/** An account as a backup holds it: created without the default mailboxes (the backup has its
 * own), with its settings, creation date and subscriptions. */
/** What a local address reaches (MailStore.resolveRecipientRoute). */
export interface RecipientRoute {
  accounts: Account[];
  /** Remote addresses, lowercased, to forward a copy to. */
  forwards: string[];
}

export type AccountRestore = Omit<Account, 'id' | 'domain' | 'totpSecret' | 'totpLastStep'> & {
  /** Floor for the account's modseq (RFC 7162: never lower than one a client has seen). */
  modseq: ModSeq;
  /** Subscribed names, also of mailboxes that do not exist (RFC 9051 §6.3.7). */
  subscriptions: readonly string[];
};

/** One message with the identity it had elsewhere. */
export interface EntryRestore {
  uid: Uid;
  raw: Buffer;
  parsed: ParsedMessage;
  flags: readonly string[];
  internalDate: number;
  saveDate?: number;
  /** Kept when given (restore of a Facteur backup); otherwise a new account modseq. */
  modseq?: ModSeq;
  /** The POP3 UIDL to keep (an imported message keeps the UIDL its old server gave it); new when absent. */
  pid?: string;
  emailId?: string;
  threadId?: string;
  pop3Hidden?: boolean;
}

export interface DeliveryTarget {
  accountId: AccountId;
  /** Mailbox name; INBOX by default. Falls back to INBOX when the named one does not exist. */
  mailbox?: string;
  flags?: readonly string[];
}

export type DeliveryOutcome =
  | { accountId: AccountId; ok: true; mailboxId: MailboxId; uid: Uid }
  | { accountId: AccountId; ok: false; reason: 'over-quota' | 'no-account' };

export type FlagMode = 'add' | 'remove' | 'set';

/** An entry's new flags after setFlags. Entries given the same flags may share one array. */
export type FlagUpdate = Pick<MessageEntry, 'uid' | 'modseq' | 'flags'>;

export interface SetFlagsResult {
  /** Entries whose flags changed, with their new modseq (RFC 7162: unchanged ones are not bumped),
   * in UID order. */
  updated: FlagUpdate[];
  /** UIDs refused by UNCHANGEDSINCE (RFC 7162 §3.1.3 MODIFIED). */
  modified: Uid[];
  /** The mailbox's highest modseq before this change. A session that had seen the mailbox up to
   * it knows the whole state after the change from `updated` (nothing else changed between). */
  priorModSeq: ModSeq;
  /** UIDs of the set not in the mailbox (expunged by another session meanwhile), ascending. */
  gone: Uid[];
}

export interface CopyResult {
  uidValidity: UidValidity;
  /** [source uid, destination uid], in source UID order (RFC 4315 COPYUID). */
  pairs: Array<[Uid, Uid]>;
  /** UIDs of the set not in the source (expunged meanwhile), ascending. */
  gone: Uid[];
}

export interface CopyOptions {
  /** All or nothing: when a UID of the set is not in the source, nothing is copied (or moved)
   * and `gone` lists the missing ones (IMAP COPY answers NO [EXPUNGEISSUED], as Dovecot). */
  whole?: boolean;
}

/** What happened in a mailbox since a modseq: what a session needs to catch up. */
export interface MailboxChanges {
  highestModSeq: ModSeq;
  /** Entries added (uid above the caller's known UIDNEXT or modseq above since), in UID order:
   * what a session's view tracks of each (entries with the same flags may share one array). */
  added: FlagUpdate[];
  /** Entries that existed before and whose flags changed after since, in UID order. */
  changed: FlagUpdate[];
  /** UIDs expunged after since, ascending. */
  expunged: Uid[];
}

export interface ChangeEvent {
  accountId: AccountId;
  /** null for account-level changes (mailbox list, subscriptions). */
  mailboxId: MailboxId | null;
  modseq: ModSeq;
  kind: 'append' | 'flags' | 'expunge' | 'mailbox' | 'metadata';
  /** For 'metadata': the (lowercased) entry names set or removed, when few enough to carry
   * (absent: any entry of the mailbox, or of the server when mailboxId is null, may have changed). */
  entries?: readonly string[];
}

/** One annotation (RFC 5464): a lowercased entry name ("/private/comment") and its value. */
export interface MetadataEntry {
  name: string;
  value: Buffer;
}

/** One change of SETMETADATA: a null value removes the entry. */
export interface MetadataChange {
  name: string;
  value: Buffer | null;
}

/** Bounds checked inside the write transaction (RFC 5464 §4.3 TOOMANY). */
export interface MetadataLimits {
  /** Entries on one mailbox, or on the server (the account's server entries). */
  maxEntries: number;
  /** Sum of the value sizes of all the account's entries. */
  maxTotalBytes: number;
}

export interface ChangeFeed {
  /** Called after each commit that changed the account. Returns the unsubscribe function. */
  subscribe(accountId: AccountId, listener: (event: ChangeEvent) => void): () => void;
}

export interface QuotaUsage {
  bytes: number;
  messages: number;
}

/** Text search over the index built at ingest (case-insensitive substring, RFC 9051 §6.4.4). */
export interface TextQuery {
  field: 'body' | 'text' | 'subject' | 'from' | 'to' | 'cc' | 'bcc' | 'header';
  /** For field 'header': the lowercased header name. */
  header?: string;
  value: string;
}

/** What updateAccount may change. Setting totpSecret does not reset totpLastStep; pass both. */
export type AccountPatch = Pick<
  Account,
  'passwordHash' | 'scram' | 'quotaBytes' | 'quotaMessages' | 'pop3DeletePolicy' | 'disabled' | 'totpSecret' | 'totpLastStep'
>;

export interface MailStore {
  readonly feed: ChangeFeed;

  // Domains, accounts, aliases.
  /** createdAt: kept by a restore; now by default. */
  addDomain(name: string, createdAt?: number): Promise<Domain>;
  listDomains(): Promise<Domain[]>;
  /** Refuses (StoreError 'conflict') while the domain has accounts unless force. */
  removeDomain(name: string, force?: boolean): Promise<void>;
  isLocalDomain(name: string): Promise<boolean>;

  /** Creates the account with its default mailboxes. */
  createAccount(input: { address: string; passwordHash: string; scram?: string | null }): Promise<Account>;
  getAccount(id: AccountId): Promise<Account | null>;
  getAccountByAddress(address: string): Promise<Account | null>;
  listAccounts(domain?: string): Promise<Account[]>;
  updateAccount(
    id: AccountId,
    patch: Partial<AccountPatch>,
  ): Promise<void>;
  /** Deletes the account with its mailboxes, messages and app passwords. */
  deleteAccount(id: AccountId): Promise<void>;
  /**
   * Records a TOTP time step as used, atomically, only if it is later than the last one accepted
   * (RFC 6238 §5.2: one code, one login; also across nodes). False when the step is not later,
   * or the account has no TOTP secret or does not exist.
   */
  acceptTotpStep(id: AccountId, step: number): Promise<boolean>;

  // App passwords (every row is reachable here, for backups).
  /** StoreError 'not-found' without the account, 'exists' when the name is taken, 'invalid' for
   * a bad name. createdAt and lastUsed default to now and null (a restore passes them). */
  addAppPassword(
    accountId: AccountId,
    input: { name: string; hash: string; createdAt?: number; lastUsed?: AppPasswordUse | null },
  ): Promise<AppPassword>;
  /** The account's app passwords, by name. */
  listAppPasswords(accountId: AccountId): Promise<AppPassword[]>;
  /** The account's app password with this hash, or null. */
  findAppPassword(accountId: AccountId, hash: string): Promise<AppPassword | null>;
  /** Revokes (deletes) it; StoreError 'not-found' when the account has no app password so named. */
  removeAppPassword(accountId: AccountId, name: string): Promise<void>;
  /** Records a use; nothing happens when the app password was revoked meanwhile. */
  recordAppPasswordUse(id: number, use: AppPasswordUse): Promise<void>;

  addAlias(source: string, target: string): Promise<void>;
  removeAlias(source: string): Promise<void>;
  listAliases(domain?: string): Promise<Alias[]>;
  /**
   * The accounts an address reaches: exact account, plus-addressing (user+tag@ reaches user@),
   * aliases (recursively, bounded, cycles cut), then the domain's catch-all. Deduplicated.
   * Empty when nothing matches.
   */
  resolveRecipient(address: string): Promise<AccountId[]>;
  /** The same accounts, read with them (what an RCPT checks: disabled, quotas): one statement
   * per address visited instead of a resolve and then a read of each account. */
  resolveRecipientAccounts(address: string): Promise<Account[]>;
  /** The same accounts, and the remote addresses the address's aliases forward to (an alias
   * target in a domain that is not local), deduplicated. */
  resolveRecipientRoute(address: string): Promise<RecipientRoute>;
  /** Addresses an account may send as: its own address and the aliases that lead to it. */
  sendableAddresses(accountId: AccountId): Promise<string[]>;

  // Mailboxes.
  listMailboxes(accountId: AccountId): Promise<Mailbox[]>;
  getMailbox(accountId: AccountId, name: string): Promise<Mailbox | null>;
  getMailboxById(id: MailboxId): Promise<Mailbox | null>;
  /** Creates missing parents too. StoreError 'exists' if the name exists. */
  createMailbox(accountId: AccountId, name: string, specialUse?: SpecialUse | null): Promise<Mailbox>;
  /** Renames the mailbox and its children. Renaming INBOX moves its messages into a new mailbox
   * and leaves INBOX empty (RFC 9051 §6.3.6). */
  renameMailbox(accountId: AccountId, from: string, to: string): Promise<void>;
  /** Deletes the mailbox and its messages. INBOX cannot be deleted. */
  deleteMailbox(accountId: AccountId, name: string): Promise<void>;
  setSubscribed(accountId: AccountId, name: string, subscribed: boolean): Promise<void>;
  /** Subscribed names, including names of mailboxes that no longer exist (RFC 9051 §6.3.7). */
  listSubscriptions(accountId: AccountId): Promise<string[]>;
  mailboxCounts(mailboxId: MailboxId): Promise<MailboxCounts>;

  // Annotations (RFC 5464 METADATA). mailboxId null: the account's server entries. Entries follow
  // their mailbox through RENAME (the row id is kept; renaming INBOX copies them, RFC 5464 §4.1)
  // and go with DELETE and deleteAccount.
  /** The entries of a mailbox (or the server), sorted by name. */
  getMetadata(accountId: AccountId, mailboxId: MailboxId | null): Promise<MetadataEntry[]>;
  /**
   * Sets and removes entries, all or nothing (RFC 5464 §4.3). Names are lowercased. StoreError
   * 'not-found' when the mailbox is not the account's; 'over-quota' when the limits would be
   * passed. Publishes one 'metadata' event when something changed.
   */
  setMetadata(accountId: AccountId, mailboxId: MailboxId | null, changes: readonly MetadataChange[], limits: MetadataLimits): Promise<void>;
  /** Total bytes of the account's entry values. */
  metadataUsage(accountId: AccountId): Promise<number>;

  // Messages.
  /** All entries of a mailbox in UID order (a session's initial view). */
  listEntries(mailboxId: MailboxId): Promise<MessageEntry[]>;
  /** UID, modseq and flags of every entry of a mailbox in UID order (a session's view), from the
   * process's view cache (view-cache.ts) caught up with the database. StoreError 'not-found'
   * when the mailbox does not exist. */
  listViewEntries(mailboxId: MailboxId): Promise<ViewEntries>;
  /** The SORT and THREAD keys of every entry of a mailbox, in UID order (as strings: for checks;
   * SORT and THREAD read rankSortKey and listThreadKeys). */
  listSortKeys(mailboxId: MailboxId): Promise<EntrySortKeys[]>;
  /** The entries of a mailbox ranked by one SORT key. */
  rankSortKey(mailboxId: MailboxId, key: SortKeyName): Promise<SortRanks>;
  /** The THREAD keys of the entries of a mailbox. */
  listThreadKeys(mailboxId: MailboxId): Promise<ThreadKeyColumns>;
  getEntries(mailboxId: MailboxId, uids: readonly Uid[]): Promise<MessageEntry[]>;
  /**
   * The facts of those entries among `uids` that exist, in UID order, for a reader that has
   * their flags and modseqs already (an IMAP view's FETCH). Both stores answer from a
   * per-process cache where they can (facts never change), keeping what they read when `keep` (a
   * request small enough not to push hot entries out); an entry this process expunged leaves
   * the cache with it, one another process expunged may still be answered (RFC 2180 §4.1.1).
   */
  getEntryFacts(mailboxId: MailboxId, uids: readonly Uid[], keep: boolean): Promise<EntryFacts[]>;
  /**
   * Entries of a mailbox whose pid (POP3 UIDL) or blob hash is one of `values`, in UID order: an
   * import's checks for what an earlier run stored, a batch at a time (both columns are indexed).
   */
  findEntries(mailboxId: MailboxId, column: 'pid' | 'blobHash', values: readonly string[]): Promise<MessageEntry[]>;
  /** The highest UID the mailbox holds, 0 when it holds none (UIDNEXT - 1 may be above it). */
  highestUid(mailboxId: MailboxId): Promise<number>;
  /**
   * What changed after modseq `since` for a caller that knew the UIDs below `knownUidNext` (a
   * pair read together, as a view holds them: every entry at or above knownUidNext came after
   * since). A store may answer "nothing" from HIGHESTMODSEQ alone when it is still `since`, and
   * give one answer to several callers that ask the same: it is not to be changed.
   */
  changesSince(mailboxId: MailboxId, since: ModSeq, knownUidNext: Uid): Promise<MailboxChanges>;
  /** The parse record stored at ingest for a blob. */
  getParsed(blobHash: string): Promise<ParsedMessage>;
  /** Bytes [start, end) of a stored message (whole message without a range). */
  readBlob(blobHash: string, start?: number, end?: number): Promise<Buffer>;
  /** Streams bytes [start, end) in chunks, for large literals with backpressure. */
  streamBlob(blobHash: string, start?: number, end?: number): AsyncIterable<Buffer>;
  searchText(mailboxId: MailboxId, query: TextQuery): Promise<Set<Uid>>;

  append(mailboxId: MailboxId, input: AppendInput): Promise<AppendResult>;
  /** Several messages into one mailbox, all or nothing (RFC 3502 MULTIAPPEND). */
  appendMany(mailboxId: MailboxId, inputs: readonly AppendInput[]): Promise<AppendResult[]>;
  /** One message to several accounts in one transaction; the blob is written once. */
  deliver(raw: Buffer, parsed: ParsedMessage, targets: readonly DeliveryTarget[]): Promise<DeliveryOutcome[]>;
  setFlags(
    mailboxId: MailboxId,
    uids: readonly Uid[],
    mode: FlagMode,
    flags: readonly string[],
    unchangedSince?: ModSeq,
  ): Promise<SetFlagsResult>;
  copy(from: MailboxId, uids: readonly Uid[], to: MailboxId, options?: CopyOptions): Promise<CopyResult>;
  /** Copy then expunge in one transaction (RFC 6851). The destination keeps each entry's pid. */
  move(from: MailboxId, uids: readonly Uid[], to: MailboxId, options?: CopyOptions): Promise<CopyResult & { expunged: Uid[] }>;
  /** Expunges the given UIDs (only those with \Deleted when onlyDeleted), or every \Deleted
   * message when uids is undefined. Returns the UIDs removed, ascending. */
  expunge(mailboxId: MailboxId, uids?: readonly Uid[], onlyDeleted?: boolean): Promise<Uid[]>;
  /** POP3 'hide' policy. */
  hideFromPop3(mailboxId: MailboxId, uids: readonly Uid[]): Promise<void>;

  // Restore and import: state written with the identity it had elsewhere.
  /**
   * Creates the mailbox with the given UIDVALIDITY, or takes over an existing EMPTY mailbox of that
   * name that never held a message (e.g. the default INBOX) and gives it that identity. Raises the
   * global UIDVALIDITY counter to at least it. StoreError 'conflict' if a non-empty mailbox has that
   * name, or if another mailbox has that UIDVALIDITY (UIDVALIDITY is unique in the store: an
   * importer then creates the mailbox with createMailbox and keeps only the UIDs).
   */
  restoreMailbox(accountId: AccountId, input: MailboxRestore): Promise<Mailbox>;
  /**
   * Adds entries with their UIDs, all in one transaction. The UIDs ascend and each is above every
   * UID the mailbox holds or held (its UIDNEXT, except that a restored mailbox's UIDNEXT floor does
   * not count: its messages come after it), else StoreError 'invalid'. UIDNEXT becomes
   * max(UIDNEXT, last uid + 1); the account modseq is raised to at least every given modseq, and
   * entries without one share one new modseq above it. Quota is not enforced (an operator's
   * restore). pids are unique per account (StoreError 'conflict' on a clash). Change feed
   * published after commit.
   */
  restoreEntries(mailboxId: MailboxId, entries: readonly EntryRestore[]): Promise<void>;
  /** Creates an account from a backup. StoreError 'exists' if the address exists, 'not-found'
   * if its domain is not local. */
  restoreAccount(input: AccountRestore): Promise<Account>;
  /** Adds UIDs to the mailbox's expunge log (QRESYNC VANISHED, RFC 7162 §3.2.10): each below
   * UIDNEXT and not present, else StoreError 'invalid'. Raises HIGHESTMODSEQ and the account
   * modseq to at least each modseq. */
  restoreExpunged(mailboxId: MailboxId, items: ReadonlyArray<{ uid: Uid; modseq: ModSeq }>): Promise<void>;

  quotaUsage(accountId: AccountId): Promise<QuotaUsage>;

  /**
   * An exclusive named lock held until release (POP3's one-session-per-account). Resolves null
   * when another holder has it. Released automatically if the process dies.
   */
  tryLock(name: string): Promise<(() => Promise<void>) | null>;

  /**
   * Counters every node of the installation shares (auth failure limits, RCPT probing), or null
   * when the store serves one process (SQLite): the counters then stay in that process's memory.
   */
  sharedCounters(): SharedCounters | null;

  /** Verifies every invariant; returns the problems found (empty when consistent). */
  checkConsistency(): Promise<string[]>;
  /** Removes blobs no entry references (crash leftovers). Returns how many. */
  collectGarbage(): Promise<number>;
  close(): Promise<void>;
}

export type StoreErrorCode = 'exists' | 'not-found' | 'conflict' | 'invalid' | 'over-quota' | 'too-big' | 'io';

/** An expected refusal from the store: protocols map it to NO / -ERR / 4xx-5xx. */
export class StoreError extends Error {
  readonly code: StoreErrorCode;
  constructor(code: StoreErrorCode, message: string) {
    super(message);
    this.name = 'StoreError';
    this.code = code;
  }
}
