/**
 * `facteur check DOMAIN --dns HOST:PORT` run as a command against a local DNS server answering
 * from an in-memory zone: exit 0 when everything is published, 1 with the fix when not.
 */
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { domainSetup } from '../../src/cli/dns.js';
import { runCli } from '../helpers/cli.js';
import { zoneOf } from './mock-resolver.js';
import { startDnsServer } from './udp-dns-server.js';

const run = promisify(execFile);

test('facteur check exits 0 when every record is published and 1, naming the missing record and its fix, when one is not', async (t) => {
  const dir = join(await mkdtemp(join(tmpdir(), 'facteur-check-cmd-')), 'data');
  assert.equal((await runCli(['init', '--domain', 'example.test', '--data', dir])).code, 0);
  const conf = join(dir, 'facteur.toml');
  await writeFile(conf, (await readFile(conf, 'utf8')).replace(/^public_ips = \[\]$/m, 'public_ips = ["192.0.2.25", "2001:db8::25"]'));
  // A certificate naming the host and mta-sts.DOMAIN, in place of the single-name one from init.
  await run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', join(dir, 'tls', 'mail.example.test.key'), '-out', join(dir, 'tls', 'mail.example.test.crt'), '-days', '90',
    '-subj', '/CN=mail.example.test', '-addext', 'subjectAltName=DNS:mail.example.test,DNS:mta-sts.example.test',
  ]);

  const { records } = await domainSetup(dir, 'example.test', []);
  const zone = zoneOf(records);
  const dns = await startDnsServer(zone);
  t.after(() => dns.close());

  const good = await runCli(['check', 'example.test', '--dns', `127.0.0.1:${dns.port}`, '--data', dir]);
  assert.equal(good.code, 0, good.stdout + good.stderr);
  assert.match(good.stdout, /^OK       MX example\.test: mail\.example\.test \(priority 10\)$/m);
  assert.match(good.stdout, /^OK       PTR 2001:db8::25: mail\.example\.test, which resolves back to 2001:db8::25 \(forward-confirmed\)$/m);
  assert.match(good.stdout, /^OK       zen\.spamhaus\.org 192\.0\.2\.25: not listed$/m);
  assert.match(good.stdout, /^WARNING  certificate mail\.example\.test issuer: self-signed/m);
  assert.match(good.stdout, /everything checked is in order\n$/);
  assert.doesNotMatch(good.stdout, /^(MISSING|WRONG|ERROR)/m);

  zone.txt.delete('_dmarc.example.test');
  zone.mx.set('example.test', [{ exchange: 'mx.elsewhere.example', priority: 5 }]);
  const bad = await runCli(['check', 'example.test', '--dns', `127.0.0.1:${dns.port}`, '--data', dir]);
  assert.equal(bad.code, 1);
  assert.match(bad.stdout, /^MISSING  TXT _dmarc\.example\.test: not published\n {9}fix: add: _dmarc\.example\.test\.\t3600\tIN\tTXT\t"v=DMARC1; p=quarantine; rua=mailto:postmaster@example\.test"$/m);
  assert.match(bad.stdout, /^WRONG    MX example\.test: MX is mx\.elsewhere\.example, not mail\.example\.test\n {9}fix: publish instead: example\.test\.\t3600\tIN\tMX\t10 mail\.example\.test\.$/m);
  assert.match(bad.stdout, /^2 problem\(s\)$/m);
});
