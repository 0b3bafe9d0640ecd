/**
 * Policy for mail arriving from other servers: MX (port 25) and LMTP.
 *
 * Invariants:
 * - Only recipients of local domains are accepted; anything else is 554 5.7.1, whatever the
 *   spelling (source routes are dropped by the parser, "%" and quoted local parts are plain local
 *   parts here, address literals are never local). No relay without authentication (DESIGN.md
 *   invariant 5).
 * - The message is authenticated (mode 'mx', when a resolver is given) on the bytes as received,
 *   then forged Authentication-Results fields are removed, and Return-Path, Received and our
 *   Authentication-Results are prepended; the result is stored once for every account reached.
 * - 250 is returned only after store.deliver resolved (durable), and after the forwarded copy
 *   was queued when a recipient forwards (an alias target in another domain). Forwarding comes
 *   first: if the queue refuses, nothing is stored and the client's retry duplicates nothing.
 *   The forwarded copy carries our Received and Authentication-Results fields, not Return-Path,
 *   and its envelope sender is rewritten (delivery/srs.ts). A message that would go to Junk is
 *   not forwarded.
 * - A message that has passed MAX_HOPS Received fields is refused (RFC 5321 §6.3: a loop).
 * - MX (senderReports): the DSNs the reply cannot carry are sent before it (delivery/local.ts):
 *   "delivered" on NOTIFY=SUCCESS (only to a MAIL FROM that SPF verified, when messages are
 *   authenticated), "failed" for a recipient not stored when another one was and the reply is
 *   250. LMTP replies per recipient and leaves reports to its client (RFC 2033).
 */
import type { AccountId } from '../../lib/brand.js';
import type { ServerContext } from '../../context.js';
import type { Resolver } from '../../dns/resolver.js';
import { contextDelivery, type LocalDelivery } from '../../delivery/local.js';
import {
  createInboundAuthenticator,
  removeOwnAuthResults,
  type DmarcRejectAction,
  type InboundAuthenticator,
} from '../../msgauth/inbound.js';
import { R, reply, type Reply } from '../protocol/reply.js';
import type { DeliveryOutcome } from '../../store/types.js';
import type { ArcSealInput } from '../../msgauth/dkim-sign.js';
import { deliveryReport, type DataOutcome, type SmtpPolicy } from './policy.js';
import { storeRefusal } from './store-errors.js';
import { receivedField, returnPathField } from './trace.js';
import { ipKey } from '../../auth/authenticator.js';
import { createMemoryEventLimiter, createSharedEventLimiter } from '../../auth/rate-limit.js';
import { createRandomHex } from '../../lib/random-hex.js';
import { createDnsblChecker } from './dnsbl.js';
import { createGreylist, greylistFileError, type Greylist } from './greylist.js';

export type { DmarcRejectAction };

/** RFC 5321 §6.3: a message with this many Received fields is taken to be looping (Postfix's
 * hopcount_limit). */
export const MAX_HOPS = 50;

/** How many Received fields the message's header has. */
function receivedFields(raw: Buffer): number {
  const end = raw.indexOf('\r\n\r\n');
  const head = raw.subarray(0, end < 0 ? raw.length : end + 2).toString('latin1');
  return (head.match(/^received:/gim) ?? []).length;
}

export interface InboundPolicyOptions {
  /** DNS for SPF/DKIM/DMARC/ARC; null turns message authentication off (LMTP, tests). */
  resolver: Resolver | null;
  dmarcReject: DmarcRejectAction;
  delivery?: LocalDelivery;
  /** Recipient probing limit per client IP (see RCPT_PROBES_MAX_DEFAULT); null: none (LMTP,
   * whose clients are our own MTAs). */
  recipientProbes?: { limit: number; windowMs: number; now?: () => number } | null;
  /** Send the DSNs the reply cannot carry (MX; not LMTP, see the invariants). */
  senderReports?: boolean;
  /** MX: DNS blocklists (dnsbl.ts); a listed client's MAIL gets 554 5.7.1. */
  dnsbl?: { zones: readonly string[]; resolver: Resolver } | null;
  /** MX: greylisting (greylist.ts); a new triplet's RCPT gets 451 4.7.1. exemptPrivate (default
   * true): loopback and private clients pass. Or a greylist kept elsewhere (an SMTP worker
   * process asks its owner's). file: where the triplets are kept across restarts (without
   * shared counters). */
  greylist?: { delayMs: number; exemptPrivate?: boolean; file?: string | null } | Greylist | null;
}

export function createInboundPolicy(ctx: ServerContext, options: InboundPolicyOptions): SmtpPolicy {
  const delivery = options.delivery ?? contextDelivery(ctx);
  const authenticator: InboundAuthenticator | null = options.resolver
    ? createInboundAuthenticator({ resolver: options.resolver, hostname: ctx.hostname, dmarcReject: options.dmarcReject })
    : null;

  // Shared by the nodes when the store offers it: a harvester spreading its RCPTs over the nodes
  // behind a balancer meets the same limit.
  const probes = !options.recipientProbes
    ? null
    : ctx.counters
      ? createSharedEventLimiter(ctx.counters, 'rcpt-probe', options.recipientProbes)
      : createMemoryEventLimiter(options.recipientProbes);
  const randomHex = createRandomHex();
  const dnsbl = options.dnsbl
    ? createDnsblChecker({
        ...options.dnsbl,
        onError: (zone, ip, err) => ctx.log.warn({ zone, ip, err: (err as Error).message }, 'DNS blocklist not answering: client not checked against it'),
      })
    : null;
  const dnsblRefusals = ctx.metrics?.counter('facteur_dnsbl_refusals_total', 'MAIL commands refused because the client is on a DNS blocklist, by zone.');
  const greylist = !options.greylist
    ? null
    : 'check' in options.greylist
      ? options.greylist
      : createGreylist({ ...options.greylist, counters: ctx.counters ?? null, onFileError: greylistFileError(ctx.log) });
  const greylisted = ctx.metrics?.counter('facteur_greylisted_total', 'RCPT commands deferred by greylisting (451 4.7.1).');
  const forwardedCount = ctx.metrics?.counter('facteur_forwarded_recipients_total', 'Remote addresses queued a forwarded copy (aliases to other domains, bounces to rewritten senders).');

  return {
    async close() {
      await greylist?.close();
    },

    async onMailFrom(session) {
      if (dnsbl === null) return null;
      const v = await dnsbl.check(session.remoteAddress);
      if (!v.listed) return null;
      ctx.log.info({ session: session.id, ip: session.remoteAddress, zone: v.zone, code: v.code }, 'client on a DNS blocklist: MAIL refused');
      dnsblRefusals?.inc({ zone: v.zone });
      // RFC 5782 §3: the reply names the list, and its reason when it gives one.
      return reply(554, '5.7.1', `Client host [${session.remoteAddress}] blocked using ${v.zone}${v.reason ? `: ${v.reason}` : ''}`);
    },

    async onRcptTo(session, tx, to, params) {
      // Address literals are never one of our domains: no relay through [ip] tricks.
      if (to.literal) return { ok: false, reply: R.relayDenied() };
      // The domain and the address in one lookup; the probing limit is applied before its answer
      // is used.
      const check = await delivery.lookupRecipient(to.domain, to.address, tx.params.size);
      if (check.kind === 'not-local') return { ok: false, reply: R.relayDenied(), notLocal: true };
      const client = ipKey(session.remoteAddress);
      // RFC 3463 4.7.1: a temporary policy refusal; the same for every local recipient, so a
      // harvester learns nothing more until the window has passed.
      if (probes && (await probes.limited(client))) {
        ctx.log.info({ session: session.id, ip: client }, 'recipient probing limit reached: RCPT deferred');
        return { ok: false, reply: reply(450, '4.7.1', 'Too many unknown recipients from your address, try again later') };
      }
      switch (check.kind) {
        case 'unknown':
          await probes?.hit(client);
          return { ok: false, reply: R.unknownUser() };
        case 'disabled':
          return { ok: false, reply: reply(550, '5.2.1', 'Mailbox disabled') };
        case 'over-quota':
          // RFC 3463 4.2.2: mailbox full (temporary: the user may make room)
          return { ok: false, reply: R.overQuota() };
        case 'ok':
          if (greylist) {
            // RFC 6647 §4: after the recipient is known to be valid, a temporary refusal.
            const v = await greylist.check(session.remoteAddress, tx.from?.address ?? '', to.address);
            if (!v.pass) {
              ctx.log.info({ session: session.id, ip: session.remoteAddress, from: tx.from?.address ?? '', to: to.address }, 'greylisted');
              greylisted?.inc();
              return { ok: false, reply: reply(451, '4.7.1', `Greylisted, please try again in ${v.retryInSeconds} seconds`) };
            }
          }
          return { ok: true, recipient: { mailbox: to, address: to.address, params, accounts: check.accounts, forwards: check.forwards, remote: false } };
      }
    },

    async onData(session, tx, message): Promise<DataOutcome> {
      const refuse = (r: Reply): DataOutcome => ({ perRecipient: tx.recipients.map(() => r), summary: r });
      if (receivedFields(message.raw) >= MAX_HOPS) {
        ctx.log.warn({ session: session.id, from: tx.from?.address ?? '' }, 'message refused: too many Received fields (mail loop)');
        return refuse(reply(554, '5.4.6', `Too many hops (${MAX_HOPS} Received fields): mail loop`));
      }
      const messageId = randomHex(8);
      let mailbox: string | undefined;
      let authField = '';
      // What the forwarded copy is sealed with (RFC 8617): none without authentication, and
      // none for a chain that failed.
      let arc: ArcSealInput | null = null;
      // Backscatter: a success report goes to a MAIL FROM that SPF verified, when messages are
      // authenticated at all; a forged sender would otherwise get reports it never asked for.
      let successReports = true;
      if (authenticator) {
        const verdict = await authenticator.check({
          raw: message.raw,
          ip: session.remoteAddress,
          helo: session.helo,
          mailFrom: tx.from ? tx.from.address : null,
        });
        ctx.log.info(
          { session: session.id, spf: verdict.spf, dkim: verdict.dkim, dmarc: verdict.dmarc, arc: verdict.arc, action: verdict.action },
          'message authentication',
        );
        if (verdict.action === 'reject') {
          // RFC 7489 §6.7 / §10.1: a policy refusal with 550 5.7.1
          return refuse(reply(550, '5.7.1', 'Message refused: DMARC policy of the sender domain'));
        }
        if (verdict.action === 'junk') mailbox = 'Junk';
        authField = verdict.field;
        if (verdict.arc === null || verdict.arc === 'none' || verdict.arc === 'pass') arc = { cv: verdict.arc === 'pass' ? 'pass' : 'none', authResults: verdict.authResults };
        successReports = verdict.spf === 'pass';
      }
      const body = removeOwnAuthResults(message.raw, ctx.hostname);
      const received = authField + receivedField({ session, tx, hostname: ctx.hostname, messageId, protocol: message.protocol, date: message.receivedAt });
      const raw = Buffer.concat([Buffer.from(returnPathField(tx) + received, 'utf8'), body]);

      // Forwarding first (see the invariants).
      const forwarding = tx.recipients.filter((r) => r.forwards !== undefined && r.forwards.length > 0);
      let forwarded = false;
      if (forwarding.length > 0 && mailbox === undefined) {
        try {
          const queued = await delivery.forward(Buffer.concat([Buffer.from(received, 'utf8'), body]), {
            sender: tx.from?.address ?? '',
            envid: tx.params.envid,
            ret: tx.params.ret,
            recipients: forwarding.map((r) => ({ address: r.address, notify: r.params.notify, orcpt: r.params.orcpt ? `${r.params.orcpt.type};${r.params.orcpt.address}` : null })),
            arc,
          });
          forwarded = queued > 0;
          forwardedCount?.inc({}, queued);
          ctx.log.info({ session: session.id, messageId, forwards: queued }, 'message forwarded');
        } catch (err) {
          ctx.log.error({ err, session: session.id, messageId }, 'cannot queue a forwarded copy');
          return refuse(reply(451, '4.3.0', 'Cannot forward the message now, try again later'));
        }
      } else if (forwarding.length > 0) {
        ctx.log.info({ session: session.id, messageId, mailbox }, 'message not forwarded: it goes to Junk');
      }

      // Local copies. Forward-only recipients are not in the report: the queue reports on their
      // copies.
      const local = tx.recipients.filter((r) => r.accounts.length > 0);
      const accounts: AccountId[] = local.flatMap((r) => r.accounts);
      let outcomes = new Map<AccountId, DeliveryOutcome>();
      if (accounts.length > 0) {
        // A report can be owed only to a recipient that asked NOTIFY=SUCCESS, or for a recipient
        // not stored beside one that was (or beside a forwarded copy): one recipient without
        // SUCCESS needs none (its failure is the reply), and the request then stays off the
        // worker's channel.
        const mayReport = local.length > 1 || forwarded || (successReports && local.some((r) => r.params.notify?.includes('SUCCESS')));
        const report = options.senderReports && tx.from && mayReport ? deliveryReport(tx, local, message.receivedAt, forwarded, successReports) : undefined;
        try {
          outcomes = await delivery.deliver(raw, accounts, mailbox, report);
        } catch (err) {
          // Once a copy is queued, a failure reply would make the client send it again: the
          // local failure is reported to the sender (delivery/local.ts) and logged instead.
          if (!forwarded) return refuse(storeRefusal(err));
          ctx.log.warn({ session: session.id, messageId, err }, 'message forwarded but not stored locally');
        }
      }
      for (const o of outcomes.values()) ctx.metrics?.counter('facteur_deliveries_total', 'Local deliveries, by source and result.').inc({ source: 'smtp', result: o.ok ? 'delivered' : o.reason });
      // A forward-only recipient whose copy did not go: Junk, or its alias changed since RCPT.
      const notForwarded = mailbox === 'Junk' ? reply(550, '5.7.1', 'Message not forwarded: it fails the sender domain\'s DMARC policy') : R.unknownUser();
      const perRecipient: Reply[] = tx.recipients.map((r) => {
        if (r.accounts.length === 0) return forwarded ? reply(250, '2.0.0', `Forwarded ${messageId}`) : notForwarded;
        const ok = r.accounts.some((id) => outcomes.get(id)?.ok) || (forwarded && session.mode !== 'lmtp' && (r.forwards?.length ?? 0) > 0);
        return ok ? reply(250, '2.0.0', `Delivered ${messageId}`) : R.overQuota();
      });
      const delivered = perRecipient.filter((r) => r.code === 250).length;
      if (delivered > 0 && delivered < perRecipient.length) {
        // SMTP has one reply for all recipients; the ones that failed after RCPT (quota filled
        // by a concurrent delivery) were reported to the sender (MX, delivery/local.ts) and are
        // logged. LMTP replies for each.
        ctx.log.warn({ session: session.id, messageId }, 'message delivered to some recipients only (quota)');
      }
      const summary = delivered > 0 ? reply(250, '2.0.0', `Delivered ${messageId}`) : (perRecipient.find((r) => r.code < 500) ?? perRecipient[0] ?? R.overQuota());
      ctx.log.info({ session: session.id, messageId, size: raw.length, recipients: tx.recipients.length, mailbox: mailbox ?? 'INBOX' }, 'message delivered');
      return { perRecipient, summary };
    },
  };
}
