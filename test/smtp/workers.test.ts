/**
 * The MX listener served by an SMTP worker process (src/smtp/worker/): the sessions run in another
 * process, and what needs the store, the resolver and the metrics crosses the IPC channel to the
 * owner (this test's process). Recipient checks, delivery (once per account), message
 * authentication with the owner's DNS stand-in, STARTTLS with the data directory's certificate,
 * hostile input, a worker killed and started again on the same port, and a graceful close.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { generateKeyPairSync } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import { dkimSign } from 'mailauth';
import { createLocalDelivery, type LocalDelivery } from '../../src/delivery/local.js';
import { createMetrics } from '../../src/lib/metrics.js';
import { createSmtpWorkers, type SmtpWorkersOptions } from '../../src/smtp/worker/pool.js';
import { makeTestContext, testTlsDir, type TestContext } from '../helpers/context.js';
import { makeMessage } from '../helpers/messages.js';
import { alive, dotStuff, mxWorkerOptions } from './harness.js';
import { createMockResolver, type DnsTable } from './mock-dns.js';
import { connectSmtp, type SmtpWire } from './wire.js';

const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const PRIVATE_PEM = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const DNS: DnsTable = {
  txt: {
    'sender.example': 'v=spf1 ip4:127.0.0.1 -all',
    'sel1._domainkey.sender.example': `v=DKIM1; k=rsa; p=${publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`,
    '_dmarc.sender.example': 'v=DMARC1; p=reject',
  },
};

async function signed(raw: Buffer): Promise<Buffer> {
  const key = { signingDomain: 'sender.example', selector: 'sel1', privateKey: PRIVATE_PEM };
  const res = await dkimSign(raw, { ...key, canonicalization: 'relaxed/relaxed', signTime: new Date(), signatureData: [key] });
  assert.equal(res.errors.length, 0);
  return Buffer.concat([Buffer.from(res.signatures), raw]);
}

async function start(ctx: TestContext, options: Partial<SmtpWorkersOptions> = {}) {
  const server = createSmtpWorkers(ctx, mxWorkerOptions({ tlsDir: await testTlsDir(), ...options }));
  const port = await server.listen('127.0.0.1', 0);
  return { server, port };
}

async function inbox(ctx: TestContext, address: string): Promise<string[]> {
  const account = await ctx.store.getAccountByAddress(address);
  const mb = await ctx.store.getMailbox(account!.id, 'INBOX');
  const entries = await ctx.store.listEntries(mb!.id);
  return Promise.all(entries.map(async (e) => (await ctx.store.readBlob(e.blobHash)).toString('latin1')));
}

async function greeted(port: number): Promise<SmtpWire> {
  const c = await connectSmtp(port);
  await c.expect(220);
  return c;
}

/** The greeting of a worker started again (connections are refused until it listens). */
async function greetedWhenBack(port: number): Promise<SmtpWire> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      return await greeted(port);
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

test('a worker process serves the sessions; lookups, delivery, DNS and metrics go through the owner', async () => {
  const ctx = await makeTestContext();
  ctx.metrics = createMetrics();
  const resolver = createMockResolver(DNS);
  const { server, port } = await start(ctx, { resolver });
  try {
    const bob = await ctx.addUser('bob@example.com', 'pw-bob-123456');
    await ctx.store.addAlias('robert@example.com', 'bob@example.com');
    const pids = server.pids();
    assert.equal(pids.length, 1);
    assert.notEqual(pids[0], process.pid);

    const c = await greeted(port);
    const ehlo = await c.cmd('EHLO mx.sender.example', 250);
    assert.ok(ehlo.lines.includes('STARTTLS'), 'the worker loaded the certificate');
    await c.cmd('MAIL FROM:<alice@sender.example>', 250);
    assert.match((await c.cmd('RCPT TO:<nobody@example.com>', 550)).text, /^5\.1\.1 /);
    assert.match((await c.cmd('RCPT TO:<someone@elsewhere.example>', 554)).text, /^5\.7\.1 /);
    assert.match((await c.cmd('RCPT TO:<bob@[127.0.0.1]>', 554)).text, /^5\.7\.1 /);
    await c.cmd('RCPT TO:<bob@example.com>', 250);
    await c.cmd('RCPT TO:<Robert@Example.com>', 250);
    await c.cmd('DATA', 354);
    const raw = await signed(makeMessage({ from: 'alice@sender.example', to: 'bob@example.com', subject: 'through a worker', body: 'Hello\r\n' }));
    c.write(dotStuff(raw));
    assert.match((await c.read()).text, /^2\.0\.0 Delivered /);
    await c.cmd('QUIT', 221);
    c.close();

    const stored = await inbox(ctx, 'bob@example.com');
    assert.equal(stored.length, 1, 'an alias of the same account delivers once');
    assert.match(stored[0]!, /Subject: through a worker/);
    assert.match(stored[0]!, /Authentication-Results: mail\.example\.test;[^]*dkim=pass[^]*spf=pass[^]*dmarc=pass/);
    assert.match(stored[0]!, /^Return-Path: <alice@sender\.example>\r\n/);
    assert.ok(resolver.queries.some((q) => q === 'TXT _dmarc.sender.example'), 'DNS questions were answered by the owner');
    assert.ok(bob.id);
    // Counters travel on their own (not before the reply they go with): waited for.
    const want = [/facteur_deliveries_total\{result="delivered",source="smtp"\} 1\n/, /facteur_connections_total\{listener="smtp"\} 1\n/];
    let metrics = '';
    for (const deadline = Date.now() + 10_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 20))) {
      metrics = await ctx.metrics.render();
      if (want.every((re) => re.test(metrics))) break;
    }
    for (const re of want) assert.match(metrics, re);
  } finally {
    await server.close(1000);
    await ctx.cleanup();
  }
});

test("a worker's last counters reach the owner when it stops, before their delay is over", async () => {
  const ctx = await makeTestContext();
  ctx.metrics = createMetrics();
  await ctx.store.addDomain('example.com');
  await ctx.store.createAccount({ address: 'bob@example.com', passwordHash: 'x' });
  const { server, port } = await start(ctx);
  try {
    const c = await greeted(port);
    await c.cmd('EHLO client.example', 250);
    for (let i = 0; i < 3; i++) {
      await c.cmd('MAIL FROM:<alice@sender.example>', 250);
      await c.cmd('RCPT TO:<bob@example.com>', 250);
      await c.cmd('DATA', 354);
      c.write(dotStuff(makeMessage({ from: 'alice@sender.example', to: 'bob@example.com', subject: `counted ${i}`, body: 'Counted.\r\n' })));
      assert.equal((await c.read()).code, 250);
    }
    await c.cmd('QUIT', 221);
    c.close();
  } finally {
    // At once: the worker's counters have waited less than their delay (one second).
    await server.close(1000);
  }
  try {
    const metrics = await ctx.metrics.render();
    assert.match(metrics, /facteur_deliveries_total\{result="delivered",source="smtp"\} 3\n/);
    assert.match(metrics, /facteur_connections_total\{listener="smtp"\} 1\n/);
  } finally {
    await ctx.cleanup();
  }
});

test('STARTTLS in the worker, hostile input answered there, other sessions unharmed', async () => {
  const ctx = await makeTestContext();
  const { server, port } = await start(ctx);
  try {
    await ctx.addUser('bob@example.com', 'pw-bob-123456');
    const bad = await greeted(port);
    bad.write(`EHLO ${'x'.repeat(5000)}\r\n`);
    assert.equal((await bad.read()).code, 500);
    bad.write('MAIL FROM:<a@b.example>\r\n\0\r\n');
    await bad.read();

    const c = await greeted(port);
    await c.cmd('EHLO client.example.net', 250);
    await c.cmd('STARTTLS', 220);
    await c.upgrade();
    await c.cmd('EHLO client.example.net', 250);
    await c.cmd('MAIL FROM:<s@example.net>', 250);
    await c.cmd('RCPT TO:<bob@example.com>', 250);
    await c.cmd('DATA', 354);
    c.write(dotStuff('Subject: over tls\r\n\r\nbody\r\n'));
    await c.expect(250);
    c.close();
    bad.close();
    const stored = await inbox(ctx, 'bob@example.com');
    assert.equal(stored.length, 1);
    assert.match(stored[0]!, /with ESMTPS id [0-9a-f]+\r\n\t\(version=TLSv1\.[23] cipher=/);
  } finally {
    await server.close(1000);
    await ctx.cleanup();
  }
});

test('a worker killed is started again on the same port; a message it had not acknowledged is not stored', async () => {
  const ctx = await makeTestContext();
  const { server, port } = await start(ctx);
  try {
    await ctx.addUser('bob@example.com', 'pw-bob-123456');
    const c = await greeted(port);
    await c.cmd('EHLO client.example.net', 250);
    await c.cmd('MAIL FROM:<s@example.net>', 250);
    await c.cmd('RCPT TO:<bob@example.com>', 250);
    await c.cmd('DATA', 354);
    c.write('Subject: cut\r\n\r\nhalf a body');
    const [pid] = server.pids();
    process.kill(pid!, 'SIGKILL');
    await c.closed();

    const again = await greetedWhenBack(port);
    assert.notEqual(server.pids()[0], pid);
    await again.cmd('EHLO client.example.net', 250);
    await again.cmd('MAIL FROM:<s@example.net>', 250);
    await again.cmd('RCPT TO:<bob@example.com>', 250);
    await again.cmd('DATA', 354);
    again.write(dotStuff('Subject: after restart\r\n\r\nbody\r\n'));
    await again.expect(250);
    again.close();
    const stored = await inbox(ctx, 'bob@example.com');
    assert.deepEqual(
      stored.map((m) => /Subject: (.*)\r\n/.exec(m)?.[1]),
      ['after restart'],
    );
  } finally {
    await server.close(1000);
    await ctx.cleanup();
  }
});

test('a worker signalled alone (SIGTERM) ends its sessions with 421; the owner starts another', async () => {
  const ctx = await makeTestContext();
  const { server, port } = await start(ctx);
  try {
    const [pid] = server.pids();
    const c = await greeted(port);
    await c.cmd('EHLO client.example.net', 250);
    process.kill(pid!, 'SIGTERM');
    assert.equal((await c.read()).code, 421);
    c.close();
    const again = await greetedWhenBack(port);
    await again.cmd('QUIT', 221);
    again.close();
    assert.ok(!alive(pid!));
  } finally {
    await server.close(1000);
    await ctx.cleanup();
  }
});

test('close() ends open sessions with 421 and the worker exits', async () => {
  const ctx = await makeTestContext();
  const { server, port } = await start(ctx);
  const [pid] = server.pids();
  try {
    const c = await greeted(port);
    await c.cmd('EHLO client.example.net', 250);
    await server.close(2000);
    assert.equal((await c.read()).code, 421);
    assert.ok(!alive(pid!), 'the worker is gone');
    assert.deepEqual(server.pids(), []);
    await assert.rejects(connectSmtp(port));
  } finally {
    await server.close(0);
    await ctx.cleanup();
  }
});

test('LMTP in a worker: one reply per recipient after the data, quota refusals included', async () => {
  const ctx = await makeTestContext();
  const { server, port } = await start(ctx, { mode: 'lmtp' });
  try {
    await ctx.addUser('bob@example.com', 'pw-bob-123456');
    const carol = await ctx.addUser('carol@example.com', 'pw-carol-123456');
    await ctx.store.updateAccount(carol.id, { quotaBytes: 100 });
    const c = await greeted(port);
    await c.cmd('LHLO mta.example.net', 250);
    await c.cmd('MAIL FROM:<s@example.net> SIZE=1000', 250);
    await c.cmd('RCPT TO:<bob@example.com>', 250);
    // Over quota at RCPT already: 452 4.2.2 from the owner's check.
    assert.match((await c.cmd('RCPT TO:<carol@example.com>', 452)).text, /^4\.2\.2 /);
    await c.cmd('RCPT TO:<bob@example.com>', 250);
    await c.cmd('DATA', 354);
    c.write(dotStuff('Subject: lmtp worker\r\n\r\nbody\r\n'));
    await c.expect(250);
    await c.expect(250);
    c.close();
    assert.equal((await inbox(ctx, 'bob@example.com')).length, 1);
  } finally {
    await server.close(1000);
    await ctx.cleanup();
  }
});

test('the worker keeps an ok RCPT answer for a moment; refusals and quota answers go to the owner each time', async () => {
  const ctx = await makeTestContext();
  const local = createLocalDelivery(ctx.store);
  const asked: string[] = [];
  const delivery: LocalDelivery = {
    lookupRecipient: (domain, address, size) => {
      asked.push(address);
      return local.lookupRecipient(domain, address, size);
    },
    deliver: (raw, accounts, mailbox) => local.deliver(raw, accounts, mailbox),
    forward: (raw, request) => local.forward(raw, request),
  };
  const { server, port } = await start(ctx, { delivery });
  try {
    await ctx.addUser('bob@example.com', 'pw-bob-123456');
    const carol = await ctx.addUser('carol@example.com', 'pw-carol-123456');
    await ctx.store.updateAccount(carol.id, { quotaBytes: 1_000_000 });
    const c = await greeted(port);
    await c.cmd('EHLO mx.sender.example', 250);
    /** One message, its recipient given `times` in a row (moments apart: well within the second). */
    const send = async (to: string, times = 1): Promise<void> => {
      await c.cmd('MAIL FROM:<alice@sender.example>', 250);
      for (let i = 0; i < times; i++) await c.cmd(`RCPT TO:<${to}>`, 250);
      await c.cmd('DATA', 354);
      c.write(dotStuff(makeMessage({ from: 'alice@sender.example', to, subject: 'kept', body: 'Hello\r\n' })));
      await c.expect(250);
    };
    // A refusal is not kept: the account made right after it is reached at once.
    await c.cmd('MAIL FROM:<alice@sender.example>', 250);
    assert.match((await c.cmd('RCPT TO:<dave@example.com>', 550)).text, /^5\.1\.1 /);
    await c.cmd('RSET', 250);
    await ctx.addUser('dave@example.com', 'pw-dave-123456');
    await send('dave@example.com');
    // Within the second: bob's answer is asked once; carol's (a quota) every time.
    await send('bob@example.com', 3);
    await send('carol@example.com', 2);
    c.close();
    assert.deepEqual(asked, ['dave@example.com', 'dave@example.com', 'bob@example.com', 'carol@example.com', 'carol@example.com']);
    assert.equal((await inbox(ctx, 'bob@example.com')).length, 1, 'one delivery for the repeated recipient');
    assert.equal((await inbox(ctx, 'carol@example.com')).length, 1);
  } finally {
    await server.close(1000);
    await ctx.cleanup();
  }
});

test('a worker that cannot listen (port in use) fails listen() with the error code the app reports', async () => {
  const ctx = await makeTestContext();
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve()));
  const port = (blocker.address() as AddressInfo).port;
  const server = createSmtpWorkers(ctx, mxWorkerOptions());
  try {
    await assert.rejects(server.listen('127.0.0.1', port), (err: NodeJS.ErrnoException) => err.code === 'EADDRINUSE');
  } finally {
    await server.close(0);
    blocker.close();
    await ctx.cleanup();
  }
  assert.deepEqual(server.pids(), []);
});
