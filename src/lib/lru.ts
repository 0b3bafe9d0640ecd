/** A small least-recently-used cache on Map's insertion order. */
export class LruCache<K, V> {
  readonly #max: number;
  readonly #map = new Map<K, V>();

  constructor(max: number) {
    this.#max = Math.max(1, max);
  }

  get(key: K): V | undefined {
    const value = this.#map.get(key);
    if (value !== undefined) {
      this.#map.delete(key);
      this.#map.set(key, value);
    }
    return value;
  }

  set(key: K, value: V): void {
    this.#map.delete(key);
    this.#map.set(key, value);
    if (this.#map.size > this.#max) {
      const oldest = this.#map.keys().next();
      if (oldest.done !== true) this.#map.delete(oldest.value);
    }
  }

  delete(key: K): void {
    this.#map.delete(key);
  }

  clear(): void {
    this.#map.clear();
  }
}

/**
 * A value held by a WeightedLru as `handle` gives it: whoever keeps the handle finds the value
 * again without a lookup by key, and marks it used as get does. The cache sets `value` to
 * undefined when it lets the value go (evicted, deleted, replaced by another value), so a handle
 * kept elsewhere holds no memory of the value: the bound stays true.
 */
export interface LruHandle<V> {
  readonly value: V | undefined;
  /** The weight the value was set with (while `value` is there). */
  readonly weight: number;
  /** Set on a hit (get, or a holder of the handle); read by the eviction (second chance). */
  used: boolean;
}

interface LruSlot<V> {
  value: V | undefined;
  weight: number;
  used: boolean;
}

/**
 * A cache bounded by the summed weight of its values (e.g. bytes) as well as by their number:
 * whatever the values' sizes, it never holds more than `maxWeight`. A value heavier than
 * `maxWeight` alone is not kept. Eviction is "second chance" (CLOCK): a hit only marks the
 * value, and the oldest value is evicted unless it was marked, in which case it is unmarked and
 * moved to the young end. A hit is then one Map lookup, where moving the value on every hit (as
 * LruCache does) is three; hits are what FETCH does for every message.
 */
export class WeightedLru<K, V> {
  readonly #maxWeight: number;
  readonly #maxEntries: number;
  readonly #map = new Map<K, LruSlot<V>>();
  #weight = 0;

  constructor(maxWeight: number, maxEntries = Number.POSITIVE_INFINITY) {
    this.#maxWeight = Math.max(0, maxWeight);
    this.#maxEntries = Math.max(1, maxEntries);
  }

  /** The summed weight of the values held. */
  get weight(): number {
    return this.#weight;
  }

  get size(): number {
    return this.#map.size;
  }

  get(key: K): V | undefined {
    const slot = this.#map.get(key);
    if (slot === undefined) return undefined;
    slot.used = true;
    return slot.value;
  }

  /** get, with the handle that finds the value again (see LruHandle). */
  handle(key: K): LruHandle<V> | undefined {
    const slot = this.#map.get(key);
    if (slot === undefined) return undefined;
    slot.used = true;
    return slot;
  }

  /** Keeps `value` under `key` with its weight, as the youngest value. Setting the value a key
   * holds again (with a new weight) keeps its handles valid. */
  set(key: K, value: V, weight: number): void {
    const had = this.#map.get(key);
    if (had !== undefined) {
      this.#map.delete(key);
      this.#weight -= had.weight;
    }
    if (weight > this.#maxWeight) {
      if (had !== undefined) had.value = undefined;
      return;
    }
    let slot: LruSlot<V>;
    if (had !== undefined && had.value === value) {
      slot = had;
      slot.weight = weight;
      slot.used = false;
    } else {
      if (had !== undefined) had.value = undefined;
      slot = { value, weight, used: false };
    }
    this.#map.set(key, slot);
    this.#weight += weight;
    while (this.#weight > this.#maxWeight || this.#map.size > this.#maxEntries) {
      const oldest = this.#map.entries().next();
      if (oldest.done === true) break;
      const [k, old] = oldest.value;
      this.#map.delete(k);
      if (old.used && k !== key) {
        // Second chance: to the young end, unmarked. Each value is moved at most once per
        // pass, so the loop ends.
        old.used = false;
        this.#map.set(k, old);
      } else {
        this.#weight -= old.weight;
        old.value = undefined;
      }
    }
  }

  delete(key: K): void {
    const slot = this.#map.get(key);
    if (slot === undefined) return;
    this.#map.delete(key);
    this.#weight -= slot.weight;
    slot.value = undefined;
  }

  clear(): void {
    for (const slot of this.#map.values()) slot.value = undefined;
    this.#map.clear();
    this.#weight = 0;
  }
}
