/**
 * The http and https listeners (ports 80 and 443, same certificates): client autoconfiguration
 * (Thunderbird autoconfig, Microsoft autodiscover POX and JSON v2, Apple .mobileconfig, PACC),
 * the MTA-STS policy (RFC 8461 §3.2), /healthz and Prometheus /metrics.
 *
 * Invariants:
 * - Every input is bounded (DESIGN.md invariant 4): header block (HTTP_LIMITS.maxHeaderBytes,
 *   431), request body (only autodiscover POST has one: maxBodyBytes, 413), time to send headers
 *   and the whole request (408), idle keep-alive connections, connections per IP. A malformed
 *   request is answered 400; a path that is not served 404; a method the path does not take
 *   405 with Allow.
 * - Advertised ports and security come from the running listeners (bound ports learnt from the
 *   app after they listen) and the configured hostname, never from the request.
 * - Nothing from the request reaches a document unescaped (xml.ts); an address is accepted only
 *   if it parses as one and its domain is local. The answer does not depend on whether the
 *   account exists, so these endpoints cannot be used to enumerate users.
 */
import { randomBytes } from 'node:crypto';
import { createServer as createPlainServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { Socket } from 'node:net';
import type { Config, ListenerName } from '../config/config.js';
import type { ListeningServer, ServerContext } from '../context.js';
import { requireProxyProtocol, type ProxyProtocolGuard, type ProxyProtocolOptions } from '../net/proxy-listener.js';
import { METRIC, METRICS_CONTENT_TYPE } from '../lib/metrics.js';
import {
  autodiscoverRequestAddress,
  renderAutoconfig,
  renderAutodiscoverXml,
  renderMobileconfig,
  renderMtaStsPolicy,
  renderPacc,
  type AccountInfo,
} from './client-config.js';
import { clientEndpoints, parseAddress, type ClientEndpoint } from './client-settings.js';

export const HTTP_LIMITS = {
  /** Request line plus headers; real clients send well under 4 KiB. Stops header floods (431). */
  maxHeaderBytes: 16 * 1024,
  /** An autodiscover request is a few hundred bytes; nothing else takes a body (413). */
  maxBodyBytes: 16 * 1024,
  /** Time to receive the headers: stops slowloris (408). */
  headersTimeoutMs: 10_000,
  /** Time to receive the whole request, body included. */
  requestTimeoutMs: 20_000,
  /** Idle keep-alive connections are closed after this. */
  keepAliveTimeoutMs: 5_000,
  /** Requests served on one connection before it is closed. */
  maxRequestsPerSocket: 100,
  /** Open connections from one address; more are dropped at accept. */
  maxConnectionsPerIp: 50,
  /** /healthz waits this long for the store before answering 503. */
  healthTimeoutMs: 3_000,
} as const;

export interface HttpServerOptions {
  name: 'http' | 'https';
  implicitTls: boolean;
  config: Pick<Config, 'hostname' | 'listen' | 'mtaSts'>;
  /** Ports the running listeners are bound to (filled by the app once they listen). */
  boundPorts?: () => Partial<Record<ListenerName, number>>;
  limits?: Partial<Record<keyof typeof HTTP_LIMITS, number>>;
  /** Behind a TCP load balancer: the PROXY protocol header is required from these balancers,
   * and only they may connect (net/proxy-listener.ts). */
  proxyProtocol?: ProxyProtocolOptions | null;
}

type Handler = (req: IncomingMessage, url: URL, res: ServerResponse) => Promise<void>;

interface Route {
  /** Metric label. */
  endpoint: string;
  match: (path: string) => boolean;
  methods: readonly string[];
  handle: Handler;
}

class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

const XML_TYPE = 'application/xml; charset=utf-8';
const JSON_TYPE = 'application/json; charset=utf-8';
const TEXT_TYPE = 'text/plain; charset=utf-8';

/** Host-name prefixes clients and senders use to reach this listener for a domain. */
const SERVICE_PREFIXES = ['autoconfig.', 'autodiscover.', 'mta-sts.', 'ua-auto-config.'];

export function createHttpServer(ctx: ServerContext, options: HttpServerOptions): ListeningServer {
  const limits = { ...HTTP_LIMITS, ...options.limits };
  const { config } = options;
  const log = ctx.log.child({ listener: options.name });
  const connections = ctx.metrics?.counter(...METRIC.connections);
  const requests = ctx.metrics?.counter(...METRIC.httpRequests);
  const open = ctx.metrics?.gauge(...METRIC.openConnections);
  const perIp = new Map<string, number>();

  function endpoints(): ClientEndpoint[] {
    return clientEndpoints({
      hostname: config.hostname,
      listen: config.listen,
      ...(options.boundPorts ? { bound: options.boundPorts() } : {}),
      hasTls: ctx.tls !== null,
    });
  }

  /** The domain a request is about: the address's, else the Host's, else the first local one. */
  async function accountFor(addressParam: string | null, req: IncomingMessage): Promise<AccountInfo> {
    if (addressParam !== null && addressParam !== '') {
      const parsed = parseAddress(addressParam);
      if (!parsed) throw new HttpError(400, 'Cannot parse the e-mail address');
      if (!(await ctx.store.isLocalDomain(parsed.domain))) throw new HttpError(404, 'This server does not serve that domain');
      return { domain: parsed.domain, address: parsed.address };
    }
    const host = (req.headers.host ?? '').toLowerCase().replace(/:\d+$/, '').replace(/^\[.*\]$/, '');
    for (const prefix of ['', ...SERVICE_PREFIXES]) {
      if (prefix && !host.startsWith(prefix)) continue;
      const d = host.slice(prefix.length);
      if (/^[a-z0-9.-]{1,253}$/.test(d) && (await ctx.store.isLocalDomain(d))) return { domain: d, address: null };
    }
    const first = (await ctx.store.listDomains())[0];
    if (!first) throw new HttpError(404, 'No mail domain is configured');
    return { domain: first.name, address: null };
  }

  function send(req: IncomingMessage, res: ServerResponse, status: number, type: string, body: string, headers: Record<string, string> = {}): void {
    const buf = Buffer.from(body, 'utf8');
    res.writeHead(status, {
      'Content-Type': type,
      'Content-Length': String(buf.length),
      'X-Content-Type-Options': 'nosniff',
      'Cache-Control': 'no-store',
      ...headers,
    });
    res.end(req.method === 'HEAD' ? undefined : buf);
  }

  /**
   * The request target's URL (RFC 9112 §3.2): origin-form, a path read as a path even when it
   * starts with two slashes (not as a network-path reference naming another host), or
   * absolute-form, which a server must accept (§3.2.2). 400 for anything else.
   */
  function requestTarget(target: string): URL {
    try {
      if (target.startsWith('/')) return new URL(`http://localhost${target}`);
      if (/^https?:\/\//i.test(target)) return new URL(target);
    } catch {
      // not a URL: refused below
    }
    throw new HttpError(400, 'Cannot parse the request target');
  }

  /** Reads a request body up to the limit; 413 beyond it. */
  async function readBody(req: IncomingMessage): Promise<string> {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limits.maxBodyBytes) throw new HttpError(413, 'Request body too large');
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > limits.maxBodyBytes) throw new HttpError(413, 'Request body too large');
      chunks.push(chunk);
    }
    return Buffer.concat(chunks).toString('utf8');
  }

  const autoconfig: Handler = async (req, url, res) => {
    const account = await accountFor(url.searchParams.get('emailaddress'), req);
    send(req, res, 200, XML_TYPE, renderAutoconfig(endpoints(), account));
  };

  const autodiscoverXml: Handler = async (req, url, res) => {
    let address: string | null = url.searchParams.get('emailaddress') ?? url.searchParams.get('Email');
    if (req.method === 'POST') {
      const body = await readBody(req);
      address = autodiscoverRequestAddress(body);
      if (address === null) throw new HttpError(400, 'Cannot find EMailAddress in the request');
    }
    const account = await accountFor(address, req);
    send(req, res, 200, XML_TYPE, renderAutodiscoverXml(endpoints(), account));
  };

  /** The https URL of the POX endpoint, on the running https port (or http when there is none). */
  function autodiscoverUrl(): string {
    const bound = options.boundPorts?.() ?? {};
    const httpsPort = bound.https;
    if (httpsPort !== undefined || (!options.boundPorts && config.listen.https)) {
      const port = httpsPort ?? Number(/:(\d+)$/.exec(config.listen.https ?? '')?.[1] ?? 443);
      return `https://${config.hostname}${port === 443 ? '' : `:${port}`}/Autodiscover/Autodiscover.xml`;
    }
    const port = bound.http ?? 80;
    return `http://${config.hostname}${port === 80 ? '' : `:${port}`}/Autodiscover/Autodiscover.xml`;
  }

  const autodiscoverJson: Handler = async (req, url, res) => {
    // /autodiscover/autodiscover.json?Email=A&Protocol=P or /autodiscover/autodiscover.json/v1.0/A?Protocol=P
    const params = new Map([...url.searchParams].map(([k, v]) => [k.toLowerCase(), v]));
    const tail = /^\/autodiscover\/autodiscover\.json\/v1\.0\/([^/]+)$/i.exec(url.pathname);
    let email = params.get('email') ?? null;
    if (tail) {
      try {
        email = decodeURIComponent(tail[1]!);
      } catch {
        throw new HttpError(400, 'Cannot decode the address in the path');
      }
    }
    const protocol = params.get('protocol') ?? '';
    if (protocol.toLowerCase() !== 'autodiscoverv1') {
      send(req, res, 400, JSON_TYPE, JSON.stringify({ ErrorCode: 'InvalidProtocol', ErrorMessage: "The given protocol value is invalid. Supported values are 'AutodiscoverV1'." }));
      return;
    }
    if (email !== null) await accountFor(email, req);
    send(req, res, 200, JSON_TYPE, JSON.stringify({ Protocol: 'AutodiscoverV1', Url: autodiscoverUrl() }));
  };

  const mobileconfig: Handler = async (req, url, res) => {
    const raw = url.searchParams.get('emailaddress');
    if (!raw) throw new HttpError(400, 'Add ?emailaddress=you@example.com');
    const account = await accountFor(raw, req);
    const body = renderMobileconfig(endpoints(), account.address!, config.hostname);
    if (body === null) throw new HttpError(404, 'This server runs no IMAP/POP3 and submission listeners');
    const file = account.address!.replace(/[^A-Za-z0-9._@-]/g, '_');
    send(req, res, 200, 'application/x-apple-aspen-config', body, { 'Content-Disposition': `attachment; filename="${file}.mobileconfig"` });
  };

  const pacc: Handler = async (req, _url, res) => {
    const account = await accountFor(null, req);
    send(req, res, 200, JSON_TYPE, renderPacc(endpoints(), account.domain));
  };

  const mtaSts: Handler = async (req, _url, res) => {
    // RFC 8461 §3.3: the policy is served as text/plain; mx is this server's host name.
    send(req, res, 200, TEXT_TYPE, renderMtaStsPolicy({ mode: config.mtaSts.mode, mx: [config.hostname], maxAge: config.mtaSts.maxAge }), {
      'Cache-Control': 'max-age=300',
    });
  };

  const healthz: Handler = async (req, _url, res) => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('store did not answer in time')), limits.healthTimeoutMs);
    });
    try {
      await Promise.race([ctx.store.listDomains(), timeout]);
      send(req, res, 200, TEXT_TYPE, 'ok\n');
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'health check failed');
      send(req, res, 503, TEXT_TYPE, 'store unavailable\n');
    } finally {
      clearTimeout(timer);
    }
  };

  const metrics: Handler = async (req, _url, res) => {
    if (!ctx.metrics) throw new HttpError(404, 'Metrics are not enabled');
    send(req, res, 200, METRICS_CONTENT_TYPE, await ctx.metrics.render());
  };

  const exact = (...paths: string[]) => (p: string) => paths.includes(p);
  const GET = ['GET', 'HEAD'] as const;
  const routes: Route[] = [
    { endpoint: 'autoconfig', match: exact('/mail/config-v1.1.xml', '/.well-known/autoconfig/mail/config-v1.1.xml'), methods: GET, handle: autoconfig },
    // Outlook sends every casing of this path: compared case-insensitively.
    { endpoint: 'autodiscover', match: (p) => p.toLowerCase() === '/autodiscover/autodiscover.xml', methods: [...GET, 'POST'], handle: autodiscoverXml },
    { endpoint: 'autodiscover-json', match: (p) => /^\/autodiscover\/autodiscover\.json(\/v1\.0\/[^/]+)?$/i.test(p), methods: GET, handle: autodiscoverJson },
    { endpoint: 'mobileconfig', match: exact('/mail/mobileconfig', '/mail/config.mobileconfig'), methods: GET, handle: mobileconfig },
    { endpoint: 'pacc', match: exact('/.well-known/user-agent-configuration.json'), methods: GET, handle: pacc },
    { endpoint: 'mta-sts', match: exact('/.well-known/mta-sts.txt'), methods: GET, handle: mtaSts },
    { endpoint: 'healthz', match: exact('/healthz'), methods: GET, handle: healthz },
    { endpoint: 'metrics', match: exact('/metrics'), methods: GET, handle: metrics },
  ];

  async function onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let endpoint = 'unknown';
    // Taken now: a body read that stopped part way destroys the request, which then has none.
    const socket = req.socket as Socket | null;
    try {
      // RFC 9112 §3.2: one Host field.
      if ((req.headersDistinct.host?.length ?? 0) > 1) throw new HttpError(400, 'More than one Host field');
      const url = requestTarget(req.url ?? '');
      const route = routes.find((r) => r.match(url.pathname));
      if (!route) throw new HttpError(404, 'Not found');
      endpoint = route.endpoint;
      if (!route.methods.includes(req.method ?? '')) {
        send(req, res, 405, TEXT_TYPE, 'Method not allowed\n', { Allow: route.methods.join(', ') });
        return;
      }
      await route.handle(req, url, res);
    } catch (err) {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (err instanceof HttpError) {
        log.debug({ status: err.status, path: req.url?.slice(0, 200), err: err.message }, 'request refused');
        // After a refused body the rest of it is not read: close the connection.
        send(req, res, err.status, TEXT_TYPE, `${err.message}\n`, err.status === 413 ? { Connection: 'close' } : {});
        if (err.status === 413) res.once('finish', () => socket?.destroy());
        return;
      }
      const id = randomBytes(6).toString('base64url');
      log.error({ err, id, path: req.url?.slice(0, 200) }, 'http request failed');
      send(req, res, 500, TEXT_TYPE, `Internal error (id ${id})\n`);
    } finally {
      requests?.inc({ listener: options.name, endpoint, code: String(res.statusCode) });
    }
  }

  const serverOptions = { maxHeaderSize: limits.maxHeaderBytes, requestTimeout: limits.requestTimeoutMs, headersTimeout: limits.headersTimeoutMs, keepAliveTimeout: limits.keepAliveTimeoutMs, connectionsCheckingInterval: Math.min(1_000, limits.headersTimeoutMs) };
  if (options.implicitTls && !ctx.tls) throw new Error('Cannot start https: no certificate');
  const server: Server = options.implicitTls
    ? createTlsServer({ ...ctx.tls!.serverOptions(), ...serverOptions }, (req, res) => void onRequest(req, res))
    : createPlainServer(serverOptions, (req, res) => void onRequest(req, res));
  server.maxRequestsPerSocket = limits.maxRequestsPerSocket;

  server.on('connection', (socket: Socket) => {
    const ip = socket.remoteAddress ?? 'unknown';
    const n = perIp.get(ip) ?? 0;
    if (n >= limits.maxConnectionsPerIp) {
      log.info({ event: 'refused', ip, reason: 'max connections per ip' }, 'connection refused');
      socket.destroy();
      return;
    }
    perIp.set(ip, n + 1);
    connections?.inc({ listener: options.name });
    open?.inc({ listener: options.name });
    socket.once('close', () => {
      open?.dec({ listener: options.name });
      const left = (perIp.get(ip) ?? 1) - 1;
      if (left <= 0) perIp.delete(ip);
      else perIp.set(ip, left);
    });
  });
  // Malformed requests, oversized headers and slow clients: answer with the status, then close.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  });
  if (options.implicitTls) server.on('tlsClientError', (err) => log.debug({ err: err.message }, 'tls handshake failed'));

  let proxyGuard: ProxyProtocolGuard | null = null;
  return {
    name: options.name,
    listen(host, port) {
      if (options.proxyProtocol && proxyGuard === null) proxyGuard = requireProxyProtocol(server, options.proxyProtocol, log);
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          server.on('error', (error) => log.error({ err: error }, 'listener error'));
          const addr = server.address();
          resolve(typeof addr === 'object' && addr ? addr.port : port);
        });
      });
    },
    async close(graceMs = 5_000) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      proxyGuard?.close();
      server.closeIdleConnections();
      const timer = setTimeout(() => server.closeAllConnections(), Math.min(graceMs, 5_000));
      await closed;
      clearTimeout(timer);
    },
  };
}
