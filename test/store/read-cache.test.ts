import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { WeightedLru } from '../../src/lib/lru.js';
import { BLOB_CACHE_MAX_READ, BlobPrefixCache } from '../../src/store/read-cache.js';

describe('read caches (store/read-cache.ts)', () => {
  test('WeightedLru never holds more than its weight or entry bound, and keeps a value that was hit over one that was not', () => {
    const lru = new WeightedLru<string, number>(100, 5);
    for (let i = 0; i < 50; i++) {
      lru.set(`k${i}`, i, 30);
      assert.ok(lru.weight <= 100, `weight ${lru.weight}`);
    }
    assert.equal(lru.size, 3);
    assert.equal(lru.weight, 90);
    // k47 is the oldest; a hit gives it a second chance, so k48 goes first.
    assert.equal(lru.get('k47'), 47);
    lru.set('new', 1, 30);
    assert.equal(lru.get('k47'), 47);
    assert.equal(lru.get('k48'), undefined);
    // The entry bound.
    for (let i = 0; i < 10; i++) lru.set(`s${i}`, i, 1);
    assert.equal(lru.size, 5);
    // Heavier than the whole bound: not kept, and nothing else is lost for it.
    const before = lru.size;
    lru.set('huge', 0, 101);
    assert.equal(lru.get('huge'), undefined);
    assert.equal(lru.size, before);
    lru.delete('s9');
    assert.equal(lru.get('s9'), undefined);
    assert.equal(lru.weight, 4);
  });

  test('a WeightedLru handle finds its value while the cache holds it, marks it used, and holds nothing once the value goes', () => {
    const lru = new WeightedLru<string, { n: number }>(100);
    const a = { n: 1 };
    lru.set('a', a, 40);
    const h = lru.handle('a');
    assert.ok(h !== undefined);
    assert.equal(h.value, a);
    // Set again with a new weight: the same value, the handle still finds it.
    lru.set('a', a, 50);
    assert.equal(h.value, a);
    assert.equal(lru.weight, 50);
    // A hit through the handle gives the value its second chance, as get does.
    lru.set('b', { n: 2 }, 40);
    h.used = true;
    lru.set('c', { n: 3 }, 40);
    assert.equal(lru.get('b'), undefined);
    assert.equal(h.value, a);
    // Evicted: the handle is emptied (it no longer holds the value's memory).
    lru.set('d', { n: 4 }, 40);
    lru.set('e', { n: 5 }, 40);
    assert.equal(lru.get('a'), undefined);
    assert.equal(h.value, undefined);
    // Replaced by another value, deleted, cleared: emptied too.
    const hc = lru.handle('e')!;
    lru.set('e', { n: 6 }, 10);
    assert.equal(hc.value, undefined);
    const hd = lru.handle('d')!;
    lru.delete('d');
    assert.equal(hd.value, undefined);
    const he = lru.handle('e')!;
    lru.clear();
    assert.equal(he.value, undefined);
    assert.equal(lru.handle('e'), undefined);
  });

  test('BlobPrefixCache serves ranges inside the cached prefix only, clamped as readBlob clamps, within its byte bound', () => {
    const cache = new BlobPrefixCache(10_000);
    const blob = Buffer.from(Array.from({ length: 500 }, (_, i) => i % 251));
    cache.put('h', blob.length, blob.subarray(0, 100));
    assert.deepEqual(cache.get('h', 0, 100), blob.subarray(0, 100));
    assert.deepEqual(cache.get('h', 10, 20), blob.subarray(10, 20));
    assert.deepEqual(cache.get('h', 20, 10), Buffer.alloc(0));
    assert.equal(cache.get('h', 90, 101), undefined, 'past the prefix');
    assert.equal(cache.get('h'), undefined, 'the whole blob is not cached');
    // A longer prefix replaces it; the whole blob then answers any range, clamped at its end.
    cache.put('h', blob.length, blob);
    assert.deepEqual(cache.get('h'), blob);
    assert.deepEqual(cache.get('h', 495, 600), blob.subarray(495));
    assert.deepEqual(cache.get('h', 600, 700), Buffer.alloc(0));
    // A shorter one does not replace it.
    cache.put('h', blob.length, blob.subarray(0, 10));
    assert.deepEqual(cache.get('h', 0, 400), blob.subarray(0, 400));
    cache.delete('h');
    assert.equal(cache.get('h', 0, 1), undefined);
    // Bounded by bytes, whatever the number of blobs.
    for (let i = 0; i < 1000; i++) cache.put(`b${i}`, 500, blob);
    assert.ok(cache.bytes <= 10_000, `${cache.bytes} bytes`);
    assert.ok(cache.get('b999', 0, 10) !== undefined);
    // Reads too long to be worth keeping are not kept.
    const big = Buffer.alloc(BLOB_CACHE_MAX_READ + 1);
    const roomy = new BlobPrefixCache(10 * BLOB_CACHE_MAX_READ);
    roomy.put('big', big.length, big);
    assert.equal(roomy.get('big', 0, 10), undefined);
  });
});
