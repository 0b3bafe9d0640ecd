/**
 * The IMAP listener: accepts connections (plain with STARTTLS, or implicit TLS), applies the
 * connection limits, and runs one Session per connection.
 *
 * Invariants:
 * - Limits per IP, per account and in total are checked before any work is done for a
 *   connection; a refused connection gets `* BYE` and is closed (DESIGN.md invariant 4).
 * - close() stops accepting, lets each running command finish up to the grace period, sends BYE
 *   and closes every session.
 */
import { commandCounter } from '../../lib/metrics.js';
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { requireProxyProtocol, type ProxyProtocolGuard } from '../../net/proxy-listener.js';
import { followDefaultCertificate } from '../../net/tls.js';
import type { ListeningServer, ServerContext } from '../../context.js';
import type { AccountId, MailboxId } from '../../lib/brand.js';
import {
  DEFAULT_APPEND_BUFFER_BYTES,
  DEFAULT_APPEND_LIMIT,
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_MAX_CONNECTIONS_PER_ACCOUNT,
  DEFAULT_MAX_CONNECTIONS_PER_IP,
  type ImapServerOptions,
} from './options.js';
import { Session, type SessionHost } from './session.js';
import { FetchItemCache } from '../fetch/item-cache.js';

export type { ImapServerOptions } from './options.js';

export function createImapServer(ctx: ServerContext, options: ImapServerOptions): ListeningServer {
  const name = options.name ?? (options.implicitTls ? 'imaps' : 'imap');
  const log = ctx.log.child({ server: name });
  const resolved: SessionHost['options'] = {
    ...options,
    appendLimit: options.appendLimit ?? DEFAULT_APPEND_LIMIT,
    idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
    maxConnectionsPerAccount: options.maxConnectionsPerAccount ?? DEFAULT_MAX_CONNECTIONS_PER_ACCOUNT,
  };
  const maxPerIp = options.maxConnectionsPerIp ?? DEFAULT_MAX_CONNECTIONS_PER_IP;
  const maxTotal = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  const perIp = new Map<string, number>();
  const perAccount = new Map<AccountId, number>();
  const sessions = new Set<Session>();
  let closing = false;

  const recentFloors = new Map<MailboxId, number>();
  const budgetBytes = options.appendBufferBytes ?? DEFAULT_APPEND_BUFFER_BYTES;
  // One account may hold a quarter of it (or one message at the limit, if more): its sessions
  // announcing large literals and sending nothing cannot refuse every other account's APPEND.
  const accountShare = Math.max(resolved.appendLimit, Math.floor(budgetBytes / 4));
  let appendBytesHeld = 0;
  const heldByAccount = new Map<AccountId, number>();
  const host: SessionHost = {
    ctx,
    options: resolved,
    // One bound counter per command name, found once for the listener (see Counter.with).
    countCommand: commandCounter(ctx.metrics, 'imap'),
    fetchItems: new FetchItemCache(),
    appendBudget: {
      reserve(bytes, account) {
        const mine = account === null ? 0 : (heldByAccount.get(account) ?? 0);
        if (appendBytesHeld + bytes > budgetBytes || mine + bytes > accountShare) return false;
        appendBytesHeld += bytes;
        if (account !== null) heldByAccount.set(account, mine + bytes);
        return true;
      },
      release(bytes, account) {
        appendBytesHeld = Math.max(0, appendBytesHeld - bytes);
        if (account === null) return;
        const left = (heldByAccount.get(account) ?? 0) - bytes;
        if (left > 0) heldByAccount.set(account, left);
        else heldByAccount.delete(account);
      },
    },
    recent: {
      floor: (id) => recentFloors.get(id) ?? 0,
      claim(id, upTo) {
        const before = recentFloors.get(id) ?? 0;
        if (upTo > before) recentFloors.set(id, upTo);
        return before;
      },
    },
    claimAccount(id) {
      const n = perAccount.get(id) ?? 0;
      if (n >= resolved.maxConnectionsPerAccount) return false;
      perAccount.set(id, n + 1);
      return true;
    },
    releaseAccount(id) {
      const n = (perAccount.get(id) ?? 1) - 1;
      if (n <= 0) perAccount.delete(id);
      else perAccount.set(id, n);
    },
  };

  function onConnection(socket: Socket, tls: boolean): void {
    socket.on('error', () => {}); // reported by the session; an unhandled error must not crash us
    // Responses are gathered into one write per turn (Session.write) already; with Nagle's
    // algorithm the write that follows a streamed literal (its closing parenthesis and the
    // tagged OK) waited for the client's delayed ACK: 40 ms more on a FETCH BODY[] of a large
    // message, measured on loopback.
    socket.setNoDelay(true);
    const ip = (socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    const count = perIp.get(ip) ?? 0;
    if (closing || count >= maxPerIp || sessions.size >= maxTotal) {
      log.info({ ip, perIp: count, total: sessions.size }, 'connection refused: limit');
      socket.end('* BYE [UNAVAILABLE] Too many connections\r\n');
      setTimeout(() => socket.destroy(), 1000).unref();
      return;
    }
    perIp.set(ip, count + 1);
    ctx.metrics?.counter('facteur_connections_total', 'Connections accepted, by listener.').inc({ listener: name });
    const session = new Session(host, socket, tls);
    sessions.add(session);
    session.log.info({ tls }, 'connection');
    void session.run().finally(() => {
      sessions.delete(session);
      const n = (perIp.get(ip) ?? 1) - 1;
      if (n <= 0) perIp.delete(ip);
      else perIp.set(ip, n);
    });
  }

  let server: Server;
  if (options.implicitTls) {
    if (ctx.tls === null) throw new Error('Cannot start implicit TLS IMAP: no TLS certificate');
    server = createTlsServer(ctx.tls.serverOptions(), (socket: TLSSocket) => onConnection(socket, true));
    followDefaultCertificate(server as TlsServer, ctx.tls);
    server.on('tlsClientError', (err) => log.debug({ err: err.message }, 'TLS handshake failed'));
  } else {
    server = createServer((socket) => onConnection(socket, false));
  }

  let proxyGuard: ProxyProtocolGuard | null = null;
  return {
    name,
    listen(hostname, port) {
      if (options.proxyProtocol && proxyGuard === null) proxyGuard = requireProxyProtocol(server, options.proxyProtocol, log);
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, hostname, () => {
          server.off('error', reject);
          const addr = server.address();
          const bound = typeof addr === 'object' && addr !== null ? addr.port : port;
          log.info({ host: hostname, port: bound }, 'listening');
          resolve(bound);
        });
      });
    },
    async close(graceMs = 5000) {
      closing = true;
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      proxyGuard?.close();
      for (const s of sessions) s.shutdown();
      const deadline = Date.now() + graceMs;
      while (sessions.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      for (const s of sessions) s.destroy();
      await stopped;
    },
  };
}
