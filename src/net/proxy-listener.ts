/**
 * A listener behind a TCP load balancer that speaks the PROXY protocol (proxy-protocol.ts): every
 * connection must come from a trusted balancer address and start with a valid header, which is
 * read before the server sees the connection. The server's own connection handlers (per-IP
 * limits, greeting, TLS handshake on implicit-TLS ports, the HTTP parser) then run with a socket
 * that reports the client's address and port, and the address the client connected to, as its
 * remoteAddress/remotePort and localAddress/localPort. So logs, Received fields, SPF, rate limits,
 * "client on the same host" checks and per-IP connection limits all see the client, not the
 * balancer.
 *
 * Invariants:
 * - A connection from an address outside `trusted` is closed at once, header or not. On a
 *   server-speaks-first protocol (SMTP, IMAP, POP3) the server cannot wait to see whether an
 *   unknown client sends a header, and a listener that served both kinds would take any
 *   balancer whose address was left out of `trusted` for a client; a PROXY listener serves its
 *   balancers only (other clients use another listener, or come through the balancer).
 * - From a trusted address the header is required: nothing is sent and no TLS handshake starts
 *   before it is whole. A malformed, oversized or missing header (none within headerTimeoutMs)
 *   closes the connection without a word: there is no client to answer, and on an implicit-TLS
 *   port nothing may be said in clear.
 * - Bytes that follow the header in the same packet are given back to the stream untouched
 *   (a TLS ClientHello, a pipelined HTTP request).
 * - The header's LOCAL command (the balancer's health checks) keeps the real addresses.
 */
import { BlockList, isIPv4, isIPv6, type Server, type Socket } from 'node:net';
import { Server as TlsServer, type TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { parseProxyHeader, type ProxyHeader } from './proxy-protocol.js';

/** Balancers send the header with the connection; 5 s covers a loaded balancer and holds a
 * half-open connection from a broken one only briefly. */
export const PROXY_HEADER_TIMEOUT_MS = 5_000;

export interface ProxyProtocolOptions {
  /** Addresses or CIDR blocks of the balancers ("10.0.0.0/8", "2001:db8::/32", "192.0.2.7"). */
  trusted: readonly string[];
  /** Default PROXY_HEADER_TIMEOUT_MS. */
  headerTimeoutMs?: number;
}

export interface ProxyProtocolGuard {
  /** Connections still waiting for their header. */
  readonly pending: number;
  /** Closes the connections still waiting for their header (the listener is closing). */
  close(): void;
}

/** Parses a list of addresses and CIDR blocks; throws with the offending entry. */
export function parseTrustedNetworks(list: readonly string[]): BlockList {
  const blocks = new BlockList();
  for (const entry of list) {
    const m = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(entry.trim());
    const address = m?.[1] ?? '';
    const type = isIPv4(address) ? 'ipv4' : isIPv6(address) ? 'ipv6' : null;
    const max = type === 'ipv4' ? 32 : 128;
    const prefix = m?.[2] === undefined ? max : Number(m[2]);
    if (type === null || prefix > max) throw new Error(`cannot parse ${JSON.stringify(entry)} as an address or CIDR block`);
    blocks.addSubnet(address, prefix, type);
  }
  return blocks;
}

interface Endpoints {
  remoteAddress: string;
  remotePort: number;
  remoteFamily: 'IPv4' | 'IPv6';
  localAddress: string;
  localPort: number;
}

function endpointsOf(header: ProxyHeader): Endpoints | null {
  if (header.command === 'local') return null;
  // An IPv4 client the balancer reports in IPv6 form is an IPv4 client.
  const unmap = (a: string) => /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a)?.[1] ?? a;
  const remoteAddress = unmap(header.source.address);
  return {
    remoteAddress,
    remotePort: header.source.port,
    remoteFamily: isIPv4(remoteAddress) ? 'IPv4' : 'IPv6',
    localAddress: unmap(header.destination.address),
    localPort: header.destination.port,
  };
}

/** Makes the socket report the proxied endpoints (own properties shadow net.Socket's getters). */
function applyEndpoints(socket: Socket, e: Endpoints): void {
  for (const [key, value] of Object.entries(e)) Object.defineProperty(socket, key, { value, configurable: true, enumerable: true });
}

/**
 * Puts the PROXY header check in front of the server's 'connection' handlers. Call it after the
 * server's handlers are attached and before listen(): the handlers present now run once the
 * header is read.
 */
export function requireProxyProtocol(server: Server, options: ProxyProtocolOptions, log: Pick<Logger, 'info' | 'debug'>): ProxyProtocolGuard {
  const trusted = parseTrustedNetworks(options.trusted);
  const timeoutMs = options.headerTimeoutMs ?? PROXY_HEADER_TIMEOUT_MS;
  const handlers = server.listeners('connection') as Array<(this: Server, socket: Socket) => void>;
  server.removeAllListeners('connection');
  const pending = new Set<Socket>();
  // An implicit-TLS server wraps the socket in a TLSSocket that reads its peer from the kernel:
  // its endpoints are set when the handshake completes, found by the balancer-side address and
  // port (unique among open connections).
  const viaTls = new Map<string, Endpoints>();
  if (server instanceof TlsServer) {
    server.prependListener('secureConnection', (tls: TLSSocket) => {
      const e = viaTls.get(`${tls.remoteAddress}|${tls.remotePort}`);
      if (e) applyEndpoints(tls, e);
    });
  }

  server.on('connection', (socket: Socket) => {
    const peer = socket.remoteAddress ?? '';
    const family = isIPv4(peer) ? 'ipv4' : 'ipv6';
    if (peer === '' || !trusted.check(peer, family)) {
      log.info({ event: 'refused', ip: peer, reason: 'not a trusted proxy' }, 'connection refused: PROXY protocol listener, source not trusted');
      socket.destroy();
      return;
    }
    pending.add(socket);
    let received: Buffer = Buffer.alloc(0);
    const refuse = (reason: string) => {
      done();
      log.info({ event: 'refused', proxy: peer, reason }, 'connection refused: PROXY protocol header');
      socket.destroy();
    };
    const onError = () => done();
    const onEnd = () => refuse('closed before the header');
    const timer = setTimeout(() => refuse(`no header within ${timeoutMs} ms`), timeoutMs);
    const done = () => {
      clearTimeout(timer);
      pending.delete(socket);
      socket.off('readable', onReadable);
      socket.off('error', onError);
      socket.off('end', onEnd);
    };
    function onReadable(): void {
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null) !== null) {
        received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
        const r = parseProxyHeader(received);
        if (r.kind === 'incomplete') continue;
        if (r.kind === 'error') return refuse(r.reason);
        done();
        const rest = received.subarray(r.consumed);
        if (rest.length > 0) socket.unshift(rest);
        const e = endpointsOf(r.header);
        if (e) {
          const key = `${peer}|${socket.remotePort}`;
          if (server instanceof TlsServer) {
            viaTls.set(key, e);
            socket.once('close', () => viaTls.delete(key));
          }
          applyEndpoints(socket, e);
        }
        log.debug({ proxy: peer, client: e?.remoteAddress ?? 'local', version: r.header.version }, 'PROXY protocol header');
        // Without a 'readable' listener the stream returns to its initial state: the handlers'
        // own 'data' listener (or the TLS layer) reads it from here, unshifted bytes first.
        for (const handler of handlers) handler.call(server, socket);
        return;
      }
    }
    socket.on('readable', onReadable);
    socket.on('error', onError);
    socket.on('end', onEnd);
  });

  return {
    get pending() {
      return pending.size;
    },
    close() {
      for (const socket of pending) socket.destroy();
      pending.clear();
    },
  };
}
