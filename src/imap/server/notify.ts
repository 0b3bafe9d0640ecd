/**
 * A session's NOTIFY registration (RFC 5465): which events of which mailboxes the client wants,
 * the changes heard from the store's feed and not yet sent, and the mailbox list last announced
 * (MailboxName and SubscriptionChange are found by comparing it with the store's list, so they
 * need nothing from the feed beyond "the list changed", on every backend and across nodes).
 *
 * Invariants:
 * - What waits to be sent is bounded: past MAX_QUEUED_EVENTS changes not yet sent (a client that
 *   does not read, or a flood of changes), everything pending is dropped, the client gets
 *   `* OK [NOTIFICATIONOVERFLOW]` and the session behaves as after NOTIFY NONE (§5.8).
 * - Pending changes are marks (this mailbox changed, the list changed), not copies of the data:
 *   what is sent is read from the store when it is sent.
 */
import type { MailboxId } from '../../lib/brand.js';
import type { ChangeEvent, Mailbox, MailStore } from '../../store/types.js';
import type { FetchAtt, ImapValue } from '../protocol/ast.js';
import { HIERARCHY_SEPARATOR, type NotifyEventName, type NotifyFilter, type NotifyGroup, type StatusItem } from '../protocol/parser.js';

/** Changes heard and not yet sent, per session: stops a slow or hostile client (or a burst of
 * deliveries) from growing the server's memory without bound. */
export const MAX_QUEUED_EVENTS = 1000;
/** Mailboxes whose STATUS one NOTIFY SET STATUS sends at most; more is refused with
 * NO [NOTIFICATIONOVERFLOW] (§3.1: "too expensive"). */
export const MAX_STATUS_MAILBOXES = 1000;

/** The events this server can send (RFC 5465 §3.1: listed in BADEVENT). AnnotationChange needs
 * per-message annotations (RFC 5257), which Facteur does not have. */
export const SUPPORTED_EVENTS: readonly NotifyEventName[] = [
  'MessageNew',
  'MessageExpunge',
  'FlagChange',
  'MailboxName',
  'SubscriptionChange',
  'MailboxMetadataChange',
  'ServerMetadataChange',
];

const MESSAGE_EVENTS: ReadonlySet<NotifyEventName> = new Set(['MessageNew', 'MessageExpunge', 'FlagChange', 'AnnotationChange']);

export interface SelectedSpec {
  /** SELECTED-DELAYED: expunges wait for a command that may report them (§6.1.2). */
  delayed: boolean;
  events: ReadonlySet<NotifyEventName>;
  fetchAtts: FetchAtt[] | null;
}

interface OtherGroup {
  filter: Exclude<NotifyFilter, { kind: 'selected' | 'selected-delayed' }>;
  events: ReadonlySet<NotifyEventName>;
}

type MessageKind = 'append' | 'flags' | 'expunge';

/** What the session needs from its own state to build responses. */
export interface NotifyContext {
  store: MailStore;
  accountId: ChangeEvent['accountId'];
  condstore: boolean;
  mailboxOut(name: string): string;
  /** The STATUS response of a mailbox with these items (never a CONDSTORE enabling one). */
  status(mb: Mailbox, items: readonly StatusItem[]): Promise<ImapValue[]>;
  /** Entry names of a target's annotations (when an event did not carry them). */
  metadataNames(id: MailboxId | null): Promise<string[]>;
}

export class Notifier {
  readonly selected: SelectedSpec | null;
  private readonly others: OtherGroup[];
  private boxes: Map<MailboxId, Mailbox>;
  private subs: Set<string>;
  private pending = 0;
  private selectedDirty = false;
  private listDirty = false;
  /** The next list refresh only updates the snapshot: the change was this session's own (§5). */
  private silentList = false;
  private dirty = new Map<MailboxId, Set<MessageKind>>();
  private metadata: Array<{ id: MailboxId | null; entries: readonly string[] | undefined }> = [];
  private muted = 0;
  /** Set when the queue overflowed; the session then sends NOTIFICATIONOVERFLOW and drops us. */
  overflowed = false;

  constructor(groups: readonly NotifyGroup[], boxes: readonly Mailbox[], subs: readonly string[]) {
    let selected: SelectedSpec | null = null;
    const others: OtherGroup[] = [];
    for (const g of groups) {
      const events = new Set(g.events);
      if (g.filter.kind === 'selected' || g.filter.kind === 'selected-delayed') {
        selected = { delayed: g.filter.kind === 'selected-delayed', events, fetchAtts: g.fetchAtts };
      } else if (events.size > 0) others.push({ filter: g.filter, events });
    }
    this.selected = selected !== null && selected.events.size > 0 ? selected : null;
    this.others = others;
    this.boxes = new Map(boxes.map((b) => [b.id, b]));
    this.subs = new Set(subs);
  }

  /** Whether the selected mailbox's changes are pushed as they happen (also during IDLE, §4). */
  get pushesSelected(): boolean {
    return this.selected !== null;
  }

  get hasPending(): boolean {
    return this.overflowed || this.selectedDirty || this.listDirty || this.dirty.size > 0 || this.metadata.length > 0;
  }

  /** The events the non-selected groups ask for on a mailbox name (RFC 5465 §6). */
  eventsFor(name: string): Set<NotifyEventName> {
    const out = new Set<NotifyEventName>();
    for (const g of this.others) {
      if (!matches(g.filter, name, this.subs)) continue;
      for (const e of g.events) out.add(e);
    }
    return out;
  }

  private wantsAny(events: readonly NotifyEventName[]): boolean {
    return this.others.some((g) => events.some((e) => g.events.has(e)));
  }

  /** Runs a write of this session's own: the mailbox-list and metadata changes it causes are not
   * announced back (RFC 5465 §5 "SHOULD omit"). */
  async own<T>(run: () => Promise<T>): Promise<T> {
    this.muted++;
    try {
      return await run();
    } finally {
      this.muted--;
    }
  }

  /**
   * Takes a change from the feed. Returns true when something is to be sent. `selectedId` is the
   * selected mailbox, if any.
   */
  push(event: ChangeEvent, selectedId: MailboxId | null): boolean {
    if (this.overflowed) return false;
    if (event.kind === 'mailbox') {
      // The list is refreshed in any case: names decide which groups apply.
      this.listDirty = true;
      if (this.muted > 0) {
        this.silentList = true;
        return false;
      }
      if (!this.wantsAny(['MailboxName', 'SubscriptionChange']) && !this.others.some((g) => g.filter.kind === 'subscribed')) return false;
    } else if (event.kind === 'metadata') {
      if (this.muted > 0) return false;
      if (!this.wantsAny(event.mailboxId === null ? ['ServerMetadataChange'] : ['MailboxMetadataChange'])) return false;
      this.metadata.push({ id: event.mailboxId, entries: event.entries });
    } else if (event.mailboxId !== null && event.mailboxId === selectedId) {
      if (this.selected === null) return false;
      this.selectedDirty = true;
    } else if (event.mailboxId !== null) {
      if (!this.others.some((g) => [...g.events].some((e) => MESSAGE_EVENTS.has(e)))) return false;
      let kinds = this.dirty.get(event.mailboxId);
      if (kinds === undefined) this.dirty.set(event.mailboxId, (kinds = new Set()));
      kinds.add(event.kind);
    } else return false;
    if (++this.pending > MAX_QUEUED_EVENTS) this.overflow();
    return true;
  }

  private overflow(): void {
    this.overflowed = true;
    this.pending = 0;
    this.selectedDirty = false;
    this.listDirty = false;
    this.dirty = new Map();
    this.metadata = [];
  }

  /** Whether the selected mailbox changed since the last call (and forgets it). */
  takeSelected(): boolean {
    const d = this.selectedDirty;
    this.selectedDirty = false;
    return d;
  }

  /** The selected mailbox was just brought up to date by the session. */
  clearSelected(): void {
    this.selectedDirty = false;
  }

  /** The untagged responses for what changed outside the selected mailbox, in order: mailbox
   * names and subscriptions, STATUS, METADATA. `selectedId` is excluded from STATUS (§3.1). */
  async drain(ctx: NotifyContext, selectedId: MailboxId | null): Promise<ImapValue[][]> {
    const out: ImapValue[][] = [];
    const listDirty = this.listDirty;
    const silent = this.silentList;
    const dirty = this.dirty;
    const metadata = this.metadata;
    this.listDirty = false;
    this.silentList = false;
    this.dirty = new Map();
    this.metadata = [];
    this.pending = 0;
    if (listDirty) {
      const [boxes, subs] = await Promise.all([ctx.store.listMailboxes(ctx.accountId), ctx.store.listSubscriptions(ctx.accountId)]);
      if (!silent) out.push(...this.listChanges(ctx, boxes, subs));
      this.boxes = new Map(boxes.map((b) => [b.id, b]));
      this.subs = new Set(subs);
    }
    for (const [id, kinds] of dirty) {
      if (id === selectedId) continue;
      const mb = await ctx.store.getMailboxById(id);
      if (mb === null || mb.accountId !== ctx.accountId) continue; // deleted meanwhile
      const items = changeStatusItems(this.eventsFor(mb.name), kinds, ctx.condstore);
      if (items.length > 0) out.push(await ctx.status(mb, items));
    }
    for (const m of metadata) {
      let name = '';
      if (m.id !== null) {
        const mb = await ctx.store.getMailboxById(m.id);
        if (mb === null || mb.accountId !== ctx.accountId || !this.eventsFor(mb.name).has('MailboxMetadataChange')) continue;
        name = mb.name;
      }
      // RFC 5464 §4.4.2: unsolicited METADATA carries entry names only.
      const entries = m.entries ?? (await ctx.metadataNames(m.id));
      if (entries.length === 0) continue;
      out.push([{ atom: 'METADATA' }, ctx.mailboxOut(name), ...entries.map((e) => ({ atom: e }))]);
    }
    return out;
  }

  /** LIST responses for names created, deleted, renamed (RFC 5465 §5.4) and subscribed or
   * unsubscribed (§5.5), from the last snapshot to the new list. */
  private listChanges(ctx: NotifyContext, boxes: readonly Mailbox[], subs: readonly string[]): ImapValue[][] {
    const out: ImapValue[][] = [];
    const names = new Set(boxes.map((b) => b.name));
    const subSet = new Set(subs);
    const attrs = (mb: Mailbox | null, name: string): ImapValue[] => {
      const a: ImapValue[] = [];
      if (mb === null) a.push({ atom: '\\NonExistent' });
      else {
        const prefix = name + HIERARCHY_SEPARATOR;
        a.push({ atom: [...names].some((n) => n.startsWith(prefix)) ? '\\HasChildren' : '\\HasNoChildren' });
      }
      if (subSet.has(name)) a.push({ atom: '\\Subscribed' });
      if (mb?.specialUse) a.push({ atom: mb.specialUse });
      return a;
    };
    const line = (mb: Mailbox | null, name: string, extra?: ImapValue): ImapValue[] => {
      const l: ImapValue[] = [{ atom: 'LIST' }, attrs(mb, name), HIERARCHY_SEPARATOR, ctx.mailboxOut(name)];
      if (extra !== undefined) l.push(extra);
      return l;
    };
    const now = new Map(boxes.map((b) => [b.id, b]));
    const renamed: Array<{ from: string; mb: Mailbox }> = [];
    for (const mb of boxes) {
      const before = this.boxes.get(mb.id);
      if (before === undefined) {
        if (this.eventsFor(mb.name).has('MailboxName')) out.push(line(mb, mb.name));
      } else if (before.name !== mb.name) renamed.push({ from: before.name, mb });
    }
    for (const r of renamed) {
      // §5.4: children renamed with their parent get no event of their own.
      if (renamed.some((p) => p !== r && r.from.startsWith(p.from + HIERARCHY_SEPARATOR))) continue;
      if (this.eventsFor(r.mb.name).has('MailboxName') || this.eventsFor(r.from).has('MailboxName')) {
        out.push(line(r.mb, r.mb.name, ['OLDNAME', [ctx.mailboxOut(r.from)]]));
      }
    }
    for (const [id, before] of this.boxes) {
      if (now.has(id)) continue;
      if (this.eventsFor(before.name).has('MailboxName')) out.push(line(null, before.name));
    }
    const changedSubs = [...subs.filter((n) => !this.subs.has(n)), ...[...this.subs].filter((n) => !subSet.has(n))];
    for (const name of changedSubs) {
      if (!this.eventsFor(name).has('SubscriptionChange')) continue;
      out.push(line(boxes.find((b) => b.name === name) ?? null, name));
    }
    return out;
  }

  /** The mailboxes whose STATUS NOTIFY SET STATUS sends (§3.1), with their items. */
  initialStatus(selectedId: MailboxId | null): Array<{ mb: Mailbox; items: StatusItem[] }> {
    const out: Array<{ mb: Mailbox; items: StatusItem[] }> = [];
    for (const mb of this.boxes.values()) {
      if (mb.id === selectedId) continue;
      const ev = this.eventsFor(mb.name);
      const items = new Set<StatusItem>();
      if (ev.has('MessageNew')) ['MESSAGES', 'UIDNEXT', 'UIDVALIDITY'].forEach((i) => items.add(i as StatusItem));
      if (ev.has('MessageExpunge')) items.add('MESSAGES');
      if (ev.has('FlagChange')) ['UIDVALIDITY', 'HIGHESTMODSEQ'].forEach((i) => items.add(i as StatusItem));
      if (items.size > 0) out.push({ mb, items: STATUS_ORDER.filter((i) => items.has(i)) });
    }
    return out.sort((a, b) => (a.mb.name < b.mb.name ? -1 : 1));
  }
}

const STATUS_ORDER: readonly StatusItem[] = ['MESSAGES', 'UIDNEXT', 'UIDVALIDITY', 'UNSEEN', 'HIGHESTMODSEQ'];

/** RFC 5465 §5.1-5.3: the STATUS items that report a change in a non-selected mailbox. */
function changeStatusItems(events: ReadonlySet<NotifyEventName>, kinds: ReadonlySet<MessageKind>, condstore: boolean): StatusItem[] {
  const items = new Set<StatusItem>();
  if ((kinds.has('append') && events.has('MessageNew')) || (kinds.has('expunge') && events.has('MessageExpunge'))) {
    items.add('MESSAGES');
    items.add('UIDNEXT');
    if (condstore) items.add('HIGHESTMODSEQ');
  }
  if (kinds.has('flags') && events.has('FlagChange')) {
    // §5.1: with CONDSTORE, HIGHESTMODSEQ and UIDVALIDITY; without it, UNSEEN (which the server
    // MAY send) rather than nothing.
    if (condstore) {
      items.add('UIDVALIDITY');
      items.add('HIGHESTMODSEQ');
    } else items.add('UNSEEN');
  }
  return STATUS_ORDER.filter((i) => items.has(i));
}

/** Whether a non-selected filter covers a mailbox name (RFC 5465 §6.2-6.6). */
function matches(filter: OtherGroup['filter'], name: string, subs: ReadonlySet<string>): boolean {
  switch (filter.kind) {
    case 'personal':
    // §6.3: a server that cannot easily tell which mailboxes receive mail treats "inboxes" as
    // "personal" (delivery may file into any mailbox: Junk, a named target).
    case 'inboxes':
      return true;
    case 'subscribed':
      return subs.has(name);
    case 'subtree':
      return filter.names.some((n) => name === n || name.startsWith(n + HIERARCHY_SEPARATOR));
    case 'mailboxes':
      // §6.6: no wildcard expansion.
      return filter.names.includes(name);
    default:
      return false;
  }
}
