/**
 * The POP3 listener (RFC 1939, RFC 2449, RFC 5034, RFC 2595; pop3s per RFC 8314): accepts
 * connections, applies the per-IP and total connection limits before any TLS work, and runs one
 * Pop3Session per connection. POP3 is a view of INBOX in the shared store (docs/pop3-imap.md).
 *
 * Invariants:
 * - No module-level state: each server owns its connection table and LOGIN-DELAY bookkeeping.
 * - A connection over a limit gets "-ERR [SYS/TEMP]" and is closed before a session exists.
 * - close() stops accepting, lets running commands finish within the grace period, then closes
 *   every session without UPDATE (nothing is removed) and releases their locks.
 */
import { commandCounter } from '../../lib/metrics.js';
import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import type { ListeningServer, ServerContext } from '../../context.js';
import { requireProxyProtocol, type ProxyProtocolGuard } from '../../net/proxy-listener.js';
import { createSaslSession, saslMechanisms } from '../../sasl/session.js';
import { err } from '../protocol/response.js';
import { resolveOptions, type Pop3ServerOptions } from './options.js';
import { createLoginDelayTracker, normalizeIp, Pop3Session, type SessionDeps } from './session.js';

export type { Pop3ServerOptions } from './options.js';

export function createPop3Server(ctx: ServerContext, options: Pop3ServerOptions): ListeningServer {
  const resolved = resolveOptions(options);
  if (resolved.implicitTls && ctx.tls === null) throw new Error('Cannot start pop3s: no TLS certificate configured');
  const name = resolved.implicitTls ? 'pop3s' : 'pop3';
  const log = ctx.log.child({ server: name });
  const sessions = new Set<Pop3Session>();
  const perIp = new Map<string, number>();
  const loginDelay = createLoginDelayTracker(resolved.loginDelaySeconds);
  let server: Server | null = null;
  let proxyGuard: ProxyProtocolGuard | null = null;
  let closing = false;

  // One bound counter per command name, found once for the listener (see Counter.with).
  const countCommand = commandCounter(ctx.metrics, 'pop3');
  const sasl: SessionDeps['sasl'] = {
    mechanisms: (plaintextAllowed) => saslMechanisms(plaintextAllowed),
    create: (mechanism, meta, plaintextAllowed) =>
      createSaslSession(mechanism, ctx.auth, meta, { allowPlaintext: plaintextAllowed }),
  };

  function refuse(socket: Socket, text: string): void {
    socket.on('error', () => undefined);
    if (resolved.implicitTls) {
      // Nothing can be said in clear on a TLS port.
      socket.destroy();
      return;
    }
    socket.end(err(text, 'SYS/TEMP'));
    setTimeout(() => socket.destroy(), 1000).unref();
  }

  function onConnection(socket: Socket): void {
    const ip = normalizeIp(socket.remoteAddress ?? '');
    if (closing) {
      socket.destroy();
      return;
    }
    // DESIGN.md invariant 4: connections are bounded per IP and in total.
    const fromIp = perIp.get(ip) ?? 0;
    if (sessions.size >= resolved.maxConnections) {
      log.info({ event: 'refused', ip, reason: 'max connections' }, 'connection refused');
      refuse(socket, 'Too many connections, try again later');
      return;
    }
    if (fromIp >= resolved.maxConnectionsPerIp) {
      log.info({ event: 'refused', ip, reason: 'max connections per ip' }, 'connection refused');
      refuse(socket, 'Too many connections from your address');
      return;
    }
    perIp.set(ip, fromIp + 1);
    ctx.metrics?.counter('facteur_connections_total', 'Connections accepted, by listener.').inc({ listener: name });
    socket.setNoDelay(true);
    const id = randomBytes(6).toString('base64url');
    const session = new Pop3Session(socket, id, {
      ctx,
      countCommand,
      options: resolved,
      sasl,
      loginDelay,
      onClosed: () => {
        sessions.delete(session);
        const n = (perIp.get(ip) ?? 1) - 1;
        if (n <= 0) perIp.delete(ip);
        else perIp.set(ip, n);
      },
    });
    sessions.add(session);
    session.start();
  }

  return {
    name,
    listen(host, port) {
      return new Promise((resolve, reject) => {
        const s = createServer({ pauseOnConnect: false }, onConnection);
        if (options.proxyProtocol) proxyGuard = requireProxyProtocol(s, options.proxyProtocol, log);
        s.once('error', reject);
        s.listen(port, host, () => {
          s.off('error', reject);
          s.on('error', (error) => log.error({ err: error }, 'listener error'));
          server = s;
          const address = s.address();
          const bound = typeof address === 'object' && address !== null ? address.port : port;
          log.info({ event: 'listening', host, port: bound }, 'POP3 listening');
          resolve(bound);
        });
      });
    },
    async close(graceMs = 5000) {
      closing = true;
      const stopped = new Promise<void>((resolve) => {
        if (server === null) return resolve();
        server.close(() => resolve());
      });
      proxyGuard?.close();
      const deadline = Date.now() + graceMs;
      // Running commands finish (a RETR in flight completes) within the grace period.
      while ([...sessions].some((s) => s.busy) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      for (const s of sessions) s.shutdown('server closing');
      while (sessions.size > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      for (const s of sessions) s.destroy('server closing');
      await stopped;
    },
  };
}
