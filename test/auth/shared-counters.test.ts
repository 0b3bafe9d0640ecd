/**
 * Limits shared by the nodes (store/counters.ts on PostgreSQL, FACTEUR_TEST_PG): two store
 * instances on one schema stand for two Facteur nodes. Failures counted on node A block the same
 * account and the same IP on node B; unknown recipients probed through node A defer RCPT on
 * node B. And the counters themselves: windows, blocks, resets, concurrent hits.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import pg from 'pg';
import { pino } from 'pino';
import { createAuthenticator } from '../../src/auth/authenticator.js';
import { createMemoryFailureCounters, createSharedFailureCounters } from '../../src/auth/failure-counters.js';
import { createCredentials } from '../../src/auth/password.js';
import type { AuthMeta, ServerContext } from '../../src/context.js';
import { createSmtpServer } from '../../src/smtp/server/server.js';
import { createPgCounters } from '../../src/store/sql/postgres/pg-counters.js';
import type { MailStore } from '../../src/store/types.js';
import { openPgTestStore, testPgUrl } from '../helpers/store.js';
import { connectSmtp } from '../smtp/wire.js';

const url = testPgUrl();
const skip = url === null ? 'FACTEUR_TEST_PG is not set' : false;
const meta = (ip: string): AuthMeta => ({ ip, protocol: 'imap', secure: true });
const LIMITS = { maxFailuresPerAccount: 3, maxFailuresPerIp: 5 };

test('shared counters: hits from two nodes add up; windows, blocks and resets hold across nodes', { skip }, async () => {
  const t = await openPgTestStore();
  const pools: pg.Pool[] = [];
  try {
    let clock = 1_000_000_000_000;
    const node = () => {
      const pool = new pg.Pool({ connectionString: t.url, options: `-c search_path=${t.schema},public`, max: 4 });
      pools.push(pool);
      return createPgCounters(pool, { now: () => clock });
    };
    const a = node();
    const b = node();
    const window = 15 * 60_000;
    // 40 concurrent hits, half through each node: exactly 40 counted.
    await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? a : b).hit('k', window)));
    assert.equal(await b.count('k', window), 40);
    assert.equal(await a.hit('k', window), 41);
    assert.equal(await a.count('other', window), 0);
    // Ten minutes on: still in the window. Past the window and its last bucket: forgotten.
    clock += 10 * 60_000;
    assert.equal(await b.count('k', window), 41);
    clock += window;
    assert.equal(await b.count('k', window), 0);
    assert.equal(await b.hit('k', window), 1);
    // Blocks: seen by the other node, never shortened, gone when over or reset.
    await a.block('x', 60_000);
    assert.equal(await b.blockedFor('x'), 60_000);
    await b.block('x', 1_000);
    assert.equal(await a.blockedFor('x'), 60_000);
    clock += 30_000;
    assert.equal(await b.blockedFor('x'), 30_000);
    clock += 30_001;
    assert.equal(await b.blockedFor('x'), 0);
    await a.block('y', 60_000);
    await a.hit('y', window);
    await b.reset('y');
    assert.equal(await a.blockedFor('y'), 0);
    assert.equal(await a.count('y', window), 0);
  } finally {
    for (const p of pools) await p.end();
    await t.cleanup();
  }
});

async function twoNodes(): Promise<{ a: MailStore; b: MailStore; cleanup(): Promise<void> }> {
  const t = await openPgTestStore();
  const b = await t.openNode();
  await t.store.addDomain('example.com');
  await t.store.createAccount({ address: 'alice@example.com', ...(await createCredentials('alice-right-1')) });
  return { a: t.store, b, cleanup: () => t.cleanup() };
}

test('auth failures on node A block the same account on node B, and the same IP for every account', { skip }, async () => {
  const nodes = await twoNodes();
  try {
    const auth = (store: MailStore) =>
      createAuthenticator(store, { ...LIMITS, failureDelayMs: 0, counters: createSharedFailureCounters(store.sharedCounters()!, LIMITS) });
    const onA = auth(nodes.a);
    const onB = auth(nodes.b);
    // Account: three failures on A from three addresses, then the right password on B.
    for (const ip of ['192.0.2.1', '192.0.2.2', '192.0.2.3']) {
      assert.deepEqual(await onA.verifyPassword('alice@example.com', 'wrong', meta(ip)), { ok: false, reason: 'invalid' });
    }
    assert.deepEqual(await onB.verifyPassword('alice@example.com', 'alice-right-1', meta('192.0.2.4')), { ok: false, reason: 'throttled' });
    // Control: a node counting in its own memory knows nothing of A's failures.
    const alone = createAuthenticator(nodes.b, { ...LIMITS, failureDelayMs: 0, counters: createMemoryFailureCounters(LIMITS) });
    assert.equal((await alone.verifyPassword('alice@example.com', 'alice-right-1', meta('192.0.2.4'))).ok, true);
    // IP: five failures on A spread over unknown names; B refuses that IP for anyone.
    for (let i = 0; i < 5; i++) await onA.verifyPassword(`user${i}@example.com`, 'x', meta('203.0.113.9'));
    assert.deepEqual(await onB.verifyPassword('someone@example.com', 'x', meta('203.0.113.9')), { ok: false, reason: 'throttled' });
    assert.deepEqual(await onB.verifyPassword('someone@example.com', 'x', meta('203.0.113.10')), { ok: false, reason: 'invalid' });
  } finally {
    await nodes.cleanup();
  }
});

test('RCPT probing through node A defers RCPT on node B (450 4.7.1)', { skip }, async () => {
  const nodes = await twoNodes();
  const log = pino({ level: 'silent' });
  const ctx = (store: MailStore): ServerContext => ({
    hostname: 'mx.example.com',
    store,
    log,
    auth: createAuthenticator(store),
    tls: null,
    counters: store.sharedCounters(),
  });
  const probes = { limit: 3, windowMs: 10 * 60_000 };
  const servers = [nodes.a, nodes.b].map((s) => createSmtpServer(ctx(s), { mode: 'mx', resolver: null, recipientProbes: probes }));
  try {
    const [portA, portB] = await Promise.all(servers.map((s) => s.listen('127.0.0.1', 0)));
    const a = await connectSmtp(portA!);
    await a.expect(220);
    await a.cmd('EHLO harvester.example', 250);
    await a.cmd('MAIL FROM:<h@harvester.example>', 250);
    for (const name of ['ann', 'bill', 'carl']) await a.cmd(`RCPT TO:<${name}@example.com>`, 550);
    a.close();
    const b = await connectSmtp(portB!);
    await b.expect(220);
    await b.cmd('EHLO harvester.example', 250);
    await b.cmd('MAIL FROM:<h@harvester.example>', 250);
    const r = await b.cmd('RCPT TO:<alice@example.com>', 450);
    assert.match(r.text, /^4\.7\.1 /);
    b.close();
  } finally {
    await Promise.all(servers.map((s) => s.close(100)));
    await nodes.cleanup();
  }
});
