import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { normaliseLineEnds, fromHeaderDomain } from '../../src/queue/outbound-queue.js';
import { resolveDestination, TemporaryDnsError } from '../../src/queue/mx.js';
import { statusFromReply, cleanText } from '../../src/queue/dsn.js';
import { makeQueue, mockResolver, startSink, once, MESSAGE } from './helpers.js';

const DNS = { mx: { 'example.net': [{ exchange: 'mx.example.net', priority: 10 }] }, a: { 'mx.example.net': ['127.0.0.1'] } };

test('the started worker delivers on its own and retries when the backoff delay is over', async () => {
  const sink = await startSink({ onRcpt: (_a, n) => (n === 1 ? [421, '4.4.2 busy'] : null) });
  const h = await makeQueue(mockResolver(DNS), { port: sink.port, retrySchedule: [150] });
  try {
    await h.queue.start();
    const deferred = once(h.queue, 'deferred');
    const delivered = once(h.queue, 'delivered');
    const t0 = Date.now();
    await h.queue.enqueue(MESSAGE, { from: 'alice@example.org', to: ['bob@example.net'] });
    await deferred;
    await delivered;
    assert.ok(Date.now() - t0 >= 150, 'the retry waited for its delay');
    assert.equal(sink.count('bob@example.net'), 1);
  } finally {
    await h.close();
    await sink.close();
  }
});

test('enqueue refuses an envelope without a valid recipient and deduplicates recipients', async () => {
  const sink = await startSink();
  const h = await makeQueue(mockResolver(DNS), { port: sink.port });
  try {
    await assert.rejects(h.queue.enqueue(MESSAGE, { from: 'a@example.org', to: [] }), /without recipients/);
    await assert.rejects(h.queue.enqueue(MESSAGE, { from: 'a@example.org', to: ['not-an-address'] }), /not an address/);
    await h.queue.enqueue(MESSAGE, { from: 'a@example.org', to: ['bob@example.net', 'bob@EXAMPLE.net'] });
    await h.queue.runDue();
    assert.equal(sink.rcpts('bob@example.net'), 1);
  } finally {
    await h.close();
    await sink.close();
  }
});

test('line ends: lone LF and lone CR become CRLF, CRLF input is kept as is', () => {
  assert.equal(normaliseLineEnds(Buffer.from('a\nb\r\nc\rd\n')).toString(), 'a\r\nb\r\nc\r\nd\r\n');
  const clean = Buffer.from('a\r\nb\r\n');
  assert.equal(normaliseLineEnds(clean), clean);
});

test('the DKIM signing domain is the From address domain', () => {
  assert.equal(fromHeaderDomain(Buffer.from('Subject: x\r\nFrom: "A, B" <a@Example.ORG>\r\n\r\nbody')), 'example.org');
  assert.equal(fromHeaderDomain(Buffer.from('From: a@example.com\r\n\r\n')), 'example.com');
  assert.equal(fromHeaderDomain(Buffer.from('Subject: x\r\n\r\nFrom: a@b.c\r\n')), null);
});

test('MX resolution: DNS failure is temporary, an MX without address is temporary, null MX and NXDOMAIN are final', async () => {
  const failing = {
    ...mockResolver({}),
    resolveMx: async () => {
      throw Object.assign(new Error('SERVFAIL'), { code: 'ESERVFAIL' });
    },
  };
  await assert.rejects(resolveDestination(failing, 'example.net'), TemporaryDnsError);
  await assert.rejects(resolveDestination(mockResolver({ mx: DNS.mx }), 'example.net'), TemporaryDnsError);
  assert.deepEqual(await resolveDestination(mockResolver({ mx: { 'x.test': [{ exchange: '.', priority: 0 }] } }), 'x.test'), { kind: 'null-mx' });
  assert.equal((await resolveDestination(mockResolver({}), 'nx.test')).kind, 'no-domain');
  const dest = await resolveDestination(
    mockResolver({
      mx: { 'x.test': [{ exchange: 'B.x.test.', priority: 5 }, { exchange: 'a.x.test', priority: 5 }, { exchange: 'c.x.test', priority: 1 }] },
      a: { 'a.x.test': ['192.0.2.1'], 'b.x.test': ['192.0.2.2'], 'c.x.test': ['192.0.2.3'] },
      aaaa: { 'c.x.test': ['2001:db8::3'] },
    }),
    'x.test',
    { shuffle: (x) => [...x].sort() },
  );
  assert.ok(dest.kind === 'hosts');
  assert.deepEqual(dest.hosts.map((h) => [h.name, h.addresses]), [
    ['c.x.test', ['192.0.2.3', '2001:db8::3']],
    ['a.x.test', ['192.0.2.1']],
    ['b.x.test', ['192.0.2.2']],
  ]);
});

test('report fields: status from the enhanced code or the basic one; remote text flattened and bounded', () => {
  assert.equal(statusFromReply('550 5.1.1 no such user', '5.0.0'), '5.1.1');
  assert.equal(statusFromReply('550-5.7.1 blocked', '5.0.0'), '5.7.1');
  assert.equal(statusFromReply('452 mailbox full', '4.0.0'), '4.0.0');
  assert.equal(statusFromReply('connection reset', '4.4.1'), '4.4.1');
  assert.equal(cleanText('a\r\nInjected: x\u0000é'), 'a Injected: x??');
  assert.equal(cleanText('x'.repeat(600)).length, 515);
});

test('a remote that sends endless text without a line end is cut off and the mail deferred', async () => {
  const { createServer } = await import('node:net');
  let closedByClient = false;
  const evil = createServer((socket) => {
    socket.on('error', () => {});
    socket.on('close', () => (closedByClient = true));
    socket.write('220-' + 'x'.repeat(200 * 1024));
  });
  await new Promise<void>((r) => evil.listen(0, '127.0.0.1', () => r()));
  const port = (evil.address() as { port: number }).port;
  const h = await makeQueue(mockResolver(DNS), { port });
  try {
    const { id } = await h.queue.enqueue(MESSAGE, { from: 'alice@example.org', to: ['bob@example.net'] });
    await h.queue.runDue();
    assert.match((await h.store.getMessage(id))?.recipients[0]?.lastError ?? '', /^451 4\.4\.1 .*replies over the limit/);
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(closedByClient, 'connection closed');
  } finally {
    await h.close();
    await new Promise<void>((r) => evil.close(() => r()));
  }
});
