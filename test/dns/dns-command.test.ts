/**
 * `facteur dns DOMAIN` prints, in zone-file syntax, every record the domain needs; each one is
 * checked here record by record against the data directory (config, DKIM keys).
 */
import { strict as assert } from 'node:assert';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { renderMtaStsPolicy } from '../../src/http/client-config.js';
import { mtaStsId } from '../../src/dns/records.js';
import { loadDkimKeys, type DkimKey } from '../../src/msgauth/dkim-keys.js';
import { runCli } from '../helpers/cli.js';

interface ZoneLine { name: string; ttl: number; type: string; rdata: string }

function parseZone(text: string): ZoneLine[] {
  return text
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith(';'))
    .map((l) => {
      const m = /^(\S+)\t(\d+)\tIN\t([A-Z]+)\t(.*)$/.exec(l);
      assert.ok(m, `not a zone line: ${l}`);
      return { name: m[1]!, ttl: Number(m[2]), type: m[3]!, rdata: m[4]! };
    });
}

/** The character-strings of a TXT rdata ("a" "b" -> ['a', 'b']). */
function txtStrings(rdata: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"\s*/gy;
  let m: RegExpExecArray | null;
  let end = 0;
  while ((m = re.exec(rdata))) {
    out.push(m[1]!.replace(/\\(.)/g, '$1'));
    end = re.lastIndex;
  }
  assert.equal(end, rdata.length, `unparsed TXT data: ${rdata}`);
  return out;
}

const find = (zone: ZoneLine[], name: string, type: string) => zone.filter((z) => z.name === name && z.type === type);

let dir: string;
let keys: DkimKey[];

before(async () => {
  dir = join(await mkdtemp(join(tmpdir(), 'facteur-dns-')), 'data');
  assert.equal((await runCli(['init', '--domain', 'example.test', '--data', dir])).code, 0);
  // init created the domain's first keys.
  keys = await loadDkimKeys(dir, 'example.test');
});

test('facteur dns prints MX, A/AAAA, one SPF, DKIM per selector, DMARC, MTA-STS, TLS-RPT, SRV, CNAMEs and PTR records', async () => {
  const r = await runCli(['dns', 'example.test', '--ip', '192.0.2.25', '--ip', '2001:db8::1:25', '--data', dir]);
  assert.equal(r.code, 0, r.stderr);
  const zone = parseZone(r.stdout);
  for (const z of zone) assert.equal(z.ttl, 3600);

  assert.deepEqual(find(zone, 'example.test.', 'MX').map((z) => z.rdata), ['10 mail.example.test.']);
  assert.deepEqual(find(zone, 'mail.example.test.', 'A').map((z) => z.rdata), ['192.0.2.25']);
  assert.deepEqual(find(zone, 'mail.example.test.', 'AAAA').map((z) => z.rdata), ['2001:db8::1:25']);

  // Exactly one SPF record for the domain (RFC 7208 §4.5), naming both addresses.
  const spf = find(zone, 'example.test.', 'TXT').map((z) => txtStrings(z.rdata).join('')).filter((v) => v.startsWith('v=spf1'));
  assert.deepEqual(spf, ['v=spf1 ip4:192.0.2.25 ip6:2001:db8::1:25 -all']);
  assert.deepEqual(find(zone, 'mail.example.test.', 'TXT').map((z) => txtStrings(z.rdata).join('')), ['v=spf1 ip4:192.0.2.25 ip6:2001:db8::1:25 -all']);

  // DKIM: one record per key, publishing that key's public half; long values split at 255.
  assert.equal(keys.length, 2);
  for (const key of keys) {
    const lines = find(zone, `${key.selector}._domainkey.example.test.`, 'TXT');
    assert.equal(lines.length, 1, key.selector);
    const strings = txtStrings(lines[0]!.rdata);
    for (const s of strings) assert.ok(s.length <= 255);
    const value = strings.join('');
    const p = /(?:^|;\s*)p=([A-Za-z0-9+/=]+)/.exec(value)?.[1];
    assert.ok(p, value);
    const pub = createPublicKey(createPrivateKey(key.privateKeyPem)).export({ type: 'spki', format: 'der' });
    if (key.algorithm === 'rsa') {
      assert.match(value, /^v=DKIM1; k=rsa; p=/);
      assert.ok(strings.length > 1, 'a 2048-bit RSA key needs more than one string');
      assert.deepEqual(Buffer.from(p, 'base64'), pub);
    } else {
      assert.match(value, /^v=DKIM1; k=ed25519; p=/);
      assert.deepEqual(Buffer.from(p, 'base64'), pub.subarray(pub.length - 32));
    }
  }

  const dmarc = find(zone, '_dmarc.example.test.', 'TXT').map((z) => txtStrings(z.rdata).join(''));
  assert.equal(dmarc.length, 1);
  assert.match(dmarc[0]!, /^v=DMARC1; p=(quarantine|reject); rua=mailto:postmaster@example\.test$/);

  // The MTA-STS id is derived from the policy the https listener serves (RFC 8461 §3.1).
  const sts = find(zone, '_mta-sts.example.test.', 'TXT').map((z) => txtStrings(z.rdata).join(''));
  const policy = renderMtaStsPolicy({ mode: 'testing', mx: ['mail.example.test'], maxAge: 604800 });
  assert.deepEqual(sts, [`v=STSv1; id=${mtaStsId(policy)}`]);
  assert.match(mtaStsId(policy), /^[A-Za-z0-9]{1,32}$/);
  assert.deepEqual(find(zone, 'mta-sts.example.test.', 'CNAME').map((z) => z.rdata), ['mail.example.test.']);
  assert.deepEqual(find(zone, '_smtp._tls.example.test.', 'TXT').map((z) => txtStrings(z.rdata).join('')), ['v=TLSRPTv1; rua=mailto:postmaster@example.test']);

  // RFC 6186 / RFC 8314 SRV records: implicit TLS preferred, IMAP before POP3.
  const srv = (s: string) => find(zone, `${s}.example.test.`, 'SRV').map((z) => z.rdata);
  assert.deepEqual(srv('_submissions._tcp'), ['0 1 465 mail.example.test.']);
  assert.deepEqual(srv('_submission._tcp'), ['10 1 587 mail.example.test.']);
  assert.deepEqual(srv('_imaps._tcp'), ['0 1 993 mail.example.test.']);
  assert.deepEqual(srv('_imap._tcp'), ['10 1 143 mail.example.test.']);
  assert.deepEqual(srv('_pop3s._tcp'), ['20 1 995 mail.example.test.']);
  assert.deepEqual(srv('_pop3._tcp'), ['30 1 110 mail.example.test.']);

  assert.deepEqual(find(zone, 'autoconfig.example.test.', 'CNAME').map((z) => z.rdata), ['mail.example.test.']);
  assert.deepEqual(find(zone, 'autodiscover.example.test.', 'CNAME').map((z) => z.rdata), ['mail.example.test.']);
  assert.deepEqual(srv('_autodiscover._tcp'), ['0 1 443 mail.example.test.']);
  assert.deepEqual(find(zone, 'ua-auto-config.example.test.', 'CNAME').map((z) => z.rdata), ['mail.example.test.']);
  const pacc = find(zone, '_ua-auto-config.example.test.', 'TXT').map((z) => txtStrings(z.rdata).join(''));
  assert.equal(pacc.length, 1);
  assert.match(pacc[0]!, /^v=UAAC1; a=sha256; d=[A-Za-z0-9+/]{43}=$/);

  // Reverse names: RFC 1035 §3.5 for IPv4, RFC 3596 §2.5 (32 nibbles) for IPv6.
  assert.deepEqual(find(zone, '25.2.0.192.in-addr.arpa.', 'PTR').map((z) => z.rdata), ['mail.example.test.']);
  const v6 = zone.filter((z) => z.type === 'PTR' && z.name.endsWith('.ip6.arpa.'));
  assert.equal(v6.length, 1);
  assert.equal(v6[0]!.name, '5.2.0.0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.');
  assert.equal(v6[0]!.rdata, 'mail.example.test.');

  // Nothing else: every line is one of the above.
  assert.equal(zone.length, 1 + 1 + 1 + 2 + 2 + 1 + 1 + 1 + 1 + 6 + 2 + 1 + 2 + 2);
});

test('services without a listener get SRV target "." and the addresses come from public_ips when no --ip is given', async () => {
  const conf = join(dir, 'facteur.toml');
  const original = await readFile(conf, 'utf8');
  try {
    const edited = original
      .replace(/^public_ips = \[\]$/m, 'public_ips = ["198.51.100.7"]')
      .replace(/^pop3 = .*$/m, 'pop3 = false')
      .replace(/^pop3s = .*$/m, 'pop3s = false');
    assert.notEqual(edited, original);
    await writeFile(conf, edited);
    const r = await runCli(['dns', 'Example.Test', '--data', dir]);
    assert.equal(r.code, 0, r.stderr);
    const zone = parseZone(r.stdout);
    assert.deepEqual(find(zone, '_pop3._tcp.example.test.', 'SRV').map((z) => z.rdata), ['0 0 0 .']);
    assert.deepEqual(find(zone, '_pop3s._tcp.example.test.', 'SRV').map((z) => z.rdata), ['0 0 0 .']);
    assert.deepEqual(find(zone, '_imaps._tcp.example.test.', 'SRV').map((z) => z.rdata), ['0 1 993 mail.example.test.']);
    assert.deepEqual(find(zone, 'mail.example.test.', 'A').map((z) => z.rdata), ['198.51.100.7']);
    assert.deepEqual(find(zone, '7.100.51.198.in-addr.arpa.', 'PTR').map((z) => z.rdata), ['mail.example.test.']);
  } finally {
    await writeFile(conf, original);
  }
});

test('facteur dns without any address warns and leaves out A and PTR; a bad address or domain is refused', async () => {
  const r = await runCli(['dns', 'example.test', '--data', dir]);
  assert.equal(r.code, 0);
  assert.match(r.stderr, /no address/);
  assert.doesNotMatch(r.stderr, /no DKIM key/);
  const otherDomain = await runCli(['dns', 'other.test', '--ip', '192.0.2.1', '--data', dir]);
  assert.equal(otherDomain.code, 0);
  assert.match(otherDomain.stderr, /no DKIM key for other\.test/);
  const zone = parseZone(r.stdout);
  assert.equal(zone.filter((z) => z.type === 'A' || z.type === 'AAAA' || z.type === 'PTR').length, 0);
  assert.deepEqual(find(zone, 'example.test.', 'TXT').map((z) => txtStrings(z.rdata).join('')), ['v=spf1 mx -all']);
  const bad = await runCli(['dns', 'example.test', '--ip', '300.1.1.1', '--data', dir]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /Invalid IP address: 300\.1\.1\.1/);
  const badDomain = await runCli(['dns', '../etc', '--data', dir]);
  assert.equal(badDomain.code, 1);
  assert.match(badDomain.stderr, /Invalid domain name/);
  assert.equal((await runCli(['dns', '--data', dir])).code, 2);
});
