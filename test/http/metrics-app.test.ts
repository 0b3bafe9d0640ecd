/**
 * /metrics of the whole application: IMAP, POP3 and SMTP commands by name (the MX sessions run in an
 * SMTP worker process, whose counts reach the owner through its tally), and the outbound queue
 * (messages taken in, recipient attempts by result, and at each scrape what waits in it).
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startApp } from '../../src/app.js';
import { createCredentials } from '../../src/auth/password.js';
import { defaultConfig } from '../../src/config/config.js';
import { freePort } from '../helpers/ports.js';
import { openTestStore } from '../helpers/store.js';
import { dotStuff } from '../smtp/harness.js';
import { createMockResolver } from '../smtp/mock-dns.js';
import { connectSmtp } from '../smtp/wire.js';
import { connectImap } from '../helpers/imap-transcript.js';
import { RawPop3 } from '../pop3/pop3-client.js';
import { httpRequest } from './helpers.js';

const PLAIN = (user: string, pw: string) => Buffer.from(`\0${user}\0${pw}`).toString('base64');

/** Scrapes until every pattern matches (the worker's counts come within its tally's delay). */
async function scrapeUntil(port: number, patterns: RegExp[], timeoutMs = 10_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const body = (await httpRequest(port, '/metrics')).body;
    const missing = patterns.filter((p) => !p.test(body));
    if (missing.length === 0) return body;
    if (Date.now() > deadline) assert.fail(`missing from /metrics: ${missing.map(String).join(', ')}\n${body}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

test('/metrics counts IMAP, POP3 and SMTP commands by name and shows the outbound queue', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'facteur-metrics-'));
  const { store, cleanup } = await openTestStore();
  const config = defaultConfig('mail.example.test');
  config.log.level = 'silent';
  config.listen = { http: '127.0.0.1:0', imap: '127.0.0.1:0', pop3: '127.0.0.1:0', smtp: '127.0.0.1:0', submission: '127.0.0.1:0' };
  config.outbound.port = await freePort();
  const resolver = createMockResolver({ mx: { 'remote.example': [{ exchange: 'mx.remote.example', priority: 10 }] }, a: { 'mx.remote.example': ['127.0.0.1'] } });
  const app = await startApp({ dataDir, storeLocation: dataDir, config, store, resolver, log: pino({ level: 'silent' }) });
  const port = (name: string) => app.servers.find((s) => s.name === name)!.port;
  try {
    await store.addDomain('example.com');
    await store.createAccount({ address: 'bob@example.com', ...(await createCredentials('pw-bob-123456')) });

    const imap = await connectImap(port('imap'));
    await imap.expect(/^\* OK/);
    await imap.command('a', 'LOGIN bob@example.com pw-bob-123456');
    await imap.command('b', 'SELECT INBOX');
    await imap.command('c', 'NOOP');
    await imap.command('d', 'NOOP');
    await imap.command('e', 'UID FETCH 1:* (FLAGS)');
    await imap.command('f', 'FROBNICATE', 'BAD');
    await imap.command('g', 'LOGOUT');

    const pop = await RawPop3.connect(port('pop3'));
    await pop.login('bob@example.com', 'pw-bob-123456');
    assert.match(await pop.command('STAT'), /^\+OK/);
    assert.match(await pop.command('QUIT'), /^\+OK/);

    const mx = await connectSmtp(port('smtp'));
    await mx.expect(220);
    await mx.cmd('EHLO client.example.net', 250);
    await mx.cmd('MAIL FROM:<someone@elsewhere.example>', 250);
    await mx.cmd('RCPT TO:<bob@example.com>', 250);
    await mx.cmd('RCPT TO:<nobody@example.com>', 550);
    await mx.cmd('DATA', 354);
    mx.write(dotStuff('Subject: in\r\n\r\nhello\r\n'));
    await mx.expect(250);
    await mx.cmd('QUIT', 221);
    mx.close();

    const sub = await connectSmtp(port('submission'));
    await sub.expect(220);
    await sub.cmd('EHLO client.example.net', 250);
    await sub.cmd(`AUTH PLAIN ${PLAIN('bob@example.com', 'pw-bob-123456')}`, 235);
    await sub.cmd('MAIL FROM:<bob@example.com>', 250);
    await sub.cmd('RCPT TO:<x@remote.example>', 250);
    await sub.cmd('DATA', 354);
    sub.write(dotStuff('From: bob@example.com\r\nTo: x@remote.example\r\nSubject: out\r\n\r\nhello\r\n'));
    await sub.expect(250);
    sub.close();

    const body = await scrapeUntil(port('http'), [
      /^facteur_commands_total\{command="LOGIN",protocol="imap"\} 1$/m,
      /^facteur_commands_total\{command="NOOP",protocol="imap"\} 2$/m,
      /^facteur_commands_total\{command="UID FETCH",protocol="imap"\} 1$/m,
      /^facteur_commands_total\{command="STAT",protocol="pop3"\} 1$/m,
      /^facteur_commands_total\{command="RCPT",protocol="smtp"\} 2$/m,
      /^facteur_commands_total\{command="QUIT",protocol="smtp"\} 1$/m,
      /^facteur_commands_total\{command="AUTH",protocol="submission"\} 1$/m,
      /^facteur_outbound_messages_total\{kind="message"\} 1$/m,
      // The remote MX refuses the connection: deferred, and still waiting.
      /^facteur_outbound_recipients_total\{result="deferred"\} 1$/m,
      /^facteur_outbound_queued_recipients 1$/m,
      /^facteur_outbound_queued_messages 1$/m,
      /^facteur_outbound_held_messages 0$/m,
    ]);
    assert.match(body, /^# TYPE facteur_outbound_queued_recipients gauge$/m);
    assert.doesNotMatch(body, /facteur_outbound_recipients_total\{result="delivered"\}/);
    // An unknown command is not a label value: the set of names stays closed.
    assert.doesNotMatch(body, /FROBNICATE/);
  } finally {
    await app.close(200);
    await cleanup();
    await rm(dataDir, { recursive: true, force: true });
  }
});
