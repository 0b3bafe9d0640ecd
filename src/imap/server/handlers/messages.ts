/**
 * FETCH, STORE (RFC 9051 §6.4.5-6), COPY (RFC 4315 COPYUID), MOVE (RFC 6851), by sequence number
 * or UID. The FETCH values come from imap/fetch; this file decides which messages, sets \Seen,
 * and writes the responses.
 */
import { asModSeq, type Uid } from '../../../lib/brand.js';
import { UnknownCteError } from '../../fetch/binary.js';
import { fetchValues, needsSeenFlag } from '../../fetch/fetch.js';
import type { FetchAtt, ImapValue } from '../../protocol/ast.js';
import type { Request } from '../../protocol/parser.js';
import { formatSet } from '../../protocol/serialize.js';
import type { Done } from '../commands.js';
import { BadError, NoError } from '../errors.js';
import type { Session } from '../session.js';
import { flagAtoms, inUidSet, type MailboxView } from '../view.js';

function targets(view: MailboxView, req: { uid: boolean; set: Parameters<MailboxView['resolveUids']>[0] }): Uid[] {
  return req.uid ? view.resolveUids(req.set) : view.resolveSeqs(req.set);
}

export async function fetch(s: Session, _tag: string, req: Request): Promise<void> {
  if (req.name !== 'FETCH') throw new Error('unreachable');
  const view = s.view();
  const store = s.ctx.store;
  if (req.vanished) {
    // RFC 7162 §3.2.6: VANISHED only in UID FETCH, with CHANGEDSINCE, once QRESYNC is enabled.
    if (!s.qresync) throw new BadError('QRESYNC is not enabled');
    if (!req.uid || req.changedSince === null) throw new BadError('VANISHED needs UID FETCH and CHANGEDSINCE');
  }
  let uids = targets(view, req);
  let atts: FetchAtt[] = req.atts;
  // RFC 7162 §3.1: FETCH MODSEQ and CHANGEDSINCE are CONDSTORE enabling commands.
  if (req.changedSince !== null || atts.some((a) => a.kind === 'MODSEQ')) await s.enableCondstore();
  // RFC 7162 §3.1.4.1: CHANGEDSINCE keeps only messages changed after it.
  const since = req.changedSince;
  if (since !== null) uids = uids.filter((u) => view.modseqOf(u) > since);
  if (since !== null && req.vanished) {
    // RFC 7162 §3.2.6: first the UIDs in the set expunged after CHANGEDSINCE.
    const ch = await store.changesSince(view.mailbox.id, asModSeq(since), view.mailbox.uidNext);
    const star = Math.max(view.mailbox.uidNext - 1, view.uids[view.uids.length - 1] ?? 0);
    const gone = ch.expunged.filter((u) => !view.has(u) && inUidSet(req.set, u, star));
    if (gone.length > 0) await s.untagged([{ atom: 'VANISHED' }, [{ atom: 'EARLIER' }], { atom: formatSet(gone) }]);
  }
  // RFC 7162 §3.1.4.1: once CONDSTORE is enabled, FETCH responses carry MODSEQ.
  if (s.condstore && !atts.some((a) => a.kind === 'MODSEQ')) atts = [...atts, { kind: 'MODSEQ' }];
  // RFC 9051 §6.4.8: UID FETCH responses always include UID.
  if (req.uid && !atts.some((a) => a.kind === 'UID')) atts = [{ kind: 'UID' }, ...atts];
  const seenNow = new Set<Uid>();
  if (needsSeenFlag(atts) && !view.readOnly) {
    // RFC 9051 §6.4.5: BODY[...] (not PEEK) sets \Seen; set before the values are read so FLAGS
    // in this response shows it.
    const unseen = view.live(uids).filter((u) => !view.knownFlags(u).includes('\\Seen'));
    if (unseen.length > 0) {
      const res = await store.setFlags(view.mailbox.id, unseen, 'add', ['\\Seen']);
      view.stored(res);
      for (const e of res.updated) seenNow.add(e.uid);
    }
  }
  const hasFlags = atts.some((a) => a.kind === 'FLAGS');
  const opts = { rev2: s.rev2, utf8Accept: s.utf8 || s.rev2 };
  await s.batched(async () => {
    if (atts.every((a) => a.kind === 'UID' || a.kind === 'FLAGS' || a.kind === 'MODSEQ')) {
      // What the view holds answers these: no store read (FETCH 1:* (UID FLAGS) on a large
      // mailbox is a resynchronising client's first command).
      for (const uid of uids) {
        const seq = view.seqOf(uid);
        if (seq === 0) continue;
        const values: ImapValue[] = [];
        for (const a of atts) {
          if (a.kind === 'UID') values.push({ atom: 'UID' }, uid);
          else if (a.kind === 'FLAGS') values.push({ atom: 'FLAGS' }, flagAtoms(view.flagsOf(uid)));
          else values.push({ atom: 'MODSEQ' }, [view.modseqAt(seq - 1)]); // RFC 7162 §3.1.4.1
        }
        await s.untagged([seq, { atom: 'FETCH' }, values]);
      }
      return;
    }
    // Entries are read a chunk at a time and each response written before the next: the reply
    // is streamed under the socket's backpressure, never held whole.
    for await (const entry of view.entriesOf(store, uids)) {
      const uid = entry.uid;
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
  });
}

export async function store(s: Session, _tag: string, req: Request): Promise<Done | void> {
  if (req.name !== 'STORE') throw new Error('unreachable');
  const view = s.view();
  if (view.readOnly) throw new NoError('CANNOT', 'Mailbox is read-only');
  if (req.unchangedSince !== null) await s.enableCondstore(); // RFC 7162 §3.1: an enabling command.
  const uids = view.live(targets(view, req));
  if (uids.length === 0) return;
  const res = await s.ctx.store.setFlags(view.mailbox.id, uids, req.mode, req.flags, req.unchangedSince === null ? undefined : asModSeq(req.unchangedSince));
  view.stored(res);
  const flagsUpdate = view.keywordUpdate(res.updated);
  if (flagsUpdate !== null) await s.untagged(flagsUpdate);
  const refused = new Set<Uid>(res.modified);
  const changed = new Set<Uid>(res.updated.map((e) => e.uid));
  // RFC 9051 §6.4.6: an untagged FETCH with the new flags of each message (UID too for UID STORE).
  // RFC 7162 §3.1.3: none for a message that failed UNCHANGEDSINCE; with CONDSTORE each carries
  // MODSEQ, and .SILENT still reports the new MODSEQ of the messages it changed.
  await s.batched(async () => {
    for (const uid of uids) {
      if (refused.has(uid)) continue;
      if (req.silent && !(s.condstore && changed.has(uid))) continue;
      const seq = view.seqOf(uid);
      if (seq === 0) continue;
      const items: ImapValue[] = req.uid || s.condstore ? [{ atom: 'UID' }, uid] : [];
      if (!req.silent) items.push({ atom: 'FLAGS' }, flagAtoms(view.flagsOf(uid)));
      if (s.condstore) items.push({ atom: 'MODSEQ' }, [view.modseqAt(seq - 1)]);
      await s.untagged([seq, { atom: 'FETCH' }, items]);
    }
  });
  if (refused.size === 0) return;
  // RFC 7162 §3.1.3: MODIFIED lists the messages not stored, by UID for UID STORE.
  const numbers = [...refused].map((u) => (req.uid ? u : view.seqOf(u))).sort((a, b) => a - b);
  return { code: [{ atom: 'MODIFIED' }, { atom: formatSet(numbers) }], text: 'Conditional STORE failed' };
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
  if (dest.id === view.mailbox.id) s.markOwnNew(res.pairs.map((p) => p[1]));
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
