/**
 * PROXY protocol in facteur.toml: the table form of a listener, its checks, and the file that
 * `facteur init` writes (render, then parse, gives the same settings back).
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { parse as parseToml } from 'smol-toml';
import { applyConfig, defaultConfig, renderConfigFile } from '../../src/config/config.js';

const base = defaultConfig('mail.example.test');
const load = (toml: string) => applyConfig(base, parseToml(toml) as Record<string, unknown>, 'facteur.toml');

test('config: a listener table with proxy_protocol and proxy_trusted turns the PROXY protocol on for that listener only', () => {
  const c = load(`
[listen]
smtp = { address = "0.0.0.0:25", proxy_protocol = true, proxy_trusted = ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"] }
imaps = { address = "0.0.0.0:993" }
submission = "0.0.0.0:587"
`);
  assert.equal(c.listen.smtp, '0.0.0.0:25');
  assert.equal(c.listen.imaps, '0.0.0.0:993');
  assert.equal(c.listen.submission, '0.0.0.0:587');
  assert.deepEqual(c.proxyProtocol, { smtp: { trusted: ['10.0.0.0/8', '2001:db8::/32', '192.0.2.7'] } });
});

test('config: PROXY protocol mistakes name the key and the reason', () => {
  const cases: Array<[string, RegExp]> = [
    ['smtp = { address = "0.0.0.0:25", proxy_protocol = true }', /listen\.smtp\.proxy_trusted: expected a non-empty list/],
    ['smtp = { address = "0.0.0.0:25", proxy_protocol = true, proxy_trusted = [] }', /listen\.smtp\.proxy_trusted: expected a non-empty list/],
    ['smtp = { address = "0.0.0.0:25", proxy_protocol = true, proxy_trusted = ["10.0.0.0/33"] }', /proxy_trusted: cannot parse "10\.0\.0\.0\/33"/],
    ['smtp = { address = "0.0.0.0:25", proxy_protocol = true, proxy_trusted = ["balancer.internal"] }', /cannot parse "balancer\.internal"/],
    ['smtp = { address = "0.0.0.0:25", proxy_protocol = "yes", proxy_trusted = ["10.0.0.1"] }', /listen\.smtp\.proxy_protocol: expected true or false/],
    ['smtp = { address = "0.0.0.0:25", proxy_trusted = ["10.0.0.1"] }', /only meaningful with proxy_protocol = true/],
    ['smtp = { address = "0.0.0.0:25", proxy_protocoll = true }', /listen\.smtp\.proxy_protocoll: unknown key \(did you mean "proxy_protocol"\?\)/],
    ['smtp = { proxy_protocol = true, proxy_trusted = ["10.0.0.1"] }', /listen\.smtp: missing address/],
    ['smtp = { address = "nowhere", proxy_protocol = true, proxy_trusted = ["10.0.0.1"] }', /cannot parse "nowhere" as host:port/],
  ];
  for (const [line, reason] of cases) assert.throws(() => load(`[listen]\n${line}\n`), reason, line);
});

test('config: the rendered file keeps the PROXY protocol settings', () => {
  const c = load(`
[listen]
imaps = { address = "0.0.0.0:993", proxy_protocol = true, proxy_trusted = ["10.1.0.0/16"] }
pop3s = "0.0.0.0:995"
`);
  const again = applyConfig(defaultConfig('x.example'), parseToml(renderConfigFile(c)) as Record<string, unknown>, 'rendered');
  assert.deepEqual(again.proxyProtocol, { imaps: { trusted: ['10.1.0.0/16'] } });
  assert.equal(again.listen.imaps, '0.0.0.0:993');
  assert.equal(again.listen.pop3s, '0.0.0.0:995');
});
