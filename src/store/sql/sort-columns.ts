/**
 * Readers of the one-string answers the SQL backends give for SORT and THREAD keys: a string per
 * mailbox instead of a row per message (building 100,000 row objects cost seconds; the database
 * joins the values in C and this reads them in one pass).
 *
 * Invariants: the readers accept exactly the formats the backends write (digits, base-36 ids and
 * the separators below; the values come from our own columns, not from a client) and never throw
 * on an empty mailbox (null or empty text).
 */
import type { SortRanks, ThreadKeyColumns } from '../types.js';

const COMMA = 44;
const SEMICOLON = 59;

/** "uid,uid;uid;..." (the UIDs of each key value, groups in key order) into ranks. */
export function parseRankGroups(text: string | null): SortRanks {
  if (text === null || text.length === 0) return { uids: new Float64Array(0), ranks: new Uint32Array(0) };
  let count = 1;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === COMMA || c === SEMICOLON) count++;
  }
  const uids = new Float64Array(count);
  const ranks = new Uint32Array(count);
  let n = 0;
  let v = 0;
  let rank = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === COMMA || c === SEMICOLON) {
      uids[n] = v;
      ranks[n++] = rank;
      v = 0;
      if (c === SEMICOLON) rank++;
    } else v = v * 10 + (c - 48);
  }
  uids[n] = v;
  ranks[n] = rank;
  return { uids, ranks };
}

/**
 * Ranks of numeric keys (uids[i] has keys[i]): equal keys, equal ranks, ranks dense from 0 in key
 * order. One pass when the keys come in order, else one numeric sort of the keys and a binary
 * search per message: for the integer SORT keys (ARRIVAL, SIZE, DATE) read as numbers rather
 * than as text.
 */
export function rankNumbers(uids: Float64Array, keys: Float64Array): SortRanks {
  const n = keys.length;
  const ranks = new Uint32Array(n);
  // Keys already in order (read by an index on the key): ranks in one pass.
  let ordered = true;
  for (let i = 1; i < n && ordered; i++) if (keys[i]! < keys[i - 1]!) ordered = false;
  if (ordered) {
    for (let i = 1; i < n; i++) ranks[i] = keys[i] === keys[i - 1] ? ranks[i - 1]! : ranks[i - 1]! + 1;
    return { uids, ranks };
  }
  const sorted = keys.slice().sort();
  let distinct = 0;
  for (let i = 0; i < n; i++) if (i === 0 || sorted[i] !== sorted[distinct - 1]) sorted[distinct++] = sorted[i]!;
  for (let i = 0; i < n; i++) {
    const k = keys[i]!;
    let lo = 0;
    let hi = distinct - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (sorted[mid]! < k) lo = mid + 1;
      else hi = mid;
    }
    ranks[i] = lo;
  }
  return { uids, ranks };
}

/** Reads a decimal or base-36 number (lower case) of `text` from `at`; returns the number and
 * the position after it. A leading "-" makes it negative (a Date: before 1970). */
function readNumber(text: string, at: number, radix: number, out: Float64Array, slot: number): number {
  let i = at;
  const negative = text.charCodeAt(i) === 45;
  if (negative) i++;
  let v = 0;
  for (; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const d = c <= 57 ? c - 48 : c - 87; // 0-9, then a-z
    if (d < 0 || d >= radix) break;
    v = v * radix + d;
  }
  out[slot] = negative ? -v : v;
  return i;
}

/** "uid sent flags subject id,ref,ref;..." (THREAD keys, one message per ";"; subject and ids
 * in base 36, an empty id for a message without Message-ID) into columns. */
export function parseThreadRows(text: string | null): ThreadKeyColumns {
  let rows = text === null || text.length === 0 ? 0 : 1;
  let ids = 0;
  const t = text ?? '';
  for (let i = 0; i < t.length; i++) {
    const c = t.charCodeAt(i);
    if (c === SEMICOLON) rows++;
    else if (c === COMMA) ids++;
  }
  const uids = new Float64Array(rows);
  const dates = new Float64Array(rows);
  const flags = new Float64Array(rows);
  const subjects = new Float64Array(rows);
  const messageIds = new Float64Array(rows);
  const refStart = new Uint32Array(rows + 1);
  const refs = new Float64Array(ids);
  let nRefs = 0;
  let i = 0;
  for (let r = 0; r < rows; r++) {
    refStart[r] = nRefs;
    i = readNumber(t, i, 10, uids, r) + 1;
    i = readNumber(t, i, 10, dates, r) + 1;
    i = readNumber(t, i, 10, flags, r) + 1;
    i = readNumber(t, i, 36, subjects, r) + 1;
    i = readNumber(t, i, 36, messageIds, r);
    while (t.charCodeAt(i) === COMMA) i = readNumber(t, i + 1, 36, refs, nRefs++);
    i++; // ";"
  }
  refStart[rows] = nRefs;
  return { uids, dates, flags: Uint8Array.from(flags), subjects, messageIds, refStart, refs };
}
