import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { baseSubject, extractBaseSubject } from '../../src/mail/subject.js';
import { cpuTime } from './check.js';

// [input, base subject, reply or forward]
const CASES: Array<[string, string, boolean]> = [
  ['Hello', 'Hello', false],
  ['Re: Hello', 'Hello', true],
  ['RE: re: Re:Hello', 'Hello', true],
  ['Fw: Hello', 'Hello', true],
  ['FWD: Hello', 'Hello', true],
  ['Re[2]: Hello', 'Hello', true],
  ['Re [2]: Hello', 'Hello', true],
  ['[list] Re: Hello', 'Hello', true],
  ['[list] Hello', 'Hello', false],
  ['[list]', '[list]', false],
  ['Hello (fwd)', 'Hello', true],
  ['Hello (FWD) (fwd)  ', 'Hello', true],
  ['[Fwd: Re: Hello]', 'Hello', true],
  ['Re: [Fwd: [list] Hello (fwd)]', 'Hello', true],
  ['  Hello\t  world  ', 'Hello world', false],
  ['Re: Hello\r\n world', 'Hello world', true],
  ['Reply: Hello', 'Reply: Hello', false],
  ['Re:', '', true],
  ['', '', false],
  ['=?utf-8?q?Re=3A_caf=C3=A9?=', 'café', true],
  ['[a][b] Re: [c] x', 'x', true],
  ['[unclosed Re: x', '[unclosed Re: x', false],
];

for (const [input, expected, flag] of CASES) {
  test(`base subject of ${JSON.stringify(input)} is ${JSON.stringify(expected)} (RFC 5256 §2.1)`, () => {
    assert.deepEqual(extractBaseSubject(input), { subject: expected, replyOrForward: flag });
  });
}

test('base subject of null and of a very long subject does not throw', () => {
  assert.equal(baseSubject(null), '');
  const long = 'Re: '.repeat(20_000) + 'x';
  const { value, ms } = cpuTime(() => baseSubject(long));
  assert.equal(typeof value, 'string');
  assert.ok(ms < 2000, `took ${ms} ms`);
});
