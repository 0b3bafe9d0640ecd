/**
 * Automatic replies (delivery/vacation.ts): the rules of RFC 3834 and RFC 5230, then the whole
 * application (port 25 in an SMTP worker process, submission, the queue, a remote MX played by a
 * sink), and the CLI that sets them.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startApp } from '../../src/app.js';
import { defaultConfig } from '../../src/config/config.js';
import { buildVacationReply, formatVacation, noReplyReason, parseVacation, VACATION_ENTRY, type VacationSettings } from '../../src/delivery/vacation.js';
import { METADATA_LIMITS } from '../../src/imap/server/handlers/metadata.js';
import { parseMessage } from '../../src/mail/parse.js';
import { openTestStore } from '../helpers/store.js';
import { runCli } from '../helpers/cli.js';
import { startSink, type Sink } from '../queue/helpers.js';
import { createMockResolver } from './mock-dns.js';
import { dotStuff } from './harness.js';
import { connectSmtp } from './wire.js';

const SETTINGS: VacationSettings = { subject: null, text: 'Away until Monday.\nÀ lundi.', days: 7, start: null, end: null };

function message(head: string): { header: Buffer; parsed: ReturnType<typeof parseMessage> } {
  const raw = Buffer.from(`${head}\r\n\r\nbody\r\n`);
  return { header: raw.subarray(0, raw.indexOf('\r\n\r\n') + 2), parsed: parseMessage(raw) };
}

test('who gets no automatic reply (RFC 3834 §2, RFC 5230 §4.5)', () => {
  const own = ['bob@example.com', 'sales@example.com'];
  const why = (sender: string, head: string) => noReplyReason({ sender, own, ...message(head) });
  assert.equal(why('jane@sender.example', 'From: jane@sender.example\r\nTo: Bob <BOB@example.com>'), null);
  assert.equal(why('jane@sender.example', 'To: x@y.example\r\nCc: sales@example.com'), null, 'an alias of the account, in Cc');
  assert.equal(why('jane@sender.example', 'To: x@y.example\r\nAuto-Submitted: no'), 'not addressed to the account in To or Cc');
  assert.equal(why('', 'To: bob@example.com'), 'null sender');
  assert.equal(why('MAILER-DAEMON@sender.example', 'To: bob@example.com'), 'sender is a robot address');
  assert.equal(why('list-request@sender.example', 'To: bob@example.com'), 'sender is a robot address');
  assert.equal(why('noreply@sender.example', 'To: bob@example.com'), 'sender is a robot address');
  assert.equal(why('bob@example.com', 'To: bob@example.com'), 'sender is the account itself');
  assert.equal(why('jane@sender.example', 'To: bob@example.com\r\nAuto-Submitted: auto-replied'), 'Auto-Submitted');
  assert.equal(why('jane@sender.example', 'To: bob@example.com\r\nList-Id: <l.example>'), 'mailing list');
  assert.equal(why('jane@sender.example', 'To: bob@example.com\r\nPrecedence: Bulk'), 'Precedence: bulk');
  assert.equal(why('jane@sender.example', 'To: bob@example.com\r\nX-Auto-Response-Suppress: OOF'), 'X-Auto-Response-Suppress');
});

test('settings are checked both ways; the reply is threaded, marked and encoded', () => {
  assert.deepEqual(parseVacation(formatVacation(SETTINGS)), SETTINGS);
  assert.equal(parseVacation(Buffer.from('{"text":""}')), null);
  assert.equal(parseVacation(Buffer.from('{"text":"x","days":0}')), null);
  assert.equal(parseVacation(Buffer.from('not json')), null);
  assert.throws(() => formatVacation({ ...SETTINGS, text: ' ' }), /without text/);
  assert.throws(() => formatVacation({ ...SETTINGS, subject: 'a\r\nBcc: x@y' }), /one line/);
  assert.throws(() => formatVacation({ ...SETTINGS, start: 10, end: 5 }), /before it starts/);
  const { parsed } = message('From: jane@sender.example\r\nTo: bob@example.com\r\nSubject: Réunion\r\nMessage-ID: <m1@sender.example>\r\nReferences: <m0@sender.example>');
  const reply = buildVacationReply({ from: 'bob@example.com', to: 'jane@sender.example', settings: SETTINGS, parsed, hostname: 'mail.example.test', now: new Date(0) }).toString('latin1');
  assert.match(reply, /^From: <bob@example\.com>\r\nTo: <jane@sender\.example>\r\n/);
  assert.match(reply, /^Subject: =\?utf-8\?B\?[A-Za-z0-9+/=]+\?=\r$/m);
  assert.equal(parseMessage(Buffer.from(reply, 'latin1')).subject, 'Auto: Réunion');
  assert.match(reply, /^In-Reply-To: <m1@sender\.example>\r\nReferences: <m0@sender\.example> <m1@sender\.example>\r$/m);
  assert.match(reply, /^Auto-Submitted: auto-replied \(vacation\)\r$/m);
  assert.match(parseMessage(Buffer.from(reply, 'latin1')).text, /À lundi\./);
});

async function arrival(sink: Sink, to: string, timeoutMs = 5000): Promise<Sink['received'][number] | undefined> {
  for (let waited = 0; waited < timeoutMs; waited += 25) {
    const m = sink.received.find((r) => r.to.includes(to));
    if (m) return m;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return undefined;
}

async function send(port: number, from: string, rcpt: string, head: string): Promise<number> {
  const c = await connectSmtp(port);
  try {
    await c.expect(220);
    await c.cmd('EHLO client.sender.example', 250);
    await c.cmd(`MAIL FROM:<${from}>`, 250);
    await c.cmd(`RCPT TO:<${rcpt}>`, 250);
    await c.cmd('DATA', 354);
    c.write(dotStuff(`${head}\r\n\r\nHello.\r\n`));
    return (await c.read()).code;
  } finally {
    c.close();
  }
}

test('the application: one reply per sender and period, from the null sender, not to lists; off when turned off', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'facteur-vacation-'));
  const { store, cleanup } = await openTestStore();
  const sink = await startSink({ starttls: false });
  const config = defaultConfig('mail.example.test');
  config.log.level = 'silent';
  config.listen = { smtp: '127.0.0.1:0' };
  config.outbound.port = sink.port;
  const resolver = createMockResolver({
    mx: { 'sender.example': [{ exchange: 'mx.sender.example', priority: 10 }] },
    a: { 'mx.sender.example': ['127.0.0.1'] },
  });
  await store.addDomain('example.com');
  const bob = await store.createAccount({ address: 'bob@example.com', passwordHash: 'x'.repeat(10) });
  const app = await startApp({ dataDir, storeLocation: dataDir, config, store, resolver, log: pino({ level: 'silent' }) });
  try {
    await store.setMetadata(bob.id, null, [{ name: VACATION_ENTRY, value: formatVacation(SETTINGS) }], METADATA_LIMITS);
    const port = app.servers.find((s) => s.name === 'smtp')!.port;
    assert.equal(await send(port, 'jane@sender.example', 'bob@example.com', 'From: jane@sender.example\r\nTo: bob@example.com\r\nSubject: lunch?\r\nMessage-ID: <q1@sender.example>'), 250);
    const reply = await arrival(sink, 'jane@sender.example');
    assert.ok(reply, 'a reply arrived');
    assert.equal(reply.from, '', 'RFC 3834 §3.3: from the null sender');
    const text = reply.data.toString('latin1');
    assert.match(text, /^Subject: Auto: lunch\?\r$/m);
    assert.match(text, /^In-Reply-To: <q1@sender\.example>\r$/m);
    assert.match(text, /^Auto-Submitted: auto-replied/m);
    // Once per sender and period; never to a list.
    assert.equal(await send(port, 'jane@sender.example', 'bob@example.com', 'From: jane@sender.example\r\nTo: bob@example.com\r\nSubject: again'), 250);
    assert.equal(await send(port, 'list-bounces@sender.example', 'bob@example.com', 'From: list@sender.example\r\nTo: bob@example.com\r\nList-Id: <l.sender.example>'), 250);
    assert.equal(await send(port, 'ann@sender.example', 'bob@example.com', 'From: ann@sender.example\r\nTo: team@sender.example\r\nSubject: bcc'), 250);
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(sink.received.filter((r) => r.to.includes('jane@sender.example')).length, 1);
    assert.equal(sink.received.length, 1, 'no reply to the list or to a Bcc copy');
    // Turned off: no reply to a new sender (the settings are read again within seconds).
    await store.setMetadata(bob.id, null, [{ name: VACATION_ENTRY, value: null }], METADATA_LIMITS);
    await new Promise((resolve) => setTimeout(resolve, 5100));
    assert.equal(await send(port, 'kim@sender.example', 'bob@example.com', 'From: kim@sender.example\r\nTo: bob@example.com'), 250);
    assert.equal(await arrival(sink, 'kim@sender.example', 500), undefined);
  } finally {
    await app.close(200);
    await sink.close();
    await cleanup();
    await rm(dataDir, { recursive: true, force: true });
  }
});

test('CLI: user vacation on, show and off', async () => {
  const dir = join(await mkdtemp(join(tmpdir(), 'facteur-cli-')), 'data');
  try {
    assert.equal((await runCli(['init', '--domain', 'example.test', '--data', dir])).code, 0);
    assert.equal((await runCli(['user', 'add', 'bob@example.test', '--password', 'password123', '--data', dir])).code, 0);
    const file = join(dir, '..', 'away.txt');
    await writeFile(file, 'Back on the 7th.\n');
    const on = await runCli(['user', 'vacation', 'bob@example.test', 'on', '--text-file', file, '--subject', 'Away', '--days', '3', '--end', '2030-01-07', '--data', dir]);
    assert.equal(on.code, 0, on.stderr);
    const show = await runCli(['user', 'vacation', 'bob@example.test', 'show', '--data', dir]);
    assert.match(show.stdout, /vacation reply on, from - until 2030-01-07T00:00:00\.000Z, once every 3 days per sender/);
    assert.match(show.stdout, /^Subject: Away$/m);
    assert.match(show.stdout, /Back on the 7th\./);
    const bad = await runCli(['user', 'vacation', 'bob@example.test', 'on', '--text', 'x', '--days', '0', '--data', dir]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /1 to 365/);
    assert.equal((await runCli(['user', 'vacation', 'bob@example.test', 'off', '--data', dir])).code, 0);
    assert.match((await runCli(['user', 'vacation', 'bob@example.test', 'show', '--data', dir])).stdout, /no vacation reply/);
  } finally {
    await rm(join(dir, '..'), { recursive: true, force: true });
  }
});
