import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { parseDate } from '../../src/mail/date.js';

const U = Date.UTC;
// RFC 5322 §3.3 and the obsolete forms of §4.3.
const CASES: Array<[string, number | null]> = [
  ['Mon, 1 Jan 2024 10:00:00 +0100', U(2024, 0, 1, 9, 0, 0)],
  ['1 Jan 2024 10:00 -0230', U(2024, 0, 1, 12, 30, 0)],
  ['Tue, 02 Jan 2024 23:59:60 +0000', U(2024, 0, 2, 23, 59, 59)],
  ['Fri, 21 Nov 97 09:55:06 GMT', U(1997, 10, 21, 9, 55, 6)],
  ['21 Nov 03 09:55:06 EST', U(2003, 10, 21, 14, 55, 6)],
  ['21 Nov 103 09:55:06 PDT', U(2003, 10, 21, 16, 55, 6)],
  ['Thu,\r\n 13\r\n   Feb\r\n 1969\r\n 23:32\r\n -0330 (Newfoundland Time)', U(1969, 1, 14, 3, 2, 0)],
  ['Mon, 1 Jan 2024 10:00:00 Z', U(2024, 0, 1, 10, 0, 0)],
  ['Mon, 1 Jan 2024 10:00:00 A', U(2024, 0, 1, 10, 0, 0)],
  ['Mon, 1 Jan 2024 10:00:00', U(2024, 0, 1, 10, 0, 0)],
  ['Mon, 1 January 2024 10:00:00 +0000 (UTC)', U(2024, 0, 1, 10, 0, 0)],
  ['Mon Jan  1 10:00:00 2024', U(2024, 0, 1, 10, 0, 0)],
  ['01-Jan-2024 10:00:00 +0000', U(2024, 0, 1, 10, 0, 0)],
  ['2024-01-01T10:00:00+02:00', U(2024, 0, 1, 8, 0, 0)],
  ['2024-01-01 10:00:00Z', U(2024, 0, 1, 10, 0, 0)],
  ['', null],
  ['yesterday', null],
  ['Mon, 32 Foo 2024 10:00:00', null],
  ['1 Jan 2024 25:00:00 +0000', null],
  ['1 Jan 2024 10:61:00 +0000', null],
];

for (const [input, expected] of CASES) {
  test(`parseDate ${JSON.stringify(input)}`, () => {
    assert.equal(parseDate(input), expected);
  });
}

test('parseDate of null, huge and hostile input returns without throwing', () => {
  assert.equal(parseDate(null), null);
  assert.equal(parseDate('('.repeat(100_000)), null);
  assert.equal(typeof parseDate('1 Jan 2024 ' + '9'.repeat(100_000)), 'number');
});
