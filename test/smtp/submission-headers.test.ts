/**
 * Submission's checks and fix-ups on the message itself: author fields the user owns (From,
 * Sender), Bcc removed, Date and Message-ID added (RFC 6409 §8), bare LF made CRLF, and one copy
 * of the same bytes (DKIM-signed once) for local and remote recipients.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import nodemailer from 'nodemailer';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { createDkimSigning } from '../../src/msgauth/dkim-sign.js';
import { dkimDnsRecord, dkimRecordName, generateDkimKeys } from '../../src/msgauth/dkim-keys.js';
import type { SubmitHook } from '../../src/smtp/server/policy-submission.js';
import type { SmtpServerOptions } from '../../src/smtp/server/server.js';
import { connectSmtp, type SmtpWire } from './wire.js';
import { dotStuff, startServer, type Harness } from './harness.js';

const PLAIN = (user: string, pw: string) => Buffer.from(`\0${user}\0${pw}`).toString('base64');

interface Fixture {
  h: Harness;
  /** Messages in carol's INBOX. */
  carol(): Promise<Buffer[]>;
  /** A client authenticated as bob, ready for MAIL FROM. */
  bob(): Promise<SmtpWire>;
}

/** bob@example.com (alias sales@example.com) sends; carol@example.com receives. */
async function fixture(options: Partial<SmtpServerOptions> = {}): Promise<Fixture> {
  const h = await startServer({ mode: 'submission', ...options });
  await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
  const carol = await h.ctx.addUser('carol@example.com', 'pw-carol-123456');
  await h.ctx.store.addAlias('sales@example.com', 'bob@example.com');
  return {
    h,
    carol: () => h.messages(carol.id),
    async bob() {
      const c = await connectSmtp(h.port);
      await c.expect(220);
      await c.cmd('EHLO client.example.net', 250);
      await c.cmd(`AUTH PLAIN ${PLAIN('bob@example.com', 'pw-bob-123456')}`, 235);
      return c;
    },
  };
}

/** One transaction to carol; returns the reply to the end of data. */
async function submit(c: SmtpWire, message: string, from = 'bob@example.com') {
  await c.cmd(`MAIL FROM:<${from}>`, 250);
  await c.cmd('RCPT TO:<carol@example.com>', 250);
  await c.cmd('DATA', 354);
  c.write(dotStuff(message));
  return c.read();
}

test('submission: every From address must be one the user may send as, else 553 5.7.1 after DATA', async () => {
  const f = await fixture();
  try {
    const c = await f.bob();
    const cases: Array<[string, number, RegExp]> = [
      ['From: Carol <carol@example.com>\r\n', 553, /^5\.7\.1 From header address not owned by the user$/],
      ['From: bob@example.com, carol@example.com\r\nSender: bob@example.com\r\n', 553, /^5\.7\.1 From header/],
      ['From: bob@example.com\r\nSender: carol@example.com\r\n', 553, /^5\.7\.1 Sender header address not owned/],
      ['From: Just A Name\r\n', 553, /^5\.7\.1 From header/],
      ['Subject: no author\r\n', 550, /^5\.6\.0 Message has no From header field$/],
      ['From: bob@example.com\r\nFrom: sales@example.com\r\n', 550, /^5\.6\.0 Message has more than one From header field$/],
      ['From: bob@example.com, sales@example.com\r\n', 550, /^5\.6\.0 From header with several addresses needs a Sender header field$/],
      ['From: bob@example.com\r\nSender: bob@example.com\r\nSender: sales@example.com\r\n', 550, /^5\.6\.0 /],
      // Accepted: own address, alias in another case, several authors with a Sender.
      ['From: Bob <bob@example.com>\r\n', 250, /^2\.0\.0 /],
      ['From: "Sales team" <Sales@EXAMPLE.com>\r\n', 250, /^2\.0\.0 /],
      ['From: bob@example.com, sales@example.com\r\nSender: SALES@example.com\r\n', 250, /^2\.0\.0 /],
      ['From: =?utf-8?q?B=C3=B6b?= <bob@example.com>\r\n', 250, /^2\.0\.0 /],
    ];
    let accepted = 0;
    for (const [header, code, text] of cases) {
      const r = await submit(c, `${header}Subject: t\r\n\r\nbody\r\n`);
      assert.equal(r.code, code, `${JSON.stringify(header)} -> ${r.code} ${r.text}`);
      assert.match(r.text, text, header);
      if (code === 250) accepted++;
      // The session goes on after a refusal, and nothing refused was stored.
      assert.equal((await f.carol()).length, accepted, header);
    }
    await c.cmd('QUIT', 221);
  } finally {
    await f.h.close();
  }
});

test('submission: nodemailer sending with another From than its own gets 553 5.7.1 and nothing is delivered', async () => {
  const f = await fixture();
  try {
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: f.h.port,
      secure: false,
      requireTLS: true,
      tls: { rejectUnauthorized: false },
      auth: { user: 'bob@example.com', pass: 'pw-bob-123456' },
    });
    await assert.rejects(
      transport.sendMail({ envelope: { from: 'bob@example.com', to: 'carol@example.com' }, from: 'The CEO <ceo@example.com>', to: 'carol@example.com', subject: 'pay this', text: 'now' }),
      (err: Error & { responseCode?: number; response?: string }) => err.responseCode === 553 && /5\.7\.1 From header address not owned/.test(err.response ?? ''),
    );
    assert.equal((await f.carol()).length, 0);
    const info = await transport.sendMail({ from: 'Sales <sales@example.com>', to: 'carol@example.com', subject: 'offer', text: 'hello' });
    assert.match(info.response, /^250 /);
    assert.equal((await f.carol()).length, 1);
  } finally {
    await f.h.close();
  }
});

test('submission: send-as grants let an account send as a whole domain or one more address', async () => {
  const f = await fixture({ sendAs: { 'BOB@example.com': ['@example.org', 'Team@example.net'] } });
  try {
    const c = await f.bob();
    assert.equal((await submit(c, 'From: anyone@Example.ORG\r\n\r\nb\r\n', 'noreply@example.org')).code, 250);
    assert.equal((await submit(c, 'From: team@example.net\r\n\r\nb\r\n')).code, 250);
    assert.equal((await submit(c, 'From: other@example.net\r\n\r\nb\r\n')).code, 553);
    await c.cmd('MAIL FROM:<other@example.net>', 553);
    // A grant is the account's alone.
    await c.cmd('QUIT', 221);
    await f.h.ctx.addUser('dave@example.com', 'pw-dave-123456');
    const d = await connectSmtp(f.h.port);
    await d.expect(220);
    await d.cmd('EHLO client.example.net', 250);
    await d.cmd(`AUTH PLAIN ${PLAIN('dave@example.com', 'pw-dave-123456')}`, 235);
    await d.cmd('MAIL FROM:<anyone@example.org>', 553);
    await d.cmd('QUIT', 221);
  } finally {
    await f.h.close();
  }
});

test('submission: Bcc is removed, Date and Message-ID are added, and local and remote copies are the same signed bytes', async () => {
  let queued: { raw: Buffer; signed: boolean | undefined } | null = null;
  const onSubmit: SubmitHook = async ({ raw, signed }) => {
    queued = { raw, signed };
    return { code: 250, enhanced: '2.0.0', lines: ['Queued'] };
  };
  const f0 = await startServer({ mode: 'mx' });
  const keys = await generateDkimKeys(f0.ctx.dataDir, 'example.com', { rsaBits: 1024 });
  const f = await fixture({ onSubmit, dkim: createDkimSigning(f0.ctx.dataDir) });
  try {
    const c = await f.bob();
    await c.cmd('MAIL FROM:<bob@example.com>', 250);
    await c.cmd('RCPT TO:<carol@example.com>', 250);
    await c.cmd('RCPT TO:<secret@remote.example>', 250);
    await c.cmd('DATA', 354);
    c.write(dotStuff('From: bob@example.com\r\nTo: carol@example.com\r\nBcc: secret@remote.example,\r\n  other@remote.example\r\nSubject: minutes\r\n\r\nBcc: this line is body\r\n'));
    await c.expect(250);
    await c.cmd('QUIT', 221);
    const [local] = await f.carol();
    assert.ok(local && queued);
    const q = queued as { raw: Buffer; signed: boolean | undefined };
    assert.equal(q.signed, true, 'the queue is told not to sign again');
    assert.equal(local.toString('latin1'), q.raw.toString('latin1'), 'one set of bytes for every recipient');
    const text = local.toString('latin1');
    const head = text.slice(0, text.indexOf('\r\n\r\n') + 2);
    assert.doesNotMatch(head, /^bcc:/im);
    assert.doesNotMatch(head, /secret@|other@remote/);
    assert.match(text, /\r\n\r\nBcc: this line is body\r\n$/);
    assert.match(head, /^Date: \w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d \+0000\r$/m);
    assert.match(head, /^Message-ID: <[0-9a-f]{24}@mail\.example\.test>\r$/m);
    assert.match(head, /^DKIM-Signature: /m);
    assert.ok(head.indexOf('DKIM-Signature:') < head.indexOf('Received:'), 'signature above our trace field');
    const txt = new Map(keys.map((k) => [dkimRecordName(k), [[dkimDnsRecord(k)]]]));
    const result = await dkimVerify(local, {
      resolver: async (name: string) => {
        const v = txt.get(name);
        if (v) return v;
        throw Object.assign(new Error('nx'), { code: 'ENOTFOUND' });
      },
    });
    assert.deepEqual(result.results.map((r) => [r.signingDomain, r.status?.result]), [
      ['example.com', 'pass'],
      ['example.com', 'pass'],
    ]);
  } finally {
    await f.h.close();
    await f0.close();
  }
});

test('submission: a message that has Date and Message-ID keeps them byte for byte', async () => {
  const f = await fixture();
  try {
    const c = await f.bob();
    const message = 'From: bob@example.com\r\nDate: Tue, 3 Feb 2026 10:00:00 +0100\r\nMessage-ID: <mine@client.example.net>\r\nSubject: s\r\n\r\nbody\r\n';
    assert.equal((await submit(c, message)).code, 250);
    await c.cmd('QUIT', 221);
    const [stored] = await f.carol();
    assert.ok(stored!.toString('latin1').endsWith(message), stored!.toString('latin1'));
    assert.equal(stored!.toString('latin1').match(/^(Date|Message-ID):/gim)?.length, 2);
  } finally {
    await f.h.close();
  }
});

test('submission: bare LF line ends in DATA and in BDAT are stored as CRLF', async () => {
  const f = await fixture();
  try {
    const c = await f.bob();
    await c.cmd('MAIL FROM:<bob@example.com>', 250);
    await c.cmd('RCPT TO:<carol@example.com>', 250);
    await c.cmd('DATA', 354);
    c.write('From: bob@example.com\nSubject: lf\nBcc: hidden@example.net\n\nline one\nline two\r\n.\r\n');
    await c.expect(250);
    const body = 'From: bob@example.com\nSubject: bdat\n\nonly LF\n';
    await c.cmd('MAIL FROM:<bob@example.com>', 250);
    await c.cmd('RCPT TO:<carol@example.com>', 250);
    c.write(`BDAT ${Buffer.byteLength(body)} LAST\r\n${body}`);
    await c.expect(250);
    await c.cmd('QUIT', 221);
    const stored = await f.carol();
    assert.equal(stored.length, 2);
    for (const m of stored) {
      const text = m.toString('latin1');
      assert.doesNotMatch(text, /[^\r]\n/, JSON.stringify(text));
      assert.doesNotMatch(text, /^Bcc:/im);
      assert.match(text, /^Message-ID: /m);
    }
    assert.match(stored[0]!.toString('latin1'), /\r\n\r\nline one\r\nline two\r\n$/);
    assert.match(stored[1]!.toString('latin1'), /\r\n\r\nonly LF\r\n$/);
  } finally {
    await f.h.close();
  }
});
