/**
 * Writes an import source into one account of the store.
 *
 * Invariants:
 * - Identity is kept when it can be: a source mailbox with a UIDVALIDITY goes into a new (or
 *   empty, never used) mailbox with that UIDVALIDITY and the same UIDs (store.restoreMailbox /
 *   restoreEntries), and with HIGHESTMODSEQ at least the source's (or the Maildir floor), so an
 *   IMAP client neither resyncs nor misses a change (RFC 7162 §3.1.2). A mailbox that already
 *   holds mail cannot take foreign UIDs: the messages are appended with new UIDs, and the
 *   summary says so.
 * - A message's POP3 UIDL from the old server is kept as its pid, so POP3 clients that leave mail
 *   on the server download nothing again. A UIDL already used in the account by another mailbox
 *   is not kept (pids are unique per account); the summary counts it.
 * - Re-running or resuming an import adds no duplicates. Sources that identify messages (UIDs
 *   kept, or UIDLs): what the destination already holds is skipped before it is read. The others
 *   (plain Maildir, mbox): a message is already imported when the destination mailbox held,
 *   before this run, an entry with the same content (blob hash) and INTERNALDATE; the sources
 *   give a stable INTERNALDATE (file mtime, From_ line or Date: header). Copies within one run
 *   are all imported (a source may hold the same message twice).
 * - Memory: two batches (BATCH_MESSAGES / BATCH_BYTES: one written while the next is read) and a
 *   few numbers per mailbox. The duplicate checks ask the store (indexed lookups by UIDL or blob
 *   hash, a batch or a message at a time): nothing grows with the number of messages.
 */
import { createHash } from 'node:crypto';
import { asModSeq, asUid, asUidValidity, type AccountId, type MailboxId } from '../lib/brand.js';
import { parseMessage } from '../mail/parse.js';
import { parseFlags } from '../store/flags.js';
import { StoreError, type AppendInput, type EntryRestore, type Mailbox, type MailStore } from '../store/types.js';
import { formatPop3Uidl } from './dovecot.js';
import { toCrlf, type ImportSource, type SourceMailbox, type SourceMessage } from './source.js';

export const BATCH_MESSAGES = 500;
/** Bytes of one batch: with their parse records two batches are a few times this in memory. */
export const BATCH_BYTES = 4 * 1024 * 1024;

export interface ImportProgress {
  mailbox: string;
  messages: number;
  bytes: number;
  skipped: number;
  /** Expected totals from the source, 0 when unknown. */
  expectedMessages: number;
}

export interface MailboxReport {
  name: string;
  imported: number;
  /** 'kept': UIDVALIDITY and UIDs kept; 'appended': new UIDs because the mailbox held mail. */
  identity: 'kept' | 'appended' | 'new';
  note?: string;
}

export interface ImportSummary {
  messages: number;
  bytes: number;
  /** Already in the destination (an earlier run or an interrupted one): not imported again. */
  alreadyPresent: number;
  skipped: Array<{ origin: string; reason: string }>;
  mailboxes: MailboxReport[];
  warnings: string[];
}

export interface ImportOptions {
  /** Called after each stored batch. */
  onProgress?: (p: ImportProgress) => void;
  /** Only these mailboxes of the source (Facteur names); all when undefined. */
  mailboxFilter?: (name: string) => boolean;
  /** Rename a source mailbox (mbox --mailbox NAME). */
  renameMailbox?: (name: string) => string;
  /**
   * The pop3_uidl_format the source used, to recognise in the destination the entries a previous
   * run imported under a UIDVALIDITY the source has since changed. Default `%08Xu%08Xv`.
   */
  pop3UidlFormat?: string | null;
  /** Messages per store transaction (default BATCH_MESSAGES). */
  batchMessages?: number;
}

/** Flags the store accepts (RFC 9051 §2.3.2); anything else is dropped and counted. */
function cleanFlags(flags: readonly string[], dropped: Set<string>): string[] {
  const out: string[] = [];
  for (const f of flags) {
    try {
      parseFlags([f]);
      out.push(f);
    } catch {
      dropped.add(f);
    }
  }
  return out;
}

interface Known {
  /** Highest UID each destination mailbox holds (store.highestUid, then followed). */
  maxUid: Map<MailboxId, number>;
}

const sha256 = (raw: Buffer): string => createHash('sha256').update(raw).digest('hex');

/**
 * The messages of a batch the destination mailbox held before this run (same content and
 * INTERNALDATE, at a UID up to heldUpTo): one indexed query for the batch.
 */
async function notYetImported(store: MailStore, mailboxId: MailboxId, batch: SourceMessage[], heldUpTo: number): Promise<SourceMessage[]> {
  const hashes = batch.map((m) => sha256(m.raw));
  const found = await store.findEntries(mailboxId, 'blobHash', [...new Set(hashes)]);
  const held = new Set(found.filter((e) => e.uid <= heldUpTo).map((e) => `${e.blobHash} ${e.internalDate}`));
  if (held.size === 0) return batch;
  return batch.filter((m, i) => !held.has(`${hashes[i]} ${m.internalDate}`));
}

export async function importInto(store: MailStore, accountId: AccountId, source: ImportSource, options: ImportOptions = {}): Promise<ImportSummary> {
  const summary: ImportSummary = { messages: 0, bytes: 0, alreadyPresent: 0, skipped: [], mailboxes: [], warnings: [] };
  const known: Known = { maxUid: new Map() };
  const droppedFlags = new Set<string>();
  let uidlsNotKept = 0;
  const batchMessages = options.batchMessages ?? BATCH_MESSAGES;
  const uidlFormat = options.pop3UidlFormat === undefined ? '%08Xu%08Xv' : options.pop3UidlFormat;

  for await (const sm of source.mailboxes()) {
    if (options.mailboxFilter && !options.mailboxFilter(sm.name)) continue;
    const name = options.renameMailbox ? options.renameMailbox(sm.name) : sm.name;
    const { mailbox, report, afterUid } = await openDestination(store, accountId, sm, name, known, uidlFormat, summary);
    const kept = report.identity === 'kept';
    // What the mailbox held before this run: only that can be a duplicate (see the invariants).
    const heldUpTo = known.maxUid.get(mailbox.id) ?? 0;
    const progress: ImportProgress = { mailbox: name, messages: 0, bytes: 0, skipped: 0, expectedMessages: sm.expectedMessages };

    let batch: SourceMessage[] = [];
    let batchBytes = 0;
    let batchKind: 'restore' | 'append' = 'restore';
    // One batch is written while the next one is read: the source's and the store's latencies
    // overlap, and at most two batches are in memory.
    let writing: Promise<void> | null = null;
    const flush = async (): Promise<void> => {
      if (writing) await writing;
      writing = null;
      if (batch.length === 0) return;
      const full = batch;
      const kind = batchKind;
      batch = [];
      batchBytes = 0;
      writing = (async () => {
        const fresh = kind === 'append' && heldUpTo > 0 ? await notYetImported(store, mailbox.id, full, heldUpTo) : full;
        summary.alreadyPresent += full.length - fresh.length;
        progress.skipped += full.length - fresh.length;
        if (fresh.length > 0) uidlsNotKept += (await storeBatch(store, mailbox.id, fresh, kind, kept, known, droppedFlags)).uidlsNotKept;
        for (const m of fresh) {
          summary.bytes += m.raw.length;
          progress.bytes += m.raw.length;
        }
        summary.messages += fresh.length;
        report.imported += fresh.length;
        progress.messages += fresh.length;
        options.onProgress?.({ ...progress });
      })();
      // A failed write is reported by the next await of it, not as an unhandled rejection.
      writing.catch(() => undefined);
    };

    const skip = async (id: { uid?: number; pop3Uidl?: string }): Promise<boolean> => {
      // Kept UIDs: what is at or below the last UID held is there. Otherwise a UIDL the mailbox
      // held before this run (a run never yields a message twice).
      const present =
        kept && id.uid !== undefined
          ? id.uid <= afterUid
          : id.pop3Uidl !== undefined && heldUpTo > 0 && (await store.findEntries(mailbox.id, 'pid', [id.pop3Uidl])).some((e) => e.uid <= heldUpTo);
      if (present) {
        summary.alreadyPresent++;
        progress.skipped++;
      }
      return present;
    };

    for await (const item of sm.messages(skip)) {
      if (item.kind === 'skipped') {
        summary.skipped.push({ origin: item.origin, reason: item.reason });
        progress.skipped++;
        continue;
      }
      item.raw = toCrlf(item.raw);
      // Kept UIDs go through restoreEntries; so do appended messages with a UIDL to keep; the rest
      // is plain APPEND (appendMany), which gives new pids.
      const kind: 'restore' | 'append' = (kept && item.uid !== undefined) || item.pop3Uidl !== undefined ? 'restore' : 'append';
      if (batch.length > 0 && (kind !== batchKind || batch.length >= batchMessages || batchBytes + item.raw.length > BATCH_BYTES)) await flush();
      batchKind = kind;
      batch.push(item);
      batchBytes += item.raw.length;
    }
    await flush();
    await flush();
    // The mailbox's view, read once now: for a large one that stores its snapshot (view-cache.ts),
    // so a running server's first SELECT of it reads one value instead of every row.
    if (report.imported > 0) await store.listViewEntries(mailbox.id);
    summary.mailboxes.push(report);
  }
  if (droppedFlags.size > 0) summary.warnings.push(`flags the store does not accept were left out: ${[...droppedFlags].slice(0, 10).join(' ')}`);
  if (uidlsNotKept > 0) summary.warnings.push(`${uidlsNotKept} message(s) got a new POP3 UIDL: their old one is used by another message of the account`);
  summary.warnings.push(...source.warnings);
  return summary;
}

async function openDestination(
  store: MailStore,
  accountId: AccountId,
  sm: SourceMailbox,
  name: string,
  known: Known,
  uidlFormat: string | null,
  summary: ImportSummary,
): Promise<{ mailbox: Mailbox; report: MailboxReport; afterUid: number }> {
  let dest = await store.getMailbox(accountId, name);
  if (dest !== null && !known.maxUid.has(dest.id)) known.maxUid.set(dest.id, await store.highestUid(dest.id));
  if (sm.uidValidity !== undefined) {
    if (dest !== null && dest.uidValidity === sm.uidValidity) {
      // The same identity: an earlier run, maybe interrupted. Go on after what is there. A
      // mailbox that never held a message may also have the source's UIDVALIDITY by chance
      // (both are creation times): restoring it over itself sets its UIDNEXT and HIGHESTMODSEQ
      // floors, which that earlier run would have set.
      if (dest.uidNext === 1 && (sm.highestModSeq !== undefined || (sm.uidNext ?? 1) > 1)) {
        dest = await store.restoreMailbox(accountId, {
          name,
          uidValidity: asUidValidity(sm.uidValidity),
          uidNext: asUid(sm.uidNext ?? 1),
          ...(sm.highestModSeq === undefined ? {} : { highestModSeq: asModSeq(sm.highestModSeq) }),
        });
      }
      return { mailbox: dest, report: { name, imported: 0, identity: 'kept' }, afterUid: known.maxUid.get(dest.id) ?? 0 };
    }
    if (dest !== null && (known.maxUid.get(dest.id) ?? 0) > 0 && uidlFormat !== null) {
      // Entries an earlier run imported under the source's previous UIDVALIDITY (the pid is the
      // UIDL that run derived from the UID): the source was recreated, so they are removed and the
      // folder is imported again from the start.
      const old = dest;
      const stale = (await store.listEntries(old.id)).filter((e) => e.pid === safeUidl(uidlFormat, e.uid, old.uidValidity));
      if (stale.length > 0) {
        await store.expunge(old.id, stale.map((e) => e.uid));
        known.maxUid.set(old.id, await store.highestUid(old.id));
        summary.warnings.push(
          `${name}: the source's UIDVALIDITY changed from ${dest.uidValidity} to ${sm.uidValidity} since the last run: the ${stale.length} message(s) imported then were removed and the folder is imported again; IMAP clients resync it`,
        );
        dest = await store.getMailbox(accountId, name);
      }
    }
    if (dest === null || dest.uidNext === 1) {
      try {
        const mailbox = await store.restoreMailbox(accountId, {
          name,
          uidValidity: asUidValidity(sm.uidValidity),
          uidNext: asUid(sm.uidNext ?? 1),
          ...(sm.highestModSeq === undefined ? {} : { highestModSeq: asModSeq(sm.highestModSeq) }),
          ...(sm.subscribed === undefined ? {} : { subscribed: sm.subscribed }),
        });
        known.maxUid.set(mailbox.id, 0);
        return { mailbox, report: { name, imported: 0, identity: 'kept' }, afterUid: 0 };
      } catch (err) {
        if (!(err instanceof StoreError && err.code === 'conflict')) throw err;
        summary.warnings.push(`${name}: UIDVALIDITY ${sm.uidValidity} not kept (${err.message}); messages get new UIDs`);
      }
    }
  }
  if (dest === null) {
    dest = await store.createMailbox(accountId, name);
    known.maxUid.set(dest.id, 0);
    if (sm.subscribed === true) await store.setSubscribed(accountId, name, true);
  }
  const held = (known.maxUid.get(dest.id) ?? 0) > 0 || dest.uidNext > 1;
  // A source without UIDs (plain Maildir, mbox) gets new UIDs anyway: nothing to say.
  const report: MailboxReport = held && sm.uidValidity !== undefined
    ? { name, imported: 0, identity: 'appended', note: 'the mailbox already held mail: the source UIDs could not be kept, messages were appended with new UIDs' }
    : { name, imported: 0, identity: 'new' };
  return { mailbox: dest, report, afterUid: 0 };
}

function safeUidl(format: string, uid: number, uidValidity: number): string | undefined {
  try {
    return formatPop3Uidl(format, { uid, uidValidity });
  } catch {
    return undefined;
  }
}

async function storeBatch(
  store: MailStore,
  mailboxId: MailboxId,
  batch: readonly SourceMessage[],
  kind: 'restore' | 'append',
  kept: boolean,
  known: Known,
  droppedFlags: Set<string>,
): Promise<{ uidlsNotKept: number }> {
  if (kind === 'append') {
    const inputs: AppendInput[] = batch.map((m) => ({ raw: m.raw, parsed: parseMessage(m.raw), flags: cleanFlags(m.flags, droppedFlags), internalDate: m.internalDate }));
    const results = await store.appendMany(mailboxId, inputs);
    const last = results[results.length - 1];
    if (last) known.maxUid.set(mailboxId, Math.max(known.maxUid.get(mailboxId) ?? 0, last.uid));
    return { uidlsNotKept: 0 };
  }
  let uidlsNotKept = 0;
  for (let attempt = 0; ; attempt++) {
    // Appended (not kept) messages take the UIDs after the highest the mailbox holds; a delivery
    // racing with the import makes restoreEntries refuse them, and the batch is retried above it.
    let next = kept ? 0 : Math.max(known.maxUid.get(mailboxId) ?? 0, ((await store.getMailboxById(mailboxId))?.uidNext ?? 1) - 1) + 1;
    const entries: EntryRestore[] = batch.map((m) => {
      const uid = kept && m.uid !== undefined ? m.uid : next++;
      const pid = m.pop3Uidl;
      return {
        uid: asUid(uid),
        raw: m.raw,
        parsed: parseMessage(m.raw),
        flags: cleanFlags(m.flags, droppedFlags),
        internalDate: m.internalDate,
        ...(pid === undefined ? {} : { pid }),
      };
    });
    try {
      await store.restoreEntries(mailboxId, entries);
    } catch (err) {
      if (!kept && attempt < 3 && err instanceof StoreError && err.code === 'invalid') continue;
      if (!(err instanceof StoreError && err.code === 'conflict')) throw err;
      // A UIDL another message of this import already took (two folders whose UIDLs collide):
      // the batch is written one entry at a time, and a clashing entry gets a new id.
      for (const e of entries) {
        try {
          await store.restoreEntries(mailboxId, [e]);
        } catch (err1) {
          if (!(err1 instanceof StoreError && err1.code === 'conflict' && e.pid !== undefined)) throw err1;
          const { pid: _, ...rest } = e;
          await store.restoreEntries(mailboxId, [rest]);
          uidlsNotKept++;
        }
      }
    }
    const last = entries[entries.length - 1];
    if (last) known.maxUid.set(mailboxId, Math.max(known.maxUid.get(mailboxId) ?? 0, last.uid));
    return { uidlsNotKept };
  }
}
