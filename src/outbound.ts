/**
 * The outbound side of the composition root: the durable queue (queue.db in the data directory
 * beside a SQLite store; shared by every node in the database of a PostgreSQL store, queue/open.ts),
 * DKIM signing with the data directory's keys, DSNs delivered locally when the sender is ours,
 * and the submission hook that puts remote recipients on the queue.
 */
import type { Logger } from 'pino';
import type { Config } from './config/config.js';
import type { Resolver } from './dns/resolver.js';
import { parseHostPort } from './config/config.js';
import { parseMessage } from './mail/parse.js';
import { createDkimSigning } from './msgauth/dkim-sign.js';
import { createOutboundQueue, type OutboundOptions as OutboundQueueOptions, type OutboundQueue, type Smarthost } from './queue/outbound-queue.js';
import { queueDbPath } from './queue/admin.js';
import { moveSqliteQueue, openQueueStore, queueLocation } from './queue/open.js';
import { createSubmitHook } from './queue/submit-hook.js';
import type { SubmitHook } from './smtp/server/policy-submission.js';
import type { MailStore } from './store/types.js';
import type { Metrics } from './lib/metrics.js';
import type { QueueStore } from './queue/types.js';
import type { Forwarding } from './context.js';
import { createSrs, loadSrsSecret } from './delivery/srs.js';

/** How often a node looks at a shared (PostgreSQL) queue when nothing it knows of is due. */
const SHARED_QUEUE_POLL_MS = 30_000;

export interface Outbound {
  queue: OutboundQueue;
  onSubmit: SubmitHook;
  /** Aliases to other domains (delivery/srs.ts, delivery/local.ts). */
  forwarding: Forwarding;
  /** An automatic reply (delivery/vacation.ts) from the null sender: into the INBOX of a local
   * recipient, else queued, signed with the From domain's keys. */
  autoReply(reply: Buffer, to: string): Promise<void>;
  stop(): Promise<void>;
}

function smarthostFrom(config: Config): Smarthost | undefined {
  const o = config.outbound;
  if (!o.smarthost) return undefined;
  const { host, port } = parseHostPort(o.smarthost, 'outbound.smarthost');
  return {
    host,
    port,
    tls: o.smarthostTls,
    ...(o.smarthostUser ? { auth: { user: o.smarthostUser, pass: o.smarthostPassword } } : {}),
  };
}

export interface OutboundOptions {
  dataDir: string;
  /** Where the store is (data directory or postgres:// URL): the queue goes beside it. */
  storeLocation: string;
  config: Config;
  store: MailStore;
  resolver: Resolver;
  log: Logger;
  /** Tests: shorter leases, polls and retries than the queue's defaults. */
  queueTuning?: Pick<OutboundQueueOptions, 'leaseMs' | 'pollMs' | 'retrySchedule'>;
  /** /metrics: the queue's counters and, at each scrape, its depth. */
  metrics?: Metrics;
}

/**
 * The queue's metrics: what it took in and what became of each recipient (counted from its
 * events), and at each scrape what waits in it (one count query over the queue store).
 */
function meterQueue(queue: OutboundQueue, queueStore: QueueStore, metrics: Metrics): void {
  const messages = metrics.counter('facteur_outbound_messages_total', 'Messages put on the outbound queue, by kind (message or report).');
  const recipients = metrics.counter('facteur_outbound_recipients_total', 'Outbound recipient attempts, by result (delivered, deferred, failed).');
  const reports = metrics.counter('facteur_outbound_reports_total', 'Delivery status notifications sent by the queue, by action and way (local or queued).');
  queue.on('queued', (e) => messages.inc({ kind: e.isReport ? 'report' : 'message' }));
  queue.on('delivered', (e) => recipients.inc({ result: 'delivered' }, e.recipients.length));
  queue.on('deferred', (e) => recipients.inc({ result: 'deferred' }, e.recipients.length));
  queue.on('failed', (e) => recipients.inc({ result: 'failed' }, e.recipients.length));
  queue.on('report', (e) => reports.inc({ action: e.action, way: e.local ? 'local' : 'queued' }));
  const queued = metrics.gauge('facteur_outbound_queued_recipients', 'Recipients waiting in the outbound queue.');
  const queuedMessages = metrics.gauge('facteur_outbound_queued_messages', 'Messages with recipients waiting in the outbound queue.');
  const held = metrics.gauge('facteur_outbound_held_messages', 'Messages held in the outbound queue (facteur queue hold).');
  metrics.onCollect(async () => {
    const d = await queueStore.depth();
    queued.set(d.recipients);
    queuedMessages.set(d.messages);
    held.set(d.held);
  });
}

export async function startOutbound(options: OutboundOptions): Promise<Outbound> {
  const { dataDir, config, store, resolver, log } = options;
  const location = queueLocation(dataDir, options.storeLocation);
  const queueStore = await openQueueStore(location);
  if (location.backend === 'postgres') {
    // An older version kept this node's queue in queue.db whatever the store: its messages join
    // the shared queue once.
    try {
      const moved = await moveSqliteQueue(queueDbPath(dataDir), queueStore);
      if (moved !== null) log.info({ moved, from: queueDbPath(dataDir) }, 'queue.db moved into the shared PostgreSQL queue');
    } catch (err) {
      await queueStore.close();
      throw err;
    }
  }
  let srs;
  try {
    srs = createSrs({ secret: await loadSrsSecret(dataDir) });
  } catch (err) {
    await queueStore.close();
    throw err;
  }
  const smarthost = smarthostFrom(config);
  const dkim = createDkimSigning(dataDir);
  /** A message of ours (a report, an automatic reply) into the INBOX of a local address; false
   * when the address is not local or none of its accounts could store it. */
  const deliverLocally = async (message: Buffer, to: string): Promise<boolean> => {
    const accounts = await store.resolveRecipient(to.toLowerCase());
    if (accounts.length === 0) return false;
    const outcomes = await store.deliver(message, parseMessage(message), accounts.map((accountId) => ({ accountId })));
    return outcomes.some((o) => o.ok);
  };
  const queue = createOutboundQueue({
    // Shared by the nodes: what another node queued, or leased and never finished, is looked for.
    ...(location.backend === 'postgres' ? { pollMs: SHARED_QUEUE_POLL_MS } : {}),
    ...options.queueTuning,
    hostname: config.hostname,
    store: queueStore,
    resolver,
    log: log.child({ component: 'outbound' }),
    dkim,
    port: config.outbound.port,
    mtaSts: { enabled: config.outbound.mtaSts },
    ...(smarthost ? { smarthost } : {}),
    // A report to one of our own users goes straight to their INBOX; anything else is queued,
    // and so is a report none of the sender's accounts could store (over quota): the queue then
    // retries it through this server's MX until there is room or the report expires.
    deliverReport: async (report, recipient) => {
      // A report on a forwarded copy goes to the rewritten sender: straight on to the one it
      // stands for (here or queued), not round through this server's MX.
      const back = srs.reverse(recipient);
      if (back.kind === 'ok') {
        await queue.sendReport(report, back.address);
        return true;
      }
      return deliverLocally(report, recipient);
    },
  });
  if (options.metrics) meterQueue(queue, queueStore, options.metrics);
  try {
    await queue.start();
  } catch (err) {
    await queueStore.close();
    throw err;
  }
  return {
    queue,
    onSubmit: createSubmitHook(queue, log),
    // Copies are not signed: the author's DKIM signature travels with them.
    forwarding: {
      srs,
      send: async (raw, envelope) => (await queue.enqueue(raw, envelope, { sign: false })).id,
      seal: (raw, domain, arc) => dkim.seal(raw, domain, arc),
    },
    async autoReply(reply, to) {
      if (!(await deliverLocally(reply, to))) await queue.enqueue(reply, { from: '', to: [to] }, { sign: true });
    },
    async stop() {
      await queue.stop();
      await queueStore.close();
    },
  };
}
