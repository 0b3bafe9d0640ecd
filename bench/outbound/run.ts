/**
 * Outbound throughput: messages per second from enqueue to a real SMTP sink (smtp-server on
 * loopback, STARTTLS offered and used) for 1,000 recipients on 10 domains.
 *
 *   node --import tsx bench/outbound/run.ts [recipients] [domains] [submitters]
 *
 *   (defaults: 1000 recipients, 10 domains, 20 concurrent submitters)
 *
 * Two shapes: one recipient per message (1,000 transactions), and one message to 10 recipients,
 * one per domain (100 messages, 1,000 recipients). Each run uses a fresh queue.db (WAL,
 * synchronous=FULL: every enqueue and every delivery record is an fsync'd commit).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { openSqliteQueueStore } from '../../src/queue/sqlite-store.js';
import { queueDbPath } from '../../src/queue/admin.js';
import { createOutboundQueue } from '../../src/queue/outbound-queue.js';
import { mockResolver, startSink, MESSAGE, type DnsTable } from '../../test/queue/helpers.js';

const RECIPIENTS = Number(process.argv[2] ?? 1000);
const DOMAINS = Number(process.argv[3] ?? 10);
/** Enqueues in flight at once, like that many submission clients (group commit shares fsyncs). */
const SUBMITTERS = Number(process.argv[4] ?? 20);

async function run(shape: 'one-per-message' | 'one-message-per-domain-set'): Promise<void> {
  const sink = await startSink();
  const dir = await mkdtemp(join(tmpdir(), 'facteur-bench-outbound-'));
  const dns: DnsTable = { mx: {}, a: {} };
  for (let d = 0; d < DOMAINS; d++) {
    dns.mx![`d${d}.example`] = [{ exchange: `mx.d${d}.example`, priority: 10 }];
    dns.a![`mx.d${d}.example`] = ['127.0.0.1'];
  }
  const store = openSqliteQueueStore(queueDbPath(dir));
  const queue = createOutboundQueue({
    hostname: 'bench.example.org',
    store,
    resolver: mockResolver(dns),
    log: pino({ level: 'silent' }),
    port: sink.port,
    mtaSts: { enabled: false },
  });
  let delivered = 0;
  const done = new Promise<void>((resolve) =>
    queue.on('delivered', (e) => {
      delivered += e.recipients.length;
      if (delivered >= RECIPIENTS) resolve();
    }),
  );
  await queue.start();
  const t0 = performance.now();
  const envelopes: Array<{ from: string; to: string[] }> = [];
  if (shape === 'one-per-message') {
    for (let i = 0; i < RECIPIENTS; i++) envelopes.push({ from: 'alice@example.org', to: [`u${i}@d${i % DOMAINS}.example`] });
  } else {
    for (let i = 0; i < RECIPIENTS / DOMAINS; i++) {
      envelopes.push({ from: 'alice@example.org', to: Array.from({ length: DOMAINS }, (_, d) => `u${i}@d${d}.example`) });
    }
  }
  const messages = envelopes.length;
  let next = 0;
  await Promise.all(
    Array.from({ length: SUBMITTERS }, async () => {
      while (next < envelopes.length) await queue.enqueue(MESSAGE, envelopes[next++]!);
    }),
  );
  const tEnqueued = performance.now();
  await done;
  const t1 = performance.now();
  await queue.stop();
  await store.close();
  const seconds = (t1 - t0) / 1000;
  console.log(
    `${shape}: ${messages} messages (${SUBMITTERS} submitters), ${delivered} recipients, ${DOMAINS} domains: ` +
      `enqueue ${(tEnqueued - t0).toFixed(0)} ms, all delivered after ${(t1 - t0).toFixed(0)} ms: ` +
      `${(messages / seconds).toFixed(0)} messages/s, ${(delivered / seconds).toFixed(0)} recipients/s; ` +
      `sink saw ${sink.connections} connections (max ${sink.maxConcurrent} at once), ${sink.received.length} transactions`,
  );
  await sink.close();
  await rm(dir, { recursive: true, force: true });
}

await run('one-per-message');
await run('one-message-per-domain-set');
