/**
 * Mailbox commands: CREATE (RFC 6154 CREATE-SPECIAL-USE), DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE,
 * LIST (RFC 9051 §6.3.9, RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS, RFC 6154 SPECIAL-USE),
 * LSUB (RFC 3501 §6.3.9), NAMESPACE (RFC 2342), STATUS (RFC 9051 §6.3.11, RFC 8438 SIZE).
 * Names are UTF-8 inside; the separator is "/".
 */
import type { Mailbox, SpecialUse } from '../../../store/types.js';
import type { ImapValue } from '../../protocol/ast.js';
import { HIERARCHY_SEPARATOR, mailboxNameProblem, type ListRequest, type Request, type StatusItem } from '../../protocol/parser.js';
import { NoError } from '../errors.js';
import { listMatcher } from '../list-match.js';
import type { Done } from '../commands.js';
import type { Session } from '../session.js';

const SPECIAL_USES: readonly SpecialUse[] = ['\\Drafts', '\\Sent', '\\Trash', '\\Junk', '\\Archive', '\\All', '\\Flagged'];

function checkName(name: string): void {
  const problem = mailboxNameProblem(name);
  if (problem !== null) throw new NoError('CANNOT', problem);
}

async function mustExist(s: Session, name: string): Promise<Mailbox> {
  const mb = await s.ctx.store.getMailbox(s.account().id, name);
  if (mb === null) throw new NoError('NONEXISTENT', 'No such mailbox');
  return mb;
}

export async function create(s: Session, _tag: string, req: Request): Promise<Done> {
  if (req.name !== 'CREATE') throw new Error('unreachable');
  // RFC 9051 §6.3.4: a trailing separator declares the intent to create children; drop it.
  const name = req.mailbox.endsWith(HIERARCHY_SEPARATOR) ? req.mailbox.slice(0, -1) : req.mailbox;
  if (name === 'INBOX') throw new NoError('ALREADYEXISTS', 'INBOX always exists');
  checkName(name);
  let specialUse: SpecialUse | null = null;
  for (const use of req.specialUse) {
    const canon = SPECIAL_USES.find((u) => u.toLowerCase() === use.toLowerCase());
    // RFC 6154 §3: USEATTR when a special-use attribute is not supported (one per mailbox here).
    if (canon === undefined || specialUse !== null) throw new NoError('USEATTR', 'Unsupported special-use attribute');
    specialUse = canon;
  }
  const mb = await s.ownChange(() => s.ctx.store.createMailbox(s.account().id, name, specialUse));
  return { code: [{ atom: 'MAILBOXID' }, [{ atom: mailboxObjectId(mb) }]] };
}

/** RFC 8474 §4: MAILBOXID, kept across RENAME and never reused: from the mailbox row id, which
 * the store never reuses (AUTOINCREMENT). */
export function mailboxObjectId(mb: Mailbox): string {
  return `F${mb.id}`;
}

export async function del(s: Session, _tag: string, req: Request): Promise<void> {
  if (req.name !== 'DELETE') throw new Error('unreachable');
  // RFC 9051 §6.3.5: deleting INBOX is an error.
  if (req.mailbox === 'INBOX') throw new NoError('CANNOT', 'INBOX cannot be deleted');
  const mb = await mustExist(s, req.mailbox);
  if (s.state.kind === 'selected' && s.state.view.mailbox.id === mb.id) {
    s.unselect();
    await s.status('*', 'OK', [{ atom: 'CLOSED' }], 'Mailbox deleted');
  }
  await s.ownChange(() => s.ctx.store.deleteMailbox(s.account().id, mb.name));
}

export async function rename(s: Session, _tag: string, req: Request): Promise<void> {
  if (req.name !== 'RENAME') throw new Error('unreachable');
  checkName(req.to);
  await mustExist(s, req.from);
  if (req.to === 'INBOX') throw new NoError('ALREADYEXISTS', 'INBOX always exists');
  if (req.from === req.to) throw new NoError('ALREADYEXISTS', 'Mailbox already has that name');
  // RFC 9051 §6.3.6: renaming INBOX moves its messages to the new name; INBOX stays (store).
  await s.ownChange(() => s.ctx.store.renameMailbox(s.account().id, req.from, req.to));
}

export async function subscribe(s: Session, _tag: string, req: Request): Promise<void> {
  if (req.name !== 'SUBSCRIBE' && req.name !== 'UNSUBSCRIBE') throw new Error('unreachable');
  if (req.name === 'SUBSCRIBE') {
    checkName(req.mailbox);
    await mustExist(s, req.mailbox);
  }
  await s.ownChange(() => s.ctx.store.setSubscribed(s.account().id, req.mailbox, req.name === 'SUBSCRIBE'));
}

export async function namespace(s: Session): Promise<void> {
  // RFC 2342: one personal namespace, no prefix, "/" separator; no other users' or shared ones.
  await s.untagged([{ atom: 'NAMESPACE' }, [['', HIERARCHY_SEPARATOR]], null, null]);
}

function parentsOf(name: string): string[] {
  const parts = name.split(HIERARCHY_SEPARATOR);
  const out: string[] = [];
  for (let i = 1; i < parts.length; i++) out.push(parts.slice(0, i).join(HIERARCHY_SEPARATOR));
  return out;
}

function byImapOrder(a: string, b: string): number {
  if (a === 'INBOX') return -1;
  if (b === 'INBOX') return 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

export async function list(s: Session, _tag: string, req: Request): Promise<void> {
  if (req.name !== 'LIST') throw new Error('unreachable');
  if (!req.extended && req.patterns.length === 1 && req.patterns[0] === '') {
    // RFC 9051 §6.3.9: an empty pattern asks for the hierarchy separator and root.
    await s.untagged([{ atom: 'LIST' }, [{ atom: '\\Noselect' }], HIERARCHY_SEPARATOR, '']);
    return;
  }
  await listMailboxes(s, req);
}

async function listMailboxes(s: Session, req: ListRequest): Promise<void> {
  const account = s.account();
  const mailboxes = await s.ctx.store.listMailboxes(account.id);
  const byName = new Map(mailboxes.map((m) => [m.name, m]));
  const wantSubs = req.selectSubscribed || req.returnSubscribed;
  const subscribed = new Set(wantSubs ? await s.ctx.store.listSubscriptions(account.id) : []);
  const matchers = req.patterns.filter((p) => p !== '').map((p) => listMatcher(req.reference, p));
  const matches = (name: string): boolean => matchers.some((m) => m(name));

  // Every name that may be listed: existing mailboxes, their missing parents, and (when selecting
  // by subscription) subscribed names and their parents.
  const names = new Set<string>();
  for (const m of mailboxes) {
    names.add(m.name);
    for (const p of parentsOf(m.name)) names.add(p);
  }
  if (req.selectSubscribed) {
    for (const n of subscribed) {
      names.add(n);
      for (const p of parentsOf(n)) names.add(p);
    }
  }
  const hasChild = (name: string, pred: (child: string) => boolean): boolean => {
    const prefix = name + HIERARCHY_SEPARATOR;
    for (const n of names) if (n.startsWith(prefix) && pred(n)) return true;
    return false;
  };

  for (const name of [...names].sort(byImapOrder)) {
    if (!matches(name)) continue;
    const mb = byName.get(name);
    const exists = mb !== undefined;
    let childInfo: string | null = null;
    if (req.selectSubscribed) {
      if (!subscribed.has(name)) {
        // RFC 5258 §3.5: with RECURSIVEMATCH a parent of matching subscribed names is listed with
        // CHILDINFO; without it, it is not listed.
        // RFC 5258 §3.5: only for children that the patterns do not list themselves.
        if (!req.recursiveMatch || !hasChild(name, (c) => subscribed.has(c) && !matches(c))) continue;
        childInfo = 'SUBSCRIBED';
      }
    }
    if (req.selectSpecialUse && (mb?.specialUse ?? null) === null) {
      if (!req.recursiveMatch || !hasChild(name, (c) => (byName.get(c)?.specialUse ?? null) !== null && !matches(c))) continue;
      childInfo = 'SPECIAL-USE';
    }
    if (!exists && !req.selectSubscribed && !hasChild(name, (c) => byName.has(c))) continue;
    const attrs: ImapValue[] = [];
    if (!exists) {
      // RFC 5258 §3: \NonExistent (implies \Noselect); RFC 3501: a parent without a mailbox is
      // \Noselect.
      attrs.push({ atom: req.extended ? '\\NonExistent' : '\\Noselect' });
    }
    // RFC 3348 / RFC 9051 §7.3.1 CHILDREN.
    attrs.push({ atom: hasChild(name, (c) => byName.has(c) || (req.selectSubscribed && subscribed.has(c))) ? '\\HasChildren' : '\\HasNoChildren' });
    if (wantSubs && subscribed.has(name)) attrs.push({ atom: '\\Subscribed' });
    // RFC 6154 §2: special-use attributes (servers may return them without being asked).
    if (mb?.specialUse) attrs.push({ atom: mb.specialUse });
    const line: ImapValue[] = [{ atom: 'LIST' }, attrs, HIERARCHY_SEPARATOR, s.mailboxOut(name)];
    if (childInfo !== null) line.push(['CHILDINFO', [childInfo]]); // RFC 5258 §4 mbox-list-extended
    await s.untagged(line);
    if (req.returnStatus !== null && mb !== undefined) {
      // RFC 5819 §2: a STATUS response follows the LIST response of each selectable mailbox.
      await s.untagged(await statusValues(s, mb, req.returnStatus));
    }
  }
}

export async function lsub(s: Session, _tag: string, req: Request): Promise<void> {
  if (req.name !== 'LSUB') throw new Error('unreachable');
  const account = s.account();
  const subs = await s.ctx.store.listSubscriptions(account.id);
  const existing = new Set((await s.ctx.store.listMailboxes(account.id)).map((m) => m.name));
  const matches = listMatcher(req.reference, req.pattern);
  const out = new Map<string, boolean>();
  for (const name of subs) {
    if (matches(name)) out.set(name, true);
    // RFC 3501 §6.3.9: with "%", a parent of a subscribed name that is not itself subscribed is
    // listed with \Noselect.
    for (const p of parentsOf(name)) if (!subs.includes(p) && matches(p)) out.set(p, false);
  }
  for (const [name, isSub] of [...out].sort((a, b) => byImapOrder(a[0], b[0]))) {
    const attrs: ImapValue[] = !isSub || !existing.has(name) ? [{ atom: '\\Noselect' }] : [];
    await s.untagged([{ atom: 'LSUB' }, attrs, HIERARCHY_SEPARATOR, s.mailboxOut(name)]);
  }
}

/** The STATUS response of a mailbox. `enabling`: asking for HIGHESTMODSEQ turns CONDSTORE on (a
 * STATUS command does, RFC 7162 §3.1; a NOTIFY notification does not). */
export async function statusValues(s: Session, mb: Mailbox, items: readonly StatusItem[], enabling = true): Promise<ImapValue[]> {
  const needCounts = items.some((i) => i === 'MESSAGES' || i === 'UNSEEN' || i === 'DELETED' || i === 'SIZE');
  const counts = needCounts ? await s.ctx.store.mailboxCounts(mb.id) : null;
  const values: ImapValue[] = [];
  for (const item of items) {
    let v: ImapValue;
    switch (item) {
      case 'MESSAGES':
        v = counts!.messages;
        break;
      case 'UIDNEXT':
        v = mb.uidNext;
        break;
      case 'UIDVALIDITY':
        v = mb.uidValidity;
        break;
      case 'UNSEEN':
        v = counts!.unseen;
        break;
      case 'DELETED':
        v = counts!.deleted;
        break;
      case 'SIZE':
        v = counts!.size;
        break;
      case 'RECENT': {
        // RFC 3501 §6.3.10: messages no session has had as \Recent yet.
        const floor = s.host.recent.floor(mb.id);
        v = floor >= mb.uidNext - 1 ? 0 : (await s.ctx.store.listViewEntries(mb.id)).uids.filter((u) => u > floor).length;
        break;
      }
      case 'APPENDLIMIT':
        v = s.host.options.appendLimit;
        break;
      case 'MAILBOXID':
        // RFC 8474 §4.
        v = [{ atom: mailboxObjectId(mb) }];
        break;
      case 'HIGHESTMODSEQ':
        // RFC 7162 §3.1.6; a CONDSTORE enabling command (§3.1).
        if (enabling) s.condstore = true;
        v = mb.highestModSeq;
        break;
      case 'DELETED-STORAGE': {
        // RFC 9208 §4.2.2: storage, in units of 1024 octets, freed by expunging \Deleted messages.
        const entries = await s.ctx.store.listEntries(mb.id);
        v = Math.floor(entries.filter((e) => e.flags.includes('\\Deleted')).reduce((n, e) => n + e.size, 0) / 1024);
        break;
      }
    }
    values.push({ atom: item }, v);
  }
  return [{ atom: 'STATUS' }, s.mailboxOut(mb.name), values];
}

export async function status(s: Session, _tag: string, req: Request): Promise<void> {
  if (req.name !== 'STATUS') throw new Error('unreachable');
  const mb = await mustExist(s, req.mailbox);
  await s.untagged(await statusValues(s, mb, req.items));
}

/** RFC 9208: one quota root, "", for the whole account; only limited resources are listed. */
const QUOTA_ROOT = '';

async function quotaResponse(s: Session): Promise<ImapValue[]> {
  const account = (await s.ctx.store.getAccount(s.account().id)) ?? s.account();
  const usage = await s.ctx.store.quotaUsage(account.id);
  const resources: ImapValue[] = [];
  // RFC 9208 §5.1: STORAGE in units of 1024 octets; §5.2: MESSAGE counts.
  if (account.quotaBytes !== null) resources.push({ atom: 'STORAGE' }, Math.floor(usage.bytes / 1024), Math.floor(account.quotaBytes / 1024));
  if (account.quotaMessages !== null) resources.push({ atom: 'MESSAGE' }, usage.messages, account.quotaMessages);
  return [{ atom: 'QUOTA' }, QUOTA_ROOT, resources];
}

export async function getQuota(s: Session, _tag: string, req: Request): Promise<void> {
  if (req.name !== 'GETQUOTA') throw new Error('unreachable');
  if (req.root !== QUOTA_ROOT) throw new NoError('NONEXISTENT', 'No such quota root');
  await s.untagged(await quotaResponse(s));
}

export async function getQuotaRoot(s: Session, _tag: string, req: Request): Promise<void> {
  if (req.name !== 'GETQUOTAROOT') throw new Error('unreachable');
  await mustExist(s, req.mailbox);
  await s.untagged([{ atom: 'QUOTAROOT' }, s.mailboxOut(req.mailbox), QUOTA_ROOT]);
  await s.untagged(await quotaResponse(s));
}

/** RFC 9208 §4.1.3: limits are set by the administrator (CLI), not over IMAP; QUOTASET is not
 * advertised. */
export async function setQuota(): Promise<void> {
  throw new NoError('NOPERM', 'Quota limits are set by the administrator');
}
