import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { connect } from 'node:net';
import nodemailer from 'nodemailer';
import { scramClient } from '../sasl/scram-client.js';
import { SmtpWire, connectSmtp } from './wire.js';
import { dotStuff, startServer } from './harness.js';

const PLAIN = (user: string, pw: string) => Buffer.from(`\0${user}\0${pw}`).toString('base64');

/** A client whose address differs from the server's (127.0.0.2 -> 127.0.0.1): not "local". */
async function connectRemote(port: number): Promise<SmtpWire> {
  const socket = connect({ port, host: '127.0.0.1', localAddress: '127.0.0.2' });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  return new SmtpWire(socket);
}

test('submission: AUTH only after STARTTLS for a remote client, then PLAIN succeeds', async () => {
  const h = await startServer({ mode: 'submission' });
  try {
    await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const c = await connectRemote(h.port);
    await c.expect(220);
    const e1 = await c.cmd('EHLO client.example.net', 250);
    assert.ok(!e1.lines.some((l) => l.startsWith('AUTH')), 'no AUTH before TLS');
    const r = await c.cmd(`AUTH PLAIN ${PLAIN('bob@example.com', 'pw-bob-123456')}`, 538);
    assert.match(r.text, /^5\.7\.11 /);
    await c.cmd('AUTH SCRAM-SHA-256', 538);
    await c.cmd('MAIL FROM:<bob@example.com>', 530);
    await c.cmd('STARTTLS', 220);
    await c.upgrade();
    const e2 = await c.cmd('EHLO client.example.net', 250);
    assert.ok(e2.lines.some((l) => /^AUTH .*PLAIN/.test(l)), e2.text);
    await c.cmd(`AUTH PLAIN ${PLAIN('bob@example.com', 'wrong-password')}`, 535);
    await c.cmd(`AUTH PLAIN ${PLAIN('bob@example.com', 'pw-bob-123456')}`, 235);
    await c.cmd('MAIL FROM:<bob@example.com>', 250);
    c.close();
  } finally {
    await h.close();
  }
});

test('submission: the sender must be an address the account owns (553 5.7.1), aliases included', async () => {
  const h = await startServer({ mode: 'submission' });
  try {
    await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    await h.ctx.addUser('carol@example.com', 'pw-carol-123456');
    await h.ctx.store.addAlias('sales@example.com', 'bob@example.com');
    const c = await connectSmtp(h.port);
    await c.expect(220);
    await c.cmd('EHLO client.example.net', 250);
    // AUTH LOGIN, step by step (local client: allowed without TLS)
    await c.cmd('AUTH LOGIN', 334);
    await c.cmd(Buffer.from('bob@example.com').toString('base64'), 334);
    await c.cmd(Buffer.from('pw-bob-123456').toString('base64'), 235);
    const r = await c.cmd('MAIL FROM:<carol@example.com>', 553);
    assert.match(r.text, /^5\.7\.1 /);
    await c.cmd('MAIL FROM:<>', 553);
    await c.cmd('MAIL FROM:<Sales@Example.com>', 250);
    c.close();
  } finally {
    await h.close();
  }
});

test('submission: local recipients are delivered, remote ones answer 451 4.3.0 until the queue exists', async () => {
  const h = await startServer({ mode: 'submission' });
  try {
    await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const carol = await h.ctx.addUser('carol@example.com', 'pw-carol-123456');
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: h.port,
      secure: false,
      requireTLS: true,
      tls: { rejectUnauthorized: false },
      auth: { user: 'bob@example.com', pass: 'pw-bob-123456' },
    });
    await transport.sendMail({ from: 'bob@example.com', to: 'carol@example.com', subject: 'local', text: 'hi' });
    const [m] = await h.messages(carol.id);
    assert.match(m!.toString(), /with ESMTPSA id/);
    await assert.rejects(
      transport.sendMail({ from: 'bob@example.com', to: 'someone@remote.example', subject: 'remote', text: 'hi' }),
      (err: Error & { responseCode?: number; response?: string }) => err.responseCode === 451 && /4\.3\.0 Outbound delivery not configured/.test(err.response ?? ''),
    );
    assert.equal((await h.messages(carol.id)).length, 1);
  } finally {
    await h.close();
  }
});

test('submission: the onSubmit hook receives remote recipients and the message', async () => {
  const seen: string[] = [];
  const h = await startServer({
    mode: 'submission',
    onSubmit: async ({ recipients, raw }) => {
      seen.push(...recipients.map((r) => r.address));
      assert.match(raw.toString(), /^Received: from /);
      return { code: 250, enhanced: '2.0.0', lines: ['Queued'] };
    },
  });
  try {
    await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const c = await connectSmtp(h.port);
    await c.expect(220);
    await c.cmd('EHLO client.example.net', 250);
    await c.cmd(`AUTH PLAIN ${PLAIN('bob@example.com', 'pw-bob-123456')}`, 235);
    await c.cmd('MAIL FROM:<bob@example.com>', 250);
    await c.cmd('RCPT TO:<x@remote.example>', 250);
    await c.cmd('DATA', 354);
    c.write(dotStuff('From: bob@example.com\r\nSubject: out\r\n\r\nbody\r\n'));
    await c.expect(250);
    assert.deepEqual(seen, ['x@remote.example']);
    c.close();
  } finally {
    await h.close();
  }
});

test('submission on implicit TLS (465) accepts AUTH at once', async () => {
  const h = await startServer({ mode: 'submission', implicitTls: true });
  try {
    await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: h.port,
      secure: true,
      tls: { rejectUnauthorized: false },
      auth: { user: 'bob@example.com', pass: 'pw-bob-123456' },
    });
    const bob = await h.ctx.store.getAccountByAddress('bob@example.com');
    await transport.sendMail({ from: 'bob@example.com', to: 'bob@example.com', subject: 'self', text: 'hi' });
    assert.equal((await h.messages(bob!.id)).length, 1);
  } finally {
    await h.close();
  }
});

test('submission: SCRAM-SHA-256 works, and the server-final proof comes in a last 334', async () => {
  const h = await startServer({ mode: 'submission' });
  try {
    await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    // The first password login stores the SCRAM verifier.
    const first = await connectSmtp(h.port);
    await first.expect(220);
    await first.cmd('EHLO client.example.net', 250);
    await first.cmd(`AUTH PLAIN ${PLAIN('bob@example.com', 'pw-bob-123456')}`, 235);
    first.close();
    const c = await connectRemote(h.port);
    await c.expect(220);
    await c.cmd('EHLO client.example.net', 250);
    await c.cmd('STARTTLS', 220);
    await c.upgrade();
    await c.cmd('EHLO client.example.net', 250);
    const client = scramClient('bob@example.com', 'pw-bob-123456');
    const serverFirst = await c.cmd(`AUTH SCRAM-SHA-256 ${client.clientFirst.toString('base64')}`, 334);
    const serverFinal = await c.cmd(client.final(Buffer.from(serverFirst.text, 'base64')).toString('base64'), 334);
    assert.deepEqual(Buffer.from(serverFinal.text, 'base64'), client.expectedServerFinal());
    await c.cmd('', 235);
    await c.cmd('MAIL FROM:<bob@example.com>', 250);
    c.close();
  } finally {
    await h.close();
  }
});
