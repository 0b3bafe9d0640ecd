/**
 * SEARCH and UID SEARCH (RFC 9051 §6.4.4), with ESEARCH results (RFC 4731; always under
 * IMAP4rev2, RFC 9051 §7.3.4) and SAVE for "$" (RFC 5182); SORT and THREAD (RFC 5256).
 * Evaluation, ordering and threading are imap/search's.
 */
import type { Uid } from '../../../lib/brand.js';
import { BadCharsetError, checkSearchCharset, searchPositions } from '../../search/search.js';
import { sortMessages, storeSortView } from '../../search/sort.js';
import { threadForest, threadResponse } from '../../search/thread.js';
import type { ImapValue, SearchKey } from '../../protocol/ast.js';
import type { Request, SearchReturn } from '../../protocol/parser.js';
import { formatSet, untaggedNested, untaggedNumbers } from '../../protocol/serialize.js';
import type { Done } from '../commands.js';
import { NoError } from '../errors.js';
import type { Session } from '../session.js';
import type { MailboxView } from '../view.js';

function checkCharset(charset: string | null): void {
  try {
    checkSearchCharset(charset ?? undefined);
  } catch (err) {
    // RFC 9051 §6.4.4: NO [BADCHARSET (supported charsets)].
    if (err instanceof BadCharsetError) throw new NoError([{ atom: 'BADCHARSET' }, [{ atom: 'US-ASCII' }, { atom: 'UTF-8' }]], 'Unsupported charset');
    throw err;
  }
}

/** What a search found: the 0-based indexes (sequence order) of the messages the key matches,
 * and whether some message of the view was found expunged by another session meanwhile. */
interface Matches {
  indexes: Int32Array;
  gone: boolean;
}

/** RFC 3501 §7.4.1, RFC 2180 §4.1: a search answers from this session's view, a message
 * expunged by another session (not yet announced here) left out rather than a NO; the tagged OK
 * then carries EXPUNGEISSUED (RFC 5530 §3), as Dovecot does, so the client may NOOP. */
function completed(m: Matches): Done | void {
  if (m.gone) return { code: [{ atom: 'EXPUNGEISSUED' }] };
}

async function matching(s: Session, view: MailboxView, key: SearchKey): Promise<Matches> {
  let gone = false;
  const indexes = await searchPositions(key, {
    count: view.uids.length,
    uidAt: (i) => view.uids[i]!,
    flagsAt: (i) => view.flagsAt(i),
    modseqAt: (i) => view.modseqAt(i),
    entries: () => view.allEntries(s.ctx.store),
    store: s.ctx.store,
    mailboxId: view.mailbox.id,
    saved: new Set(view.saved),
    recent: view.recent,
    onGone: () => {
      gone = true;
    },
  });
  // The text index answers for the messages still stored: one expunged by another session
  // simply does not come back, unnoticed by onGone. Checked only then, and only when some
  // message of the view did not match.
  if (!gone && indexes.length < view.uids.length && usesTextIndex(key)) gone = await view.expungedByOthers(s.ctx.store);
  return { indexes, gone };
}

/** Whether evaluating the key reads the store's text index (SUBJECT, BODY, TEXT, HEADER, FROM…). */
function usesTextIndex(key: SearchKey): boolean {
  switch (key.kind) {
    case 'header':
    case 'address':
    case 'subject':
    case 'body':
    case 'text':
      return true;
    case 'not':
      return usesTextIndex(key.key);
    case 'or':
      return usesTextIndex(key.a) || usesTextIndex(key.b);
    case 'and':
      return key.keys.some(usesTextIndex);
    default:
      return false;
  }
}

/** SORT and UID SORT (RFC 5256 §3, RFC 5957 DISPLAYFROM/DISPLAYTO). */
export async function sort(s: Session, tag: string, req: Request): Promise<Done | void> {
  if (req.name !== 'SORT') throw new Error('unreachable');
  const view = s.view();
  checkCharset(req.charset);
  const found = await matching(s, view, req.key);
  const indexes = found.indexes;
  const sorted = await sortMessages(indexes, req.criteria, storeSortView(s.ctx.store, view.mailbox.id, view.uids));
  const numbers = new Array<number>(sorted.length);
  const uids = view.uids;
  for (let q = 0; q < sorted.length; q++) numbers[q] = req.uid ? uids[sorted[q]!]! : sorted[q]! + 1;
  if (req.returns === null) {
    await s.write(untaggedNumbers('SORT', numbers));
    return completed(found);
  }
  // RFC 5267 §3.2 ESORT: MIN and MAX are the first and last in sort order; ALL keeps that order.
  const returns = req.returns.length === 0 ? ['ALL'] : req.returns;
  const out: ImapValue[] = [{ atom: 'ESEARCH' }, [{ atom: 'TAG' }, tag]];
  if (req.uid) out.push({ atom: 'UID' });
  if (returns.includes('MIN') && numbers.length > 0) out.push({ atom: 'MIN' }, numbers[0]!);
  if (returns.includes('MAX') && numbers.length > 0) out.push({ atom: 'MAX' }, numbers[numbers.length - 1]!);
  if (returns.includes('ALL') && numbers.length > 0) out.push({ atom: 'ALL' }, { atom: formatSet(numbers) });
  if (returns.includes('COUNT')) out.push({ atom: 'COUNT' }, numbers.length);
  await s.untagged(out);
  return completed(found);
}

/** THREAD and UID THREAD (RFC 5256 §4). */
export async function thread(s: Session, _tag: string, req: Request): Promise<Done | void> {
  if (req.name !== 'THREAD') throw new Error('unreachable');
  const view = s.view();
  checkCharset(req.charset);
  const found = await matching(s, view, req.key);
  const threads = await threadForest(found.indexes, req.algorithm, storeSortView(s.ctx.store, view.mailbox.id, view.uids));
  const uids = view.uids;
  await s.write(untaggedNested('THREAD', threadResponse(threads, req.uid ? (i) => uids[i]! : (i) => i + 1)));
  return completed(found);
}

export async function search(s: Session, tag: string, req: Request): Promise<Done | void> {
  if (req.name !== 'SEARCH') throw new Error('unreachable');
  const view = s.view();
  checkCharset(req.charset);
  const found = await matching(s, view, req.key);
  const indexes = found.indexes;
  const uids = new Array<Uid>(indexes.length);
  const seqs = new Array<number>(indexes.length);
  for (let q = 0; q < indexes.length; q++) {
    uids[q] = view.uids[indexes[q]!]!;
    seqs[q] = indexes[q]! + 1;
  }
  const numbers: number[] = req.uid ? uids : seqs;
  // RFC 7162 §3.1.5: SEARCH MODSEQ is a CONDSTORE enabling command, and its results end with the
  // highest modseq of the messages found.
  const withModseq = usesModseq(req.key);
  if (withModseq) await s.enableCondstore();
  const modseqOf = (u: Uid): number => view.modseqOf(u);
  let highest = 0;
  if (withModseq) for (const u of uids) highest = Math.max(highest, modseqOf(u));
  let returns: SearchReturn[] | null = req.returns;
  if (returns === null && !s.rev2) {
    const out: ImapValue[] = [{ atom: 'SEARCH' }, ...numbers];
    if (withModseq && numbers.length > 0) out.push([{ atom: 'MODSEQ' }, highest]);
    await s.untagged(out);
    return completed(found);
  }
  // RFC 4731 §3.1: RETURN () means ALL; so does a plain SEARCH under IMAP4rev2.
  if (returns === null || returns.length === 0) returns = ['ALL'];
  const has = (r: SearchReturn): boolean => returns.includes(r);
  if (has('SAVE')) {
    // RFC 5182 §2.4: with MIN and/or MAX but neither ALL nor COUNT, only those are saved.
    if ((has('MIN') || has('MAX')) && !has('ALL') && !has('COUNT') && uids.length > 0) {
      const picked: Uid[] = [];
      if (has('MIN')) picked.push(uids[0]!);
      if (has('MAX') && (!has('MIN') || uids.length > 1)) picked.push(uids[uids.length - 1]!);
      view.saved = picked;
    } else {
      view.saved = uids;
    }
    // RFC 5182 §2.1: SAVE alone returns no ESEARCH response.
    if (returns.length === 1) return completed(found);
  }
  const out: ImapValue[] = [{ atom: 'ESEARCH' }, [{ atom: 'TAG' }, tag]];
  if (req.uid) out.push({ atom: 'UID' });
  const sorted = [...numbers].sort((a, b) => a - b);
  if (has('MIN') && sorted.length > 0) out.push({ atom: 'MIN' }, sorted[0]!);
  if (has('MAX') && sorted.length > 0) out.push({ atom: 'MAX' }, sorted[sorted.length - 1]!);
  if (has('ALL') && sorted.length > 0) out.push({ atom: 'ALL' }, { atom: formatSet(sorted) });
  if (has('COUNT')) out.push({ atom: 'COUNT' }, sorted.length);
  if (withModseq && sorted.length > 0) {
    // RFC 7162 §3.1.5 with RFC 4731: with only MIN and/or MAX, MODSEQ is the highest modseq of
    // the messages returned, not of every match.
    let reported = highest;
    if (!has('ALL') && !has('COUNT')) {
      const uidOf = (n: number): Uid => (req.uid ? (n as Uid) : view.uids[n - 1]!);
      reported = 0;
      if (has('MIN')) reported = Math.max(reported, modseqOf(uidOf(sorted[0]!)));
      if (has('MAX')) reported = Math.max(reported, modseqOf(uidOf(sorted[sorted.length - 1]!)));
    }
    out.push({ atom: 'MODSEQ' }, reported);
  }
  await s.untagged(out);
  return completed(found);
}

function usesModseq(key: SearchKey): boolean {
  switch (key.kind) {
    case 'modseq':
      return true;
    case 'not':
      return usesModseq(key.key);
    case 'or':
      return usesModseq(key.a) || usesModseq(key.b);
    case 'and':
      return key.keys.some(usesModseq);
    default:
      return false;
  }
}
