/**
 * Two `facteur serve` processes (two nodes) over one PostgreSQL schema, as behind a load
 * balancer: a message appended through node A reaches an IMAP IDLE session on node B, and both
 * nodes list the same mailbox. Needs FACTEUR_TEST_PG.
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ImapFlow } from 'imapflow';
import pg from 'pg';
import { runCli, startServe } from '../helpers/cli.js';
import type { ServeProcess } from '../helpers/cli.js';
import { testPgUrl } from '../helpers/store.js';
import { pgQueueSchema } from '../../src/queue/open.js';

const url = testPgUrl();

test('two facteur nodes on one database: an APPEND on node A reaches IDLE on node B', { skip: url === null ? 'FACTEUR_TEST_PG is not set' : false }, async () => {
  const schema = `t_${randomBytes(8).toString('hex')}`;
  const u = new URL(url!);
  u.searchParams.set('schema', schema);
  const env = { FACTEUR_STORE: u.toString() };
  const base = await mkdtemp(join(tmpdir(), 'facteur-two-nodes-'));
  const nodes: ServeProcess[] = [];
  const clients: ImapFlow[] = [];
  try {
    const dirs = [join(base, 'a'), join(base, 'b')];
    for (const dir of dirs) assert.equal((await runCli(['init', '--domain', 'example.test', '--dev', '--data', dir])).code, 0);
    const domain = await runCli(['domain', 'add', 'example.test', '--data', dirs[0]!], { env });
    assert.equal(domain.code, 0, domain.stderr);
    const user = await runCli(['user', 'add', 'alice@example.test', '--password', 'correct horse', '--data', dirs[0]!], { env });
    assert.equal(user.code, 0, user.stderr);
    for (const dir of dirs) nodes.push(await startServe(['serve', '--only', '--listen', 'imap=127.0.0.1:0', '--data', dir], env));
    const connect = async (port: number): Promise<ImapFlow> => {
      const c = new ImapFlow({ host: '127.0.0.1', port, secure: false, auth: { user: 'alice@example.test', pass: 'correct horse' }, logger: false, tls: { rejectUnauthorized: false } });
      clients.push(c);
      await c.connect();
      return c;
    };
    const a = await connect(nodes[0]!.ports.imap!);
    const b = await connect(nodes[1]!.ports.imap!);
    await b.mailboxOpen('INBOX');
    const heard = new Promise<number>((resolve) => b.on('exists', (d: { count: number }) => resolve(d.count)));
    const idle = b.idle();
    await new Promise((r) => setTimeout(r, 200));
    await a.append('INBOX', 'From: bob@example.org\r\nTo: alice@example.test\r\nSubject: across nodes\r\n\r\nhello\r\n');
    const appended = Date.now();
    const count = await Promise.race([heard, new Promise<number>((_, reject) => setTimeout(() => reject(new Error('node B never heard')), 5000))]);
    assert.equal(count, 1);
    assert.ok(Date.now() - appended < 1000, `heard ${Date.now() - appended} ms after the APPEND completed`);
    await b.noop();
    void idle;
    const fetched = await b.fetchOne('1', { envelope: true });
    assert.equal(fetched && fetched.envelope?.subject, 'across nodes');
  } finally {
    for (const c of clients) await c.logout().catch(() => undefined);
    for (const n of nodes) await n.stop('SIGTERM');
    const admin = new pg.Client({ connectionString: url! });
    await admin.connect();
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await admin.query(`DROP SCHEMA IF EXISTS "${pgQueueSchema(schema)}" CASCADE`);
    await admin.end();
    await rm(base, { recursive: true, force: true });
  }
});
