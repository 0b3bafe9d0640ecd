/**
 * The submission server's `onSubmit` hook on the outbound queue: what the composition root
 * passes as `ListenerEnv.onSubmit`. The reply is 250 only once the message is durably queued
 * (DESIGN.md invariant 1); any failure to queue is a 451 with a correlation id, never a lie.
 *
 * Only types come from the SMTP layer: the queue does not depend on the protocol code.
 */
import type { Logger } from 'pino';
import { newId } from '../log/logger.js';
import type { SubmitHook } from '../smtp/server/policy-submission.js';
import type { OutboundQueue } from './outbound-queue.js';
import type { DsnNotify, RecipientDsn } from './types.js';

export function createSubmitHook(queue: OutboundQueue, log: Logger): SubmitHook {
  return async ({ session, tx, recipients, raw, signed }) => {
    const perRecipient: Record<string, RecipientDsn> = {};
    for (const r of recipients) {
      const { notify, orcpt } = r.params;
      if (!notify && !orcpt) continue;
      perRecipient[r.address] = {
        // RFC 3461 §4.1: NEVER stands alone and means no report at all.
        ...(notify ? { notify: notify.includes('NEVER') ? [] : (notify as DsnNotify[]) } : {}),
        ...(orcpt ? { orcpt: `${orcpt.type};${orcpt.address}` } : {}),
      };
    }
    try {
      const { id } = await queue.enqueue(
        raw,
        {
          from: tx.from?.address ?? '',
          to: recipients.map((r) => r.address),
          dsn: {
            ...(tx.params.ret ? { ret: tx.params.ret } : {}),
            ...(tx.params.envid ? { envid: tx.params.envid } : {}),
            recipients: perRecipient,
          },
        },
        // Mail from our own users is signed with the From domain's DKIM keys, here unless the
        // submission server signed it already (once for the local and the remote copies).
        // RFC 8689 §4.1: a REQUIRETLS message keeps the requirement on every hop.
        { sign: signed !== true, ...(tx.params.requireTls ? { requireTls: true } : {}) },
      );
      return { code: 250, enhanced: '2.0.0', lines: [`Queued as ${id}`] };
    } catch (err) {
      const ref = newId();
      log.error({ err, cid: session.id, ref }, 'cannot queue a submitted message');
      return { code: 451, enhanced: '4.3.0', lines: [`Cannot queue the message now, try again later (ref ${ref})`] };
    }
  };
}
