import type { ProxyProtocolOptions } from '../../net/proxy-listener.js';

/** Options of one IMAP listener (app.ts builds them from the configuration). */
export interface ImapServerOptions {
  /** TLS from the first byte (port 993) rather than STARTTLS (port 143). */
  implicitTls: boolean;
  /** Accept LOGIN / AUTHENTICATE PLAIN without TLS from remote clients (DESIGN.md invariant 5:
   * off by default; a client on the same host may always). */
  allowPlaintextAuth?: boolean;
  /** RFC 7889 APPENDLIMIT: largest message APPEND accepts, in bytes. */
  appendLimit?: number;
  /** Concurrent connections from one IP address (stops one host from taking every socket). */
  maxConnectionsPerIp?: number;
  /** Concurrent authenticated sessions of one account. */
  maxConnectionsPerAccount?: number;
  /** Total concurrent connections of this listener. */
  maxConnections?: number;
  /** APPEND literal bytes all connections may hold in memory at once (a MULTIAPPEND is held
   * whole until it is stored); an APPEND beyond it gets NO [UNAVAILABLE]. */
  appendBufferBytes?: number;
  /** Before login, the time each command has to arrive complete (default 60 s, see
   * PREAUTH_TIMEOUT_MS in session.ts). */
  preAuthTimeoutMs?: number;
  /** After login, the time a command has to arrive complete once its first byte came (default
   * 60 s; see net/command-deadline.ts); literals add time at minUploadBytesPerSecond. */
  commandTimeoutMs?: number;
  /** Floor rate for literal bytes after login (default 8192 bytes/s). */
  minUploadBytesPerSecond?: number;
  /** Inactivity before autologout once authenticated; RFC 9051 §5.4 asks for at least 30 min. */
  idleTimeoutMs?: number;
  /** Listener name in logs; "imap" or "imaps" by default. */
  name?: string;
  /** Behind a TCP load balancer: the PROXY protocol header is required from these balancers,
   * and only they may connect (net/proxy-listener.ts). */
  proxyProtocol?: ProxyProtocolOptions | null;
}

export const DEFAULT_APPEND_LIMIT = 50 * 1024 * 1024;
export const DEFAULT_MAX_CONNECTIONS_PER_IP = 20;
export const DEFAULT_MAX_CONNECTIONS_PER_ACCOUNT = 20;
export const DEFAULT_MAX_CONNECTIONS = 1000;
export const DEFAULT_IDLE_TIMEOUT_MS = 30 * 60 * 1000;
export const DEFAULT_APPEND_BUFFER_BYTES = 256 * 1024 * 1024;
