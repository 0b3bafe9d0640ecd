import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { createDkimSigning } from '../../src/msgauth/dkim-sign.js';
import { dkimDnsRecord, dkimRecordName, generateDkimKeys } from '../../src/msgauth/dkim-keys.js';
import { makeQueue, mockResolver, startSink, once, MESSAGE, type DnsTable } from './helpers.js';

const MINUTE = 60_000;

const EXAMPLE_NET: DnsTable = {
  mx: { 'example.net': [{ exchange: 'mx.example.net', priority: 10 }] },
  a: { 'mx.example.net': ['127.0.0.1'] },
};

/** Splits a multipart body on its boundary (enough to check a report's structure). */
function parts(report: string): string[] {
  const b = /boundary="([^"]+)"/.exec(report)?.[1];
  assert.ok(b, 'report has a boundary');
  const segments = report.split(`--${b}`);
  assert.match(segments[segments.length - 1]!, /^--\r\n$/, 'closing boundary');
  return segments.slice(1, -1);
}

test('a message goes to the MX over STARTTLS, bare LF normalised to CRLF, and leaves the queue', async () => {
  const sink = await startSink();
  const h = await makeQueue(mockResolver(EXAMPLE_NET), { port: sink.port });
  try {
    const lf = Buffer.from(MESSAGE.toString('latin1').replace(/\r\n/g, '\n'), 'latin1');
    await h.queue.enqueue(lf, { from: 'alice@example.org', to: ['bob@example.net'] });
    await h.queue.runDue();
    assert.equal(sink.received.length, 1);
    const got = sink.received[0]!;
    assert.equal(got.secure, true, 'STARTTLS used when offered');
    assert.equal(got.from, 'alice@example.org');
    assert.deepEqual(got.to, ['bob@example.net']);
    assert.ok(!/(^|[^\r])\n/.test(got.data.toString('latin1')), 'no bare LF on the wire');
    assert.ok(got.data.equals(MESSAGE));
    assert.deepEqual(await h.store.listMessages(), []);
  } finally {
    await h.close();
    await sink.close();
  }
});

test('a 4xx is retried after the backoff delay and delivered once', async () => {
  const sink = await startSink({ onRcpt: (_a, n) => (n === 1 ? [451, '4.3.0 try again later'] : null) });
  const h = await makeQueue(mockResolver(EXAMPLE_NET), { port: sink.port, manualClock: true });
  try {
    const { id } = await h.queue.enqueue(MESSAGE, { from: 'alice@example.org', to: ['bob@example.net'] });
    const deferred = once(h.queue, 'deferred');
    await h.queue.runDue();
    assert.match((await deferred).reason, /^451 4\.3\.0/);
    let info = await h.store.getMessage(id);
    assert.equal(info?.recipients[0]?.attempts, 1);
    assert.equal(info?.recipients[0]?.nextAttempt, h.clock.t + 5 * MINUTE, 'first retry after 5 minutes');

    h.clock.t += 4 * MINUTE;
    await h.queue.runDue();
    assert.equal(sink.received.length, 0, 'not retried before its time');

    h.clock.t += MINUTE;
    await h.queue.runDue();
    assert.equal(sink.count('bob@example.net'), 1);
    info = await h.store.getMessage(id);
    assert.equal(info, null, 'message gone once every recipient is done');
    assert.equal(h.reports.length, 0);
  } finally {
    await h.close();
    await sink.close();
  }
});

test('a 5xx fails the recipient at once and the sender gets an RFC 3464 report; others are delivered', async () => {
  const sink = await startSink({ onRcpt: (a) => (a === 'nobody@example.net' ? [550, '5.1.1 no such user\r\nX-Injected: yes'] : null) });
  const h = await makeQueue(mockResolver(EXAMPLE_NET), { port: sink.port });
  try {
    await h.queue.enqueue(MESSAGE, {
      from: 'alice@example.org',
      to: ['bob@example.net', 'nobody@example.net'],
      dsn: { envid: 'ENV-42', recipients: { 'nobody@example.net': { orcpt: 'rfc822;nobody@example.net' } } },
    });
    await h.queue.runDue();
    assert.equal(sink.count('bob@example.net'), 1);
    assert.equal(sink.count('nobody@example.net'), 0);
    assert.equal(h.reports.length, 1);
    const { to, data } = h.reports[0]!;
    assert.equal(to, 'alice@example.org');
    const text = data.toString('latin1');
    const head = text.slice(0, text.indexOf('\r\n\r\n'));
    assert.match(head, /^Content-Type: multipart\/report; report-type=delivery-status; boundary="/m);
    assert.match(head, /^From: Mail Delivery System <MAILER-DAEMON@mail\.example\.org>$/m);
    assert.match(head, /^To: <alice@example\.org>$/m);
    assert.match(head, /^Auto-Submitted: auto-replied$/m);
    const [human, status, original] = parts(text);
    assert.match(human!, /^\r\nContent-Type: text\/plain/);
    assert.match(status!, /^\r\nContent-Type: message\/delivery-status\r\n/);
    assert.match(status!, /^Reporting-MTA: dns; mail\.example\.org$/m);
    assert.match(status!, /^Original-Envelope-Id: ENV-42$/m);
    assert.match(status!, /^Original-Recipient: rfc822;nobody@example\.net$/m);
    assert.match(status!, /^Final-Recipient: rfc822; nobody@example\.net$/m);
    assert.match(status!, /^Action: failed$/m);
    assert.match(status!, /^Status: 5\.1\.1$/m);
    assert.match(status!, /^Remote-MTA: dns; mx\.example\.net$/m);
    assert.match(status!, /^Diagnostic-Code: smtp; 550[ -]5\.1\.1 no such user/m);
    assert.doesNotMatch(status!, /^X-Injected/m, 'remote text cannot add fields');
    assert.doesNotMatch(status!, /bob@example\.net/, 'only the failed recipient is reported');
    assert.match(original!, /^\r\nContent-Type: message\/rfc822\r\n/);
    assert.ok(original!.includes(MESSAGE.toString('latin1')), 'the original is returned');
    assert.deepEqual(await h.store.listMessages(), []);
  } finally {
    await h.close();
    await sink.close();
  }
});

test('a failure of a message from the null sender, or with NOTIFY=NEVER, sends no report', async () => {
  const sink = await startSink({ onRcpt: () => [550, '5.1.1 no such user'] });
  const h = await makeQueue(mockResolver(EXAMPLE_NET), { port: sink.port });
  try {
    const failed = once(h.queue, 'failed');
    await h.queue.enqueue(MESSAGE, { from: '', to: ['bob@example.net'] });
    await h.queue.enqueue(MESSAGE, { from: 'alice@example.org', to: ['carol@example.net'], dsn: { recipients: { 'carol@example.net': { notify: [] } } } });
    await h.queue.runDue();
    await failed;
    assert.equal(h.reports.length, 0);
    assert.deepEqual(await h.store.listMessages(), []);
  } finally {
    await h.close();
    await sink.close();
  }
});

test('a report that cannot be delivered locally is queued from <> and its own failure ends there', async () => {
  const sink = await startSink({ onRcpt: () => [550, '5.1.1 no such user'] });
  // The sender's domain is remote here, so the report goes out through the queue.
  const h = await makeQueue(
    mockResolver({ mx: { ...EXAMPLE_NET.mx, 'example.com': [{ exchange: 'mx.example.net', priority: 10 }] }, a: EXAMPLE_NET.a }),
    { port: sink.port, deliverReport: async () => false },
  );
  try {
    await h.queue.enqueue(MESSAGE, { from: 'alice@example.com', to: ['bob@example.net'] });
    await h.queue.runDue();
    // The report went out from <> and was refused too (the sink refuses everyone); that
    // failure produced nothing more.
    assert.equal(sink.rcpts('bob@example.net'), 1);
    assert.equal(sink.rcpts('alice@example.com'), 1, 'the report was attempted once');
    assert.equal(sink.received.length, 0);
    assert.deepEqual(await h.store.listMessages(), [], 'nothing left looping in the queue');
  } finally {
    await h.close();
    await sink.close();
  }
});

test('a remote that is down: retries follow the schedule, a delay notice, then a bounce', async () => {
  const down = await startSink();
  const port = down.port;
  await down.close();
  const h = await makeQueue(mockResolver(EXAMPLE_NET), {
    port,
    manualClock: true,
    retrySchedule: [5 * MINUTE, 15 * MINUTE, 30 * MINUTE],
    maxAgeMs: 60 * MINUTE,
    delayNoticeAfterMs: 15 * MINUTE,
  });
  try {
    const start = h.clock.t;
    const { id } = await h.queue.enqueue(MESSAGE, { from: 'alice@example.org', to: ['bob@example.net'] });
    const next = async () => (await h.store.getMessage(id))?.recipients[0]?.nextAttempt;
    await h.queue.runDue();
    assert.equal(await next(), start + 5 * MINUTE);
    h.clock.t = start + 5 * MINUTE;
    await h.queue.runDue();
    assert.equal(await next(), start + 20 * MINUTE);
    assert.equal(h.reports.length, 0, 'no delay notice before its time');
    h.clock.t = start + 20 * MINUTE;
    await h.queue.runDue();
    assert.equal(await next(), start + 50 * MINUTE);
    assert.equal(h.reports.length, 1, 'delay notice once late');
    assert.match(h.reports[0]!.data.toString(), /^Action: delayed$/m);
    assert.match(h.reports[0]!.data.toString(), /^Will-Retry-Until: /m);
    h.clock.t = start + 50 * MINUTE;
    await h.queue.runDue();
    assert.equal(await h.store.getMessage(id), null, 'given up: the next try would be past the maximum age');
    assert.equal(h.reports.length, 2);
    const bounce = h.reports[1]!.data.toString();
    assert.match(bounce, /^Action: failed$/m);
    assert.match(bounce, /^Status: 5\.4\.1$/m);
  } finally {
    await h.close();
  }
});

test('a null MX (RFC 7505) bounces at once without any connection', async () => {
  const sink = await startSink();
  const resolver = mockResolver({ mx: { 'example.net': [{ exchange: '', priority: 0 }] }, a: { 'example.net': ['127.0.0.1'] } });
  const h = await makeQueue(resolver, { port: sink.port });
  try {
    await h.queue.enqueue(MESSAGE, { from: 'alice@example.org', to: ['bob@example.net'] });
    await h.queue.runDue();
    assert.equal(sink.connections, 0);
    assert.deepEqual(resolver.queries.filter((q) => q.startsWith('A')), [], 'no address lookup');
    assert.equal(h.reports.length, 1);
    assert.match(h.reports[0]!.data.toString(), /^Status: 5\.1\.10$/m);
  } finally {
    await h.close();
    await sink.close();
  }
});

test('a domain that does not exist bounces at once', async () => {
  const h = await makeQueue(mockResolver({}), { port: 1 });
  try {
    await h.queue.enqueue(MESSAGE, { from: 'alice@example.org', to: ['bob@nowhere.example'] });
    await h.queue.runDue();
    assert.equal(h.reports.length, 1);
    assert.match(h.reports[0]!.data.toString(), /^Status: 5\.1\.2$/m);
  } finally {
    await h.close();
  }
});

test('MX hosts are tried in preference order; without MX the domain address is used (RFC 5321 §5.1)', async () => {
  const sink = await startSink();
  // 127.0.0.2 is loopback too, but nothing listens there for this port: the first MX is down.
  const resolver = mockResolver({
    mx: {
      'example.net': [
        { exchange: 'mx2.example.net', priority: 20 },
        { exchange: 'mx1.example.net', priority: 10 },
      ],
    },
    a: { 'mx1.example.net': ['127.0.0.2'], 'mx2.example.net': ['127.0.0.1'], 'example.com': ['127.0.0.1'] },
  });
  const h = await makeQueue(resolver, { port: sink.port });
  try {
    const delivered = once(h.queue, 'delivered', (e) => e.recipients.includes('bob@example.net'));
    await h.queue.enqueue(MESSAGE, { from: 'alice@example.org', to: ['bob@example.net', 'carol@example.com'] });
    await h.queue.runDue();
    assert.equal((await delivered).host, 'mx2.example.net');
    const aQueries = resolver.queries.filter((q) => q.startsWith('A mx'));
    assert.deepEqual(aQueries, ['A mx1.example.net', 'A mx2.example.net']);
    assert.equal(sink.count('bob@example.net'), 1);
    assert.equal(sink.count('carol@example.com'), 1, 'implicit MX');
  } finally {
    await h.close();
    await sink.close();
  }
});

test('an IPv6-only MX is reached over IPv6', async (t) => {
  let sink;
  try {
    sink = await startSink({ host: '::1' });
  } catch {
    t.skip('no IPv6 loopback');
    return;
  }
  const h = await makeQueue(mockResolver({ mx: EXAMPLE_NET.mx, aaaa: { 'mx.example.net': ['::1'] } }), { port: sink.port });
  try {
    await h.queue.enqueue(MESSAGE, { from: 'alice@example.org', to: ['bob@example.net'] });
    await h.queue.runDue();
    assert.equal(sink.count('bob@example.net'), 1);
  } finally {
    await h.close();
    await sink.close();
  }
});

test('several messages to one destination share a connection; per-destination connections are limited', async () => {
  const sink = await startSink();
  const h = await makeQueue(mockResolver(EXAMPLE_NET), { port: sink.port });
  try {
    for (let i = 0; i < 5; i++) await h.queue.enqueue(MESSAGE, { from: 'alice@example.org', to: [`u${i}@example.net`] });
    await h.queue.runDue();
    assert.equal(sink.received.length, 5);
    assert.equal(sink.connections, 1);
  } finally {
    await h.close();
    await sink.close();
  }
  const sink2 = await startSink();
  const h2 = await makeQueue(mockResolver(EXAMPLE_NET), { port: sink2.port, messagesPerConnection: 1, connectionsPerDestination: 2 });
  try {
    for (let i = 0; i < 8; i++) await h2.queue.enqueue(MESSAGE, { from: 'alice@example.org', to: [`u${i}@example.net`] });
    await h2.queue.runDue();
    assert.equal(sink2.received.length, 8);
    assert.ok(sink2.connections >= 4, `several connections (${sink2.connections})`);
    assert.ok(sink2.maxConcurrent <= 2, `at most 2 at once (${sink2.maxConcurrent})`);
  } finally {
    await h2.close();
    await sink2.close();
  }
});

test('a per-domain rate limit defers the excess without counting an attempt', async () => {
  const sink = await startSink();
  const h = await makeQueue(mockResolver(EXAMPLE_NET), { port: sink.port, manualClock: true, rateLimits: { 'example.net': 2 } });
  try {
    for (let i = 0; i < 5; i++) await h.queue.enqueue(MESSAGE, { from: 'alice@example.org', to: [`u${i}@example.net`] });
    await h.queue.runDue();
    assert.equal(sink.received.length, 2);
    const left = await h.store.listMessages();
    assert.equal(left.length, 3);
    for (const m of left) assert.equal(m.recipients[0]!.attempts, 0);
    h.clock.t += MINUTE;
    await h.queue.runDue();
    assert.equal(sink.received.length, 4);
    h.clock.t += MINUTE;
    await h.queue.runDue();
    assert.equal(sink.received.length, 5);
  } finally {
    await h.close();
    await sink.close();
  }
});

test('a smarthost takes everything, and the source address follows the sender domain', async () => {
  const sink = await startSink();
  const h = await makeQueue(mockResolver({}), {
    smarthost: { host: '127.0.0.1', port: sink.port, tls: 'opportunistic' },
    localAddress: { 'example.org': { ipv4: '127.0.0.2' } },
  });
  try {
    await h.queue.enqueue(MESSAGE, { from: 'alice@example.org', to: ['bob@example.net', 'carol@elsewhere.example'] });
    await h.queue.enqueue(MESSAGE, { from: 'dave@example.com', to: ['erin@example.net'] });
    await h.queue.runDue();
    assert.equal(sink.received.length, 2);
    const fromAlice = sink.received.find((m) => m.from === 'alice@example.org')!;
    assert.deepEqual(fromAlice.to.sort(), ['bob@example.net', 'carol@elsewhere.example'], 'one transaction for both domains');
    assert.equal(fromAlice.remoteAddress.replace(/^::ffff:/, ''), '127.0.0.2');
    const fromDave = sink.received.find((m) => m.from === 'dave@example.com')!;
    assert.equal(fromDave.remoteAddress.replace(/^::ffff:/, ''), '127.0.0.1');
  } finally {
    await h.close();
    await sink.close();
  }
});

test('mail from our users is DKIM-signed at enqueue and verifies at the receiver', async () => {
  const sink = await startSink();
  const h = await makeQueue(mockResolver(EXAMPLE_NET), { port: sink.port });
  try {
    const keys = await generateDkimKeys(h.dir, 'example.org', { rsaBits: 1024 });
    const signing = createDkimSigning(h.dir);
    const h2 = await makeQueue(mockResolver(EXAMPLE_NET), { port: sink.port, dkim: signing });
    try {
      await h2.queue.enqueue(MESSAGE, { from: 'alice@example.org', to: ['bob@example.net'] }, { sign: true });
      await h2.queue.runDue();
    } finally {
      await h2.close();
    }
    assert.equal(sink.received.length, 1);
    const txt = new Map(keys.map((k) => [dkimRecordName(k), [[dkimDnsRecord(k)]]]));
    const result = await dkimVerify(sink.received[0]!.data, {
      resolver: async (name: string) => {
        const v = txt.get(name);
        if (v) return v;
        throw Object.assign(new Error('nx'), { code: 'ENOTFOUND' });
      },
    });
    assert.deepEqual(result.results.map((r) => r.status?.result), ['pass', 'pass']);
  } finally {
    await h.close();
    await sink.close();
  }
});

test('a smarthost with credentials: AUTH after STARTTLS, and a wrong password defers the mail', async () => {
  const sink = await startSink({ auth: { user: 'relay', pass: 's3cret' } });
  const good = await makeQueue(mockResolver({}), {
    smarthost: { host: '127.0.0.1', port: sink.port, tls: 'opportunistic', auth: { user: 'relay', pass: 's3cret' } },
  });
  try {
    await good.queue.enqueue(MESSAGE, { from: 'alice@example.org', to: ['bob@example.net'] });
    await good.queue.runDue();
    assert.equal(sink.received.length, 1);
    assert.equal(sink.received[0]!.user, 'relay');
    assert.equal(sink.received[0]!.secure, true);
  } finally {
    await good.close();
  }
  const bad = await makeQueue(mockResolver({}), {
    smarthost: { host: '127.0.0.1', port: sink.port, tls: 'opportunistic', auth: { user: 'relay', pass: 'wrong' } },
  });
  try {
    const { id } = await bad.queue.enqueue(MESSAGE, { from: 'alice@example.org', to: ['carol@example.net'] });
    await bad.queue.runDue();
    assert.equal(sink.received.length, 1);
    assert.match((await bad.store.getMessage(id))?.recipients[0]?.lastError ?? '', /535/);
    assert.equal(bad.reports.length, 0, 'our own configuration problem is retried, not bounced');
  } finally {
    await bad.close();
    await sink.close();
  }
});

test('DSN parameters travel to a DSN server; without DSN there, NOTIFY=SUCCESS gets a "relayed" report', async () => {
  const withDsn = await startSink();
  const h = await makeQueue(mockResolver(EXAMPLE_NET), { port: withDsn.port });
  try {
    await h.queue.enqueue(MESSAGE, {
      from: 'alice@example.org',
      to: ['bob@example.net', 'carol@example.net', 'dan@example.net', 'eve@example.net'],
      dsn: {
        ret: 'HDRS',
        envid: 'E1',
        recipients: {
          'bob@example.net': { notify: ['SUCCESS', 'FAILURE'] },
          // Unencoded, "+2B" would reach the server as "+".
          'carol@example.net': { notify: [], orcpt: 'rfc822;Carol+2Bteam=1@example.org' },
          'dan@example.net': { orcpt: 'rfc822;dan@example.org' },
        },
      },
    });
    await h.queue.runDue();
    assert.equal(withDsn.count('bob@example.net'), 1);
    assert.equal(withDsn.received.length, 1, 'one transaction for the four');
    // RFC 3461 §5.2.1: each recipient's own NOTIFY and ORCPT (xtext) on its RCPT.
    assert.deepEqual(withDsn.rcptArgs('bob@example.net'), { NOTIFY: 'SUCCESS,FAILURE' });
    assert.deepEqual(withDsn.rcptArgs('carol@example.net'), { NOTIFY: 'NEVER', ORCPT: 'rfc822;Carol+2Bteam=1@example.org' }, 'as sent, once the server decoded the xtext');
    assert.deepEqual(withDsn.rcptArgs('dan@example.net'), { ORCPT: 'rfc822;dan@example.org' });
    assert.equal(withDsn.rcptArgs('eve@example.net'), undefined);
    assert.equal(withDsn.lastMailArgs()?.RET, 'HDRS');
    assert.equal(withDsn.lastMailArgs()?.ENVID, 'E1');
    assert.equal(h.reports.length, 0, 'the remote reports success itself');
  } finally {
    await h.close();
    await withDsn.close();
  }
  const noDsn = await startSink({ hideDsn: true });
  const h2 = await makeQueue(mockResolver(EXAMPLE_NET), { port: noDsn.port });
  try {
    await h2.queue.enqueue(MESSAGE, {
      from: 'alice@example.org',
      to: ['bob@example.net', 'carol@example.net'],
      dsn: { recipients: { 'bob@example.net': { notify: ['SUCCESS'] } } },
    });
    await h2.queue.runDue();
    assert.equal(noDsn.received.length, 1);
    assert.equal(h2.reports.length, 1);
    const report = h2.reports[0]!.data.toString();
    assert.match(report, /^Action: relayed$/m);
    assert.match(report, /^Status: 2\.0\.0$/m);
    assert.match(report, /^Final-Recipient: rfc822; bob@example\.net$/m);
    assert.doesNotMatch(report, /carol@example\.net/);
  } finally {
    await h2.close();
    await noDsn.close();
  }
});

test('an address-literal recipient is delivered to that address without DNS (RFC 5321 §5.1)', async () => {
  const sink = await startSink();
  const resolver = mockResolver({});
  const h = await makeQueue(resolver, { port: sink.port });
  try {
    await h.queue.enqueue(MESSAGE, { from: 'alice@example.org', to: ['bob@[127.0.0.1]', 'carol@[300.1.1.1]'] });
    await h.queue.runDue();
    assert.equal(sink.count('bob@[127.0.0.1]'), 1);
    assert.deepEqual(resolver.queries, []);
    assert.equal(h.reports.length, 1);
    assert.match(h.reports[0]!.data.toString(), /^Final-Recipient: rfc822; carol@\[300\.1\.1\.1\]$/m);
  } finally {
    await h.close();
    await sink.close();
  }
});

test('opportunistic TLS whose handshake fails falls back to clear text (RFC 7435)', async () => {
  const sink = await startSink({ tlsExtra: { minVersion: 'TLSv1.3' } });
  const h = await makeQueue(mockResolver(EXAMPLE_NET), { port: sink.port, tlsOptions: { maxVersion: 'TLSv1.2' } });
  try {
    await h.queue.enqueue(MESSAGE, { from: 'alice@example.org', to: ['bob@example.net'] });
    await h.queue.runDue();
    assert.equal(sink.count('bob@example.net'), 1);
    assert.equal(sink.received[0]!.secure, false);
    assert.equal(sink.connections, 2, 'one failed handshake, one clear-text session');
  } finally {
    await h.close();
    await sink.close();
  }
});
