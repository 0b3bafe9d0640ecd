/**
 * Whole-installation backup and restore (docs/operations.md): every domain, account (with its
 * credentials, settings and modseq), alias, mailbox (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ,
 * subscriptions), entry (UID, modseq, flags, dates, UIDL, EMAILID, THREADID) and expunge log
 * row, each blob once, every RFC 5464 annotation (server and mailbox entries, private and
 * shared), and the outbound queue (envelope, recipients' states, attempts, next attempts and the
 * message bytes), in the format of format.ts. A restore into either backend keeps every identity
 * a client may have cached, so an installation moves between SQLite and PostgreSQL without
 * clients noticing, and the restored queue goes on delivering where the old one stood.
 *
 * The queue is read in its own snapshot, just after the store's: the two are separate databases
 * and nothing links a queued message to a stored one.
 */
import { createHash } from 'node:crypto';
import { rename, rm } from 'node:fs/promises';
import { asModSeq, asUid, asUidValidity } from '../lib/brand.js';
import type { MailboxId } from '../lib/brand.js';
import { parseMessage } from '../mail/parse.js';
import type { ParsedMessage } from '../mail/types.js';
import type { QueuedMessageRecord, QueuedRecipientRecord, QueueSnapshot, QueueStore } from '../queue/types.js';
import type { EntryRestore, MailStore, Pop3DeletePolicy, SpecialUse } from '../store/types.js';
import { BackupFormatError, FORMAT_VERSION, OLDEST_FORMAT, createBackupWriter, readBackup } from './format.js';
import type { BackupRecord, BackupWriter } from './format.js';
import { ENTRY_PAGE, EXPUNGED_PAGE } from './snapshot.js';
import type { SnapshotMailbox, SnapshotMetadata, StoreSnapshot } from './snapshot.js';

/** Record types and the highest version of each this program reads. */
const KNOWN: Readonly<Record<string, number>> = {
  header: 1,
  domain: 1,
  account: 1,
  mailbox: 1,
  blob: 1,
  entry: 1,
  expunged: 1,
  alias: 1,
  metadata: 1,
  queued: 1,
};

/** Entries restored per transaction, and the bytes they may hold. */
const BATCH_ENTRIES = 200;
const BATCH_BYTES = 16 * 1024 * 1024;
/** Annotation values per metadata record, before base64 (records are at most 16 MiB). */
const METADATA_RECORD_BYTES = 4 * 1024 * 1024;
/** Queued messages read per page of the queue snapshot. */
const QUEUE_PAGE = 100;
/** A restore writes annotations as they were, even past the target's configured limits (the
 * limits refuse growth from clients, not what an installation already holds). */
const NO_METADATA_LIMITS = { maxEntries: Number.MAX_SAFE_INTEGER, maxTotalBytes: Number.MAX_SAFE_INTEGER };

export interface BackupSummary {
  domains: number;
  accounts: number;
  mailboxes: number;
  entries: number;
  blobs: number;
  expunged: number;
  aliases: number;
  /** Annotations (entries, not records). */
  metadata: number;
  /** Queued messages; on restore, those written (not already in the target queue). */
  queued: number;
}

const emptySummary = (): BackupSummary => ({
  domains: 0,
  accounts: 0,
  mailboxes: 0,
  entries: 0,
  blobs: 0,
  expunged: 0,
  aliases: 0,
  metadata: 0,
  queued: 0,
});

/** An account's annotations as records: one target each (null: the server), values in base64. */
async function writeMetadata(w: BackupWriter, rows: readonly SnapshotMetadata[], mailboxes: readonly SnapshotMailbox[]): Promise<number> {
  const names = new Map(mailboxes.map((m) => [m.id, m.name]));
  let n = 0;
  let target: number | null = null;
  let items: Array<[string, string]> = [];
  let bytes = 0;
  const emit = async (): Promise<void> => {
    if (items.length === 0 || target === null) return;
    await w.record({ type: 'metadata', v: 1, mailbox: target === 0 ? null : (names.get(target) ?? null), entries: items });
    n += items.length;
    items = [];
    bytes = 0;
  };
  for (const r of rows) {
    // A row on a mailbox that no longer exists (checkConsistency reports it) is not carried.
    if (r.mailboxId !== 0 && !names.has(r.mailboxId)) continue;
    if (r.mailboxId !== target || bytes + r.value.length > METADATA_RECORD_BYTES) await emit();
    target = r.mailboxId;
    items.push([r.name, r.value.toString('base64')]);
    bytes += r.value.length;
  }
  await emit();
  return n;
}

/** Writes the snapshot (and the queue's, when given) to path (through path.partial, renamed when
 * complete). */
export async function writeBackup(
  snapshot: StoreSnapshot,
  path: string,
  options: { gzip?: boolean; queue?: QueueSnapshot | null } = {},
): Promise<BackupSummary> {
  const partial = `${path}.partial`;
  const w = await createBackupWriter(partial, options);
  const sum = emptySummary();
  try {
    await w.record({ type: 'header', v: 1, format: FORMAT_VERSION, createdAt: Date.now(), source: snapshot.backend });
    for (const d of await snapshot.domains()) {
      await w.record({ type: 'domain', v: 1, name: d.name, createdAt: d.createdAt });
      sum.domains += 1;
    }
    for (const a of await snapshot.accounts()) {
      const { id, domain, ...account } = a;
      void domain;
      await w.record({ type: 'account', v: 1, ...account });
      sum.accounts += 1;
      const mailboxes = await snapshot.mailboxes(id);
      for (const m of mailboxes) {
        const { id: mailboxId, ...mailbox } = m;
        await w.record({ type: 'mailbox', v: 1, ...mailbox });
        sum.mailboxes += 1;
        for (let after = 0; ; ) {
          const page = await snapshot.entries(mailboxId, after, ENTRY_PAGE);
          // A blob is in the file once, before the first entry that needs it: written unless an
          // entry read earlier (another page, mailbox or account, or this page) references it.
          // Asked of the snapshot a page at a time, so memory does not grow with the store.
          const first = page[0];
          const written = first === undefined ? new Set<string>() : await snapshot.blobsBefore([...new Set(page.map((e) => e.blobHash))], { accountId: id, mailbox: m.name, uid: first.uid });
          for (const e of page) {
            if (!written.has(e.blobHash)) {
              await w.record({ type: 'blob', v: 1, hash: e.blobHash, size: e.size });
              for await (const chunk of snapshot.blob(e.blobHash, e.size)) await w.data(chunk);
              written.add(e.blobHash);
              sum.blobs += 1;
            }
            await w.record({ type: 'entry', v: 1, ...e });
            sum.entries += 1;
          }
          if (page.length < ENTRY_PAGE) break;
          after = page[page.length - 1]?.uid ?? after;
        }
        for (let after: [number, number] = [0, 0]; ; ) {
          const page = await snapshot.expunged(mailboxId, after, EXPUNGED_PAGE);
          if (page.length > 0) await w.record({ type: 'expunged', v: 1, items: page });
          sum.expunged += page.length;
          if (page.length < EXPUNGED_PAGE) break;
          const last = page[page.length - 1] ?? [0, 0];
          after = [last[1], last[0]];
        }
      }
      // After the mailboxes, so that a restore finds each annotation's mailbox by name.
      sum.metadata += await writeMetadata(w, await snapshot.metadata(id), mailboxes);
    }
    for (const a of await snapshot.aliases()) {
      await w.record({ type: 'alias', v: 1, source: a.source, target: a.target });
      sum.aliases += 1;
    }
    if (options.queue) {
      for (let after = ''; ; ) {
        const page = await options.queue.messages(after, QUEUE_PAGE);
        for (const m of page) {
          await w.record({ type: 'queued', v: 1, ...m });
          for await (const chunk of options.queue.body(m.id, m.size)) await w.data(chunk);
          sum.queued += 1;
        }
        if (page.length < QUEUE_PAGE) break;
        after = page[page.length - 1]?.id ?? after;
      }
    }
    await w.finish();
    await rename(partial, path);
    return sum;
  } catch (err) {
    await w.abort();
    await rm(partial, { force: true });
    throw err;
  }
}

/** Reads the whole file: structure, checksum and record types, writing nothing. */
export async function verifyBackupFile(path: string): Promise<void> {
  let first = true;
  for await (const f of readBackup(path)) {
    if (f.kind !== 'J') continue;
    const r = f.record;
    if (first && r.type !== 'header') throw new BackupFormatError('Cannot read the backup: it does not start with its header');
    if (first && (typeof r.format !== 'number' || r.format < OLDEST_FORMAT || r.format > FORMAT_VERSION)) {
      throw new BackupFormatError(`Cannot restore: backup format ${String(r.format)}, this program reads ${OLDEST_FORMAT} to ${FORMAT_VERSION}`);
    }
    first = false;
    const known = KNOWN[r.type];
    if ((known === undefined || r.v > known) && r.optional !== true) {
      throw new BackupFormatError(`Cannot restore: the backup has ${r.type} records (version ${r.v}) that this program does not know; use a newer Facteur`);
    }
  }
}

/** Whether a store has accounts or aliases (domains alone, as `facteur init` leaves, are fine). */
export async function storeIsEmpty(store: MailStore): Promise<boolean> {
  return (await store.listAccounts()).length === 0 && (await store.listAliases()).length === 0;
}

const str = (r: BackupRecord, k: string): string => {
  const v = r[k];
  if (typeof v !== 'string') throw new BackupFormatError(`Cannot restore: ${r.type} record without ${k}`);
  return v;
};
const num = (r: BackupRecord, k: string): number => {
  const v = r[k];
  if (typeof v !== 'number') throw new BackupFormatError(`Cannot restore: ${r.type} record without ${k}`);
  return v;
};

const int = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const strOrNull = (v: unknown): v is string | null => v === null || typeof v === 'string';
const STATES: ReadonlySet<unknown> = new Set(['queued', 'delivered', 'failed']);
const NOTIFY: ReadonlySet<unknown> = new Set(['SUCCESS', 'FAILURE', 'DELAY']);

/** A queued record checked field by field (the file is the operator's, but may be damaged or
 * written by another program). */
function queuedFrom(r: BackupRecord): QueuedMessageRecord {
  const bad = (what: string): never => {
    throw new BackupFormatError(`Cannot restore: queued message ${JSON.stringify(r.id)} has a bad ${what}`);
  };
  if (typeof r.id !== 'string' || !/^[0-9a-z]{1,64}$/.test(r.id)) bad('id');
  if (typeof r.sender !== 'string') bad('sender');
  if (!int(r.createdAt)) bad('creation date');
  if (!int(r.size)) bad('size');
  if (!strOrNull(r.envid)) bad('ENVID');
  if (r.ret !== null && r.ret !== 'FULL' && r.ret !== 'HDRS') bad('RET');
  if (!Array.isArray(r.recipients) || r.recipients.length === 0) bad('recipient list');
  const recipients = (r.recipients as unknown[]).map((x): QueuedRecipientRecord => {
    const p = (typeof x === 'object' && x !== null ? x : {}) as Record<string, unknown>;
    if (typeof p.address !== 'string' || typeof p.domain !== 'string') bad('recipient address');
    if (!STATES.has(p.state)) bad(`recipient state ${String(p.state)}`);
    if (!int(p.attempts) || !int(p.nextAttempt) || !int(p.updatedAt)) bad('recipient attempt count or date');
    if (p.notify !== null && !(Array.isArray(p.notify) && p.notify.every((n) => NOTIFY.has(n)))) bad('recipient NOTIFY');
    if (!strOrNull(p.orcpt) || !strOrNull(p.lastError)) bad('recipient ORCPT or last error');
    return {
      address: p.address as string,
      domain: p.domain as string,
      notify: p.notify as QueuedRecipientRecord['notify'],
      orcpt: p.orcpt as string | null,
      state: p.state as QueuedRecipientRecord['state'],
      attempts: p.attempts as number,
      nextAttempt: p.nextAttempt as number,
      lastError: p.lastError as string | null,
      delayNotified: p.delayNotified === true,
      updatedAt: p.updatedAt as number,
    };
  });
  return {
    id: r.id as string,
    sender: r.sender as string,
    createdAt: r.createdAt as number,
    size: r.size as number,
    envid: r.envid as string | null,
    ret: r.ret as QueuedMessageRecord['ret'],
    requireTls: r.requireTls === true,
    tlsOptional: r.tlsOptional === true,
    isReport: r.isReport === true,
    held: r.held === true,
    recipients,
  };
}

/** An annotation record: names as the store keeps them (lowercased, RFC 5464 §3.2: a /private
 * or /shared prefix, printable ASCII without "*" and "%"). */
function metadataFrom(r: BackupRecord): Array<{ name: string; value: Buffer }> {
  if (!Array.isArray(r.entries)) throw new BackupFormatError('Cannot restore: metadata record without entries');
  return (r.entries as unknown[]).map((e) => {
    const [name, value] = Array.isArray(e) ? (e as unknown[]) : [];
    if (typeof name !== 'string' || !/^\/(private|shared)\/[\x20-\x24\x26-\x29\x2b-\x7e]+$/.test(name) || name !== name.toLowerCase() || typeof value !== 'string') {
      throw new BackupFormatError(`Cannot restore: a bad metadata entry ${JSON.stringify(name)}`);
    }
    return { name, value: Buffer.from(value, 'base64') };
  });
}

/**
 * Restores a verified backup into a store and, when given, the outbound queue (the caller
 * checked the store is empty, or was told to go on). Streams: one batch of entries and one blob
 * or queued message in memory at a time; a blob met again is read back from the target store.
 * A queued message already in the target queue (same id) is left as it is.
 */
export async function restoreBackup(store: MailStore, path: string, options: { queue?: QueueStore | null } = {}): Promise<BackupSummary> {
  const sum = emptySummary();
  const haveDomains = new Set((await store.listDomains()).map((d) => d.name));
  let accountId: Parameters<MailStore['restoreMailbox']>[0] | null = null;
  let mailboxId: MailboxId | null = null;
  // The bytes announced by the last 'blob' or 'queued' record, until they are all in.
  let blob: { hash: string; size: number; chunks: Buffer[]; got: number; queued?: QueuedMessageRecord } | null = null;
  let batch: EntryRestore[] = [];
  let batchBytes = 0;
  // Messages of the batch not yet in the store, by hash.
  let inBatch = new Map<string, { raw: Buffer; parsed: ParsedMessage }>();
  let lastBlob: { hash: string; raw: Buffer; parsed: ParsedMessage } | null = null;

  const flush = async (): Promise<void> => {
    if (batch.length === 0 || mailboxId === null) return;
    await store.restoreEntries(mailboxId, batch);
    sum.entries += batch.length;
    batch = [];
    batchBytes = 0;
    inBatch = new Map();
  };
  const restoreQueued = async (m: QueuedMessageRecord, body: Buffer): Promise<boolean> => {
    if (!options.queue) throw new BackupFormatError('Cannot restore: the backup has queued messages and no queue was given');
    return options.queue.restore(m, body);
  };
  const needMailbox = (r: BackupRecord): MailboxId => {
    if (mailboxId === null) throw new BackupFormatError(`Cannot restore: ${r.type} record outside a mailbox`);
    return mailboxId;
  };

  for await (const f of readBackup(path)) {
    if (f.kind === 'D') {
      if (blob === null) throw new BackupFormatError('Cannot restore: blob data without its blob record');
      blob.chunks.push(f.data);
      blob.got += f.data.length;
      if (blob.got > blob.size) throw new BackupFormatError(`Cannot restore: blob ${blob.hash} is longer than announced`);
      if (blob.got === blob.size && blob.queued !== undefined) {
        if (await restoreQueued(blob.queued, Buffer.concat(blob.chunks))) sum.queued += 1;
        blob = null;
      } else if (blob.got === blob.size) {
        const raw = Buffer.concat(blob.chunks);
        if (createHash('sha256').update(raw).digest('hex') !== blob.hash) {
          throw new BackupFormatError(`Cannot restore: blob ${blob.hash} does not match its hash`);
        }
        lastBlob = { hash: blob.hash, raw, parsed: parseMessage(raw) };
        blob = null;
        sum.blobs += 1;
      }
      continue;
    }
    const r = f.record;
    if (blob !== null) throw new BackupFormatError(`Cannot restore: ${blob.queued ? 'queued message' : 'blob'} ${blob.hash} is cut short`);
    switch (r.type) {
      case 'header':
        break;
      case 'domain': {
        const name = str(r, 'name');
        if (!haveDomains.has(name)) await store.addDomain(name, num(r, 'createdAt'));
        sum.domains += 1;
        break;
      }
      case 'account': {
        await flush();
        mailboxId = null;
        const account = await store.restoreAccount({
          address: str(r, 'address'),
          passwordHash: str(r, 'passwordHash'),
          scram: (r.scram as string | null) ?? null,
          quotaBytes: (r.quotaBytes as number | null) ?? null,
          quotaMessages: (r.quotaMessages as number | null) ?? null,
          pop3DeletePolicy: str(r, 'pop3DeletePolicy') as Pop3DeletePolicy,
          disabled: r.disabled === true,
          createdAt: num(r, 'createdAt'),
          modseq: asModSeq(num(r, 'modseq')),
          subscriptions: Array.isArray(r.subscriptions) ? (r.subscriptions as string[]) : [],
        });
        accountId = account.id;
        // The second factor and the app passwords: without them a restored account would take
        // its main password on IMAP/POP3/SMTP again.
        if (typeof r.totpSecret === 'string') {
          await store.updateAccount(account.id, {
            totpSecret: r.totpSecret,
            totpLastStep: typeof r.totpLastStep === 'number' ? r.totpLastStep : null,
          });
        }
        for (const p of Array.isArray(r.appPasswords) ? (r.appPasswords as unknown[]) : []) {
          const ap = p as Record<string, unknown>;
          const used = ap.lastUsed as { at?: unknown; protocol?: unknown; ip?: unknown } | null | undefined;
          if (typeof ap.name !== 'string' || typeof ap.hash !== 'string' || typeof ap.createdAt !== 'number') {
            throw new BackupFormatError(`Cannot restore: a bad app password record for ${account.address}`);
          }
          await store.addAppPassword(account.id, {
            name: ap.name,
            hash: ap.hash,
            createdAt: ap.createdAt,
            lastUsed:
              used !== null && used !== undefined && typeof used.at === 'number'
                ? { at: used.at, protocol: String(used.protocol ?? ''), ip: String(used.ip ?? '') }
                : null,
          });
        }
        sum.accounts += 1;
        break;
      }
      case 'mailbox': {
        await flush();
        if (accountId === null) throw new BackupFormatError('Cannot restore: mailbox record outside an account');
        const mb = await store.restoreMailbox(accountId, {
          name: str(r, 'name'),
          uidValidity: asUidValidity(num(r, 'uidValidity')),
          uidNext: asUid(num(r, 'uidNext')),
          highestModSeq: asModSeq(num(r, 'highestModSeq')),
          specialUse: (r.specialUse as SpecialUse | null) ?? null,
        });
        mailboxId = mb.id;
        sum.mailboxes += 1;
        break;
      }
      case 'blob':
        blob = { hash: str(r, 'hash'), size: num(r, 'size'), chunks: [], got: 0 };
        if (blob.size === 0) {
          const raw = Buffer.alloc(0);
          lastBlob = { hash: blob.hash, raw, parsed: parseMessage(raw) };
          blob = null;
          sum.blobs += 1;
        }
        break;
      case 'entry': {
        needMailbox(r);
        const hash = str(r, 'blobHash');
        let msg = inBatch.get(hash) ?? (lastBlob?.hash === hash ? lastBlob : undefined);
        if (msg === undefined) {
          // Written earlier in the file, so already in the store.
          const raw = await store.readBlob(hash);
          msg = { raw, parsed: parseMessage(raw) };
        }
        if (!inBatch.has(hash)) {
          inBatch.set(hash, msg);
          batchBytes += msg.raw.length;
        }
        batch.push({
          uid: asUid(num(r, 'uid')),
          raw: msg.raw,
          parsed: msg.parsed,
          flags: Array.isArray(r.flags) ? (r.flags as string[]) : [],
          internalDate: num(r, 'internalDate'),
          saveDate: num(r, 'saveDate'),
          modseq: asModSeq(num(r, 'modseq')),
          pid: str(r, 'pid'),
          emailId: str(r, 'emailId'),
          threadId: str(r, 'threadId'),
          pop3Hidden: r.pop3Hidden === true,
        });
        if (batch.length >= BATCH_ENTRIES || batchBytes >= BATCH_BYTES) await flush();
        break;
      }
      case 'expunged': {
        await flush();
        const items = (Array.isArray(r.items) ? (r.items as Array<[number, number]>) : []).map(([uid, modseq]) => ({
          uid: asUid(uid),
          modseq: asModSeq(modseq),
        }));
        await store.restoreExpunged(needMailbox(r), items);
        sum.expunged += items.length;
        break;
      }
      case 'alias':
        await flush();
        await store.addAlias(str(r, 'source'), str(r, 'target'));
        sum.aliases += 1;
        break;
      case 'metadata': {
        await flush();
        if (accountId === null) throw new BackupFormatError('Cannot restore: metadata record outside an account');
        let target: MailboxId | null = null;
        if (r.mailbox !== null) {
          const mb = await store.getMailbox(accountId, str(r, 'mailbox'));
          if (mb === null) throw new BackupFormatError(`Cannot restore: metadata of mailbox ${String(r.mailbox)}, which the backup does not have`);
          target = mb.id;
        }
        const entries = metadataFrom(r);
        await store.setMetadata(accountId, target, entries, NO_METADATA_LIMITS);
        sum.metadata += entries.length;
        break;
      }
      case 'queued': {
        await flush();
        const m = queuedFrom(r);
        blob = { hash: m.id, size: m.size, chunks: [], got: 0, queued: m };
        if (m.size === 0) {
          if (await restoreQueued(m, Buffer.alloc(0))) sum.queued += 1;
          blob = null;
        }
        break;
      }
      default:
        // Only optional records get here (verifyBackupFile refused the others).
        break;
    }
  }
  if (blob !== null) throw new BackupFormatError(`Cannot restore: ${blob.queued ? 'queued message' : 'blob'} ${blob.hash} is cut short`);
  await flush();
  return sum;
}
