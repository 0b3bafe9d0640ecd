/**
 * Greylisting on port 25 (RFC 6647, smtp/server/greylist.ts): the rules with a clock, then the
 * listener made from the configuration (in and out of an SMTP worker process), a client on the
 * internet played through a PROXY-protocol balancer.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { defaultConfig, renderConfigFile } from '../../src/config/config.js';
import { LISTENER_FACTORIES } from '../../src/listeners.js';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGreylist, GREYLIST_FILE, greylistNetwork, PASS_TTL_MS, RETRY_WINDOW_MS } from '../../src/smtp/server/greylist.js';
import type { SharedCounters } from '../../src/store/counters.js';
import { loadConfigText } from '../helpers/config.js';
import { makeTestContext } from '../helpers/context.js';
import { connectViaBalancer } from './wire.js';
import { createMockResolver } from './mock-dns.js';

/** Blocks with a clock, as the stores keep them (the rest is not used by greylisting). */
function clockCounters(now: () => number): SharedCounters {
  const until = new Map<string, number>();
  return {
    hit: async () => 0,
    count: async () => 0,
    block: async (key, ms) => void until.set(key, Math.max(until.get(key) ?? 0, now() + ms)),
    blockedFor: async (key) => Math.max(0, (until.get(key) ?? 0) - now()),
    reset: async (key) => void until.delete(key),
  };
}

for (const kind of ['memory', 'shared counters']) {
  test(`greylisting (${kind}): a new triplet waits the delay, a retry then passes and is known for 35 days`, async () => {
    let t = Date.UTC(2026, 10, 28);
    const now = () => t;
    const g = createGreylist({ delayMs: 300_000, now, exemptPrivate: false, counters: kind === 'memory' ? null : clockCounters(now) });
    const jane = (ip = '198.51.100.7', from = 'jane@sender.example', to = 'bob@example.com') => g.check(ip, from, to);
    assert.deepEqual(await jane(), { pass: false, retryInSeconds: 300 });
    t += 100_000;
    assert.deepEqual(await jane(), { pass: false, retryInSeconds: 200 }, 'too early: the wait left');
    t += 200_000;
    assert.deepEqual(await jane(), { pass: true });
    // Known now: from another address of the same /24, at once; other triplets wait.
    assert.deepEqual(await jane('198.51.100.200'), { pass: true });
    assert.equal((await jane('198.51.101.7')).pass, false, 'another network');
    assert.equal((await jane(undefined, 'other@sender.example')).pass, false, 'another sender');
    assert.equal((await jane(undefined, undefined, 'carol@example.com')).pass, false, 'another recipient');
    assert.deepEqual(await jane(undefined, 'JANE@Sender.Example', 'Bob@example.com'), { pass: true }, 'case does not matter');
    // Each message renews the 35 days; without one for longer, greylisted again.
    t += PASS_TTL_MS - 1000;
    assert.deepEqual(await jane(), { pass: true });
    t += PASS_TTL_MS + 1000;
    assert.equal((await jane()).pass, false);
    // A first attempt never retried within the window is forgotten: a late retry starts over.
    assert.equal((await jane('203.0.113.5')).pass, false);
    t += RETRY_WINDOW_MS + 1000;
    assert.deepEqual(await jane('203.0.113.5'), { pass: false, retryInSeconds: 300 });
  });
}

test('greylisting without shared counters keeps its triplets in its file across restarts; expired ones are dropped, a bad file is reported', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'facteur-greylist-'));
  const file = join(dir, GREYLIST_FILE);
  try {
    let t = Date.UTC(2026, 10, 28);
    const now = () => t;
    const errors: string[] = [];
    const open = () => createGreylist({ delayMs: 300_000, now, exemptPrivate: false, file, onFileError: (err) => errors.push((err as Error).message) });
    let g = open();
    assert.equal((await g.check('198.51.100.7', 'jane@sender.example', 'bob@example.com')).pass, false);
    assert.equal((await g.check('203.0.113.9', 'spam@bulk.example', 'bob@example.com')).pass, false);
    await g.close();
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    // After a restart: the wait that began before it counts, and the retry passes.
    t += 300_000;
    g = open();
    assert.deepEqual(await g.check('198.51.100.7', 'jane@sender.example', 'bob@example.com'), { pass: true });
    await g.close();
    // Known after another restart, long after the retry window: passed triplets stay; the
    // triplet never retried is forgotten and not written again.
    t += RETRY_WINDOW_MS + 1000;
    g = open();
    assert.deepEqual(await g.check('198.51.100.7', 'jane@sender.example', 'bob@example.com'), { pass: true });
    await g.close();
    const saved = JSON.parse(await readFile(file, 'utf8')) as { triplets: unknown[] };
    assert.equal(saved.triplets.length, 1);
    assert.deepEqual(errors, []);
    // A damaged file: reported, greylisting goes on from memory, and the next save replaces it.
    await writeFile(file, '{"version":1,"trip');
    g = open();
    assert.equal(errors.length, 1);
    assert.deepEqual(await g.check('198.51.100.7', 'jane@sender.example', 'bob@example.com'), { pass: false, retryInSeconds: 300 });
    await g.close();
    assert.equal((JSON.parse(await readFile(file, 'utf8')) as { triplets: unknown[] }).triplets.length, 1);
    // Nothing changed, nothing written: close() of an unused greylist leaves the file alone.
    await rm(file);
    await open().close();
    await assert.rejects(stat(file), /ENOENT/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('greylisting leaves loopback and private clients alone; networks are /24 and /64', async () => {
  const g = createGreylist({ delayMs: 300_000 });
  for (const ip of ['127.0.0.1', '10.1.2.3', '192.168.0.9', '::1', 'fd00::5', '::ffff:10.0.0.1']) assert.deepEqual(await g.check(ip, 'a@b.example', 'c@d.example'), { pass: true }, ip);
  assert.equal((await g.check('198.51.100.7', 'a@b.example', 'c@d.example')).pass, false);
  assert.equal(greylistNetwork('198.51.100.7'), '198.51.100.0/24');
  assert.equal(greylistNetwork('::ffff:198.51.100.7'), '198.51.100.0/24');
  assert.equal(greylistNetwork('2001:db8:1:2:aaaa::1'), greylistNetwork('2001:db8:1:2:bbbb::9'));
  assert.notEqual(greylistNetwork('2001:db8:1:2::1'), greylistNetwork('2001:db8:1:3::1'));
});

test('[smtp] greylist_seconds: 0 by default, bounded, written back', async () => {
  assert.equal((await loadConfigText('')).smtp.greylistSeconds, 0);
  const c = await loadConfigText('[smtp]\ngreylist_seconds = 300\n');
  assert.equal(c.smtp.greylistSeconds, 300);
  assert.match(renderConfigFile(c), /^greylist_seconds = 300$/m);
  await assert.rejects(loadConfigText('[smtp]\ngreylist_seconds = 7200\n'), /greylist_seconds/);
  await assert.rejects(loadConfigText('[smtp]\ngreylist_seconds = 1.5\n'), /greylist_seconds/);
});

const viaBalancer = connectViaBalancer;

/** The replies to RCPT for each address, in one transaction from a client on the internet. */
async function rcpts(port: number, client: string, to: string[]): Promise<string[]> {
  const c = await viaBalancer(port, client);
  try {
    await c.expect(220);
    await c.cmd('EHLO mx.sender.example', 250);
    await c.cmd('MAIL FROM:<jane@sender.example>', 250);
    const out: string[] = [];
    for (const a of to) {
      const r = await c.cmd(`RCPT TO:<${a}>`);
      out.push(`${r.code} ${r.text}`);
    }
    return out;
  } finally {
    c.close();
  }
}

test('the port 25 listener made from the configuration greylists valid recipients only (no worker, one, two: one set of triplets, kept across a restart)', async () => {
  const ctx = await makeTestContext();
  await ctx.addUser('bob@example.com', 'pw-bob-123456');
  const config = defaultConfig('mail.example.test');
  config.smtp.greylistSeconds = 1;
  config.proxyProtocol.smtp = { trusted: ['127.0.0.0/8'] };
  try {
    for (const workers of [0, 1, 2]) {
      config.smtp.workers = workers;
      const server = LISTENER_FACTORIES.smtp!(ctx, config, { dataDir: ctx.dataDir, resolver: createMockResolver({}) })!;
      const port = await server.listen('127.0.0.1', 0);
      // One network each: the triplets of one run are kept for the next (its file).
      const client = ['192.0.2.10', '198.51.100.10', '203.0.113.10'][workers]!;
      try {
        const first = await rcpts(port, client, ['bob@example.com', 'nobody@example.com']);
        assert.match(first[0]!, /^451 4\.7\.1 Greylisted, please try again in 1 seconds$/, `workers = ${workers}`);
        assert.match(first[1]!, /^550 5\.1\.1 /, 'an unknown user is refused at once, not greylisted');
        await new Promise((resolve) => setTimeout(resolve, 1100));
        // Retries on several connections, which the kernel spreads over the worker processes:
        // each passes, whichever process saw the first attempt.
        for (let i = 0; i < 4; i++) assert.match((await rcpts(port, client, ['bob@example.com']))[0]!, /^250 /, `workers = ${workers}: retry ${i} passes`);
      } finally {
        await server.close(1000);
      }
      // Closed, the listener saved its triplets in the data directory: a new one knows the client.
      const again = LISTENER_FACTORIES.smtp!(ctx, config, { dataDir: ctx.dataDir, resolver: createMockResolver({}) })!;
      const port2 = await again.listen('127.0.0.1', 0);
      try {
        assert.match((await rcpts(port2, client, ['bob@example.com']))[0]!, /^250 /, `workers = ${workers}: known after a restart`);
        assert.match((await rcpts(port2, `93.184.${216 + workers}.34`, ['bob@example.com']))[0]!, /^451 4\.7\.1 /, 'another client still waits');
      } finally {
        await again.close(1000);
      }
    }
  } finally {
    await ctx.cleanup();
  }
});
