/**
 * What both backends check and derive the same way when state is written with the identity it
 * had elsewhere (MailStore.restoreMailbox / restoreEntries): an operator's restore of a backup,
 * or an import from another server.
 */
import type { ParsedMessage } from '../mail/types.js';
import { FLAG_DELETED, FLAG_SEEN, parseFlags } from './flags.js';
import type { FlagSet } from './flags.js';
import { domainOf, normalizeAddress, normalizeMailboxName } from './names.js';
import { SPECIAL_USES, StoreError } from './types.js';
import type { AccountRestore, EntryRestore, MailboxRestore, SpecialUse } from './types.js';

/** UIDs and UIDVALIDITY are 32-bit (RFC 9051 §2.3.1.1: nz-number). */
const MAX_UINT32 = 0xffff_ffff;
/** References considered for threading (the last ones are the closest ancestors). */
export const MAX_THREAD_REFS = 50;
const MAX_MESSAGE_ID_LENGTH = 998;
const MAX_PID_LENGTH = 255;
/** RFC 8474 §5: object ids are 1-255 of A-Z a-z 0-9 _ -. */
const OBJECT_ID_RE = /^[A-Za-z0-9_-]{1,255}$/;
/** RFC 1939 §7: a UIDL is 1-70 characters in 0x21-0x7E; longer ones from other servers are kept. */
const PID_RE = /^[\x21-\x7e]+$/;

const isCount = (n: unknown, max = Number.MAX_SAFE_INTEGER): n is number =>
  typeof n === 'number' && Number.isSafeInteger(n) && n >= 1 && n <= max;

export interface CheckedMailboxRestore {
  name: string;
  uidValidity: number;
  uidNext: number;
  highestModSeq: number | null;
  /** undefined: keep what the mailbox has (null for a new one). */
  specialUse: SpecialUse | null | undefined;
  subscribed: boolean | undefined;
}

export function checkMailboxRestore(input: MailboxRestore): CheckedMailboxRestore {
  const name = normalizeMailboxName(input.name);
  if (!isCount(input.uidValidity, MAX_UINT32)) {
    throw new StoreError('invalid', `Cannot restore mailbox ${name}: UIDVALIDITY ${String(input.uidValidity)} is not a 32-bit number above 0`);
  }
  if (!isCount(input.uidNext, MAX_UINT32)) {
    throw new StoreError('invalid', `Cannot restore mailbox ${name}: UIDNEXT ${String(input.uidNext)} is not a 32-bit number above 0`);
  }
  if (input.highestModSeq !== undefined && !isCount(input.highestModSeq)) {
    throw new StoreError('invalid', `Cannot restore mailbox ${name}: HIGHESTMODSEQ ${String(input.highestModSeq)} is not a number above 0`);
  }
  if (input.specialUse !== undefined && input.specialUse !== null && !SPECIAL_USES.has(input.specialUse)) {
    throw new StoreError('invalid', `Cannot restore mailbox ${name} with special use ${String(input.specialUse)}`);
  }
  return {
    name,
    uidValidity: input.uidValidity,
    uidNext: input.uidNext,
    highestModSeq: input.highestModSeq ?? null,
    specialUse: input.specialUse,
    subscribed: input.subscribed,
  };
}

export interface CheckedEntryRestore {
  input: EntryRestore;
  flags: FlagSet;
  saveDate: number;
}

/** Validates a batch: UIDs strictly ascending, dates, modseqs and ids well formed. */
export function checkEntryRestores(entries: readonly EntryRestore[], now: number): CheckedEntryRestore[] {
  let last = 0;
  return entries.map((e) => {
    if (!isCount(e.uid, MAX_UINT32) || e.uid <= last) {
      throw new StoreError('invalid', `Cannot restore uid ${String(e.uid)}: UIDs must be 32-bit numbers in ascending order`);
    }
    last = e.uid;
    if (!Buffer.isBuffer(e.raw)) throw new StoreError('invalid', `Cannot restore uid ${e.uid}: no message bytes`);
    for (const [what, v] of [['internal date', e.internalDate], ['save date', e.saveDate]] as const) {
      if (v !== undefined && (typeof v !== 'number' || !Number.isSafeInteger(v))) {
        throw new StoreError('invalid', `Cannot restore uid ${e.uid}: ${what} ${String(v)} is not an integer of milliseconds`);
      }
    }
    if (e.modseq !== undefined && !isCount(e.modseq)) {
      throw new StoreError('invalid', `Cannot restore uid ${e.uid}: modseq ${String(e.modseq)} is not a number above 0`);
    }
    for (const [what, v] of [['email id', e.emailId], ['thread id', e.threadId]] as const) {
      if (v !== undefined && !OBJECT_ID_RE.test(v)) {
        throw new StoreError('invalid', `Cannot restore uid ${e.uid}: ${what} ${JSON.stringify(v)} is not an RFC 8474 object id`);
      }
    }
    if (e.pid !== undefined && (e.pid.length > MAX_PID_LENGTH || !PID_RE.test(e.pid))) {
      throw new StoreError('invalid', `Cannot restore uid ${e.uid}: UIDL ${JSON.stringify(e.pid)} is not 1-${MAX_PID_LENGTH} printable characters`);
    }
    return { input: e, flags: parseFlags(e.flags), saveDate: e.saveDate ?? now };
  });
}

/**
 * The account's copy counter must stay above the suffix of every pid a copy could be given
 * (ids.ts copyPid: emailId.N), or a later COPY could hand out a restored entry's pid again.
 */
export function pidCounterFloor(pids: Iterable<string>): number {
  let floor = 0;
  for (const pid of pids) {
    const m = /\.(\d{1,15})$/.exec(pid);
    if (m !== null) floor = Math.max(floor, Number(m[1]));
  }
  return floor;
}

function cleanMessageId(id: string): string | null {
  const s = id.trim().replace(/^<|>$/g, '');
  return s.length === 0 || s.length > MAX_MESSAGE_ID_LENGTH ? null : s;
}

/** The Message-IDs that link a message to its thread (RFC 8474 §5.2): its own first, then its
 * parents, closest first. */
export function threadKeys(parsed: ParsedMessage): string[] {
  const keys: string[] = [];
  const add = (id: string): void => {
    const c = cleanMessageId(id);
    if (c !== null && !keys.includes(c)) keys.push(c);
  };
  // Own id first: a reply stored earlier already put it in a thread.
  if (parsed.messageId !== null) add(parsed.messageId);
  for (const id of parsed.inReplyTo) add(id);
  for (const id of parsed.references.slice(-MAX_THREAD_REFS).reverse()) add(id);
  return keys;
}

/** What a batch of restored rows adds to its mailbox's counters, and the references per blob. */
export function restoreTotals<B extends { hash: string }>(
  rows: ReadonlyArray<{ modseq: number; mask: number; size: number }>,
  blobs: readonly B[],
): { counts: { messages: number; unseen: number; deleted: number; size: number }; highest: number; perBlob: Map<string, { blob: B; n: number }> } {
  const counts = { messages: 0, unseen: 0, deleted: 0, size: 0 };
  const perBlob = new Map<string, { blob: B; n: number }>();
  let highest = 0;
  for (const [i, r] of rows.entries()) {
    counts.messages += 1;
    counts.unseen += (r.mask & FLAG_SEEN) === 0 ? 1 : 0;
    counts.deleted += (r.mask & FLAG_DELETED) !== 0 ? 1 : 0;
    counts.size += r.size;
    highest = Math.max(highest, r.modseq);
    const blob = blobs[i];
    if (blob === undefined) throw new StoreError('io', 'Cannot restore: message bytes missing');
    const p = perBlob.get(blob.hash);
    if (p === undefined) perBlob.set(blob.hash, { blob, n: 1 });
    else p.n += 1;
  }
  return { counts, highest, perBlob };
}

const POLICIES: ReadonlySet<string> = new Set(['expunge', 'trash', 'hide']);

export function checkAccountRestore(input: AccountRestore): { address: string; domain: string; subscriptions: string[] } {
  const address = normalizeAddress(input.address);
  if (!POLICIES.has(input.pop3DeletePolicy)) {
    throw new StoreError('invalid', `Cannot restore account ${address}: POP3 delete policy ${String(input.pop3DeletePolicy)}`);
  }
  for (const q of [input.quotaBytes, input.quotaMessages]) {
    if (q !== null && (!Number.isSafeInteger(q) || q < 0)) throw new StoreError('invalid', `Cannot restore account ${address}: quota ${q}`);
  }
  if (!isCount(input.modseq) || !Number.isSafeInteger(input.createdAt)) {
    throw new StoreError('invalid', `Cannot restore account ${address}: modseq ${String(input.modseq)} or creation date`);
  }
  return { address, domain: domainOf(address), subscriptions: [...new Set(input.subscriptions.map(normalizeMailboxName))] };
}

export function checkExpungedRestore(items: ReadonlyArray<{ uid: number; modseq: number }>): void {
  for (const i of items) {
    if (!isCount(i.uid, MAX_UINT32) || !isCount(i.modseq)) {
      throw new StoreError('invalid', `Cannot restore expunged uid ${String(i.uid)} at modseq ${String(i.modseq)}`);
    }
  }
}
