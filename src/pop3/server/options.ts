/** Options of createPop3Server (the composition root fills them from the configuration). */
import {
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_PRE_AUTH_IDLE_TIMEOUT_MS,
  DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS,
} from '../protocol/limits.js';
import type { ProxyProtocolOptions } from '../../net/proxy-listener.js';
import { DEFAULT_COMMAND_TIMEOUT_MS } from '../../net/command-deadline.js';

/** Sessions open at once per POP3 listener, by default. */
export const POP3_MAX_CONNECTIONS_DEFAULT = 1000;

export interface Pop3Timeouts {
  /** Inactivity after login before the connection is closed without UPDATE (RFC 1939 §3: at
   * least 10 minutes; default 10 minutes). */
  idleMs: number;
  /** Inactivity before login (default 60 s). */
  preAuthIdleMs: number;
  /** TLS handshake, implicit or after STLS (default 30 s). */
  tlsHandshakeMs: number;
  /** After login, the time a command line has to arrive complete once its first byte came
   * (default 60 s, net/command-deadline.ts): a client trickling bytes is dropped with -ERR. */
  commandMs: number;
}

export interface Pop3ServerOptions {
  /** Behind a TCP load balancer: the PROXY protocol header is required from these balancers,
   * and only they may connect (net/proxy-listener.ts). */
  proxyProtocol?: ProxyProtocolOptions | null;

  /** pop3s (port 995, RFC 8314): TLS from the first byte. Otherwise pop3 with STLS. */
  implicitTls: boolean;
  /** Accept USER/PASS and the PLAIN/LOGIN mechanisms without TLS from clients on other hosts
   * (DESIGN.md invariant 5). Default false. */
  allowPlaintextAuth?: boolean;
  /** RETR sets \Seen (docs/pop3-imap.md). Default true. */
  retrSetsSeen?: boolean;
  /** RFC 2449 §6.5 LOGIN-DELAY: minimum seconds between two logins of an account, announced and
   * enforced (-ERR [LOGIN-DELAY]). Unset: not announced, not enforced. */
  loginDelaySeconds?: number;
  /** RFC 2449 §6.7 EXPIRE announced in CAPA: n > 0 announces "EXPIRE n", a promise to keep
   * messages at least n days (always kept: Facteur's POP3 never removes a message it was not told
   * to delete); 0 announces "EXPIRE NEVER", as the configuration file's expire_days = 0 means.
   * There is no delete-on-retrieval mode (RFC 2449's EXPIRE 0): it would lose mail for the IMAP
   * side. Unset: not announced. */
  expireDays?: number;
  /** Connections from one IP address at a time (default 10). */
  maxConnectionsPerIp?: number;
  /** Connections in total (default 1000). */
  maxConnections?: number;
  timeouts?: Partial<Pop3Timeouts>;
}

export interface ResolvedPop3Options {
  implicitTls: boolean;
  allowPlaintextAuth: boolean;
  retrSetsSeen: boolean;
  loginDelaySeconds: number | null;
  expireDays: number | null;
  maxConnectionsPerIp: number;
  maxConnections: number;
  timeouts: Pop3Timeouts;
}

export function resolveOptions(options: Pop3ServerOptions): ResolvedPop3Options {
  const nonNegative = (name: string, v: number | undefined): number | null => {
    if (v === undefined) return null;
    if (!Number.isInteger(v) || v < 0) throw new Error(`Cannot use POP3 option ${name}: ${v} is not a whole number >= 0`);
    return v;
  };
  const timeouts: Pop3Timeouts = {
    idleMs: options.timeouts?.idleMs ?? DEFAULT_IDLE_TIMEOUT_MS,
    preAuthIdleMs: options.timeouts?.preAuthIdleMs ?? DEFAULT_PRE_AUTH_IDLE_TIMEOUT_MS,
    tlsHandshakeMs: options.timeouts?.tlsHandshakeMs ?? DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS,
    commandMs: options.timeouts?.commandMs ?? DEFAULT_COMMAND_TIMEOUT_MS,
  };
  return {
    implicitTls: options.implicitTls,
    allowPlaintextAuth: options.allowPlaintextAuth ?? false,
    retrSetsSeen: options.retrSetsSeen ?? true,
    loginDelaySeconds: nonNegative('loginDelaySeconds', options.loginDelaySeconds),
    expireDays: nonNegative('expireDays', options.expireDays),
    maxConnectionsPerIp: nonNegative('maxConnectionsPerIp', options.maxConnectionsPerIp) ?? 10,
    maxConnections: nonNegative('maxConnections', options.maxConnections) ?? POP3_MAX_CONNECTIONS_DEFAULT,
    timeouts,
  };
}
