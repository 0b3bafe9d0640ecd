/**
 * The stored form of a view cache entry (view-cache.ts): one blob per mailbox holding the UID,
 * modseq and flag list of every message as typed arrays, so a process that starts (or a cache
 * that dropped the entry) reads one value instead of a row per message. A snapshot is only a
 * starting point: the cache applies what changed since its modseq before handing anything out,
 * so an old snapshot is slower, never wrong.
 *
 * Layout (format 1, little-endian; offsets in bytes):
 *
 *      0  u32  MAGIC ("FXVS")
 *      4  u32  FORMAT
 *      8  f64  UIDVALIDITY          16  f64  UIDNEXT          24  f64  modseq (the state's)
 *     32  f64  messages n           40  f64  flag lists k      48  f64  flag text bytes t
 *     56  the flag lists as UTF-8: lists joined by "\n", flags of a list by " " (flags are IMAP
 *         atoms: neither can occur in one)
 *  56+t   per message, in UID order, three unsigned LEB128 varints: the UID's distance from the
 *         previous one (the first: from 0; never 0), the modseq's distance from the previous
 *         message's, zigzag-encoded (it may go down), and the index of its flag list (< k)
 *    end  u32  CRC-32 of every byte before it
 *
 * Compact rather than the arrays as they are (16 bytes a message): a mailbox's UIDs are nearly
 * consecutive, neighbours' modseqs close, flag lists few, so a message takes 3 to 6 bytes. Fresh
 * memory is what a cold load pays for (page faults: about 3 ms per MB on the VM measured), and a
 * compact blob is read from fewer database pages; decoding the varints costs less than that.
 *
 * Invariants: decode returns null (the caller rebuilds from the rows) for anything but a blob of
 * this exact format whose checksum, lengths, UID order and flag list indexes are right; a blob of
 * another format (older or newer program) is never interpreted.
 */
import { crc32 } from 'node:zlib';

const MAGIC = 0x53565846; // "FXVS" read as a little-endian u32
/** Bumped whenever the layout changes: a snapshot of another format is ignored and rewritten. */
export const VIEW_SNAPSHOT_FORMAT = 1;
const HEADER = 56;
/** The view of a mailbox as of a modseq (what an entry of the view cache holds). */
export interface ViewState {
  uidValidity: number;
  uidNext: number;
  modseq: number;
  uids: Uint32Array;
  modseqs: Float64Array;
  flagIds: Uint32Array;
  flagSets: readonly (readonly string[])[];
}

/** A snapshot read back: the state, n messages in arrays with room for more. */
export interface DecodedSnapshot extends ViewState {
  n: number;
  /** How many messages have each flag list. */
  counts: number[];
  uids: Uint32Array<ArrayBuffer>;
  modseqs: Float64Array<ArrayBuffer>;
  flagIds: Uint32Array<ArrayBuffer>;
}

/** Modseqs (and their distances) stay below this, exact in a double and in zigzag form. */
const MAX_MODSEQ = 2 ** 51;

/** Encodes the first n messages of the state's arrays; null when a modseq is out of range. */
export function encodeViewSnapshot(s: ViewState, n: number): Uint8Array | null {
  const text = Buffer.from(s.flagSets.map((f) => f.join(' ')).join('\n'), 'utf8');
  // Worst case: 5 bytes of UID distance, 8 of modseq distance, 5 of flag list index.
  const out = new Uint8Array(HEADER + text.length + 18 * n + 4);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, MAGIC, true);
  dv.setUint32(4, VIEW_SNAPSHOT_FORMAT, true);
  [s.uidValidity, s.uidNext, s.modseq, n, s.flagSets.length, text.length].forEach((v, i) => dv.setFloat64(8 + 8 * i, v, true));
  out.set(text, HEADER);
  let p = HEADER + text.length;
  const put = (v: number): void => {
    while (v >= 128) {
      out[p++] = (v % 128) | 128;
      v = Math.floor(v / 128);
    }
    out[p++] = v;
  };
  let uid = 0;
  let modseq = 0;
  for (let i = 0; i < n; i++) {
    const m = s.modseqs[i]!;
    if (!(m >= 0 && m < MAX_MODSEQ)) return null;
    put(s.uids[i]! - uid);
    put(m >= modseq ? 2 * (m - modseq) : 2 * (modseq - m) - 1);
    put(s.flagIds[i]!);
    uid = s.uids[i]!;
    modseq = m;
  }
  dv.setUint32(p, crc32(out.subarray(0, p)), true);
  return out.slice(0, p + 4);
}

/**
 * The state in a snapshot, its arrays with room for `spare` more messages; null when the blob is
 * not a sound snapshot of this format.
 */
export function decodeViewSnapshot(blob: Uint8Array, spare = 16): DecodedSnapshot | null {
  if (blob.length < HEADER + 4) return null;
  const dv = new DataView(blob.buffer, blob.byteOffset, blob.length);
  if (dv.getUint32(0, true) !== MAGIC || dv.getUint32(4, true) !== VIEW_SNAPSHOT_FORMAT) return null;
  const [uidValidity, uidNext, modseq, n, k, t] = [0, 1, 2, 3, 4, 5].map((i) => dv.getFloat64(8 + 8 * i, true)) as [number, number, number, number, number, number];
  if (![uidValidity, uidNext, modseq, n, k, t].every((v) => Number.isSafeInteger(v) && v >= 0)) return null;
  // Each message takes at least 3 bytes: a count beyond that is not this blob's.
  const end = blob.length - 4;
  if (HEADER + t + 3 * n > end) return null;
  if (dv.getUint32(end, true) !== crc32(blob.subarray(0, end))) return null;
  const text = Buffer.from(blob.buffer, blob.byteOffset + HEADER, t).toString('utf8');
  const flagSets = k === 0 ? [] : text.split('\n').map((l) => (l === '' ? [] : l.split(' ')));
  if (flagSets.length !== k) return null;
  // Reads one varint at p; NaN when it runs past the end or the range (refused by the caller).
  const varint = (): number => {
    let v = 0;
    for (let scale = 1; p < end && scale <= MAX_MODSEQ; scale *= 128) {
      const b = blob[p++]!;
      v += (b & 127) * scale;
      if (b < 128) return v;
    }
    return NaN;
  };
  const modseqs = new Float64Array(n + spare);
  const uids = new Uint32Array(n + spare);
  const flagIds = new Uint32Array(n + spare);
  const counts = new Array<number>(k).fill(0);
  let p = HEADER + t;
  let uid = 0;
  let m = 0;
  // This loop is the cold load's CPU time, run once in a fresh process (mostly not optimised
  // yet): the common case, three one-byte varints, takes the short way.
  for (let i = 0; i < n; i++) {
    let du: number;
    let dm: number;
    let f: number;
    if (p + 3 <= end && (blob[p]! | blob[p + 1]! | blob[p + 2]!) < 128) {
      du = blob[p]!;
      dm = blob[p + 1]!;
      f = blob[p + 2]!;
      p += 3;
    } else {
      du = varint();
      dm = varint();
      f = varint();
    }
    if (!(du >= 1 && f < k)) return null;
    uid += du;
    m += (dm & 1) === 0 ? dm / 2 : -(dm + 1) / 2;
    if (m < 0 || uid >= uidNext) return null;
    uids[i] = uid;
    modseqs[i] = m;
    flagIds[i] = f;
    counts[f]!++;
  }
  if (p !== end) return null;
  return { uidValidity, uidNext, modseq, n, uids, modseqs, flagIds, flagSets, counts };
}
