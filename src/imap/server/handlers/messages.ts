/**
 * FETCH, STORE (RFC 9051 §6.4.5-6), COPY (RFC 4315 COPYUID), MOVE (RFC 6851), by sequence number
 * or UID. The FETCH values come from imap/fetch; this file decides which messages, sets \Seen,
 * and writes the responses.
 */
import { asModSeq, type Uid } from '../../../lib/brand.js';
import { UnknownCteError } from '../../fetch/binary.js';
import { FetchTooLargeError } from '../../fetch/fetch.js';
import { checkStoreKeywords } from '../keyword-limits.js';
import { fetchTextInHand, fetchValues, inHandItems, needsSeenFlag } from '../../fetch/fetch.js';
import type { FetchAtt, ImapValue } from '../../protocol/ast.js';
import type { Request } from '../../protocol/parser.js';
import { formatSet, untaggedText } from '../../protocol/serialize.js';
import type { Done } from '../commands.js';
import { BadError, NoError } from '../errors.js';
import type { Session } from '../session.js';
import type { SetFlagsResult } from '../../../store/types.js';
import { flagAtoms, inUidSet, type MailboxView } from '../view.js';

function targets(view: MailboxView, req: { uid: boolean; set: Parameters<MailboxView['resolveUids']>[0] }): Uid[] {
  return req.uid ? view.resolveUids(req.set) : view.resolveSeqs(req.set);
}

export async function fetch(s: Session, _tag: string, req: Request): Promise<Done | void> {
  if (req.name !== 'FETCH') throw new Error('unreachable');
  const view = s.view();
  const store = s.ctx.store;
  if (req.vanished) {
    // RFC 7162 §3.2.6: VANISHED only in UID FETCH, with CHANGEDSINCE, once QRESYNC is enabled.
    if (!s.qresync) throw new BadError('QRESYNC is not enabled');
    if (!req.uid || req.changedSince === null) throw new BadError('VANISHED needs UID FETCH and CHANGEDSINCE');
  }
  let uids = targets(view, req);
  let atts: FetchAtt[] = distinctAtts(req.atts);
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
  const opts = { rev2: s.rev2, utf8Accept: s.utf8 || s.rev2, cache: s.host.fetchItems };
  if (atts.every((a) => a.kind === 'UID' || a.kind === 'FLAGS' || a.kind === 'MODSEQ')) {
    // What the view holds answers these: no store read (FETCH 1:* (UID FLAGS) on a large
    // mailbox is a resynchronising client's first command). RFC 2180 §4.1: a message another
    // session expunged meanwhile is answered from what the view knows.
    const lines = new TextLines(s);
    let from = 0;
    for (const uid of uids) {
      const i = view.indexFrom(uid, from);
      if (i < 0) continue;
      from = i + 1;
      const seq = i + 1;
      let items = '';
      for (const a of atts) {
        if (items.length > 0) items += ' ';
        if (a.kind === 'UID') items += `UID ${uid}`;
        else if (a.kind === 'FLAGS') items += `FLAGS ${view.flagsTextAt(seq - 1)}`;
        else items += `MODSEQ (${view.modseqAt(seq - 1)})`; // RFC 7162 §3.1.4.1
      }
      const full = lines.add(`* ${seq} FETCH (${items})\r\n`);
      if (full !== null) await full;
    }
    await lines.flush();
    return;
  }
  let gone = false;
  const serialize = s.serializeOptions;
  // null when an item is never in hand: each message is then fetchValues' (see fetchTextInHand).
  const inHand = inHandItems(atts, opts);
  await s.batched(async () => {
    // Entries are read a chunk at a time and each chunk's responses written before the next: the
    // reply is streamed under the socket's backpressure, never held whole. A response of values
    // in hand is gathered as text with the others (one Buffer per 64 KB, not one a message).
    const lines = new TextLines(s);
    const onGone = (): void => {
      gone = true;
    };
    try {
      // The store's facts of each message, not an entry object: in hand, its flags and modseq
      // come from the view by index, and an entry is made only for fetchValues.
      for await (const { facts, indices } of view.factChunks(store, uids, onGone)) {
        for (let k = 0; k < facts.length; k++) {
          const f = facts[k]!;
          const uid = f.uid;
          const i = indices[k]!;
          // RFC 9051 §6.4.5: a FLAGS change caused by the FETCH is reported in it.
          const addFlags = seenNow.size > 0 && seenNow.has(uid) && !hasFlags;
          const text = inHand === null ? null : fetchTextInHand(inHand, f, view.modseqAt(i), inHand.flags ? view.flagsTextAt(i) : '');
          if (text !== null) {
            const full = lines.add(`* ${i + 1} FETCH (${text}${addFlags ? ` FLAGS ${view.flagsTextAt(i)}` : ''})\r\n`);
            if (full !== null) await full;
            continue;
          }
          const src = { entry: view.entryAt(f, i), store, recent: view.isRecent(uid) };
          let values: ImapValue[];
          try {
            values = await fetchValues(atts, src, opts);
          } catch (err) {
            if (err instanceof UnknownCteError) throw new NoError('UNKNOWN-CTE', 'Cannot decode the content transfer encoding');
            if (err instanceof FetchTooLargeError) throw new NoError('LIMIT', err.message);
            // Expunged meanwhile (held, or not yet known): RFC 9051 §7.5.1 lets the server omit it.
            if (view.held.has(uid) || (await store.getEntries(view.mailbox.id, [uid])).length === 0) {
              gone = true;
              continue;
            }
            throw err;
          }
          if (addFlags) values.push({ atom: 'FLAGS' }, flagAtoms(view.flagsOf(uid)));
          const response: ImapValue[] = [i + 1, { atom: 'FETCH' }, values];
          const responseText = untaggedText(response, serialize);
          if (responseText === null) {
            await lines.flush();
            await s.untagged(response);
          } else {
            const full = lines.add(responseText);
            if (full !== null) await full;
          }
        }
      }
    } finally {
      // The responses gathered go out before the tagged status, also when a message fails.
      await lines.flush();
    }
  });
  // RFC 2180 §4.1, RFC 5530 §3: messages expunged by another session (not yet announced here)
  // are left out and the OK says so, as Dovecot answers; the client may NOOP to learn of them.
  if (gone) return { code: [{ atom: 'EXPUNGEISSUED' }] };
}

/**
 * Untagged responses written as text in writes of about 64 KB, each under the socket's
 * backpressure: STORE 1:* or FETCH 1:* (UID FLAGS) on 100,000 messages is a few dozen writes and
 * no token list per message. Only for responses made of numbers and atoms.
 */
class TextLines {
  private text = '';
  constructor(private readonly s: Session) {}

  /** Adds a response; the write's promise when the text reached 64 KB and went out, else null
   * (no promise to wait for: FETCH adds one a message). */
  add(line: string): Promise<void> | null {
    this.text += line;
    return this.text.length >= 65_536 ? this.flush() : null;
  }

  async flush(): Promise<void> {
    if (this.text.length === 0) return;
    const data = Buffer.from(this.text, 'latin1');
    this.text = '';
    await this.s.write([data]);
  }
}

export async function store(s: Session, _tag: string, req: Request): Promise<Done | void> {
  if (req.name !== 'STORE') throw new Error('unreachable');
  const view = s.view();
  if (view.readOnly) throw new NoError('CANNOT', 'Mailbox is read-only');
  if (req.unchangedSince !== null) await s.enableCondstore(); // RFC 7162 §3.1: an enabling command.
  const all = targets(view, req);
  const uids = view.live(all);
  const expungeIssued: Done = { code: [{ atom: 'EXPUNGEISSUED' }] };
  if (uids.length === 0) return all.length > 0 ? expungeIssued : undefined;
  checkStoreKeywords(view, uids, req.mode, req.flags);
  const res = await s.ctx.store.setFlags(view.mailbox.id, uids, req.mode, req.flags, req.unchangedSince === null ? undefined : asModSeq(req.unchangedSince));
  view.stored(res);
  const flagsUpdate = view.keywordUpdate(res.updated);
  if (flagsUpdate !== null) await s.untagged(flagsUpdate);
  await storeResponses(s, view, uids, res, req.silent, req.uid);
  if (res.modified.length > 0) {
    // RFC 7162 §3.1.3: MODIFIED lists the messages not stored, by UID for UID STORE.
    const numbers = res.modified.map((u) => (req.uid ? u : view.seqOf(u))).sort((a, b) => a - b);
    return { code: [{ atom: 'MODIFIED' }, { atom: formatSet(numbers) }], text: 'Conditional STORE failed' };
  }
  // RFC 2180 §4.1, RFC 5530 §3: messages expunged by another session were not stored (and
  // get no FETCH); the OK says so, as FETCH's does.
  if (res.gone.length > 0 || uids.length !== all.length) return expungeIssued;
}

/**
 * RFC 9051 §6.4.6: an untagged FETCH with the new flags of each message of the set (UID too for
 * UID STORE). RFC 7162 §3.1.3: none for a message that failed UNCHANGEDSINCE; with CONDSTORE each
 * carries MODSEQ, and .SILENT still reports the new MODSEQ of the messages it changed. None for a
 * message expunged meanwhile. `uids` and the result's lists are ascending: one merge pass.
 */
async function storeResponses(s: Session, view: MailboxView, uids: readonly Uid[], res: SetFlagsResult, silent: boolean, byUid: boolean): Promise<void> {
  const condstore = s.condstore;
  if (silent && !condstore) return;
  const skip = res.modified.length + res.gone.length === 0 ? null : new Set<Uid>([...res.modified, ...res.gone]);
  const updated = res.updated;
  const withUid = byUid || condstore;
  const lines = new TextLines(s);
  let j = 0;
  let from = 0;
  for (const uid of uids) {
    while (j < updated.length && updated[j]!.uid < uid) j++;
    const changed = j < updated.length && updated[j]!.uid === uid;
    if (skip?.has(uid) === true || (silent && !changed)) continue;
    const i = view.indexFrom(uid, from);
    if (i < 0) continue;
    from = i + 1;
    const seq = i + 1;
    let items = withUid ? `UID ${uid}` : '';
    if (!silent) items += `${items.length > 0 ? ' ' : ''}FLAGS ${view.flagsTextAt(seq - 1)}`;
    if (condstore) items += ` MODSEQ (${view.modseqAt(seq - 1)})`;
    const full = lines.add(`* ${seq} FETCH (${items})\r\n`);
    if (full !== null) await full;
  }
  await lines.flush();
}

export async function copyOrMove(s: Session, _tag: string, req: Request): Promise<Done | void> {
  if (req.name !== 'COPY' && req.name !== 'MOVE') throw new Error('unreachable');
  const view = s.view();
  const move = req.name === 'MOVE';
  if (move && view.readOnly) throw new NoError('CANNOT', 'Mailbox is read-only');
  const dest = await s.ctx.store.getMailbox(s.account().id, req.mailbox);
  // RFC 9051 §6.4.7: TRYCREATE when the destination does not exist.
  if (dest === null) throw new NoError('TRYCREATE', 'No such mailbox');
  const all = targets(view, req);
  const uids = view.live(all);
  const refusal = new NoError('EXPUNGEISSUED', 'Some of the messages were expunged; nothing was copied');
  if (uids.length !== all.length) throw refusal;
  if (uids.length === 0) return;
  // All or nothing: when another session expunged one of the messages meanwhile, nothing is
  // copied or moved and the client is told so (RFC 2180 §4.1 lets the server refuse; RFC 5530
  // §3 EXPUNGEISSUED), as Dovecot answers; after a NOOP it knows what is left.
  const whole = { whole: true };
  const res = move ? await s.ctx.store.move(view.mailbox.id, uids, dest.id, whole) : await s.ctx.store.copy(view.mailbox.id, uids, dest.id, whole);
  if (res.gone.length > 0) throw refusal;
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

/**
 * The items asked for, each once: a FETCH naming one item a thousand times (the parser allows a
 * thousand) would otherwise build a thousand copies of it for every message. BODY[x] and
 * BODY.PEEK[x] answer as one item; it is not a PEEK when either is not (it sets \Seen).
 */
function distinctAtts(atts: readonly FetchAtt[]): FetchAtt[] {
  const byKey = new Map<string, FetchAtt>();
  for (const a of atts) {
    const key = JSON.stringify({ ...a, peek: undefined });
    const kept = byKey.get(key);
    if (kept === undefined) byKey.set(key, a);
    else if ('peek' in kept && kept.peek && 'peek' in a && !a.peek) byKey.set(key, { ...kept, peek: false } as FetchAtt);
  }
  return byKey.size === atts.length ? [...atts] : [...byKey.values()];
}
