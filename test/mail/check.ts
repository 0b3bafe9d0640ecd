import { strict as assert } from 'node:assert';
import type { MimePart, ParsedMessage } from '../../src/mail/types.js';

/** Asserts the structural invariants of a parse record: every offset is within the message, a
 * part's header precedes its body, children lie in their parent's body in order without overlap,
 * an encapsulated message lies in its part's body, and every multipart has a child. Returns the
 * number of parts. */
export function checkStructure(p: ParsedMessage, raw: Buffer): number {
  assert.equal(p.size, raw.length);
  // The defensive catch in parseMessage must never be what saved us.
  assert.ok(!p.warnings.some((w) => w.includes('failure')), p.warnings.join('; '));
  let count = 0;
  const visit = (part: MimePart, lo: number, hi: number): void => {
    count++;
    assert.ok(Number.isInteger(part.headerStart) && Number.isInteger(part.bodyStart) && Number.isInteger(part.bodyEnd));
    assert.ok(lo <= part.headerStart, `headerStart ${part.headerStart} < ${lo}`);
    assert.ok(part.headerStart <= part.bodyStart, `bodyStart ${part.bodyStart} < headerStart ${part.headerStart}`);
    assert.ok(part.bodyStart <= part.bodyEnd, `bodyEnd ${part.bodyEnd} < bodyStart ${part.bodyStart}`);
    assert.ok(part.bodyEnd <= hi, `bodyEnd ${part.bodyEnd} > ${hi}`);
    assert.ok(part.lines >= 0);
    assert.equal(part.type, part.type.toLowerCase());
    assert.equal(part.subtype, part.subtype.toLowerCase());
    if (part.type === 'multipart') assert.ok(part.parts.length >= 1, 'a multipart has a child');
    else assert.equal(part.parts.length, 0);
    let prev = part.bodyStart;
    for (const child of part.parts) {
      assert.ok(child.headerStart >= prev, 'children in order, not overlapping');
      visit(child, part.bodyStart, part.bodyEnd);
      prev = child.bodyEnd;
    }
    if (part.message !== null) {
      assert.equal(part.message.root.headerStart, part.bodyStart);
      visit(part.message.root, part.bodyStart, part.bodyEnd);
    }
  };
  assert.equal(p.root.headerStart, 0);
  assert.equal(p.root.bodyEnd, raw.length);
  visit(p.root, 0, raw.length);
  assert.ok(p.preview.length <= 512 && Array.from(p.preview).length <= 256);
  // Every string can be stored by any backend and sent to a client: no NUL, no lone surrogate.
  const strings = (v: unknown): void => {
    if (typeof v === 'string') {
      assert.ok(!v.includes('\0'), `NUL in ${JSON.stringify(v.slice(0, 80))}`);
      assert.ok(!/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(v), 'lone surrogate');
    } else if (Array.isArray(v)) v.forEach(strings);
    else if (v !== null && typeof v === 'object') Object.values(v).forEach(strings);
  };
  strings(p);
  assert.ok(p.text.length <= 1024 * 1024);
  return count;
}

/** Runs fn and returns its result with the CPU time this process spent (user + system, all
 * threads), in milliseconds: unlike wall time, it does not grow when other processes load the
 * machine, so a bound on it tests our algorithm, not the neighbours. */
export function cpuTime<T>(fn: () => T): { value: T; ms: number } {
  const before = process.cpuUsage();
  const value = fn();
  const d = process.cpuUsage(before);
  return { value, ms: (d.user + d.system) / 1000 };
}
