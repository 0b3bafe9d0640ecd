/**
 * QUIT (RFC 1939 §4, §6). In AUTHORIZATION it only ends the session. In TRANSACTION it enters
 * UPDATE: the messages marked deleted that are still in INBOX are removed by the account's
 * pop3DeletePolicy (docs/pop3-imap.md), the lock is released, and the server signs off.
 */
import { randomBytes } from 'node:crypto';
import type { MailboxId, Uid } from '../../../lib/brand.js';
import type { Account, MailStore } from '../../../store/types.js';
import { err, ok } from '../../protocol/response.js';
import type { Maildrop } from '../maildrop.js';
import type { Pop3Session } from '../session.js';

export async function quit(s: Pop3Session): Promise<void> {
  if (s.currentState !== 'transaction') {
    // RFC 1939 §4: QUIT in AUTHORIZATION ends the session without UPDATE.
    s.close(ok('Bye'), 'quit');
    return;
  }
  const { account, maildrop, release } = s.enterUpdate();
  const uids = maildrop.toRemove();
  let removed = 0;
  let failure: unknown = null;
  try {
    if (uids.length > 0) removed = await applyDeletes(s.store, account, maildrop, uids);
  } catch (error) {
    failure = error;
  }
  // Released before answering, so a client that reconnects right after +OK finds it free.
  await release().catch((error: unknown) => s.logger.error({ err: error }, 'cannot release the POP3 lock'));
  if (failure !== null) {
    const ref = randomBytes(4).toString('hex');
    s.logger.error({ cmd: 'QUIT', ref, err: failure }, 'UPDATE failed');
    // RFC 1939 §6: "-ERR some deleted messages not removed".
    s.close(err(`Some deleted messages were not removed (ref ${ref})`, 'SYS/TEMP'), 'quit (update failed)');
    return;
  }
  s.close(ok(`Bye, ${removed} messages removed`), 'quit');
}

async function applyDeletes(store: MailStore, account: Account, maildrop: Maildrop, uids: Uid[]): Promise<number> {
  // The policy is read now: a change made while the session was open applies at its QUIT.
  const policy = (await store.getAccount(account.id))?.pop3DeletePolicy ?? account.pop3DeletePolicy;
  // Messages that IMAP already expunged or moved are not there to remove.
  const present = (await store.getEntries(maildrop.mailboxId, uids)).map((e) => e.uid);
  if (present.length === 0) return 0;
  switch (policy) {
    case 'expunge':
      // The same operation as IMAP EXPUNGE: IMAP sessions get EXPUNGE responses.
      return (await store.expunge(maildrop.mailboxId, present)).length;
    case 'trash': {
      const trash = await trashMailbox(store, account);
      return (await store.move(maildrop.mailboxId, present, trash)).expunged.length;
    }
    case 'hide':
      // Kept for IMAP, never listed by POP3 again.
      await store.hideFromPop3(maildrop.mailboxId, present);
      return present.length;
  }
}

async function trashMailbox(store: MailStore, account: Account): Promise<MailboxId> {
  const boxes = await store.listMailboxes(account.id);
  const trash = boxes.find((b) => b.specialUse === '\\Trash') ?? boxes.find((b) => b.name === 'Trash');
  if (trash !== undefined) return trash.id;
  return (await store.createMailbox(account.id, 'Trash', '\\Trash')).id;
}
