/**
 * The composition root: builds the context (config, store, logger, authenticator, TLS) from a
 * data directory and starts the configured listeners. Only this file (with cli/ and test helpers)
 * names concrete implementations.
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import { createAuthenticator } from './auth/authenticator.js';
import { createSharedFailureCounters } from './auth/failure-counters.js';
import { parseHostPort, type Config, type ListenerName } from './config/config.js';
import type { ListeningServer, ServerContext } from './context.js';
import { createLogger } from './log/logger.js';
import { loadTlsDirectory, type FileTlsProvider } from './net/tls.js';
import type { MailStore } from './store/types.js';
import { createDnsResolver, type Resolver } from './dns/resolver.js';
import { LISTENER_FACTORIES } from './listeners.js';
import { createMetrics } from './lib/metrics.js';
import { meteredAuthenticator } from './auth/metered.js';
import { createVacationResponder } from './delivery/vacation.js';
import { startOutbound, type Outbound, type OutboundOptions } from './outbound.js';

export interface App {
  config: Config;
  ctx: ServerContext;
  servers: Array<{ name: ListenerName; server: ListeningServer; host: string; port: number }>;
  close(graceMs?: number): Promise<void>;
}

export interface AppOptions {
  dataDir: string;
  config: Config;
  store: MailStore;
  /** Where the store is (the data directory, or its postgres:// URL): the outbound queue goes
   * beside it (queue/open.ts), shared by every node when it is PostgreSQL. */
  storeLocation: string;
  log?: Logger;
  /** Tests: short leases, polls and retries of the outbound queue. */
  queueTuning?: OutboundOptions['queueTuning'];
  /** Tests: a stand-in DNS resolver instead of the configured servers. */
  resolver?: Resolver;
}

export async function startApp(options: AppOptions): Promise<App> {
  const { config, store, dataDir } = options;
  const log = options.log ?? createLogger({ level: config.log.level });
  let tls: FileTlsProvider | null = null;
  try {
    tls = await loadTlsDirectory(join(dataDir, 'tls'), config.hostname);
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'no TLS certificate: STARTTLS and implicit-TLS listeners are off');
  }
  const metrics = createMetrics();
  const limits = {
    maxFailuresPerIp: config.security.maxAuthFailuresPerIp,
    maxFailuresPerAccount: config.security.maxAuthFailuresPerAccount,
  };
  // PostgreSQL: failure counts, blocks and RCPT probing are shared by every node
  // (docs/scaling.md); SQLite: in this process's memory.
  const counters = store.sharedCounters();
  const plainAuth = createAuthenticator(store, {
    ...limits,
    verifiedPasswordTtlMs: config.security.passwordCacheSeconds * 1000,
    ...(counters ? { counters: createSharedFailureCounters(counters, limits) } : {}),
    log,
  });
  // Authentication outcomes of every protocol are counted here, in one place.
  const auth = meteredAuthenticator(plainAuth, metrics);
  const ctx: ServerContext = { hostname: config.hostname, store, log, auth, tls, metrics, counters };
  const bound: Partial<Record<ListenerName, number>> = {};
  const resolver = options.resolver ?? createDnsResolver({ servers: config.dns.servers });
  const servers: App['servers'] = [];
  const outbound: Outbound = await startOutbound({
    dataDir,
    storeLocation: options.storeLocation,
    config,
    store,
    resolver,
    log,
    ...(options.queueTuning ? { queueTuning: options.queueTuning } : {}),
    metrics,
  });
  // Local delivery's DSNs (delivery/local.ts) go where the queue's own go.
  ctx.reports = async (report, to) => {
    await outbound.queue.sendReport(report, to);
  };
  // Aliases to other domains: copies queued with the sender rewritten (delivery/srs.ts).
  ctx.forwarding = outbound.forwarding;
  // One responder for every listener: it remembers whom it answered.
  ctx.vacation = createVacationResponder({ store, send: (reply, to) => outbound.autoReply(reply, to), hostname: config.hostname, log: log.child({ component: 'vacation' }), counters });
  const closeAll = async (graceMs?: number) => {
    await Promise.allSettled(servers.map((s) => s.server.close(graceMs)));
    // The queue stops after the listeners: a submission being answered can still enqueue.
    await outbound.stop();
  };
  try {
    for (const [name, addr] of Object.entries(config.listen) as Array<[ListenerName, string]>) {
      const factory = LISTENER_FACTORIES[name];
      if (!factory) {
        log.warn({ listener: name }, 'listener not available in this version; skipped');
        continue;
      }
      const { host, port } = parseHostPort(addr, `listen.${name}`);
      const server = factory(ctx, config, { dataDir, resolver, onSubmit: outbound.onSubmit, boundPorts: () => ({ ...bound }) });
      if (!server) {
        log.warn({ listener: name }, 'listener needs a TLS certificate; skipped');
        continue;
      }
      let boundPort: number;
      try {
        boundPort = await server.listen(host, port);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        const why = code === 'EADDRINUSE' ? 'the port is in use' : code === 'EACCES' ? 'permission denied (ports below 1024 need privileges)' : (err as Error).message;
        throw new Error(`Cannot listen for ${name} on ${addr}: ${why}`);
      }
      servers.push({ name, server, host, port: boundPort });
      bound[name] = boundPort;
      log.info({ listener: name, host, port: boundPort }, 'listening');
    }
  } catch (err) {
    await closeAll(0);
    throw err;
  }
  // Blob files left by a crash between their write and the metadata commit are reclaimed in the
  // background; the store keeps in-flight ingests safe from it.
  store.collectGarbage().then(
    (n) => { if (n > 0) log.info({ removed: n }, 'orphan blobs collected'); },
    (err: unknown) => log.error({ err }, 'blob garbage collection failed'),
  );
  return {
    config,
    ctx,
    servers,
    async close(graceMs = 10_000) {
      await closeAll(graceMs);
    },
  };
}
