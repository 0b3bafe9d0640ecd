/**
 * The outbound queue's data model and its storage interface.
 *
 * A queued message is stored once (its bytes and its envelope); each recipient has its own
 * delivery state. A recipient is `queued` until an attempt ends it as `delivered` (the remote
 * answered 250 to the DATA that carried it) or `failed` (a permanent refusal, or it expired).
 * The message row goes away when no recipient is left `queued`.
 *
 * The SQL lives behind `QueueStore` so a PostgreSQL version (claims with FOR UPDATE SKIP LOCKED,
 * several nodes) can follow the SQLite one.
 */

/** RFC 3461 §4.1 NOTIFY values; NEVER stands alone. */
export type DsnNotify = 'SUCCESS' | 'FAILURE' | 'DELAY';

export interface RecipientDsn {
  /** Absent: the default (failures and delays are reported). ['NEVER'] is written as []. */
  notify?: readonly DsnNotify[];
  /** RFC 3461 §4.2 ORCPT, as given ("rfc822;user@example.org"). */
  orcpt?: string;
}

export interface OutboundEnvelope {
  /** Reverse path; '' for the null sender (never bounced to). */
  from: string;
  to: readonly string[];
  dsn?: {
    /** RFC 3461 §4.3: what a DSN returns of the message. */
    ret?: 'FULL' | 'HDRS';
    /** RFC 3461 §4.4 ENVID. */
    envid?: string;
    /** Per recipient (keyed by the address as in `to`). */
    recipients?: Readonly<Record<string, RecipientDsn>>;
  };
}

export type RecipientState = 'queued' | 'delivered' | 'failed';

export interface NewQueuedMessage {
  id: string;
  sender: string;
  createdAt: number;
  body: Buffer;
  envid: string | null;
  ret: 'FULL' | 'HDRS' | null;
  /** RFC 8689: deliver only over validated TLS to hosts that support REQUIRETLS. */
  requireTls: boolean;
  /** RFC 8689 §4.2.2: the message says `TLS-Required: No` (and has no REQUIRETLS): the
   * recipient domain's TLS policy (MTA-STS) is set aside, TLS still tried. */
  tlsOptional: boolean;
  /** A report this server generated (DSN): it is never itself bounced. */
  isReport: boolean;
  recipients: ReadonlyArray<{ address: string; domain: string; notify: readonly DsnNotify[] | null; orcpt: string | null }>;
}

/** What the worker and a backup need of a queued message, besides its bytes. */
export interface QueuedEnvelope {
  sender: string;
  createdAt: number;
  size: number;
  envid: string | null;
  ret: 'FULL' | 'HDRS' | null;
  requireTls: boolean;
  tlsOptional: boolean;
  isReport: boolean;
}

/** A recipient claimed for an attempt, with what the worker needs of its message. */
export interface DueRecipient extends QueuedEnvelope {
  id: number;
  messageId: string;
  address: string;
  domain: string;
  notify: DsnNotify[] | null;
  orcpt: string | null;
  attempts: number;
  delayNotified: boolean;
  lastError: string | null;
}

export interface RecipientInfo {
  id: number;
  address: string;
  state: RecipientState;
  attempts: number;
  nextAttempt: number;
  lastError: string | null;
  updatedAt: number;
}

export interface QueuedMessageInfo {
  id: string;
  sender: string;
  createdAt: number;
  size: number;
  held: boolean;
  isReport: boolean;
  requireTls: boolean;
  tlsOptional: boolean;
  recipients: RecipientInfo[];
}

/**
 * A queued message as a backup carries it (src/backup/): its envelope and every recipient's
 * state, without row ids or leases. A recipient leased by a running attempt is `queued` here:
 * restored, it is tried again (docs/operations.md: in-flight messages at backup time).
 */
export interface QueuedMessageRecord extends QueuedEnvelope {
  id: string;
  held: boolean;
  recipients: QueuedRecipientRecord[];
}

export interface QueuedRecipientRecord {
  address: string;
  domain: string;
  notify: DsnNotify[] | null;
  orcpt: string | null;
  state: RecipientState;
  attempts: number;
  nextAttempt: number;
  lastError: string | null;
  delayNotified: boolean;
  updatedAt: number;
}

/** A consistent read of a whole queue (one read transaction), paged by message id. */
export interface QueueSnapshot {
  /** Messages with id > afterId, ascending, at most limit, with their recipients. */
  messages(afterId: string, limit: number): Promise<QueuedMessageRecord[]>;
  /** The bytes of a message of the snapshot, in chunks. */
  body(id: string, size: number): AsyncIterable<Buffer>;
  close(): Promise<void>;
}

export interface StoredStsPolicy {
  domain: string;
  /** The policy id from the _mta-sts TXT record (RFC 8461 §3.1). */
  id: string;
  mode: 'enforce' | 'testing' | 'none';
  mx: string[];
  maxAge: number;
  /** epoch ms */
  fetchedAt: number;
  expiresAt: number;
}

export interface QueueDepth {
  recipients: number;
  messages: number;
  held: number;
}

export interface QueueStore {
  /** Stores the message and its recipients; resolves once durable (fsync'd). */
  insert(message: NewQueuedMessage, nextAttempt: number): Promise<void>;
  /**
   * Claims up to `limit` queued recipients due at `now` (not held, not leased) by leasing them
   * until `leaseUntil`, oldest due first. A lease need not be durable (a single process drops
   * leases at start; several nodes let them expire).
   */
  claimDue(now: number, limit: number, leaseUntil: number): Promise<DueRecipient[]>;
  readBody(messageId: string): Promise<Buffer | null>;
  /**
   * Final state for recipients (one durable commit for the group); clears their lease. With
   * removeIfDone, the message is deleted in the same commit when no recipient is left queued;
   * resolves whether it was.
   */
  finish(recipientIds: readonly number[], state: 'delivered' | 'failed', detail: string, now: number, removeIfDone?: boolean): Promise<boolean>;
  /** Back to the queue for a later attempt; clears the lease. */
  defer(recipientIds: readonly number[], nextAttempt: number, attempts: number | null, error: string | null, now: number): Promise<void>;
  markDelayNotified(recipientIds: readonly number[]): Promise<void>;
  /** Deletes the message when none of its recipients is queued any more. */
  removeIfFinished(messageId: string): Promise<boolean>;
  /** The earliest next attempt among claimable recipients, or null when there is none. */
  nextDue(): Promise<number | null>;
  /** What waits in the queue now (the /metrics gauges): recipients still queued, the messages
   * they belong to, and of those the held ones. */
  depth(): Promise<QueueDepth>;
  /** Deletes every message none of whose recipients is queued (a crash between the last
   * recipient's final state and the message's removal leaves one). Returns how many. */
  sweepFinished(): Promise<number>;
  /** Leases are a crash's leftovers when a single process owns the queue: dropped at start. */
  clearLeases(): Promise<void>;

  listMessages(): Promise<QueuedMessageInfo[]>;
  getMessage(id: string): Promise<QueuedMessageInfo | null>;
  setHeld(id: string, held: boolean): Promise<boolean>;
  /** Makes every queued recipient of the message due now. Returns how many. */
  retryNow(id: string, now: number): Promise<number>;
  /** Removes the message and its recipients, whatever their state. */
  drop(id: string): Promise<boolean>;

  /**
   * Puts a message back as a backup had it (same id, states, attempts, next attempts), in one
   * durable commit. Resolves false, writing nothing, when a message with that id is already
   * here: a restore run twice does not queue it twice.
   */
  restore(message: QueuedMessageRecord, body: Buffer): Promise<boolean>;

  getStsPolicy(domain: string): Promise<StoredStsPolicy | null>;
  putStsPolicy(policy: StoredStsPolicy): Promise<void>;

  close(): Promise<void>;
}
