import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSelfSignedCertificate } from '../../src/net/tls.js';
import { makeQueue, mockResolver, startSink, MESSAGE, type DnsTable } from './helpers.js';

const MINUTE = 60_000;

const DNS: DnsTable = {
  mx: { 'example.net': [{ exchange: 'mx.example.net', priority: 10 }] },
  a: { 'mx.example.net': ['127.0.0.1'] },
  txt: { '_mta-sts.example.net': [['v=STSv1; id=20261127']] },
};

const ENFORCE = 'version: STSv1\r\nmode: enforce\r\nmx: mx.example.net\r\nmax_age: 86400\r\n';

async function certificate(): Promise<{ key: Buffer; cert: Buffer; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'facteur-mx-cert-'));
  await createSelfSignedCertificate(dir, 'mx.example.net');
  return {
    key: await readFile(join(dir, 'mx.example.net.key')),
    cert: await readFile(join(dir, 'mx.example.net.crt')),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

test('MTA-STS enforce: a remote that offers no STARTTLS gets nothing, and the sender finally gets a bounce', async () => {
  const sink = await startSink({ starttls: false });
  const fetched: string[] = [];
  const h = await makeQueue(mockResolver(DNS), {
    port: sink.port,
    manualClock: true,
    retrySchedule: [MINUTE],
    maxAgeMs: 2 * MINUTE,
    mtaSts: {
      fetcher: async (domain) => {
        fetched.push(domain);
        return ENFORCE;
      },
    },
  });
  try {
    const { id } = await h.queue.enqueue(MESSAGE, { from: 'alice@example.org', to: ['bob@example.net'] });
    await h.queue.runDue();
    const info = await h.store.getMessage(id);
    assert.match(info?.recipients[0]?.lastError ?? '', /^451 4\.7\.5 .*TLS required/);
    for (let i = 0; i < 2; i++) {
      h.clock.t += MINUTE;
      await h.queue.runDue();
    }
    assert.equal(await h.store.getMessage(id), null);
    assert.equal(sink.rcpts('bob@example.net'), 0, 'no transaction ever started');
    assert.equal(sink.received.length, 0);
    assert.equal(h.reports.length, 1);
    assert.match(h.reports[0]!.data.toString(), /^Status: 5\.7\.5$/m);
    assert.deepEqual(fetched, ['example.net'], 'the policy was fetched once and then cached');
    const cached = await h.store.getStsPolicy('example.net');
    assert.equal(cached?.mode, 'enforce');
    assert.equal(cached?.id, '20261127');
  } finally {
    await h.close();
    await sink.close();
  }
});

test('MTA-STS enforce: an MX the policy does not name is never contacted', async () => {
  const sink = await startSink();
  const h = await makeQueue(mockResolver(DNS), {
    port: sink.port,
    mtaSts: { fetcher: async () => 'version: STSv1\nmode: enforce\nmx: *.other.example\nmax_age: 600\n' },
  });
  try {
    const { id } = await h.queue.enqueue(MESSAGE, { from: 'alice@example.org', to: ['bob@example.net'] });
    await h.queue.runDue();
    assert.equal(sink.connections, 0);
    assert.match((await h.store.getMessage(id))?.recipients[0]?.lastError ?? '', /4\.7\.5 MTA-STS policy of example\.net excludes mx\.example\.net/);
  } finally {
    await h.close();
    await sink.close();
  }
});

test('MTA-STS enforce delivers over TLS with a certificate valid for the MX name; testing mode does not block', async () => {
  const c = await certificate();
  const sink = await startSink({ key: c.key, cert: c.cert });
  const h = await makeQueue(mockResolver(DNS), { port: sink.port, tlsOptions: { ca: [c.cert] }, mtaSts: { fetcher: async () => ENFORCE } });
  try {
    await h.queue.enqueue(MESSAGE, { from: 'alice@example.org', to: ['bob@example.net'] });
    await h.queue.runDue();
    assert.equal(sink.count('bob@example.net'), 1);
    assert.equal(sink.received[0]!.secure, true);
  } finally {
    await h.close();
  }
  // The same remote with an untrusted certificate: enforce refuses it...
  const h2 = await makeQueue(mockResolver(DNS), { port: sink.port, mtaSts: { fetcher: async () => ENFORCE } });
  try {
    const { id } = await h2.queue.enqueue(MESSAGE, { from: 'alice@example.org', to: ['carol@example.net'] });
    await h2.queue.runDue();
    assert.equal(sink.count('carol@example.net'), 0);
    assert.match((await h2.store.getMessage(id))?.recipients[0]?.lastError ?? '', /4\.7\.5/);
  } finally {
    await h2.close();
  }
  // ...and testing mode delivers anyway (RFC 8461 §5: testing only reports).
  const h3 = await makeQueue(mockResolver(DNS), {
    port: sink.port,
    mtaSts: { fetcher: async () => ENFORCE.replace('enforce', 'testing') },
  });
  try {
    await h3.queue.enqueue(MESSAGE, { from: 'alice@example.org', to: ['dave@example.net'] });
    await h3.queue.runDue();
    assert.equal(sink.count('dave@example.net'), 1);
  } finally {
    await h3.close();
    await sink.close();
    await c.cleanup();
  }
});

test('REQUIRETLS: a host without the extension is refused for good (5.7.30), the report carries headers only', async () => {
  const c = await certificate();
  const sink = await startSink({ key: c.key, cert: c.cert });
  const h = await makeQueue(mockResolver(DNS), { port: sink.port, tlsOptions: { ca: [c.cert] }, mtaSts: { enabled: false } });
  try {
    await h.queue.enqueue(MESSAGE, { from: 'alice@example.org', to: ['bob@example.net'] }, { requireTls: true });
    await h.queue.runDue();
    assert.equal(sink.rcpts('bob@example.net'), 0);
    assert.equal(h.reports.length, 1);
    const report = h.reports[0]!.data.toString();
    assert.match(report, /^Status: 5\.7\.30$/m);
    assert.match(report, /^Content-Type: text\/rfc822-headers$/m);
    assert.doesNotMatch(report, /Hello Bob\./, 'no body in the report');
  } finally {
    await h.close();
    await sink.close();
    await c.cleanup();
  }
});

test('TLS-Required: No sets the MTA-STS policy aside (TLS still tried); REQUIRETLS overrides the header field', async () => {
  const c = await certificate();
  // A certificate no one trusts, and a policy in enforce mode that excludes the MX.
  const sink = await startSink({ key: c.key, cert: c.cert });
  const fetched: string[] = [];
  const h = await makeQueue(mockResolver(DNS), {
    port: sink.port,
    mtaSts: {
      fetcher: async (domain) => {
        fetched.push(domain);
        return 'version: STSv1\r\nmode: enforce\r\nmx: *.other.example\r\nmax_age: 86400\r\n';
      },
    },
  });
  const optional = Buffer.from(MESSAGE.toString().replace('Subject: Hello\r\n', 'Subject: Hello\r\nTLS-Required:\r\n  No \r\n'));
  try {
    const plain = await h.queue.enqueue(MESSAGE, { from: 'alice@example.org', to: ['bob@example.net'] });
    const relaxed = await h.queue.enqueue(optional, { from: 'alice@example.org', to: ['carol@example.net'] });
    const both = await h.queue.enqueue(optional, { from: 'alice@example.org', to: ['dave@example.net'] }, { requireTls: true });
    assert.equal((await h.store.getMessage(relaxed.id))?.tlsOptional, true);
    assert.equal((await h.store.getMessage(both.id))?.tlsOptional, false, 'RFC 8689 §4.2.2: ignored with REQUIRETLS');
    await h.queue.runDue();
    // The header field's message went out, over the TLS the remote offered (unverified).
    assert.equal(sink.count('carol@example.net'), 1);
    const got = sink.received.find((m) => m.to.includes('carol@example.net'))!;
    assert.equal(got.secure, true);
    assert.match(got.data.toString(), /^TLS-Required:\r\n  No \r\n/m, 'the field travels on');
    // The others stay held back by the policy.
    assert.equal(sink.count('bob@example.net'), 0);
    assert.equal(sink.count('dave@example.net'), 0);
    assert.match((await h.store.getMessage(plain.id))?.recipients[0]?.lastError ?? '', /4\.7\.5 MTA-STS policy of example\.net excludes/);
    assert.match((await h.store.getMessage(both.id))?.recipients[0]?.lastError ?? '', /4\.7\.5 MTA-STS policy of example\.net excludes/);
    assert.deepEqual(fetched, ['example.net']);
  } finally {
    await h.close();
    await sink.close();
    await c.cleanup();
  }
});

test('TLS-Required: No is read from the message header only, folded or not, and only with the value No', async () => {
  const { tlsRequiredNo } = await import('../../src/queue/outbound-queue.js');
  const m = (head: string, body = 'hello\r\n') => Buffer.from(`${head}\r\n\r\n${body}`);
  assert.equal(tlsRequiredNo(m('Subject: a\r\nTLS-Required: No')), true);
  assert.equal(tlsRequiredNo(m('tls-required:no\r\nSubject: a')), true);
  assert.equal(tlsRequiredNo(m('TLS-Required:\r\n\tNO\t\r\nSubject: a')), true);
  assert.equal(tlsRequiredNo(m('TLS-Required: No thanks')), false);
  assert.equal(tlsRequiredNo(m('TLS-Required: No\r\n thanks')), false, 'a folded continuation is part of the value');
  assert.equal(tlsRequiredNo(m('TLS-Required: Yes')), false);
  assert.equal(tlsRequiredNo(m('X-TLS-Required: No')), false);
  assert.equal(tlsRequiredNo(m('Subject: a', 'TLS-Required: No\r\n')), false, 'not in the body');
  assert.equal(tlsRequiredNo(m('Content-Type: message/rfc822', 'TLS-Required: No\r\n\r\nx\r\n')), false, 'not in an attached message');
});
