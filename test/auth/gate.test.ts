import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { createGate } from '../../src/auth/gate.js';

test('a gate admits max holders per key, queues the rest in order, and refuses past the queue', async () => {
  const gate = createGate({ max: 1, maxQueue: 2 });
  const order: string[] = [];
  const first = await gate.acquire('k');
  assert.ok(first);
  const second = gate.acquire('k');
  const third = gate.acquire('k');
  assert.ok(second && third);
  assert.equal(gate.acquire('k'), null, 'queue full');
  assert.ok(await gate.acquire('other'), 'keys are independent');
  void second.then((release) => {
    order.push('second');
    release();
  });
  void third.then((release) => {
    order.push('third');
    release();
  });
  assert.equal(gate.pending('k'), 3);
  first();
  first(); // a second release call is ignored
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(order, ['second', 'third']);
  assert.equal(gate.pending('k'), 0, 'an idle key is forgotten');
});

test('a gate with max 2 runs two holders at once', async () => {
  const gate = createGate({ max: 2, maxQueue: 0 });
  const a = gate.acquire('k');
  const b = gate.acquire('k');
  assert.ok(a && b);
  assert.equal(gate.acquire('k'), null);
  (await a)();
  assert.ok(gate.acquire('k'));
});
