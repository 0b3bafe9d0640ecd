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
const SPACE = 32;

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

/** "uid sent flags id,ref,ref;..." (THREAD keys, one message per ";"; ids in base 36, an empty
 * first id for a message without Message-ID) into columns. */
export function parseThreadRows(text: string | null): ThreadKeyColumns {
  if (text === null || text.length === 0) {
    return {
      uids: new Float64Array(0),
      dates: new Float64Array(0),
      flags: new Uint8Array(0),
      messageIds: new Float64Array(0),
      refStart: new Uint32Array(1),
      refs: new Float64Array(0),
    };
  }
  let rows = 1;
  let ids = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === SEMICOLON) rows++;
    else if (c === COMMA) ids++;
  }
  const uids = new Float64Array(rows);
  const dates = new Float64Array(rows);
  const flags = new Uint8Array(rows);
  const messageIds = new Float64Array(rows);
  const refStart = new Uint32Array(rows + 1);
  const refs = new Float64Array(ids);
  let r = 0;
  let nRefs = 0;
  let i = 0;
  const number = (radix: number): number => {
    // A Date: before 1970 is a negative date.
    const negative = text.charCodeAt(i) === 45;
    if (negative) i++;
    let v = 0;
    for (; i < text.length; i++) {
      const c = text.charCodeAt(i);
      // 0-9, then a-z for base 36.
      const d = c <= 57 ? c - 48 : c - 87;
      if (c === SPACE || c === COMMA || c === SEMICOLON || d < 0 || d >= radix) break;
      v = v * radix + d;
    }
    return negative ? -v : v;
  };
  while (r < rows) {
    refStart[r] = nRefs;
    uids[r] = number(10);
    i++;
    dates[r] = number(10);
    i++;
    flags[r] = number(10);
    i++;
    messageIds[r] = number(36);
    while (i < text.length && text.charCodeAt(i) === COMMA) {
      i++;
      refs[nRefs++] = number(36);
    }
    i++; // ";"
    r++;
  }
  refStart[rows] = nRefs;
  return { uids, dates, flags, messageIds, refStart, refs };
}
