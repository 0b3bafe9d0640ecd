import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { CommandDeadline } from '../../src/net/command-deadline.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('a command deadline moves by one second per minBytesPerSecond bytes tracked, and maxMs caps it whatever the count', async () => {
  let fired = 0;
  const d = new CommandDeadline({ commandMs: 150, minBytesPerSecond: 1000, onExpire: () => fired++ });
  d.track(0);
  await sleep(100);
  d.track(200); // due 150 + 200 = 350 ms after the start
  await sleep(120);
  assert.equal(fired, 0, 'moved past the 150 ms grace by the bytes');
  await sleep(400);
  assert.equal(fired, 1);
  assert.equal(d.running, false);

  let capped = 0;
  const c = new CommandDeadline({ commandMs: 10_000, minBytesPerSecond: 1000, maxMs: 150, onExpire: () => capped++ });
  c.track(0);
  c.track(1_000_000);
  await sleep(400);
  assert.equal(capped, 1, 'the cap holds however many bytes came');
  c.stop();
});

test('a command deadline refuses bounds that are not positive', () => {
  const onExpire = () => {};
  assert.throws(() => new CommandDeadline({ commandMs: 0, minBytesPerSecond: 1, onExpire }), /Cannot use command deadline/);
  assert.throws(() => new CommandDeadline({ commandMs: 1, minBytesPerSecond: 0, onExpire }), /Cannot use command deadline/);
  assert.throws(() => new CommandDeadline({ commandMs: 1, minBytesPerSecond: 1, maxMs: 0, onExpire }), /Cannot use command deadline/);
});
