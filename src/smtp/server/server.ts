/**
 * SMTP (port 25), submission (587 STARTTLS, 465 implicit TLS) and LMTP listeners over one session
 * engine (session.ts) and one delivery path (src/delivery/).
 *
 * Invariants: connections are counted per IP and in total, and refused with 421 above the limits
 * (DESIGN.md invariant 4); every session is tracked so close() can end them gracefully.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { requireProxyProtocol, type ProxyProtocolGuard, type ProxyProtocolOptions } from '../../net/proxy-listener.js';
import { followDefaultCertificate } from '../../net/tls.js';
import { DEFAULT_COMMAND_TIMEOUT_MS, DEFAULT_MIN_UPLOAD_BYTES_PER_SECOND } from '../../net/command-deadline.js';
import type { ListeningServer, ServerContext } from '../../context.js';
import type { Resolver } from '../../dns/resolver.js';
import { R, formatReply } from '../protocol/reply.js';
import {
  COMMAND_TIMEOUT_MS_DEFAULT,
  CONNECTIONS_MAX_DEFAULT,
  CONNECTIONS_PER_IP_DEFAULT,
  DATA_LINE_MAX_DEFAULT,
  DATA_TIMEOUT_MS_DEFAULT,
  ERRORS_MAX_DEFAULT,
  MESSAGE_SIZE_DEFAULT,
  MESSAGE_TIMEOUT_MS_DEFAULT,
  RCPT_PROBES_MAX_DEFAULT,
  RCPT_PROBES_WINDOW_MS_DEFAULT,
  RECIPIENTS_MAX_DEFAULT,
} from '../protocol/limits.js';
import { createSaslSession, saslMechanisms } from '../../sasl/session.js';
import type { SmtpMode, SmtpPolicy } from './policy.js';
import { createInboundPolicy, type DmarcRejectAction } from './policy-inbound.js';
import type { DkimSigningService } from '../../msgauth/dkim-sign.js';
import { createSubmissionPolicy, type SendAsGrants, type SubmitHook } from './policy-submission.js';
import { SmtpSession, type SaslProvider, type SessionLimits } from './session.js';
import { createRandomHex } from '../../lib/random-hex.js';
import { commandCounter } from '../../lib/metrics.js';

export interface SmtpServerOptions {
  mode: SmtpMode;
  /** Submissions (465, RFC 8314 §3.3): TLS from the first byte. */
  implicitTls?: boolean;
  /** Port 25 policy only (like postscreen): wait before the greeting, refuse early talkers.
   * Default 0. */
  greetingDelayMs?: number;
  limits?: Partial<SessionLimits> & { maxConnectionsPerIp?: number; maxConnections?: number };
  /** Replaces the policy the mode implies (tests, special deployments). */
  policy?: SmtpPolicy;
  /** DNS for SPF/DKIM/DMARC/ARC (mode 'mx'). Without it message authentication is off. */
  resolver?: Resolver | null;
  /** Mail failing DMARC at a p=reject domain: 'junk' (default, delivered to Junk) or 'reject'
   * (550 5.7.1). */
  dmarcReject?: DmarcRejectAction;
  /** Port 25: DNS blocklist zones whose listed clients get 554 5.7.1 at MAIL (dnsbl.ts), asked
   * through `resolver`; none by default. */
  dnsbl?: readonly string[];
  /** Port 25: unknown recipients one client IP may probe per window before its RCPTs are
   * deferred (default RCPT_PROBES_MAX_DEFAULT per RCPT_PROBES_WINDOW_MS_DEFAULT); null: no limit. */
  recipientProbes?: { limit: number; windowMs: number } | null;
  /** Port 25: greylisting (greylist.ts), the delay a new triplet waits; absent or 0: off. */
  greylistSeconds?: number;
  /** Tests: greylist loopback and private clients too. */
  greylistPrivate?: boolean;
  /** Port 25: where greylisting keeps its triplets across restarts (greylist.ts). */
  greylistFile?: string | null;
  /** Submission: AUTH mechanisms. */
  sasl?: SaslProvider | null;
  /** Submission: AUTH without TLS from other hosts (DESIGN.md invariant 5). Default false. */
  allowPlaintextAuth?: boolean;
  /** Submission: where mail for remote recipients goes (the outbound queue). */
  onSubmit?: SubmitHook;
  /** Submission: DKIM-signs submitted mail before it is routed (else the queue signs). */
  dkim?: DkimSigningService;
  /** Submission: what accounts may send as besides their own addresses and aliases. */
  sendAs?: SendAsGrants;
  /** Submission: remote recipients an account may send to in 24 hours (0 or absent: no limit). */
  maxRemoteRecipientsPerDay?: number;
  /** Behind a TCP load balancer: the PROXY protocol header is required from these balancers,
   * and only they may connect (net/proxy-listener.ts). */
  proxyProtocol?: ProxyProtocolOptions | null;
}

export function createSmtpServer(ctx: ServerContext, options: SmtpServerOptions): ListeningServer {
  const limits: SessionLimits = {
    maxMessageSize: options.limits?.maxMessageSize ?? MESSAGE_SIZE_DEFAULT,
    maxRecipients: options.limits?.maxRecipients ?? RECIPIENTS_MAX_DEFAULT,
    maxDataLineLength: options.limits?.maxDataLineLength ?? DATA_LINE_MAX_DEFAULT,
    maxErrors: options.limits?.maxErrors ?? ERRORS_MAX_DEFAULT,
    commandTimeoutMs: options.limits?.commandTimeoutMs ?? COMMAND_TIMEOUT_MS_DEFAULT,
    dataTimeoutMs: options.limits?.dataTimeoutMs ?? DATA_TIMEOUT_MS_DEFAULT,
    messageGraceMs: options.limits?.messageGraceMs ?? DEFAULT_COMMAND_TIMEOUT_MS,
    minDataBytesPerSecond: options.limits?.minDataBytesPerSecond ?? DEFAULT_MIN_UPLOAD_BYTES_PER_SECOND,
    messageTimeoutMs: options.limits?.messageTimeoutMs ?? MESSAGE_TIMEOUT_MS_DEFAULT,
  };
  const maxPerIp = options.limits?.maxConnectionsPerIp ?? CONNECTIONS_PER_IP_DEFAULT;
  const maxTotal = options.limits?.maxConnections ?? CONNECTIONS_MAX_DEFAULT;
  const policy =
    options.policy ??
    (options.mode === 'submission'
      ? createSubmissionPolicy(ctx, { onSubmit: options.onSubmit, dkim: options.dkim, sendAs: options.sendAs, maxRemoteRecipientsPerDay: options.maxRemoteRecipientsPerDay })
      : createInboundPolicy(ctx, {
          resolver: options.mode === 'mx' ? (options.resolver ?? null) : null,
          senderReports: options.mode === 'mx',
          dnsbl: options.mode === 'mx' && options.resolver && options.dnsbl?.length ? { zones: options.dnsbl, resolver: options.resolver } : null,
          greylist:
            options.mode === 'mx' && options.greylistSeconds
              ? { delayMs: options.greylistSeconds * 1000, exemptPrivate: options.greylistPrivate !== true, file: options.greylistFile ?? null }
              : null,
          dmarcReject: options.dmarcReject ?? 'junk',
          recipientProbes:
            options.mode === 'mx'
              ? options.recipientProbes === undefined
                ? { limit: RCPT_PROBES_MAX_DEFAULT, windowMs: RCPT_PROBES_WINDOW_MS_DEFAULT }
                : options.recipientProbes
              : null,
        }));
  const allowPlaintextAuth = options.allowPlaintextAuth ?? false;
  // Submission's AUTH: the SASL sessions of src/sasl over the context's Authenticator.
  const sasl: SaslProvider | null =
    options.sasl !== undefined
      ? options.sasl
      : options.mode === 'submission'
        ? {
            mechanisms: (allowPlaintext) => saslMechanisms(allowPlaintext),
            create: (mechanism, meta, allowPlaintext) => createSaslSession(mechanism, ctx.auth, meta, { allowPlaintext }),
          }
        : null;
  const implicitTls = options.implicitTls ?? false;
  if (implicitTls && !ctx.tls) throw new Error('Cannot start implicit TLS: no certificate');
  const sessions = new Set<SmtpSession>();
  const randomHex = createRandomHex();
  const perIp = new Map<string, number>();
  const name = options.mode === 'submission' && implicitTls ? 'submissions' : options.mode === 'mx' ? 'smtp' : options.mode;

  // One bound counter per verb, found once for the listener (see Counter.with).
  const countCommand = commandCounter(ctx.metrics, options.mode === 'mx' ? 'smtp' : options.mode);
  const onConnection = (socket: Socket): void => {
    const ip = socket.remoteAddress ?? 'unknown';
    const count = perIp.get(ip) ?? 0;
    if (count >= maxPerIp || sessions.size >= maxTotal) {
      socket.on('error', () => {});
      socket.end(formatReply(R.tooManyConnections()));
      return;
    }
    perIp.set(ip, count + 1);
    ctx.metrics?.counter('facteur_connections_total', 'Connections accepted, by listener.').inc({ listener: name });
    let counted = true;
    const session = new SmtpSession(socket, {
      ctx,
      countCommand,
      mode: options.mode,
      policy,
      limits,
      implicitTls,
      greetingDelayMs: options.mode === 'mx' ? (options.greetingDelayMs ?? 0) : 0,
      sasl,
      allowPlaintextAuth,
      randomHex,
      onClose: () => {
        if (!counted) return;
        counted = false;
        sessions.delete(session);
        const n = (perIp.get(ip) ?? 1) - 1;
        if (n <= 0) perIp.delete(ip);
        else perIp.set(ip, n);
      },
    });
    sessions.add(session);
    session.start();
  };

  let server: Server;
  if (implicitTls) {
    server = createTlsServer(ctx.tls!.serverOptions());
    followDefaultCertificate(server as TlsServer, ctx.tls!);
    server.on('secureConnection', onConnection);
    server.on('tlsClientError', (err) => ctx.log.debug({ err: err.message }, 'tls handshake failed'));
  } else {
    server = createServer(onConnection);
  }

  let proxyGuard: ProxyProtocolGuard | null = null;
  return {
    name,
    listen(host, port) {
      if (options.proxyProtocol && proxyGuard === null) proxyGuard = requireProxyProtocol(server, options.proxyProtocol, ctx.log);
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          const addr = server.address();
          resolve(typeof addr === 'object' && addr ? addr.port : port);
        });
      });
    },
    async close(graceMs = 10_000) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      proxyGuard?.close();
      for (const s of sessions) s.shutdown();
      const deadline = Date.now() + graceMs;
      while (sessions.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      for (const s of sessions) s.destroy();
      await closed;
      await policy.close?.();
    },
  };
}
