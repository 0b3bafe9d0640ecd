/**
 * Compact per-item records for sources of hundreds of thousands of items (an import's Maildir
 * listing), where a Map of strings would cost over 100 bytes an item.
 *
 * - HashIndex: string -> uint32, keyed by a 64-bit hash of the string (the string itself is not
 *   kept): 24 bytes an item at most. Two different strings with the same 64-bit hash are taken
 *   for one (for a million names, a chance of about 3 in 10^8); the first one inserted keeps it.
 * - StringArena: strings as UTF-8 bytes in one growing buffer, with their offsets: a few bytes
 *   over the string's own length, and sortable without making a string per comparison.
 */

const EMPTY = 0;

function hash64(s: string): [number, number] {
  // FNV-1a and a multiply-xorshift of the UTF-16 code units, with different constants: two
  // independent 32-bit halves.
  let a = 0x811c9dc5;
  let b = 0x9747b28c;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  b = Math.imul(b ^ (b >>> 13), 0xc2b2ae35);
  return [a >>> 0, (b ^ (b >>> 16)) >>> 0];
}

export class HashIndex {
  #hi: Uint32Array;
  #lo: Uint32Array;
  /** value + 1; 0 marks an empty slot. */
  #values: Uint32Array;
  #size = 0;

  constructor(expected = 1024) {
    let cap = 1024;
    while (cap < expected * 2) cap *= 2;
    this.#hi = new Uint32Array(cap);
    this.#lo = new Uint32Array(cap);
    this.#values = new Uint32Array(cap);
  }

  get size(): number {
    return this.#size;
  }

  #slot(hi: number, lo: number): number {
    const mask = this.#values.length - 1;
    let i = (hi ^ Math.imul(lo, 0x9e3779b1)) & mask;
    while (this.#values[i] !== EMPTY && (this.#hi[i] !== hi || this.#lo[i] !== lo)) i = (i + 1) & mask;
    return i;
  }

  /** Sets key -> value (0 <= value < 2^32 - 1) unless the key is there; whether it was added. */
  add(key: string, value: number): boolean {
    if ((this.#size + 1) * 2 > this.#values.length) this.#grow();
    const [hi, lo] = hash64(key);
    const i = this.#slot(hi, lo);
    if (this.#values[i] !== EMPTY) return false;
    this.#hi[i] = hi;
    this.#lo[i] = lo;
    this.#values[i] = value + 1;
    this.#size++;
    return true;
  }

  /** The value of key, or -1. */
  get(key: string): number {
    const [hi, lo] = hash64(key);
    const v = this.#values[this.#slot(hi, lo)]!;
    return v === EMPTY ? -1 : v - 1;
  }

  #grow(): void {
    const hi = this.#hi;
    const lo = this.#lo;
    const values = this.#values;
    this.#hi = new Uint32Array(values.length * 2);
    this.#lo = new Uint32Array(values.length * 2);
    this.#values = new Uint32Array(values.length * 2);
    for (let j = 0; j < values.length; j++) {
      if (values[j] === EMPTY) continue;
      const i = this.#slot(hi[j]!, lo[j]!);
      this.#hi[i] = hi[j]!;
      this.#lo[i] = lo[j]!;
      this.#values[i] = values[j]!;
    }
  }
}

/** A growable typed array of uint32 (per-item numbers without a JS array's 8 bytes a slot). */
export class Uint32List {
  #a = new Uint32Array(1024);
  length = 0;

  push(v: number): number {
    if (this.length === this.#a.length) {
      const b = new Uint32Array(this.#a.length * 2);
      b.set(this.#a);
      this.#a = b;
    }
    this.#a[this.length] = v;
    return this.length++;
  }

  get(i: number): number {
    return this.#a[i]!;
  }

  set(i: number, v: number): void {
    this.#a[i] = v;
  }
}

export class StringArena {
  #bytes = Buffer.allocUnsafe(64 * 1024);
  #used = 0;
  readonly #starts = new Uint32List();

  get length(): number {
    return this.#starts.length;
  }

  /** Appends s; its index. */
  push(s: string): number {
    const need = Buffer.byteLength(s);
    if (this.#used + need > this.#bytes.length) {
      let cap = this.#bytes.length * 2;
      while (cap < this.#used + need) cap *= 2;
      const b = Buffer.allocUnsafe(cap);
      this.#bytes.copy(b, 0, 0, this.#used);
      this.#bytes = b;
    }
    this.#bytes.write(s, this.#used);
    this.#used += need;
    return this.#starts.push(this.#used - need);
  }

  #end(i: number): number {
    return i + 1 < this.#starts.length ? this.#starts.get(i + 1) : this.#used;
  }

  get(i: number): string {
    return this.#bytes.toString('utf8', this.#starts.get(i), this.#end(i));
  }

  /**
   * Byte order of items i and j (UTF-8 byte order is code point order), comparing only up to the
   * first byte `stop` of each when given (a Maildir name's base ends at its first ':').
   */
  compare(i: number, j: number, stop = -1): number {
    const b = this.#bytes;
    let x = this.#starts.get(i);
    let y = this.#starts.get(j);
    const xe = this.#end(i);
    const ye = this.#end(j);
    for (;;) {
      const cx = x < xe && b[x] !== stop ? b[x]! : -1;
      const cy = y < ye && b[y] !== stop ? b[y]! : -1;
      if (cx !== cy) return cx - cy;
      if (cx === -1) return 0;
      x++;
      y++;
    }
  }
}
