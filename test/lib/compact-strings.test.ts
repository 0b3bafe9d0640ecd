import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import fc from 'fast-check';
import { HashIndex, StringArena, Uint32List } from '../../src/lib/compact-strings.js';

test('HashIndex maps strings to numbers like a Map, through growth; the first value of a key stays', () => {
  const ix = new HashIndex(4);
  const map = new Map<string, number>();
  for (let i = 0; i < 50_000; i++) {
    const key = `${1_700_000_000 + i}.M${i}P${i % 7}.host,S=${i * 3}`;
    assert.equal(ix.add(key, i), true);
    map.set(key, i);
  }
  assert.equal(ix.size, 50_000);
  assert.equal(ix.add('1700000000.M0P0.host,S=0', 99), false, 'a key already there is not replaced');
  for (const [k, v] of map) assert.equal(ix.get(k), v);
  assert.equal(ix.get('absent'), -1);
  assert.equal(ix.get(''), -1);
  assert.equal(ix.add('', 0xffff_fffe), true);
  assert.equal(ix.get(''), 0xffff_fffe);
  fc.assert(
    fc.property(fc.uniqueArray(fc.string({ unit: 'grapheme' }), { maxLength: 200 }), (keys) => {
      const h = new HashIndex();
      keys.forEach((k, i) => assert.ok(h.add(k, i)));
      keys.forEach((k, i) => assert.equal(h.get(k), i));
    }),
    { seed: 11, numRuns: 200 },
  );
});

test('StringArena gives strings back and orders them by code point, optionally up to a stop byte', () => {
  const a = new StringArena();
  const words = ['b', 'a:2,S', 'a', 'é', 'z', '', 'a:1', 'ab', '日本', 'x'.repeat(100_000)];
  for (const w of words) a.push(w);
  assert.equal(a.length, words.length);
  words.forEach((w, i) => assert.equal(a.get(i), w));
  const order = words.map((_, i) => i).sort((i, j) => a.compare(i, j));
  assert.deepEqual(order.map((i) => words[i]), [...words].sort((x, y) => (Buffer.compare(Buffer.from(x), Buffer.from(y)))));
  const colon = 0x3a;
  assert.equal(a.compare(1, 2, colon), 0, '"a:2,S" and "a" have the same base');
  assert.equal(a.compare(1, 6, colon), 0);
  assert.ok(a.compare(2, 7, colon) < 0, '"a" before "ab"');
  assert.ok(a.compare(5, 2) < 0, 'the empty string first');
});

test('Uint32List grows and keeps its values', () => {
  const l = new Uint32List();
  for (let i = 0; i < 5000; i++) assert.equal(l.push(i * 7), i);
  l.set(3, 0xffff_ffff);
  assert.equal(l.length, 5000);
  assert.equal(l.get(3), 0xffff_ffff);
  assert.equal(l.get(4999), 4999 * 7);
});
