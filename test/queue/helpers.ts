/**
 * Stand-ins for the outbound queue's tests: a DNS resolver from a table, a real smtp-server
 * instance on 127.0.0.1 port 0 as the remote MX (counting what it accepted), and a queue on a
 * fresh data directory.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { pino } from 'pino';
import type { LevelWithSilent } from 'pino';
import type { MxRecord, Resolver } from '../../src/dns/resolver.js';
import { openSqliteQueueStore } from '../../src/queue/sqlite-store.js';
import { queueDbPath } from '../../src/queue/admin.js';
import { createOutboundQueue, type OutboundOptions, type OutboundQueue, type QueueEvents } from '../../src/queue/outbound-queue.js';
import type { QueueStore } from '../../src/queue/types.js';

export interface DnsTable {
  mx?: Record<string, MxRecord[]>;
  a?: Record<string, string[]>;
  aaaa?: Record<string, string[]>;
  txt?: Record<string, string[][]>;
}

function dnsError(code: 'ENOTFOUND' | 'ENODATA' | 'ESERVFAIL', name: string): Error {
  return Object.assign(new Error(`${code} ${name}`), { code });
}

/** A name listed under any type exists (ENODATA for the other types); others are ENOTFOUND. */
export function mockResolver(table: DnsTable): Resolver & { queries: string[] } {
  const known = new Set<string>();
  for (const section of [table.mx, table.a, table.aaaa, table.txt]) for (const k of Object.keys(section ?? {})) known.add(k);
  const queries: string[] = [];
  const look = async <T>(type: string, section: Record<string, T[]> | undefined, name: string): Promise<T[]> => {
    queries.push(`${type} ${name}`);
    const v = section?.[name];
    if (v) return v;
    throw dnsError(known.has(name) ? 'ENODATA' : 'ENOTFOUND', name);
  };
  return {
    queries,
    resolveMx: (n) => look('MX', table.mx, n),
    resolve4: (n) => look('A', table.a, n),
    resolve6: (n) => look('AAAA', table.aaaa, n),
    resolveTxt: (n) => look('TXT', table.txt, n),
  };
}

export interface Received {
  from: string;
  to: string[];
  data: Buffer;
  secure: boolean;
  remoteAddress: string;
  user: string | null;
  /** The name the client gave in EHLO/HELO (which node delivered). */
  helo: string;
}

export interface SinkOptions {
  /** Listening address (127.0.0.1). */
  host?: string;
  /** Offer STARTTLS (smtp-server's built-in certificate unless key/cert are given). */
  starttls?: boolean;
  key?: Buffer;
  cert?: Buffer;
  /** Decide on a RCPT: return [code, text] to refuse. n counts RCPTs for this address. */
  onRcpt?: (address: string, n: number) => [number, string] | null;
  /** Decide on the end of DATA: return [code, text] to refuse. n counts DATA commands. */
  onData?: (n: number) => [number, string] | null;
  /** Called after a message was accepted (the 250 is on its way). */
  accepted?: (m: Received) => void;
  /** Extra TLS server options (versions, ciphers). */
  tlsExtra?: Record<string, unknown>;
  /** Do not advertise DSN (RFC 3461). */
  hideDsn?: boolean;
  /** Require AUTH with these credentials (after STARTTLS). */
  auth?: { user: string; pass: string };
}

export interface Sink {
  port: number;
  received: Received[];
  /** Connections opened so far, and the most open at once. */
  connections: number;
  maxConcurrent: number;
  /** How many times each recipient was accepted in a delivered message. */
  count(address: string): number;
  /** The parameters of the last RCPT naming the address (NOTIFY, ORCPT...). */
  rcptArgs(address: string): Record<string, unknown> | undefined;
  /** The parameters of the last MAIL command. */
  lastMailArgs(): Record<string, unknown> | undefined;
  /** How many RCPT commands named the address (accepted or not). */
  rcpts(address: string): number;
  close(): Promise<void>;
}

function refusal(code: number, text: string): Error {
  return Object.assign(new Error(text), { responseCode: code });
}

export async function startSink(options: SinkOptions = {}): Promise<Sink> {
  const received: Received[] = [];
  const rcptCounts = new Map<string, number>();
  let dataCount = 0;
  const rcptArgMap = new Map<string, Record<string, unknown> | undefined>();
  let mailArgs: Record<string, unknown> | undefined;
  let open = 0;
  const stats = { connections: 0, maxConcurrent: 0 };
  const serverOptions: SMTPServerOptions = {
    onConnect(_session, cb) {
      stats.connections++;
      open++;
      stats.maxConcurrent = Math.max(stats.maxConcurrent, open);
      cb();
    },
    onClose() {
      open--;
    },
    disabledCommands: [...(options.auth ? [] : ['AUTH']), ...(options.starttls === false ? ['STARTTLS'] : [])],
    authOptional: !options.auth,
    onAuth(auth, _session, cb) {
      if (options.auth && auth.username === options.auth.user && auth.password === options.auth.pass) return cb(null, { user: auth.username });
      cb(refusal(535, '5.7.8 authentication failed'));
    },
    logger: false,
    size: 50 * 1024 * 1024,
    hideDSN: options.hideDsn ?? false,
    onMailFrom(address, _session, cb) {
      mailArgs = (address.args || undefined) as Record<string, unknown> | undefined;
      cb();
    },
    onRcptTo(address, _session, cb) {
      rcptArgMap.set(address.address, (address.args || undefined) as Record<string, unknown> | undefined);
      const n = (rcptCounts.get(address.address) ?? 0) + 1;
      rcptCounts.set(address.address, n);
      const r = options.onRcpt?.(address.address, n);
      if (r) return cb(refusal(r[0], r[1]));
      cb();
    },
    onData(stream, session: SMTPServerSession, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        dataCount++;
        const r = options.onData?.(dataCount);
        if (r) return cb(refusal(r[0], r[1]));
        const m: Received = {
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((x) => x.address),
          data: Buffer.concat(chunks),
          secure: session.secure,
          remoteAddress: session.remoteAddress,
          user: typeof session.user === 'string' ? session.user : null,
          helo: session.hostNameAppearsAs,
        };
        received.push(m);
        cb(null);
        options.accepted?.(m);
      });
    },
  };
  if (options.tlsExtra) Object.assign(serverOptions, options.tlsExtra);
  if (options.key) Object.assign(serverOptions, { key: options.key });
  if (options.cert) Object.assign(serverOptions, { cert: options.cert });
  const server = new SMTPServer(serverOptions);
  server.on('error', () => {});
  const port = await new Promise<number>((resolve) => {
    server.listen(0, options.host ?? '127.0.0.1', () => resolve((server.server.address() as { port: number }).port));
  });
  return {
    port,
    received,
    get connections() {
      return stats.connections;
    },
    get maxConcurrent() {
      return stats.maxConcurrent;
    },
    rcpts: (address) => rcptCounts.get(address) ?? 0,
    rcptArgs: (address) => rcptArgMap.get(address),
    lastMailArgs: () => mailArgs,
    count: (address) => received.filter((m) => m.to.includes(address)).length,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

export interface QueueHarness {
  dir: string;
  store: QueueStore;
  queue: OutboundQueue;
  clock: { t: number; now(): number };
  /** Reports handed to local delivery. */
  reports: Array<{ to: string; data: Buffer }>;
  close(): Promise<void>;
}

export function testLogger() {
  return pino({ level: (process.env.FACTEUR_TEST_LOG ?? 'silent') as LevelWithSilent });
}

export async function makeQueue(
  resolver: Resolver,
  options: Partial<OutboundOptions> & { manualClock?: boolean } = {},
): Promise<QueueHarness> {
  const dir = await mkdtemp(join(tmpdir(), 'facteur-queue-'));
  const store = openSqliteQueueStore(queueDbPath(dir));
  const reports: Array<{ to: string; data: Buffer }> = [];
  const clock = {
    t: Date.parse('2026-11-27T10:00:00Z'),
    now() {
      return options.manualClock ? this.t : Date.now();
    },
  };
  const { manualClock: _m, ...rest } = options;
  const queue = createOutboundQueue({
    hostname: 'mail.example.org',
    store,
    resolver,
    log: testLogger(),
    clock,
    mtaSts: { fetcher: async () => null },
    deliverReport: async (data, to) => {
      reports.push({ to, data });
      return true;
    },
    ...rest,
  });
  return {
    dir,
    store,
    queue,
    clock,
    reports,
    async close() {
      await queue.stop();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export function once<K extends keyof QueueEvents>(
  queue: OutboundQueue,
  event: K,
  predicate: (e: QueueEvents[K]) => boolean = () => true,
  timeoutMs = 10_000,
): Promise<QueueEvents[K]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      queue.off(event, listener);
      reject(new Error(`timed out waiting for ${event}`));
    }, timeoutMs);
    const listener = (e: QueueEvents[K]) => {
      if (!predicate(e)) return;
      clearTimeout(timer);
      queue.off(event, listener);
      resolve(e);
    };
    queue.on(event, listener);
  });
}

export const MESSAGE = Buffer.from(
  'From: Alice <alice@example.org>\r\n' +
    'To: bob@example.net\r\n' +
    'Subject: Hello\r\n' +
    'Message-ID: <m1@example.org>\r\n' +
    'Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n' +
    '\r\n' +
    'Hello Bob.\r\n',
);
