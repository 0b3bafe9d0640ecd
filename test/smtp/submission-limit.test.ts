/**
 * The daily sending limit of submission (`[submission] max_remote_recipients_per_day`): remote
 * recipients one account may send to in 24 hours. Past it RCPT gets 450 4.7.1 (local recipients
 * and other accounts are not affected); a message the queue refused counts nothing; the
 * listener made from the configuration applies it.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { defaultConfig, renderConfigFile } from '../../src/config/config.js';
import { LISTENER_FACTORIES } from '../../src/listeners.js';
import type { SubmitHook } from '../../src/smtp/server/policy-submission.js';
import { loadConfigText } from '../helpers/config.js';
import { makeTestContext, type TestContext } from '../helpers/context.js';
import { dotStuff, startServer } from './harness.js';
import { createMockResolver } from './mock-dns.js';
import { connectSmtp } from './wire.js';

const PLAIN = (user: string, pw: string) => Buffer.from(`\0${user}\0${pw}`).toString('base64');

/** A stand-in queue: takes what it is given, or refuses while `refuse` is set. */
function fakeQueue(): { hook: SubmitHook; queued: string[]; refuse: boolean } {
  const q = {
    queued: [] as string[],
    refuse: false,
    hook: (async ({ recipients }) => {
      if (q.refuse) return { code: 451, enhanced: '4.3.0', lines: ['Queue unavailable'] };
      q.queued.push(...recipients.map((r) => r.address));
      return { code: 250, enhanced: '2.0.0', lines: ['Queued'] };
    }) as SubmitHook,
  };
  return q;
}

/** One submission by `user`; returns each RCPT's code and the final code (null when no RCPT
 * was accepted and DATA was not sent). */
async function submit(port: number, user: string, rcpts: string[]): Promise<{ rcpt: number[]; data: number | null }> {
  const c = await connectSmtp(port);
  try {
    await c.expect(220);
    await c.cmd('EHLO client.example.net', 250);
    await c.cmd(`AUTH PLAIN ${PLAIN(user, `pw-${user}`)}`, 235);
    await c.cmd(`MAIL FROM:<${user}>`, 250);
    const rcpt: number[] = [];
    for (const r of rcpts) rcpt.push((await c.cmd(`RCPT TO:<${r}>`)).code);
    if (!rcpt.includes(250)) return { rcpt, data: null };
    await c.cmd('DATA', 354);
    c.write(dotStuff(`From: ${user}\r\nSubject: s\r\n\r\nhello\r\n`));
    return { rcpt, data: (await c.read()).code };
  } finally {
    c.close();
  }
}

async function users(ctx: TestContext): Promise<void> {
  for (const u of ['bob@example.com', 'carol@example.com']) await ctx.addUser(u, `pw-${u}`);
}

test('past the daily limit a remote RCPT gets 450 4.7.1; local recipients and other accounts go on; refused messages count nothing', async () => {
  const q = fakeQueue();
  const h = await startServer({ mode: 'submission', onSubmit: q.hook, maxRemoteRecipientsPerDay: 3 });
  try {
    await users(h.ctx);
    assert.deepEqual(await submit(h.port, 'bob@example.com', ['a@remote.example', 'b@remote.example']), { rcpt: [250, 250], data: 250 });
    // The queue refuses this one: it is not counted.
    q.refuse = true;
    assert.deepEqual(await submit(h.port, 'bob@example.com', ['z@remote.example']), { rcpt: [250], data: 451 });
    q.refuse = false;
    // One remote recipient left: the second is deferred, the local one is not limited.
    const c = await submit(h.port, 'bob@example.com', ['c@remote.example', 'd@remote.example', 'carol@example.com']);
    assert.deepEqual(c, { rcpt: [250, 450, 250], data: 250 });
    assert.deepEqual(await submit(h.port, 'bob@example.com', ['e@remote.example']), { rcpt: [450], data: null });
    assert.deepEqual(await submit(h.port, 'bob@example.com', ['bob@example.com']), { rcpt: [250], data: 250 });
    assert.deepEqual(await submit(h.port, 'carol@example.com', ['f@remote.example']), { rcpt: [250], data: 250 }, 'another account has its own limit');
    assert.deepEqual(q.queued, ['a@remote.example', 'b@remote.example', 'c@remote.example', 'f@remote.example']);
  } finally {
    await h.close();
  }
});

test('the 450 says why', async () => {
  const q = fakeQueue();
  const h = await startServer({ mode: 'submission', onSubmit: q.hook, maxRemoteRecipientsPerDay: 1 });
  try {
    await users(h.ctx);
    await submit(h.port, 'bob@example.com', ['a@remote.example']);
    const c = await connectSmtp(h.port);
    await c.expect(220);
    await c.cmd('EHLO client.example.net', 250);
    await c.cmd(`AUTH PLAIN ${PLAIN('bob@example.com', 'pw-bob@example.com')}`, 235);
    await c.cmd('MAIL FROM:<bob@example.com>', 250);
    const r = await c.cmd('RCPT TO:<b@remote.example>', 450);
    assert.equal(r.text, '4.7.1 Sending limit reached (1 outside recipients in 24 hours), try again later');
    c.close();
  } finally {
    await h.close();
  }
});

test('[submission] max_remote_recipients_per_day: default, 0 for none, refused when negative, written back, applied by the listener', async () => {
  assert.equal((await loadConfigText('')).submission.maxRemoteRecipientsPerDay, 1000);
  const c = await loadConfigText('[submission]\nmax_remote_recipients_per_day = 0\n');
  assert.equal(c.submission.maxRemoteRecipientsPerDay, 0);
  await assert.rejects(loadConfigText('[submission]\nmax_remote_recipients_per_day = -1\n'), /max_remote_recipients_per_day/);
  assert.match(renderConfigFile(c), /^max_remote_recipients_per_day = 0$/m);

  const ctx = await makeTestContext();
  await users(ctx);
  const config = defaultConfig('mail.example.test');
  config.submission.maxRemoteRecipientsPerDay = 1;
  const q = fakeQueue();
  const server = LISTENER_FACTORIES.submission!(ctx, config, { dataDir: ctx.dataDir, resolver: createMockResolver({}), onSubmit: q.hook })!;
  const port = await server.listen('127.0.0.1', 0);
  try {
    assert.deepEqual(await submit(port, 'bob@example.com', ['a@remote.example', 'b@remote.example']), { rcpt: [250, 450], data: 250 });
  } finally {
    await server.close(0);
    await ctx.cleanup();
  }
});
