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
import { writeNumber } from '../protocol/serialize.js';
import type { ThreadKeyColumns } from '../../store/types.js';
import type { SortView, ViewThreadKeys } from './sort.js';

export type ThreadAlgorithm = 'ORDEREDSUBJECT' | 'REFERENCES';

/** A thread tree node: `index` is the message's 0-based position in the view, null for a dummy. */
export interface ThreadNode {
  index: number | null;
  children: ThreadNode[];
}

/**
 * Threads as containers numbered from 0 in typed arrays (no object per message): what THREAD
 * computes, written to the response as is (threadResponse), or as ThreadNode trees (forestNodes).
 */
export interface ThreadForest {
  /** The threads' root containers, in order. */
  roots: Int32Array;
  /** Per container: the view position of its message, -1 for a dummy. */
  index: Int32Array;
  /** Per container: its first child and its next sibling, children in order (-1: none). */
  first: Int32Array;
  next: Int32Array;
}

/** Depth past which a tree is split (a References chain of this length is no real thread): keeps
 * the pruning and the response's nesting bounded. */
const MAX_THREAD_DEPTH = 1000;

/**
 * The messages to thread, by 0-based view position, read from the view's columns: `list` the
 * positions present in the store, in sequence order; `row` the row of a position in the columns.
 */
interface Input {
  list: Int32Array;
  row: Int32Array;
  columns: ThreadKeyColumns;
}

function inputOf(indexes: ArrayLike<number>, k: ViewThreadKeys): Input {
  const { row } = k;
  const list = new Int32Array(indexes.length);
  let n = 0;
  for (let j = 0; j < indexes.length; j++) if (row[indexes[j]!]! >= 0) list[n++] = indexes[j]!;
  return { list: list.subarray(0, n), row, columns: k.columns };
}

/** Sent-date order of view positions, ties by sequence order (RFC 5256 §4 and §2.2). */
function bySentDate(m: Input): (a: number, b: number) => number {
  const { row } = m;
  const { dates } = m.columns;
  return (a, b) => dates[row[a]!]! - dates[row[b]!]! || a - b;
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
function orderedSubject(m: Input): ThreadForest {
  const { row } = m;
  const { subjects } = m.columns;
  const sorted = m.list.slice().sort(bySentDate(m));
  const n = sorted.length;
  const first = new Int32Array(n).fill(-1);
  const next = new Int32Array(n).fill(-1);
  const last = new Int32Array(n);
  const roots = new Int32Array(n);
  let nRoots = 0;
  const groups = new IdTable(n);
  // Container c holds sorted[c]: threads in the order of their first (earliest) message.
  for (let c = 0; c < n; c++) {
    const s = subjects[row[sorted[c]!]!]!;
    const g = groups.get(s);
    if (g === undefined) {
      groups.set(s, c);
      roots[nRoots++] = c;
      last[c] = c;
    } else {
      if (last[g] === g) first[g] = c;
      else next[last[g]!] = c;
      last[g] = c;
    }
  }
  return { roots: roots.subarray(0, nRoots), index: sorted, first, next };
}

/**
 * The containers of REFERENCES (RFC 5256 §4): `index` the view position of a container's message
 * (-1: a dummy), `parent` (-1: none), and each container's children as a doubly linked list
 * (first, next, prev) with their number (count).
 */
class Containers {
  index: Int32Array;
  parent: Int32Array;
  first: Int32Array;
  next: Int32Array;
  prev: Int32Array;
  count: Int32Array;
  size = 0;

  constructor(capacity: number) {
    this.index = new Int32Array(capacity);
    this.parent = new Int32Array(capacity);
    this.first = new Int32Array(capacity);
    this.next = new Int32Array(capacity);
    this.prev = new Int32Array(capacity);
    this.count = new Int32Array(capacity);
  }

  /** Room for `more` containers beyond those made. */
  reserve(more: number): void {
    const want = this.size + more;
    if (want <= this.index.length) return;
    const grown = (a: Int32Array): Int32Array => {
      const b = new Int32Array(want);
      b.set(a.subarray(0, this.size));
      return b;
    };
    this.index = grown(this.index);
    this.parent = grown(this.parent);
    this.first = grown(this.first);
    this.next = grown(this.next);
    this.prev = grown(this.prev);
    this.count = grown(this.count);
  }

  make(i: number): number {
    const c = this.size++;
    this.index[c] = i;
    this.parent[c] = -1;
    this.first[c] = -1;
    this.next[c] = -1;
    this.prev[c] = -1;
    this.count[c] = 0;
    return c;
  }

  isAncestor(a: number, of: number): boolean {
    const parent = this.parent;
    for (let c = of; c !== -1; c = parent[c]!) if (c === a) return true;
    return false;
  }

  link(p: number, c: number): void {
    const first = this.first;
    this.parent[c] = p;
    this.prev[c] = -1;
    this.next[c] = first[p]!;
    if (first[p] !== -1) this.prev[first[p]!] = c;
    first[p] = c;
    this.count[p]!++;
  }

  unlink(c: number): void {
    const p = this.parent[c]!;
    if (p === -1) return;
    const { next, prev } = this;
    if (prev[c] !== -1) next[prev[c]!] = next[c]!;
    else this.first[p] = next[c]!;
    if (next[c] !== -1) prev[next[c]!] = prev[c]!;
    prev[c] = -1;
    next[c] = -1;
    this.count[p]!--;
    this.parent[c] = -1;
  }

  moveChildren(from: number, to: number): void {
    while (this.first[from] !== -1) {
      const k = this.first[from]!;
      this.unlink(k);
      this.link(to, k);
    }
  }
}

/**
 * RFC 5256 §4 REFERENCES, steps 1 to 6. Children lists are in no particular order until siblings
 * are sorted at the end, and every order used before that is total, so the result does not depend
 * on list order.
 */
function references(m: Input): ThreadForest {
  const { list, row, columns } = m;
  const { messageIds, refStart, refs, subjects, flags, dates } = columns;
  const t = new Containers(list.length + refs.length + 1);

  // (1) Link messages by Message-ID and References.
  const byId = new IdTable(list.length + refs.length / 2);
  for (let q = 0; q < list.length; q++) {
    const i = list[q]!;
    // (1.A) A message without a Message-ID, or with one already taken, gets a container of its own.
    const r = row[i]!;
    const id = messageIds[r]!;
    const existing = id !== 0 ? byId.get(id) : undefined;
    let own: number;
    if (existing !== undefined && t.index[existing] === -1) {
      t.index[existing] = i;
      own = existing;
    } else {
      own = t.make(i);
      if (id !== 0 && existing === undefined) byId.set(id, own);
    }
    // (1.B) Link the referenced messages in order, keeping links already made, never a loop.
    let last = -1;
    for (let j = refStart[r]!; j < refStart[r + 1]!; j++) {
      const ref = refs[j]!;
      let c = byId.get(ref);
      if (c === undefined) {
        c = t.make(-1);
        byId.set(ref, c);
      }
      if (last !== -1 && c !== last && t.parent[c] === -1 && !t.isAncestor(c, last)) t.link(last, c);
      last = c;
    }
    // (1.C) The last reference is this message's parent: an earlier message's References may
    // have placed it elsewhere, which this message's own References overrides. A parent that
    // would make a loop is not set (the message stays a root, as Dovecot does).
    t.unlink(own);
    if (last !== -1 && last !== own && !t.isAncestor(own, last)) t.link(last, own);
  }
  // Steps 2 to 5.B only: t.reserve (5.C) replaces the arrays, so later steps read them from t.
  const { index, parent, first, next, count } = t;

  // (2) The root set, in the order the containers were made.
  const roots: number[] = [];
  for (let c = 0; c < t.size; c++) if (parent[c] === -1) roots.push(c);

  // Chains deeper than MAX_THREAD_DEPTH are cut (each part becomes a thread of its own): the
  // nesting of the response stays bounded. Walked once, in pre-order (kept for the pruning).
  const pre = new Int32Array(t.size);
  let nPre = 0;
  {
    const stackC = new Int32Array(t.size);
    const stackD = new Int32Array(t.size);
    let sp = 0;
    for (let k = roots.length - 1; k >= 0; k--) {
      stackC[sp] = roots[k]!;
      stackD[sp++] = 0;
    }
    while (sp > 0) {
      const c = stackC[--sp]!;
      const depth = stackD[sp]!;
      pre[nPre++] = c;
      const cutHere = depth + 1 >= MAX_THREAD_DEPTH;
      for (let k = first[c]!; k !== -1; ) {
        const after = next[k]!;
        if (cutHere) {
          t.unlink(k);
          roots.push(k);
        }
        stackC[sp] = k;
        stackD[sp++] = cutHere ? 0 : depth + 1;
        k = after;
      }
    }
  }

  // (3) Prune dummies: an empty one goes; one with children gives them to its parent, except
  // that at the root a dummy with several children stays. Below the roots, each container
  // after all of its descendants (reverse pre-order), so the children given up are final.
  for (let q = nPre - 1; q >= 0; q--) {
    const c = pre[q]!;
    const p = parent[c]!;
    if (p === -1 || index[c] !== -1) continue;
    t.moveChildren(c, p);
    t.unlink(c);
  }
  let top: number[] = [];
  for (const c of roots) {
    if (index[c] !== -1 || count[c]! > 1) top.push(c);
    else if (count[c] === 1) {
      const k = first[c]!;
      t.unlink(k);
      top.push(k);
    }
  }

  // Sent-date order of containers (RFC 5256 §4 steps 4 and 6): a dummy by its first child
  // (its children are sorted before it is compared), ties by sequence order.
  const firstOf = (c: number): number => (t.index[c] !== -1 ? t.index[c]! : t.index[t.first[c]!]!);
  const bySent = (a: number, b: number): number => {
    const ia = firstOf(a);
    const ib = firstOf(b);
    return dates[row[ia]!]! - dates[row[ib]!]! || ia - ib;
  };
  const kids: number[] = [];
  const sortChildren = (c: number): void => {
    if (t.count[c]! < 2) return;
    const { first, next, prev } = t;
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
  const isReply = (i: number): boolean => (flags[row[i]!]! & THREAD_REPLY) !== 0;
  const noSubject = (i: number): boolean => (flags[row[i]!]! & THREAD_NO_SUBJECT) !== 0;
  const table = new IdTable(top.length);
  for (const c of top) {
    const s = firstOf(c);
    if (noSubject(s)) continue;
    const subject = subjects[row[s]!]!;
    const u = table.get(subject);
    if (u === undefined) table.set(subject, c);
    else if (index[u] !== -1 && (index[c] === -1 || (isReply(index[u]!) && !isReply(s)))) table.set(subject, c);
  }
  // (5.C) Merge each other root with the table's container for its subject. A root already
  // placed under another (it was the table's and got a new dummy above it) is skipped. Each
  // merge makes at most one container.
  t.reserve(top.length);
  const removed = new Uint8Array(t.size);
  const replaced = new Int32Array(t.size).fill(-1);
  for (const c of top) {
    if (t.parent[c] !== -1) continue;
    const s = firstOf(c);
    if (noSubject(s)) continue;
    const subject = subjects[row[s]!]!;
    const u = table.get(subject)!;
    if (u === c) continue;
    removed[c] = 1;
    if (t.index[u] === -1 && t.index[c] === -1) {
      // Both dummies: the children of both become siblings.
      t.moveChildren(c, u);
    } else if (t.index[u] === -1) {
      t.link(u, c);
    } else if (t.index[c] !== -1 && isReply(s) && !isReply(t.index[u]!)) {
      t.link(u, c);
    } else {
      // A new dummy holds both and takes the table's place, in the table and in the root set.
      const dummy = t.make(-1);
      t.link(dummy, u);
      t.link(dummy, c);
      replaced[u] = dummy;
      table.set(subject, dummy);
    }
  }
  top = top.filter((c) => removed[c] === 0).map((c) => (replaced[c] !== -1 ? replaced[c]! : c));

  // (6) Sort siblings everywhere, then the threads.
  const all = new Int32Array(t.size);
  let nAll = 0;
  for (const c of top) all[nAll++] = c;
  for (let q = 0; q < nAll; q++) {
    const c = all[q]!;
    sortChildren(c);
    for (let k = t.first[c]!; k !== -1; k = t.next[k]!) all[nAll++] = k;
  }
  top.sort(bySent);
  return { roots: Int32Array.from(top), index: t.index, first: t.first, next: t.next };
}

/** The trees of a forest, built without recursion (reference chains may be long). */
export function forestNodes(f: ThreadForest): ThreadNode[] {
  const { index, first, next } = f;
  const nodeOf = (c: number): ThreadNode => ({ index: index[c] === -1 ? null : index[c]!, children: first[c] === -1 ? NO_CHILDREN : [] });
  return Array.from(f.roots, (r) => {
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

/** The children of a leaf: shared, never mutated. */
const NO_CHILDREN: ThreadNode[] = [];

/** Threads the messages at `indexes` (0-based positions in the view), RFC 5256 §4. A message no
 * longer in the store is left out. */
export async function threadForest(indexes: ArrayLike<number>, algorithm: ThreadAlgorithm, view: SortView): Promise<ThreadForest> {
  const input = inputOf(indexes, await view.threadKeys());
  return algorithm === 'ORDEREDSUBJECT' ? orderedSubject(input) : references(input);
}

/** threadForest as trees. */
export async function threadMessages(indexes: ArrayLike<number>, algorithm: ThreadAlgorithm, view: SortView): Promise<ThreadNode[]> {
  return forestNodes(await threadForest(indexes, algorithm, view));
}

/**
 * The thread lists of a THREAD response (RFC 5256 §4 thread-data = "THREAD" [SP 1*thread-list])
 * as bytes, empty when there is no thread: what threadValue gives once serialised, written
 * without a value or a string per node (digits, spaces and parentheses only). `number` maps an
 * index to what the client asked for (sequence number, or UID for UID THREAD).
 */
export function threadResponse(f: ThreadForest, number: (index: number) => number): Buffer {
  const { index, first, next } = f;
  const CLOSE = -1;
  // Containers whose list is still to be written, and CLOSE marks; at most two entries per
  // container.
  const stack = new Int32Array(2 * index.length + f.roots.length);
  let sp = 0;
  for (let k = f.roots.length - 1; k >= 0; k--) stack[sp++] = f.roots[k]!;
  // Per container at most: "(", a space and 10 digits, a space before its children's lists, ")".
  const out = Buffer.allocUnsafe(14 * index.length + 2);
  let at = 0;
  while (sp > 0) {
    const start = stack[--sp]!;
    if (start === CLOSE) {
      out[at++] = 0x29;
      continue;
    }
    // thread-list: "(" then the members of a chain of single children, then its children's
    // lists back to back when there are several.
    out[at++] = 0x28;
    let sep = false;
    let c = start;
    for (;;) {
      if (index[c] !== -1) {
        if (sep) out[at++] = 0x20;
        at = writeNumber(out, at, number(index[c]!));
        sep = true;
      }
      const k = first[c]!;
      if (k !== -1 && next[k] === -1) {
        c = k;
        continue;
      }
      stack[sp++] = CLOSE;
      if (k !== -1) {
        if (sep) out[at++] = 0x20;
        let n = 0;
        for (let j = k; j !== -1; j = next[j]!) n++;
        sp += n;
        let to = sp - 1;
        for (let j = k; j !== -1; j = next[j]!) stack[to--] = j;
      }
      break;
    }
  }
  return out.subarray(0, at);
}

/** threadResponse as text. */
export function threadResponseText(f: ThreadForest, number: (index: number) => number): string {
  return threadResponse(f, number).toString('latin1');
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
