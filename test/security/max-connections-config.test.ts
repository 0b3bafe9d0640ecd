/**
 * `max_connections` of [imap], [pop3] and [smtp] in the configuration: parsed, checked, written
 * by `facteur init`, and applied by every listener the application starts from it (the MX one
 * in a worker process too): past the limit the protocol's refusal, then close.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultConfig, loadConfig, renderConfigFile } from '../../src/config/config.js';
import type { ListeningServer } from '../../src/context.js';
import { LISTENER_FACTORIES } from '../../src/listeners.js';
import { loadConfigText } from '../helpers/config.js';
import { makeTestContext } from '../helpers/context.js';
import { createMockResolver } from '../smtp/mock-dns.js';

/** The first line the server says on a new connection (kept open until the test ends). */
async function firstLine(port: number, open: Socket[]): Promise<string> {
  const socket = connect({ host: '127.0.0.1', port });
  open.push(socket);
  socket.on('error', () => {});
  return new Promise((resolve) => {
    let got = '';
    socket.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (got.includes('\r\n')) resolve(got.slice(0, got.indexOf('\r\n')));
    });
    socket.on('close', () => resolve(got));
  });
}

test('max_connections: defaults, chosen values, refusals, and the written file', async () => {
  const d = await loadConfigText('');
  assert.deepEqual([d.imap.maxConnections, d.pop3.maxConnections, d.smtp.maxConnections], [1000, 1000, 1000]);
  const c = await loadConfigText('[imap]\nmax_connections = 20000\n[pop3]\nmax_connections = 7\n[smtp]\nmax_connections = 9\n');
  assert.deepEqual([c.imap.maxConnections, c.pop3.maxConnections, c.smtp.maxConnections], [20000, 7, 9]);
  await assert.rejects(loadConfigText('[imap]\nmax_connections = 0\n'), /imap\.max_connections/);
  await assert.rejects(loadConfigText('[pop3]\nmax_connections = "many"\n'), /max_connections/);
  // What `facteur init` writes reads back the same.
  const dir = await mkdtemp(join(tmpdir(), 'facteur-config-'));
  try {
    await writeFile(join(dir, 'facteur.toml'), renderConfigFile(c));
    const back = await loadConfig(join(dir, 'facteur.toml'));
    assert.deepEqual([back.imap.maxConnections, back.pop3.maxConnections, back.smtp.maxConnections], [20000, 7, 9]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('every listener made from the configuration applies its max_connections', async () => {
  const ctx = await makeTestContext();
  const config = defaultConfig('mail.example.test');
  config.imap.maxConnections = 2;
  config.pop3.maxConnections = 2;
  config.smtp.maxConnections = 2;
  config.smtp.workers = 1;
  const env = { dataDir: ctx.dataDir, resolver: createMockResolver({}) };
  const cases: Array<{ name: 'imap' | 'pop3' | 'smtp' | 'submission'; ok: RegExp; refused: RegExp }> = [
    { name: 'imap', ok: /^\* OK /, refused: /^\* BYE / },
    { name: 'pop3', ok: /^\+OK /, refused: /^-ERR / },
    { name: 'smtp', ok: /^220 /, refused: /^421 / },
    { name: 'submission', ok: /^220 /, refused: /^421 / },
  ];
  const servers: ListeningServer[] = [];
  const open: Socket[] = [];
  try {
    for (const k of cases) {
      const server = LISTENER_FACTORIES[k.name]!(ctx, config, env)!;
      servers.push(server);
      const port = await server.listen('127.0.0.1', 0);
      assert.match(await firstLine(port, open), k.ok, k.name);
      assert.match(await firstLine(port, open), k.ok, k.name);
      assert.match(await firstLine(port, open), k.refused, `${k.name}: the third connection`);
    }
  } finally {
    for (const s of open) s.destroy();
    await Promise.all(servers.map((s) => s.close(0)));
    await ctx.cleanup();
  }
});
