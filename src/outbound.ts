/**
 * The outbound side of the composition root: the durable queue (queue.db in the data directory),
 * DKIM signing with the data directory's keys, DSNs delivered locally when the sender is ours,
 * and the submission hook that puts remote recipients on the queue.
 */
import type { Logger } from 'pino';
import type { Config } from './config/config.js';
import type { Resolver } from './dns/resolver.js';
import { parseHostPort } from './config/config.js';
import { parseMessage } from './mail/parse.js';
import { createDkimSigning } from './msgauth/dkim-sign.js';
import { queueDbPath } from './queue/admin.js';
import { createOutboundQueue, type OutboundQueue, type Smarthost } from './queue/outbound-queue.js';
import { openSqliteQueueStore } from './queue/sqlite-store.js';
import { createSubmitHook } from './queue/submit-hook.js';
import type { SubmitHook } from './smtp/server/policy-submission.js';
import type { MailStore } from './store/types.js';

export interface Outbound {
  queue: OutboundQueue;
  onSubmit: SubmitHook;
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

export async function startOutbound(options: { dataDir: string; config: Config; store: MailStore; resolver: Resolver; log: Logger }): Promise<Outbound> {
  const { dataDir, config, store, resolver, log } = options;
  const queueStore = openSqliteQueueStore(queueDbPath(dataDir));
  const smarthost = smarthostFrom(config);
  const queue = createOutboundQueue({
    hostname: config.hostname,
    store: queueStore,
    resolver,
    log: log.child({ component: 'outbound' }),
    dkim: createDkimSigning(dataDir),
    port: config.outbound.port,
    mtaSts: { enabled: config.outbound.mtaSts },
    ...(smarthost ? { smarthost } : {}),
    // A report to one of our own users goes straight to their INBOX; anything else is queued.
    deliverReport: async (report, recipient) => {
      const accounts = await store.resolveRecipient(recipient.toLowerCase());
      if (accounts.length === 0) return false;
      await store.deliver(report, parseMessage(report), accounts.map((accountId) => ({ accountId })));
      return true;
    },
  });
  await queue.start();
  return {
    queue,
    onSubmit: createSubmitHook(queue, log),
    async stop() {
      await queue.stop();
      await queueStore.close();
    },
  };
}
