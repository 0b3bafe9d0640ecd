/**
 * FETCH, STORE (RFC 9051 §6.4.5-6), COPY (RFC 4315 COPYUID), MOVE (RFC 6851), by sequence number
 * or UID. The FETCH values come from imap/fetch; this file decides which messages, sets \Seen,
 * and writes the responses.
 */
import type { Uid } from '../../../lib/brand.js';
import { UnknownCteError } from '../../fetch/binary.js';
import { fetchValues, needsSeenFlag } from '../../fetch/fetch.js';
import type { FetchAtt, ImapValue } from '../../protocol/ast.js';
import type { Request } from '../../protocol/parser.js';
import { formatSet } from '../../protocol/serialize.js';
import type { Done } from '../commands.js';
import { NoError } from '../errors.js';
import type { Session } from '../session.js';
import { flagAtoms, type MailboxView } from '../view.js';

function targets(view: MailboxView, req: { uid: boolean; set: Parameters<MailboxView['resolveUids']>[0] }): Uid[] {
  return req.uid ? view.resolveUids(req.set) : view.resolveSeqs(req.set);
}

export async function fetch(s: Session, _tag: string, req: Request): Promise<void> {
  if (req.name !== 'FETCH') throw new Error('unreachable');
  const view = s.view();
  const store = s.ctx.store;
  const uids = targets(view, req);
  let atts: FetchAtt[] = req.atts;
  // RFC 9051 §6.4.8: UID FETCH responses always include UID.
  if (req.uid && !atts.some((a) => a.kind === 'UID')) atts = [{ kind: 'UID' }, ...atts];
  const seenNow = new Set<Uid>();
  if (needsSeenFlag(atts) && !view.readOnly) {
    // RFC 9051 §6.4.5: BODY[...] (not PEEK) sets \Seen; set before the values are read so FLAGS
    // in this response shows it.
    const unseen = view.live(uids).filter((u) => !view.entries.get(u)!.flags.includes('\\Seen'));
    if (unseen.length > 0) {
      const res = await store.setFlags(view.mailbox.id, unseen, 'add', ['\\Seen']);
      view.remember(res.updated);
      for (const e of res.updated) seenNow.add(e.uid);
    }
  }
  const hasFlags = atts.some((a) => a.kind === 'FLAGS');
  const opts = { rev2: s.rev2, utf8Accept: s.utf8 || s.rev2 };
  for (const uid of uids) {
    const entry = view.entries.get(uid);
    if (entry === undefined) continue;
    let values: ImapValue[];
    try {
      values = await fetchValues(atts, { entry, store, recent: view.isRecent(uid) }, opts);
    } catch (err) {
      if (err instanceof UnknownCteError) throw new NoError('UNKNOWN-CTE', 'Cannot decode the content transfer encoding');
      // Expunged meanwhile (held, or not yet known): RFC 9051 §7.5.1 lets the server omit it.
      if (view.held.has(uid) || (await store.getEntries(view.mailbox.id, [uid])).length === 0) continue;
      throw err;
    }
    // RFC 9051 §6.4.5: a FLAGS change caused by the FETCH is reported in it.
    if (seenNow.has(uid) && !hasFlags) values.push({ atom: 'FLAGS' }, flagAtoms(view.flagsOf(uid)));
    await s.untagged([view.seqOf(uid), { atom: 'FETCH' }, values]);
  }
}

export async function store(s: Session, _tag: string, req: Request): Promise<void> {
  if (req.name !== 'STORE') throw new Error('unreachable');
  const view = s.view();
  if (view.readOnly) throw new NoError('CANNOT', 'Mailbox is read-only');
  const uids = view.live(targets(view, req));
  if (uids.length === 0) return;
  const res = await s.ctx.store.setFlags(view.mailbox.id, uids, req.mode, req.flags);
  view.remember(res.updated);
  const flagsUpdate = view.keywordUpdate(res.updated);
  if (flagsUpdate !== null) await s.untagged(flagsUpdate);
  if (req.silent) return;
  // RFC 9051 §6.4.6: an untagged FETCH with the new flags of each message (UID too for UID STORE).
  for (const uid of uids) {
    const e = view.entries.get(uid);
    if (e === undefined) continue;
    const items: ImapValue[] = req.uid ? [{ atom: 'UID' }, uid] : [];
    items.push({ atom: 'FLAGS' }, flagAtoms(view.flagsOf(uid)));
    await s.untagged([view.seqOf(uid), { atom: 'FETCH' }, items]);
  }
}

export async function copyOrMove(s: Session, _tag: string, req: Request): Promise<Done | void> {
  if (req.name !== 'COPY' && req.name !== 'MOVE') throw new Error('unreachable');
  const view = s.view();
  const move = req.name === 'MOVE';
  if (move && view.readOnly) throw new NoError('CANNOT', 'Mailbox is read-only');
  const dest = await s.ctx.store.getMailbox(s.account().id, req.mailbox);
  // RFC 9051 §6.4.7: TRYCREATE when the destination does not exist.
  if (dest === null) throw new NoError('TRYCREATE', 'No such mailbox');
  const uids = view.live(targets(view, req));
  if (uids.length === 0) return;
  const res = move ? await s.ctx.store.move(view.mailbox.id, uids, dest.id) : await s.ctx.store.copy(view.mailbox.id, uids, dest.id);
  if (res.pairs.length === 0) return;
  // RFC 4315 §3 COPYUID: source and destination UIDs in corresponding order.
  const code: ImapValue[] = [
    { atom: 'COPYUID' },
    res.uidValidity,
    { atom: formatSet(res.pairs.map((p) => p[0])) },
    { atom: formatSet(res.pairs.map((p) => p[1])) },
  ];
  if (!move) return { code };
  // RFC 6851 §4.3: COPYUID in an untagged OK before the EXPUNGE responses (sent by the sync).
  await s.status('*', 'OK', code, 'Moved');
}
