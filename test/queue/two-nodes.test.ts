/**
 * Two Facteur nodes (two apps) over one PostgreSQL database share one outbound queue: mail
 * submitted through either node reaches the remote MX (a local sink) exactly once while both
 * workers claim from the queue at the same moments, and a recipient leased by a node that died
 * is delivered by a live node once the lease has run out; a queue.db left by an older version
 * beside a PostgreSQL store joins the shared queue. Needs FACTEUR_TEST_PG.
 */
import { strict as assert } from 'node:assert';
import { access, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import nodemailer from 'nodemailer';
import { pino } from 'pino';
import { startApp, type App } from '../../src/app.js';
import { createCredentials } from '../../src/auth/password.js';
import { defaultConfig } from '../../src/config/config.js';
import { createSelfSignedCertificate } from '../../src/net/tls.js';
import { queueDbPath } from '../../src/queue/admin.js';
import { openQueueStore, pgQueueSchema, queueLocation } from '../../src/queue/open.js';
import { openSqliteQueueStore } from '../../src/queue/sqlite-store.js';
import type { MailStore } from '../../src/store/types.js';
import { openPgTestStore, testPgUrl, type PgTestStore } from '../helpers/store.js';
import { mockResolver, startSink, type Sink } from './helpers.js';

const DNS = { mx: { 'example.net': [{ exchange: 'mx.example.net', priority: 10 }] }, a: { 'mx.example.net': ['127.0.0.1'] } };
const LEASE_MS = 1500;
const USER = { address: 'bob@example.com', pass: 'pw-bob-123456' };

async function startNode(name: string, store: MailStore, location: string, sink: Sink, base: string): Promise<{ app: App; port: number }> {
  const dataDir = join(base, name);
  const hostname = `${name}.example.com`;
  await createSelfSignedCertificate(join(dataDir, 'tls'), hostname);
  const config = defaultConfig(hostname);
  config.log.level = 'silent';
  config.listen = { submission: '127.0.0.1:0' };
  config.outbound.port = sink.port;
  config.outbound.mtaSts = false;
  const app = await startApp({
    dataDir,
    storeLocation: location,
    config,
    store,
    log: pino({ level: (process.env.FACTEUR_TEST_LOG ?? 'silent') as 'silent' }),
    resolver: mockResolver(DNS),
    // Every first attempt is refused for a moment (below): the retries of both nodes fall due
    // at the same instant, and both workers claim from the queue together.
    queueTuning: { leaseMs: LEASE_MS, pollMs: 100, retrySchedule: [400] },
  });
  return { app, port: app.servers.find((s) => s.name === 'submission')!.port };
}

function send(port: number, to: string): Promise<unknown> {
  const transport = nodemailer.createTransport({
    host: '127.0.0.1',
    port,
    secure: false,
    requireTLS: true,
    tls: { rejectUnauthorized: false },
    auth: { user: USER.address, pass: USER.pass },
  });
  return transport.sendMail({ from: USER.address, to, subject: `to ${to}`, text: 'hello\n' }).finally(() => transport.close());
}

/** The store URL a node of this test store is configured with. */
function storeUrl(pgStore: PgTestStore): string {
  const u = new URL(pgStore.url);
  u.searchParams.set('schema', pgStore.schema);
  return u.toString();
}

async function until(what: string, ok: () => boolean, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('two nodes on one PostgreSQL queue: every message submitted through either is delivered once, and a dead node\'s lease is taken over when it runs out', { skip: testPgUrl() === null ? 'FACTEUR_TEST_PG is not set' : false }, async () => {
  const pgStore = await openPgTestStore();
  const location = storeUrl(pgStore);
  const base = await mkdtemp(join(tmpdir(), 'facteur-two-queues-'));
  // The first RCPT of each address is refused with 451: each message is attempted twice.
  const sink = await startSink({ starttls: false, onRcpt: (_a, n) => (n === 1 && !_a.startsWith('orphan') ? [451, '4.7.1 try again'] : null) });
  const apps: App[] = [];
  try {
    await pgStore.store.addDomain('example.com');
    await pgStore.store.createAccount({ address: USER.address, ...(await createCredentials(USER.pass)) });

    // A node that died in the middle of an attempt: it queued a message, leased its recipient
    // and never finished. Its queue is the same as the live nodes' (the store's database).
    const dead = await openQueueStore(queueLocation(base, location));
    const leasedAt = Date.now();
    await dead.insert(
      {
        id: 'orphan0000000001',
        sender: USER.address,
        createdAt: leasedAt,
        body: Buffer.from('From: bob@example.com\r\nTo: orphan@example.net\r\nSubject: orphan\r\n\r\nhello\r\n'),
        envid: null,
        ret: null,
        requireTls: false,
      tlsOptional: false,
        isReport: false,
        recipients: [{ address: 'orphan@example.net', domain: 'example.net', notify: null, orcpt: null }],
      },
      leasedAt,
    );
    assert.equal((await dead.claimDue(leasedAt, 10, leasedAt + LEASE_MS)).length, 1);
    await dead.close();

    const a = await startNode('node-a', pgStore.store, location, sink, base);
    apps.push(a.app);
    const b = await startNode('node-b', await pgStore.openNode(), location, sink, base);
    apps.push(b.app);

    // Through A (most) and B, some at the same time.
    const recipients = Array.from({ length: 24 }, (_, i) => `r${i}@example.net`);
    await Promise.all(recipients.map((to, i) => send(i % 4 === 3 ? b.port : a.port, to)));

    await until('the orphan', () => sink.count('orphan@example.net') > 0);
    const orphanAt = Date.now();
    assert.ok(orphanAt >= leasedAt + LEASE_MS, `the leased recipient waited for its lease (${orphanAt - leasedAt} ms)`);
    await until('every message', () => recipients.every((r) => sink.count(r) > 0));
    // Time for a second delivery to show up, if any node were to make one.
    await new Promise((r) => setTimeout(r, LEASE_MS + 500));
    for (const r of [...recipients, 'orphan@example.net']) assert.equal(sink.count(r), 1, `${r} delivered once`);
    for (const r of recipients) assert.equal(sink.rcpts(r), 2, `${r}: one refused attempt, one delivery`);
    const byNode = new Map<string, number>();
    for (const m of sink.received) byNode.set(m.helo, (byNode.get(m.helo) ?? 0) + 1);
    assert.deepEqual([...byNode.keys()].sort(), ['node-a.example.com', 'node-b.example.com'], 'both nodes delivered from the one queue');
    // Everything is done: the shared queue is empty for both nodes.
    const q = await openQueueStore(queueLocation(base, location));
    try {
      assert.deepEqual(await q.listMessages(), []);
    } finally {
      await q.close();
    }
  } finally {
    for (const app of apps) await app.close(0);
    await sink.close();
    await pgStore.cleanup();
    await rm(base, { recursive: true, force: true });
  }
});

test('a queue.db left beside a PostgreSQL store joins the shared queue when the node starts, once, with its recipients\' states', { skip: testPgUrl() === null ? 'FACTEUR_TEST_PG is not set' : false }, async () => {
  const pgStore = await openPgTestStore();
  const location = storeUrl(pgStore);
  const base = await mkdtemp(join(tmpdir(), 'facteur-two-queues-'));
  const sink = await startSink({ starttls: false });
  let app: App | null = null;
  try {
    await pgStore.store.addDomain('example.com');
    await mkdir(join(base, 'node-a'), { recursive: true });
    const old = openSqliteQueueStore(queueDbPath(join(base, 'node-a')));
    const now = Date.now();
    await old.insert(
      {
        id: 'old0000000000001',
        sender: USER.address,
        createdAt: now - 60_000,
        body: Buffer.from('From: bob@example.com\r\nTo: done@example.net, todo@example.net\r\nSubject: old\r\n\r\nhello\r\n'),
        envid: null,
        ret: null,
        requireTls: false,
      tlsOptional: false,
        isReport: false,
        recipients: ['done@example.net', 'todo@example.net'].map((address) => ({ address, domain: 'example.net', notify: null, orcpt: null })),
      },
      now - 60_000,
    );
    const claimed = await old.claimDue(now, 10, now + 60_000);
    await old.finish(claimed.filter((r) => r.address === 'done@example.net').map((r) => r.id), 'delivered', '250 ok', now);
    await old.close();
    app = (await startNode('node-a', pgStore.store, location, sink, base)).app;
    await until('the queued recipient', () => sink.count('todo@example.net') > 0);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(sink.count('todo@example.net'), 1);
    assert.equal(sink.rcpts('done@example.net'), 0, 'a recipient delivered before the move is not sent again');
    assert.equal(await access(queueDbPath(join(base, 'node-a'))).then(() => true, () => false), false);
    await access(`${queueDbPath(join(base, 'node-a'))}.moved`);
  } finally {
    await app?.close(0);
    await sink.close();
    await pgStore.cleanup();
    await rm(base, { recursive: true, force: true });
  }
});

test('each store schema gets its own queue schema, a valid identifier, and a SQLite store its queue.db', () => {
  const stores = ['public', 'facteur', 'facteur_queue', 'mail', 'a'.repeat(49), 'a'.repeat(50), 'b'.repeat(63), 'x'.repeat(62)];
  const queues = stores.map(pgQueueSchema);
  assert.equal(new Set(queues).size, stores.length, queues.join(' '));
  for (const q of queues) assert.match(q, /^[a-z_][a-z0-9_]{0,62}$/);
  assert.equal(pgQueueSchema('public'), 'facteur_queue');
  assert.deepEqual(queueLocation('/d', 'postgres://u@h:5432/db?schema=mail&blobs=/srv/b'), { backend: 'postgres', url: 'postgres://u@h:5432/db', schema: 'facteur_queue_mail' });
  assert.deepEqual(queueLocation('/d', 'postgresql://u@h/db'), { backend: 'postgres', url: 'postgresql://u@h/db', schema: 'facteur_queue' });
  assert.deepEqual(queueLocation('/d', '/d'), { backend: 'sqlite', path: join('/d', 'queue.db') });
});
