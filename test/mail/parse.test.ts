import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { parseMessage } from '../../src/mail/parse.js';
import type { MimePart } from '../../src/mail/types.js';
import { makeMessage } from '../helpers/messages.js';

const crlf = (lines: string[]): Buffer => Buffer.from(lines.join('\r\n'), 'utf8');
const lf = (lines: string[]): Buffer => Buffer.from(lines.join('\n'), 'utf8');
const slice = (raw: Buffer, a: number, b: number): string => raw.subarray(a, b).toString('utf8');
const body = (raw: Buffer, p: MimePart): string => slice(raw, p.bodyStart, p.bodyEnd);
const header = (raw: Buffer, p: MimePart): string => slice(raw, p.headerStart, p.bodyStart);

const MIXED = [
  'From: =?utf-8?q?J=C3=B6rg?= <jorg@example.com>',
  'To: a@example.org, Friends: x@example.net, "Y Z" <y@example.net>;',
  'Cc: c@example.org',
  'Subject: =?iso-8859-1?q?caf=E9?= time',
  'Date: Mon, 1 Jan 2024 10:00:00 +0100',
  'Message-ID: <abc@example.com>',
  'In-Reply-To: <p1@example.com>',
  'References: <p0@example.com>',
  '  <p1@example.com>',
  'Content-Type: multipart/mixed; boundary="XX"',
  '',
  'preamble',
  '--XX',
  'Content-Type: text/plain; charset=utf-8',
  '',
  'Hello wörld',
  '--XX',
  'Content-Type: application/pdf; name="a.pdf"',
  'Content-Transfer-Encoding: base64',
  'Content-Disposition: attachment; filename="a.pdf"',
  '',
  'JVBERi0=',
  '--XX--',
  'epilogue',
  '',
];

test('a multipart message gives part offsets that slice to the header and body of each part', () => {
  const raw = crlf(MIXED);
  const p = parseMessage(raw);
  assert.equal(p.size, raw.length);
  assert.equal(p.root.type, 'multipart');
  assert.equal(p.root.subtype, 'mixed');
  assert.equal(p.root.headerStart, 0);
  assert.ok(slice(raw, 0, p.root.bodyStart).endsWith('boundary="XX"\r\n\r\n'));
  assert.equal(p.root.bodyEnd, raw.length);
  assert.equal(p.root.parts.length, 2);
  const [t, a] = p.root.parts as [MimePart, MimePart];
  assert.equal(header(raw, t), 'Content-Type: text/plain; charset=utf-8\r\n\r\n');
  assert.equal(body(raw, t), 'Hello wörld');
  assert.equal(t.lines, 1);
  assert.deepEqual(t.params, [['charset', 'utf-8']]);
  assert.equal(body(raw, a), 'JVBERi0=');
  assert.equal(a.encoding, 'base64');
  assert.deepEqual(a.disposition, { type: 'attachment', params: [['filename', 'a.pdf']] });
  assert.equal(p.hasAttachment, true);
  assert.deepEqual(p.warnings, []);
});

test('the envelope holds raw unfolded values and groups; decoded fields are decoded', () => {
  const p = parseMessage(crlf(MIXED));
  assert.equal(p.envelope.subject, '=?iso-8859-1?q?caf=E9?= time');
  assert.equal(p.envelope.date, 'Mon, 1 Jan 2024 10:00:00 +0100');
  assert.equal(p.envelope.messageId, '<abc@example.com>');
  assert.equal(p.envelope.inReplyTo, '<p1@example.com>');
  assert.deepEqual(p.envelope.from, [{ name: '=?utf-8?q?J=C3=B6rg?=', adl: null, mailbox: 'jorg', host: 'example.com' }]);
  assert.deepEqual(p.envelope.sender, p.envelope.from);
  assert.deepEqual(p.envelope.replyTo, p.envelope.from);
  assert.deepEqual(p.envelope.to, [
    { name: null, adl: null, mailbox: 'a', host: 'example.org' },
    { name: null, adl: null, mailbox: 'Friends', host: null },
    { name: null, adl: null, mailbox: 'x', host: 'example.net' },
    { name: 'Y Z', adl: null, mailbox: 'y', host: 'example.net' },
    { name: null, adl: null, mailbox: null, host: null },
  ]);
  assert.equal(p.envelope.bcc, null);
  assert.equal(p.subject, 'café time');
  assert.deepEqual(p.from, [{ name: 'Jörg', address: 'jorg@example.com' }]);
  assert.deepEqual(
    p.to.map((a) => a.address),
    ['a@example.org', 'x@example.net', 'y@example.net'],
  );
  assert.deepEqual(p.cc, [{ name: '', address: 'c@example.org' }]);
  assert.equal(p.messageId, 'abc@example.com');
  assert.deepEqual(p.inReplyTo, ['p1@example.com']);
  assert.deepEqual(p.references, ['p0@example.com', 'p1@example.com']);
  assert.equal(p.date, Date.UTC(2024, 0, 1, 9, 0, 0));
  assert.equal(p.text, 'Hello wörld');
  assert.equal(p.preview, 'Hello wörld');
});

test('the same message with LF line ends parses to the same structure at LF offsets', () => {
  const a = crlf(MIXED);
  const b = lf(MIXED);
  const pa = parseMessage(a);
  const pb = parseMessage(b);
  assert.equal(pb.root.parts.length, 2);
  for (let i = 0; i < 2; i++) {
    const x = pa.root.parts[i]!;
    const y = pb.root.parts[i]!;
    assert.equal(body(a, x), body(b, y));
    assert.equal(header(a, x).replace(/\r\n/g, '\n'), header(b, y));
    assert.equal(x.type, y.type);
    assert.equal(x.lines, y.lines);
  }
  assert.equal(pb.subject, pa.subject);
  assert.equal(pb.text, pa.text);
  assert.deepEqual(pb.warnings, []);
});

test('makeMessage builds a message that parses back with its attachment', () => {
  const raw = makeMessage({
    from: 'Ann <ann@example.com>',
    to: ['bob@example.org'],
    subject: 'Grüße',
    body: 'Bonjour\nà tous',
    attachments: [{ filename: 'résumé.pdf', content: Buffer.from('%PDF-1.4'), contentType: 'application/pdf' }],
    messageId: 'm1@example.com',
  });
  assert.ok(!/[^\r]\n/.test(raw.toString('latin1')), 'CRLF only');
  const p = parseMessage(raw);
  assert.equal(p.subject, 'Grüße');
  assert.equal(p.messageId, 'm1@example.com');
  assert.equal(p.text, 'Bonjour\nà tous');
  assert.equal(p.root.parts.length, 2);
  const att = p.root.parts[1]!;
  assert.equal(att.disposition?.type, 'attachment');
  assert.deepEqual(att.disposition?.params, [['filename', 'résumé.pdf']]);
  assert.equal(Buffer.from(body(raw, att), 'latin1').toString(), 'JVBERi0xLjQ=');
  assert.equal(p.hasAttachment, true);
  assert.deepEqual(p.warnings, []);
});

test('makeMessage quotes plain filenames, encodes non-ASCII names, and writes HTML bodies and Cc', () => {
  const raw = makeMessage({
    from: '"Doe, Jane" <jane@example.com>',
    to: 'Zoë <zoe@example.org>',
    cc: ['c@example.org'],
    subject: 'html',
    body: '<p>Hi &amp; bye</p>',
    html: true,
    attachments: [{ filename: 'my "file".txt', content: 'x', contentType: 'text/plain', disposition: 'inline', contentId: 'cid1' }],
    headers: [['In-Reply-To', '<p@example.com>']],
    date: new Date(Date.UTC(2024, 4, 6, 7, 8, 9)),
  });
  const p = parseMessage(raw);
  assert.deepEqual(p.from, [{ name: 'Doe, Jane', address: 'jane@example.com' }]);
  assert.deepEqual(p.to, [{ name: 'Zoë', address: 'zoe@example.org' }]);
  assert.deepEqual(p.cc, [{ name: '', address: 'c@example.org' }]);
  assert.deepEqual(p.inReplyTo, ['p@example.com']);
  assert.equal(p.date, Date.UTC(2024, 4, 6, 7, 8, 9));
  assert.equal(p.root.parts[0]!.subtype, 'html');
  const att = p.root.parts[1]!;
  assert.deepEqual(att.disposition, { type: 'inline', params: [['filename', 'my "file".txt']] });
  assert.equal(att.id, '<cid1>');
  assert.equal(p.text.split('\n')[0], 'Hi & bye');
  assert.deepEqual(p.warnings, []);
});
