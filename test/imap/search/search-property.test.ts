import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import type { SearchKey, SequenceSet } from '../../../src/imap/protocol/ast.js';
import { evaluateSearch, searchViewOf } from '../../../src/imap/search/search.js';
import type { MessageEntry } from '../../../src/store/types.js';
import { asMailboxId, asModSeq, asUid } from '../../../src/lib/brand.js';

const FLAGS = ['\\Seen', '\\Answered', '\\Flagged', '\\Deleted', '\\Draft', '$Junk'];

/** A direct reading of RFC 9051 §6.4.4, one message at a time: the reference the optimised
 * evaluator (cheap keys first, narrowing candidates) must agree with. */
function reference(key: SearchKey, entries: MessageEntry[], i: number): boolean {
  const e = entries[i]!;
  const inSet = (set: SequenceSet, n: number, star: number): boolean =>
    set.ranges.some(([a, b]) => {
      const x = a === '*' ? star : a;
      const y = b === '*' ? star : b;
      return n >= Math.min(x, y) && n <= Math.max(x, y);
    });
  switch (key.kind) {
    case 'all':
      return true;
    case 'flag':
      return e.flags.some((f) => f.toLowerCase() === key.flag.toLowerCase()) === key.present;
    case 'size':
      return key.op === 'larger' ? e.size > key.n : e.size < key.n;
    case 'seqset':
      return inSet(key.set, i + 1, entries.length);
    case 'uid':
      return inSet(key.set, e.uid, entries[entries.length - 1]!.uid);
    case 'modseq':
      return e.modseq >= key.modseq;
    case 'not':
      return !reference(key.key, entries, i);
    case 'or':
      return reference(key.a, entries, i) || reference(key.b, entries, i);
    case 'and':
      return key.keys.every((k) => reference(k, entries, i));
    default:
      throw new Error(`no reference for ${key.kind}`);
  }
}

const bound = fc.oneof(fc.integer({ min: 1, max: 40 }), fc.constant<'*'>('*'));
const seqSet = fc.array(fc.tuple(bound, bound), { minLength: 1, maxLength: 3 }).map((ranges): SequenceSet => ({ ranges }));

const leaf: fc.Arbitrary<SearchKey> = fc.oneof(
  fc.constant<SearchKey>({ kind: 'all' }),
  fc.record({ kind: fc.constant<'flag'>('flag'), flag: fc.constantFrom(...FLAGS, '\\seen', '$junk'), present: fc.boolean() }),
  fc.record({ kind: fc.constant<'size'>('size'), op: fc.constantFrom<'larger' | 'smaller'>('larger', 'smaller'), n: fc.integer({ min: 0, max: 2000 }) }),
  fc.record({ kind: fc.constant<'seqset'>('seqset'), set: seqSet }),
  fc.record({ kind: fc.constant<'uid'>('uid'), set: seqSet }),
  fc.record({ kind: fc.constant<'modseq'>('modseq'), modseq: fc.integer({ min: 0, max: 50 }) }),
);

const key: fc.Arbitrary<SearchKey> = fc.letrec<{ k: SearchKey }>((tie) => ({
  k: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leaf,
    fc.record({ kind: fc.constant<'not'>('not'), key: tie('k') }),
    fc.record({ kind: fc.constant<'or'>('or'), a: tie('k'), b: tie('k') }),
    fc.record({ kind: fc.constant<'and'>('and'), keys: fc.array(tie('k'), { maxLength: 4 }) }),
  ),
})).k;

const mailbox = fc
  .array(fc.record({ gap: fc.integer({ min: 1, max: 3 }), flags: fc.subarray(FLAGS), size: fc.integer({ min: 0, max: 2000 }), modseq: fc.integer({ min: 1, max: 50 }) }), { maxLength: 30 })
  .map((rows) => {
    let uid = 0;
    return rows.map((r): MessageEntry => {
      uid += r.gap;
      return {
        mailboxId: asMailboxId(1),
        uid: asUid(uid),
        modseq: asModSeq(r.modseq),
        flags: r.flags,
        internalDate: 0,
        saveDate: 0,
        size: r.size,
        blobHash: 'h',
        emailId: 'M',
        threadId: 'T',
        pid: 'M',
        pop3Hidden: false,
      };
    });
  });

test('the optimised SEARCH evaluator agrees with a message-by-message reading of the RFC', async () => {
  await fc.assert(
    fc.asyncProperty(mailbox, key, async (entries, k) => {
      const store = { searchText: () => Promise.reject(new Error('no text keys here')), getParsed: () => Promise.reject(new Error('no parse')) };
      const got = await evaluateSearch(k, searchViewOf(entries, { store, mailboxId: asMailboxId(1) }));
      const want = entries.flatMap((_, i) => (reference(k, entries, i) ? [i] : []));
      assert.deepEqual(got, want);
    }),
    { seed: 20240501, numRuns: 2000 },
  );
});
