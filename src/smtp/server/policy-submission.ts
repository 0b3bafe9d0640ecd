/**
 * Policy for mail from our own users (submission, RFC 6409): the session guarantees the client
 * authenticated; this policy checks the sender and the author fields, fixes the header up, and
 * routes recipients.
 *
 * Invariants:
 * - The MAIL FROM address, every From address and the Sender address are ones the account may
 *   send as (store.sendableAddresses, plus configured send-as grants), compared without regard to
 *   case; else 553 5.7.1 (DESIGN.md invariant 5). The null reverse-path is refused for users.
 * - The message is prepared once (Bcc removed, Date and Message-ID added when missing, RFC 6409
 *   §8) and DKIM-signed once, when a signer is given, before it is routed: the local copy and the
 *   queued copy are the same bytes.
 * - Local recipients are delivered now, through the same path as inbound mail; remote ones go to
 *   the `onSubmit` hook, which answers 451 4.3.0 until the outbound queue exists. Nothing is
 *   acknowledged before both are durable.
 */
import { randomBytes } from 'node:crypto';
import type { ServerContext } from '../../context.js';
import { contextDelivery, type LocalDelivery } from '../../delivery/local.js';
import { headerAuthors, prepareSubmission, type HeaderAuthors } from '../../mail/submission.js';
import type { DkimSigningService } from '../../msgauth/dkim-sign.js';
import type { Account } from '../../store/types.js';
import { R, reply, type Reply } from '../protocol/reply.js';
import { deliveryReport, type AcceptedRecipient, type DataOutcome, type SessionInfo, type SmtpPolicy, type Transaction } from './policy.js';
import { storeRefusal } from './store-errors.js';
import { createMemoryEventLimiter, createSharedEventLimiter } from '../../auth/rate-limit.js';
import { receivedField } from './trace.js';

/**
 * Hands a submitted message for remote recipients to the outbound queue. It must resolve only
 * when the message is durably queued, and returns the reply for those recipients.
 */
export type SubmitHook = (input: {
  session: SessionInfo;
  tx: Transaction;
  recipients: AcceptedRecipient[];
  /** The prepared message with our Received field prepended. */
  raw: Buffer;
  /** True when `raw` already carries our DKIM signatures (the queue must not sign again). */
  signed?: boolean;
}) => Promise<Reply>;

/** Until the outbound queue exists: remote recipients are refused, temporarily. */
export const outboundNotConfigured: SubmitHook = async () => reply(451, '4.3.0', 'Outbound delivery not configured');

/**
 * Send-as grants: account address -> what it may send as besides its own addresses and aliases.
 * An entry is an address ("team@example.com") or a whole domain ("@example.com").
 */
export type SendAsGrants = Readonly<Record<string, readonly string[]>>;

export interface SubmissionPolicyOptions {
  onSubmit?: SubmitHook | undefined;
  delivery?: LocalDelivery;
  /** Signs submitted mail with the From domain's keys before routing; absent: the queue signs. */
  dkim?: DkimSigningService | undefined;
  sendAs?: SendAsGrants | undefined;
  /** Remote recipients an account may send to in 24 hours; 0 or absent: no limit. */
  maxRemoteRecipientsPerDay?: number | undefined;
}

const DAY_MS = 24 * 60 * 60 * 1000;

const notOwned = (what: string): Reply => reply(553, '5.7.1', `${what} not owned by the user`);

/** Can `account` send as `address`? Its own addresses and aliases, or a grant. */
async function mayUse(ctx: ServerContext, grants: Map<string, string[]>, account: Account, addresses: readonly string[]): Promise<boolean> {
  const owned = new Set((await ctx.store.sendableAddresses(account.id)).map((a) => a.toLowerCase()));
  const granted = grants.get(account.address.toLowerCase()) ?? [];
  return addresses.every((a) => {
    const wanted = a.toLowerCase();
    if (owned.has(wanted)) return true;
    const at = wanted.lastIndexOf('@');
    if (at <= 0) return false;
    return granted.includes(wanted) || granted.includes(wanted.slice(at));
  });
}

/**
 * RFC 5322 §3.6.2 author fields of a submitted message, checked against what the account may
 * send as. null when they pass.
 */
async function checkAuthors(ctx: ServerContext, grants: Map<string, string[]>, account: Account, a: HeaderAuthors): Promise<Reply | null> {
  // RFC 5322 §3.6: exactly one From field, at most one Sender field.
  if (a.fromFields === 0) return reply(550, '5.6.0', 'Message has no From header field');
  if (a.fromFields > 1) return reply(550, '5.6.0', 'Message has more than one From header field');
  if (a.senderFields > 1) return reply(550, '5.6.0', 'Message has more than one Sender header field');
  if (a.from.length === 0) return notOwned('From header address');
  // RFC 5322 §3.6.2: a From with several mailboxes needs a Sender with one.
  if (a.from.length > 1 && a.senderFields === 0) return reply(550, '5.6.0', 'From header with several addresses needs a Sender header field');
  if (a.senderFields === 1 && a.sender.length !== 1) return reply(550, '5.6.0', 'Sender header field must hold one address');
  // DESIGN.md invariant 5: an authenticated user sends only as addresses they own, in the
  // header as in the envelope (what the recipient sees and what DMARC checks is the header).
  if (!(await mayUse(ctx, grants, account, a.from))) return notOwned('From header address');
  if (!(await mayUse(ctx, grants, account, a.sender))) return notOwned('Sender header address');
  return null;
}

function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase();
}

/** The remote recipients a local one forwards to, with its DSN requests; ORCPT names the
 * address the user wrote (RFC 3461 §4.2). */
function forwardedRecipients(r: AcceptedRecipient): AcceptedRecipient[] {
  return (r.forwards ?? []).map((target) => {
    const at = target.lastIndexOf('@');
    return {
      mailbox: { local: target.slice(0, at), domain: target.slice(at + 1), literal: false, utf8: /[^\x00-\x7f]/.test(target), address: target },
      address: target,
      params: { notify: r.params.notify, orcpt: r.params.orcpt ?? { type: 'rfc822', address: r.address } },
      accounts: [],
      remote: true,
    };
  });
}

export function createSubmissionPolicy(ctx: ServerContext, options: SubmissionPolicyOptions = {}): SmtpPolicy {
  const delivery = options.delivery ?? contextDelivery(ctx);
  const onSubmit = options.onSubmit ?? outboundNotConfigured;
  const grants = new Map(Object.entries(options.sendAs ?? {}).map(([k, v]) => [k.toLowerCase(), v.map((g) => g.toLowerCase())]));
  // Remote recipients per account and day, shared by the nodes when the store offers counters
  // (a stolen password used on every node at once still meets one limit).
  const perDay = options.maxRemoteRecipientsPerDay ?? 0;
  const sent =
    perDay <= 0
      ? null
      : ctx.counters
        ? createSharedEventLimiter(ctx.counters, 'submit-rcpt', { limit: perDay, windowMs: DAY_MS })
        : createMemoryEventLimiter({ limit: perDay, windowMs: DAY_MS });
  const limited = ctx.metrics?.counter('facteur_submission_limited_total', 'Remote recipients refused because the account reached its daily sending limit.');

  return {
    async onMailFrom(session, from) {
      const account = session.account;
      if (!account) return R.authRequired();
      if (from === null) return notOwned('Sender address');
      // DESIGN.md invariant 5: an authenticated user sends only as addresses they own
      if (!(await mayUse(ctx, grants, account, [from.address]))) return notOwned('Sender address');
      return null;
    },

    async onRcptTo(session, tx, to, params) {
      const check = to.literal ? null : await delivery.lookupRecipient(to.domain, to.address, tx.params.size);
      if (check !== null && check.kind !== 'not-local') {
        if (check.kind === 'unknown') return { ok: false, reply: R.unknownUser() };
        if (check.kind === 'disabled') return { ok: false, reply: reply(550, '5.2.1', 'Mailbox disabled') };
        if (check.kind === 'over-quota') return { ok: false, reply: R.overQuota() };
        return { ok: true, recipient: { mailbox: to, address: to.address, params, accounts: check.accounts, forwards: check.forwards, remote: false } };
      }
      const account = session.account;
      if (sent !== null && account) {
        // Those sent in the last 24 hours, and those of this transaction not sent yet.
        const pending = tx.recipients.filter((r) => r.remote).length;
        if ((await sent.count(String(account.id))) + pending >= perDay) {
          ctx.log.warn({ session: session.id, account: account.address, limit: perDay }, 'daily sending limit reached: remote recipient deferred');
          limited?.inc();
          // RFC 3463 4.7.1: a temporary policy refusal; the window moves on.
          return { ok: false, reply: reply(450, '4.7.1', `Sending limit reached (${perDay} outside recipients in 24 hours), try again later`) };
        }
      }
      return { ok: true, recipient: { mailbox: to, address: to.address, params, accounts: [], remote: true } };
    },

    async onData(session, tx, message): Promise<DataOutcome> {
      const refuse = (r: Reply): DataOutcome => ({ perRecipient: tx.recipients.map(() => r), summary: r });
      const account = session.account;
      if (!account) return refuse(R.authRequired());
      const authors = headerAuthors(message.raw);
      const refusal = await checkAuthors(ctx, grants, account, authors);
      if (refusal) return refuse(refusal);
      const messageId = randomBytes(8).toString('hex');
      // RFC 6409 §8: one preparation for every recipient, local or remote.
      const prepared = prepareSubmission(message.raw, { hostname: ctx.hostname, now: message.receivedAt });
      const trace = receivedField({ session, tx, hostname: ctx.hostname, messageId, protocol: message.protocol, date: message.receivedAt });
      let raw: Buffer = Buffer.concat([Buffer.from(trace, 'utf8'), prepared]);
      // RFC 6376 §5.4: signed with the From domain's keys (checkAuthors found one From address);
      // the signature goes above the Received field, like the queue's own signing would put it.
      const fromAddress = authors.from[0];
      if (options.dkim && fromAddress) raw = await options.dkim.sign(raw, domainOf(fromAddress));
      // A local recipient that forwards (an alias target in another domain) adds its targets to
      // the remote recipients: sent as this user's mail, signed, no rewriting needed.
      const remote = [...tx.recipients.filter((r) => r.remote), ...tx.recipients.flatMap(forwardedRecipients)];
      // Remote first: when the queue refuses, nothing is delivered locally and the client may
      // retry the whole message without creating duplicates.
      if (remote.length > 0) {
        const r = await onSubmit({ session, tx, recipients: remote, raw, signed: options.dkim !== undefined });
        if (r.code >= 400) return refuse(r);
        // Counted once queued: a refused message sent nothing.
        if (sent !== null) await Promise.all(remote.map(() => sent.hit(String(account.id))));
      }
      const local = tx.recipients.filter((r) => !r.remote && r.accounts.length > 0);
      if (local.length > 0) {
        let outcomes;
        try {
          // The reply is 250 whenever remote recipients were queued: a local one not stored is
          // then reported to the sender (delivery/local.ts), as is one that asked NOTIFY=SUCCESS.
          outcomes = await delivery.deliver(raw, local.flatMap((r) => r.accounts), undefined, deliveryReport(tx, local, message.receivedAt, remote.length > 0));
        } catch (err) {
          if (remote.length === 0) return refuse(storeRefusal(err));
          // Already queued for the remote recipients: a failure reply now (even 451 for an
          // unexpected error) would make the client send them a second copy, so the local
          // failure is reported to the sender as a DSN (delivery/local.ts) and logged instead.
          ctx.log.warn({ session: session.id, messageId, err }, 'submitted message queued but not stored locally');
          outcomes = new Map();
        }
        for (const o of outcomes.values()) ctx.metrics?.counter('facteur_deliveries_total', 'Local deliveries, by source and result.').inc({ source: 'submission', result: o.ok ? 'delivered' : o.reason });
        if (![...outcomes.values()].some((o) => o.ok) && remote.length === 0) {
          return refuse(R.overQuota());
        }
      }
      const ok = reply(250, '2.0.0', `Accepted ${messageId}`);
      return { perRecipient: tx.recipients.map(() => ok), summary: ok };
    },
  };
}
