/**
 * The MX (port 25) or LMTP listener served by worker processes, for the owner of the store.
 *
 * Node runs JavaScript on one thread per process, and a worker thread cannot be given a socket.
 * So the sessions of a busy inbound listener run in child processes (node:cluster, the operating
 * system spreading connections: SCHED_NONE, the owner never accepts them), each running the
 * protocol engine, TLS, message authentication and the trace fields, while the owner keeps what
 * needs the store (recipient lookups and the delivery transaction) and the DNS resolver (one cache,
 * and tests' stand-ins), answered over the IPC channel (protocol.ts).
 *
 * Invariants:
 * - 250 is still sent only after the owner's store.deliver resolved (durable): the worker waits
 *   for the owner's answer. A worker that dies loses only unacknowledged messages, as a dropped
 *   connection would; its sessions' clients retry.
 * - RCPT answers that depend on the address alone are kept by the worker for up to a second
 *   (recipient-cache.ts); the owner checks each account again when it delivers.
 * - A worker that exits without being asked is started again (after a pause that grows while it
 *   keeps failing), on the port the listener was bound to.
 * - close() asks every worker to end its sessions gracefully (421) within the grace, and kills
 *   the ones still running after it; requests keep being answered until each worker is gone.
 */
import cluster, { type Worker } from 'node:cluster';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ListeningServer, ServerContext } from '../../context.js';
import type { Resolver } from '../../dns/resolver.js';
import { contextDelivery, type DeliveryReport, type ForwardRequest, type LocalDelivery } from '../../delivery/local.js';
import type { RcptParams } from '../protocol/command.js';
import { createGreylist, greylistFileError } from '../server/greylist.js';
import { StoreError } from '../../store/types.js';
import { asAccountId } from '../../lib/brand.js';
import {
  COUNTER_METHODS,
  DNS_METHODS,
  batchingPoster,
  isFromWorker,
  type FromWorker,
  type Op,
  type ToWorker,
  type WireError,
  type WorkerSetup,
} from './protocol.js';

export interface SmtpWorkersOptions extends Omit<WorkerSetup, 'host' | 'port' | 'hostname' | 'authenticate' | 'sharedCounters' | 'dnsbl' | 'greylistSeconds'> {
  /** Port 25: greylisting delay in seconds (server/greylist.ts); 0 or absent: off. */
  greylistSeconds?: number;
  /** Port 25: where greylisting keeps its triplets across restarts. */
  greylistFile?: string | null;
  /** Worker processes (at least 1). */
  workers: number;
  /** DNS for message authentication and the blocklists (mode 'mx'); null turns both off. */
  resolver: Resolver | null;
  /** Port 25: DNS blocklist zones (server/dnsbl.ts); none by default. */
  dnsbl?: readonly string[];
  /** Default: the store's local delivery. */
  delivery?: LocalDelivery;
}

/** Restart pauses: doubled for each exit within RESTART_WINDOW_MS of the previous start. */
const RESTART_MIN_MS = 100;
const RESTART_MAX_MS = 10_000;
const RESTART_WINDOW_MS = 10_000;
/** After the grace of close(), how long a worker has to exit before it is killed. */
const EXIT_WAIT_MS = 5_000;

let clusterReady = false;

/** node:cluster's settings are the process's: set once, before the first fork. */
function setUpCluster(): void {
  if (clusterReady) return;
  clusterReady = true;
  // The kernel hands each connection to a worker that accepts it; the owner never does.
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  // The worker's entry beside this file: .ts under tsx (its loader comes with execArgv), .js built.
  const self = fileURLToPath(import.meta.url);
  cluster.setupPrimary({
    exec: fileURLToPath(new URL(`./main${extname(self)}`, import.meta.url)),
    execArgv: process.execArgv,
    args: [],
    serialization: 'advanced',
    silent: false,
  });
}

const NOTIFY: ReadonlySet<unknown> = new Set(['NEVER', 'SUCCESS', 'FAILURE', 'DELAY']);

const badRequest = (): never => {
  throw new Error('malformed deliver request');
};
const str = (v: unknown): string => (typeof v === 'string' ? v : badRequest());
const strOrNull = (v: unknown): string | null => (v === null ? null : str(v));
const notifyOf = (v: unknown): RcptParams['notify'] => (v === null || (Array.isArray(v) && v.every((n) => NOTIFY.has(n))) ? (v as RcptParams['notify']) : badRequest());

/** A forward request as the worker sent it, checked field by field. The owner resolves the
 * recipients' forwards itself (delivery/local.ts): a worker can name only local addresses. */
function forwardRequestOf(x: unknown): ForwardRequest {
  if (typeof x !== 'object' || x === null) return badRequest();
  const r = x as Record<string, unknown>;
  if ((r.ret !== null && r.ret !== 'FULL' && r.ret !== 'HDRS') || !Array.isArray(r.recipients)) return badRequest();
  const arc = r.arc as Record<string, unknown> | null;
  if (arc !== null && (typeof arc !== 'object' || (arc.cv !== 'none' && arc.cv !== 'pass') || typeof arc.authResults !== 'string')) return badRequest();
  return {
    arc: arc === null ? null : { cv: arc.cv as 'none' | 'pass', authResults: arc.authResults as string },
    sender: str(r.sender),
    envid: strOrNull(r.envid),
    ret: r.ret,
    recipients: (r.recipients as unknown[]).map((y) => {
      if (typeof y !== 'object' || y === null) return badRequest();
      const t = y as Record<string, unknown>;
      return { address: str(t.address), notify: notifyOf(t.notify), orcpt: strOrNull(t.orcpt) };
    }),
  };
}

/** A deliver request's DSN requests as the worker sent them, checked field by field (the worker
 * runs the sessions of hostile clients: what it sends is data, not trusted structure). */
function deliveryReportOf(x: unknown): DeliveryReport {
  const bad = badRequest;
  if (typeof x !== 'object' || x === null) return bad();
  const r = x as Record<string, unknown>;
  if (r.ret !== null && r.ret !== 'FULL' && r.ret !== 'HDRS') return bad();
  if (typeof r.arrivalDate !== 'number' || !Array.isArray(r.recipients) || typeof r.acknowledged !== 'boolean' || typeof r.requireTls !== 'boolean') return bad();
  return {
    sender: str(r.sender),
    envid: strOrNull(r.envid),
    ret: r.ret,
    requireTls: r.requireTls,
    arrivalDate: r.arrivalDate,
    acknowledged: r.acknowledged,
    recipients: (r.recipients as unknown[]).map((y) => {
      if (typeof y !== 'object' || y === null) return bad();
      const t = y as Record<string, unknown>;
      if (!Array.isArray(t.accounts)) return bad();
      return {
        address: str(t.address),
        orcpt: strOrNull(t.orcpt),
        notify: notifyOf(t.notify),
        accounts: t.accounts.map((a) => asAccountId(Number(a))),
      };
    }),
  };
}

export function createSmtpWorkers(ctx: ServerContext, options: SmtpWorkersOptions): ListeningServer & { pids(): number[] } {
  const delivery = options.delivery ?? contextDelivery(ctx);
  const name = options.mode === 'mx' ? 'smtp' : 'lmtp';
  const workers = new Set<Worker>();
  let closing = false;
  /** port: the one listening; requested: what listen() was given (0: the system's choice). */
  let bound: { host: string; port: number; requested: number } | null = null;
  let failures = 0;
  let lastStart = 0;

  // The workers' greylist, in this process: one set of triplets whichever worker a retry reaches.
  const greylist =
    options.mode === 'mx' && (options.greylistSeconds ?? 0) > 0
      ? createGreylist({ delayMs: options.greylistSeconds! * 1000, counters: ctx.counters ?? null, file: options.greylistFile ?? null, onFileError: greylistFileError(ctx.log) })
      : null;

  const setupFor = (host: string, port: number): WorkerSetup => ({
    mode: options.mode,
    hostname: ctx.hostname,
    logLevel: options.logLevel,
    tlsDir: ctx.tls ? options.tlsDir : null,
    host,
    port,
    greetingDelayMs: options.greetingDelayMs,
    limits: options.limits,
    authenticate: options.resolver !== null,
    // Without the owner's resolver a worker cannot ask the lists either.
    dnsbl: options.mode === 'mx' && options.resolver !== null ? [...(options.dnsbl ?? [])] : [],
    dmarcReject: options.dmarcReject,
    recipientProbes: options.recipientProbes,
    greylistSeconds: options.mode === 'mx' ? (options.greylistSeconds ?? 0) : 0,
    sharedCounters: Boolean(ctx.counters),
    proxyProtocol: options.proxyProtocol,
  });

  const serve = async (op: Op): Promise<unknown> => {
    switch (op.op) {
      case 'lookupRecipient':
        return delivery.lookupRecipient(String(op.domain), String(op.address), typeof op.size === 'number' ? op.size : null);
      case 'deliver': {
        if (!Buffer.isBuffer(op.raw) || !Array.isArray(op.accounts)) throw new Error('malformed deliver request');
        const report = op.report === null || op.report === undefined ? undefined : deliveryReportOf(op.report);
        const outcomes = await delivery.deliver(op.raw, op.accounts.map((a) => asAccountId(Number(a))), op.mailbox ?? undefined, report);
        return [...outcomes.values()];
      }
      case 'forward':
        if (!Buffer.isBuffer(op.raw)) throw new Error('malformed forward request');
        return delivery.forward(op.raw, forwardRequestOf(op.request));
      case 'greylist':
        if (!greylist) throw new Error('greylisting is off');
        return greylist.check(String(op.client), String(op.sender), String(op.recipient));
      case 'dns': {
        const resolver = options.resolver;
        const method = resolver && (DNS_METHODS as readonly string[]).includes(op.method) ? (resolver[op.method] as ((name: string) => Promise<unknown>) | undefined) : undefined;
        if (!method) throw Object.assign(new Error(`DNS lookup not available: ${String(op.method)}`), { code: 'ENOTIMP' });
        return method.call(resolver, String(op.name));
      }
      case 'counters': {
        const counters = ctx.counters;
        if (!counters || !(COUNTER_METHODS as readonly string[]).includes(op.method)) throw new Error('shared counters not available');
        const key = String(op.key);
        const ms = Number(op.ms);
        switch (op.method) {
          case 'hit':
            return counters.hit(key, ms);
          case 'count':
            return counters.count(key, ms);
          case 'block':
            return counters.block(key, ms);
          case 'blockedFor':
            return counters.blockedFor(key);
          case 'reset':
            return counters.reset(key);
        }
      }
    }
    throw new Error('unknown request');
  };

  const posters = new WeakMap<Worker, (m: ToWorker) => void>();
  const send = (w: Worker, m: ToWorker): void => {
    let post = posters.get(w);
    if (post === undefined) {
      // A worker gone meanwhile: its sessions are gone too, nobody waits for these answers.
      post = batchingPoster<ToWorker>((batch) => {
        if (w.isConnected()) w.send(batch);
      });
      posters.set(w, post);
    }
    post(m);
  };

  const onRequest = (w: Worker, m: Extract<FromWorker, { t: 'req' }>): void => {
    serve(m).then(
      (value) => send(w, { t: 'res', id: m.id, ok: true, value }),
      (err: unknown) => send(w, { t: 'res', id: m.id, ok: false, error: toWire(err) }),
    );
  };

  /** `again`: a restart, which keeps being retried until it listens (the first start's failure
   * is listen()'s). */
  const start = (host: string, port: number, again = false): Promise<number> =>
    new Promise((resolve, reject) => {
      setUpCluster();
      lastStart = Date.now();
      const w = cluster.fork();
      workers.add(w);
      let listening = false;
      const onMessage = (m: unknown): void => {
        if (!isFromWorker(m)) return;
        switch (m.t) {
          case 'ready':
            return send(w, { t: 'setup', setup: setupFor(host, port) });
          case 'listening':
            listening = true;
            failures = 0;
            return resolve(m.port);
          case 'failed':
            // With its code: the app tells a port in use (EADDRINUSE) from other failures.
            return reject(Object.assign(new Error(m.message), m.code === null ? {} : { code: m.code }));
          case 'req':
            return onRequest(w, m);
          case 'metric':
            ctx.metrics?.counter(m.name, m.help).inc(m.labels, m.by);
            return;
        }
      };
      w.on('message', (batch: unknown) => {
        if (Array.isArray(batch)) for (const m of batch) onMessage(m);
      });
      w.on('error', (err) => ctx.log.warn({ listener: name, err: err.message }, 'smtp worker channel error'));
      w.on('exit', (code, signal) => {
        workers.delete(w);
        if (!listening) reject(new Error(`the ${name} worker exited before listening (code ${code}, signal ${signal})`));
        if (closing || (!listening && !again)) return;
        // Not asked to (or a restart that could not listen): serve the port again.
        failures = Date.now() - lastStart < RESTART_WINDOW_MS ? failures + 1 : 1;
        const pause = Math.min(RESTART_MAX_MS, RESTART_MIN_MS * 2 ** (failures - 1));
        ctx.log.error({ listener: name, pid: w.process.pid, code, signal, restartInMs: pause }, 'smtp worker exited; restarting it');
        setTimeout(() => {
          if (closing || bound === null) return;
          // node:cluster shares a listening socket by the address and port asked for: while other
          // workers hold one asked for as port 0, a restart asks for 0 too to get it.
          start(bound.host, bound.requested === 0 && workers.size > 0 ? 0 : bound.port, true).catch((err: unknown) =>
            ctx.log.error({ listener: name, err: (err as Error).message }, 'smtp worker restart failed'),
          );
        }, pause).unref();
      });
    });

  return {
    name,
    async listen(host, port) {
      const first = await start(host, port);
      // The others share the first one's socket: node:cluster keys it by the address and port
      // asked for, so they ask for the same (port 0 is bound once, by the first).
      bound = { host, port: first, requested: port };
      const rest = [];
      for (let i = 1; i < Math.max(1, options.workers); i++) rest.push(start(host, port));
      try {
        await Promise.all(rest);
      } catch (err) {
        await this.close(0);
        throw err;
      }
      return first;
    },
    async close(graceMs = 10_000) {
      closing = true;
      const exits = [...workers].map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.isDead()) return resolve();
            const kill = setTimeout(() => w.process.kill('SIGKILL'), graceMs + EXIT_WAIT_MS);
            w.once('exit', () => {
              clearTimeout(kill);
              resolve();
            });
            send(w, { t: 'close', graceMs });
          }),
      );
      await Promise.all(exits);
      await greylist?.close();
    },
    pids() {
      return [...workers].map((w) => w.process.pid).filter((p): p is number => p !== undefined);
    },
  };
}

function toWire(err: unknown): WireError {
  const e = err as { message?: unknown; code?: unknown } | null;
  return {
    message: typeof e?.message === 'string' ? e.message : String(err),
    code: typeof e?.code === 'string' ? e.code : null,
    store: err instanceof StoreError,
  };
}
