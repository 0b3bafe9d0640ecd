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
import type { ImapValue } from '../protocol/ast.js';
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
 * positions present in the store, in sequence order.
 */
interface Input {
  list: number[];
  date: (i: number) => number;
  subject: Int32Array;
  flag: (i: number, bit: number) => boolean;
  messageId: (i: number) => number;
  forEachRef: (i: number, f: (id: number) => void) => void;
}

function inputOf(indexes: readonly number[], k: ViewThreadKeys): Input {
  const { row, columns: c } = k;
  return {
    list: indexes.filter((i) => row[i]! >= 0 && k.subjects[i]! >= 0),
    date: (i) => c.dates[row[i]!]!,
    subject: k.subjects,
    flag: (i, bit) => (c.flags[row[i]!]! & bit) !== 0,
    messageId: (i) => c.messageIds[row[i]!]!,
    forEachRef(i, f) {
      const r = row[i]!;
      for (let j = c.refStart[r]!; j < c.refStart[r + 1]!; j++) f(c.refs[j]!);
    },
  };
}

const REPLY = 1;
const NO_SUBJECT = 2;

/** RFC 5256 §4: threads of messages with the same base subject; in each, the earliest message is
 * the parent of all the others. */
function orderedSubject(m: Input): ThreadNode[] {
  const byDate = (a: number, b: number): number => m.date(a) - m.date(b) || a - b;
  const groups = new Map<number, ThreadNode>();
  const out: ThreadNode[] = [];
  for (const i of [...m.list].sort(byDate)) {
    const s = m.subject[i]!;
    const g = groups.get(s);
    if (g === undefined) {
      const node: ThreadNode = { index: i, children: [] };
      groups.set(s, node);
      out.push(node); // threads in the order of their first (earliest) message
    } else g.children.push({ index: i, children: [] });
  }
  return out;
}

/**
 * RFC 5256 §4 REFERENCES, steps 1 to 6, on containers numbered from 0: `index` the view position
 * of a container's message (-1: a dummy), `parent` (-1: none), `kids` its children. Message-IDs
 * are numbers, looked up in one Map.
 */
function references(m: Input): ThreadNode[] {
  let cap = m.list.length * 2 + 16;
  let index: Int32Array = new Int32Array(cap);
  let parent: Int32Array = new Int32Array(cap);
  const kids: Array<number[] | undefined> = [];
  let size = 0;
  const make = (i: number): number => {
    if (size === cap) {
      cap *= 2;
      const grow = (a: Int32Array): Int32Array => {
        const b = new Int32Array(cap);
        b.set(a);
        return b;
      };
      index = grow(index);
      parent = grow(parent);
    }
    index[size] = i;
    parent[size] = -1;
    return size++;
  };
  const isAncestor = (a: number, of: number): boolean => {
    for (let c = of; c !== -1; c = parent[c]!) if (c === a) return true;
    return false;
  };
  const link = (p: number, child: number): void => {
    parent[child] = p;
    const k = kids[p];
    if (k === undefined) kids[p] = [child];
    else k.push(child);
  };
  const unlink = (c: number): void => {
    const p = parent[c]!;
    if (p === -1) return;
    const siblings = kids[p]!;
    siblings.splice(siblings.indexOf(c), 1);
    parent[c] = -1;
  };
  const childrenOf = (c: number): number[] => kids[c] ?? [];

  // (1) Link messages by Message-ID and References.
  const byId = new Map<number, number>();
  for (const i of m.list) {
    // (1.A) A message without a Message-ID, or with one already taken, gets a container of its own.
    const id = m.messageId(i);
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
    let prev = -1;
    m.forEachRef(i, (ref) => {
      let c = byId.get(ref);
      if (c === undefined) {
        c = make(-1);
        byId.set(ref, c);
      }
      if (prev !== -1 && c !== prev && parent[c] === -1 && !isAncestor(c, prev)) link(prev, c);
      prev = c;
    });
    // (1.C) The last reference is this message's parent: an earlier message's References may
    // have placed it elsewhere, which this message's own References overrides. A parent that
    // would make a loop is not set (the message stays a root, as Dovecot does).
    unlink(own);
    if (prev !== -1 && prev !== own && !isAncestor(own, prev)) link(prev, own);
  }

  // (2) The root set, in the order the containers were made.
  let roots: number[] = [];
  for (let c = 0; c < size; c++) if (parent[c] === -1) roots.push(c);

  // (3) Prune dummies: an empty one goes; one with children gives them to its parent, except
  // that at the root a dummy with several children stays.
  const prune = (list: readonly number[], atRoot: boolean): number[] => {
    const out: number[] = [];
    for (const c of list) {
      const k = kids[c];
      if (k !== undefined) {
        const pruned = prune(k, false);
        kids[c] = pruned;
        for (const child of pruned) parent[child] = c;
      }
      const children = childrenOf(c);
      if (index[c] !== -1) out.push(c);
      else if (children.length === 0) continue;
      else if (atRoot && children.length > 1) out.push(c);
      else for (const child of children) out.push(child);
    }
    return out;
  };
  // Pruning recurses as deep as the trees that References chains made: chains deeper than
  // MAX_THREAD_DEPTH are cut first (each part becomes a thread of its own).
  const cut: number[] = [];
  const stack: Array<[number, number]> = roots.map((r) => [r, 0]);
  while (stack.length > 0) {
    const [c, depth] = stack.pop()!;
    for (const child of childrenOf(c)) {
      if (depth + 1 >= MAX_THREAD_DEPTH) {
        parent[child] = -1;
        cut.push(child);
        stack.push([child, 0]);
      } else stack.push([child, depth + 1]);
    }
    if (depth + 1 >= MAX_THREAD_DEPTH) kids[c] = undefined;
  }
  roots = prune([...roots, ...cut], true);
  for (const r of roots) parent[r] = -1;

  // Sent-date order of containers: a dummy by its first child (children are sorted first),
  // ties by sequence order.
  const firstOf = (c: number): number => {
    if (index[c] !== -1) return index[c]!;
    const f = kids[c]?.[0];
    return f === undefined ? -1 : index[f]!;
  };
  const bySent = (a: number, b: number): number => {
    const ia = firstOf(a);
    const ib = firstOf(b);
    if (ia === -1 || ib === -1) return ia === ib ? 0 : ia === -1 ? 1 : -1;
    return m.date(ia) - m.date(ib) || ia - ib;
  };

  // (4) Sort the root set (a dummy by its first child, children sorted first).
  for (const r of roots) if (index[r] === -1) kids[r]?.sort(bySent);
  roots.sort(bySent);

  // (5) Gather threads with the same base subject. (5.B) The table holds one container per
  // subject: the first root, unless a later one is a dummy or the first is a reply and it not.
  const isReply = (i: number): boolean => m.flag(i, REPLY);
  const table = new Map<number, number>();
  for (const c of roots) {
    const s = firstOf(c);
    if (s === -1 || m.flag(s, NO_SUBJECT)) continue;
    const subject = m.subject[s]!;
    const t = table.get(subject);
    if (t === undefined) table.set(subject, c);
    else if (index[t] !== -1 && (index[c] === -1 || (isReply(index[t]!) && !isReply(s)))) table.set(subject, c);
  }
  // (5.C) Merge each other root with the table's container for its subject. A root already
  // placed under another (it was the table's and got a new dummy above it) is skipped.
  const removed = new Set<number>();
  const replaced = new Map<number, number>();
  for (const c of roots) {
    if (parent[c] !== -1) continue;
    const s = firstOf(c);
    if (s === -1 || m.flag(s, NO_SUBJECT)) continue;
    const subject = m.subject[s]!;
    const t = table.get(subject)!;
    if (t === c) continue;
    removed.add(c);
    if (index[t] === -1 && index[c] === -1) {
      // Both dummies: the children of both become siblings.
      for (const child of childrenOf(c)) link(t, child);
      kids[c] = undefined;
    } else if (index[t] === -1) {
      link(t, c);
    } else if (index[c] !== -1 && isReply(s) && !isReply(index[t]!)) {
      link(t, c);
    } else {
      // A new dummy holds both and takes the table's place, in the table and in the root set.
      const dummy = make(-1);
      kids[dummy] = undefined;
      link(dummy, t);
      link(dummy, c);
      replaced.set(t, dummy);
      table.set(subject, dummy);
    }
  }
  roots = roots.filter((c) => !removed.has(c)).map((c) => replaced.get(c) ?? c);

  // (6) Sort siblings, youngest first: children before their parents.
  const order: number[] = [];
  const walk = [...roots];
  while (walk.length > 0) {
    const c = walk.pop()!;
    order.push(c);
    const k = kids[c];
    if (k !== undefined) for (const child of k) walk.push(child);
  }
  for (let q = order.length - 1; q >= 0; q--) kids[order[q]!]?.sort(bySent);
  roots.sort(bySent);

  // The tree, copied iteratively (reference chains may be long).
  const toNode = (r: number): ThreadNode => {
    const root: ThreadNode = { index: index[r] === -1 ? null : index[r]!, children: [] };
    const copy: Array<[number, ThreadNode]> = [[r, root]];
    while (copy.length > 0) {
      const [from, to] = copy.pop()!;
      for (const child of childrenOf(from)) {
        const node: ThreadNode = { index: index[child] === -1 ? null : index[child]!, children: [] };
        to.children.push(node);
        copy.push([child, node]);
      }
    }
    return root;
  };
  return roots.map(toNode);
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
