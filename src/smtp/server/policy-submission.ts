/**
 * Policy for mail from our own users (submission, RFC 6409): the session guarantees the client
 * authenticated; this policy checks the sender and routes recipients.
 *
 * Invariants:
 * - The MAIL FROM address is one the account may send as (store.sendableAddresses), else
 *   553 5.7.1 (DESIGN.md invariant 5); the null reverse-path is refused for users.
 * - Local recipients are delivered now, through the same path as inbound mail; remote ones go to
 *   the `onSubmit` hook, which answers 451 4.3.0 until the outbound queue exists.
 */
import { randomBytes } from 'node:crypto';
import type { ServerContext } from '../../context.js';
import { createLocalDelivery, type LocalDelivery } from '../../delivery/local.js';
import { R, reply, type Reply } from '../protocol/reply.js';
import type { AcceptedRecipient, DataOutcome, SessionInfo, SmtpPolicy, Transaction } from './policy.js';
import { storeRefusal } from './store-errors.js';
import { receivedField } from './trace.js';

/**
 * Hands a submitted message for remote recipients to the outbound queue. It must resolve only
 * when the message is durably queued, and returns the reply for those recipients.
 */
export type SubmitHook = (input: {
  session: SessionInfo;
  tx: Transaction;
  recipients: AcceptedRecipient[];
  /** The message with our Received field prepended. */
  raw: Buffer;
}) => Promise<Reply>;

/** Until the outbound queue exists: remote recipients are refused, temporarily. */
export const outboundNotConfigured: SubmitHook = async () => reply(451, '4.3.0', 'Outbound delivery not configured');

export interface SubmissionPolicyOptions {
  onSubmit?: SubmitHook | undefined;
  delivery?: LocalDelivery;
}

export function createSubmissionPolicy(ctx: ServerContext, options: SubmissionPolicyOptions = {}): SmtpPolicy {
  const delivery = options.delivery ?? createLocalDelivery(ctx.store);
  const onSubmit = options.onSubmit ?? outboundNotConfigured;

  return {
    async onMailFrom(session, from) {
      const account = session.account;
      if (!account) return R.authRequired();
      if (from === null) return reply(553, '5.7.1', 'Sender address not owned by the user');
      const owned = await ctx.store.sendableAddresses(account.id);
      const wanted = from.address.toLowerCase();
      // DESIGN.md invariant 5: an authenticated user sends only as addresses they own
      if (!owned.some((a) => a.toLowerCase() === wanted)) return reply(553, '5.7.1', 'Sender address not owned by the user');
      return null;
    },

    async onRcptTo(_session, tx, to, params) {
      if (!to.literal && (await delivery.isLocalDomain(to.domain))) {
        const check = await delivery.checkRecipient(to.address, tx.params.size);
        if (check.kind === 'unknown') return { ok: false, reply: R.unknownUser() };
        if (check.kind === 'disabled') return { ok: false, reply: reply(550, '5.2.1', 'Mailbox disabled') };
        if (check.kind === 'over-quota') return { ok: false, reply: R.overQuota() };
        return { ok: true, recipient: { mailbox: to, address: to.address, params, accounts: check.accounts, remote: false } };
      }
      return { ok: true, recipient: { mailbox: to, address: to.address, params, accounts: [], remote: true } };
    },

    async onData(session, tx, message): Promise<DataOutcome> {
      const messageId = randomBytes(8).toString('hex');
      const trace = receivedField({ session, tx, hostname: ctx.hostname, messageId, protocol: message.protocol, date: message.receivedAt });
      const raw = Buffer.concat([Buffer.from(trace, 'utf8'), message.raw]);
      const remote = tx.recipients.filter((r) => r.remote);
      // Remote first: when the queue refuses, nothing is delivered locally and the client may
      // retry the whole message without creating duplicates.
      if (remote.length > 0) {
        const r = await onSubmit({ session, tx, recipients: remote, raw });
        if (r.code >= 400) return { perRecipient: tx.recipients.map(() => r), summary: r };
      }
      const local = tx.recipients.filter((r) => !r.remote);
      if (local.length > 0) {
        let outcomes;
        try {
          outcomes = await delivery.deliver(raw, local.flatMap((r) => r.accounts));
        } catch (err) {
          const r = storeRefusal(err);
          // Already queued for the remote recipients: a failure reply now would make the client
          // send them a second copy, so the local refusal is logged instead.
          if (remote.length === 0) return { perRecipient: tx.recipients.map(() => r), summary: r };
          ctx.log.warn({ session: session.id, messageId, reply: r.code }, 'submitted message queued but not stored locally');
          outcomes = new Map();
        }
        for (const o of outcomes.values()) ctx.metrics?.counter('facteur_deliveries_total', 'Local deliveries, by source and result.').inc({ source: 'submission', result: o.ok ? 'delivered' : o.reason });
        if (![...outcomes.values()].some((o) => o.ok) && remote.length === 0) {
          return { perRecipient: tx.recipients.map(() => R.overQuota()), summary: R.overQuota() };
        }
      }
      const ok = reply(250, '2.0.0', `Accepted ${messageId}`);
      return { perRecipient: tx.recipients.map(() => ok), summary: ok };
    },
  };
}
