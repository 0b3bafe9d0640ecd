/**
 * Local delivery: recipients to accounts, and one message to many mailboxes.
 *
 * Invariants:
 * - A message is parsed once (parseMessage) and written once (content-addressed), with an entry
 *   in each target account's mailbox, in one store transaction (store.deliver), which is durable
 *   when the promise resolves: the caller may acknowledge then and not before.
 * - An account reached by several recipients (aliases, plus-addressing) gets one copy.
 * - A recipient the SMTP reply cannot speak for is reported to the sender (RFC 3461, 3464),
 *   durably before deliver resolves, so before any 250: "delivered" when it asked NOTIFY=SUCCESS,
 *   "failed" when it was not stored but the message is acknowledged anyway (another recipient
 *   was stored, or submission queued the remote ones). Never to the null sender. A report that
 *   cannot be sent is logged and the delivery stands (failing it would duplicate the stored
 *   copies when the client sends again).
 * - Forwarding (an alias target outside the local domains; only with `forwarding`): the RCPT
 *   answer names the remote addresses; forward() queues one copy for them with the envelope
 *   sender rewritten (srs.ts), durably before it resolves. A reverse address (SRS0/SRS1 of ours)
 *   answers with the original sender as its forward, so bounces find their way back. The
 *   caller forwards before it stores (policy-inbound.ts), as submission queues before it stores.
 * - Automatic replies (`vacation`, vacation.ts) start after the store resolved and are not
 *   awaited: they never delay or fail a delivery.
 */
import type { Logger } from 'pino';
import type { Forwarding, ReportSender, ServerContext } from '../context.js';
import type { AccountId } from '../lib/brand.js';
import { parseMessage } from '../mail/parse.js';
import { buildDsn, type DsnRecipient } from '../queue/dsn.js';
import type { DsnNotify, RecipientDsn } from '../queue/types.js';
import type { Metrics } from '../lib/metrics.js';
import type { ArcSealInput } from '../msgauth/dkim-sign.js';
import type { VacationResponder } from './vacation.js';
import { domainOf } from '../store/names.js';
import type { RcptParams } from '../smtp/protocol/command.js';
import { StoreError, type DeliveryOutcome, type MailStore, type RecipientRoute } from '../store/types.js';

export type RecipientCheck =
  /** quotaChecked: a quota of one of the address's accounts was read, so the answer depends on
   * the message's size and the account's usage, not on the address alone. */
  | { kind: 'ok'; accounts: AccountId[]; forwards: string[]; quotaChecked: boolean }
  | { kind: 'unknown' }
  | { kind: 'disabled' }
  | { kind: 'over-quota' };

/** The answer to an RCPT (LocalDelivery.lookupRecipient). */
export type RecipientAnswer = RecipientCheck | { kind: 'not-local' };

/**
 * The envelope's DSN requests (RFC 3461) for one deliver call, from an SMTP transaction that will
 * answer the client with one reply (SMTP, submission). LMTP answers each recipient itself and
 * leaves reports to its client, so it passes none.
 */
export interface DeliveryReport {
  /** MAIL FROM; the null sender ('') is never reported to. */
  sender: string;
  envid: string | null;
  ret: 'FULL' | 'HDRS' | null;
  /** RFC 8689 §5: a report on a REQUIRETLS message returns its header only, whatever RET says. */
  requireTls: boolean;
  arrivalDate: number;
  /** The transaction's local recipients, with the accounts each reaches. */
  recipients: Array<{ address: string; notify: RcptParams['notify']; orcpt: string | null; accounts: AccountId[] }>;
  /** The reply is 250 whatever this delivery does (submission already queued remote
   * recipients): every failure is reported. Otherwise failures are reported only when another
   * recipient was stored, since a reply of 4xx to all leaves the message with the client. */
  acknowledged: boolean;
}

export interface LocalDelivery {
  /** The answer to an RCPT: 'not-local' when the domain (lowercased, no trailing dot) is not
   * ours, else the accounts the address reaches, with quota and status checked. One call, so one
   * round trip for an SMTP worker process. */
  lookupRecipient(domain: string, address: string, messageSize: number | null): Promise<RecipientAnswer>;
  /** Stores the message once for the accounts (deduplicated) in `mailbox` (INBOX by default),
   * then sends the DSNs `report` calls for (see the invariants). */
  deliver(raw: Buffer, accounts: readonly AccountId[], mailbox?: string, report?: DeliveryReport): Promise<Map<AccountId, DeliveryOutcome>>;
  /** Queues `raw` for the remote addresses the local `recipients` forward to, resolved again
   * here (see the invariants); durable when it resolves. Returns how many remote addresses were
   * queued (0: nothing forwards any more). */
  forward(raw: Buffer, request: ForwardRequest): Promise<number>;
}

/** The transaction whose local recipients forward: its envelope and those recipients, with
 * their DSN requests (passed on to the forwarded copies). */
export interface ForwardRequest {
  /** MAIL FROM as received ('' for the null sender: kept, never rewritten). */
  sender: string;
  envid: string | null;
  ret: 'FULL' | 'HDRS' | null;
  recipients: Array<{ address: string; notify: RcptParams['notify']; orcpt: string | null }>;
  /** What this server's message authentication found, to seal the copy with (RFC 8617); null:
   * not authenticated (LMTP), or the chain it came with failed. */
  arc: ArcSealInput | null;
}

/** DSNs of local delivery: who sends them, the name they are reported by, and where a report
 * that could not be sent is logged. */
export interface LocalReports {
  send: ReportSender;
  hostname: string;
  log: Pick<Logger, 'error'>;
  /** facteur_delivery_reports_total: recipients reported, by action. */
  metrics?: Metrics;
}

/** Local delivery over the context's store, sending DSNs through the context's report sender
 * and forwarding through the context's queue. */
export function contextDelivery(ctx: Pick<ServerContext, 'store' | 'reports' | 'hostname' | 'log' | 'forwarding' | 'metrics' | 'vacation'>): LocalDelivery {
  const reports = ctx.reports ? { send: ctx.reports, hostname: ctx.hostname, log: ctx.log, ...(ctx.metrics ? { metrics: ctx.metrics } : {}) } : undefined;
  return createLocalDelivery(ctx.store, reports, ctx.forwarding, ctx.log, ctx.vacation);
}

/** The envelope sender a stored copy records in its first field (port 25 and LMTP put it there). */
function returnPath(raw: Buffer): string | null {
  if (raw.length < 14 || raw.toString('latin1', 0, 12).toLowerCase() !== 'return-path:') return null;
  const line = raw.toString('latin1', 12, Math.min(raw.length, 12 + 400 + 2)).split('\r\n', 1)[0]!;
  const m = /^\s*<([^<>]*)>\s*$/.exec(line);
  return m ? m[1]! : null;
}

export function createLocalDelivery(
  store: MailStore,
  reports?: LocalReports,
  forwarding?: Forwarding,
  log?: Pick<Logger, 'info'>,
  vacation?: VacationResponder,
): LocalDelivery {
  /** What an address reaches; a reverse address of ours is read as the sender it stands for:
   * remote, or local (an SRS1 names at most one more of our SRS0 addresses). */
  const route = async (address: string, reversed = 0): Promise<RecipientRoute> => {
    if (forwarding && reversed < 2) {
      const back = forwarding.srs.reverse(address);
      if (back.kind === 'ok') {
        if (await store.isLocalDomain(domainOf(back.address))) return route(back.address, reversed + 1);
        return { accounts: [], forwards: [back.address] };
      }
      if (back.kind === 'invalid') log?.info({ address, reason: back.reason }, 'SRS address refused');
    }
    // The accounts with their rows in one read (an RCPT is on every message's path).
    const r = await store.resolveRecipientRoute(address.toLowerCase());
    return forwarding ? r : { accounts: r.accounts, forwards: [] };
  };

  /** The accounts an address of a local domain reaches, with quota and status checked, and the
   * remote addresses it forwards to. */
  const checkRecipient = async (address: string, messageSize: number | null): Promise<RecipientCheck> => {
    const { accounts, forwards } = await route(address);
    if (accounts.length === 0) return forwards.length > 0 ? { kind: 'ok', accounts: [], forwards, quotaChecked: false } : { kind: 'unknown' };
    const accepted: AccountId[] = [];
    let full = 0;
    let disabled = 0;
    let quotaChecked = false;
    for (const account of accounts) {
      const id = account.id;
      if (account.disabled) {
        disabled++;
        continue;
      }
      if (account.quotaBytes !== null || account.quotaMessages !== null) {
        quotaChecked = true;
        const usage = await store.quotaUsage(id);
        const incoming = messageSize ?? 0;
        if (
          (account.quotaBytes !== null && usage.bytes + incoming > account.quotaBytes) ||
          (account.quotaMessages !== null && usage.messages + 1 > account.quotaMessages)
        ) {
          full++;
          continue;
        }
      }
      accepted.push(id);
    }
    // An account that cannot take the message refuses the address even when it also forwards:
    // a temporary refusal keeps its copy with the sender, where accepting would lose it.
    if (accepted.length > 0) return { kind: 'ok', accounts: accepted, forwards, quotaChecked };
    if (full > 0) return { kind: 'over-quota' };
    if (disabled > 0) return { kind: 'disabled' };
    return { kind: 'unknown' };
  };

  return {
    async lookupRecipient(domain, address, messageSize) {
      if (!(await store.isLocalDomain(domain))) return { kind: 'not-local' };
      return checkRecipient(address, messageSize);
    },

    async deliver(raw, accounts, mailbox, report) {
      const unique = [...new Set(accounts)];
      const parsed = parseMessage(raw);
      const targets = unique.map((accountId) => (mailbox ? { accountId, mailbox } : { accountId }));
      const wanted = reports && report && report.sender !== '' ? report : null;
      let outcomes: Map<AccountId, DeliveryOutcome>;
      try {
        outcomes = new Map((await store.deliver(raw, parsed, targets)).map((o) => [o.accountId, o]));
      } catch (err) {
        // Nothing was stored. Only an acknowledged message owes its sender a report for it.
        if (wanted?.acknowledged) await sendReport(reports!, wanted, raw, new Map(), err);
        throw err;
      }
      if (wanted) await sendReport(reports!, wanted, raw, outcomes, null);
      if (vacation) {
        // After the 250's condition is met, not before it: a reply never delays the delivery.
        const sender = report?.sender ?? returnPath(raw);
        const stored = [...outcomes.values()].filter((o) => o.ok).map((o) => o.accountId);
        if (sender && stored.length > 0) void vacation.afterDelivery({ raw, parsed, sender, accounts: stored, mailbox });
      }
      return outcomes;
    },

    async forward(raw, request) {
      if (!forwarding) throw new StoreError('io', 'Cannot forward: no outbound queue');
      // One queued copy for every remote address (one durable write: queued whole or not at all),
      // its sender rewritten into the domain of the first local recipient that forwards; every
      // local domain's SPF record names this server.
      const to: string[] = [];
      const dsn: Record<string, RecipientDsn> = {};
      const seen = new Set<string>();
      let domain: string | null = null;
      for (const r of request.recipients) {
        for (const target of (await route(r.address)).forwards) {
          if (seen.has(target)) continue;
          seen.add(target);
          domain ??= domainOf(r.address).toLowerCase();
          to.push(target);
          dsn[target] = {
            // NOTIFY=NEVER is written as [] on the queue.
            ...(r.notify ? { notify: r.notify.filter((n): n is DsnNotify => n !== 'NEVER') } : {}),
            // RFC 3461 §4.2: the address the message was first sent to.
            orcpt: r.orcpt ?? `rfc822;${r.address}`,
          };
        }
      }
      if (domain === null) return 0;
      // Sealed for that domain, so that the next hop can trust what we found when the author's
      // signature does not survive there.
      const bytes = request.arc && forwarding.seal ? await forwarding.seal(raw, domain, request.arc) : raw;
      await forwarding.send(bytes, {
        from: forwarding.srs.forward(request.sender, domain),
        to,
        dsn: { ...(request.ret ? { ret: request.ret } : {}), ...(request.envid ? { envid: request.envid } : {}), recipients: dsn },
      });
      return to.length;
    },
  };
}

/** The DSN a delivery owes (see the invariants), if any, built and sent in one report. */
async function sendReport(reports: LocalReports, report: DeliveryReport, raw: Buffer, outcomes: Map<AccountId, DeliveryOutcome>, error: unknown): Promise<void> {
  const now = Date.now();
  const stored = (r: DeliveryReport['recipients'][number]): boolean => r.accounts.some((id) => outcomes.get(id)?.ok === true);
  const acknowledged = report.acknowledged || report.recipients.some(stored);
  const entries: DsnRecipient[] = [];
  for (const r of report.recipients) {
    const base = { address: r.address, orcpt: r.orcpt, remoteMta: null, lastAttempt: now, willRetryUntil: null };
    if (stored(r)) {
      if (r.notify?.includes('SUCCESS')) entries.push({ ...base, action: 'delivered', status: '2.0.0', diagnostic: null });
    } else if (acknowledged && (r.notify === null || r.notify.includes('FAILURE'))) {
      entries.push({ ...base, action: 'failed', ...failure(r.accounts.map((id) => outcomes.get(id)), error) });
    }
  }
  if (entries.length === 0) return;
  const dsn = buildDsn({
    reportingMta: reports.hostname,
    to: report.sender,
    envid: report.envid,
    arrivalDate: report.arrivalDate,
    recipients: entries,
    original: raw,
    // RFC 3461 §4.3: without RET the choice is ours; a success report needs only the header.
    ret: report.requireTls ? 'HDRS' : (report.ret ?? (entries.every((e) => e.action === 'delivered') ? 'HDRS' : null)),
    now,
  });
  try {
    await reports.send(dsn, report.sender);
    const counter = reports.metrics?.counter('facteur_delivery_reports_total', 'Recipients reported to the sender by local delivery (RFC 3464), by action.');
    for (const e of entries) counter?.inc({ action: e.action });
  } catch (err) {
    // The message is stored (or refused) already: failing the delivery for its report would
    // make the client send it again, a duplicate for every recipient that has it.
    reports.log.error({ err, to: report.sender, recipients: entries.map((e) => e.address) }, 'delivery status notification could not be sent');
  }
}

/** The status and text of a recipient that was not stored (RFC 3463): a failure report's
 * status is permanent, whatever the cause. */
function failure(outcomes: Array<DeliveryOutcome | undefined>, error: unknown): { status: string; diagnostic: string } {
  if (error !== null) {
    const code = error instanceof StoreError ? error.code : null;
    if (code === 'over-quota') return { status: '5.2.2', diagnostic: '552 5.2.2 Mailbox full' };
    if (code === 'too-big') return { status: '5.3.4', diagnostic: '552 5.3.4 Message too big for the mailbox' };
    return { status: '5.3.0', diagnostic: '554 5.3.0 The message could not be stored' };
  }
  if (outcomes.some((o) => o !== undefined && !o.ok && o.reason === 'over-quota')) return { status: '5.2.2', diagnostic: '552 5.2.2 Mailbox full' };
  return { status: '5.1.1', diagnostic: '550 5.1.1 Mailbox no longer exists' };
}
