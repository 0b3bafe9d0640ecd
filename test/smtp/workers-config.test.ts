/**
 * `[smtp] workers` in the configuration: parsed and checked, written by `facteur init` without
 * pinning this machine's default, and deciding whether the MX listener forks a worker.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { defaultConfig, renderConfigFile, SMTP_WORKERS_DEFAULT } from '../../src/config/config.js';
import { LISTENER_FACTORIES } from '../../src/listeners.js';
import { loadConfigText } from '../helpers/config.js';
import { makeTestContext } from '../helpers/context.js';
import { createMockResolver } from './mock-dns.js';

test('smtp.workers: default by cores, any whole number, refused otherwise', async () => {
  assert.equal((await loadConfigText('')).smtp.workers, SMTP_WORKERS_DEFAULT);
  assert.equal((await loadConfigText('[smtp]\nworkers = 0\n')).smtp.workers, 0);
  assert.equal((await loadConfigText('[smtp]\nworkers = 3\n')).smtp.workers, 3);
  await assert.rejects(loadConfigText('[smtp]\nworkers = -1\n'), /smtp\.workers|workers/);
  await assert.rejects(loadConfigText('[smtp]\nworkers = "two"\n'), /workers/);
});

test('the written config leaves the default to the machine, and keeps a chosen value', () => {
  const config = defaultConfig('mail.example.test');
  assert.match(renderConfigFile(config), new RegExp(`^# workers = ${SMTP_WORKERS_DEFAULT}$`, 'm'));
  config.smtp.workers = SMTP_WORKERS_DEFAULT + 2;
  assert.match(renderConfigFile(config), new RegExp(`^workers = ${SMTP_WORKERS_DEFAULT + 2}$`, 'm'));
});

test('workers = 0 serves MX in this process; workers = 1 forks one worker', async () => {
  const ctx = await makeTestContext();
  const env = { dataDir: ctx.dataDir, resolver: createMockResolver({}) };
  const config = defaultConfig('mail.example.test');
  config.smtp.workers = 0;
  const inProcess = LISTENER_FACTORIES.smtp!(ctx, config, env)!;
  assert.equal('pids' in inProcess, false);
  config.smtp.workers = 1;
  const forked = LISTENER_FACTORIES.smtp!(ctx, config, env)! as typeof inProcess & { pids(): number[] };
  try {
    await forked.listen('127.0.0.1', 0);
    assert.equal(forked.pids().length, 1);
  } finally {
    await forked.close(0);
    await ctx.cleanup();
  }
});
