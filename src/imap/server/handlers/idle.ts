/**
 * IDLE (RFC 2177, RFC 9051 §6.3.13): changes to the selected mailbox are pushed as they happen
 * (the store's feed wakes the session in the same turn of the event loop as the commit) until
 * the client sends DONE.
 */
import type { Done } from '../commands.js';
import { BadError, ByeError } from '../errors.js';
import type { Session } from '../session.js';

export async function idle(s: Session): Promise<Done> {
  await s.continue('idling');
  // Whatever changed before IDLE started is sent now, not at the next change.
  if (s.idlePushesSelected) await s.syncView(true);
  await s.flushNotifications(true);
  let line: Promise<Buffer | null> | null = null;
  for (;;) {
    line ??= s.readLine();
    const got = await Promise.race([line.then((l) => ({ l })), s.waitForChange().then(() => null)]);
    if (got === null) {
      if (s.isShuttingDown) throw new ByeError('Server shutting down');
      // RFC 5465 §4: with NOTIFY, IDLE sends exactly the events NOTIFY asked for.
      if (s.idlePushesSelected) await s.syncView(true);
      await s.flushNotifications(true);
      continue;
    }
    s.cancelChangeWait();
    line = null;
    if (got.l === null) throw new ByeError('Connection closed');
    if (got.l.toString('latin1').toUpperCase() !== 'DONE') throw new BadError('Expected DONE');
    return { text: 'IDLE terminated' };
  }
}
