import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { parseMessage } from '../../src/mail/parse.js';
import { filterHeaderFields, scanHeader, splitHeaderFields } from '../../src/mail/headers.js';
import { decodeBase64Lenient, decodeQuotedPrintable } from '../../src/mail/transfer.js';
import { extractBaseSubject } from '../../src/mail/subject.js';
import { parseAddressList, parseMailbox } from '../../src/mail/address.js';
import { parseDate } from '../../src/mail/date.js';
import type { MimePart } from '../../src/mail/types.js';
import { makeMessage } from '../helpers/messages.js';
import { checkStructure } from './check.js';

const RUNS = { seed: 42, numRuns: 300 };

test('parseMessage never throws on arbitrary bytes, and offsets are within bounds and nested', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 3000 }), (bytes) => {
      const raw = Buffer.from(bytes);
      checkStructure(parseMessage(raw), raw);
    }),
    RUNS,
  );
});

const TOKENS = [
  '\r\n', '\n', '\r', ' ', '\t', ':', ';', '"', '=', '--', '--b', '--b--', '--c', 'a', 'xyz', '\0', '\xff\xfe',
  'Content-Type: multipart/mixed; boundary=b', 'Content-Type: multipart/digest; boundary=c',
  'Content-Type: message/rfc822', 'Content-Type: message/global', 'Content-Type: text/html',
  'Content-Transfer-Encoding: base64', 'Content-Transfer-Encoding: quoted-printable',
  "Content-Disposition: attachment; filename*0*=utf-8''%C3; filename*1=x", 'Subject: =?utf-8?q?a=C3?=',
  'From: "a" <b@c>, g: d@e;', 'Date: Mon, 1 Jan 2024 10:00:00 +0000', '<p>&amp;</p>', '=?x?b?=?=', 'boundary=',
];

test('parseMessage never throws on mail-shaped token soup', () => {
  fc.assert(
    fc.property(fc.array(fc.constantFrom(...TOKENS), { maxLength: 300 }), (tokens) => {
      const raw = Buffer.from(tokens.join(''), 'latin1');
      checkStructure(parseMessage(raw), raw);
    }),
    RUNS,
  );
});

const BASES: Buffer[] = [
  makeMessage({
    from: 'Ann <ann@example.com>',
    to: ['b@example.org', 'Team: c@example.org;'],
    subject: 'Grüße',
    body: 'Hello\n\nworld',
    attachments: [
      { filename: 'a.pdf', content: Buffer.alloc(300, 7), contentType: 'application/pdf' },
      { filename: 'résumé.txt', content: 'text attachment', contentType: 'text/plain' },
    ],
    messageId: 'base1@example.com',
  }),
  Buffer.from(
    [
      'Subject: nested',
      'Content-Type: multipart/mixed; boundary=o',
      '',
      '--o',
      'Content-Type: message/rfc822',
      '',
      'Subject: inner',
      'Content-Type: multipart/digest; boundary=d',
      '',
      '--d',
      '',
      'Subject: digest child',
      '',
      'x',
      '--d--',
      '--o',
      'Content-Type: text/html; charset=iso-8859-1',
      'Content-Transfer-Encoding: quoted-printable',
      '',
      '<p>caf=E9</p>',
      '--o--',
      '',
    ].join('\r\n'),
  ),
];

const mutation = fc.record({
  op: fc.constantFrom('delete', 'insert', 'duplicate', 'replace', 'truncate', 'lf'),
  at: fc.nat(),
  len: fc.nat({ max: 120 }),
  bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }),
});

function mutate(raw: Buffer, m: { op: string; at: number; len: number; bytes: Uint8Array }): Buffer {
  const at = raw.length === 0 ? 0 : m.at % (raw.length + 1);
  const end = Math.min(raw.length, at + m.len);
  switch (m.op) {
    case 'delete':
      return Buffer.concat([raw.subarray(0, at), raw.subarray(end)]);
    case 'insert':
      return Buffer.concat([raw.subarray(0, at), m.bytes, raw.subarray(at)]);
    case 'duplicate':
      return Buffer.concat([raw.subarray(0, end), raw.subarray(at, end), raw.subarray(end)]);
    case 'replace':
      return Buffer.concat([raw.subarray(0, at), m.bytes, raw.subarray(Math.min(raw.length, at + m.bytes.length))]);
    case 'truncate':
      return raw.subarray(0, at);
    default:
      return Buffer.from(raw.toString('latin1').replace(/\r\n/g, '\n'), 'latin1');
  }
}

test('parseMessage never throws on mutated valid messages, and offsets stay nested', () => {
  fc.assert(
    fc.property(fc.constantFrom(...BASES), fc.array(mutation, { minLength: 1, maxLength: 6 }), (base, ms) => {
      let raw = base;
      for (const m of ms) raw = mutate(raw, m);
      checkStructure(parseMessage(raw), raw);
    }),
    RUNS,
  );
});

type Node =
  | { kind: 'leaf'; header: boolean; lines: string[] }
  | { kind: 'multipart'; subtype: string; preamble: boolean; children: Node[] }
  | { kind: 'message'; inner: Node };

const { node } = fc.letrec<{ node: Node }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({
      kind: fc.constant('leaf' as const),
      header: fc.boolean(),
      lines: fc.array(fc.stringMatching(/^[a-zA-Z0-9 .,]{0,12}$/), { maxLength: 4 }),
    }),
    fc.record({
      kind: fc.constant('multipart' as const),
      subtype: fc.constantFrom('mixed', 'alternative', 'related'),
      preamble: fc.boolean(),
      children: fc.array(tie('node'), { minLength: 1, maxLength: 4 }),
    }),
    fc.record({ kind: fc.constant('message' as const), inner: tie('node') }),
  ),
}));

function serialize(n: Node, eol: string, counter: { n: number }): string {
  switch (n.kind) {
    case 'leaf':
      return (n.header ? `Content-Type: text/plain${eol}` : '') + eol + n.lines.join(eol);
    case 'message':
      return `Content-Type: message/rfc822${eol}${eol}Subject: s${counter.n++}${eol}` + serialize(n.inner, eol, counter);
    case 'multipart': {
      const b = `b${counter.n++}`;
      const head = `Content-Type: multipart/${n.subtype}; boundary="${b}"${eol}${eol}` + (n.preamble ? `preamble${eol}` : '');
      const kids = n.children.map((c) => serialize(c, eol, counter));
      return head + `--${b}${eol}` + kids.join(`${eol}--${b}${eol}`) + `${eol}--${b}--${eol}`;
    }
  }
}

function compare(raw: Buffer, part: MimePart, n: Node): void {
  switch (n.kind) {
    case 'leaf':
      assert.equal(`${part.type}/${part.subtype}`, 'text/plain');
      assert.equal(raw.subarray(part.bodyStart, part.bodyEnd).toString('latin1'), n.lines.join(raw.includes('\r\n') ? '\r\n' : '\n'));
      return;
    case 'message':
      assert.equal(`${part.type}/${part.subtype}`, 'message/rfc822');
      assert.ok(part.message !== null);
      assert.match(part.message.envelope.subject ?? '', /^s\d+$/);
      compare(raw, part.message.root, n.inner);
      return;
    case 'multipart':
      assert.equal(`${part.type}/${part.subtype}`, `multipart/${n.subtype}`);
      assert.equal(part.parts.length, n.children.length);
      n.children.forEach((c, i) => compare(raw, part.parts[i]!, c));
  }
}

test('a generated MIME tree parses back to the same tree with bodies at the exact offsets, in CRLF and LF', () => {
  fc.assert(
    fc.property(node, fc.boolean(), (tree, useLf) => {
      const eol = useLf ? '\n' : '\r\n';
      const raw = Buffer.from(`From: a@example.com${eol}` + serialize(tree, eol, { n: 0 }), 'latin1');
      const p = parseMessage(raw);
      checkStructure(p, raw);
      compare(raw, p.root, tree);
      assert.deepEqual(p.warnings, []);
    }),
    RUNS,
  );
});

test('header fields tile the header exactly and filtering with and without NOT partitions them', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(fc.constantFrom('A', 'b', 'Subject', 'X-Y'), fc.stringMatching(/^[ -~]{0,10}$/), fc.array(fc.stringMatching(/^[!-~]{1,5}$/), { maxLength: 2 })),
        { maxLength: 8 },
      ),
      fc.boolean(),
      (fields, useLf) => {
        const eol = useLf ? '\n' : '\r\n';
        const text = fields.map(([n, v, cont]) => `${n}:${v}${eol}` + cont.map((c) => ` ${c}${eol}`).join('')).join('') + eol + 'body';
        const buf = Buffer.from(text, 'latin1');
        const split = splitHeaderFields(buf);
        assert.equal(split.length, fields.length);
        let pos = 0;
        for (const f of split) {
          assert.equal(f.start, pos);
          pos = f.end;
        }
        assert.equal(scanHeader(buf).headerEnd, pos);
        const names = ['a', 'subject'];
        const yes = filterHeaderFields(buf, names, false);
        const no = filterHeaderFields(buf, names, true);
        assert.equal(yes.length + no.length, pos + 2 * eol.length);
        assert.ok(yes.toString('latin1').endsWith(eol));
      },
    ),
    RUNS,
  );
});

test('transfer decoders, subject, address, mailbox and date parsers never throw on arbitrary input', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 500 }), fc.string({ maxLength: 200, unit: 'binary' }), (bytes, s) => {
      decodeBase64Lenient(Buffer.from(bytes));
      decodeQuotedPrintable(Buffer.from(bytes));
      extractBaseSubject(s);
      parseAddressList(s);
      parseMailbox(s);
      parseDate(s);
    }),
    RUNS,
  );
});

test('base64 decoding inverts encoding whatever the line wrapping', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 400 }), fc.integer({ min: 1, max: 100 }), (bytes, width) => {
      const b64 = Buffer.from(bytes).toString('base64');
      const wrapped = b64.replace(new RegExp(`(.{${width}})`, 'g'), '$1\r\n');
      assert.deepEqual(decodeBase64Lenient(Buffer.from(wrapped)), Buffer.from(bytes));
    }),
    RUNS,
  );
});

test('header helpers never throw on arbitrary bytes and give ranges within the buffer, in order', () => {
  fc.assert(
    fc.property(fc.array(fc.constantFrom('A: 1', 'b:2', ' cont', '\t', 'junk', '', ':', 'Subject: =?utf-8?q?x?=', '\0', '\xe9'), { maxLength: 30 }), fc.constantFrom('\r\n', '\n'), (lines, eol) => {
      const buf = Buffer.from(lines.join(eol), 'latin1');
      const scan = scanHeader(buf);
      assert.ok(scan.bodyStart >= scan.headerEnd && scan.bodyStart <= buf.length);
      let prev = 0;
      for (const f of scan.fields) {
        assert.ok(f.start >= prev && f.start < f.end && f.end <= scan.headerEnd);
        assert.ok(f.valueStart >= f.start && f.valueStart <= f.end);
        prev = f.end;
      }
      filterHeaderFields(buf, ['a', 'subject'], false);
      filterHeaderFields(buf, ['a'], true);
    }),
    RUNS,
  );
});

test('a message inside a larger buffer (a subarray) parses exactly as a copy of it', () => {
  fc.assert(
    fc.property(fc.constantFrom(...BASES), fc.uint8Array({ maxLength: 64 }), fc.uint8Array({ maxLength: 64 }), (base, before, after) => {
      const big = Buffer.concat([before, base, after]);
      const view = big.subarray(before.length, before.length + base.length);
      assert.deepEqual(parseMessage(view), parseMessage(Buffer.from(base)));
    }),
    { seed: 42, numRuns: 50 },
  );
});

/** RFC 8970 §3.1 preview by its definition: the first 2048 units, whitespace runs folded to one
 * space, trimmed, then 256 code points (a high surrogate takes the unit after it along). */
function previewByDefinition(text: string): string {
  const end = text.length > 2048 && text.charCodeAt(2047) >= 0xd800 && text.charCodeAt(2047) <= 0xdbff ? 2047 : 2048;
  const folded = text.slice(0, end).replace(/\s+/g, ' ').trim();
  let units = 0;
  for (let n = 0; n < 256 && units < folded.length; n++) {
    const c = folded.charCodeAt(units);
    units += c >= 0xd800 && c <= 0xdbff && units + 1 < folded.length ? 2 : 1;
  }
  return folded.slice(0, units);
}

test('the preview is the text folded, trimmed and cut as RFC 8970 says, whatever the whitespace and surrogates', () => {
  // Every character \s matches, others near them, pairs and lone halves of surrogates.
  const pieces = [
    ' ', '  ', '\t', '\n', '\u000b', '\u000c', '\u00a0', '\u1680', '\u180e', '\u2000', '\u200a', '\u200b', '\u2028', '\u2029',
    '\u202f', '\u205f', '\u3000', '\ufeff', 'a', 'word', 'é', '😀', '\ud83d', '\ude00', 'x'.repeat(300), ' '.repeat(700),
  ];
  fc.assert(
    fc.property(fc.array(fc.constantFrom(...pieces), { maxLength: 400 }), (parts) => {
      const body = parts.join('');
      const p = parseMessage(Buffer.from(`Content-Type: text/plain; charset=utf-8\r\n\r\n${body}`, 'utf8'));
      assert.equal(p.preview, previewByDefinition(p.text));
    }),
    RUNS,
  );
});
