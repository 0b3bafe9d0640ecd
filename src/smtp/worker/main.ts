/**
 * Entry point of an SMTP worker process (see pool.ts): says it is ready, takes its setup from the
 * owner, serves the MX or LMTP listener with the owner's store and resolver behind the IPC
 * channel, and stops when told to or when the owner is gone.
 */
import type { Logger } from 'pino';
import type { Authenticator, ServerContext } from '../../context.js';
import type { Resolver } from '../../dns/resolver.js';
import type { LocalDelivery, RecipientAnswer } from '../../delivery/local.js';
import type { GreylistVerdict } from '../server/greylist.js';
import type { Counter, Gauge, Metrics } from '../../lib/metrics.js';
import { createLogger } from '../../log/logger.js';
import { loadTlsDirectory } from '../../net/tls.js';
import type { SharedCounters } from '../../store/counters.js';
import { StoreError, type DeliveryOutcome, type MailStore, type StoreErrorCode } from '../../store/types.js';
import type { AccountId } from '../../lib/brand.js';
import { createInboundPolicy } from '../server/policy-inbound.js';
import { createSmtpServer } from '../server/server.js';
import { MetricTally } from './metric-tally.js';
import { RecipientCache } from './recipient-cache.js';
import { batchingPoster, type CounterMethod, type DnsMethod, type FromWorker, type Op, type ToWorker, type WorkerSetup } from './protocol.js';

/** Grace given to the sessions when this process is signalled directly (the owner's default). */
const SIGNAL_GRACE_MS = 10_000;
/** How long counter increments are summed before they go to the owner (metric-tally.ts). */
const METRICS_DELAY_MS = 1000;

const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
let nextId = 1;

/** Writes messages to the owner in one write; `done` once written (or at once if nothing is). */
function send(messages: FromWorker[], done?: () => void): void {
  if (messages.length === 0 || !process.connected || process.send === undefined) {
    done?.();
    return;
  }
  if (done) process.send(messages, () => done());
  else process.send(messages);
}

// Counters leave together once they have waited (and at the end), never with the requests.
const tally = new MetricTally(METRICS_DELAY_MS, () => send(tally.take()));

const post = batchingPoster<FromWorker>((batch) => send(batch));

function call<T>(op: Op): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const id = nextId++;
    pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
    post({ t: 'req', id, ...op });
  });
}

/** Parts of the context a worker does not have: the sessions of MX and LMTP never use them. */
function absent<T extends object>(what: string): T {
  return new Proxy({} as T, {
    get(_target, prop) {
      if (prop === 'then') return undefined;
      throw new Error(`${what} is not available in an SMTP worker process (${String(prop)})`);
    },
  });
}

function remoteResolver(): Resolver {
  const ask =
    <T>(method: DnsMethod) =>
    (name: string) =>
      call<T>({ op: 'dns', method, name });
  return {
    resolveMx: ask('resolveMx'),
    resolve4: ask('resolve4'),
    resolve6: ask('resolve6'),
    resolveTxt: ask('resolveTxt'),
    resolvePtr: ask('resolvePtr'),
    resolveCname: ask('resolveCname'),
    resolveSrv: ask('resolveSrv'),
  };
}

function remoteCounters(): SharedCounters {
  const ask = <T>(method: CounterMethod, key: string, ms = 0) => call<T>({ op: 'counters', method, key, ms });
  return {
    hit: (key, windowMs) => ask('hit', key, windowMs),
    count: (key, windowMs) => ask('count', key, windowMs),
    block: (key, ms) => ask('block', key, ms),
    blockedFor: (key) => ask('blockedFor', key),
    reset: (key) => ask('reset', key),
  };
}

function remoteDelivery(): LocalDelivery {
  // RCPT answers that depend on the address alone are kept for a second (recipient-cache.ts).
  const recipients = new RecipientCache((domain, address, size) => call<RecipientAnswer>({ op: 'lookupRecipient', domain, address, size }));
  return {
    lookupRecipient: (domain, address, size) => recipients.lookup(domain, address, size),
    async deliver(raw, accounts, mailbox, report) {
      const outcomes = await call<DeliveryOutcome[]>({ op: 'deliver', raw, accounts: [...accounts], mailbox: mailbox ?? null, report: report ?? null });
      return new Map<AccountId, DeliveryOutcome>(outcomes.map((o) => [o.accountId, o]));
    },
    forward: (raw, request) => call<number>({ op: 'forward', raw, request }),
  };
}

/** Counters go to the owner, which serves /metrics; this worker's gauges would mean nothing there. */
function remoteMetrics(): Metrics {
  const noGauge: Gauge = { set() {}, inc() {}, dec() {} };
  return {
    counter(name, help): Counter {
      return {
        inc: (labels = {}, by = 1) => tally.add(name, help, labels, by),
        with: (labels) => {
          const add = tally.bind(name, help, labels);
          return { inc: (by = 1) => add(by) };
        },
      };
    },
    gauge: () => noGauge,
    onCollect() {},
    render: async () => '',
  };
}

async function start(setup: WorkerSetup): Promise<{ log: Logger; close: (graceMs: number) => Promise<void> }> {
  const log = createLogger({ level: setup.logLevel }).child({ worker: setup.mode === 'mx' ? 'smtp' : 'lmtp' });
  let tls = null;
  if (setup.tlsDir !== null) {
    try {
      tls = await loadTlsDirectory(setup.tlsDir, setup.hostname);
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'no TLS certificate in the smtp worker: STARTTLS is off');
    }
  }
  const ctx: ServerContext = {
    hostname: setup.hostname,
    store: absent<MailStore>('the store'),
    log,
    auth: absent<Authenticator>('authentication'),
    tls,
    metrics: remoteMetrics(),
    counters: setup.sharedCounters ? remoteCounters() : null,
  };
  const resolver = setup.authenticate ? remoteResolver() : null;
  const policy = createInboundPolicy(ctx, {
    resolver,
    dnsbl: setup.dnsbl.length > 0 ? { zones: setup.dnsbl, resolver: resolver ?? remoteResolver() } : null,
    dmarcReject: setup.dmarcReject,
    delivery: remoteDelivery(),
    recipientProbes: setup.recipientProbes,
    greylist:
      setup.greylistSeconds > 0
        ? { check: (client, sender, recipient) => call<GreylistVerdict>({ op: 'greylist', client, sender, recipient }), close: async () => undefined }
        : null,
    senderReports: setup.mode === 'mx',
  });
  const server = createSmtpServer(ctx, {
    mode: setup.mode,
    greetingDelayMs: setup.greetingDelayMs,
    limits: setup.limits,
    policy,
    proxyProtocol: setup.proxyProtocol,
  });
  // In a cluster worker the socket comes from the owner, bound once for every worker.
  const port = await server.listen(setup.host, setup.port);
  post({ t: 'listening', port });
  log.debug({ port, pid: process.pid }, 'smtp worker listening');
  return { log, close: (graceMs) => server.close(graceMs) };
}

let running: Promise<{ log: Logger; close: (graceMs: number) => Promise<void> }> | null = null;

let stopping = false;

async function stop(graceMs: number, code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  if (running) {
    const r = await running.catch(() => null);
    if (r) {
      await r.close(graceMs).catch(() => {});
      await new Promise<void>((resolve) => r.log.flush(() => resolve()));
    }
  }
  // The sessions' last counters, written before the exit.
  await new Promise<void>((resolve) => send(tally.take(), resolve));
  process.exit(code);
}

process.on('message', (batch: unknown) => {
  if (Array.isArray(batch)) for (const m of batch as ToWorker[]) onMessage(m);
});

function onMessage(m: ToWorker): void {
  switch (m?.t) {
    case 'setup':
      if (running) return;
      running = start(m.setup);
      running.catch((err: unknown) => {
        // Sent at once (not batched), then the exit.
        const code = (err as { code?: unknown }).code;
        const failed: FromWorker[] = [{ t: 'failed', message: (err as Error).message, code: typeof code === 'string' ? code : null }];
        if (process.send) process.send(failed, () => process.exit(1));
        else process.exit(1);
      });
      return;
    case 'res': {
      const p = pending.get(m.id);
      if (!p) return;
      pending.delete(m.id);
      if (m.ok) p.resolve(m.value);
      else p.reject(fromWire(m.error));
      return;
    }
    case 'close':
      void stop(m.graceMs, 0);
      return;
  }
}

// The owner is gone (killed): nothing can be delivered any more.
process.on('disconnect', () => void stop(0, 1));
// A service manager signals the whole process group: end the sessions with 421 as the owner
// would ask, instead of cutting them (an owner still running starts a new worker).
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => void stop(SIGNAL_GRACE_MS, 0));

post({ t: 'ready' });

function fromWire(e: { message: string; code: string | null; store: boolean }): Error {
  if (e.store) return new StoreError(e.code as StoreErrorCode, e.message);
  return Object.assign(new Error(e.message), e.code === null ? {} : { code: e.code });
}
