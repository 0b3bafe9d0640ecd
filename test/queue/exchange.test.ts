/**
 * Two mail domains, each with its own submission server, outbound queue, DKIM keys and MX
 * server (the pieces the composition root assembles), exchanging mail over loopback with only
 * DNS stood in for.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import nodemailer from 'nodemailer';
import { startServer, type Harness } from '../smtp/harness.js';
import { createSubmitHook } from '../../src/queue/submit-hook.js';
import { createDkimSigning } from '../../src/msgauth/dkim-sign.js';
import { dkimDnsRecord, dkimRecordName, generateDkimKeys, type DkimKey } from '../../src/msgauth/dkim-keys.js';
import { makeQueue, mockResolver, testLogger, type DnsTable, type QueueHarness } from './helpers.js';

interface Instance {
  domain: string;
  mx: Harness;
  submission: Harness;
  queue: QueueHarness;
  keys: DkimKey[];
}

function send(i: Instance, user: string, password: string, to: string, subject: string) {
  const transport = nodemailer.createTransport({
    host: '127.0.0.1',
    port: i.submission.port,
    secure: false,
    requireTLS: true,
    tls: { rejectUnauthorized: false },
    auth: { user, pass: password },
  });
  return transport.sendMail({ from: user, to, subject, text: `${subject}\n` });
}

test('two domains exchange mail: DKIM, SPF and DMARC pass at each receiver', async () => {
  const table: DnsTable = { mx: {}, a: {}, txt: {} };
  const resolver = mockResolver(table);
  const ports: Record<string, number> = {};
  // Both MX hosts are 127.0.0.1; each queue is told the other's port.
  const a = await startServer({ mode: 'mx', resolver });
  ports['a.example'] = a.port;
  const b = await startServer({ mode: 'mx', resolver });
  ports['b.example'] = b.port;
  const keysA = await generateDkimKeys(a.ctx.dataDir, 'a.example', { rsaBits: 1024 });
  const keysB = await generateDkimKeys(b.ctx.dataDir, 'b.example', { rsaBits: 1024 });
  const queueA = await makeQueue(resolver, { hostname: 'mail.a.example', dkim: createDkimSigning(a.ctx.dataDir), port: ports['b.example'] });
  const queueB = await makeQueue(resolver, { hostname: 'mail.b.example', dkim: createDkimSigning(b.ctx.dataDir), port: ports['a.example'] });
  const subA = await startServer({ mode: 'submission', onSubmit: createSubmitHook(queueA.queue, testLogger()) }, a.ctx);
  const subB = await startServer({ mode: 'submission', onSubmit: createSubmitHook(queueB.queue, testLogger()) }, b.ctx);
  for (const [d, keys] of [['a.example', keysA], ['b.example', keysB]] as const) {
    table.mx![d] = [{ exchange: `mail.${d}`, priority: 10 }];
    table.a![`mail.${d}`] = ['127.0.0.1'];
    table.txt![d] = [['v=spf1 ip4:127.0.0.1 -all']];
    table.txt![`mail.${d}`] = [['v=spf1 ip4:127.0.0.1 -all']];
    table.txt![`_dmarc.${d}`] = [['v=DMARC1; p=reject']];
    for (const k of keys) table.txt![dkimRecordName(k)] = [[dkimDnsRecord(k)]];
  }
  const A: Instance = { domain: 'a.example', mx: a, submission: subA, queue: queueA, keys: keysA };
  const B: Instance = { domain: 'b.example', mx: b, submission: subB, queue: queueB, keys: keysB };
  try {
    await A.mx.ctx.addUser('alice@a.example', 'pw-alice-123456');
    const bob = await B.mx.ctx.addUser('bob@b.example', 'pw-bob-123456');
    const alice = (await A.mx.ctx.store.getAccountByAddress('alice@a.example'))!;

    await send(A, 'alice@a.example', 'pw-alice-123456', 'bob@b.example', 'hello from a');
    await A.queue.queue.runDue();
    const [atB] = await B.mx.messages(bob.id);
    assert.ok(atB, 'delivered to bob at b.example');
    const headB = atB.toString('latin1').slice(0, atB.indexOf('\r\n\r\n'));
    assert.match(headB, /^Subject: hello from a$/m);
    const arB = /^Authentication-Results:.*(?:\r\n[ \t].*)*/m.exec(headB)?.[0] ?? '';
    assert.match(arB, /dkim=pass/, headB);
    assert.match(arB, /spf=pass/, headB);
    assert.match(arB, /dmarc=pass/, headB);

    await send(B, 'bob@b.example', 'pw-bob-123456', 'alice@a.example', 'reply from b');
    await B.queue.queue.runDue();
    const [atA] = await A.mx.messages(alice.id);
    assert.ok(atA, 'delivered to alice at a.example');
    const headA = atA.toString('latin1').slice(0, atA.indexOf('\r\n\r\n'));
    const arA = /^Authentication-Results:.*(?:\r\n[ \t].*)*/m.exec(headA)?.[0] ?? '';
    assert.match(arA, /dkim=pass/, headA);
    assert.match(arA, /spf=pass/, headA);
    assert.match(arA, /dmarc=pass/, headA);
  } finally {
    await subA.server.close(1000);
    await subB.server.close(1000);
    await queueA.close();
    await queueB.close();
    await a.close();
    await b.close();
  }
});
