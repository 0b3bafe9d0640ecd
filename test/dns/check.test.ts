/**
 * `facteur check`: every record, reverse DNS, certificate and blocklist judged OK, missing or
 * wrong against an in-memory DNS zone (no real DNS is contacted).
 */
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { promisify } from 'node:util';
import { runCli } from '../helpers/cli.js';
import { runCheck } from '../../src/cli/dns.js';
import { checkDomain, hasProblems, renderReport, type CheckResult } from '../../src/dns/check.js';
import { requiredRecords, type DnsRecord } from '../../src/dns/records.js';
import { loadConfig, type ListenerName } from '../../src/config/config.js';
import { generateDkimKeys, loadDkimKeys, type DkimKey } from '../../src/msgauth/dkim-keys.js';
import { addTo, emptyZone, mockResolver, zoneOf } from './mock-resolver.js';

const run = promisify(execFile);
const DOMAIN = 'example.test';
const HOST = 'mail.example.test';
const IPS = ['192.0.2.25', '2001:db8::25'];
const NOW = new Date();

/** A self-signed certificate for the given names, valid for `days`. */
async function certificate(names: string[], days: number): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'facteur-cert-'));
  await run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem'), '-days', String(days),
    '-subj', `/CN=${names[0]}`, '-addext', `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`,
  ]);
  return readFile(join(dir, 'c.pem'), 'utf8');
}

const LISTEN: Partial<Record<ListenerName, string>> = {
  smtp: '0.0.0.0:25', submission: '0.0.0.0:587', submissions: '0.0.0.0:465', imap: '0.0.0.0:143', imaps: '0.0.0.0:993', https: '0.0.0.0:443',
};

let keys: DkimKey[];
let otherKeys: DkimKey[];
let records: DnsRecord[];
let goodCert: string;

before(async () => {
  const dir = await mkdtemp(join(tmpdir(), 'facteur-check-'));
  keys = await generateDkimKeys(dir, DOMAIN, { rsaBits: 1024 });
  otherKeys = await generateDkimKeys(join(dir, 'other'), DOMAIN, { rsaBits: 1024 });
  records = requiredRecords({ domain: DOMAIN, hostname: HOST, ips: IPS, listen: LISTEN, dkimKeys: keys, mtaSts: { mode: 'testing', maxAge: 86400 } });
  goodCert = await certificate([HOST, `mta-sts.${DOMAIN}`], 90);
});

const byStatus = (results: CheckResult[], status: CheckResult['status']) => results.filter((r) => r.status === status).map((r) => r.subject);
const one = (results: CheckResult[], subject: string) => {
  const found = results.filter((r) => r.subject === subject);
  assert.equal(found.length, 1, `${subject}: ${JSON.stringify(results.map((r) => r.subject))}`);
  return found[0]!;
};

test('with every record published as facteur dns prints it, every check is OK and the DNSBLs are asked by reversed address', async () => {
  const resolver = mockResolver(zoneOf(records));
  const results = await checkDomain({ domain: DOMAIN, hostname: HOST, ips: IPS, records, resolver, certificatePem: goodCert });
  assert.deepEqual(byStatus(results, 'missing'), []);
  assert.deepEqual(byStatus(results, 'wrong'), []);
  assert.deepEqual(byStatus(results, 'error'), []);
  // The test certificate is self-signed: said, but not counted as a problem.
  assert.deepEqual(byStatus(results, 'warn'), [`certificate ${HOST} issuer`]);
  assert.equal(hasProblems(results), false);
  assert.match(renderReport(results), /everything checked is in order\n$/);
  assert.match(one(results, 'PTR 192.0.2.25').detail, /forward-confirmed/);
  assert.match(one(results, 'PTR 2001:db8::25').detail, /forward-confirmed/);
  assert.equal(one(results, 'SRV _pop3._tcp.example.test').detail, 'not offered (target ".")');
  for (const q of ['A 25.2.0.192.zen.spamhaus.org', 'A 25.2.0.192.bl.spamcop.net', 'A 25.2.0.192.b.barracudacentral.org', 'A 5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.spamhaus.org']) {
    assert.ok(resolver.queries.includes(q), q);
  }
  // IPv6 goes only to lists that take IPv6.
  const v6Lists = resolver.queries.filter((q) => q.startsWith('A ') && q.includes('.8.b.d.0.1.0.0.2.'));
  assert.deepEqual(v6Lists, ['A 5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.spamhaus.org']);
});

test('with nothing published, each record is MISSING with the zone line to add, and the exit status is a failure', async () => {
  const results = await checkDomain({ domain: DOMAIN, hostname: HOST, ips: IPS, records, resolver: mockResolver(emptyZone()), certificatePem: null, now: NOW });
  const mx = one(results, `MX ${DOMAIN}`);
  assert.equal(mx.status, 'missing');
  assert.equal(mx.fix, `add: ${DOMAIN}.\t3600\tIN\tMX\t10 ${HOST}.`);
  assert.equal(one(results, `TXT _dmarc.${DOMAIN}`).status, 'missing');
  assert.equal(one(results, `SRV _imaps._tcp.${DOMAIN}`).fix, `add: _imaps._tcp.${DOMAIN}.\t3600\tIN\tSRV\t0 1 993 ${HOST}.`);
  assert.equal(one(results, `SRV _pop3._tcp.${DOMAIN}`).fix, `add: _pop3._tcp.${DOMAIN}.\t3600\tIN\tSRV\t0 0 0 .`);
  const ptr = one(results, 'PTR 192.0.2.25');
  assert.equal(ptr.status, 'missing');
  assert.match(ptr.fix!, /ask the provider of 192\.0\.2\.25 to set: 25\.2\.0\.192\.in-addr\.arpa\.\t3600\tIN\tPTR\tmail\.example\.test\./);
  assert.equal(one(results, `certificate ${HOST}`).status, 'missing');
  for (const r of results.filter((x) => x.subject.includes('spamhaus') || x.subject.includes('spamcop') || x.subject.includes('barracuda'))) {
    assert.equal(r.status, 'ok', r.subject);
    assert.equal(r.detail, 'not listed');
  }
  // Every expected DNS record was reported missing.
  const dnsResults = results.filter((r) => /^(MX|A|AAAA|TXT|CNAME|SRV) /.test(r.subject));
  assert.ok(dnsResults.length >= 18);
  assert.ok(dnsResults.every((r) => r.status === 'missing'), JSON.stringify(dnsResults.filter((r) => r.status !== 'missing')));
  assert.equal(hasProblems(results), true);
  const report = renderReport(results);
  assert.match(report, /^MISSING  MX example\.test: not published\n {9}fix: add: example\.test\.\t3600\tIN\tMX\t10 mail\.example\.test\.$/m);
  assert.match(report, /\d+ problem\(s\)\n$/);
});

test('wrong records are reported WRONG with the reason and the fix', async () => {
  const z = zoneOf(records);
  z.mx.set(DOMAIN, [{ exchange: 'mx.elsewhere.example', priority: 10 }]);
  addTo(z.txt, DOMAIN, 'v=spf1 include:_spf.elsewhere.example -all'); // a second SPF record
  z.txt.set(HOST, ['v=spf1 ip4:192.0.2.0/24 -all']); // does not cover the IPv6 address
  const rsa = keys.find((k) => k.algorithm === 'rsa')!;
  const otherRsa = otherKeys.find((k) => k.algorithm === 'rsa')!;
  const dkimName = `${rsa.selector}._domainkey.${DOMAIN}`;
  z.txt.set(dkimName, [records.find((r) => r.kind === 'dkim' && r.name === dkimName)!.value.replace(/p=.*$/, '') + `p=${requiredRecords({ domain: DOMAIN, hostname: HOST, ips: [], listen: {}, dkimKeys: [otherRsa], mtaSts: { mode: 'testing', maxAge: 1 } }).find((r) => r.kind === 'dkim')!.value.split('p=')[1]}`]);
  z.txt.set(`_dmarc.${DOMAIN}`, ['v=DMARC1; p=none']);
  z.txt.set(`_mta-sts.${DOMAIN}`, ['v=STSv1; id=not-valid!']);
  z.srv.set(`_imaps._tcp.${DOMAIN}`, [{ name: HOST, port: 143, priority: 0, weight: 1 }]);
  z.srv.set(`_pop3._tcp.${DOMAIN}`, [{ name: HOST, port: 110, priority: 30, weight: 1 }]);
  z.cname.delete(`autoconfig.${DOMAIN}`);
  z.a.set(`autoconfig.${DOMAIN}`, ['203.0.113.9']);
  z.cname.delete(`autodiscover.${DOMAIN}`);
  z.a.set(`autodiscover.${DOMAIN}`, ['192.0.2.25']); // same address as the host: fine
  z.ptr.set('25.2.0.192.in-addr.arpa', ['host-25.isp.example']);
  z.aaaa.set(HOST, ['2001:db8::99']); // the IPv6 PTR names the host, which does not resolve back
  z.a.set('25.2.0.192.zen.spamhaus.org', ['127.0.0.2', '127.0.0.4']);
  z.fail.set('25.2.0.192.bl.spamcop.net', 'ESERVFAIL');
  z.a.set('5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.spamhaus.org', ['127.255.255.254']);
  const expiring = await certificate(['other.example'], 5);
  const results = await checkDomain({ domain: DOMAIN, hostname: HOST, ips: IPS, records, resolver: mockResolver(z), certificatePem: expiring });

  const expect = (subject: string, status: CheckResult['status'], detail: RegExp) => {
    const r = one(results, subject);
    assert.equal(r.status, status, `${subject}: ${r.detail}`);
    assert.match(r.detail, detail, subject);
    if (status === 'wrong') assert.ok(r.fix, `${subject} has a fix`);
  };
  expect(`MX ${DOMAIN}`, 'wrong', /MX is mx\.elsewhere\.example, not mail\.example\.test/);
  expect(`TXT ${DOMAIN}`, 'wrong', /2 SPF records \(RFC 7208 §4\.5/);
  expect(`TXT ${HOST}`, 'wrong', /does not authorize 2001:db8::25/);
  expect(`TXT ${dkimName}`, 'wrong', /not the one in the data directory/);
  expect(`TXT _dmarc.${DOMAIN}`, 'wrong', /no rua=/);
  expect(`TXT _mta-sts.${DOMAIN}`, 'wrong', /id "not-valid!"/);
  expect(`SRV _imaps._tcp.${DOMAIN}`, 'wrong', /points to mail\.example\.test:143, not mail\.example\.test:993/);
  expect(`SRV _pop3._tcp.${DOMAIN}`, 'wrong', /a service this server does not run/);
  expect(`CNAME autoconfig.${DOMAIN}`, 'wrong', /203\.0\.113\.9 is not this server/);
  expect(`CNAME autodiscover.${DOMAIN}`, 'ok', /the host's addresses/);
  expect('PTR 192.0.2.25', 'wrong', /reverse DNS is host-25\.isp\.example, not mail\.example\.test/);
  expect('PTR 2001:db8::25', 'wrong', /does not resolve back to 2001:db8::25/);
  expect(`AAAA ${HOST}`, 'wrong', /has 2001:db8::99, not 2001:db8::25/);
  expect('zen.spamhaus.org 192.0.2.25', 'wrong', /listed \(127\.0\.0\.2, 127\.0\.0\.4\)/);
  expect('bl.spamcop.net 192.0.2.25', 'error', /ESERVFAIL/);
  expect('b.barracudacentral.org 192.0.2.25', 'ok', /not listed/);
  expect('zen.spamhaus.org 2001:db8::25', 'error', /refused the query/);
  expect(`certificate ${HOST}`, 'wrong', /does not name mail\.example\.test/);
  expect(`certificate mta-sts.${DOMAIN}`, 'wrong', /senders cannot fetch the MTA-STS policy/);
  expect(`certificate ${HOST} validity`, 'wrong', /expires in [45] day\(s\)/);
  // The records left alone are still OK.
  expect(`TXT _smtp._tls.${DOMAIN}`, 'ok', /v=TLSRPTv1/);
  expect(`SRV _submissions._tcp.${DOMAIN}`, 'ok', /mail\.example\.test:465/);
  assert.equal(hasProblems(results), true);
});

test('runCheck reads the data directory (config, DKIM keys, certificate) and reports a problem when the certificate does not name mta-sts', async () => {
  const dir = join(await mkdtemp(join(tmpdir(), 'facteur-check-cli-')), 'data');
  assert.equal((await runCli(['init', '--domain', DOMAIN, '--data', dir])).code, 0);
  const dataKeys = await loadDkimKeys(dir, DOMAIN); // created by init
  const { listen } = await loadConfig(join(dir, 'facteur.toml'));
  const expected = requiredRecords({ domain: DOMAIN, hostname: HOST, ips: ['192.0.2.25'], listen, dkimKeys: dataKeys, mtaSts: { mode: 'testing', maxAge: 604800 } });
  const { report, problems } = await runCheck(dir, DOMAIN, ['192.0.2.25'], [], mockResolver(zoneOf(expected)));
  assert.equal(problems, true);
  assert.match(report, /^OK       MX example\.test: mail\.example\.test \(priority 10\)$/m);
  assert.match(report, /^OK       TXT f\d{8}r\._domainkey\.example\.test: the published key is the selector's key$/m);
  assert.match(report, /^OK       certificate mail\.example\.test: names mail\.example\.test$/m);
  assert.match(report, /^WRONG    certificate mta-sts\.example\.test: does not name mta-sts\.example\.test/m);
  assert.match(report, /^1 problem\(s\)$/m);
});
