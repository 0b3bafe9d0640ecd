import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import {
  dropQueued,
  describeTls,
  formatQueueList,
  holdQueued,
  listQueue,
  releaseQueued,
  retryQueued,
  showQueued,
} from '../../src/queue/admin.js';
import { makeQueue, mockResolver, startSink, MESSAGE } from './helpers.js';

const MINUTE = 60_000;
const DNS = { mx: { 'example.net': [{ exchange: 'mx.example.net', priority: 10 }] }, a: { 'mx.example.net': ['127.0.0.1'] } };

test('queue list and show describe each message and recipient', async () => {
  const sink = await startSink({ onRcpt: () => [451, '4.7.1 greylisted'] });
  const h = await makeQueue(mockResolver(DNS), { port: sink.port, manualClock: true });
  try {
    const { id } = await h.queue.enqueue(MESSAGE, { from: 'alice@example.org', to: ['bob@example.net', 'carol@example.net'] });
    await h.queue.runDue();
    const list = await listQueue(h.store);
    assert.equal(list.length, 1);
    assert.equal(list[0]!.id, id);
    assert.equal(list[0]!.queued, 2);
    assert.equal(list[0]!.nextAttempt, h.clock.t + 5 * MINUTE);
    assert.match(list[0]!.lastError ?? '', /451 4\.7\.1 greylisted/);
    const text = formatQueueList(list, h.clock.t);
    assert.match(text, new RegExp(`^${id} .* <alice@example\\.org>  2 queued, 0 delivered, 0 failed, next in 5m  451`));
    const shown = await showQueued(h.store, id);
    assert.match(shown!.header, /^Subject: Hello$/m);
    assert.deepEqual(shown!.message.recipients.map((r) => [r.address, r.state, r.attempts]), [
      ['bob@example.net', 'queued', 1],
      ['carol@example.net', 'queued', 1],
    ]);
    assert.equal(await showQueued(h.store, 'nope'), null);
    assert.equal(describeTls(shown!.message), null);
    const optional = Buffer.from(MESSAGE.toString().replace('Subject: Hello\r\n', 'Subject: Hello\r\nTLS-Required: No\r\n'));
    const relaxed = await h.queue.enqueue(optional, { from: 'alice@example.org', to: ['bob@example.net'] });
    assert.match(describeTls((await showQueued(h.store, relaxed.id))!.message) ?? '', /^TLS: TLS-Required: No .*MTA-STS policies are set aside/);
    const strict = await h.queue.enqueue(optional, { from: 'alice@example.org', to: ['bob@example.net'] }, { requireTls: true });
    assert.match(describeTls((await showQueued(h.store, strict.id))!.message) ?? '', /^TLS: REQUIRETLS /);
    assert.equal(formatQueueList([]), 'Queue is empty\n');
  } finally {
    await h.close();
    await sink.close();
  }
});

test('hold keeps a message from delivery until release; retry makes it due at once', async () => {
  let refuse = true;
  const sink = await startSink({ onRcpt: () => (refuse ? [451, '4.7.1 later'] : null) });
  const h = await makeQueue(mockResolver(DNS), { port: sink.port, manualClock: true });
  try {
    const { id } = await h.queue.enqueue(MESSAGE, { from: 'alice@example.org', to: ['bob@example.net'] });
    assert.equal(await holdQueued(h.store, id), 1);
    await h.queue.runDue();
    assert.equal(sink.rcpts('bob@example.net'), 0, 'held: not attempted');
    assert.equal((await listQueue(h.store))[0]!.held, true);
    assert.equal(await releaseQueued(h.store, 'all'), 1);
    await h.queue.runDue();
    assert.equal(sink.rcpts('bob@example.net'), 1);
    refuse = false;
    await h.queue.runDue();
    assert.equal(sink.count('bob@example.net'), 0, 'not due before its retry time');
    assert.equal(await retryQueued(h.store, id, h.clock.t), 1);
    await h.queue.runDue();
    assert.equal(sink.count('bob@example.net'), 1);
    assert.deepEqual(await listQueue(h.store), []);
  } finally {
    await h.close();
    await sink.close();
  }
});

test('drop removes a message without a report', async () => {
  const sink = await startSink({ onRcpt: () => [451, '4.7.1 later'] });
  const h = await makeQueue(mockResolver(DNS), { port: sink.port, manualClock: true });
  try {
    const { id } = await h.queue.enqueue(MESSAGE, { from: 'alice@example.org', to: ['bob@example.net'] });
    await h.queue.enqueue(MESSAGE, { from: 'alice@example.org', to: ['carol@example.net'] });
    assert.equal(await dropQueued(h.store, id), 1);
    assert.equal(await dropQueued(h.store, id), 0);
    assert.equal((await listQueue(h.store)).length, 1);
    assert.equal(await dropQueued(h.store, 'all'), 1);
    await h.queue.runDue();
    assert.equal(sink.rcpts('bob@example.net') + sink.rcpts('carol@example.net'), 0);
    assert.equal(h.reports.length, 0);
  } finally {
    await h.close();
    await sink.close();
  }
});
