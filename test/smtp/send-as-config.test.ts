/**
 * `[submission] send_as` in facteur.toml: parsed and checked with the rest of the config, written
 * back by renderConfigFile, and given by the composition root's submission listener to the policy.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { parse as parseToml } from 'smol-toml';
import { applyConfig, ConfigError, defaultConfig, renderConfigFile } from '../../src/config/config.js';
import { LISTENER_FACTORIES } from '../../src/listeners.js';
import { emptyZone, mockResolver } from '../dns/mock-resolver.js';
import { makeTestContext } from '../helpers/context.js';
import { dotStuff } from './harness.js';
import { connectSmtp } from './wire.js';

const base = () => defaultConfig('mail.example.test');
const apply = (text: string) => applyConfig(base(), parseToml(text) as Record<string, unknown>, 'facteur.toml');

test('config: send_as grants are read as a table of account -> addresses or @domains, lowercased', () => {
  const c = apply('[submission.send_as]\n"Boss@Example.com" = ["@Example.com", "news@example.org"]\n');
  assert.deepEqual(c.submission.sendAs, { 'boss@example.com': ['@example.com', 'news@example.org'] });
  assert.deepEqual(base().submission.sendAs, {});
});

test('config: a malformed send_as entry is an error naming the key', () => {
  const cases = [
    ['[submission]\nsend_as = ["@example.com"]\n', /submission\.send_as/],
    ['[submission.send_as]\n"not-an-address" = ["@example.com"]\n', /submission\.send_as\."not-an-address".*account address/],
    ['[submission.send_as]\n"boss@example.com" = "@example.com"\n', /submission\.send_as\."boss@example\.com".*list of addresses/],
    ['[submission.send_as]\n"boss@example.com" = ["example.com"]\n', /list of addresses/],
  ] as const;
  for (const [text, message] of cases) {
    assert.throws(() => apply(text), (err: Error) => err instanceof ConfigError && message.test(err.message), text);
  }
});

test('config: renderConfigFile writes send_as grants back, and the default file has none', () => {
  const c = base();
  c.submission.sendAs = { 'boss@example.com': ['@example.com', 'news@example.org'] };
  assert.deepEqual(apply(renderConfigFile(c)).submission.sendAs, c.submission.sendAs);
  assert.deepEqual(apply(renderConfigFile(base())).submission.sendAs, {});
});

test('the submission listener built from the config lets a granted account send as the whole domain', async () => {
  const ctx = await makeTestContext();
  const config = apply('[submission.send_as]\n"bob@example.com" = ["@example.org"]\n');
  const server = LISTENER_FACTORIES.submission!(ctx, config, { dataDir: ctx.dataDir, resolver: mockResolver(emptyZone()) })!;
  try {
    const port = await server.listen('127.0.0.1', 0);
    await ctx.addUser('bob@example.com', 'pw-bob-123456');
    const carol = await ctx.addUser('carol@example.com', 'pw-carol-123456');
    const c = await connectSmtp(port);
    await c.expect(220);
    await c.cmd('EHLO client.example.net', 250);
    await c.cmd(`AUTH PLAIN ${Buffer.from('\0bob@example.com\0pw-bob-123456').toString('base64')}`, 235);
    await c.cmd('MAIL FROM:<other@example.net>', 553);
    await c.cmd('MAIL FROM:<noreply@example.org>', 250);
    await c.cmd('RCPT TO:<carol@example.com>', 250);
    await c.cmd('DATA', 354);
    c.write(dotStuff('From: Newsletter <news@example.org>\r\nSubject: granted\r\n\r\nbody\r\n'));
    await c.expect(250);
    await c.cmd('QUIT', 221);
    const mb = await ctx.store.getMailbox(carol.id, 'INBOX');
    assert.equal((await ctx.store.listEntries(mb!.id)).length, 1);
  } finally {
    await server.close(1000);
    await ctx.cleanup();
  }
});
