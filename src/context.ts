/**
 * What every protocol server is given by the composition root (app.ts). Servers receive these
 * as interfaces and never construct a store, a resolver or a logger themselves, so tests can
 * start any server on port 0 with a fresh store.
 */
import type { SecureContext, TlsOptions } from 'node:tls';
import type { Logger } from 'pino';
import type { AccountId } from './lib/brand.js';
import type { Metrics } from './lib/metrics.js';
import type { Account, MailStore } from './store/types.js';
import type { SharedCounters } from './store/counters.js';
import type { Srs } from './delivery/srs.js';
import type { OutboundEnvelope } from './queue/types.js';
import type { ArcSealInput } from './msgauth/dkim-sign.js';
import type { VacationResponder } from './delivery/vacation.js';

export type Protocol = 'smtp' | 'submission' | 'lmtp' | 'imap' | 'pop3' | 'http';

export interface AuthMeta {
  /** Remote address of the client. */
  ip: string;
  protocol: Protocol;
  /** Whether the connection is TLS-protected (or on the same host, see DESIGN.md invariant 5). */
  secure: boolean;
}

export type AuthResult =
  | { ok: true; account: Account }
  /** invalid: wrong user or password (never says which); throttled: too many failures, try
   * later; busy: too many checks already waiting (nothing failed, nothing was counted), try
   * again shortly; disabled: account disabled or needs an app password. */
  | { ok: false; reason: 'invalid' | 'throttled' | 'busy' | 'disabled' };

/** Stored SCRAM-SHA-256 credentials (RFC 5802 §3, RFC 7677). */
export interface ScramCredentials {
  salt: Buffer;
  iterations: number;
  storedKey: Buffer;
  serverKey: Buffer;
}

export interface Authenticator {
  /**
   * Checks a user name (an address) and password. Applies per-IP and per-account failure limits
   * and takes as long for an unknown account as for a known one.
   */
  verifyPassword(username: string, password: string, meta: AuthMeta): Promise<AuthResult>;
  /** SCRAM lookup; for an unknown user returns deterministic fake credentials so the exchange
   * proceeds and fails at the proof, like for a wrong password. */
  scramCredentials(username: string): Promise<{ credentials: ScramCredentials; account: Account | null }>;
  /** Records the outcome of a SCRAM exchange (for the failure limits). */
  recordScramOutcome(username: string, account: Account | null, success: boolean, meta: AuthMeta): Promise<AuthResult>;
  /**
   * The second step of a login with a second factor (the web interface, after the main
   * password): checks a TOTP code of the account (RFC 6238), accepts each time step once, and
   * counts failures under the same limits as passwords. 'invalid' also for an account without
   * TOTP.
   */
  verifyTotp(account: Account, code: string, meta: AuthMeta): Promise<AuthResult>;
}

export interface TlsProvider {
  /** Options for tls.createServer / new TLSSocket (certificate for the default hostname, SNI
   * callback for the others, TLS 1.2 minimum). */
  serverOptions(): TlsOptions;
  secureContext(servername?: string): SecureContext;
}

export interface ServerContext {
  /** This server's host name: greeting, EHLO, Received, authserv-id. */
  hostname: string;
  store: MailStore;
  log: Logger;
  auth: Authenticator;
  tls: TlsProvider | null;
  /** Counters and gauges served at the http listener's /metrics; absent in most tests. */
  metrics?: Metrics;
  /** Limits shared by every node (RCPT probing; auth failures go through `auth`); absent or
   * null: each server counts in its own memory. */
  counters?: SharedCounters | null;
  /** Where delivery status notifications go (the outbound queue's sendReport: the sender's
   * INBOX when local, else queued); absent: local delivery sends none (tests without a queue). */
  reports?: ReportSender;
  /** Forwarding to remote alias targets (delivery/forward.ts); absent: an alias target outside
   * the local domains is not followed (tests without a queue). */
  forwarding?: Forwarding;
  /** Automatic replies of accounts whose owners are away (delivery/vacation.ts); absent: none. */
  vacation?: VacationResponder;
}

/** Sends a DSN to `to`; durable when it resolves. */
export type ReportSender = (report: Buffer, to: string) => Promise<void>;

/** What forwarding needs of the application: the envelope senders' rewriting, and the queue. */
export interface Forwarding {
  srs: Srs;
  /** Queues `raw` for remote recipients; durable when it resolves. Returns the queue id. */
  send(raw: Buffer, envelope: OutboundEnvelope): Promise<string>;
  /** Adds our ARC set, signed for `domain` (RFC 8617); absent or no key: the copy unsealed. */
  seal?(raw: Buffer, domain: string, arc: ArcSealInput): Promise<Buffer>;
}

/** A listening protocol server. */
export interface ListeningServer {
  readonly name: string;
  /** Resolves with the bound port (useful with port 0). */
  listen(host: string, port: number): Promise<number>;
  /** Stops accepting, lets running commands finish (up to the grace period), closes sessions. */
  close(graceMs?: number): Promise<void>;
}

export type { AccountId };
