/**
 * NOTIFY SET / NOTIFY NONE (RFC 5465 §3.1). The registration and what it sends live in
 * ../notify.ts; this checks the request, answers the STATUS indicator and installs it.
 */
import type { Request } from '../../protocol/parser.js';
import type { Done } from '../commands.js';
import { NoError } from '../errors.js';
import { MAX_STATUS_MAILBOXES, Notifier, SUPPORTED_EVENTS } from '../notify.js';
import type { Session } from '../session.js';
import { statusValues } from './mailboxes.js';

export async function notify(s: Session, _tag: string, req: Request): Promise<Done> {
  if (req.name !== 'NOTIFY') throw new Error('unreachable');
  if (req.groups === null) {
    s.notifier = null;
    return {};
  }
  // RFC 5465 §3.1: an unsupported event is NO (not BAD) with BADEVENT listing what is supported;
  // the registration in force is kept.
  const unsupported = req.groups.some((g) => g.unknown.length > 0 || g.events.some((e) => !SUPPORTED_EVENTS.includes(e)));
  if (unsupported) throw new NoError([{ atom: 'BADEVENT' }, SUPPORTED_EVENTS.map((e) => ({ atom: e }))], 'Unsupported event');
  const account = s.account();
  const [boxes, subs] = await Promise.all([s.ctx.store.listMailboxes(account.id), s.ctx.store.listSubscriptions(account.id)]);
  const n = new Notifier(req.groups, boxes, subs);
  const selectedId = s.state.kind === 'selected' ? s.state.view.mailbox.id : null;
  if (req.status) {
    // RFC 5465 §3.1: with STATUS, a STATUS response for each watched non-selected mailbox before
    // the tagged OK; a request for too many is "too expensive".
    const wanted = n.initialStatus(selectedId);
    if (wanted.length > MAX_STATUS_MAILBOXES) throw new NoError('NOTIFICATIONOVERFLOW', 'Too many mailboxes to report');
    for (const w of wanted) await s.untagged(await statusValues(s, w.mb, w.items, false));
  }
  // RFC 5465 §3.1: NOTIFY SET implies a NOOP: the session sends pending changes of the selected
  // mailbox after this returns (session.ts).
  s.notifier = n;
  return {};
}
