/**
 * REQUIRETLS received (RFC 8689): offered in EHLO only once the session is TLS, refused with
 * 530 5.7.10 on a clear session, never offered by LMTP, kept by submission on the queued
 * message (which then goes only over verified TLS to hosts that offer REQUIRETLS), and a report
 * on such a message returns its header only, whatever RET says.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { createSubmitHook } from '../../src/queue/submit-hook.js';
import { makeQueue, mockResolver, testLogger } from '../queue/helpers.js';
import { dotStuff, startServer } from './harness.js';
import { connectSmtp, type SmtpWire } from './wire.js';
import { makeTestContext } from '../helpers/context.js';

const PLAIN = (user: string, pw: string) => Buffer.from(`\0${user}\0${pw}`).toString('base64');

async function ehlo(c: SmtpWire): Promise<string[]> {
  return (await c.cmd('EHLO client.example.net', 250)).lines;
}

async function startTls(c: SmtpWire): Promise<void> {
  await c.cmd('STARTTLS', 220);
  await c.upgrade();
}

test('MX: REQUIRETLS is offered only over TLS; on a clear session MAIL with it is 530 5.7.10', async () => {
  const h = await startServer({ mode: 'mx' });
  try {
    await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const c = await connectSmtp(h.port);
    await c.expect(220);
    assert.ok(!(await ehlo(c)).includes('REQUIRETLS'));
    const clear = await c.cmd('MAIL FROM:<a@sender.example> REQUIRETLS');
    assert.equal(clear.code, 530);
    assert.match(clear.text, /^5\.7\.10 /);
    await startTls(c);
    assert.ok((await ehlo(c)).includes('REQUIRETLS'));
    assert.equal((await c.cmd('MAIL FROM:<a@sender.example> REQUIRETLS=YES')).code, 501);
    assert.equal((await c.cmd('MAIL FROM:<a@sender.example> REQUIRETLS REQUIRETLS')).code, 501);
    await c.cmd('MAIL FROM:<a@sender.example> REQUIRETLS', 250);
    await c.cmd('RCPT TO:<bob@example.com>', 250);
    await c.cmd('DATA', 354);
    c.write(dotStuff('Subject: secret\r\n\r\nhello\r\n'));
    await c.expect(250);
    c.close();
    const bob = (await h.ctx.store.getAccountByAddress('bob@example.com'))!;
    assert.equal((await h.messages(bob.id)).length, 1);
  } finally {
    await h.close();
  }
});

test('LMTP never offers REQUIRETLS and refuses the parameter', async () => {
  const h = await startServer({ mode: 'lmtp' });
  try {
    const c = await connectSmtp(h.port);
    await c.expect(220);
    assert.ok(!(await c.cmd('LHLO client.example.net', 250)).lines.includes('REQUIRETLS'));
    assert.equal((await c.cmd('MAIL FROM:<a@sender.example> REQUIRETLS')).code, 555);
    c.close();
  } finally {
    await h.close();
  }
});

test('submission: a REQUIRETLS message is queued with the requirement', async () => {
  const q = await makeQueue(mockResolver({}), {});
  const h = await startServer({ mode: 'submission', onSubmit: createSubmitHook(q.queue, testLogger()) });
  try {
    await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    for (const requireTls of [true, false]) {
      const c = await connectSmtp(h.port);
      await c.expect(220);
      await ehlo(c);
      await startTls(c);
      await ehlo(c);
      await c.cmd(`AUTH PLAIN ${PLAIN('bob@example.com', 'pw-bob-123456')}`, 235);
      await c.cmd(`MAIL FROM:<bob@example.com>${requireTls ? ' REQUIRETLS' : ''}`, 250);
      await c.cmd('RCPT TO:<dave@example.net>', 250);
      await c.cmd('DATA', 354);
      c.write(dotStuff('From: bob@example.com\r\nSubject: s\r\n\r\nhello\r\n'));
      await c.expect(250);
      c.close();
    }
    const queued = await q.store.listMessages();
    assert.deepEqual(queued.map((m) => m.requireTls).sort(), [false, true]);
  } finally {
    await h.close();
    await q.close();
  }
});

test('a local delivery report on a REQUIRETLS message carries its header only, even with RET=FULL', async () => {
  const ctx = await makeTestContext();
  const sent: string[] = [];
  ctx.reports = async (report) => {
    sent.push(report.toString('latin1'));
  };
  const h2 = await startServer({ mode: 'mx' }, ctx);
  try {
    await ctx.addUser('bob@example.com', 'pw-bob-123456');
    for (const requireTls of [true, false]) {
      const c = await connectSmtp(h2.port);
      await c.expect(220);
      await ehlo(c);
      await startTls(c);
      await ehlo(c);
      await c.cmd(`MAIL FROM:<a@sender.example> RET=FULL${requireTls ? ' REQUIRETLS' : ''}`, 250);
      await c.cmd('RCPT TO:<bob@example.com> NOTIFY=SUCCESS', 250);
      await c.cmd('DATA', 354);
      c.write(dotStuff('Subject: secret\r\n\r\nthe secret body\r\n'));
      await c.expect(250);
      c.close();
    }
    assert.equal(sent.length, 2);
    assert.match(sent[0]!, /Content-Type: text\/rfc822-headers/);
    assert.doesNotMatch(sent[0]!, /the secret body/);
    assert.match(sent[1]!, /Content-Type: message\/rfc822[^]*the secret body/, 'RET=FULL honoured without REQUIRETLS');
  } finally {
    await h2.close();
  }
});
