/**
 * Which protocol server serves each listener name, with the options taken from the config.
 * A factory returning null means the listener cannot start in this configuration (implicit TLS
 * without a certificate).
 */
import { join } from 'node:path';
import type { Config, ListenerName } from './config/config.js';
import type { ListeningServer, ServerContext } from './context.js';
import type { Resolver } from './dns/resolver.js';
import { createHttpServer } from './http/server.js';
import { createDkimSigning } from './msgauth/dkim-sign.js';
import { createImapServer } from './imap/server/server.js';
import { createPop3Server } from './pop3/server/server.js';
import type { SubmitHook } from './smtp/server/policy-submission.js';
import { GREYLIST_FILE } from './smtp/server/greylist.js';
import { createSmtpServer } from './smtp/server/server.js';
import { RCPT_PROBES_MAX_DEFAULT, RCPT_PROBES_WINDOW_MS_DEFAULT } from './smtp/protocol/limits.js';
import { createSmtpWorkers } from './smtp/worker/pool.js';

export interface ListenerEnv {
  dataDir: string;
  resolver: Resolver;
  /** Where submission sends mail for remote recipients (the outbound queue). */
  onSubmit?: SubmitHook;
  /** Ports the running listeners are bound to, filled in by the app as each one listens (the
   * http listener advertises them in autoconfig: with port 0 they are known only then). */
  boundPorts?: () => Partial<Record<ListenerName, number>>;
}

export type ListenerFactory = (ctx: ServerContext, config: Config, env: ListenerEnv) => ListeningServer | null;

function imap(implicitTls: boolean): ListenerFactory {
  return (ctx, config) =>
    implicitTls && !ctx.tls
      ? null
      : createImapServer(ctx, {
          implicitTls,
          name: implicitTls ? 'imaps' : 'imap',
          allowPlaintextAuth: config.security.allowPlaintextAuth,
          appendLimit: config.imap.appendLimit,
          maxConnectionsPerIp: config.security.maxConnectionsPerIp,
          maxConnectionsPerAccount: config.imap.maxConnectionsPerAccount,
          maxConnections: config.imap.maxConnections,
          commandTimeoutMs: config.security.commandTimeoutMs,
          minUploadBytesPerSecond: config.security.minUploadBytesPerSecond,
          proxyProtocol: config.proxyProtocol[implicitTls ? 'imaps' : 'imap'] ?? null,
        });
}

function pop3(implicitTls: boolean): ListenerFactory {
  return (ctx, config) =>
    implicitTls && !ctx.tls
      ? null
      : createPop3Server(ctx, {
          implicitTls,
          allowPlaintextAuth: config.security.allowPlaintextAuth,
          retrSetsSeen: config.pop3.retrSetsSeen,
          ...(config.pop3.loginDelaySeconds > 0 ? { loginDelaySeconds: config.pop3.loginDelaySeconds } : {}),
          ...(config.pop3.expireDays !== null ? { expireDays: config.pop3.expireDays } : {}),
          maxConnectionsPerIp: config.security.maxConnectionsPerIp,
          maxConnections: config.pop3.maxConnections,
          timeouts: { commandMs: config.security.commandTimeoutMs },
          proxyProtocol: config.proxyProtocol[implicitTls ? 'pop3s' : 'pop3'] ?? null,
        });
}

function smtpLimits(config: Config) {
  return {
    maxMessageSize: config.smtp.maxMessageSize,
    maxRecipients: config.smtp.maxRecipients,
    maxConnectionsPerIp: config.security.maxConnectionsPerIp,
    maxConnections: config.smtp.maxConnections,
    // The message phase uses the IMAP literal bound's grace and floor rate (one knob: a user's
    // client submits a message and APPENDs it to Sent over the same link).
    messageGraceMs: config.security.commandTimeoutMs,
    minDataBytesPerSecond: config.security.minUploadBytesPerSecond,
    messageTimeoutMs: config.smtp.messageTimeoutMs,
  };
}

/** MX (port 25) and LMTP: in worker processes when config smtp.workers > 0 (smtp/worker/pool.ts),
 * else in this process. */
function inbound(mode: 'mx' | 'lmtp'): ListenerFactory {
  return (ctx, config, env) => {
    const listener = mode === 'mx' ? 'smtp' : 'lmtp';
    const options = {
      mode,
      greetingDelayMs: mode === 'mx' ? config.smtp.greetingDelayMs : 0,
      limits: smtpLimits(config),
      resolver: mode === 'mx' ? env.resolver : null,
      dmarcReject: config.smtp.dmarcReject,
      dnsbl: mode === 'mx' ? config.smtp.dnsbl : [],
      greylistSeconds: mode === 'mx' ? config.smtp.greylistSeconds : 0,
      greylistFile: mode === 'mx' ? join(env.dataDir, GREYLIST_FILE) : null,
      proxyProtocol: config.proxyProtocol[listener] ?? null,
    };
    if (config.smtp.workers === 0) return createSmtpServer(ctx, options);
    return createSmtpWorkers(ctx, {
      ...options,
      workers: config.smtp.workers,
      logLevel: config.log.level,
      tlsDir: join(env.dataDir, 'tls'),
      recipientProbes: mode === 'mx' ? { limit: RCPT_PROBES_MAX_DEFAULT, windowMs: RCPT_PROBES_WINDOW_MS_DEFAULT } : null,
    });
  };
}

function submission(implicitTls: boolean): ListenerFactory {
  return (ctx, config, env) =>
    implicitTls && !ctx.tls
      ? null
      : createSmtpServer(ctx, {
          mode: 'submission',
          implicitTls,
          limits: smtpLimits(config),
          allowPlaintextAuth: config.security.allowPlaintextAuth,
          ...(env.onSubmit ? { onSubmit: env.onSubmit } : {}),
          // Signed once, before routing: local and remote recipients get the same bytes.
          dkim: createDkimSigning(env.dataDir),
          sendAs: config.submission.sendAs,
          maxRemoteRecipientsPerDay: config.submission.maxRemoteRecipientsPerDay,
          proxyProtocol: config.proxyProtocol[implicitTls ? 'submissions' : 'submission'] ?? null,
        });
}

function http(implicitTls: boolean): ListenerFactory {
  return (ctx, config, env) =>
    implicitTls && !ctx.tls
      ? null
      : createHttpServer(ctx, {
          name: implicitTls ? 'https' : 'http',
          implicitTls,
          config,
          ...(env.boundPorts ? { boundPorts: env.boundPorts } : {}),
          proxyProtocol: config.proxyProtocol[implicitTls ? 'https' : 'http'] ?? null,
        });
}

export const LISTENER_FACTORIES: Partial<Record<ListenerName, ListenerFactory>> = {
  imap: imap(false),
  imaps: imap(true),
  pop3: pop3(false),
  pop3s: pop3(true),
  smtp: inbound('mx'),
  lmtp: inbound('lmtp'),
  submission: submission(false),
  submissions: submission(true),
  http: http(false),
  https: http(true),
};
