/**
 * Fuzzing the MIME parser (src/mail/parse.ts) on random bytes and on generated near-MIME messages
 * (see fuzz-options.ts for seeds and longer runs). Properties: parseMessage never throws, runs in
 * bounded time, every part range lies inside its parent, nesting and the number of parts stay under
 * the documented limits, and the record's size is bounded relative to the input.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { MAX_DEPTH, MAX_PARTS, MAX_TEXT, MAX_WARNINGS, parseMessage } from '../../src/mail/parse.js';
import type { MimePart } from '../../src/mail/types.js';
import { bounded, FUZZ } from './fuzz-options.js';

/** Checks one part and its children; returns [parts, depth]. */
function check(part: MimePart, lo: number, hi: number, depth: number): [number, number] {
  assert.ok(lo <= part.headerStart && part.headerStart <= part.bodyStart && part.bodyStart <= part.bodyEnd && part.bodyEnd <= hi,
    `part range ${part.headerStart}/${part.bodyStart}/${part.bodyEnd} outside ${lo}..${hi}`);
  let parts = 1;
  let maxDepth = depth;
  let prevEnd = part.bodyStart;
  for (const child of part.parts) {
    assert.ok(child.headerStart >= prevEnd, 'siblings overlap');
    const [n, d] = check(child, part.bodyStart, part.bodyEnd, depth + 1);
    parts += n;
    maxDepth = Math.max(maxDepth, d);
    prevEnd = child.bodyEnd;
  }
  if (part.message) {
    const [n, d] = check(part.message.root, part.bodyStart, part.bodyEnd, depth + 1);
    parts += n;
    maxDepth = Math.max(maxDepth, d);
  }
  return [parts, maxDepth];
}

function checkMessage(raw: Buffer): void {
  const parsed = bounded('parseMessage', () => parseMessage(raw));
  assert.equal(parsed.size, raw.length);
  const [parts, depth] = check(parsed.root, 0, raw.length, 0);
  // The nesting limit stops recursion at MAX_DEPTH; an encapsulated message adds one level.
  assert.ok(depth <= 2 * MAX_DEPTH + 2, `depth ${depth}`);
  assert.ok(parts <= 2 * MAX_PARTS + 2, `parts ${parts}`);
  assert.ok(parsed.text.length <= MAX_TEXT + 1);
  assert.ok(parsed.warnings.length <= MAX_WARNINGS);
  assert.ok(parsed.preview.length <= 256);
  // The record (what the store keeps next to the message) grows at most linearly with the input.
  assert.ok(JSON.stringify(parsed).length <= 64 * 1024 + 40 * raw.length, `record ${JSON.stringify(parsed).length} for ${raw.length} bytes`);
}

const HEADER_TOKENS = [
  'Content-Type: multipart/mixed; boundary=b\r\n', 'Content-Type: multipart/alternative; boundary="b"\r\n', 'Content-Type: message/rfc822\r\n',
  'Content-Type: text/plain; charset=utf-8\r\n', 'Content-Type: text/html; charset=iso-2022-jp\r\n', 'Content-Type: text/plain; charset*=\'\'x\r\n',
  'Content-Transfer-Encoding: base64\r\n', 'Content-Transfer-Encoding: quoted-printable\r\n', 'Content-Disposition: attachment; filename*0=a; filename*1=b\r\n',
  'Subject: =?utf-8?B?w6k=?= =?utf-8?Q?=C3=A9?=\r\n', 'From: "a\\" b" <a@b>, (c) d@e\r\n', 'To: undisclosed:;\r\n', 'Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n',
  'Message-ID: <a@b>\r\n', 'References: <a@b> <c@d\r\n', ' folded\r\n', '\r\n', '\n', '--b\r\n', '--b--\r\n', '--b', 'body text\r\n', '=C3=\r\n',
  'SGVsbG8=\r\n', '<p>x</p>', '\x00', '\xff', ':', ';', '"', '(', ')',
];

test('MIME parser: random bytes never throw and give a well-formed, bounded record', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 2000 }), (b) => checkMessage(Buffer.from(b))), FUZZ);
});

test('MIME parser: header and boundary soup never throws and gives a well-formed, bounded record', () => {
  const soup = fc.array(fc.constantFrom(...HEADER_TOKENS), { maxLength: 120 }).map((t) => Buffer.from(t.join(''), 'latin1'));
  fc.assert(fc.property(soup, checkMessage), FUZZ);
});

test('MIME parser: nesting bombs (multipart and message/rfc822, thousands deep) stay bounded in depth and time', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 3000 }), fc.boolean(), fc.boolean(), (levels, rfc822, crlf) => {
      const nl = crlf ? '\r\n' : '\n';
      let open = '';
      let close = '';
      for (let i = 0; i < levels; i++) {
        if (rfc822 && i % 2 === 1) {
          open += `Content-Type: message/rfc822${nl}${nl}`;
        } else {
          open += `Content-Type: multipart/mixed; boundary=b${i}${nl}${nl}--b${i}${nl}`;
          close = `${nl}--b${i}--${nl}` + close;
        }
      }
      checkMessage(Buffer.from(`${open}Content-Type: text/plain${nl}${nl}leaf${close}`, 'latin1'));
    }),
    { ...FUZZ, numRuns: Math.max(10, Math.floor(FUZZ.numRuns / 10)) },
  );
});
