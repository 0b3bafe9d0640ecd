/**
 * IDLE (RFC 2177, RFC 9051 §6.3.13): changes to the selected mailbox are pushed as they happen
 * (the store's feed wakes the session in the same turn of the event loop as the commit; the push
 * follows PUSH_DELAY_MS later, with whatever else changed meanwhile) until the client sends DONE.
 */
import type { Done } from '../commands.js';
import { BadError, ByeError } from '../errors.js';
import type { Session } from '../session.js';

export async function idle(s: Session): Promise<Done> {
  await s.continue('idling');
  // Whatever changed before IDLE started is sent now, not at the next change.
  if (s.idlePushesSelected) await s.syncView(true);
  await s.flushNotifications(true);
  // One read for the whole IDLE, raced against each change in turn. No wrapper promises around
  // them: a session may wait here for hours, and thousands of them do (issue #7, memory per
  // idle connection). The line resolves to a Buffer or null, a change to undefined.
  const line = s.readLine();
  for (;;) {
    const got = await Promise.race([line, s.waitForChange()]);
    if (got === undefined) {
      if (s.isShuttingDown) throw new ByeError('Server shutting down');
      // Changes come in bursts (another client's STORE then EXPUNGE, a message delivered to a
      // shared mailbox, a large MOVE committed in batches): the push waits a moment for the rest
      // of the burst, so that one sync and one write carry it, not one each.
      const early = await Promise.race([line, pause(PUSH_DELAY_MS)]);
      if (early !== PAUSED) return done(s, early);
      // Changes from here on wake the next turn; those before are in the sync below.
      s.clearChange();
      // RFC 5465 §4: with NOTIFY, IDLE sends exactly the events NOTIFY asked for.
      if (s.idlePushesSelected) await s.syncView(true);
      await s.flushNotifications(true);
      continue;
    }
    return done(s, got);
  }
}

/** How long a push waits after the first change of a burst. */
const PUSH_DELAY_MS = 30;
const PAUSED = Symbol('paused');

function pause(ms: number): Promise<typeof PAUSED> {
  return new Promise((resolve) => setTimeout(() => resolve(PAUSED), ms));
}

/** The client's line ended the IDLE: DONE, or anything else (BAD), or the connection's end. Changes
 * not pushed yet go with the next command's responses. */
function done(s: Session, got: Buffer | null): Done {
  s.cancelChangeWait();
  if (got === null) throw new ByeError('Connection closed');
  if (got.toString('latin1').toUpperCase() !== 'DONE') throw new BadError('Expected DONE');
  return { text: 'IDLE terminated' };
}
