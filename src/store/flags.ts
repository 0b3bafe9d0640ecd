/**
 * Message flags as stored: the five system flags as a bitmask (so STORE on a whole mailbox and
 * the unseen/deleted counts are integer operations) and keywords as a list kept in first-seen
 * case. Shared by every backend.
 */
import { StoreError } from './types.js';
import type { FlagMode } from './types.js';

export const FLAG_SEEN = 1;
export const FLAG_ANSWERED = 2;
export const FLAG_FLAGGED = 4;
export const FLAG_DELETED = 8;
export const FLAG_DRAFT = 16;

/** Canonical spelling and bit of each system flag (RFC 9051 §2.3.2), in display order. */
const SYSTEM_FLAGS: ReadonlyArray<readonly [string, number]> = [
  ['\\Seen', FLAG_SEEN],
  ['\\Answered', FLAG_ANSWERED],
  ['\\Flagged', FLAG_FLAGGED],
  ['\\Deleted', FLAG_DELETED],
  ['\\Draft', FLAG_DRAFT],
];
const SYSTEM_BY_LOWER = new Map(SYSTEM_FLAGS.map(([name, bit]) => [name.toLowerCase(), bit]));

/** Longest keyword accepted; IMAP atoms have no fixed limit, this only bounds storage. */
export const MAX_KEYWORD_LENGTH = 256;
/** Keywords are stored space-separated, so none may contain a space or a control character. */
const KEYWORD_RE = /^[^\s\x00-\x1f\x7f()\\{%*"\]]+$/u;

export interface FlagSet {
  mask: number;
  keywords: string[];
}

/**
 * Validates and canonicalises a flag list: system flags become bits, keywords are deduplicated
 * case-insensitively (RFC 9051 §2.3.2: flags are case-insensitive). \Recent cannot be set by a
 * client (RFC 3501 §2.3.2, dropped in RFC 9051) and is ignored.
 */
export function parseFlags(flags: readonly string[]): FlagSet {
  let mask = 0;
  const keywords: string[] = [];
  const seen = new Set<string>();
  for (const flag of flags) {
    const lower = flag.toLowerCase();
    if (flag.startsWith('\\')) {
      const bit = SYSTEM_BY_LOWER.get(lower);
      if (bit !== undefined) mask |= bit;
      else if (lower !== '\\recent') throw new StoreError('invalid', `Cannot store flag ${flag}: not a system flag`);
      continue;
    }
    if (flag.length === 0 || flag.length > MAX_KEYWORD_LENGTH || !KEYWORD_RE.test(flag)) {
      throw new StoreError('invalid', `Cannot store keyword ${JSON.stringify(flag)}: not an atom`);
    }
    if (!seen.has(lower)) {
      seen.add(lower);
      keywords.push(flag);
    }
  }
  return { mask, keywords };
}

export function decodeKeywords(stored: string): string[] {
  return stored === '' ? [] : stored.split(' ');
}

export function encodeKeywords(keywords: readonly string[]): string {
  return keywords.join(' ');
}

/** The flag list of an entry: system flags in canonical order, then keywords. */
export function flagList(mask: number, keywords: string): string[] {
  const out: string[] = [];
  for (const [name, bit] of SYSTEM_FLAGS) if ((mask & bit) !== 0) out.push(name);
  if (keywords !== '') for (const k of keywords.split(' ')) out.push(k);
  return out;
}

/** The new flags of an entry after STORE in the given mode (RFC 9051 §6.4.6). */
export function applyFlags(current: FlagSet, mode: FlagMode, change: FlagSet): FlagSet {
  switch (mode) {
    case 'set':
      return change;
    case 'add': {
      const have = new Set(current.keywords.map((k) => k.toLowerCase()));
      const added = change.keywords.filter((k) => !have.has(k.toLowerCase()));
      return { mask: current.mask | change.mask, keywords: added.length === 0 ? current.keywords : [...current.keywords, ...added] };
    }
    case 'remove': {
      const drop = new Set(change.keywords.map((k) => k.toLowerCase()));
      return { mask: current.mask & ~change.mask, keywords: current.keywords.filter((k) => !drop.has(k.toLowerCase())) };
    }
  }
}

/** Same flags, ignoring keyword order and case. */
export function sameFlags(a: FlagSet, b: FlagSet): boolean {
  if (a.mask !== b.mask || a.keywords.length !== b.keywords.length) return false;
  const set = new Set(a.keywords.map((k) => k.toLowerCase()));
  return b.keywords.every((k) => set.has(k.toLowerCase()));
}

/** flagList with one shared array per distinct (bits, keywords): for results of many entries. */
export function sharedFlagLists(): (mask: number, keywords: string) => string[] {
  const lists = new Map<string, string[]>();
  return (mask, keywords) => {
    const key = keywords === '' ? String(mask) : `${mask} ${keywords}`;
    let list = lists.get(key);
    if (list === undefined) {
      list = flagList(mask, keywords);
      lists.set(key, list);
    }
    return list;
  };
}

/** A STORE that changes more distinct flag states than this is written row by row rather than
 * by one UPDATE that maps each state to its new one (a CASE in SQLite, a join to the list of
 * states in PostgreSQL): each row of the set is compared with every state of the list. */
export const MAX_FLAG_TRANSITIONS = 16;

/** The rows of a STORE's set that share one flag state: (bits, encoded keywords), how many, and
 * whether UNCHANGEDSINCE refuses them (RFC 7162 §3.1.3). */
export interface FlagGroup {
  mask: number;
  keywords: string;
  refused: boolean;
  count: number;
}

/** A row of a STORE's set as both stores read it before the write: [uid, modseq, bits, encoded
 * keywords]. */
export type FlagStateRow = readonly [number, number, number, string];

/** The distinct flag states of a STORE's rows, each with its count and whether UNCHANGEDSINCE
 * `since` refuses it (RFC 7162 §3.1.3): planFlagChange's input, counted from rows read whole. */
export function flagGroupsOfRows(rows: readonly FlagStateRow[], since: number): FlagGroup[] {
  const states = new Map<string, FlagGroup>();
  for (const [, modseq, mask, keywords] of rows) {
    const refused = modseq > since;
    const key = `${mask} ${refused ? 1 : 0} ${keywords}`;
    const g = states.get(key);
    if (g === undefined) states.set(key, { mask, keywords, refused, count: 1 });
    else g.count++;
  }
  return [...states.values()];
}

/**
 * The rows of a STORE's set, read whole before its write, that the write changes: those of a
 * state the plan changes that UNCHANGEDSINCE `since` does not refuse, each as [uid, index of its
 * transition], ascending by UID. Both stores then need no read after the write.
 */
export function changedByTransition(rows: readonly FlagStateRow[], since: number, transitions: readonly FlagTransition[]): Array<[number, number]> {
  const index = new Map(transitions.map((t, i) => [`${t.from.mask} ${t.from.keywords}`, i]));
  const out: Array<[number, number]> = [];
  let ascending = true;
  for (const [uid, modseq, mask, keywords] of rows) {
    if (modseq > since) continue;
    const i = index.get(`${mask} ${keywords}`);
    if (i === undefined) continue;
    if (out.length > 0 && uid <= out[out.length - 1]![0]) ascending = false;
    out.push([uid, i]);
  }
  return ascending ? out : out.sort((a, b) => a[0] - b[0]);
}

/** One flag state the STORE changes, and what it becomes. */
export interface FlagTransition {
  from: { mask: number; keywords: string };
  to: { mask: number; keywords: string };
  count: number;
}

export interface FlagPlan {
  transitions: FlagTransition[];
  /** Rows in the set, found in the store. */
  total: number;
  refused: number;
  /** Change of the mailbox's unseen and deleted counts. */
  unseen: number;
  deleted: number;
}

/**
 * Plans a STORE from the distinct flag states of its rows (a mailbox of 100,000 messages has a
 * handful): each state the change really alters, and to what. A state left as it is keeps its
 * rows' modseq (RFC 7162 §3.1.3), so only the rows that change are written.
 */
export function planFlagChange(groups: readonly FlagGroup[], mode: FlagMode, change: FlagSet): FlagPlan {
  const plan: FlagPlan = { transitions: [], total: 0, refused: 0, unseen: 0, deleted: 0 };
  for (const g of groups) {
    plan.total += g.count;
    if (g.refused) {
      plan.refused += g.count;
      continue;
    }
    const current: FlagSet = { mask: g.mask, keywords: decodeKeywords(g.keywords) };
    const next = applyFlags(current, mode, change);
    if (sameFlags(current, next)) continue;
    const to = { mask: next.mask, keywords: encodeKeywords(next.keywords) };
    plan.transitions.push({ from: { mask: g.mask, keywords: g.keywords }, to, count: g.count });
    plan.unseen += g.count * (((to.mask & FLAG_SEEN) === 0 ? 1 : 0) - ((g.mask & FLAG_SEEN) === 0 ? 1 : 0));
    plan.deleted += g.count * (((to.mask & FLAG_DELETED) !== 0 ? 1 : 0) - ((g.mask & FLAG_DELETED) !== 0 ? 1 : 0));
  }
  return plan;
}
