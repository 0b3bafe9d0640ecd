/**
 * DNS blocklists on port 25 (RFC 5782; src/smtp/server/dnsbl.ts): the query names, what counts
 * as a listing (and what is a list's own error), failing open, the addresses never looked up,
 * answers kept per address; then a listed client behind a PROXY-protocol balancer refused at MAIL
 * with 554 5.7.1 naming the list and its reason, in this process and in an SMTP worker process;
 * and the `[smtp] dnsbl` configuration.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { defaultConfig, renderConfigFile } from '../../src/config/config.js';
import { LISTENER_FACTORIES } from '../../src/listeners.js';
import type { Resolver } from '../../src/dns/resolver.js';
import { createDnsblChecker, dnsblQueryName } from '../../src/smtp/server/dnsbl.js';
import { createSmtpWorkers } from '../../src/smtp/worker/pool.js';
import { loadConfigText } from '../helpers/config.js';
import { makeTestContext } from '../helpers/context.js';
import { mxWorkerOptions, startServer } from './harness.js';
import { createMockResolver } from './mock-dns.js';
import { connectViaBalancer } from './wire.js';

const LISTED = '192.0.2.99';
const CLEAN = '192.0.2.100';

/** bl.test lists LISTED (with a reason), other.test lists it too, down.test fails, quota.test
 * answers with Spamhaus's "open resolver" code. */
function listResolver(): Resolver & { queries: string[] } {
  const mock = createMockResolver({
    a: {
      [dnsblQueryName(LISTED, 'bl.test')]: ['127.0.0.2'],
      [dnsblQueryName(LISTED, 'other.test')]: ['127.0.0.4'],
      [dnsblQueryName(LISTED, 'quota.test')]: ['127.255.255.254'],
      [dnsblQueryName(LISTED, 'one.test')]: ['127.0.0.1'],
      [dnsblQueryName('2001:db8::99', 'bl.test')]: ['127.0.0.3'],
    },
    txt: { [dnsblQueryName(LISTED, 'bl.test')]: 'Listed for spam; see https://bl.test/q?ip=192.0.2.99\u0007' },
  });
  return {
    ...mock,
    queries: mock.queries,
    async resolve4(name) {
      if (name.endsWith('.down.test')) {
        mock.queries.push(`A ${name}`);
        throw Object.assign(new Error(`queryA ESERVFAIL ${name}`), { code: 'ESERVFAIL' });
      }
      return mock.resolve4(name);
    },
  };
}

test('query names: reversed octets, or reversed nibbles for IPv6, under the zone', () => {
  assert.equal(dnsblQueryName('192.0.2.99', 'bl.test'), '99.2.0.192.bl.test');
  assert.equal(dnsblQueryName('2001:db8::1', 'bl.test'), `1.${'0.'.repeat(23)}8.b.d.0.1.0.0.2.bl.test`);
});

test('a listing is 127.0.0.2 and up with its TXT reason; errors, 127.0.0.1 and 127.255.255.x list nobody', async () => {
  const resolver = listResolver();
  const errors: string[] = [];
  const check = (zones: string[]) => createDnsblChecker({ zones, resolver, onError: (zone) => errors.push(zone) });
  const v = await check(['bl.test']).check(LISTED);
  assert.deepEqual(v, { listed: true, zone: 'bl.test', code: '127.0.0.2', reason: 'Listed for spam; see https://bl.test/q?ip=192.0.2.99' });
  assert.deepEqual(await check(['bl.test']).check(CLEAN), { listed: false });
  assert.deepEqual(await check(['down.test']).check(LISTED), { listed: false }, 'a list that fails lets mail through');
  assert.deepEqual(await check(['quota.test']).check(LISTED), { listed: false }, "a list's error code is no listing");
  assert.deepEqual(await check(['one.test']).check(LISTED), { listed: false });
  assert.deepEqual(errors, ['down.test', 'quota.test'], 'failures are told; NXDOMAIN (not listed) is not');
  // Several lists: asked at once, the first in the configured order that lists speaks.
  const both = await check(['other.test', 'bl.test']).check(LISTED);
  assert.equal(both.listed && both.zone, 'other.test');
  assert.equal(both.listed && both.reason, null, 'no TXT record: no reason');
  // IPv6, and an IPv4-mapped address as its IPv4 address.
  assert.equal((await check(['bl.test']).check('2001:db8::99')).listed, true);
  assert.equal((await check(['bl.test']).check(`::ffff:${LISTED}`)).listed, true);
});

test('a list that does not answer within the timeout lists nobody, and is told', async () => {
  const errors: string[] = [];
  const silent: Resolver = { ...listResolver(), resolve4: () => new Promise<string[]>(() => {}) };
  const dnsbl = createDnsblChecker({ zones: ['bl.test'], resolver: silent, timeoutMs: 50, onError: (zone, _ip, err) => errors.push(`${zone}: ${(err as Error).message}`) });
  const started = performance.now();
  assert.deepEqual(await dnsbl.check(LISTED), { listed: false });
  assert.ok(performance.now() - started < 1000);
  assert.deepEqual(errors, ['bl.test: bl.test did not answer within 50 ms']);
});

test('loopback, private, link-local and unique-local clients are not looked up; answers are kept per address', async () => {
  const resolver = listResolver();
  let now = 1_000_000;
  const dnsbl = createDnsblChecker({ zones: ['bl.test'], resolver, ttlMs: 60_000, now: () => now });
  for (const ip of ['127.0.0.1', '::1', '10.1.2.3', '172.16.0.9', '192.168.1.1', '169.254.1.1', 'fe80::1', 'fd00::1', '100.64.0.1', 'not-an-ip']) {
    assert.deepEqual(await dnsbl.check(ip), { listed: false }, ip);
  }
  assert.deepEqual(resolver.queries, []);
  await dnsbl.check(LISTED);
  const asked = resolver.queries.length;
  await Promise.all([dnsbl.check(LISTED), dnsbl.check(LISTED)]);
  assert.equal(resolver.queries.length, asked, 'kept: no new lookup');
  now += 60_001;
  await dnsbl.check(LISTED);
  assert.ok(resolver.queries.length > asked, 'asked again once the answer expired');
});

const viaBalancer = connectViaBalancer;

async function mailFrom(port: number, client: string): Promise<{ code: number; text: string }> {
  const c = await viaBalancer(port, client);
  try {
    await c.expect(220);
    await c.cmd('EHLO mx.sender.example', 250);
    return await c.cmd('MAIL FROM:<alice@sender.example>');
  } finally {
    c.close();
  }
}

test('port 25: a listed client is refused at MAIL with 554 5.7.1 naming the list and its reason; others are served', async () => {
  const resolver = listResolver();
  const h = await startServer({ resolver, dnsbl: ['bl.test'], proxyProtocol: { trusted: ['127.0.0.0/8'] } });
  try {
    const refused = await mailFrom(h.port, LISTED);
    assert.equal(refused.code, 554);
    assert.equal(refused.text, `5.7.1 Client host [${LISTED}] blocked using bl.test: Listed for spam; see https://bl.test/q?ip=192.0.2.99`);
    assert.equal((await mailFrom(h.port, CLEAN)).code, 250);
  } finally {
    await h.close();
  }
});

test('port 25 in an SMTP worker process: the lists are asked through the owner', async () => {
  const ctx = await makeTestContext();
  const resolver = listResolver();
  const server = createSmtpWorkers(ctx, mxWorkerOptions({ resolver, dnsbl: ['bl.test'], proxyProtocol: { trusted: ['127.0.0.0/8'] } }));
  const port = await server.listen('127.0.0.1', 0);
  try {
    const refused = await mailFrom(port, LISTED);
    assert.equal(refused.code, 554);
    assert.match(refused.text, /^5\.7\.1 Client host \[192\.0\.2\.99\] blocked using bl\.test: Listed for spam/);
    assert.equal((await mailFrom(port, CLEAN)).code, 250);
    assert.ok(resolver.queries.includes(`A ${dnsblQueryName(LISTED, 'bl.test')}`));
  } finally {
    await server.close(1000);
    await ctx.cleanup();
  }
});

test('[smtp] dnsbl: zones lowercased without the final dot, bad names refused, written back', async () => {
  const c = await loadConfigText('[smtp]\ndnsbl = ["Zen.Spamhaus.ORG.", "bl.spamcop.net"]\n');
  assert.deepEqual(c.smtp.dnsbl, ['zen.spamhaus.org', 'bl.spamcop.net']);
  assert.deepEqual((await loadConfigText('')).smtp.dnsbl, []);
  await assert.rejects(loadConfigText('[smtp]\ndnsbl = ["not a zone"]\n'), /dnsbl/);
  await assert.rejects(loadConfigText('[smtp]\ndnsbl = ["localhost"]\n'), /dnsbl/);
  assert.match(renderConfigFile(c), /^dnsbl = \["zen\.spamhaus\.org", "bl\.spamcop\.net"\]$/m);
});

test('the port 25 listener made from the configuration asks its lists (worker process and not)', async () => {
  const ctx = await makeTestContext();
  const config = defaultConfig('mail.example.test');
  config.smtp.dnsbl = ['bl.test'];
  config.proxyProtocol.smtp = { trusted: ['127.0.0.0/8'] };
  try {
    for (const workers of [0, 1]) {
      config.smtp.workers = workers;
      const server = LISTENER_FACTORIES.smtp!(ctx, config, { dataDir: ctx.dataDir, resolver: listResolver() })!;
      const port = await server.listen('127.0.0.1', 0);
      try {
        assert.equal((await mailFrom(port, LISTED)).code, 554, `workers = ${workers}`);
        assert.equal((await mailFrom(port, CLEAN)).code, 250, `workers = ${workers}`);
      } finally {
        await server.close(1000);
      }
    }
  } finally {
    await ctx.cleanup();
  }
});
