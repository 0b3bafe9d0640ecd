import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import nodemailer from 'nodemailer';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { startServer } from '../smtp/harness.js';
import { createSubmitHook } from '../../src/queue/submit-hook.js';
import { createDkimSigning } from '../../src/msgauth/dkim-sign.js';
import { dkimDnsRecord, dkimRecordName, generateDkimKeys } from '../../src/msgauth/dkim-keys.js';
import { makeQueue, mockResolver, startSink, testLogger } from './helpers.js';

const DNS = { mx: { 'example.net': [{ exchange: 'mx.example.net', priority: 10 }] }, a: { 'mx.example.net': ['127.0.0.1'] } };

test('submission to a remote recipient: 250 once queued, then delivered DKIM-signed with DSN parameters kept', async () => {
  const sink = await startSink();
  const q = await makeQueue(mockResolver(DNS), { port: sink.port });
  const keys = await generateDkimKeys(q.dir, 'example.com', { rsaBits: 1024 });
  const signed = await makeQueue(mockResolver(DNS), { port: sink.port, dkim: createDkimSigning(q.dir) });
  const h = await startServer({ mode: 'submission', onSubmit: createSubmitHook(signed.queue, testLogger()) });
  try {
    await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: h.port,
      secure: false,
      requireTLS: true,
      tls: { rejectUnauthorized: false },
      auth: { user: 'bob@example.com', pass: 'pw-bob-123456' },
    });
    // nodemailer's typings omit the (supported) dsn option of a message.
    const mail = {
      from: 'Bob <bob@example.com>',
      to: 'dave@example.net',
      subject: 'to the world',
      text: 'hello\n',
      dsn: { id: 'ENV-7', return: 'headers', notify: ['failure', 'delay'], recipient: 'bob@example.com' },
    } as nodemailer.SendMailOptions;
    const info = await transport.sendMail(mail);
    assert.match(info.response, /^250 /);
    const queued = await signed.store.listMessages();
    assert.equal(queued.length, 1, 'queued before the 250');
    assert.equal(sink.received.length, 0);

    await signed.queue.runDue();
    assert.equal(sink.count('dave@example.net'), 1);
    assert.equal(sink.received[0]!.from, 'bob@example.com');
    assert.equal(sink.rcptArgs('dave@example.net')?.NOTIFY, 'FAILURE,DELAY');
    assert.equal(sink.lastMailArgs()?.ENVID, 'ENV-7');
    assert.equal(sink.lastMailArgs()?.RET, 'HDRS');
    const data = sink.received[0]!.data;
    assert.match(data.toString('latin1'), /^Received: /m, 'our trace field travels on');
    const txt = new Map(keys.map((k) => [dkimRecordName(k), [[dkimDnsRecord(k)]]]));
    const result = await dkimVerify(data, {
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
    await h.close();
    await signed.close();
    await q.close();
    await sink.close();
  }
});

test('submission answers 451 with a reference when the queue cannot take the message', async () => {
  const q = await makeQueue(mockResolver(DNS), {});
  await q.store.close(); // the queue's database is gone: enqueue fails
  const h = await startServer({ mode: 'submission', onSubmit: createSubmitHook(q.queue, testLogger()) });
  try {
    await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: h.port,
      secure: false,
      requireTLS: true,
      tls: { rejectUnauthorized: false },
      auth: { user: 'bob@example.com', pass: 'pw-bob-123456' },
    });
    await assert.rejects(
      transport.sendMail({ from: 'bob@example.com', to: 'dave@example.net', subject: 'x', text: 'y' }),
      (err: Error & { responseCode?: number; response?: string }) => {
        assert.equal(err.responseCode, 451);
        assert.match(err.response ?? '', /4\.3\.0 Cannot queue the message now, try again later \(ref /);
        return true;
      },
    );
  } finally {
    await h.close();
    await q.queue.stop();
  }
});
