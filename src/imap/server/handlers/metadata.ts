/**
 * GETMETADATA and SETMETADATA (RFC 5464 METADATA and METADATA-SERVER): annotations of a mailbox,
 * or of the server when the mailbox name is empty.
 *
 * Every mailbox has one user, so /shared entries are stored per account like /private ones (the
 * two namespaces stay apart; NOPRIVATE is never needed). The server entry /shared/admin is
 * computed (mailto:postmaster@ the account's domain) and read-only (RFC 5464 §3.2.1.1).
 */
import type { MailboxId } from '../../../lib/brand.js';
import { StoreError, type MetadataEntry, type MetadataLimits } from '../../../store/types.js';
import type { ImapValue } from '../../protocol/ast.js';
import type { MetadataDepth, Request } from '../../protocol/parser.js';
import type { Done } from '../commands.js';
import { NoError } from '../errors.js';
import type { Session } from '../session.js';

/**
 * The annotation limits, each with what it stops (RFC 5464 §4.1 asks for at least 1024 bytes and
 * 10 entries; §7: servers MUST bound what a user can store):
 * - maxValueBytes: one huge value held in memory per command and written to the store; checked
 *   from the literal size before its bytes are read (receiver.ts).
 * - maxEntries: a mailbox (or the server) with endless entries, which GETMETADATA DEPTH infinity
 *   would read in one go.
 * - maxTotalBytes: an account filling the database with annotations across many mailboxes.
 */
export const METADATA_LIMITS: MetadataLimits & { maxValueBytes: number } = {
  maxValueBytes: 16 * 1024,
  maxEntries: 100,
  maxTotalBytes: 1024 * 1024,
};

const ADMIN_ENTRY = '/shared/admin';

/** The target of a command: null for the server, else the mailbox id (NO [NONEXISTENT] if none). */
async function target(s: Session, mailbox: string): Promise<MailboxId | null> {
  if (mailbox === '') return null;
  const mb = await s.ctx.store.getMailbox(s.account().id, mailbox);
  if (mb === null) throw new NoError('NONEXISTENT', 'No such mailbox');
  return mb.id;
}

/** The entries of a target as clients see them: stored ones, plus the computed server entries. */
export async function visibleMetadata(s: Session, id: MailboxId | null): Promise<MetadataEntry[]> {
  const stored = await s.ctx.store.getMetadata(s.account().id, id);
  if (id !== null) return stored;
  const admin = { name: ADMIN_ENTRY, value: Buffer.from(`mailto:postmaster@${s.account().domain}`) };
  return [...stored.filter((e) => e.name !== ADMIN_ENTRY), admin].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Whether `name` is `wanted` or below it within `depth` levels (RFC 5464 §4.2.2). */
function within(name: string, wanted: string, depth: MetadataDepth): boolean {
  if (name === wanted) return true;
  if (depth === 0 || !name.startsWith(`${wanted}/`)) return false;
  return depth === 'infinity' || !name.slice(wanted.length + 1).includes('/');
}

/** An entry name as an atom when it is one, else a string (RFC 5464 §5 entry = astring). */
export function entryValue(name: string): ImapValue {
  return /^[\x21\x23-\x27\x2b-\x5b\x5e-\x7a\x7c\x7e]+$/.test(name) ? { atom: name } : name;
}

/** A value: a string when it is printable ASCII, else a literal; a literal8 when it holds NUL
 * (RFC 5464 §5 value = nstring / literal8). */
function valueOf(value: Buffer): ImapValue {
  if (value.includes(0)) return { literal: value, binary: true };
  if (value.every((b) => b >= 0x20 && b < 0x7f)) return value.toString('latin1');
  return { literal: value };
}

export async function getMetadata(s: Session, _tag: string, req: Request): Promise<Done> {
  if (req.name !== 'GETMETADATA') throw new Error('unreachable');
  const id = await target(s, req.mailbox);
  const all = await visibleMetadata(s, id);
  const items: ImapValue[] = [];
  let longest = 0;
  const sent = new Set<string>();
  for (const wanted of req.entries) {
    const found = all.filter((e) => within(e.name, wanted, req.depth));
    // An entry asked for by name that does not exist is answered with NIL (as Dovecot and Cyrus
    // do), so each requested name gets an answer.
    if (!found.some((e) => e.name === wanted) && !sent.has(wanted)) {
      sent.add(wanted);
      items.push(entryValue(wanted), null);
    }
    for (const e of found) {
      if (sent.has(e.name)) continue;
      sent.add(e.name);
      // RFC 5464 §4.2.1: values over MAXSIZE are left out and the largest is reported.
      if (req.maxSize !== null && e.value.length > req.maxSize) {
        longest = Math.max(longest, e.value.length);
        continue;
      }
      items.push(entryValue(e.name), valueOf(e.value));
    }
  }
  if (items.length > 0) await s.untagged([{ atom: 'METADATA' }, s.mailboxOut(req.mailbox), items]);
  if (longest > 0) return { code: [{ atom: 'METADATA' }, { atom: 'LONGENTRIES' }, longest], text: 'GETMETADATA completed' };
  return {};
}

export async function setMetadata(s: Session, _tag: string, req: Request): Promise<void> {
  if (req.name !== 'SETMETADATA') throw new Error('unreachable');
  const id = await target(s, req.mailbox);
  for (const e of req.entries) {
    // RFC 5464 §3.2.1.1: /shared/admin is read-only.
    if (id === null && e.name === ADMIN_ENTRY) throw new NoError('NOPERM', `${ADMIN_ENTRY} is read-only`);
    if (e.value !== null && e.value.length > METADATA_LIMITS.maxValueBytes) {
      throw new NoError([{ atom: 'METADATA' }, { atom: 'MAXSIZE' }, METADATA_LIMITS.maxValueBytes], 'Annotation value too large');
    }
  }
  try {
    // The session's own change is not announced back to it (RFC 5465 §5).
    await s.ownChange(() => s.ctx.store.setMetadata(s.account().id, id, req.entries, METADATA_LIMITS));
  } catch (err) {
    // RFC 5464 §4.3: TOOMANY for too many entries; the account's byte total is reported the same
    // way (the annotation storage is full).
    if (err instanceof StoreError && err.code === 'over-quota') throw new NoError([{ atom: 'METADATA' }, { atom: 'TOOMANY' }], 'Too many annotations');
    throw err;
  }
}
