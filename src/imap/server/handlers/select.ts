/**
 * SELECT / EXAMINE (RFC 9051 §6.3.2-3), CLOSE, UNSELECT (RFC 3691), CHECK, EXPUNGE and
 * UID EXPUNGE (RFC 4315).
 */
import { canCreateKeywords } from '../keyword-limits.js';
import { asModSeq, type Uid } from '../../../lib/brand.js';
import { StoreError } from '../../../store/types.js';
import type { ImapValue } from '../../protocol/ast.js';
import type { QresyncParams, Request } from '../../protocol/parser.js';
import { formatSet } from '../../protocol/serialize.js';
import type { Done } from '../commands.js';
import { BadError, NoError } from '../errors.js';
import type { Session } from '../session.js';
import { flagAtoms, inUidSet, MailboxView } from '../view.js';
import { mailboxObjectId } from './mailboxes.js';

export async function select(s: Session, _tag: string, req: Request): Promise<Done> {
  if (req.name !== 'SELECT' && req.name !== 'EXAMINE') throw new Error('unreachable');
  // RFC 7162 §3.2.5: QRESYNC without ENABLE QRESYNC is a client error (checked before the
  // previous mailbox is closed: the command is refused as a whole).
  if (req.qresync !== null && !s.qresync) throw new BadError('QRESYNC is not enabled');
  if (s.state.kind === 'selected') {
    // RFC 9051 §6.3.2: the previous mailbox is closed first, even if this SELECT fails; [CLOSED]
    // marks the point (RFC 9051 §7.1).
    s.unselect();
    await s.status('*', 'OK', [{ atom: 'CLOSED' }], 'Previous mailbox closed');
  }
  const mb = await s.ctx.store.getMailbox(s.account().id, req.mailbox);
  if (mb === null) throw new NoError('NONEXISTENT', 'No such mailbox');
  const readOnly = req.name === 'EXAMINE';
  let view: MailboxView;
  try {
    view = await MailboxView.open(s.ctx.store, mb, readOnly, s.rev2 ? null : s.host.recent);
  } catch (err) {
    // Deleted by another session since getMailbox.
    if (err instanceof StoreError && err.code === 'not-found') throw new NoError('NONEXISTENT', 'No such mailbox');
    throw err;
  }
  const flagsResponse = view.flagsResponse();
  const flags = flagsResponse[1] as ImapValue[];
  await s.untagged(flagsResponse);
  // "\*": any keyword may be created (RFC 9051 §7.1), unless the mailbox has as many as it may
  // (keyword-limits.ts). Nothing is permanent in a read-only view.
  const permanent = readOnly ? [] : canCreateKeywords(view) ? [...flags, { atom: '\\*' }] : flags;
  await s.status('*', 'OK', [{ atom: 'PERMANENTFLAGS' }, permanent], readOnly ? 'Read-only mailbox' : 'Flags permitted');
  await s.untagged([view.exists, { atom: 'EXISTS' }]);
  if (!s.rev2) {
    // RFC 3501 §6.3.1: RECENT (IMAP4rev2 removed it, RFC 9051 §6.3.2).
    await s.untagged([view.recent.size, { atom: 'RECENT' }]);
    const firstUnseen = view.firstUnseen();
    if (firstUnseen > 0) await s.status('*', 'OK', [{ atom: 'UNSEEN' }, firstUnseen], 'First unseen');
  }
  // The view's mailbox state: that of the entries just announced, maybe newer than mb.
  await s.status('*', 'OK', [{ atom: 'UIDVALIDITY' }, view.mailbox.uidValidity], 'UIDs valid');
  await s.status('*', 'OK', [{ atom: 'UIDNEXT' }, view.mailbox.uidNext], 'Predicted next UID');
  // RFC 7162 §3.1.2.1: every mailbox has modseqs, so HIGHESTMODSEQ is in every SELECT/EXAMINE.
  await s.status('*', 'OK', [{ atom: 'HIGHESTMODSEQ' }, view.highestModSeq], 'Highest');
  await s.status('*', 'OK', [{ atom: 'MAILBOXID' }, [{ atom: mailboxObjectId(mb) }]], 'Mailbox id'); // RFC 8474 §4.1
  if (s.rev2) {
    // RFC 9051 §6.3.2: a LIST response with the mailbox name.
    const attrs: ImapValue[] = mb.specialUse ? [{ atom: mb.specialUse }] : [];
    await s.untagged([{ atom: 'LIST' }, attrs, '/', s.mailboxOut(mb.name)]);
  }
  if (req.condstore) s.condstore = true; // RFC 7162 §3.1.8: a CONDSTORE enabling command.
  if (req.qresync !== null && req.qresync.uidValidity === view.mailbox.uidValidity) await resync(s, view, req.qresync);
  s.select(view);
  return { code: [{ atom: readOnly ? 'READ-ONLY' : 'READ-WRITE' }], text: `${req.name} completed`, sync: false };
}

/**
 * RFC 7162 §3.2.5.1: what changed since the client's modseq, for a client whose UIDVALIDITY is
 * still right: a FETCH (UID FLAGS MODSEQ) for each message changed or added after it, then
 * VANISHED (EARLIER) with the UIDs expunged after it (only those in known-uids when given).
 */
async function resync(s: Session, view: MailboxView, q: QresyncParams): Promise<void> {
  const star = Math.max(view.mailbox.uidNext - 1, view.exists > 0 ? view.uidAt(view.exists - 1) : 0);
  const known = (uid: number): boolean => q.knownUids === null || inUidSet(q.knownUids, uid, star);
  await s.batched(async () => {
    for (let i = 0; i < view.exists; i++) {
      const modseq = view.modseqAt(i);
      if (modseq <= q.modseq) continue;
      const uid = view.uidAt(i);
      await s.untagged([i + 1, { atom: 'FETCH' }, [{ atom: 'UID' }, uid, { atom: 'FLAGS' }, flagAtoms(view.flagsOf(uid)), { atom: 'MODSEQ' }, [modseq]]]);
    }
  });
  // Only expunges matter here; the view already holds the current entries.
  const ch = await s.ctx.store.changesSince(view.mailbox.id, asModSeq(q.modseq), view.mailbox.uidNext);
  const gone: Uid[] = ch.expunged.filter((u) => known(u) && !view.has(u));
  if (gone.length > 0) await s.untagged([{ atom: 'VANISHED' }, [{ atom: 'EARLIER' }], { atom: formatSet(gone) }]);
}

/** RFC 9051 §6.4.2: expunges \Deleted messages silently (not in EXAMINE), then unselects. */
export async function close(s: Session): Promise<Done> {
  const view = s.view();
  if (!view.readOnly) {
    const uids = view.live(view.uids);
    if (uids.length > 0) await s.ctx.store.expunge(view.mailbox.id, uids, true);
  }
  s.unselect();
  return { sync: false };
}

/** RFC 3691: unselects without expunging. */
export async function unselect(s: Session): Promise<Done> {
  s.unselect();
  return { sync: false };
}

/** RFC 3501 §6.4.1 (removed in RFC 9051, kept for IMAP4rev1): nothing to do; updates follow. */
export async function check(): Promise<void> {}

export async function expunge(s: Session, _tag: string, req: Request): Promise<void> {
  if (req.name !== 'EXPUNGE') throw new Error('unreachable');
  const view = s.view();
  if (view.readOnly) throw new NoError('CANNOT', 'Mailbox is read-only');
  // Only messages this session knows; RFC 4315 §2.1: UID EXPUNGE only those of the set.
  const uids = view.live(req.uids === null ? view.uids : view.resolveUids(req.uids));
  if (uids.length > 0) await s.ctx.store.expunge(view.mailbox.id, uids, true);
  // The EXPUNGE responses come from the view's sync, before the tagged OK.
}
