import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import libmime from 'libmime';
import { MAX_PARAMS, parseStructuredHeader } from '../../src/mail/params.js';
import { createCharsetDecoder } from '../../src/mail/charset.js';
import { cpuTime } from './check.js';

// [header value, main value, params]
const CASES: Array<[string, string, Array<[string, string]>]> = [
  ['text/plain', 'text/plain', []],
  ['Text/HTML; Charset="UTF-8"', 'Text/HTML', [['charset', 'UTF-8']]],
  ['multipart/mixed; boundary="a;b=c"; x=1', 'multipart/mixed', [['boundary', 'a;b=c'], ['x', '1']]],
  ['multipart/mixed; boundary="q\\"uote"', 'multipart/mixed', [['boundary', 'q"uote']]],
  ['text/plain (comment; x=y) ; charset=us-ascii (Plain text)', 'text/plain', [['charset', 'us-ascii']]],
  ['attachment; filename="a(1).pdf"', 'attachment', [['filename', 'a(1).pdf']]],
  ['attachment;filename=plain.txt;;', 'attachment', [['filename', 'plain.txt']]],
  ['attachment; =nothing; novalue; filename=x', 'attachment', [['filename', 'x']]],
  ['attachment; filename=first; FILENAME=second', 'attachment', [['filename', 'first']]],
  ["attachment; filename*=utf-8''%C3%A9t%C3%A9.pdf", 'attachment', [['filename', 'été.pdf']]],
  ["attachment; filename*=iso-8859-1'fr'caf%E9.txt", 'attachment', [['filename', 'café.txt']]],
  ["attachment; filename=\"fallback.pdf\"; filename*=UTF-8''%E2%82%AC.pdf", 'attachment', [['filename', '€.pdf']]],
  ["attachment; filename*1=\"-2024\"; filename*0*=utf-8''%C3%A9t%C3%A9; filename*2=.pdf", 'attachment', [['filename', 'été-2024.pdf']]],
  ['message/external-body; URL*0="ftp://"; URL*1="cs.utk.edu/pub"', 'message/external-body', [['url', 'ftp://cs.utk.edu/pub']]],
  ["attachment; filename*0*=utf-8''%C3; filename*1*=%A9", 'attachment', [['filename', 'é']]],
  ["attachment; filename*=''no-charset%41", 'attachment', [['filename', 'no-charsetA']]],
  ["attachment; filename*=utf-8''%ZZ%4", 'attachment', [['filename', '%ZZ%4']]],
  ['attachment; name="unterminated', 'attachment', [['name', 'unterminated']]],
  ['attachment; a*b=1', 'attachment', [['a*b', '1']]],
  ['', '', []],
];

for (const [input, value, params] of CASES) {
  test(`parseStructuredHeader ${JSON.stringify(input)}`, () => {
    assert.deepEqual(parseStructuredHeader(input), { value, params });
  });
}

test('an unknown RFC 2231 charset falls back and is reported', () => {
  const d = createCharsetDecoder();
  assert.deepEqual(parseStructuredHeader("a; filename*=x-klingon''caf%C3%A9", d).params, [['filename', 'café']]);
  assert.deepEqual([...d.unknown], ['x-klingon']);
});

test('parameters past MAX_PARAMS are dropped', () => {
  const v = 'a; ' + Array.from({ length: MAX_PARAMS + 50 }, (_, i) => `p${i}=${i}`).join('; ');
  assert.equal(parseStructuredHeader(v).params.length, MAX_PARAMS);
});

test('RFC 2231 values written by libmime are read back unchanged', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'grapheme', maxLength: 120 }), fc.integer({ min: 12, max: 80 }), (name, width) => {
      const pieces = libmime.buildHeaderParam('filename', name, width);
      const header = 'attachment; ' + pieces.map((p) => (p.key.endsWith('*') ? `${p.key}=${p.value}` : `${p.key}="${p.value.replace(/(["\\])/g, '\\$1')}"`)).join('; ');
      assert.deepEqual(parseStructuredHeader(header).params, [['filename', name]]);
    }),
    { seed: 42, numRuns: 300 },
  );
});

test('hostile 64 KiB values parse in linear time', () => {
  const n = 64 * 1024;
  for (const v of [
    'text/plain; a=' + '('.repeat(n),
    'text/plain; a=b' + ' '.repeat(n) + 'c',
    'text/plain; a="' + '\\"'.repeat(n / 2),
    'text/plain' + ';'.repeat(n),
    "text/plain; a*=utf-8''" + '%'.repeat(n),
    'text/plain; ' + Array.from({ length: n / 16 }, (_, i) => `a*${i}*=%41`).join('; '),
  ]) {
    const { ms } = cpuTime(() => {
      for (let i = 0; i < 10; i++) parseStructuredHeader(v);
    });
    assert.ok(ms < 1000, `took ${ms} ms for ${JSON.stringify(v.slice(0, 30))}`);
  }
});
