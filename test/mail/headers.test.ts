import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import {
  decodeEncodedWords,
  filterHeaderFields,
  getDecodedHeaderValue,
  getHeaderValue,
  getHeaderValues,
  MAX_DECODED_VALUE,
  MAX_HEADER_FIELDS,
  scanHeader,
  splitHeaderFields,
  unfold,
} from '../../src/mail/headers.js';
import { createCharsetDecoder } from '../../src/mail/charset.js';
import { parseMessage } from '../../src/mail/parse.js';
import { cpuTime } from './check.js';

const HEADER = Buffer.from(
  'Subject: hello\r\n' + '  world\r\n' + 'X-A: 1\r\n' + 'to : b@example.org\r\n' + 'X-A:\t2\r\n' + '\r\n' + 'body\r\n',
);

test('splitHeaderFields gives each field with its continuation lines and line end', () => {
  const fields = splitHeaderFields(HEADER);
  assert.deepEqual(
    fields.map((f) => [f.name, HEADER.subarray(f.start, f.end).toString()]),
    [
      ['subject', 'Subject: hello\r\n  world\r\n'],
      ['x-a', 'X-A: 1\r\n'],
      ['to', 'to : b@example.org\r\n'],
      ['x-a', 'X-A:\t2\r\n'],
    ],
  );
});

test('scanHeader finds the body after the blank line, with LF or CRLF', () => {
  const crlf = scanHeader(HEADER);
  assert.equal(HEADER.subarray(crlf.bodyStart).toString(), 'body\r\n');
  assert.equal(crlf.headerEnd, HEADER.indexOf('\r\n\r\n') + 2);
  const lfOnly = Buffer.from('A: 1\nB: 2\n continued\n\nbody');
  const s = scanHeader(lfOnly);
  assert.equal(lfOnly.subarray(s.bodyStart).toString(), 'body');
  assert.equal(s.fields.length, 2);
  assert.equal(lfOnly.subarray(s.fields[1]!.start, s.fields[1]!.end).toString(), 'B: 2\n continued\n');
});

test('scanHeader: a header without a blank line runs to the end; no header when the first line is not a field', () => {
  const noBody = Buffer.from('A: 1\r\nB: 2');
  const s = scanHeader(noBody);
  assert.equal(s.bodyStart, noBody.length);
  assert.equal(s.fields.length, 2);
  const noHeader = Buffer.from('just text\r\nA: 1\r\n');
  const n = scanHeader(noHeader);
  assert.equal(n.noHeader, true);
  assert.equal(n.bodyStart, 0);
  assert.deepEqual(n.fields, []);
  const blankFirst = Buffer.from('\r\nbody');
  assert.equal(scanHeader(blankFirst).bodyStart, 2);
});

test('scanHeader keeps a malformed line in the middle as a nameless field and flags 8-bit bytes', () => {
  const h = Buffer.concat([Buffer.from('A: 1\r\nnot a field\r\nB: caf'), Buffer.from([0xe9]), Buffer.from('\r\n\r\n')]);
  const s = scanHeader(h);
  assert.deepEqual(
    s.fields.map((f) => f.name),
    ['a', '', 'b'],
  );
  assert.equal(s.malformed, 1);
  assert.equal(s.eightBit, true);
  assert.equal(getHeaderValue(h, 'B'), 'café');
});

test('filterHeaderFields returns the named fields in order and the blank line (RFC 9051 §6.4.5)', () => {
  assert.equal(filterHeaderFields(HEADER, ['X-A', 'subject'], false).toString(), 'Subject: hello\r\n  world\r\nX-A: 1\r\nX-A:\t2\r\n\r\n');
  assert.equal(filterHeaderFields(HEADER, ['x-a', 'SUBJECT'], true).toString(), 'to : b@example.org\r\n\r\n');
  assert.equal(filterHeaderFields(HEADER, ['nothing'], false).toString(), '\r\n');
  // A header whose last field has no line end still yields a well-formed header.
  assert.equal(filterHeaderFields(Buffer.from('A: 1\r\nB: 2'), ['b'], false).toString(), 'B: 2\r\n\r\n');
  // LF-only header keeps its own blank line.
  assert.equal(filterHeaderFields(Buffer.from('A: 1\nB: 2\n\nbody'), ['a'], false).toString(), 'A: 1\n\n');
});

test('getHeaderValue unfolds; getHeaderValues returns every occurrence; unfold removes line ends before whitespace', () => {
  assert.equal(getHeaderValue(HEADER, 'subject'), 'hello  world');
  assert.equal(getHeaderValue(HEADER, 'To'), 'b@example.org');
  assert.deepEqual(getHeaderValues(HEADER, 'x-a'), ['1', '2']);
  assert.equal(getHeaderValue(HEADER, 'missing'), null);
  assert.equal(unfold('a\r\n b\n\tc'), 'a b\tc');
});

// [encoded, decoded]: RFC 2047 in the charsets mail actually uses.
const WORDS: Array<[string, string]> = [
  ['=?utf-8?q?h=C3=A9llo?=', 'héllo'],
  ['=?UTF-8?B?aMOpbGxv?=', 'héllo'],
  ['=?iso-8859-1?q?caf=E9?=', 'café'],
  ['=?ISO-8859-15?Q?=A4?=', '€'],
  ['=?windows-1252?q?=80_=93x=94?=', '€ “x”'],
  ['=?koi8-r?b?8NLJ18XU?=', 'Привет'],
  ['=?shift_jis?b?g2WDWINn?=', 'テスト'],
  ['=?gb2312?b?xOO6ww==?=', '你好'],
  ['=?utf-8?q?a?= =?utf-8?q?b?=', 'ab'],
  ['=?utf-8?q?a?=\r\n =?utf-8?q?b?=', 'ab'],
  ['x =?utf-8?q?a?= y', 'x a y'],
  ['=?utf-8?b?w6k=?= =?iso-8859-1?q?=E9?=', 'éé'],
  // One character split across two encoded words of one charset (RFC 2047 §5 forbids it; it happens).
  ['=?utf-8?q?=C3?= =?utf-8?q?=A9?=', 'é'],
  ['=?utf-8*en?q?hi?=', 'hi'],
  ['=?utf-8?x?nope?=', '=?utf-8?x?nope?='],
  ['plain text', 'plain text'],
];

for (const [encoded, decoded] of WORDS) {
  test(`decodeEncodedWords ${JSON.stringify(encoded)} -> ${JSON.stringify(decoded)}`, () => {
    assert.equal(decodeEncodedWords(encoded), decoded);
  });
}

test('an unknown charset falls back to UTF-8 or Latin-1 without throwing and is reported', () => {
  const d = createCharsetDecoder();
  assert.equal(decodeEncodedWords('=?x-martian?q?caf=C3=A9?=', d), 'café');
  assert.equal(decodeEncodedWords('=?x-venusian?q?caf=E9?=', d), 'café');
  assert.deepEqual([...d.unknown].sort(), ['x-martian', 'x-venusian']);
});

test('getDecodedHeaderValue decodes encoded words of the first field', () => {
  const h = Buffer.from('Subject: =?utf-8?q?=E2=9C=93?= done\r\n\r\n');
  assert.equal(getDecodedHeaderValue(h, 'subject'), '✓ done');
});

test('a header field of 100k characters is split in linear time', () => {
  const big = Buffer.from('X-Big: ' + 'a'.repeat(100_000) + '\r\n' + ' b\r\n'.repeat(50_000) + 'Y: 1\r\n\r\n');
  const { value: f, ms } = cpuTime(() => splitHeaderFields(big));
  assert.equal(f.length, 2);
  assert.equal(f[1]!.name, 'y');
  assert.ok(ms < 1000, `took ${ms} ms`);
});

test('past MAX_HEADER_FIELDS fields the rest of the header is one unnamed block; the header still ends where it ends', () => {
  const raw = Buffer.from(`${'X-A: b\r\n'.repeat(MAX_HEADER_FIELDS + 5000)}Subject: late\r\n\r\nbody\r\n`);
  const scan = scanHeader(raw);
  assert.equal(scan.fields.length, MAX_HEADER_FIELDS + 1);
  const block = scan.fields.at(-1)!;
  assert.equal(block.name, '');
  assert.equal(block.start, MAX_HEADER_FIELDS * 8);
  assert.equal(block.end, scan.headerEnd);
  assert.equal(raw.toString('latin1', scan.bodyStart), 'body\r\n');
  // Found by no name; kept whole by HEADER.FIELDS.NOT.
  assert.equal(getHeaderValue(raw, 'subject'), null);
  assert.equal(filterHeaderFields(raw, ['x-a'], true).length, raw.length - MAX_HEADER_FIELDS * 8 - 'body\r\n'.length);
  const parsed = parseMessage(raw);
  assert.equal(parsed.subject, '');
  assert.equal(parsed.text.trim(), 'body');
});

test('RFC 2047 decoding reads at most MAX_DECODED_VALUE characters of a value', () => {
  const word = '=?utf-8?q?a?= ';
  const value = word.repeat(Math.ceil((MAX_DECODED_VALUE * 3) / word.length));
  const decoded = decodeEncodedWords(value);
  // Adjacent encoded words join without their spaces: one "a" per word read.
  assert.ok(decoded.length <= MAX_DECODED_VALUE / word.length + 16, `${decoded.length}`);
  assert.match(decoded, /^a+/);
});
