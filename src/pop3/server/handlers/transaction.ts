/**
 * TRANSACTION state (RFC 1939 §5, §7): STAT, LIST, UIDL from the maildrop listed at login (no
 * I/O); RETR and TOP stream the stored bytes with byte-stuffing and backpressure; DELE and RSET
 * only change marks in the session.
 */
import { randomBytes } from 'node:crypto';
import { DotStuffer } from '../../protocol/dot-stuff.js';
import { multiline, ok, scanListing, uniqueIdListing } from '../../protocol/response.js';
import { TopFilter } from '../../protocol/top-filter.js';
import { StoreError } from '../../../store/types.js';
import { Pop3Fatal, Pop3Refusal } from '../errors.js';
import type { Maildrop, MaildropMessage } from '../maildrop.js';
import type { Pop3Session } from '../session.js';

export async function stat(s: Pop3Session): Promise<void> {
  const { count, size } = s.transaction().maildrop.stat();
  // RFC 1939 §5: "+OK nn mm", messages marked deleted not counted.
  s.send(ok(`${count} ${size}`));
}

export async function list(s: Pop3Session, n: number | null): Promise<void> {
  const { maildrop } = s.transaction();
  if (n !== null) {
    const m = s.message(n);
    s.send(ok(scanListing(m.number, m.size)));
    return;
  }
  const { count, size } = maildrop.stat();
  s.send(multiline(`${count} messages (${size} octets)`, maildrop.live().map((m) => scanListing(m.number, m.size))));
}

export async function uidl(s: Pop3Session, n: number | null): Promise<void> {
  const { maildrop } = s.transaction();
  if (n !== null) {
    const m = s.message(n);
    s.send(ok(uniqueIdListing(m.number, m.uniqueId)));
    return;
  }
  s.send(multiline('Unique-id listing follows', maildrop.live().map((m) => uniqueIdListing(m.number, m.uniqueId))));
}

export async function dele(s: Pop3Session, n: number): Promise<void> {
  const m = s.message(n);
  // RFC 1939 §5: DELE only marks; the message goes at QUIT (UPDATE).
  m.deleted = true;
  s.send(ok(`Message ${m.number} deleted`));
}

export async function rset(s: Pop3Session): Promise<void> {
  const { maildrop } = s.transaction();
  maildrop.unmarkAll();
  const { count, size } = maildrop.stat();
  s.send(ok(`Maildrop has ${count} messages (${size} octets)`));
}

export async function noop(s: Pop3Session): Promise<void> {
  s.send(ok());
}

export async function retr(s: Pop3Session, n: number): Promise<void> {
  const { maildrop } = s.transaction();
  const m = s.message(n);
  const entry = await currentEntry(s, maildrop, m);
  if (s.options.retrSetsSeen && !entry.flags.includes('\\Seen')) {
    // docs/pop3-imap.md: RETR sets \Seen through the same write as an IMAP STORE, so IMAP
    // sessions are told (FETCH FLAGS) like for any other flag change.
    await s.store.setFlags(maildrop.mailboxId, [m.uid], 'add', ['\\Seen']);
  }
  // RFC 1939 §7 RETR: "+OK" then the message, byte-stuffed, then ".".
  await sendContent(s, m, `${m.size} octets`, null);
}

export async function top(s: Pop3Session, n: number, lines: number): Promise<void> {
  const { maildrop } = s.transaction();
  const m = s.message(n);
  await currentEntry(s, maildrop, m);
  // RFC 1939 §7 TOP: header, blank line, first n body lines; \Seen is not set.
  await sendContent(s, m, 'Top of message follows', new TopFilter(lines));
}

/** The store's entry for a maildrop message; a refusal if another session removed it. */
async function currentEntry(s: Pop3Session, maildrop: Maildrop, m: MaildropMessage): Promise<{ flags: string[] }> {
  const [entry] = await s.store.getEntries(maildrop.mailboxId, [m.uid]);
  if (entry === undefined || entry.pid !== m.pid) throw removed(m);
  return entry;
}

/**
 * Sends "+OK status" then a message (or its top) with byte-stuffing and backpressure. The first
 * chunk is read before the +OK: once it is in hand the rest is safe (the store keeps the open
 * file, or the whole inline blob), so a message expunged by IMAP between the entry check and the
 * read still gets a clean -ERR. After the +OK nothing can be taken back: a read failure then closes
 * the connection (the client sees no ".").
 */
async function sendContent(s: Pop3Session, m: MaildropMessage, status: string, filter: TopFilter | null): Promise<void> {
  const chunks = s.store.streamBlob(m.blobHash)[Symbol.asyncIterator]();
  let next: IteratorResult<Buffer>;
  try {
    next = await chunks.next();
  } catch (error) {
    if (error instanceof StoreError && error.code === 'not-found') throw removed(m);
    throw error;
  }
  s.send(ok(status));
  const stuffer = new DotStuffer();
  try {
    while (next.done !== true) {
      if (s.isClosing) return;
      const part = filter === null ? next.value : filter.push(next.value);
      if (part.length > 0) s.send(stuffer.push(part));
      await s.waitForDrain();
      // TOP stops reading the blob once its lines are out.
      if (filter?.done) break;
      next = await chunks.next();
    }
  } catch (error) {
    const ref = randomBytes(4).toString('hex');
    s.logger.error({ ref, err: error, uid: m.uid }, 'cannot read message content');
    throw new Pop3Fatal(null);
  } finally {
    // Closes the blob file when the loop ended early (TOP, a closed connection, an error).
    if (next.done !== true) await chunks.return?.().catch(() => undefined);
  }
  s.send(stuffer.end());
}

function removed(m: MaildropMessage): Pop3Refusal {
  // docs/pop3-imap.md: expunged or moved away over IMAP during this session; the number stays,
  // only its content is gone.
  return new Pop3Refusal(`Message ${m.number} was removed by another session`);
}
