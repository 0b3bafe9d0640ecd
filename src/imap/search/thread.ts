/**
 * THREAD (RFC 5256 §4): ORDEREDSUBJECT and REFERENCES over the messages a search matched.
 *
 * Invariants:
 * - every message given appears exactly once in the result; nodes without a message ("dummies",
 *   for referenced messages that are not in the set) appear only where RFC 5256 keeps them;
 * - siblings are ordered by sent date (the Date: header, else INTERNALDATE, as for SORT DATE),
 *   ties by sequence order;
 * - the algorithm is iterative where input decides the depth (reference chains), so a long or
 *   looping References chain cannot exhaust the stack; linking never creates a loop.
 */
import { THREAD_NO_SUBJECT, THREAD_REPLY } from '../../mail/sort-keys.js';
import type { ImapValue } from '../protocol/ast.js';
import type { ThreadKeyColumns } from '../../store/types.js';
import type { SortView, ViewThreadKeys } from './sort.js';

export type ThreadAlgorithm = 'ORDEREDSUBJECT' | 'REFERENCES';

/** A thread tree node: `index` is the message's 0-based position in the view, null for a dummy. */
export interface ThreadNode {
  index: number | null;
  children: ThreadNode[];
}

/** Depth past which a tree is split (a References chain of this length is no real thread): keeps
 * the pruning and the response's nesting bounded. */
const MAX_THREAD_DEPTH = 1000;

/**
 * The messages to thread, by 0-based view position, read from the view's columns: `list` the
 * positions present in the store, in sequence order; `row` the row of a position in the columns.
 */
interface Input {
  list: number[];
  row: Int32Array;
  columns: ThreadKeyColumns;
  date: (i: number) => number;
  subject: (i: number) => number;
  flag: (i: number, bit: number) => boolean;
}

function inputOf(indexes: readonly number[], k: ViewThreadKeys): Input {
  const { row, columns: c } = k;
  return {
    list: indexes.filter((i) => row[i]! >= 0),
    row,
    columns: c,
    date: (i) => c.dates[row[i]!]!,
    subject: (i) => c.subjects[row[i]!]!,
    flag: (i, bit) => (c.flags[row[i]!]! & bit) !== 0,
  };
}

/**
 * Message-ID numbers (below 2^53, never 0) to containers: open addressing over typed arrays. A
 * Map keyed by such numbers boxes each key (they do not fit a small integer), which cost more
 * than all the rest of threading.
 */
class IdTable {
  #keys: Float64Array;
  #values: Int32Array;
  #mask: number;
  #size = 0;

  constructor(expected: number) {
    let cap = 16;
    while (cap < expected * 2) cap *= 2;
    this.#keys = new Float64Array(cap);
    this.#values = new Int32Array(cap);
    this.#mask = cap - 1;
  }

  #slot(key: number): number {
    // Low and high halves mixed; the numbers are hash output already.
    let h = ((key >>> 0) ^ Math.floor(key / 0x1_0000_0000)) & this.#mask;
    while (this.#keys[h] !== 0 && this.#keys[h] !== key) h = (h + 1) & this.#mask;
    return h;
  }

  get(key: number): number | undefined {
    const h = this.#slot(key);
    return this.#keys[h] === 0 ? undefined : this.#values[h];
  }

  set(key: number, value: number): void {
    const h = this.#slot(key);
    if (this.#keys[h] === 0) {
      this.#keys[h] = key;
      if (++this.#size * 2 > this.#keys.length) {
        this.#values[h] = value;
        this.#grow();
        return;
      }
    }
    this.#values[h] = value;
  }

  #grow(): void {
    const keys = this.#keys;
    const values = this.#values;
    this.#keys = new Float64Array(keys.length * 2);
    this.#values = new Int32Array(keys.length * 2);
    this.#mask = keys.length * 2 - 1;
    for (let h = 0; h < keys.length; h++) {
      if (keys[h] === 0) continue;
      const to = this.#slot(keys[h]!);
      this.#keys[to] = keys[h]!;
      this.#values[to] = values[h]!;
    }
  }
}


/** RFC 5256 §4: threads of messages with the same base subject; in each, the earliest message is
 * the parent of all the others. */
function orderedSubject(m: Input): ThreadNode[] {
  const byDate = (a: number, b: number): number => m.date(a) - m.date(b) || a - b;
  const groups = new IdTable(m.list.length);
  const out: ThreadNode[] = [];
  for (const i of [...m.list].sort(byDate)) {
    const s = m.subject(i);
    const g = groups.get(s);
    if (g === undefined) {
      groups.set(s, out.length);
      out.push({ index: i, children: [] }); // threads in the order of their first (earliest) message
    } else out[g]!.children.push({ index: i, children: [] });
  }
  return out;
}

/** The children of a leaf: shared, never mutated. */
const NO_CHILDREN: ThreadNode[] = [];

/**
 * RFC 5256 §4 REFERENCES, steps 1 to 6, on containers numbered from 0 and kept in typed arrays
 * (no object per message): `index` the view position of a container's message (-1: a dummy),
 * `parent` (-1: none), and each container's children as a doubly linked list (first, next, prev)
 * in no particular order: siblings are sorted at the end, and every order used before that is
 * total, so the result does not depend on list order.
 */
function references(m: Input): ThreadNode[] {
  let cap = m.list.length * 2 + 16;
  let index: Int32Array = new Int32Array(cap);
  let parent: Int32Array = new Int32Array(cap);
  let first: Int32Array = new Int32Array(cap);
  let next: Int32Array = new Int32Array(cap);
  let prev: Int32Array = new Int32Array(cap);
  let count: Int32Array = new Int32Array(cap);
  let size = 0;
  const grown = (a: Int32Array): Int32Array => {
    const b = new Int32Array(cap);
    b.set(a);
    return b;
  };
  const make = (i: number): number => {
    if (size === cap) {
      cap *= 2;
      [index, parent, first, next, prev, count] = [grown(index), grown(parent), grown(first), grown(next), grown(prev), grown(count)];
    }
    index[size] = i;
    parent[size] = -1;
    first[size] = -1;
    next[size] = -1;
    prev[size] = -1;
    count[size] = 0;
    return size++;
  };
  const isAncestor = (a: number, of: number): boolean => {
    for (let c = of; c !== -1; c = parent[c]!) if (c === a) return true;
    return false;
  };
  const link = (p: number, c: number): void => {
    parent[c] = p;
    prev[c] = -1;
    next[c] = first[p]!;
    if (first[p] !== -1) prev[first[p]!] = c;
    first[p] = c;
    count[p]!++;
  };
  const unlink = (c: number): void => {
    const p = parent[c]!;
    if (p === -1) return;
    if (prev[c] !== -1) next[prev[c]!] = next[c]!;
    else first[p] = next[c]!;
    if (next[c] !== -1) prev[next[c]!] = prev[c]!;
    prev[c] = -1;
    next[c] = -1;
    count[p]!--;
    parent[c] = -1;
  };
  const moveChildren = (from: number, to: number): void => {
    while (first[from] !== -1) {
      const k = first[from]!;
      unlink(k);
      link(to, k);
    }
  };

  // (1) Link messages by Message-ID and References.
  const { row, columns } = m;
  const { messageIds, refStart, refs } = columns;
  const byId = new IdTable(m.list.length + refs.length / 2);
  for (const i of m.list) {
    // (1.A) A message without a Message-ID, or with one already taken, gets a container of its own.
    const r = row[i]!;
    const id = messageIds[r]!;
    const existing = id !== 0 ? byId.get(id) : undefined;
    let own: number;
    if (existing !== undefined && index[existing] === -1) {
      index[existing] = i;
      own = existing;
    } else {
      own = make(i);
      if (id !== 0 && existing === undefined) byId.set(id, own);
    }
    // (1.B) Link the referenced messages in order, keeping links already made, never a loop.
    let last = -1;
    for (let j = refStart[r]!; j < refStart[r + 1]!; j++) {
      const ref = refs[j]!;
      let c = byId.get(ref);
      if (c === undefined) {
        c = make(-1);
        byId.set(ref, c);
      }
      if (last !== -1 && c !== last && parent[c] === -1 && !isAncestor(c, last)) link(last, c);
      last = c;
    }
    // (1.C) The last reference is this message's parent: an earlier message's References may
    // have placed it elsewhere, which this message's own References overrides. A parent that
    // would make a loop is not set (the message stays a root, as Dovecot does).
    unlink(own);
    if (last !== -1 && last !== own && !isAncestor(own, last)) link(last, own);
  }

  // (2) The root set, in the order the containers were made.
  const roots: number[] = [];
  for (let c = 0; c < size; c++) if (parent[c] === -1) roots.push(c);

  // Chains deeper than MAX_THREAD_DEPTH are cut (each part becomes a thread of its own): the
  // nesting of the response stays bounded.
  const stackC: number[] = [];
  const stackD: number[] = [];
  for (const r of roots) {
    stackC.push(r);
    stackD.push(0);
  }
  while (stackC.length > 0) {
    const c = stackC.pop()!;
    const depth = stackD.pop()!;
    const cutHere = depth + 1 >= MAX_THREAD_DEPTH;
    for (let k = first[c]!; k !== -1; ) {
      const after = next[k]!;
      if (cutHere) {
        unlink(k);
        roots.push(k);
      }
      stackC.push(k);
      stackD.push(cutHere ? 0 : depth + 1);
      k = after;
    }
  }

  // (3) Prune dummies: an empty one goes; one with children gives them to its parent, except
  // that at the root a dummy with several children stays. Below the roots, each container
  // after all of its descendants (reverse pre-order), so the children given up are final.
  const pre: number[] = [];
  const walk = [...roots];
  while (walk.length > 0) {
    const c = walk.pop()!;
    pre.push(c);
    for (let k = first[c]!; k !== -1; k = next[k]!) walk.push(k);
  }
  for (let q = pre.length - 1; q >= 0; q--) {
    const c = pre[q]!;
    const p = parent[c]!;
    if (p === -1 || index[c] !== -1) continue;
    moveChildren(c, p);
    unlink(c);
  }
  let top: number[] = [];
  for (const c of roots) {
    if (index[c] !== -1 || count[c]! > 1) top.push(c);
    else if (count[c] === 1) {
      const k = first[c]!;
      unlink(k);
      top.push(k);
    }
  }

  // Sent-date order of containers (RFC 5256 §4 steps 4 and 6): a dummy by its first child
  // (its children are sorted before it is compared), ties by sequence order.
  const firstOf = (c: number): number => (index[c] !== -1 ? index[c]! : index[first[c]!]!);
  const bySent = (a: number, b: number): number => {
    const ia = firstOf(a);
    const ib = firstOf(b);
    return m.date(ia) - m.date(ib) || ia - ib;
  };
  const kids: number[] = [];
  const sortChildren = (c: number): void => {
    if (count[c]! < 2) return;
    kids.length = 0;
    for (let k = first[c]!; k !== -1; k = next[k]!) kids.push(k);
    kids.sort(bySent);
    first[c] = kids[0]!;
    for (let j = 0; j < kids.length; j++) {
      prev[kids[j]!] = j === 0 ? -1 : kids[j - 1]!;
      next[kids[j]!] = j === kids.length - 1 ? -1 : kids[j + 1]!;
    }
  };

  // (4) Sort the root set (a dummy by its first child, children sorted first).
  for (const r of top) if (index[r] === -1) sortChildren(r);
  top.sort(bySent);

  // (5) Gather threads with the same base subject. (5.B) The table holds one container per
  // subject: the first root, unless a later one is a dummy or the first is a reply and it not.
  const isReply = (i: number): boolean => m.flag(i, THREAD_REPLY);
  const table = new IdTable(top.length);
  for (const c of top) {
    const s = firstOf(c);
    if (m.flag(s, THREAD_NO_SUBJECT)) continue;
    const subject = m.subject(s);
    const t = table.get(subject);
    if (t === undefined) table.set(subject, c);
    else if (index[t] !== -1 && (index[c] === -1 || (isReply(index[t]!) && !isReply(s)))) table.set(subject, c);
  }
  // (5.C) Merge each other root with the table's container for its subject. A root already
  // placed under another (it was the table's and got a new dummy above it) is skipped.
  const removed = new Uint8Array(size);
  const replaced = new Int32Array(size).fill(-1);
  for (const c of top) {
    if (parent[c] !== -1) continue;
    const s = firstOf(c);
    if (m.flag(s, THREAD_NO_SUBJECT)) continue;
    const subject = m.subject(s);
    const t = table.get(subject)!;
    if (t === c) continue;
    removed[c] = 1;
    if (index[t] === -1 && index[c] === -1) {
      // Both dummies: the children of both become siblings.
      moveChildren(c, t);
    } else if (index[t] === -1) {
      link(t, c);
    } else if (index[c] !== -1 && isReply(s) && !isReply(index[t]!)) {
      link(t, c);
    } else {
      // A new dummy holds both and takes the table's place, in the table and in the root set.
      const dummy = make(-1);
      link(dummy, t);
      link(dummy, c);
      replaced[t] = dummy;
      table.set(subject, dummy);
    }
  }
  top = top.filter((c) => removed[c] === 0).map((c) => (replaced[c] !== -1 ? replaced[c]! : c));

  // (6) Sort siblings everywhere, then the threads.
  const all = [...top];
  for (let q = 0; q < all.length; q++) {
    const c = all[q]!;
    sortChildren(c);
    for (let k = first[c]!; k !== -1; k = next[k]!) all.push(k);
  }
  top.sort(bySent);

  // The trees, built without recursion (reference chains may be long).
  const nodeOf = (c: number): ThreadNode => ({ index: index[c] === -1 ? null : index[c]!, children: count[c] === 0 ? NO_CHILDREN : [] });
  return top.map((r) => {
    const root = nodeOf(r);
    const fromC: number[] = [r];
    const toN: ThreadNode[] = [root];
    while (fromC.length > 0) {
      const c = fromC.pop()!;
      const node = toN.pop()!;
      for (let k = first[c]!; k !== -1; k = next[k]!) {
        const child = nodeOf(k);
        node.children.push(child);
        fromC.push(k);
        toN.push(child);
      }
    }
    return root;
  });
}

/** Threads the messages at `indexes` (0-based positions in the view), RFC 5256 §4. A message no
 * longer in the store is left out. */
export async function threadMessages(indexes: readonly number[], algorithm: ThreadAlgorithm, view: SortView): Promise<ThreadNode[]> {
  const input = inputOf(indexes, await view.threadKeys());
  return algorithm === 'ORDEREDSUBJECT' ? orderedSubject(input) : references(input);
}

/**
 * The thread lists after "THREAD" in the response (RFC 5256 §4 thread-data = "THREAD" [SP
 * 1*thread-list]): an empty array when there is no thread, else one value. `number` maps an
 * index to what the client asked for (sequence number, or UID for UID THREAD).
 * thread-list = "(" (thread-members / thread-nested) ")"; a chain of single children is written
 * as members "(1 2 3)", several children as adjacent nested lists "(1 (2)(3))".
 */
export function threadValue(threads: readonly ThreadNode[], number: (index: number) => number): ImapValue[] {
  if (threads.length === 0) return [];
  const list = (node: ThreadNode): ImapValue => {
    const out: ImapValue[] = [];
    let cur: ThreadNode | undefined = node;
    while (cur !== undefined) {
      if (cur.index !== null) out.push(number(cur.index));
      if (cur.children.length === 1) cur = cur.children[0];
      else {
        if (cur.children.length > 1) out.push({ concat: cur.children.map(list) });
        cur = undefined;
      }
    }
    return out;
  };
  return [{ concat: threads.map(list) }];
}
