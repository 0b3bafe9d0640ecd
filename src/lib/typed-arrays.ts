/** Helpers for the typed arrays that hold per-message columns (store/view-cache.ts, the IMAP view). */

/** A copy of a[0, n) in a new array of the same kind and of length cap (at least n): room to
 * append without a copy each time. */
export function resized<T extends Uint32Array | Float64Array>(a: T, n: number, cap: number): T {
  const out = new (a.constructor as new (length: number) => T)(cap);
  out.set(a.subarray(0, n));
  return out;
}
