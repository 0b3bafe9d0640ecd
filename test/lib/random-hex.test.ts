import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { createRandomHex } from '../../src/lib/random-hex.js';

test('random hex ids: the requested length, hexadecimal, distinct across block refills', () => {
  // A small block so that the run crosses many refills, including ids that do not fit the rest.
  const next = createRandomHex(20);
  const seen = new Set<string>();
  for (let i = 0; i < 2000; i++) {
    const bytes = 6 + (i % 3);
    const id = next(bytes);
    assert.match(id, /^[0-9a-f]+$/);
    assert.equal(id.length, bytes * 2);
    seen.add(id);
  }
  // 48 to 64 random bits each: a collision among 2000 would mean bytes were reused.
  assert.equal(seen.size, 2000);
});

test('random hex ids: sizes out of range are refused', () => {
  const next = createRandomHex(16);
  assert.throws(() => next(0));
  assert.throws(() => next(-1));
  assert.throws(() => next(17));
  assert.equal(next(16).length, 32);
});
