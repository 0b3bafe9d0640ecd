/**
 * The outbound queue: accepts messages for remote recipients and delivers them.
 *
 * Invariants:
 * - `enqueue` resolves only after the message and its recipients are committed and fsync'd;
 *   the submission server answers 250 after it (DESIGN.md invariant 1).
 * - A recipient is marked delivered in its own durable commit right after the remote's reply
 *   to DATA, before anything else happens; after a crash no recipient that the remote accepted
 *   is sent again (the only window is between the remote's 250 and that commit).
 * - Each attempt ends every claimed recipient as delivered, failed (permanent: 5xx, null MX,
 *   no such domain, expired) or deferred (4xx, network, DNS trouble, TLS policy), never silently.
 * - No report (DSN) goes to the null sender, and a report is never itself reported on: a
 *   message from <> cannot start a bounce loop (RFC 5321 §4.5.5, RFC 3461 §6.2).
 * - Line ends are CRLF: bare LF is turned into CRLF at enqueue (RFC 5321 §2.3.8).
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { isIPv6, isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import type { Logger } from 'pino';
import type { Resolver } from '../dns/resolver.js';
import type { DkimSigningService } from '../msgauth/dkim-sign.js';
import { buildDsn, cleanText, statusFromReply, type DsnRecipient } from './dsn.js';
import { resolveDestination, TemporaryDnsError, type MxHost } from './mx.js';
import { createStsPolicyService, httpsStsFetcher, mxAllowed, type StsFetcher } from './mta-sts.js';
import { openSession, SmtpFailure, type SmtpSession, type TlsMode } from './smtp-client.js';
import type { DueRecipient, DsnNotify, OutboundEnvelope, QueueStore } from './types.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

/** Default retry schedule: the delay before attempt n+1 (the last value repeats). */
export const DEFAULT_RETRY_SCHEDULE: readonly number[] = [5 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 4 * HOUR];

export interface Smarthost {
  host: string;
  port: number;
  /** implicit: TLS from the start (465); starttls: STARTTLS required and verified;
   * opportunistic: STARTTLS when offered. */
  tls: 'implicit' | 'starttls' | 'opportunistic';
  auth?: { user: string; pass: string };
}

export interface OutboundOptions {
  /** Our host name: EHLO, Reporting-MTA, the DSN sender's domain. */
  hostname: string;
  store: QueueStore;
  resolver: Resolver;
  log: Logger;
  clock?: { now(): number };
  dkim?: DkimSigningService;
  /** Destination port (25; tests point it at their sink). */
  port?: number;
  retrySchedule?: readonly number[];
  /** A recipient still undelivered this long after enqueue fails for good (5 days). */
  maxAgeMs?: number;
  /** When to tell the sender a delivery is late (4 hours). */
  delayNoticeAfterMs?: number;
  /** Simultaneous connections per destination (2) and in all (20). */
  connectionsPerDestination?: number;
  maxConnections?: number;
  /** Transactions per connection before a new one is opened (50). */
  messagesPerConnection?: number;
  /** Source address per sender domain ('*' for every other one). */
  localAddress?: Readonly<Record<string, { ipv4?: string; ipv6?: string }>>;
  /** Takes every message, whatever the recipient domain. */
  smarthost?: Smarthost;
  /** Messages per minute per recipient domain ('*' for the others); absent: no limit. */
  rateLimits?: Readonly<Record<string, number>>;
  /** MTA-STS (RFC 8461); on by default, with the HTTPS fetcher unless one is given. */
  mtaSts?: { enabled?: boolean; fetcher?: StsFetcher };
  /** Extra TLS options for outgoing connections (a CA to trust in tests). */
  tlsOptions?: ConnectionOptions;
  /** Address families to use, in order (IPv4 then IPv6). */
  families?: ReadonlyArray<4 | 6>;
  /**
   * Delivers a report to a local sender. Resolves true when it did; false (or no callback)
   * queues the report for remote delivery like any message.
   */
  deliverReport?: (report: Buffer, recipient: string) => Promise<boolean>;
  connectTimeoutMs?: number;
  /** How long an idle connection is kept for the next message to the same host (5 s). */
  idleConnectionMs?: number;
  /** How long a claimed recipient stays reserved for one attempt (15 min). */
  leaseMs?: number;
  /**
   * A queue shared by several nodes (PostgreSQL): how often the worker looks at the store when
   * nothing it knows of is due, since other nodes insert recipients and their leases run out
   * (a node that died). Absent: the worker wakes for what the store says is due (at least once a
   * minute while anything is queued).
   */
  pollMs?: number;
}

export interface EnqueueOptions {
  /** DKIM-sign with the From domain's keys (mail from our own users). */
  sign?: boolean;
  /** RFC 8689 REQUIRETLS (a `TLS-Required: No` header field is then ignored, §4.2.2). */
  requireTls?: boolean;
}

export interface QueueEvents {
  queued: { messageId: string; recipients: number; isReport: boolean };
  delivered: { messageId: string; recipients: string[]; host: string; reply: string };
  failed: { messageId: string; recipients: string[]; reason: string };
  deferred: { messageId: string; recipients: string[]; reason: string; nextAttempt: number };
  report: { messageId: string; to: string; action: 'failed' | 'delayed' | 'relayed'; local: boolean };
}

export interface OutboundQueue {
  enqueue(message: Buffer, envelope: OutboundEnvelope, options?: EnqueueOptions): Promise<{ id: string }>;
  /**
   * Sends a delivery report (a DSN built elsewhere, e.g. by local delivery) to `to`: into the
   * sender's INBOX when deliverReport takes it, else queued from the null sender as a report
   * (never answered by another report). Durable when it resolves; `local` says which way it went.
   */
  sendReport(report: Buffer, to: string): Promise<{ local: boolean }>;
  /** Starts the worker (drops leases left by a previous process). */
  start(): Promise<void>;
  /** Looks for due work now (after enqueue, or after a test moved the clock). */
  kick(): void;
  /** Processes everything due now and waits for those attempts to end (tests, CLI flush). */
  runDue(): Promise<void>;
  /** Stops the worker and waits for running attempts. */
  stop(): Promise<void>;
  on<K extends keyof QueueEvents>(event: K, listener: (e: QueueEvents[K]) => void): void;
  off<K extends keyof QueueEvents>(event: K, listener: (e: QueueEvents[K]) => void): void;
}

/** RFC 5321 §2.3.8: lone LF (and lone CR) become CRLF. */
export function normaliseLineEnds(message: Buffer): Buffer {
  let clean = true;
  for (let i = 0; i < message.length; i++) {
    const c = message[i];
    if (c === 0x0a && (i === 0 || message[i - 1] !== 0x0d)) { clean = false; break; }
    if (c === 0x0d && message[i + 1] !== 0x0a) { clean = false; break; }
  }
  if (clean) return message;
  return Buffer.from(message.toString('latin1').replace(/\r\n|\r|\n/g, '\r\n'), 'latin1');
}

function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase();
}

/** The domain of the first address in the From field (the DKIM d= that aligns for DMARC). */
/** The message's own header section (not a part's), as latin1 text, at most 64 KiB of it. */
function topHeader(message: Buffer): string {
  const end = message.indexOf('\r\n\r\n');
  return message.subarray(0, end < 0 ? Math.min(message.length, 65536) : Math.min(end, 65536)).toString('latin1');
}

/**
 * RFC 8689 §3: `TLS-Required: No` in the message's header asks that the recipient domain's TLS
 * policies (MTA-STS here) be set aside for it, so that it is delivered even where they would hold
 * it back; TLS is still tried (§4.2.2). Unfolded, case-insensitive, comments not allowed.
 */
export function tlsRequiredNo(message: Buffer): boolean {
  const lines = topHeader(message).replace(/\r\n[ \t]+/g, ' ').split('\r\n');
  return lines.some((line) => /^tls-required:[ \t]*no[ \t]*$/i.test(line));
}

export function fromHeaderDomain(message: Buffer): string | null {
  const head = topHeader(message);
  const m = /^from:((?:.*)(?:\r\n[ \t].*)*)/im.exec(head);
  if (!m) return null;
  const value = m[1]!.replace(/\r\n/g, '');
  const angle = /<[^<>@\s]+@([^<>\s]+)>/.exec(value);
  const bare = /[^\s<>,;:"()@]+@([A-Za-z0-9.-]+)/.exec(value);
  const domain = angle?.[1] ?? bare?.[1];
  return domain ? domain.toLowerCase() : null;
}

class Semaphore {
  private active = 0;
  private readonly waiters: Array<() => void> = [];
  constructor(private readonly size: number) {}
  get idle(): boolean {
    return this.active === 0 && this.waiters.length === 0;
  }
  async acquire(): Promise<() => void> {
    if (this.active >= this.size) await new Promise<void>((r) => this.waiters.push(r));
    else this.active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiters.shift();
      if (next) next();
      else this.active--;
    };
  }
}

interface Task {
  messageId: string;
  recipients: DueRecipient[];
}

interface Outcome {
  /** The message row is gone already (its last recipients were delivered in that commit). */
  removed?: boolean;
  delivered: DueRecipient[];
  failed: Array<{ r: DueRecipient; status: string; diagnostic: string; remoteMta: string | null }>;
  deferred: Array<{ r: DueRecipient; error: string; remoteMta: string | null }>;
}

export function createOutboundQueue(options: OutboundOptions): OutboundQueue {
  const store = options.store;
  const log = options.log;
  const now = options.clock ? () => options.clock!.now() : () => Date.now();
  const schedule = options.retrySchedule && options.retrySchedule.length > 0 ? options.retrySchedule : DEFAULT_RETRY_SCHEDULE;
  const maxAge = options.maxAgeMs ?? 5 * 24 * HOUR;
  const delayNoticeAfter = options.delayNoticeAfterMs ?? 4 * HOUR;
  const port = options.port ?? 25;
  const perConnection = options.messagesPerConnection ?? 50;
  const leaseMs = options.leaseMs ?? 15 * MINUTE;
  const pollMs = options.pollMs ?? null;
  const families = options.families ?? [4, 6];
  const global = new Semaphore(options.maxConnections ?? 20);
  const perDestination = new Map<string, Semaphore>();
  const rateWindows = new Map<string, number[]>();
  const events = new EventEmitter();
  const sts =
    options.mtaSts?.enabled === false
      ? null
      : createStsPolicyService({ resolver: options.resolver, store, fetcher: options.mtaSts?.fetcher ?? httpsStsFetcher(), now });

  /** The worker's timers are off (before start, after stop). */
  let stopped = true;
  /** stop() was called: attempts in progress finish their transaction and start no other. */
  let closing = false;
  let timer: NodeJS.Timeout | null = null;
  let ticking = false;
  let tickAgain = false;
  const inflight = new Set<Promise<void>>();
  /** Recipients whose attempt is running in this process. */
  const active = new Set<number>();

  function emit<K extends keyof QueueEvents>(event: K, payload: QueueEvents[K]): void {
    events.emit(event, payload);
  }

  function destinationSemaphore(key: string): Semaphore {
    let s = perDestination.get(key);
    if (!s) perDestination.set(key, (s = new Semaphore(options.connectionsPerDestination ?? 2)));
    return s;
  }

  /** Sliding one-minute window per recipient domain; returns 0 when allowed, else ms to wait. */
  function rateWait(domain: string): number {
    const limit = options.rateLimits?.[domain] ?? options.rateLimits?.['*'];
    if (limit === undefined) return 0;
    const t = now();
    // Windows of domains not seen for a minute go away: the map stays as small as the traffic.
    for (const [d, w] of rateWindows) if (w.length === 0 || w[w.length - 1]! <= t - MINUTE) rateWindows.delete(d);
    const list = (rateWindows.get(domain) ?? []).filter((x) => x > t - MINUTE);
    rateWindows.set(domain, list);
    if (list.length < limit) {
      list.push(t);
      return 0;
    }
    return list[0]! + MINUTE - t;
  }

  // Idle connections, kept a few seconds for the next message to the same place (one SMTP
  // session carries several transactions: RFC 5321 §3.3 allows any number after RSET or DATA).
  const idle = new Map<string, Array<{ session: SmtpSession; timer: NodeJS.Timeout }>>();
  const sessionUse = new WeakMap<SmtpSession, number>();
  const idleMs = options.idleConnectionMs ?? 5000;

  function takeIdle(key: string): SmtpSession | null {
    const list = idle.get(key);
    while (list && list.length > 0) {
      const p = list.pop()!;
      clearTimeout(p.timer);
      if (p.session.open) return p.session;
    }
    idle.delete(key);
    return null;
  }

  function park(key: string, session: SmtpSession): void {
    let list = idle.get(key);
    if (!list) idle.set(key, (list = []));
    if (list.length >= (options.connectionsPerDestination ?? 2)) {
      void session.quit();
      return;
    }
    const entry = {
      session,
      timer: setTimeout(() => {
        const i = list.indexOf(entry);
        if (i >= 0) list.splice(i, 1);
        if (list.length === 0 && idle.get(key) === list) idle.delete(key);
        void session.quit();
      }, idleMs),
    };
    entry.timer.unref?.();
    list.push(entry);
  }

  async function closeIdle(): Promise<void> {
    const closing: Promise<void>[] = [];
    for (const list of idle.values()) {
      for (const p of list.splice(0)) {
        clearTimeout(p.timer);
        closing.push(p.session.quit());
      }
    }
    idle.clear();
    await Promise.all(closing);
  }

  function localAddressFor(sender: string, target: string): string | undefined {
    const map = options.localAddress;
    if (!map) return undefined;
    const entry = map[domainOf(sender)] ?? map['*'];
    if (!entry) return undefined;
    return isIPv6(target) ? entry.ipv6 : entry.ipv4;
  }

  async function enqueue(message: Buffer, envelope: OutboundEnvelope, opts: EnqueueOptions = {}, isReport = false): Promise<{ id: string }> {
    const seen = new Set<string>();
    const recipients: Array<{ address: string; domain: string; notify: DsnNotify[] | null; orcpt: string | null }> = [];
    for (const to of envelope.to) {
      const at = to.lastIndexOf('@');
      if (at <= 0 || at === to.length - 1 || /[\s<>]/.test(to)) throw new Error(`Cannot queue recipient "${cleanText(to, 100)}": not an address`);
      const domain = domainOf(to);
      const key = to.slice(0, at) + '@' + domain;
      if (seen.has(key)) continue;
      seen.add(key);
      const dsn = envelope.dsn?.recipients?.[to];
      recipients.push({ address: key, domain, notify: dsn?.notify ? [...dsn.notify] : null, orcpt: dsn?.orcpt ?? null });
    }
    if (recipients.length === 0) throw new Error('Cannot queue a message without recipients');
    let body = normaliseLineEnds(message);
    if (opts.sign && options.dkim) {
      const domain = fromHeaderDomain(body) ?? (envelope.from ? domainOf(envelope.from) : null);
      if (domain) body = await options.dkim.sign(body, domain);
    }
    const id = `${now().toString(36)}${randomBytes(8).toString('hex')}`;
    const t = now();
    await store.insert(
      {
        id,
        sender: envelope.from,
        createdAt: t,
        body,
        envid: envelope.dsn?.envid ?? null,
        ret: envelope.dsn?.ret ?? null,
        requireTls: opts.requireTls ?? false,
        // RFC 8689 §4.2.2: the header field only counts without the REQUIRETLS parameter.
        tlsOptional: opts.requireTls !== true && !isReport && tlsRequiredNo(body),
        isReport,
        recipients,
      },
      t,
    );
    log.info({ queueId: id, from: envelope.from, rcpts: recipients.length, size: body.length }, 'queued');
    emit('queued', { messageId: id, recipients: recipients.length, isReport });
    kick();
    return { id };
  }

  // ---- reports ---------------------------------------------------------------------------

  function wantsReport(r: DueRecipient, kind: 'FAILURE' | 'DELAY'): boolean {
    if (r.sender === '' || r.isReport) return false;
    // RFC 3461 §4.1: no NOTIFY means failures (and, at our discretion, delays) are reported.
    return r.notify === null || r.notify.includes(kind);
  }

  async function sendReport(
    messageId: string,
    recipients: DsnRecipient[],
    first: DueRecipient,
    action: 'failed' | 'delayed' | 'relayed',
    body?: Buffer,
  ): Promise<void> {
    const original = body ?? (await store.readBody(messageId));
    if (!original) return;
    const report = buildDsn({
      reportingMta: options.hostname,
      to: first.sender,
      envid: first.envid,
      arrivalDate: first.createdAt,
      recipients,
      original,
      // RFC 8689 §5: a report on a REQUIRETLS message carries only its header.
      ret: first.requireTls ? 'HDRS' : first.ret,
      now: now(),
    });
    const { local } = await deliverOrQueueReport(report, first.sender, messageId);
    emit('report', { messageId, to: first.sender, action, local });
  }

  /** A report to a local sender goes to their INBOX (deliverReport); else, or when that fails,
   * it is queued from the null sender. */
  async function deliverOrQueueReport(report: Buffer, to: string, about: string | null): Promise<{ local: boolean }> {
    let local = false;
    if (options.deliverReport) {
      try {
        local = await options.deliverReport(report, to);
      } catch (err) {
        log.error({ err, queueId: about }, 'local delivery of a report failed; queueing it');
      }
    }
    if (!local) await enqueue(report, { from: '', to: [to] }, {}, true);
    return { local };
  }

  // ---- outcomes --------------------------------------------------------------------------

  /**
   * Records an attempt's outcome. Reports go out before the states they describe are committed:
   * a crash in between sends a report twice at worst, never loses it.
   */
  async function settle(task: Task, outcome: Outcome): Promise<void> {
    const t = now();
    // Delivered recipients were committed by the caller right after the remote's reply.
    const failed: Outcome['failed'] = [...outcome.failed];
    const failedNote = new Map<number, string>();

    // Deferred recipients: retry later, or give up when the next attempt would be too late.
    const byNext = new Map<string, { ids: number[]; attempts: number; next: number; error: string }>();
    const delayed: Array<{ r: DueRecipient; error: string; remoteMta: string | null }> = [];
    for (const d of outcome.deferred) {
      const attempts = d.r.attempts + 1;
      const next = t + schedule[Math.min(attempts - 1, schedule.length - 1)]!;
      if (next > d.r.createdAt + maxAge) {
        // RFC 3463: a temporary condition that outlived the retry period is reported as permanent.
        const status = statusFromReply(d.error, '4.4.7').replace(/^4/, '5');
        failed.push({ r: d.r, status, diagnostic: d.error, remoteMta: d.remoteMta });
        failedNote.set(d.r.id, ` (gave up after ${Math.round((t - d.r.createdAt) / MINUTE)} minutes)`);
        continue;
      }
      const key = `${attempts}:${next}:${d.error}`;
      const entry = byNext.get(key) ?? { ids: [], attempts, next, error: d.error };
      entry.ids.push(d.r.id);
      byNext.set(key, entry);
      if (!d.r.delayNotified && t - d.r.createdAt >= delayNoticeAfter && wantsReport(d.r, 'DELAY')) delayed.push(d);
    }

    const failedReports: DsnRecipient[] = failed
      .filter((f) => wantsReport(f.r, 'FAILURE'))
      .map((f) => ({ address: f.r.address, orcpt: f.r.orcpt, action: 'failed', status: f.status, remoteMta: f.remoteMta, diagnostic: f.diagnostic + (failedNote.get(f.r.id) ?? ''), lastAttempt: t, willRetryUntil: null }));
    if (failedReports.length > 0) await sendReport(task.messageId, failedReports, failed.find((f) => wantsReport(f.r, 'FAILURE'))!.r, 'failed');
    if (failed.length > 0) {
      await store.finish(failed.map((f) => f.r.id), 'failed', failed[0]!.diagnostic, t);
      emit('failed', { messageId: task.messageId, recipients: failed.map((f) => f.r.address), reason: failed[0]!.diagnostic });
      log.info({ queueId: task.messageId, rcpts: failed.map((f) => f.r.address), reason: failed[0]!.diagnostic }, 'delivery failed');
    }

    if (delayed.length > 0) {
      const reports: DsnRecipient[] = delayed.map((d) => ({ address: d.r.address, orcpt: d.r.orcpt, action: 'delayed', status: statusFromReply(d.error, '4.0.0'), remoteMta: d.remoteMta, diagnostic: d.error, lastAttempt: t, willRetryUntil: d.r.createdAt + maxAge }));
      await sendReport(task.messageId, reports, delayed[0]!.r, 'delayed');
      await store.markDelayNotified(delayed.map((d) => d.r.id));
    }
    for (const e of byNext.values()) await store.defer(e.ids, e.next, e.attempts, e.error, t);
    if (byNext.size > 0) {
      const ids = new Set([...byNext.values()].flatMap((e) => e.ids));
      const list = outcome.deferred.filter((d) => ids.has(d.r.id));
      const nextAttempt = Math.min(...[...byNext.values()].map((e) => e.next));
      emit('deferred', { messageId: task.messageId, recipients: list.map((d) => d.r.address), reason: list[0]!.error, nextAttempt });
      log.info({ queueId: task.messageId, rcpts: list.map((d) => d.r.address), reason: list[0]!.error, nextAttempt }, 'delivery deferred');
    }
    if (!outcome.removed) await store.removeIfFinished(task.messageId);
  }

  // ---- one destination -------------------------------------------------------------------

  interface Route {
    hosts: MxHost[];
    tls: TlsMode;
    auth?: { user: string; pass: string };
    port: number;
    /** Why hosts were left out (MTA-STS), for the error when none is left. */
    note: string | null;
  }

  type RouteResult = { kind: 'route'; route: Route } | { kind: 'fail'; status: string; diagnostic: string } | { kind: 'defer'; error: string };

  /** `tlsOptional`: RFC 8689 §4.2.2, the recipient domain's TLS policy (MTA-STS) set aside. */
  async function routeFor(domain: string, requireTls: boolean, tlsOptional: boolean): Promise<RouteResult> {
    const sh = options.smarthost;
    if (sh) {
      let addresses: string[] = [];
      if (isIP(sh.host)) addresses = [sh.host];
      else {
        for (const f of families) {
          try {
            addresses.push(...(f === 4 ? await options.resolver.resolve4(sh.host) : await options.resolver.resolve6(sh.host)));
          } catch {
            // the other family may answer
          }
        }
      }
      if (addresses.length === 0) return { kind: 'defer', error: `451 4.4.3 smarthost ${sh.host} has no address` };
      const tls: TlsMode = sh.tls === 'implicit' ? 'implicit' : sh.tls === 'starttls' || requireTls ? 'verified' : 'opportunistic';
      return { kind: 'route', route: { hosts: [{ name: sh.host, preference: 0, addresses }], tls, auth: sh.auth, port: sh.port, note: null } };
    }
    // RFC 5321 §5.1: an address literal names the host itself; no MX, no MTA-STS.
    const literal = /^\[(?:IPv6:)?([^\]]+)\]$/i.exec(domain);
    if (literal) {
      const ip = literal[1]!;
      if (!isIP(ip)) return { kind: 'fail', status: '5.1.2', diagnostic: `550 5.1.2 ${cleanText(domain, 100)} is not a usable address literal` };
      return { kind: 'route', route: { hosts: [{ name: ip, preference: 0, addresses: [ip] }], tls: requireTls ? 'verified' : 'opportunistic', port, note: null } };
    }
    let dest;
    try {
      dest = await resolveDestination(options.resolver, domain, { families });
    } catch (err) {
      if (err instanceof TemporaryDnsError) return { kind: 'defer', error: `451 4.4.3 ${err.message}` };
      throw err;
    }
    // RFC 7505 §4.1: mail to a null-MX domain fails at once with 5.1.10.
    if (dest.kind === 'null-mx') return { kind: 'fail', status: '5.1.10', diagnostic: `556 5.1.10 ${domain} does not accept mail (null MX)` };
    if (dest.kind === 'no-domain') return { kind: 'fail', status: '5.1.2', diagnostic: `550 5.1.2 ${dest.detail}` };
    let hosts = dest.hosts;
    let tls: TlsMode = requireTls ? 'verified' : 'opportunistic';
    let note: string | null = null;
    if (sts && !tlsOptional) {
      const policy = await sts.policyFor(domain);
      if (policy?.mode === 'enforce') {
        // RFC 8461 §4.1-4.2: only MX hosts named by the policy, and only over validated TLS.
        const allowed = hosts.filter((h) => mxAllowed(policy, h.name));
        if (allowed.length < hosts.length) note = `MTA-STS policy of ${domain} excludes ${hosts.filter((h) => !allowed.includes(h)).map((h) => h.name).join(', ')}`;
        hosts = allowed;
        tls = 'verified';
      } else if (policy?.mode === 'testing') {
        const bad = hosts.filter((h) => !mxAllowed(policy, h.name));
        if (bad.length > 0) log.warn({ domain, hosts: bad.map((h) => h.name) }, 'MTA-STS testing: MX not in policy');
      }
    }
    if (hosts.length === 0) return { kind: 'defer', error: `451 4.7.5 ${note ?? 'no usable MX host'}` };
    return { kind: 'route', route: { hosts, tls, port, note } };
  }

  async function runDestination(domain: string, requireTls: boolean, tlsOptional: boolean, tasks: Task[]): Promise<void> {
    // Per-domain rate limit: over the limit, the recipients wait without an attempt counted.
    const allowed: Task[] = [];
    for (const task of tasks) {
      const wait = options.smarthost ? 0 : rateWait(domain);
      if (wait === 0) allowed.push(task);
      else await store.defer(task.recipients.map((r) => r.id), now() + wait, null, null, now());
    }
    if (allowed.length === 0) return;

    let route: RouteResult;
    try {
      route = await routeFor(domain, requireTls, tlsOptional);
    } catch (err) {
      route = { kind: 'defer', error: `451 4.3.0 ${(err as Error).message}` };
    }
    if (route.kind !== 'route') {
      for (const task of allowed) {
        const outcome: Outcome = { delivered: [], failed: [], deferred: [] };
        for (const r of task.recipients) {
          if (route.kind === 'fail') outcome.failed.push({ r, status: route.status, diagnostic: route.diagnostic, remoteMta: null });
          else outcome.deferred.push({ r, error: route.error, remoteMta: null });
        }
        await settle(task, outcome);
      }
      return;
    }

    const r = route.route;
    const pending = [...allowed];
    const lastError = new Map<Task, { error: string; host: string | null; permanentTls: boolean }>();
    let hostError = `451 4.4.1 no MX host of ${domain} could be reached`;
    const semaphore = destinationSemaphore(options.smarthost ? 'smarthost' : domain);

    /** One connection to one address: 'next' when this address should be left for the next. */
    const connection = async (host: MxHost, address: string): Promise<'again' | 'next'> => {
      const releaseDest = await semaphore.acquire();
      const releaseGlobal = await global.acquire();
      let session: SmtpSession | null = null;
      let keep = false;
      const localAddress = pending.length > 0 ? localAddressFor(pending[0]!.recipients[0]!.sender, address) : undefined;
      const key = `${address}|${r.port}|${host.name}|${r.tls}|${localAddress ?? ''}|${r.auth?.user ?? ''}`;
      try {
        if (pending.length === 0 || closing) return 'next';
        session = takeIdle(key);
        const fromPool = session !== null;
        if (!session) {
          const open = (tls: TlsMode) =>
            openSession({
              address,
              port: r.port,
              servername: host.name,
              ehloName: options.hostname,
              localAddress,
              tls,
              tlsOptions: options.tlsOptions,
              auth: r.auth,
              connectTimeoutMs: options.connectTimeoutMs,
            });
          try {
            try {
              session = await open(r.tls);
            } catch (err) {
              // RFC 7435 §3: opportunistic TLS that fails its handshake falls back to clear text
              // (mail that could go unencrypted anyway is not held back by a broken TLS stack).
              if (r.tls !== 'opportunistic' || !(err instanceof SmtpFailure) || !err.tlsFailure || r.auth) throw err;
              log.info({ domain, host: host.name, address, err: err.message }, 'TLS handshake failed; retrying without TLS');
              session = await open('plain');
            }
          } catch (err) {
            const f = err as SmtpFailure;
            hostError = f.code ? `${f.reply ?? f.code}` : `451 4.4.1 ${host.name} [${address}]: ${cleanText(f.message, 200)}`;
            if (f.tlsFailure || (r.tls === 'verified' && /STARTTLS/i.test(f.message))) {
              hostError = `451 4.7.5 ${host.name} [${address}]: TLS required and not available: ${cleanText(f.message, 200)}`;
            }
            log.info({ domain, host: host.name, address, err: f.message }, 'connection failed');
            return 'next';
          }
        }
        // RFC 8689 §4.2.1: a REQUIRETLS message only goes to a host that offers it.
        if (requireTls && !session.extensions.includes('REQUIRETLS')) {
          hostError = `550 5.7.30 ${host.name} does not support REQUIRETLS`;
          for (const t of pending) lastError.set(t, { error: hostError, host: host.name, permanentTls: true });
          return 'next';
        }
        let used = sessionUse.get(session) ?? 0;
        let sentNow = 0;
        while (pending.length > 0 && used < perConnection && session.open && !closing) {
          const task = pending.shift()!;
          if ((await deliverTask(session, host.name, task)) === 'retry-elsewhere') {
            pending.unshift(task);
            // An idle connection the remote closed meanwhile is no reason to leave the address.
            return fromPool && sentNow === 0 ? 'again' : 'next';
          }
          used++;
          sentNow++;
          sessionUse.set(session, used);
        }
        keep = session.open && !closing && used < perConnection;
        return session.open ? 'again' : 'next';
      } finally {
        if (session && keep) park(key, session);
        else await session?.quit();
        releaseGlobal();
        releaseDest();
      }
    };

    const worker = async (): Promise<void> => {
      for (const host of r.hosts) {
        for (const address of host.addresses) {
          // Several connections in turn to an address that works (messagesPerConnection each).
          while (pending.length > 0 && !closing && (await connection(host, address)) === 'again');
          if (pending.length === 0 || closing) return;
        }
      }
    };

    const workers = Math.max(1, Math.min(options.connectionsPerDestination ?? 2, Math.ceil(pending.length / perConnection)));
    await Promise.all(Array.from({ length: workers }, () => worker()));
    const semaphoreKey = options.smarthost ? 'smarthost' : domain;
    if (semaphore.idle && perDestination.get(semaphoreKey) === semaphore) perDestination.delete(semaphoreKey);

    // What no host took is deferred (or failed, when the only obstacle was REQUIRETLS).
    for (const task of pending.splice(0)) {
      const le = lastError.get(task);
      const outcome: Outcome = { delivered: [], failed: [], deferred: [] };
      for (const rcpt of task.recipients) {
        if (le?.permanentTls) outcome.failed.push({ r: rcpt, status: '5.7.30', diagnostic: le.error, remoteMta: le.host });
        else outcome.deferred.push({ r: rcpt, error: r.note ? `${hostError} (${r.note})` : hostError, remoteMta: le?.host ?? null });
      }
      await settle(task, outcome);
    }
  }

  /**
   * One transaction for one message's recipients at this destination. Returns 'retry-elsewhere'
   * when the connection broke before the remote's verdict (the recipients stay pending).
   */
  async function deliverTask(session: SmtpSession, hostName: string, task: Task): Promise<'done' | 'retry-elsewhere'> {
    // Read per transaction, not kept: a batch of large messages never sits in memory at once.
    const body = await store.readBody(task.messageId);
    if (!body) return 'done'; // dropped by an operator meanwhile
    const first = task.recipients[0]!;
    const byAddress = new Map(task.recipients.map((r) => [r.address, r]));
    const outcome: Outcome = { delivered: [], failed: [], deferred: [] };
    // RFC 3461 §5.2.1 (relaying to a server that offers DSN): RET and ENVID on MAIL, each
    // recipient's NOTIFY and ORCPT on its RCPT.
    const dsn = first.ret || first.envid ? { ret: first.ret === 'FULL' ? ('Full' as const) : (first.ret ?? undefined), envid: first.envid ?? undefined } : undefined;
    const rcptDsn = new Map(task.recipients.filter((r) => r.notify !== null || r.orcpt !== null).map((r) => [r.address, { notify: r.notify, orcpt: r.orcpt }]));
    try {
      const result = await session.send(
        {
          from: first.sender,
          to: task.recipients.map((r) => r.address),
          size: body.length,
          eightBit: body.some((c) => c > 0x7f),
          requireTls: first.requireTls,
          dsn,
          rcptDsn,
        },
        body,
      );
      // The remote took responsibility: record it before anything else can go wrong.
      const accepted = result.accepted.map((a) => byAddress.get(a)).filter((r): r is DueRecipient => r !== undefined);
      if (accepted.length > 0) {
        outcome.removed = await store.finish(accepted.map((r) => r.id), 'delivered', cleanText(result.reply, 300), now(), result.refused.length === 0);
        outcome.delivered.push(...accepted);
        emit('delivered', { messageId: task.messageId, recipients: accepted.map((r) => r.address), host: hostName, reply: result.reply });
        log.info({ queueId: task.messageId, rcpts: accepted.map((r) => r.address), host: hostName, reply: cleanText(result.reply, 200) }, 'delivered');
      }
      classifyRefusals(result.refused, byAddress, hostName, outcome);
      // RFC 3461 §5.2.2 (via §6.2.2): NOTIFY=SUCCESS to a server without DSN: we report
      // "relayed", since the remote will send nothing.
      if (!session.extensions.includes('DSN')) {
        const wants = accepted.filter((r) => r.notify?.includes('SUCCESS') && r.sender !== '' && !r.isReport);
        if (wants.length > 0) {
          const t = now();
          const list: DsnRecipient[] = wants.map((r) => ({ address: r.address, orcpt: r.orcpt, action: 'relayed', status: '2.0.0', remoteMta: hostName, diagnostic: cleanText(result.reply), lastAttempt: t, willRetryUntil: null }));
          await sendReport(task.messageId, list, wants[0]!, 'relayed', body);
        }
      }
    } catch (err) {
      const f = err as SmtpFailure;
      if (!(f instanceof SmtpFailure) || f.code === null) return 'retry-elsewhere';
      if (f.refused.length > 0) {
        classifyRefusals(f.refused, byAddress, hostName, outcome);
      } else {
        const reply = cleanText(f.reply ?? String(f.code));
        for (const r of task.recipients) {
          // RFC 5321 §4.2.1: 5yz is permanent, 4yz transient.
          if (f.code >= 500) outcome.failed.push({ r, status: statusFromReply(reply, '5.0.0'), diagnostic: reply, remoteMta: hostName });
          else outcome.deferred.push({ r, error: reply, remoteMta: hostName });
        }
      }
      if (f.usable) {
        try {
          await session.reset();
        } catch {
          void session.quit();
        }
      } else void session.quit();
    }
    await settle(task, outcome);
    return 'done';
  }

  function classifyRefusals(refused: ReadonlyArray<{ address: string; code: number | null; reply: string }>, byAddress: Map<string, DueRecipient>, host: string, outcome: Outcome): void {
    for (const x of refused) {
      const r = byAddress.get(x.address);
      if (!r) continue;
      const reply = cleanText(x.reply);
      if (x.code !== null && x.code >= 500) outcome.failed.push({ r, status: statusFromReply(reply, '5.0.0'), diagnostic: reply, remoteMta: host });
      else outcome.deferred.push({ r, error: reply, remoteMta: host });
    }
  }

  // ---- scheduling ------------------------------------------------------------------------

  async function claimAndDispatch(): Promise<Promise<void>[]> {
    const t = now();
    // A lease that ran out while its attempt is still running (a very slow remote) must not
    // start a second attempt for the same recipient in this process.
    const due = (await store.claimDue(t, 500, t + leaseMs)).filter((r) => !active.has(r.id));
    for (const r of due) active.add(r.id);
    const groups = new Map<string, { domain: string; requireTls: boolean; tlsOptional: boolean; tasks: Map<string, Task> }>();
    for (const r of due) {
      // A connection has one source address: messages are grouped by the sender's choice too.
      const src = options.localAddress ? (options.localAddress[domainOf(r.sender)] ? domainOf(r.sender) : '*') : '';
      const tlsOptional = r.tlsOptional && !r.requireTls;
      const key = `${options.smarthost ? '*' : r.domain}|${r.requireTls ? 1 : 0}|${tlsOptional ? 1 : 0}|${src}`;
      let g = groups.get(key);
      if (!g) groups.set(key, (g = { domain: r.domain, requireTls: r.requireTls, tlsOptional, tasks: new Map() }));
      // Smarthost: one transaction per message whatever the recipient domains.
      const taskKey = options.smarthost ? r.messageId : `${r.messageId}|${r.domain}`;
      let task = g.tasks.get(taskKey);
      if (!task) g.tasks.set(taskKey, (task = { messageId: r.messageId, recipients: [] }));
      task.recipients.push(r);
    }
    const jobs: Promise<void>[] = [];
    for (const g of groups.values()) {
      const tasks = [...g.tasks.values()];
      const job = runDestination(g.domain, g.requireTls, g.tlsOptional, tasks)
        .catch((err) => log.error({ err, domain: g.domain }, 'outbound delivery job failed'))
        .finally(() => {
          for (const task of tasks) for (const r of task.recipients) active.delete(r.id);
          inflight.delete(job);
          kick();
        });
      inflight.add(job);
      jobs.push(job);
    }
    return jobs;
  }

  async function tick(): Promise<void> {
    if (ticking) {
      tickAgain = true;
      return;
    }
    ticking = true;
    try {
      do {
        tickAgain = false;
        if (stopped) break;
        await claimAndDispatch();
      } while (tickAgain);
      if (!stopped) {
        const next = await store.nextDue();
        // Capped so a clock change (or an injected clock) is noticed within a minute.
        wakeIn(next === null ? pollMs : Math.min(Math.max(0, next - now()), MINUTE, pollMs ?? MINUTE));
      }
    } catch (err) {
      log.error({ err }, 'outbound queue scheduling failed');
      // The store may be back later (a restarted database): the worker tries again.
      if (!stopped) wakeIn(pollMs ?? MINUTE);
    } finally {
      ticking = false;
    }
  }

  function wakeIn(delay: number | null): void {
    if (timer) clearTimeout(timer);
    timer = null;
    if (delay === null) return;
    timer = setTimeout(() => void tick(), delay);
    timer.unref?.();
  }

  function kick(): void {
    if (stopped) return;
    setImmediate(() => void tick());
  }

  return {
    enqueue: (message, envelope, opts) => enqueue(message, envelope, opts),
    sendReport: (report, to) => deliverOrQueueReport(report, to, null),
    async start() {
      if (!stopped) return;
      await store.clearLeases();
      await store.sweepFinished();
      stopped = false;
      closing = false;
      kick();
    },
    kick,
    async runDue() {
      for (;;) {
        const jobs = await claimAndDispatch();
        if (jobs.length === 0 && inflight.size === 0) return;
        await Promise.all([...inflight]);
      }
    },
    async stop() {
      stopped = true;
      closing = true;
      if (timer) clearTimeout(timer);
      timer = null;
      await Promise.all([...inflight]);
      await closeIdle();
    },
    on(event, listener) {
      events.on(event, listener as (e: unknown) => void);
    },
    off(event, listener) {
      events.off(event, listener as (e: unknown) => void);
    },
  };
}
