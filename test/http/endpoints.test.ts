/**
 * The http listener answers the requests real clients send: Thunderbird's autoconfig GET,
 * Outlook's POX POST and JSON v2 GET, the iOS profile download, PACC, MTA-STS, health and
 * metrics; and every malformed or oversized request gets the right status.
 */
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { after, before, test } from 'node:test';
import type { Config } from '../../src/config/config.js';
import type { ListeningServer } from '../../src/context.js';
import { meteredAuthenticator } from '../../src/auth/metered.js';
import { createHttpServer } from '../../src/http/server.js';
import { requiredRecords } from '../../src/dns/records.js';
import { createMetrics } from '../../src/lib/metrics.js';
import { makeTestContext, type TestContext } from '../helpers/context.js';
import { httpRequest, parsePlist, parseXml, rawExchange } from './helpers.js';

const CONFIG: Pick<Config, 'hostname' | 'listen' | 'mtaSts'> = {
  hostname: 'mail.example.test',
  listen: {
    smtp: '0.0.0.0:25', imap: '0.0.0.0:143', imaps: '0.0.0.0:993', pop3: '0.0.0.0:110', pop3s: '0.0.0.0:995',
    submission: '0.0.0.0:587', submissions: '0.0.0.0:465', http: '0.0.0.0:80', https: '0.0.0.0:443',
  },
  mtaSts: { mode: 'testing', maxAge: 86400 },
};

let ctx: TestContext;
let server: ListeningServer;
let port: number;

before(async () => {
  ctx = await makeTestContext();
  ctx.metrics = createMetrics();
  ctx.auth = meteredAuthenticator(ctx.auth, ctx.metrics);
  await ctx.addUser('ann@example.test', 'correct horse battery');
  await ctx.store.addDomain('other.test');
  server = createHttpServer(ctx, { name: 'http', implicitTls: false, config: CONFIG, limits: { headersTimeoutMs: 500, requestTimeoutMs: 1000 } });
  port = await server.listen('127.0.0.1', 0);
});

after(async () => {
  await server.close(0);
  await ctx.cleanup();
});

const OUTLOOK_REQUEST = (address: string) =>
  '<?xml version="1.0" encoding="utf-8"?>\r\n' +
  '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">\r\n' +
  `  <Request>\r\n    <EMailAddress>${address}</EMailAddress>\r\n` +
  '    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>\r\n' +
  '  </Request>\r\n</Autodiscover>\r\n';

test('Thunderbird autoconfig with emailaddress lists IMAP, POP3 and SMTP servers, implicit TLS first, user name the full address', async () => {
  const r = await httpRequest(port, '/mail/config-v1.1.xml?emailaddress=ann%40example.test', { headers: { 'User-Agent': 'Thunderbird/128.0' } });
  assert.equal(r.status, 200);
  assert.match(String(r.headers['content-type']), /^application\/xml/);
  const doc = parseXml(r.body, ['incomingServer', 'outgoingServer']);
  const provider = doc.clientConfig.emailProvider;
  assert.equal(doc.clientConfig['@version'], '1.1');
  assert.equal(provider['@id'], 'example.test');
  assert.equal(provider.domain, 'example.test');
  const incoming = provider.incomingServer.map((s: any) => [s['@type'], s.hostname, s.port, s.socketType, s.username, s.authentication]);
  assert.deepEqual(incoming, [
    ['imap', 'mail.example.test', '993', 'SSL', 'ann@example.test', 'password-cleartext'],
    ['imap', 'mail.example.test', '143', 'STARTTLS', 'ann@example.test', 'password-cleartext'],
    ['pop3', 'mail.example.test', '995', 'SSL', 'ann@example.test', 'password-cleartext'],
    ['pop3', 'mail.example.test', '110', 'STARTTLS', 'ann@example.test', 'password-cleartext'],
  ]);
  const outgoing = provider.outgoingServer.map((s: any) => [s['@type'], s.port, s.socketType, s.username]);
  assert.deepEqual(outgoing, [['smtp', '465', 'SSL', 'ann@example.test'], ['smtp', '587', 'STARTTLS', 'ann@example.test']]);
});

test('the .well-known autoconfig path without emailaddress takes the domain from the Host and the %EMAILADDRESS% placeholder', async () => {
  const r = await httpRequest(port, '/.well-known/autoconfig/mail/config-v1.1.xml', { headers: { Host: 'autoconfig.other.test' } });
  assert.equal(r.status, 200);
  const doc = parseXml(r.body, ['incomingServer', 'outgoingServer']);
  assert.equal(doc.clientConfig.emailProvider.domain, 'other.test');
  assert.equal(doc.clientConfig.emailProvider.incomingServer[0].username, '%EMAILADDRESS%');
});

test('autoconfig refuses a malformed address with 400 and a domain this server does not serve with 404', async () => {
  assert.equal((await httpRequest(port, '/mail/config-v1.1.xml?emailaddress=not-an-address')).status, 400);
  assert.equal((await httpRequest(port, '/mail/config-v1.1.xml?emailaddress=bob%40elsewhere.test')).status, 404);
});

test('an address with XML metacharacters comes back escaped and parses to the same address', async () => {
  const address = "o'b&<x>@example.test";
  const r = await httpRequest(port, `/mail/config-v1.1.xml?emailaddress=${encodeURIComponent(address)}`);
  // "<" and ">" are not in an address: refused; the apostrophe and ampersand are, and are escaped.
  assert.equal(r.status, 400);
  const ok = "o'b&x@example.test";
  const r2 = await httpRequest(port, `/mail/config-v1.1.xml?emailaddress=${encodeURIComponent(ok)}`);
  assert.equal(r2.status, 200);
  assert.ok(r2.body.includes('o&apos;b&amp;x@example.test'));
  const doc = parseXml(r2.body, ['incomingServer']);
  assert.equal(doc.clientConfig.emailProvider.incomingServer[0].username, ok);
});

test('Outlook POX autodiscover POST answers on every path casing with IMAP, POP3 and SMTP settings', async () => {
  for (const path of ['/autodiscover/autodiscover.xml', '/Autodiscover/Autodiscover.xml', '/AutoDiscover/AutoDiscover.xml', '/AUTODISCOVER/AUTODISCOVER.XML']) {
    const r = await httpRequest(port, path, {
      method: 'POST',
      headers: { 'Content-Type': 'text/xml', 'User-Agent': 'Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328; Pro)' },
      body: OUTLOOK_REQUEST('ann@example.test'),
    });
    assert.equal(r.status, 200, path);
    const doc = parseXml(r.body, ['Protocol']);
    assert.equal(doc.Autodiscover['@xmlns'], 'http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006');
    const resp = doc.Autodiscover.Response;
    assert.equal(resp['@xmlns'], 'http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a');
    assert.equal(resp.Account.AccountType, 'email');
    assert.equal(resp.Account.Action, 'settings');
    const protocols = resp.Account.Protocol.map((p: any) => [p.Type, p.Server, p.Port, p.Encryption, p.LoginName, p.SSL]);
    assert.deepEqual(protocols, [
      ['IMAP', 'mail.example.test', '993', 'SSL', 'ann@example.test', 'on'],
      ['IMAP', 'mail.example.test', '143', 'TLS', 'ann@example.test', 'on'],
      ['POP3', 'mail.example.test', '995', 'SSL', 'ann@example.test', 'on'],
      ['POP3', 'mail.example.test', '110', 'TLS', 'ann@example.test', 'on'],
      ['SMTP', 'mail.example.test', '465', 'SSL', 'ann@example.test', 'on'],
      ['SMTP', 'mail.example.test', '587', 'TLS', 'ann@example.test', 'on'],
    ]);
  }
});

test('autodiscover POST without an EMailAddress is 400, for another domain 404; GET answers without a login name', async () => {
  const bad = await httpRequest(port, '/autodiscover/autodiscover.xml', { method: 'POST', body: '<Autodiscover><Request/></Autodiscover>' });
  assert.equal(bad.status, 400);
  const other = await httpRequest(port, '/autodiscover/autodiscover.xml', { method: 'POST', body: OUTLOOK_REQUEST('x@elsewhere.test') });
  assert.equal(other.status, 404);
  const get = await httpRequest(port, '/Autodiscover/Autodiscover.xml', { headers: { Host: 'autodiscover.example.test' } });
  assert.equal(get.status, 200);
  const doc = parseXml(get.body, ['Protocol']);
  assert.equal(doc.Autodiscover.Response.Account.Protocol[0].LoginName, undefined);
  assert.equal(doc.Autodiscover.Response.Account.Protocol[0].Port, '993');
});

test('Outlook JSON v2 autodiscover points AutodiscoverV1 at the POX endpoint over https, in both URL forms', async () => {
  const a = await httpRequest(port, '/autodiscover/autodiscover.json?Email=ann%40example.test&Protocol=AutodiscoverV1&RedirectCount=1');
  assert.equal(a.status, 200);
  assert.deepEqual(JSON.parse(a.body), { Protocol: 'AutodiscoverV1', Url: 'https://mail.example.test/Autodiscover/Autodiscover.xml' });
  const b = await httpRequest(port, '/autodiscover/autodiscover.json/v1.0/ann@example.test?Protocol=AutodiscoverV1&RedirectCount=1');
  assert.equal(b.status, 200);
  assert.deepEqual(JSON.parse(b.body), { Protocol: 'AutodiscoverV1', Url: 'https://mail.example.test/Autodiscover/Autodiscover.xml' });
  const c = await httpRequest(port, '/Autodiscover/Autodiscover.json/v1.0/ann@example.test?Protocol=ActiveSync');
  assert.equal(c.status, 400);
  assert.equal(JSON.parse(c.body).ErrorCode, 'InvalidProtocol');
});

test('the iOS profile download is an unsigned mobileconfig with one com.apple.mail.managed payload for the address', async () => {
  const r = await httpRequest(port, '/mail/mobileconfig?emailaddress=ann%40example.test', { headers: { 'User-Agent': 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X)' } });
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-type'], 'application/x-apple-aspen-config');
  assert.match(String(r.headers['content-disposition']), /filename="ann@example\.test\.mobileconfig"/);
  const plist = parsePlist(r.body) as any;
  assert.equal(plist.PayloadType, 'Configuration');
  assert.equal(plist.PayloadVersion, 1);
  assert.match(plist.PayloadUUID, /^[0-9A-F]{8}-[0-9A-F]{4}-5[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$/);
  assert.equal(plist.PayloadContent.length, 1);
  const mail = plist.PayloadContent[0];
  assert.equal(mail.PayloadType, 'com.apple.mail.managed');
  assert.equal(mail.EmailAccountType, 'EmailTypeIMAP');
  assert.equal(mail.EmailAddress, 'ann@example.test');
  assert.equal(mail.IncomingMailServerHostName, 'mail.example.test');
  assert.equal(mail.IncomingMailServerPortNumber, 993);
  assert.equal(mail.IncomingMailServerUseSSL, true);
  assert.equal(mail.IncomingMailServerUsername, 'ann@example.test');
  assert.equal(mail.OutgoingMailServerPortNumber, 465);
  assert.equal(mail.OutgoingMailServerUseSSL, true);
  assert.equal(mail.OutgoingPasswordSameAsIncomingPassword, true);
  // The same address always gets the same identifiers, so a new download replaces the profile.
  const again = parsePlist((await httpRequest(port, '/mail/mobileconfig?emailaddress=ann%40example.test')).body) as any;
  assert.equal(again.PayloadUUID, plist.PayloadUUID);
  assert.equal((await httpRequest(port, '/mail/mobileconfig')).status, 400);
});

test('PACC lists the implicit-TLS host of each protocol and password authentication', async () => {
  const r = await httpRequest(port, '/.well-known/user-agent-configuration.json', { headers: { Host: 'ua-auto-config.example.test' } });
  assert.equal(r.status, 200);
  assert.match(String(r.headers['content-type']), /^application\/json/);
  assert.deepEqual(JSON.parse(r.body), {
    protocols: { imap: { host: 'mail.example.test' }, pop3: { host: 'mail.example.test' }, smtp: { host: 'mail.example.test' } },
    authentication: { password: true },
    info: { provider: { name: 'example.test', shortName: 'example.test' } },
  });
  // The digest `facteur dns` prints is the SHA-256 of these exact bytes (clients compare them).
  const published = requiredRecords({ domain: 'example.test', hostname: CONFIG.hostname, ips: [], listen: CONFIG.listen, dkimKeys: [], mtaSts: CONFIG.mtaSts }).find((x) => x.kind === 'pacc');
  assert.equal(published?.value, `v=UAAC1; a=sha256; d=${createHash('sha256').update(r.body).digest('base64')}`);
});

test('the MTA-STS policy is RFC 8461 text: version, mode from config, the hostname as mx, max_age', async () => {
  const r = await httpRequest(port, '/.well-known/mta-sts.txt', { headers: { Host: 'mta-sts.example.test' } });
  assert.equal(r.status, 200);
  assert.match(String(r.headers['content-type']), /^text\/plain/);
  assert.equal(r.body, 'version: STSv1\r\nmode: testing\r\nmx: mail.example.test\r\nmax_age: 86400\r\n');
});

test('/healthz answers 200 when the store answers and 503 when it fails', async () => {
  const ok = await httpRequest(port, '/healthz');
  assert.equal(ok.status, 200);
  assert.equal(ok.body, 'ok\n');
  const broken = new Proxy(ctx.store, {
    get(target, prop) {
      if (prop === 'listDomains') return () => Promise.reject(new Error('database is down'));
      const v = Reflect.get(target, prop);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  const sick = createHttpServer({ ...ctx, store: broken }, { name: 'http', implicitTls: false, config: CONFIG });
  const sickPort = await sick.listen('127.0.0.1', 0);
  try {
    const r = await httpRequest(sickPort, '/healthz');
    assert.equal(r.status, 503);
  } finally {
    await sick.close(0);
  }
});

test('/metrics is Prometheus text with connections per listener, requests and auth failures', async () => {
  await ctx.auth.verifyPassword('ann@example.test', 'wrong password', { ip: '192.0.2.7', protocol: 'imap', secure: true });
  const r = await httpRequest(port, '/metrics');
  assert.equal(r.status, 200);
  assert.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  assert.match(r.body, /^# TYPE facteur_connections_total counter$/m);
  assert.match(r.body, /^facteur_connections_total\{listener="http"\} [1-9]\d*$/m);
  assert.match(r.body, /^facteur_http_requests_total\{code="200",endpoint="healthz",listener="http"\} [1-9]\d*$/m);
  assert.match(r.body, /^facteur_auth_failures_total\{protocol="imap",reason="invalid"\} 1$/m);
});

test('bad requests: unknown path 404, wrong method 405 with Allow, oversized body 413, oversized headers 431, garbage 400, slow headers 408', async () => {
  assert.equal((await httpRequest(port, '/wp-login.php')).status, 404);
  const put = await httpRequest(port, '/mail/config-v1.1.xml', { method: 'PUT', body: 'x' });
  assert.equal(put.status, 405);
  assert.equal(put.headers.allow, 'GET, HEAD');
  const big = await httpRequest(port, '/autodiscover/autodiscover.xml', { method: 'POST', body: OUTLOOK_REQUEST('ann@example.test') + ' '.repeat(20_000) });
  assert.equal(big.status, 413);
  const headers = await rawExchange(port, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: ${'a'.repeat(20_000)}\r\n\r\n`);
  assert.match(headers, /^HTTP\/1\.1 431 /);
  const garbage = await rawExchange(port, 'HELLO THERE\r\n\r\n');
  assert.match(garbage, /^HTTP\/1\.1 400 /);
  const started = Date.now();
  const slow = await rawExchange(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\n');
  assert.match(slow, /^HTTP\/1\.1 408 /);
  assert.ok(Date.now() - started < 5000);
  // The server still answers everyone else.
  assert.equal((await httpRequest(port, '/healthz')).status, 200);
});

test('a chunked body over the limit is 413 and the connection closes; the server goes on', async () => {
  const chunk = `4000\r\n${'a'.repeat(0x4000)}\r\n`;
  const r = await rawExchange(port, `POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${chunk}${chunk}`);
  assert.match(r, /^HTTP\/1\.1 413 /);
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal((await httpRequest(port, '/healthz')).status, 200);
});

test('request targets: absolute-form is accepted, a path starting with // is a path, two Host fields are 400', async () => {
  assert.match(await rawExchange(port, 'GET http://mail.example.test/healthz HTTP/1.1\r\nHost: mail.example.test\r\nConnection: close\r\n\r\n'), /^HTTP\/1\.1 200 /);
  assert.match(await rawExchange(port, 'GET //evil.example/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'), /^HTTP\/1\.1 404 /);
  assert.match(await rawExchange(port, 'GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n'), /^HTTP\/1\.1 400 /);
  assert.match(await rawExchange(port, 'GET ftp://x/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'), /^HTTP\/1\.1 400 /);
});
