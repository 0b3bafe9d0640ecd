/**
 * A plain THREAD (RFC 5256 §4) over string keys and objects, as Facteur had it before the
 * typed-array version in src/imap/search/thread.ts: the reference the fast one is compared
 * with on random mailboxes. Also a plain SORT over the same keys.
 */
import type { EntrySortKeys } from '../../src/store/types.js';
import type { ThreadNode } from '../../src/imap/search/thread.js';
import type { SortCriterion } from '../../src/imap/protocol/ast.js';

interface Info {
  date: number;
  subject: string;
  replyOrForward: boolean;
  messageId: string | null;
  references: string[];
}

/** RFC 5256 §4: threads of messages with the same base subject; in each, the earliest message is
 * the parent of all the others. */
function orderedSubject(indexes: readonly number[], info: Map<number, Info>): ThreadNode[] {
  const byDate = (a: number, b: number): number => info.get(a)!.date - info.get(b)!.date || a - b;
  const groups = new Map<string, number[]>();
  for (const i of [...indexes].sort(byDate)) {
    const subject = info.get(i)!.subject;
    const g = groups.get(subject);
    if (g === undefined) groups.set(subject, [i]);
    else g.push(i);
  }
  // Map iteration follows insertion: groups come in the order of their first (earliest) message.
  return [...groups.values()].map(([first, ...rest]) => ({ index: first!, children: rest.map((i) => ({ index: i, children: [] })) }));
}

interface Container {
  index: number | null;
  parent: Container | null;
  children: Container[];
}

function isAncestor(a: Container, of: Container): boolean {
  for (let c: Container | null = of; c !== null; c = c.parent) if (c === a) return true;
  return false;
}

function unlink(c: Container): void {
  if (c.parent === null) return;
  const siblings = c.parent.children;
  siblings.splice(siblings.indexOf(c), 1);
  c.parent = null;
}

function link(parent: Container, child: Container): void {
  child.parent = parent;
  parent.children.push(child);
}

function toNode(c: Container): ThreadNode {
  // Iterative copy: reference chains may be long.
  const root: ThreadNode = { index: c.index, children: [] };
  const stack: Array<[Container, ThreadNode]> = [[c, root]];
  while (stack.length > 0) {
    const [from, to] = stack.pop()!;
    for (const child of from.children) {
      const n: ThreadNode = { index: child.index, children: [] };
      to.children.push(n);
      stack.push([child, n]);
    }
  }
  return root;
}

/** RFC 5256 §4 REFERENCES, steps 1 to 6. */
function references(indexes: readonly number[], info: Map<number, Info>): ThreadNode[] {
  // (1) Link messages by Message-ID and References.
  const byId = new Map<string, Container>();
  const all: Container[] = [];
  const make = (index: number | null): Container => {
    const c: Container = { index, parent: null, children: [] };
    all.push(c);
    return c;
  };
  for (const i of indexes) {
    const m = info.get(i)!;
    // (1.A) A message without a Message-ID, or with one already taken, gets a container of its own.
    let own: Container;
    const existing = m.messageId !== null ? byId.get(m.messageId) : undefined;
    if (existing !== undefined && existing.index === null) {
      existing.index = i;
      own = existing;
    } else {
      own = make(i);
      if (m.messageId !== null && existing === undefined) byId.set(m.messageId, own);
    }
    // (1.B) Link the referenced messages in order, keeping links already made, never a loop.
    let prev: Container | null = null;
    for (const id of m.references) {
      let c = byId.get(id);
      if (c === undefined) {
        c = make(null);
        byId.set(id, c);
      }
      if (prev !== null && c !== prev && c.parent === null && !isAncestor(c, prev)) link(prev, c);
      prev = c;
    }
    // (1.C) The last reference is this message's parent: an earlier message's References may
    // have placed it elsewhere, which this message's own References overrides. A parent that
    // would make a loop is not set (the message stays a root, as Dovecot does).
    unlink(own);
    if (prev !== null && prev !== own && !isAncestor(own, prev)) link(prev, own);
  }

  // (2) The root set.
  let roots = all.filter((c) => c.parent === null);

  // (3) Prune dummies: an empty one goes; one with children gives them to its parent, except
  // that at the root a dummy with several children stays.
  const prune = (list: Container[], atRoot: boolean): Container[] => {
    const out: Container[] = [];
    for (const c of list) {
      c.children = prune(c.children, false);
      for (const child of c.children) child.parent = c;
      if (c.index !== null) out.push(c);
      else if (c.children.length === 0) continue;
      else if (atRoot && c.children.length > 1) out.push(c);
      else for (const child of c.children) out.push(child);
    }
    return out;
  };
  // Pruning recurses as deep as the trees that References chains made: chains deeper than
  // MAX_THREAD_DEPTH are cut first (each part becomes a thread of its own).
  roots = pruneBounded(roots, prune);
  for (const r of roots) r.parent = null;

  const dateOf = (c: Container): [number, number] => {
    const first = c.index !== null ? c : c.children[0];
    if (first === undefined || first.index === null) return [Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER];
    return [info.get(first.index)!.date, first.index];
  };
  const bySent = (a: Container, b: Container): number => {
    const [da, ia] = dateOf(a);
    const [db, ib] = dateOf(b);
    return da - db || ia - ib;
  };
  const sortTree = (list: Container[]): void => {
    // (6) Youngest siblings first: children before their parents.
    const stack: Container[] = [...list];
    const order: Container[] = [];
    while (stack.length > 0) {
      const c = stack.pop()!;
      order.push(c);
      stack.push(...c.children);
    }
    for (let k = order.length - 1; k >= 0; k--) order[k]!.children.sort(bySent);
    list.sort(bySent);
  };

  // (4) Sort the root set (a dummy by its first child, children sorted first).
  for (const r of roots) if (r.index === null) r.children.sort(bySent);
  roots.sort(bySent);

  // (5) Gather threads with the same base subject. (5.B) The table holds one container per
  // subject: the first root, unless a later one is a dummy or the first is a reply and it not.
  const subjectOf = (c: Container): Info | null => {
    const m = c.index !== null ? c : c.children[0];
    return m !== undefined && m.index !== null ? info.get(m.index)! : null;
  };
  const table = new Map<string, Container>();
  for (const c of roots) {
    const s = subjectOf(c);
    if (s === null || s.subject === '') continue;
    const t = table.get(s.subject);
    if (t === undefined) table.set(s.subject, c);
    else if (t.index !== null && (c.index === null || (info.get(t.index)!.replyOrForward && !s.replyOrForward))) table.set(s.subject, c);
  }
  // (5.C) Merge each other root with the table's container for its subject. A root already
  // placed under another (it was the table's and got a new dummy above it) is skipped.
  const removed = new Set<Container>();
  const replaced = new Map<Container, Container>();
  for (const c of roots) {
    if (c.parent !== null) continue;
    const s = subjectOf(c);
    if (s === null || s.subject === '') continue;
    const t = table.get(s.subject)!;
    if (t === c) continue;
    removed.add(c);
    if (t.index === null && c.index === null) {
      // Both dummies: the children of both become siblings.
      for (const child of c.children) {
        child.parent = t;
        t.children.push(child);
      }
      c.children = [];
    } else if (t.index === null) {
      link(t, c);
    } else if (c.index !== null && s.replyOrForward && !info.get(t.index)!.replyOrForward) {
      link(t, c);
    } else {
      // A new dummy holds both and takes the table's place, in the table and in the root set.
      const dummy: Container = { index: null, parent: null, children: [] };
      link(dummy, t);
      link(dummy, c);
      replaced.set(t, dummy);
      table.set(s.subject, dummy);
    }
  }
  roots = roots.filter((c) => !removed.has(c)).map((c) => replaced.get(c) ?? c);
  sortTree(roots);
  return roots.map(toNode);
}

/** Depth past which a tree is split (a References chain of this length is no real thread). */
const MAX_THREAD_DEPTH = 1000;

function pruneBounded(roots: Container[], prune: (l: Container[], atRoot: boolean) => Container[]): Container[] {
  // Cut chains deeper than MAX_THREAD_DEPTH so the recursive prune stays within the stack.
  const cut: Container[] = [];
  const stack: Array<[Container, number]> = roots.map((r) => [r, 0]);
  while (stack.length > 0) {
    const [c, depth] = stack.pop()!;
    for (const child of c.children) {
      if (depth + 1 >= MAX_THREAD_DEPTH) {
        child.parent = null;
        cut.push(child);
        stack.push([child, 0]);
      } else stack.push([child, depth + 1]);
    }
    if (depth + 1 >= MAX_THREAD_DEPTH) c.children = [];
  }
  return prune([...roots, ...cut], true);
}


/** THREAD over the keys of every message of a mailbox (in UID order = sequence order). */
export function referenceThread(keys: readonly EntrySortKeys[], algorithm: 'ORDEREDSUBJECT' | 'REFERENCES'): ThreadNode[] {
  const info = new Map<number, Info>();
  keys.forEach((k, i) =>
    info.set(i, { date: k.sentDate ?? k.internalDate, subject: k.subject, replyOrForward: k.reply, messageId: k.messageId, references: k.references }),
  );
  const indexes = keys.map((_, i) => i);
  return algorithm === 'ORDEREDSUBJECT' ? orderedSubject(indexes, info) : references(indexes, info);
}

function keyOf(c: SortCriterion, k: EntrySortKeys): number | Buffer {
  switch (c.key) {
    case 'ARRIVAL':
      return k.internalDate;
    case 'SIZE':
      return k.size;
    case 'DATE':
      return k.sentDate ?? k.internalDate;
    case 'CC':
      return Buffer.from(k.cc);
    case 'FROM':
      return Buffer.from(k.from);
    case 'TO':
      return Buffer.from(k.to);
    case 'SUBJECT':
      return Buffer.from(k.subject);
    case 'DISPLAYFROM':
      return Buffer.from(k.displayFrom);
    case 'DISPLAYTO':
      return Buffer.from(k.displayTo);
  }
}

/** SORT by comparing the keys themselves (text as UTF-8 bytes), ties in sequence order. */
export function referenceSort(keys: readonly EntrySortKeys[], indexes: readonly number[], criteria: readonly SortCriterion[]): number[] {
  return [...indexes].sort((a, b) => {
    for (const c of criteria) {
      const x = keyOf(c, keys[a]!);
      const y = keyOf(c, keys[b]!);
      const d = typeof x === 'number' && typeof y === 'number' ? x - y : Buffer.compare(x as Buffer, y as Buffer);
      if (d !== 0) return c.reverse ? -d : d;
    }
    return a - b;
  });
}
