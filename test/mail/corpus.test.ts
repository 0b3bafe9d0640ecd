import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { MAX_DEPTH, MAX_PARTS, MAX_TEXT, parseMessage } from '../../src/mail/parse.js';
import type { MimePart, ParsedMessage } from '../../src/mail/types.js';
import { checkStructure, cpuTime } from './check.js';
import { decodeTransfer } from '../../src/mail/transfer.js';
import { makeMessage } from '../helpers/messages.js';

const crlf = (...lines: string[]): Buffer => Buffer.from(lines.join('\r\n'), 'utf8');
const text = (raw: Buffer, a: number, b: number): string => raw.subarray(a, b).toString('utf8');
const bodyOf = (raw: Buffer, p: MimePart): string => text(raw, p.bodyStart, p.bodyEnd);
const headerOf = (raw: Buffer, p: MimePart): string => text(raw, p.headerStart, p.bodyStart);

function parse(raw: Buffer): ParsedMessage {
  const p = parseMessage(raw);
  checkStructure(p, raw);
  return p;
}

test('raw 8-bit UTF-8 and Latin-1 header text is read, with a warning', () => {
  const utf8 = parse(crlf('From: Jörg <j@example.com>', 'Subject: Grüße', '', 'x'));
  assert.equal(utf8.subject, 'Grüße');
  assert.equal(utf8.envelope.subject, 'Grüße');
  assert.deepEqual(utf8.from, [{ name: 'Jörg', address: 'j@example.com' }]);
  assert.ok(utf8.warnings.includes('8-bit header'));
  const latin1 = parse(Buffer.concat([Buffer.from('Subject: caf'), Buffer.from([0xe9]), Buffer.from('\r\n\r\nx')]));
  assert.equal(latin1.subject, 'café');
});

test('encoded words in many charsets decode in the subject; an unknown charset is a warning', () => {
  const p = parse(
    crlf(
      'Subject: =?koi8-r?b?8NLJ18XU?= =?shift_jis?b?g2WDWINn?= =?gb2312?b?xOO6ww==?= =?windows-1252?q?=80?= =?iso-8859-15?q?=A4?= =?x-unknown?q?caf=E9?=',
      '',
      '',
    ),
  );
  assert.equal(p.subject, 'Приветテスト你好€€café');
  assert.ok(p.warnings.includes('unknown charset x-unknown'));
});

test('RFC 2231 parameters are joined and decoded; names are lowercased', () => {
  const raw = crlf(
    'Content-Type: multipart/mixed; BOUNDARY=b',
    '',
    '--b',
    "Content-Type: application/pdf; NAME*=iso-8859-1''caf%E9.pdf",
    "Content-Disposition: attachment; filename*0*=utf-8''%C3%A9t%C3%A9; filename*1=\"-2024\"; filename*2=.pdf",
    '',
    'x',
    '--b--',
  );
  const p = parse(raw);
  const part = p.root.parts[0]!;
  assert.deepEqual(p.root.params, [['boundary', 'b']]);
  assert.deepEqual(part.params, [['name', 'café.pdf']]);
  assert.deepEqual(part.disposition, { type: 'attachment', params: [['filename', 'été-2024.pdf']] });
});

test('a missing closing boundary lets the last part run to the end', () => {
  const raw = crlf('Content-Type: multipart/mixed; boundary=b', '', '--b', '', 'one', '--b', '', 'two', 'more');
  const p = parse(raw);
  assert.equal(p.root.parts.length, 2);
  assert.equal(bodyOf(raw, p.root.parts[1]!), 'two\r\nmore');
  assert.ok(p.warnings.includes('missing closing boundary'));
  assert.equal(p.text, 'one\ntwo\nmore');
});

test('a boundary that never occurs gives one body-only child holding the whole body', () => {
  const raw = crlf('Content-Type: multipart/mixed; boundary=nope', '', '--other', '', 'text', '--other--', '');
  const p = parse(raw);
  assert.equal(p.root.parts.length, 1);
  const c = p.root.parts[0]!;
  assert.equal(c.headerStart, p.root.bodyStart);
  assert.equal(c.bodyStart, p.root.bodyStart);
  assert.equal(c.bodyEnd, raw.length);
  assert.equal(c.type, 'text');
  assert.ok(p.warnings.includes('missing boundary'));
  const noParam = parse(crlf('Content-Type: multipart/mixed', '', 'text'));
  assert.equal(noParam.root.parts.length, 1);
  assert.ok(noParam.warnings.includes('multipart without boundary'));
});

test('a longer boundary is not taken for a shorter one; transport padding after a boundary is allowed', () => {
  const raw = crlf('Content-Type: multipart/mixed; boundary=b', '', '--b  ', '', 'one', '--bb', 'still one', '--b--\t', 'epilogue');
  const p = parse(raw);
  assert.equal(p.root.parts.length, 1);
  assert.equal(bodyOf(raw, p.root.parts[0]!), 'one\r\n--bb\r\nstill one');
  assert.deepEqual(p.warnings, []);
});

test('an outer boundary ends an inner multipart that never closes', () => {
  const raw = crlf(
    'Content-Type: multipart/mixed; boundary=outer',
    '',
    '--outer',
    'Content-Type: multipart/alternative; boundary=inner',
    '',
    '--inner',
    '',
    'inner one',
    '--outer',
    'Content-Type: text/plain',
    '',
    'outer two',
    '--outer--',
    '',
  );
  const p = parse(raw);
  assert.equal(p.root.parts.length, 2);
  const inner = p.root.parts[0]!;
  assert.equal(inner.parts.length, 1);
  assert.equal(bodyOf(raw, inner.parts[0]!), 'inner one');
  assert.equal(bodyOf(raw, p.root.parts[1]!), 'outer two');
  assert.ok(p.warnings.includes('missing closing boundary'));
});

test('message/rfc822 nested twice is parsed in place with absolute offsets and envelopes', () => {
  const innermost = ['From: c@example.com', 'Subject: level 2', '', 'deep body'];
  const middle = [
    'From: b@example.com',
    'Subject: level 1',
    'Content-Type: multipart/mixed; boundary=m',
    '',
    '--m',
    'Content-Type: message/rfc822',
    '',
    ...innermost,
    '--m--',
  ];
  const raw = crlf(
    'From: a@example.com',
    'Subject: level 0',
    'Content-Type: multipart/mixed; boundary=o',
    '',
    '--o',
    '',
    'top text',
    '--o',
    'Content-Type: message/rfc822',
    'Content-Disposition: attachment',
    '',
    ...middle,
    '--o--',
    '',
  );
  const p = parse(raw);
  const msg1 = p.root.parts[1]!;
  assert.equal(msg1.type, 'message');
  assert.ok(msg1.message !== null);
  assert.equal(msg1.message.envelope.subject, 'level 1');
  assert.equal(headerOf(raw, msg1.message.root).split('\r\n')[0], 'From: b@example.com');
  const msg2 = msg1.message.root.parts[0]!;
  assert.ok(msg2.message !== null);
  assert.equal(msg2.message.envelope.subject, 'level 2');
  assert.deepEqual(msg2.message.envelope.from?.[0], { name: null, adl: null, mailbox: 'c', host: 'example.com' });
  assert.equal(bodyOf(raw, msg2.message.root), 'deep body');
  assert.equal(bodyOf(raw, msg2), innermost.join('\r\n'));
  assert.equal(msg2.lines, 4);
  assert.equal(p.subject, 'level 0');
  assert.equal(p.text, 'top text\ndeep body');
  assert.equal(p.hasAttachment, true);
});

test('in a multipart/digest a part without Content-Type is message/rfc822 (RFC 2046 §5.1.5)', () => {
  const raw = crlf(
    'Content-Type: multipart/digest; boundary=d',
    '',
    '--d',
    '',
    'From: one@example.com',
    'Subject: first',
    '',
    'body one',
    '--d',
    'Content-Type: text/plain',
    '',
    'not a message',
    '--d--',
  );
  const p = parse(raw);
  const [a, b] = p.root.parts as [MimePart, MimePart];
  assert.equal(`${a.type}/${a.subtype}`, 'message/rfc822');
  assert.deepEqual(a.params, []);
  assert.equal(a.message?.envelope.subject, 'first');
  assert.equal(`${b.type}/${b.subtype}`, 'text/plain');
  // Outside a digest the default stays text/plain; charset=us-ascii (RFC 2045 §5.2).
  const plain = parse(crlf('Subject: x', '', 'y'));
  assert.deepEqual([plain.root.type, plain.root.subtype, plain.root.params], ['text', 'plain', [['charset', 'us-ascii']]]);
});

test('1,000 parts are all found with exact offsets', () => {
  const lines = ['Content-Type: multipart/mixed; boundary=p', ''];
  for (let i = 0; i < 1000; i++) lines.push('--p', `Content-Type: text/plain; name=p${i}`, '', `part ${i}`);
  lines.push('--p--', '');
  const raw = crlf(...lines);
  const p = parse(raw);
  assert.equal(p.root.parts.length, 1000);
  p.root.parts.forEach((c, i) => assert.equal(bodyOf(raw, c), `part ${i}`));
});

test('a 50 MB attachment parses quickly and is not decoded', () => {
  const line = 'QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n';
  const attachment = Buffer.alloc(Math.ceil((50 * 1024 * 1024) / line.length) * line.length, line);
  const raw = Buffer.concat([
    crlf('From: a@example.com', 'Content-Type: multipart/mixed; boundary=big', '', '--big', 'Content-Type: text/plain', '', 'see attached', '--big', 'Content-Type: application/octet-stream', 'Content-Transfer-Encoding: base64', 'Content-Disposition: attachment; filename=big.bin', '', ''),
    attachment,
    crlf('--big--', ''),
  ]);
  const { value: p, ms } = cpuTime(() => parseMessage(raw));
  assert.ok(ms < 1500, `took ${ms} ms`);
  assert.equal(p.root.parts.length, 2);
  const att = p.root.parts[1]!;
  assert.equal(att.bodyEnd - att.bodyStart, attachment.length - 2);
  assert.equal(p.text, 'see attached');
  assert.equal(p.hasAttachment, true);
});

test('bare LF line ends give byte-exact offsets', () => {
  const raw = Buffer.from('Subject: lf\nContent-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: text/plain\n\nline1\nline2\n--x--\n');
  const p = parse(raw);
  const c = p.root.parts[0]!;
  assert.equal(headerOf(raw, c), 'Content-Type: text/plain\n\n');
  assert.equal(bodyOf(raw, c), 'line1\nline2');
  assert.equal(c.lines, 2);
  assert.equal(p.subject, 'lf');
  // Mixed CRLF and LF in one message.
  const mixed = Buffer.from('Subject: m\r\nContent-Type: multipart/mixed; boundary=x\n\r\n--x\r\n\nbody\n--x--');
  const q = parse(mixed);
  assert.equal(bodyOf(mixed, q.root.parts[0]!), 'body');
});

test('NUL bytes in header and body do not break parsing; text drops them', () => {
  const raw = Buffer.from('Subject: a\0b\r\nX-\0: y\r\n\r\nbody\0text\r\n');
  const p = parse(raw);
  assert.equal(p.subject, 'a\ufffdb');
  assert.equal(p.envelope.subject, 'a\ufffdb');
  const encoded = parse(Buffer.from('Subject: =?utf-8?q?x=00y?=\r\nFrom: =?utf-8?q?N=00?= <a@b.c>\r\n\r\n'));
  assert.equal(encoded.subject, 'x\ufffdy');
  assert.equal(encoded.from[0]?.name, 'N\ufffd');
  assert.equal(p.text, 'bodytext\n');
});

test('a message with no header is all body; a header with no body has an empty body', () => {
  const raw = Buffer.from('Hello there\r\nno header here\r\n');
  const p = parse(raw);
  assert.equal(p.root.bodyStart, 0);
  assert.ok(p.warnings.includes('no header'));
  assert.equal(p.text, 'Hello there\nno header here\n');
  assert.equal(p.subject, '');
  assert.equal(p.envelope.from, null);
  const h = Buffer.from('Subject: only\r\nFrom: a@b.c\r\n');
  const q = parse(h);
  assert.equal(q.root.bodyStart, h.length);
  assert.equal(q.subject, 'only');
  assert.equal(q.text, '');
  for (const empty of [Buffer.alloc(0), Buffer.from('\r\n'), Buffer.from('\n\n\n')]) parse(empty);
});

test('a truncated message parses at every cut point', () => {
  const raw = crlf(
    'From: a@example.com',
    'Subject: =?utf-8?q?cut?=',
    'Content-Type: multipart/mixed; boundary=t',
    '',
    '--t',
    'Content-Type: message/rfc822',
    '',
    'Subject: inner',
    'Content-Type: multipart/alternative; boundary=u',
    '',
    '--u',
    'Content-Type: text/html; charset=utf-8',
    'Content-Transfer-Encoding: quoted-printable',
    '',
    '<p>h=C3=A9</p>',
    '--u--',
    '--t--',
    '',
  );
  for (let i = 0; i <= raw.length; i++) parse(raw.subarray(0, i));
});

test('nesting deeper than the cap becomes opaque with a warning', () => {
  const depth = MAX_DEPTH + 40;
  const head: string[] = [];
  const tail: string[] = [];
  for (let i = 0; i < depth; i++) {
    head.push(`Content-Type: multipart/mixed; boundary=b${i}`, '', `--b${i}`);
    tail.unshift(`--b${i}--`);
  }
  const raw = crlf(...head, '', 'deep', ...tail);
  const p = parseMessage(raw);
  checkStructure(p, raw);
  assert.ok(p.warnings.includes('nesting too deep'));
  let d = 0;
  for (let part = p.root; part.parts.length > 0; part = part.parts[0]!) d++;
  assert.ok(d <= MAX_DEPTH + 1);

  const msgs = crlf(...Array.from({ length: depth }, () => 'Content-Type: message/rfc822\r\n'), 'Subject: bottom', '', 'x');
  const q = parseMessage(msgs);
  checkStructure(q, msgs);
  assert.ok(q.warnings.includes('nesting too deep'));
});

test('more parts than the cap: the rest is one opaque part, nothing lost', () => {
  const lines = ['Content-Type: multipart/mixed; boundary=p', ''];
  const n = MAX_PARTS + 500;
  for (let i = 0; i < n; i++) lines.push('--p', '', `${i}`);
  lines.push('--p--');
  const raw = crlf(...lines);
  const { value: p, ms } = cpuTime(() => parseMessage(raw));
  assert.ok(ms < 3000, `took ${ms} ms`);
  const count = checkStructure(p, raw);
  assert.ok(count <= MAX_PARTS + 2, `${count} parts`);
  assert.ok(p.warnings.includes('too many parts'));
  const last = p.root.parts[p.root.parts.length - 1]!;
  assert.equal(last.bodyEnd, raw.length);
});

test('a header of 100k characters parses in linear time', () => {
  const raw = crlf(`Subject: ${'x'.repeat(100_000)}`, `To: ${Array.from({ length: 5000 }, (_, i) => `u${i}@example.com`).join(',\r\n ')}`, `Content-Type: text/plain; ${'a=b; '.repeat(20_000)}`, '', 'body');
  const { value: p, ms } = cpuTime(() => parse(raw));
  assert.ok(ms < 2000, `took ${ms} ms`);
  assert.equal(p.subject.length, 100_000);
  assert.equal(p.to.length, 5000);
});

test('text parts are decoded by transfer encoding and charset; HTML is reduced to text', () => {
  const raw = crlf(
    'Content-Type: multipart/mixed; boundary=x',
    '',
    '--x',
    'Content-Type: text/plain; charset=iso-8859-1',
    'Content-Transfer-Encoding: quoted-printable',
    '',
    'caf=E9 =',
    'au lait',
    '--x',
    'Content-Type: text/html; charset=utf-8',
    'Content-Transfer-Encoding: base64',
    '',
    Buffer.from('<html><head><style>p{}</style></head><body><p>Caf&eacute; &amp; th&#233;</p><script>x()</script><div>two&nbsp;words</div></body></html>').toString('base64'),
    '--x',
    'Content-Type: image/png; name=a.png',
    'Content-Transfer-Encoding: base64',
    '',
    'iVBORw0KGgo=',
    '--x--',
  );
  const p = parse(raw);
  assert.equal(p.text, 'café au lait\nCafé & thé\ntwo words');
  assert.equal(p.preview, 'café au lait');
  assert.equal(p.hasAttachment, true);
});

test('in multipart/alternative only the plain text is search text; an inline related image is no attachment', () => {
  const raw = crlf(
    'Content-Type: multipart/alternative; boundary=a',
    '',
    '--a',
    'Content-Type: text/plain',
    '',
    'plain version',
    '--a',
    'Content-Type: multipart/related; boundary=r',
    '',
    '--r',
    'Content-Type: text/html',
    '',
    '<b>html version</b>',
    '--r',
    'Content-Type: image/png',
    'Content-ID: <img1>',
    'Content-Disposition: inline',
    '',
    'iVBORw0KGgo=',
    '--r--',
    '--a--',
  );
  const p = parse(raw);
  assert.equal(p.text, 'plain version');
  assert.equal(p.hasAttachment, false);
  assert.equal(p.root.parts[1]!.parts[1]!.id, '<img1>');
});

test('search text is bounded to 1 MiB and the preview to 256 characters, whitespace folded', () => {
  const big = 'word  \t '.repeat(300_000);
  const raw = crlf('Content-Type: text/plain', '', big);
  const p = parse(raw);
  assert.equal(p.text.length, MAX_TEXT);
  assert.equal(Array.from(p.preview).length, 256);
  assert.ok(p.preview.startsWith('word word word'));
  const emoji = parse(crlf('Content-Type: text/plain; charset=utf-8', '', '😀'.repeat(300)));
  assert.equal(Array.from(emoji.preview).length, 256);
  assert.equal(emoji.preview, '😀'.repeat(256));
});

test('part headers give id, description, md5, language, location and encoding as received', () => {
  const raw = crlf(
    'Content-Type: text/plain; charset="UTF-8"; format=flowed',
    'Content-Transfer-Encoding: 8BIT',
    'Content-ID: <c1@example.com>',
    'Content-Description: =?utf-8?q?d=C3=A9scription?=',
    'Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==',
    'Content-Language: en, fr-CA',
    'Content-Location: http://example.com/a',
    '',
    'flowed ',
    'text',
  );
  const p = parse(raw);
  const r = p.root;
  assert.equal(r.encoding, '8BIT');
  assert.equal(r.id, '<c1@example.com>');
  assert.equal(r.description, '=?utf-8?q?d=C3=A9scription?=');
  assert.equal(r.md5, 'Q2hlY2sgSW50ZWdyaXR5IQ==');
  assert.deepEqual(r.language, ['en', 'fr-CA']);
  assert.equal(r.location, 'http://example.com/a');
  assert.deepEqual(r.params, [['charset', 'UTF-8'], ['format', 'flowed']]);
  assert.equal(r.lines, 2);
  assert.equal(p.text, 'flowed text');
});

test('an invalid Content-Type falls back to text/plain; an unknown transfer encoding is a warning', () => {
  const p = parse(crlf('Content-Type: garbage', 'Content-Transfer-Encoding: x-weird', '', 'body'));
  assert.deepEqual([p.root.type, p.root.subtype], ['text', 'plain']);
  assert.ok(p.warnings.includes('invalid content type'));
  assert.ok(p.warnings.includes('unknown transfer encoding x-weird'));
  assert.equal(p.text, 'body');
});

test('a part body sliced by its offsets decodes by its transfer encoding to the original bytes (BINARY[])', () => {
  const data = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 31 + 7) % 256));
  const raw = makeMessage({
    from: 'a@example.com',
    to: 'b@example.com',
    subject: 'binary',
    body: 'see',
    attachments: [{ filename: 'data.bin', content: data }],
  });
  const p = parse(raw);
  const part = p.root.parts[1]!;
  const r = decodeTransfer(raw.subarray(part.bodyStart, part.bodyEnd), part.encoding);
  assert.ok(r.ok);
  assert.deepEqual(r.data, data);
  const qp = crlf('Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: quoted-printable', '', 'caf=C3=A9 =', 'cr=C3=A8me');
  const q = parse(qp);
  const d = decodeTransfer(qp.subarray(q.root.bodyStart, q.root.bodyEnd), q.root.encoding);
  assert.ok(d.ok);
  assert.equal(d.data.toString('utf8'), 'café crème');
  assert.equal(q.text, 'café crème');
});

test('long runs of whitespace and parentheses in headers and HTML cost linear time', () => {
  const spaces = ' '.repeat(200_000);
  const raw = crlf(
    `Subject: a${spaces}b${spaces}`,
    `From: (${'('.repeat(100_000)} a@b.c`,
    `To: Group${'('.repeat(100_000)}: x@y.z;`,
    `Date: ${'('.repeat(100_000)}`,
    `Content-Language: ${'('.repeat(100_000)}`,
    `Content-Transfer-Encoding: ${'('.repeat(100_000)}`,
    'Content-Type: text/html',
    '',
    `<p>x${spaces}y${spaces}</p>${'<script>'.repeat(20_000)}`,
  );
  const { value: p, ms } = cpuTime(() => parse(raw));
  assert.ok(ms < 2000, `took ${ms} ms`);
  assert.equal(p.subject.length, 200_002);
});

test('a non-ASCII boundary is found in UTF-8 and in Latin-1 messages', () => {
  for (const enc of ['utf8', 'latin1'] as const) {
    const raw = Buffer.from(['Content-Type: multipart/mixed; boundary="bé"', '', '--bé', '', 'one', '--bé--', ''].join('\r\n'), enc);
    const p = parse(raw);
    assert.equal(p.root.parts.length, 1);
    assert.equal(bodyOf(raw, p.root.parts[0]!), 'one');
    assert.ok(!p.warnings.includes('missing boundary'), enc);
  }
});

test('names of Object.prototype members are not entities, zones or parameters', () => {
  const p = parse(crlf('Date: Mon, 1 Jan 2024 10:00:00 constructor', 'Content-Type: text/html; constructor=x; __proto__=y', '', '<p>&constructor; &toString; &amp;</p>'));
  assert.equal(p.date, Date.UTC(2024, 0, 1, 10, 0, 0));
  assert.equal(p.text, '&constructor; &toString; &');
  assert.deepEqual(p.root.params, [['constructor', 'x'], ['__proto__', 'y']]);
});
