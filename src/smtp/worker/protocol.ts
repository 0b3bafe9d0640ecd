/**
 * What the owner process (the one with the store) and an SMTP worker process say to each other
 * over Node's IPC channel ('advanced' serialization: Buffers and Maps arrive as such).
 *
 * A worker runs the MX or LMTP sessions of one listener: the protocol engine, TLS, message
 * authentication (mailauth) and the trace fields, so that this CPU is spent on another core.
 * Everything that needs the store goes back to the owner as a request: is a domain local, which
 * accounts does an address reach, deliver these bytes. The owner answers each request once.
 */
import type { LevelWithSilent } from 'pino';
import type { ProxyProtocolOptions } from '../../net/proxy-listener.js';
import type { DeliveryReport, ForwardRequest } from '../../delivery/local.js';
import type { DmarcRejectAction } from '../../msgauth/inbound.js';
import type { SessionLimits } from '../server/session.js';

/** What a worker needs to start its listener; sent once, after the worker said it is ready. */
export interface WorkerSetup {
  mode: 'mx' | 'lmtp';
  hostname: string;
  logLevel: LevelWithSilent;
  /** The certificates' directory (STARTTLS), or null when the owner has none. */
  tlsDir: string | null;
  host: string;
  port: number;
  greetingDelayMs: number;
  limits: Partial<SessionLimits> & { maxConnectionsPerIp?: number; maxConnections?: number };
  /** Whether messages are authenticated (SPF/DKIM/DMARC/ARC); DNS questions go to the owner. */
  authenticate: boolean;
  /** Port 25: DNS blocklist zones (server/dnsbl.ts), asked through the owner's resolver. */
  dnsbl: string[];
  dmarcReject: DmarcRejectAction;
  recipientProbes: { limit: number; windowMs: number } | null;
  /** Port 25: greylisting delay in seconds (0: off); the triplets are the owner's (its shared
   * counters with PostgreSQL, else its memory), so every worker process agrees. */
  greylistSeconds: number;
  /** Whether the owner has shared counters (PostgreSQL): RCPT probing is then counted there. */
  sharedCounters: boolean;
  proxyProtocol: ProxyProtocolOptions | null;
}

/** The owner's services a worker may call, with their arguments. */
export type Op =
  | { op: 'lookupRecipient'; domain: string; address: string; size: number | null }
  | { op: 'deliver'; raw: Buffer; accounts: number[]; mailbox: string | null; report: DeliveryReport | null }
  | { op: 'forward'; raw: Buffer; request: ForwardRequest }
  | { op: 'greylist'; client: string; sender: string; recipient: string }
  | { op: 'dns'; method: DnsMethod; name: string }
  | { op: 'counters'; method: CounterMethod; key: string; ms: number };

export const DNS_METHODS = ['resolveMx', 'resolve4', 'resolve6', 'resolveTxt', 'resolvePtr', 'resolveCname', 'resolveSrv'] as const;
export type DnsMethod = (typeof DNS_METHODS)[number];
export const COUNTER_METHODS = ['hit', 'count', 'block', 'blockedFor', 'reset'] as const;
export type CounterMethod = (typeof COUNTER_METHODS)[number];

/** An error as it crosses the channel: its message, its code (a StoreError's or a DNS error's)
 * and whether it was a StoreError, so the worker can rebuild what its callers test for. */
export interface WireError {
  message: string;
  code: string | null;
  store: boolean;
}

export type ToWorker =
  | { t: 'setup'; setup: WorkerSetup }
  | { t: 'res'; id: number; ok: true; value: unknown }
  | { t: 'res'; id: number; ok: false; error: WireError }
  /** Stop accepting, end the sessions within graceMs (421), then exit. */
  | { t: 'close'; graceMs: number };

export type FromWorker =
  /** The worker's handler is in place (a message sent before it would be lost). */
  | { t: 'ready' }
  | { t: 'listening'; port: number }
  /** Setup failed (code: the error's, e.g. EADDRINUSE, or null). */
  | { t: 'failed'; message: string; code: string | null }
  | ({ t: 'req'; id: number } & Op)
  | { t: 'metric'; name: string; help: string; labels: Record<string, string>; by: number };

export function isFromWorker(m: unknown): m is FromWorker {
  return typeof m === 'object' && m !== null && typeof (m as { t?: unknown }).t === 'string';
}

/**
 * Messages go over the channel in batches: those posted during one turn of the event loop leave
 * together at its end, in one write. Each write costs a system call and wakes the other process;
 * under load, a batch COMMIT answers several deliveries at once, and several sessions ask in the
 * same turn.
 */
export function batchingPoster<T>(write: (batch: T[]) => void): (m: T) => void {
  let queue: T[] = [];
  const flush = (): void => {
    const batch = queue;
    queue = [];
    write(batch);
  };
  return (m) => {
    if (queue.push(m) === 1) setImmediate(flush);
  };
}
