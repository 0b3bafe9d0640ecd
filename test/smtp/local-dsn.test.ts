/**
 * Delivery status notifications of local delivery (RFC 3461, 3464; src/delivery/local.ts): a
 * "delivered" report when a recipient asked NOTIFY=SUCCESS, a "failed" one for a recipient that
 * was not stored while the message was acknowledged anyway (another recipient was stored, or
 * submission queued the remote ones), each sent before the 250; none to the null sender, none
 * from LMTP (its client reports), none when NOTIFY says otherwise. Over MX in this process and in
 * an SMTP worker process, LMTP, submission, and the application (into the sender's INBOX).
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startApp } from '../../src/app.js';
import { defaultConfig } from '../../src/config/config.js';
import { createSmtpWorkers } from '../../src/smtp/worker/pool.js';
import { makeTestContext, type TestContext } from '../helpers/context.js';
import { freePort } from '../helpers/ports.js';
import { openTestStore } from '../helpers/store.js';
import { queueDbPath } from '../../src/queue/admin.js';
import { openSqliteQueueStore } from '../../src/queue/sqlite-store.js';
import { createMockResolver } from './mock-dns.js';
import { dotStuff, mxWorkerOptions, startServer } from './harness.js';
import { connectSmtp, type SmtpWire } from './wire.js';

const PLAIN = (user: string, pw: string) => Buffer.from(`\0${user}\0${pw}`).toString('base64');
const MESSAGE = 'From: sender@example.com\r\nTo: bob@example.com\r\nSubject: dsn test\r\nMessage-ID: <dsn-1@example.com>\r\n\r\nThe body line.\r\n';

interface Sent {
  report: string;
  to: string;
}

/** A test context whose reports are kept, in the order sent. */
async function reportingContext(): Promise<{ ctx: TestContext; sent: Sent[] }> {
  const ctx = await makeTestContext();
  const sent: Sent[] = [];
  ctx.reports = async (report, to) => {
    sent.push({ report: report.toString('latin1'), to });
  };
  await ctx.addUser('bob@example.com', 'pw-bob-123456');
  await ctx.addUser('carol@example.com', 'pw-carol-123456');
  return { ctx, sent };
}

/** Carol's quota lets an RCPT without SIZE through but no message in. */
async function fillCarol(ctx: TestContext): Promise<void> {
  const carol = (await ctx.store.getAccountByAddress('carol@example.com'))!;
  await ctx.store.updateAccount(carol.id, { quotaBytes: 10 });
}

/** One transaction; returns the reply to the end of data and the reports sent by then. */
async function transaction(port: number, sent: Sent[], mail: string, rcpts: string[], hello = 'EHLO'): Promise<{ code: number; text: string; before: number }> {
  const c: SmtpWire = await connectSmtp(port);
  try {
    await c.expect(220);
    await c.cmd(`${hello} client.example.net`, 250);
    await c.cmd(mail, 250);
    for (const r of rcpts) await c.cmd(r, 250);
    await c.cmd('DATA', 354);
    c.write(dotStuff(MESSAGE));
    const r = await c.read();
    // LMTP: one reply per recipient; the first is enough here.
    return { code: r.code, text: r.text, before: sent.length };
  } finally {
    c.close();
  }
}

/** A submission server whose remote recipients are "queued" into the returned list. */
async function startSubmission(ctx: TestContext): Promise<{ h: Awaited<ReturnType<typeof startServer>>; queued: string[] }> {
  const queued: string[] = [];
  const h = await startServer(
    {
      mode: 'submission',
      onSubmit: async ({ recipients }) => {
        queued.push(...recipients.map((r) => r.address));
        return { code: 250, enhanced: '2.0.0', lines: ['Queued'] };
      },
    },
    ctx,
  );
  return { h, queued };
}

/** Bob submits one message to `rcpts` (RCPT lines); returns the code of the reply to the data. */
async function submit(port: number, rcpts: string[]): Promise<number> {
  const c = await connectSmtp(port);
  try {
    await c.expect(220);
    await c.cmd('EHLO client.example.net', 250);
    await c.cmd(`AUTH PLAIN ${PLAIN('bob@example.com', 'pw-bob-123456')}`, 235);
    await c.cmd('MAIL FROM:<bob@example.com>', 250);
    for (const r of rcpts) await c.cmd(r, 250);
    await c.cmd('DATA', 354);
    c.write(dotStuff('From: bob@example.com\r\nTo: carol@example.com\r\nSubject: sub\r\n\r\nhello\r\n'));
    return (await c.read()).code;
  } finally {
    c.close();
  }
}

/** The per-recipient field groups of a report's message/delivery-status part. */
function recipientsOf(report: string): Array<Record<string, string>> {
  const status = /Content-Type: message\/delivery-status\r\n[^]*?\r\n\r\n([^]*?)\r\n--/.exec(report)?.[1] ?? '';
  return status
    .split('\r\n\r\n')
    .slice(1)
    .map((group) => Object.fromEntries(group.split('\r\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()])));
}

test('MX: NOTIFY=SUCCESS gets a "delivered" report before the 250, with ENVID, ORCPT and the header only', async () => {
  const { ctx, sent } = await reportingContext();
  const h = await startServer({ mode: 'mx' }, ctx);
  try {
    const r = await transaction(h.port, sent, 'MAIL FROM:<sender@example.com> ENVID=env-42', ['RCPT TO:<bob@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.com']);
    assert.equal(r.code, 250, r.text);
    assert.equal(r.before, 1, 'the report is sent before the 250');
    const [s] = sent;
    assert.equal(s!.to, 'sender@example.com');
    assert.match(s!.report, /^Content-Type: multipart\/report; report-type=delivery-status/m);
    assert.match(s!.report, /^Original-Envelope-Id: env-42\r$/m);
    assert.deepEqual(
      recipientsOf(s!.report).map((g) => [g['Final-Recipient'], g['Original-Recipient'], g.Action, g.Status]),
      [['rfc822; bob@example.com', 'rfc822;bob@example.com', 'delivered', '2.0.0']],
    );
    // Without RET, a success report carries the header only.
    assert.match(s!.report, /Content-Type: text\/rfc822-headers\r\nContent-Description: Message header\r\n/);
    assert.match(s!.report, /^Subject: Delivery Status Notification\r$/m);
    assert.match(s!.report, /Subject: dsn test/);
    assert.doesNotMatch(s!.report, /The body line/);
    assert.equal((await h.messages((await ctx.store.getAccountByAddress('bob@example.com'))!.id)).length, 1);
  } finally {
    await h.close();
  }
});

test('MX: no report without NOTIFY=SUCCESS, none to the null sender, none when everything failed', async () => {
  const { ctx, sent } = await reportingContext();
  await fillCarol(ctx);
  const h = await startServer({ mode: 'mx' }, ctx);
  try {
    assert.equal((await transaction(h.port, sent, 'MAIL FROM:<sender@example.com>', ['RCPT TO:<bob@example.com>'])).code, 250);
    assert.equal((await transaction(h.port, sent, 'MAIL FROM:<sender@example.com>', ['RCPT TO:<bob@example.com> NOTIFY=FAILURE'])).code, 250);
    assert.equal((await transaction(h.port, sent, 'MAIL FROM:<>', ['RCPT TO:<bob@example.com> NOTIFY=SUCCESS'])).code, 250);
    // Carol alone: the 452 leaves the message with the client, which reports if it must.
    assert.equal((await transaction(h.port, sent, 'MAIL FROM:<sender@example.com>', ['RCPT TO:<carol@example.com>'])).code, 452);
    assert.deepEqual(sent, []);
  } finally {
    await h.close();
  }
});

test('MX: a recipient not stored while another was gets a "failed" report (5.2.2), unless NOTIFY=NEVER', async () => {
  const { ctx, sent } = await reportingContext();
  await fillCarol(ctx);
  const h = await startServer({ mode: 'mx' }, ctx);
  try {
    const r = await transaction(h.port, sent, 'MAIL FROM:<sender@example.com> RET=HDRS', ['RCPT TO:<bob@example.com> NOTIFY=SUCCESS', 'RCPT TO:<carol@example.com>']);
    assert.equal(r.code, 250, r.text);
    assert.equal(r.before, 1);
    assert.deepEqual(
      recipientsOf(sent[0]!.report).map((g) => [g['Final-Recipient'], g.Action, g.Status, g['Diagnostic-Code']]),
      [
        ['rfc822; bob@example.com', 'delivered', '2.0.0', undefined],
        ['rfc822; carol@example.com', 'failed', '5.2.2', 'smtp; 552 5.2.2 Mailbox full'],
      ],
    );
    assert.match(sent[0]!.report, /^Subject: Undelivered Mail Returned to Sender\r$/m);
    assert.match(sent[0]!.report, /Content-Type: text\/rfc822-headers/, 'RET=HDRS');

    // Without RET a failure report returns the whole message.
    const r2 = await transaction(h.port, sent, 'MAIL FROM:<sender@example.com>', ['RCPT TO:<bob@example.com>', 'RCPT TO:<carol@example.com> NOTIFY=FAILURE']);
    assert.equal(r2.code, 250);
    assert.equal(sent.length, 2);
    assert.deepEqual(recipientsOf(sent[1]!.report).map((g) => g.Action), ['failed']);
    assert.match(sent[1]!.report, /Content-Type: message\/rfc822[^]*The body line/);

    const r3 = await transaction(h.port, sent, 'MAIL FROM:<sender@example.com>', ['RCPT TO:<bob@example.com>', 'RCPT TO:<carol@example.com> NOTIFY=NEVER']);
    assert.equal(r3.code, 250);
    assert.equal(sent.length, 2, 'NOTIFY=NEVER: no report');
  } finally {
    await h.close();
  }
});

test('LMTP: no reports (each recipient has its reply; the client reports)', async () => {
  const { ctx, sent } = await reportingContext();
  await fillCarol(ctx);
  const h = await startServer({ mode: 'lmtp' }, ctx);
  try {
    const r = await transaction(h.port, sent, 'MAIL FROM:<sender@example.com>', ['RCPT TO:<bob@example.com> NOTIFY=SUCCESS', 'RCPT TO:<carol@example.com>'], 'LHLO');
    assert.equal(r.code, 250);
    // Let the second reply (carol's 452) come and go.
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(sent, []);
  } finally {
    await h.close();
  }
});

test('MX in an SMTP worker process: the reports are made by the owner, before the 250', async () => {
  const { ctx, sent } = await reportingContext();
  await fillCarol(ctx);
  const server = createSmtpWorkers(ctx, mxWorkerOptions());
  const port = await server.listen('127.0.0.1', 0);
  try {
    const r = await transaction(port, sent, 'MAIL FROM:<sender@example.com> ENVID=w1', ['RCPT TO:<bob@example.com> NOTIFY=SUCCESS ORCPT=rfc822;b@example.com', 'RCPT TO:<carol@example.com>']);
    assert.equal(r.code, 250, r.text);
    assert.equal(r.before, 1);
    assert.match(sent[0]!.report, /^Original-Envelope-Id: w1\r$/m);
    assert.deepEqual(
      recipientsOf(sent[0]!.report).map((g) => [g['Final-Recipient'], g['Original-Recipient'], g.Action, g.Status]),
      [
        ['rfc822; bob@example.com', 'rfc822;b@example.com', 'delivered', '2.0.0'],
        ['rfc822; carol@example.com', undefined, 'failed', '5.2.2'],
      ],
    );
    assert.equal((await transaction(port, sent, 'MAIL FROM:<>', ['RCPT TO:<bob@example.com> NOTIFY=SUCCESS'])).code, 250);
    assert.equal(sent.length, 1);
  } finally {
    await server.close(1000);
    await ctx.cleanup();
  }
});

test('submission: NOTIFY=SUCCESS to a local recipient is reported; a local recipient not stored beside queued remote ones gets a "failed" report', async () => {
  const { ctx, sent } = await reportingContext();
  await fillCarol(ctx);
  const { h, queued } = await startSubmission(ctx);
  try {
    assert.equal(await submit(h.port, ['RCPT TO:<bob@example.com> NOTIFY=SUCCESS']), 250);
    assert.equal(sent.length, 1);
    assert.equal(sent[0]!.to, 'bob@example.com');
    assert.deepEqual(recipientsOf(sent[0]!.report).map((g) => g.Action), ['delivered']);

    // Carol alone: refused (452), nothing to report.
    assert.equal(await submit(h.port, ['RCPT TO:<carol@example.com>']), 452);
    assert.equal(sent.length, 1);

    // Carol beside a remote recipient: queued, so 250; carol is reported as failed.
    assert.equal(await submit(h.port, ['RCPT TO:<x@remote.example>', 'RCPT TO:<carol@example.com>']), 250);
    assert.deepEqual(queued, ['x@remote.example']);
    assert.equal(sent.length, 2);
    assert.deepEqual(recipientsOf(sent[1]!.report).map((g) => [g['Final-Recipient'], g.Action, g.Status]), [['rfc822; carol@example.com', 'failed', '5.2.2']]);
  } finally {
    await h.close();
  }
});

test('the application: a report to a local sender lands in their INBOX through the queue', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'facteur-dsn-'));
  const { store, cleanup } = await openTestStore();
  const config = defaultConfig('mail.example.test');
  config.log.level = 'silent';
  config.listen = { smtp: '127.0.0.1:0' };
  // Port 25 authenticates messages: the sender's SPF passes, so a success report is owed.
  const resolver = createMockResolver({ txt: { 'example.com': 'v=spf1 ip4:127.0.0.1 -all' } });
  const app = await startApp({ dataDir, storeLocation: dataDir, config, store, resolver, log: pino({ level: 'silent' }) });
  try {
    await store.addDomain('example.com');
    const hash = 'x'.repeat(10);
    const alice = await store.createAccount({ address: 'alice@example.com', passwordHash: hash });
    await store.createAccount({ address: 'bob@example.com', passwordHash: hash });
    const port = app.servers.find((s) => s.name === 'smtp')!.port;
    const r = await transaction(port, [], 'MAIL FROM:<alice@example.com>', ['RCPT TO:<bob@example.com> NOTIFY=SUCCESS']);
    assert.equal(r.code, 250, r.text);
    const inbox = (await store.getMailbox(alice.id, 'INBOX'))!;
    const entries = await store.listEntries(inbox.id);
    assert.equal(entries.length, 1);
    const report = (await store.readBlob(entries[0]!.blobHash)).toString('latin1');
    assert.match(report, /^From: Mail Delivery System <MAILER-DAEMON@mail\.example\.test>\r$/m);
    assert.deepEqual(recipientsOf(report).map((g) => [g['Final-Recipient'], g.Action]), [['rfc822; bob@example.com', 'delivered']]);
    assert.match(await app.ctx.metrics!.render(), /^facteur_delivery_reports_total\{action="delivered"\} 1$/m);
  } finally {
    await app.close(200);
    await cleanup();
    await rm(dataDir, { recursive: true, force: true });
  }
});

test('a report that cannot be sent is logged; the delivery still stands (a 4xx would duplicate it)', async () => {
  const { ctx } = await reportingContext();
  const errors: unknown[] = [];
  ctx.reports = async () => {
    throw new Error('queue unavailable');
  };
  ctx.log = Object.assign(Object.create(ctx.log) as typeof ctx.log, { error: (...args: unknown[]) => void errors.push(args) });
  const h = await startServer({ mode: 'mx' }, ctx);
  try {
    const r = await transaction(h.port, [], 'MAIL FROM:<sender@example.com>', ['RCPT TO:<bob@example.com> NOTIFY=SUCCESS']);
    assert.equal(r.code, 250, r.text);
    assert.equal((await h.messages((await ctx.store.getAccountByAddress('bob@example.com'))!.id)).length, 1);
    assert.equal(errors.length, 1);
    assert.match(JSON.stringify(errors[0]), /delivery status notification could not be sent/);
  } finally {
    await h.close();
  }
});

test('submission: an unexpected store failure after the remote recipients were queued is 250 and a "failed" report (5.3.0), not a 451 that would duplicate them', async () => {
  const { ctx, sent } = await reportingContext();
  const store = ctx.store;
  // Fault injection: every delivery fails as a broken disk would; the rest of the store works.
  ctx.store = new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'deliver') return async () => Promise.reject(new Error('disk on fire'));
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  const { h, queued } = await startSubmission(ctx);
  try {
    assert.equal(await submit(h.port, ['RCPT TO:<x@remote.example>', 'RCPT TO:<carol@example.com> NOTIFY=FAILURE']), 250);
    assert.deepEqual(queued, ['x@remote.example']);
    assert.equal(sent.length, 1);
    assert.deepEqual(recipientsOf(sent[0]!.report).map((g) => [g['Final-Recipient'], g.Action, g.Status]), [['rfc822; carol@example.com', 'failed', '5.3.0']]);
  } finally {
    ctx.store = store;
    await h.close();
  }
});

test('the application: a report its local sender cannot store (over quota) is queued, not dropped', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'facteur-dsn-'));
  const { store, cleanup } = await openTestStore();
  const config = defaultConfig('mail.example.test');
  config.log.level = 'silent';
  config.listen = { smtp: '127.0.0.1:0' };
  // The domain's MX refuses connections here: the queued report waits (deferred).
  config.outbound.port = await freePort();
  const resolver = createMockResolver({
    mx: { 'example.com': [{ exchange: 'mx.example.com', priority: 10 }] },
    a: { 'mx.example.com': ['127.0.0.1'] },
    txt: { 'example.com': 'v=spf1 ip4:127.0.0.1 -all' },
  });
  const app = await startApp({ dataDir, storeLocation: dataDir, config, store, resolver, log: pino({ level: 'silent' }) });
  let closed = false;
  try {
    await store.addDomain('example.com');
    const hash = 'x'.repeat(10);
    const alice = await store.createAccount({ address: 'alice@example.com', passwordHash: hash });
    await store.createAccount({ address: 'bob@example.com', passwordHash: hash });
    await store.updateAccount(alice.id, { quotaBytes: 1 });
    const port = app.servers.find((s) => s.name === 'smtp')!.port;
    const r = await transaction(port, [], 'MAIL FROM:<alice@example.com>', ['RCPT TO:<bob@example.com> NOTIFY=SUCCESS']);
    assert.equal(r.code, 250, r.text);
    assert.equal((await store.listEntries((await store.getMailbox(alice.id, 'INBOX'))!.id)).length, 0);
    await app.close(200);
    closed = true;
    const queue = openSqliteQueueStore(queueDbPath(dataDir));
    try {
      const queued = await queue.listMessages();
      assert.deepEqual(queued.map((m) => [m.sender, m.isReport, m.recipients.map((x) => x.address)]), [['', true, ['alice@example.com']]]);
    } finally {
      await queue.close();
    }
  } finally {
    if (!closed) await app.close(200);
    await cleanup();
    await rm(dataDir, { recursive: true, force: true });
  }
});

test('MX with message authentication: a success report goes only to a MAIL FROM that SPF verified (no backscatter)', async () => {
  const { ctx, sent } = await reportingContext();
  const resolver = createMockResolver({ txt: { 'verified.example': 'v=spf1 ip4:127.0.0.1 -all', 'forged.example': 'v=spf1 -all' } });
  const h = await startServer({ mode: 'mx', resolver }, ctx);
  try {
    const ok = await transaction(h.port, sent, 'MAIL FROM:<a@verified.example>', ['RCPT TO:<bob@example.com> NOTIFY=SUCCESS']);
    assert.equal(ok.code, 250, ok.text);
    assert.equal(sent.length, 1);
    assert.equal(sent[0]!.to, 'a@verified.example');
    const forged = await transaction(h.port, sent, 'MAIL FROM:<a@forged.example>', ['RCPT TO:<bob@example.com> NOTIFY=SUCCESS']);
    assert.equal(forged.code, 250, 'delivered all the same');
    assert.equal(sent.length, 1, 'no report to a sender SPF did not verify');
  } finally {
    await h.close();
  }
});
