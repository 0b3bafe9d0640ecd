/**
 * The SMTP worker's counter increments (src/smtp/worker/metric-tally.ts): summed per counter and
 * label set, handed over whole, and announced once when they have waited their longest (the worker
 * then sends them, never with its requests).
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { MetricTally } from '../../src/smtp/worker/metric-tally.js';

test('increments of one counter and label set become one message with their sum', () => {
  const tally = new MetricTally(60_000, () => assert.fail('not due'));
  for (let i = 0; i < 5; i++) tally.add('facteur_deliveries_total', 'Deliveries', { source: 'smtp', result: 'delivered' }, 1);
  tally.add('facteur_deliveries_total', 'Deliveries', { source: 'smtp', result: 'rejected' }, 2);
  tally.add('facteur_connections_total', 'Connections', { listener: 'smtp' }, 1);
  const out = tally.take();
  assert.deepEqual(
    out.map((m) => [m.name, m.labels, m.by]),
    [
      ['facteur_deliveries_total', { source: 'smtp', result: 'delivered' }, 5],
      ['facteur_deliveries_total', { source: 'smtp', result: 'rejected' }, 2],
      ['facteur_connections_total', { listener: 'smtp' }, 1],
    ],
  );
  assert.ok(out.every((m) => m.t === 'metric'));
  assert.deepEqual(tally.take(), [], 'taken once: the tally starts again empty');
});

test('a bound increment (bind) sums with add for the same counter and label set, and keeps its own copy of the labels', () => {
  const tally = new MetricTally(60_000, () => {});
  const labels = { protocol: 'smtp', command: 'RCPT' };
  const rcpt = tally.bind('facteur_commands_total', 'Commands', labels);
  labels.command = 'changed';
  rcpt(1);
  rcpt(1);
  tally.add('facteur_commands_total', 'Commands', { protocol: 'smtp', command: 'RCPT' }, 3);
  assert.deepEqual(
    tally.take().map((m) => [m.name, m.labels, m.by]),
    [['facteur_commands_total', { protocol: 'smtp', command: 'RCPT' }, 5]],
  );
  rcpt(2);
  assert.deepEqual(tally.take().map((m) => m.by), [2], 'bound after a take: a new sum');
});

test("the caller's label object is copied, not kept", () => {
  const tally = new MetricTally(60_000, () => {});
  const labels = { listener: 'smtp' };
  tally.add('c', 'h', labels, 1);
  labels.listener = 'changed';
  assert.deepEqual(tally.take()[0]!.labels, { listener: 'smtp' });
  tally.take();
});

test('increments are announced once after the delay; a take before it (the worker stopping) cancels it', async () => {
  let due = 0;
  const tally = new MetricTally(30, () => due++);
  tally.add('c', 'h', {}, 1);
  tally.add('c', 'h', {}, 1);
  await new Promise((r) => setTimeout(r, 80));
  assert.equal(due, 1, 'one announcement for both increments');
  assert.equal(tally.take()[0]!.by, 2);

  tally.add('c', 'h', {}, 1);
  assert.equal(tally.take()[0]!.by, 1);
  await new Promise((r) => setTimeout(r, 80));
  assert.equal(due, 1, 'taken before the delay: nothing announced');
});
