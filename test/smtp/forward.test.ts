/**
 * Forwarding: an alias whose target is in another domain. The whole application (port 25, the
 * queue, a remote MX played by a sink), in the owner process and through an SMTP worker process.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startApp, type App } from '../../src/app.js';
import { defaultConfig } from '../../src/config/config.js';
import { createSrs, loadSrsSecret } from '../../src/delivery/srs.js';
import { dkimDnsRecord, dkimRecordName, generateDkimKeys, type DkimKey } from '../../src/msgauth/dkim-keys.js';
import { mailauthResolver } from '../../src/dns/resolver.js';
import { authenticate } from 'mailauth';
import type { MailStore } from '../../src/store/types.js';
import { openTestStore } from '../helpers/store.js';
import { startSink, type Received, type Sink } from '../queue/helpers.js';
import { createMockResolver } from './mock-dns.js';
import { dotStuff, startServer } from './harness.js';
import { makeTestContext } from '../helpers/context.js';
import { connectSmtp } from './wire.js';

const MESSAGE =
  'From: Jane <jane@sender.example>\r\nTo: away@example.com\r\nSubject: forwarded\r\nMessage-ID: <fw-1@sender.example>\r\n\r\nThe body.\r\n';

interface Setup {
  app: App;
  keys: DkimKey[];
  store: MailStore;
  sink: Sink;
  port: number;
  dataDir: string;
  close(): Promise<void>;
}

async function setUp(workers: number): Promise<Setup> {
  const dataDir = await mkdtemp(join(tmpdir(), 'facteur-fwd-'));
  const { store, cleanup } = await openTestStore();
  // The remote refuses one address for good: its forwarded copy bounces.
  const sink = await startSink({ starttls: false, onRcpt: (address) => (address === 'gone@remote.example' ? [550, '5.1.1 no such user'] : null) });
  const config = defaultConfig('mail.example.test');
  config.log.level = 'silent';
  config.listen = { smtp: '127.0.0.1:0' };
  config.smtp.workers = workers;
  // Every remote domain's MX is the sink.
  config.outbound.port = sink.port;
  const resolver = createMockResolver({
    mx: {
      'remote.example': [{ exchange: 'mx.remote.example', priority: 10 }],
      'sender.example': [{ exchange: 'mx.remote.example', priority: 10 }],
    },
    a: { 'mx.remote.example': ['127.0.0.1'] },
    txt: { 'sender.example': 'v=spf1 ip4:127.0.0.1 -all' },
  });
  await store.addDomain('example.com');
  await store.createAccount({ address: 'bob@example.com', passwordHash: 'x'.repeat(10) });
  await store.addAlias('away@example.com', 'Far@Remote.example');
  await store.addAlias('both@example.com', 'bob@example.com');
  await store.addAlias('both@example.com', 'bob.copy@remote.example');
  await store.addAlias('old@example.com', 'gone@remote.example');
  // The alias domain's keys: the forwarded copy is ARC-sealed with its RSA key.
  const keys = await generateDkimKeys(dataDir, 'example.com', { rsaBits: 1024 });
  const app = await startApp({ dataDir, storeLocation: dataDir, config, store, resolver, log: pino({ level: 'silent' }) });
  const port = app.servers.find((s) => s.name === 'smtp')!.port;
  return {
    app,
    keys,
    store,
    sink,
    port,
    dataDir,
    async close() {
      await app.close(200);
      await sink.close();
      await cleanup();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** One transaction on a fresh connection; the reply to the data (or to the first refused command). */
async function send(port: number, from: string, rcpts: string[], message = MESSAGE): Promise<{ code: number; text: string }> {
  const c = await connectSmtp(port);
  try {
    await c.expect(220);
    await c.cmd('EHLO client.sender.example', 250);
    await c.cmd(`MAIL FROM:<${from}>`, 250);
    for (const r of rcpts) {
      c.write(`RCPT TO:${r}\r\n`);
      const rr = await c.read();
      if (rr.code !== 250) return rr;
    }
    await c.cmd('DATA', 354);
    c.write(dotStuff(message));
    return await c.read();
  } finally {
    c.close();
  }
}

async function arrival(sink: Sink, to: string): Promise<Received> {
  for (let i = 0; i < 200; i++) {
    const m = sink.received.find((r) => r.to.includes(to));
    if (m) return m;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`nothing arrived for ${to}`);
}

for (const workers of [0, 1]) {
  test(`forwarding (${workers ? 'SMTP worker process' : 'owner process'}): the copy goes out with a rewritten sender, and its bounce comes back`, async () => {
    const s = await setUp(workers);
    try {
      const r = await send(s.port, 'jane@sender.example', ['<away@example.com> NOTIFY=SUCCESS,FAILURE']);
      assert.equal(r.code, 250, r.text);
      const out = await arrival(s.sink, 'far@remote.example');
      // SRS0 of the alias's domain, for the sender as given.
      assert.match(out.from, /^SRS0=[a-z2-7]{5}=[a-z2-7]{2}=sender\.example=jane@example\.com$/);
      assert.deepEqual(out.to, ['far@remote.example']);
      const data = out.data.toString('latin1');
      // Our trace fields above the message as received; no Return-Path (the next hop adds its own).
      assert.match(data, /\r\nAuthentication-Results: mail\.example\.test;\r\n[^]*? spf=pass /);
      assert.match(data, /\r\nReceived: from client\.sender\.example /);
      assert.doesNotMatch(data, /^Return-Path:/m);
      assert.ok(data.endsWith(MESSAGE), 'the message itself unchanged (a DKIM signature on it still verifies)');
      // Sealed (RFC 8617): the next hop verifies our ARC set, i=1, with what we found recorded.
      assert.match(data, /^ARC-Seal: i=1; a=rsa-sha256; .*cv=none/);
      const rsa = s.keys.find((k) => k.algorithm === 'rsa')!;
      const dns = createMockResolver({ txt: { [dkimRecordName(rsa)]: dkimDnsRecord(rsa) } });
      const next = await authenticate(out.data, { ip: '127.0.0.1', helo: 'mail.example.test', sender: out.from, mta: 'next.example', resolver: mailauthResolver(dns), disableBimi: true });
      assert.equal(next.arc && next.arc.status.result, 'pass');
      assert.match(data, /^ARC-Authentication-Results: i=1; mail\.example\.test;\r\n[^]*? spf=pass /m);
      // The DSN requests travel on, ORCPT naming the address the sender wrote.
      assert.deepEqual(s.sink.rcptArgs('far@remote.example'), { NOTIFY: 'SUCCESS,FAILURE', ORCPT: 'rfc822;away@example.com' });
      // The key was made in the data directory, private.
      assert.equal((await stat(join(s.dataDir, 'srs.key'))).mode & 0o777, 0o600);

      // The remote bounces to the rewritten sender: accepted, and sent on to the original one.
      const bounce = await send(s.port, '', [`<${out.from}>`], 'From: MAILER-DAEMON@remote.example\r\nSubject: Undelivered\r\n\r\nsorry\r\n');
      assert.equal(bounce.code, 250, bounce.text);
      const back = await arrival(s.sink, 'jane@sender.example');
      assert.equal(back.from, '', 'the bounce keeps the null sender');
      assert.match(back.data.toString('latin1'), /Subject: Undelivered/);

      // Both copies counted (in the owner, also when a worker process did the session).
      await new Promise((resolve) => setTimeout(resolve, workers ? 1200 : 0));
      assert.match(await s.app.ctx.metrics!.render(), /^facteur_forwarded_recipients_total 2$/m);

      // An altered or foreign reverse address is an unknown user.
      const forged = out.from.replace(/^SRS0=[a-z2-7]{5}/, 'SRS0=aaaaa');
      const refused = await send(s.port, '', [`<${forged}>`]);
      assert.equal(refused.code, 550);
      assert.match(refused.text, /5\.1\.1/);
    } finally {
      await s.close();
    }
  });
}

test('forwarding: a copy the remote refuses is reported by the queue to the original sender, not to the rewritten one', async () => {
  const s = await setUp(0);
  try {
    const r = await send(s.port, 'jane@sender.example', ['<old@example.com>']);
    assert.equal(r.code, 250, r.text);
    const report = await arrival(s.sink, 'jane@sender.example');
    assert.equal(report.from, '');
    const text = report.data.toString('latin1');
    assert.match(text, /^Final-Recipient: rfc822; ?gone@remote\.example\r$/m);
    assert.match(text, /^Original-Recipient: rfc822; ?old@example\.com\r$/m);
    assert.match(text, /^Action: failed\r$/m);
    assert.equal(s.sink.rcpts('gone@remote.example'), 1, 'tried once (a 5xx is final)');
  } finally {
    await s.close();
  }
});

test('forwarding: a local account and a remote copy from one alias; Junk is not forwarded; loops are refused', async () => {
  const s = await setUp(0);
  try {
    const r = await send(s.port, 'jane@sender.example', ['<both@example.com>']);
    assert.equal(r.code, 250, r.text);
    await arrival(s.sink, 'bob.copy@remote.example');
    const bob = (await s.store.getAccountByAddress('bob@example.com'))!;
    const inbox = (await s.store.getMailbox(bob.id, 'INBOX'))!;
    const [entry] = await s.store.listEntries(inbox.id);
    assert.ok(entry);
    assert.match((await s.store.readBlob(entry.blobHash)).toString('latin1'), /^Return-Path: <jane@sender\.example>\r\n/);

    // Fifty Received fields: a loop, refused before anything is stored or queued.
    const looped = 'Received: from a by b; Sat, 28 Nov 2026 00:00:00 +0000\r\n'.repeat(50) + MESSAGE;
    const before = s.sink.received.length;
    const loop = await send(s.port, 'jane@sender.example', ['<both@example.com>'], looped);
    assert.equal(loop.code, 554);
    assert.match(loop.text, /5\.4\.6/);
    assert.equal((await s.store.listEntries(inbox.id)).length, 1);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(s.sink.received.length, before);
  } finally {
    await s.close();
  }
});

test('forwarding with the queue refusing: 451 and nothing stored (the retry duplicates nothing); DMARC Junk is not forwarded', async () => {
  const ctx = await makeTestContext();
  await ctx.addUser('bob@example.com', 'pw-bob-123456');
  await ctx.store.addAlias('both@example.com', 'bob@example.com');
  await ctx.store.addAlias('both@example.com', 'copy@remote.example');
  await ctx.store.addAlias('away@example.com', 'far@remote.example');
  let fail = true;
  const queued: Array<{ from: string; to: readonly string[] }> = [];
  ctx.forwarding = {
    srs: createSrs({ secret: Buffer.alloc(32, 7) }),
    send: async (_raw, envelope) => {
      if (fail) throw new Error('queue disk full');
      queued.push({ from: envelope.from, to: envelope.to });
      return 'q1';
    },
  };
  // p=reject failing mail goes to Junk (dmarc_reject = "junk").
  const resolver = createMockResolver({ txt: { '_dmarc.sender.example': 'v=DMARC1; p=reject', 'sender.example': 'v=spf1 -all' } });
  const h = await startServer({ mode: 'mx', resolver, dmarcReject: 'junk' }, ctx);
  try {
    const bob = (await ctx.store.getAccountByAddress('bob@example.com'))!;
    const other = MESSAGE.replace('Jane <jane@sender.example>', 'other@elsewhere.example');
    const r = await send(h.port, 'other@elsewhere.example', ['<both@example.com>'], other);
    assert.equal(r.code, 451);
    assert.equal((await h.messages(bob.id)).length, 0);
    fail = false;
    assert.equal((await send(h.port, 'other@elsewhere.example', ['<both@example.com>'], other)).code, 250);
    assert.equal((await h.messages(bob.id)).length, 1);
    assert.deepEqual(queued.map((q) => q.to), [['copy@remote.example']]);
    assert.match(queued[0]!.from, /^SRS0=.*=elsewhere\.example=other@example\.com$/);
    // From a domain whose DMARC policy it fails: to Junk locally, not forwarded; a forward-only
    // recipient then refuses it.
    assert.equal((await send(h.port, 'jane@sender.example', ['<both@example.com>'])).code, 250);
    assert.equal(queued.length, 1);
    const junk = await send(h.port, 'jane@sender.example', ['<away@example.com>']);
    assert.equal(junk.code, 550);
    assert.match(junk.text, /not forwarded/);
    // Local recipients of two domains forwarding: one queued copy for all their targets (queued
    // whole or not at all), the sender rewritten into the first one's domain.
    await ctx.store.addDomain('example.org');
    await ctx.store.addAlias('sales@example.org', 'desk@remote.example');
    await ctx.store.addAlias('sales@example.org', 'far@remote.example');
    assert.equal((await send(h.port, 'other@elsewhere.example', ['<away@example.com>', '<sales@example.org>'], other)).code, 250);
    assert.equal(queued.length, 2);
    assert.deepEqual(queued[1]!.to, ['far@remote.example', 'desk@remote.example']);
    assert.match(queued[1]!.from, /^SRS0=.*=elsewhere\.example=other@example\.com$/);
    // The alias removed between RCPT and the data: nothing to forward to, an unknown user.
    const c = await connectSmtp(h.port);
    try {
      await c.expect(220);
      await c.cmd('EHLO client.example.net', 250);
      await c.cmd('MAIL FROM:<other@elsewhere.example>', 250);
      await c.cmd('RCPT TO:<away@example.com>', 250);
      await ctx.store.removeAlias('away@example.com');
      await c.cmd('DATA', 354);
      c.write(dotStuff(other));
      const gone = await c.read();
      assert.equal(gone.code, 550);
      assert.match(gone.text, /^5\.1\.1 /);
    } finally {
      c.close();
    }
    assert.equal(queued.length, 2);
  } finally {
    await h.close();
  }
});

test('the SRS key: made once, kept across starts, refused when damaged', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'facteur-srskey-'));
  try {
    const a = await loadSrsSecret(dir);
    const b = await loadSrsSecret(dir);
    assert.equal(a.length, 32);
    assert.deepEqual(a, b);
    assert.match(await readFile(join(dir, 'srs.key'), 'utf8'), /^[0-9a-f]{64}\n$/);
    const { writeFile } = await import('node:fs/promises');
    await writeFile(join(dir, 'srs.key'), 'short\n');
    await assert.rejects(loadSrsSecret(dir), /not a secret of at least 16 bytes/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('submission: a local recipient that forwards adds its remote targets to the queued recipients, as the user\'s own mail', async () => {
  const ctx = await makeTestContext();
  await ctx.addUser('bob@example.com', 'pw-bob-123456');
  await ctx.addUser('carol@example.com', 'pw-carol-123456');
  await ctx.store.addAlias('team@example.com', 'carol@example.com');
  await ctx.store.addAlias('team@example.com', 'dan@remote.example');
  await ctx.store.addAlias('away@example.com', 'far@remote.example');
  ctx.forwarding = { srs: createSrs({ secret: Buffer.alloc(32, 7) }), send: async () => assert.fail('submission queues through its own hook') };
  const queued: Array<{ from: string; to: string[]; orcpt: Array<string | null> }> = [];
  const h = await startServer(
    {
      mode: 'submission',
      onSubmit: async ({ tx, recipients }) => {
        queued.push({
          from: tx.from?.address ?? '',
          to: recipients.map((r) => r.address),
          orcpt: recipients.map((r) => (r.params.orcpt ? `${r.params.orcpt.type};${r.params.orcpt.address}` : null)),
        });
        return { code: 250, enhanced: '2.0.0', lines: ['Queued'] };
      },
    },
    ctx,
  );
  try {
    const c = await connectSmtp(h.port);
    try {
      await c.expect(220);
      await c.cmd('EHLO client.example.net', 250);
      await c.cmd(`AUTH PLAIN ${Buffer.from('\0bob@example.com\0pw-bob-123456').toString('base64')}`, 235);
      await c.cmd('MAIL FROM:<bob@example.com>', 250);
      await c.cmd('RCPT TO:<team@example.com>', 250);
      await c.cmd('RCPT TO:<away@example.com>', 250);
      await c.cmd('RCPT TO:<x@other.example>', 250);
      await c.cmd('DATA', 354);
      c.write(dotStuff('From: bob@example.com\r\nTo: team@example.com\r\nSubject: hi\r\n\r\nhello\r\n'));
      assert.equal((await c.read()).code, 250);
    } finally {
      c.close();
    }
    assert.deepEqual(queued, [
      {
        from: 'bob@example.com',
        to: ['x@other.example', 'dan@remote.example', 'far@remote.example'],
        orcpt: [null, 'rfc822;team@example.com', 'rfc822;away@example.com'],
      },
    ]);
    const carol = (await ctx.store.getAccountByAddress('carol@example.com'))!;
    assert.equal((await h.messages(carol.id)).length, 1);
  } finally {
    await h.close();
  }
});
