import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { listMatcher } from '../../src/imap/server/list-match.js';

test('LIST patterns: * crosses the separator, % does not, INBOX is case-insensitive, the reference is prepended', () => {
  const cases: Array<[string, string, string, boolean]> = [
    ['', '*', 'a/b/c', true],
    ['', '%', 'a/b', false],
    ['', '%', 'a', true],
    ['', 'a/%', 'a/b', true],
    ['', 'a/%', 'a/b/c', false],
    ['', 'a/%/%', 'a/b/c', true],
    ['', '%3/%', 'test3/test4', true],
    ['', '*test4', 'x/test3/test4', true],
    ['', 'inbox', 'INBOX', true],
    ['', 'Inbox/%', 'INBOX/sub', true],
    ['', 'inboxes', 'INBOXES', false],
    ['Projects/', '%', 'Projects/2024', true],
    ['Projects/', '/abs', '/abs', true],
    ['', 'a.b', 'aXb', false],
    ['', '', 'x', false],
  ];
  for (const [ref, pat, name, want] of cases) assert.equal(listMatcher(ref, pat)(name), want, `${ref}|${pat}|${name}`);
});

test('LIST matching agrees with a reference implementation on random patterns', () => {
  const chars = fc.constantFrom('a', 'b', '/', '*', '%');
  const naive = (p: string, n: string): boolean => {
    if (p === '') return n === '';
    const [c, rest] = [p[0]!, p.slice(1)];
    if (c === '*') return [...Array(n.length + 1).keys()].some((k) => naive(rest, n.slice(k)));
    if (c === '%') return [...Array(n.length + 1).keys()].some((k) => !n.slice(0, k).includes('/') && naive(rest, n.slice(k)));
    return n[0] === c && naive(rest, n.slice(1));
  };
  fc.assert(
    fc.property(fc.array(chars, { maxLength: 8 }), fc.array(fc.constantFrom('a', 'b', '/'), { maxLength: 8 }), (p, n) => {
      assert.equal(listMatcher('', p.join(''))(n.join('')), naive(p.join(''), n.join('')));
    }),
    { seed: 5150, numRuns: 3000 },
  );
});

test('a pattern built to backtrack costs no more than pattern × name', () => {
  const name = 'a'.repeat(1000);
  const started = Date.now();
  assert.equal(listMatcher('', `${'*a'.repeat(500)}b`)(name), false);
  assert.ok(Date.now() - started < 500, `took ${Date.now() - started} ms`);
});
