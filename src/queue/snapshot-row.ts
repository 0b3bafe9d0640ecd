/** Rows of either queue backend as a backup reads them (booleans are 0/1 in SQLite). */
import { parseNotify } from './notify-column.js';
import type { QueuedMessageRecord, QueuedRecipientRecord, RecipientState } from './types.js';

export interface SnapshotRecipientRow {
  message_id: string;
  address: string;
  domain: string;
  notify: string | null;
  orcpt: string | null;
  state: string;
  attempts: number;
  next_attempt: number;
  last_error: string | null;
  delay_notified: number | boolean;
  updated_at: number;
}

const truth = (v: number | boolean): boolean => v === true || v === 1;

export const SNAPSHOT_RECIPIENT_COLUMNS = 'message_id, address, domain, notify, orcpt, state, attempts, next_attempt, last_error, delay_notified, updated_at';

export function snapshotRecipient(r: SnapshotRecipientRow): QueuedRecipientRecord {
  return {
    address: r.address,
    domain: r.domain,
    notify: parseNotify(r.notify),
    orcpt: r.orcpt,
    state: r.state as RecipientState,
    attempts: r.attempts,
    nextAttempt: r.next_attempt,
    lastError: r.last_error,
    delayNotified: truth(r.delay_notified),
    updatedAt: r.updated_at,
  };
}

export interface SnapshotMessageRow {
  id: string;
  sender: string;
  created_at: number;
  size: number;
  envid: string | null;
  ret: string | null;
  requiretls: number | boolean;
  tls_optional: number | boolean;
  is_report: number | boolean;
  held: number | boolean;
}

/** The columns a backup reads of a message. A queue that no server of this release has opened
 * yet (an upgrade, then a backup before the first start) lacks the later columns: their
 * defaults are read instead. */
export function snapshotMessageColumns(hasTlsOptional: boolean): string {
  return `id, sender, created_at, size, envid, ret, requiretls, ${hasTlsOptional ? 'tls_optional' : 'false AS tls_optional'}, is_report, held`;
}


export function snapshotMessage(m: SnapshotMessageRow, recipients: readonly SnapshotRecipientRow[]): QueuedMessageRecord {
  return {
    id: m.id,
    sender: m.sender,
    createdAt: m.created_at,
    size: m.size,
    envid: m.envid,
    ret: m.ret === 'FULL' || m.ret === 'HDRS' ? m.ret : null,
    requireTls: truth(m.requiretls),
    tlsOptional: truth(m.tls_optional),
    isReport: truth(m.is_report),
    held: truth(m.held),
    recipients: recipients.map(snapshotRecipient),
  };
}
