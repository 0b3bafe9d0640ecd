import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { DovecotFormatError, formatPop3Uidl, maildirFlags, parseKeywords, parseUidlist } from '../../src/import/dovecot.js';
import { fromLineDate, MboxFormatError, splitMbox, type MboxMessage } from '../../src/import/mbox.js';
import { toCrlf } from '../../src/import/source.js';
import { facteurName, parseInternalDate, ValueReader } from '../../src/import/imap-source.js';
import { receivedDate } from '../../src/import/source.js';

test('dovecot-uidlist version 3: header fields, extension fields, file name base', () => {
  const text = [
    '3 V1700000000 N12 G0123456789abcdef0123456789abcdef',
    '1 :1700000001.M1P1.host,S=100,W=102',
    '5 W2000 S1990 P0000DEADBEEF :1700000005.M2P1.host,S=1990,W=2000:2,S',
    '7 G00ff :1700000007.M3P1.host',
    '',
  ].join('\n');
  const u = parseUidlist(text);
  assert.equal(u.version, 3);
  assert.equal(u.uidValidity, 1700000000);
  assert.equal(u.nextUid, 12);
  assert.equal(u.guid, '0123456789abcdef0123456789abcdef');
  assert.deepEqual(u.entries, [
    { uid: 1, base: '1700000001.M1P1.host,S=100,W=102' },
    { uid: 5, base: '1700000005.M2P1.host,S=1990,W=2000', pop3Uidl: '0000DEADBEEF' },
    { uid: 7, base: '1700000007.M3P1.host', guid: '00ff' },
  ]);
});

test('dovecot-uidlist version 1 and a next UID below the last UID', () => {
  const u = parseUidlist('1 42 3\n1 a.host\n9 b.host:2,RS\n');
  assert.equal(u.uidValidity, 42);
  assert.equal(u.nextUid, 10);
  assert.deepEqual(u.entries.map((e) => [e.uid, e.base]), [[1, 'a.host'], [9, 'b.host']]);
});

test('dovecot-uidlist: bad input is refused with the reason', () => {
  for (const [text, re] of [
    ['', /version/],
    ['2 V1 N1\n', /version "2"/],
    ['3 N5\n', /no UIDVALIDITY/],
    ['3 V1 N5\n3 :a\n2 :b\n', /not above the previous 3/],
    ['3 V1 N5\n0 :a\n', /UID 0/],
    ['3 V1 N5\nx :a\n', /not a number/],
    ['3 V1 N5\n4 a\n', /no ":"/],
    ['3 V99999999999 N5\n', /not a number|over 2\^32/],
    ['3 V1 N5\n4 :\n', /empty file name/],
  ] as const) {
    assert.throws(() => parseUidlist(text), (err: Error) => err instanceof DovecotFormatError && re.test(err.message), text);
  }
});

test('dovecot-keywords and maildir flag letters', () => {
  const kw = parseKeywords('0 $Forwarded\n1 Junk\nbad line\n3 $label1\n30 toolong\n');
  assert.equal(kw[0], '$Forwarded');
  assert.equal(kw[2], undefined);
  assert.equal(kw[3], '$label1');
  assert.deepEqual(maildirFlags('123.host,S=5:2,DFRSTabcd', kw), {
    flags: ['\\Draft', '\\Flagged', '\\Answered', '\\Seen', '\\Deleted', '$Forwarded', 'Junk', '$label1'],
    unknownLetters: ['c'],
  });
  assert.deepEqual(maildirFlags('123.host,S=5', kw), { flags: [], unknownLetters: [] });
  // P (passed) has no IMAP flag
  assert.deepEqual(maildirFlags('x:2,P', kw).flags, []);
});

test("POP3 UIDL from Dovecot's pop3_uidl_format", () => {
  assert.equal(formatPop3Uidl('%08Xu%08Xv', { uid: 26, uidValidity: 1700000000 }), '0000001a6553f100');
  assert.equal(formatPop3Uidl('%u.%v', { uid: 26, uidValidity: 7 }), '26.7');
  assert.equal(formatPop3Uidl('%xv%%%u', { uid: 255, uidValidity: 7 }), '7%255');
  assert.equal(formatPop3Uidl('%f', { uid: 1, uidValidity: 1, filename: 'abc.host' }), 'abc.host');
  assert.equal(formatPop3Uidl('%g', { uid: 1, uidValidity: 1, guid: 'g1' }), 'g1');
  assert.throws(() => formatPop3Uidl('%m', { uid: 1, uidValidity: 1 }), /Unsupported/);
  assert.throws(() => formatPop3Uidl('%g', { uid: 1, uidValidity: 1 }), /no GUID/);
});

async function* chunks(buf: Buffer, size: number): AsyncIterable<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

async function split(text: string, size = 1 << 20, unescape?: 'rd' | 'none'): Promise<MboxMessage[]> {
  const out: MboxMessage[] = [];
  for await (const m of splitMbox(chunks(Buffer.from(text, 'latin1'), size), unescape ? { unescape } : {})) out.push(m);
  return out;
}

const SIZED_BODY = 'From bob@example.org Tue Feb 13 08:09:10 2024\nThis From_ line above is inside the Content-Length.\n';
const TRICKY = [
  'From alice@example.org Mon Jan  1 10:00:00 2024',
  'From: alice@example.org',
  'Subject: one',
  'Status: RO',
  'X-Status: AF',
  '',
  'From here on a body line that is not a separator.',
  '>From the quoted (mboxrd) line',
  '>>From a twice-quoted line',
  '',
  'From a line after an empty line, without a date',
  '',
  'From bob@example.org Tue Feb 13 08:09:10 +0100 2024',
  'From: bob@example.org',
  'Subject: two, sized',
  `Content-Length: ${Buffer.byteLength(SIZED_BODY)}`,
  '',
  'From bob@example.org Tue Feb 13 08:09:10 2024',
  'This From_ line above is inside the Content-Length.',
  '',
  'From carol Wed Mar  6 00:00:00 2024',
  'Subject: three, wrong Content-Length',
  'Content-Length: 5',
  '',
  'body of three',
  '',
  'From dave Thu Mar  7 00:00:00 2024',
  'Subject: four, last, no final newline',
  '',
  'last',
].join('\n');

test('mbox: From_ lines in bodies, mboxrd unescaping, Content-Length right and wrong', async () => {
  const msgs = await split(TRICKY);
  assert.equal(msgs.length, 4, msgs.map((m) => m.fromLine).join('|'));
  const [a, b, c, d] = msgs as [MboxMessage, MboxMessage, MboxMessage, MboxMessage];
  assert.equal(
    a.raw.toString('latin1'),
    'From: alice@example.org\nSubject: one\nStatus: RO\nX-Status: AF\n\nFrom here on a body line that is not a separator.\nFrom the quoted (mboxrd) line\n>From a twice-quoted line\n\nFrom a line after an empty line, without a date\n',
  );
  assert.deepEqual(a.flags, ['\\Seen', '\\Answered', '\\Flagged']);
  assert.equal(a.date, Date.UTC(2024, 0, 1, 10, 0, 0));
  assert.equal(a.line, 1);
  assert.equal(a.byContentLength, false);
  assert.equal(b.byContentLength, true);
  assert.match(b.raw.toString('latin1'), /\n\nFrom bob@example.org Tue Feb 13 08:09:10 2024\nThis From_ line above is inside the Content-Length.\n$/);
  assert.ok(b.raw.toString('latin1').endsWith(`\n\n${SIZED_BODY}`));
  assert.equal(b.date, Date.UTC(2024, 1, 13, 7, 9, 10));
  assert.equal(c.byContentLength, false);
  assert.equal(c.raw.toString('latin1'), 'Subject: three, wrong Content-Length\nContent-Length: 5\n\nbody of three\n');
  assert.equal(d.raw.toString('latin1'), 'Subject: four, last, no final newline\n\nlast');
  assert.equal(d.line, 27);
});

test('mbox: the same file split into chunks at every size gives the same messages', async () => {
  const whole = await split(TRICKY);
  for (const size of [1, 2, 3, 7, 64]) {
    const parts = await split(TRICKY, size);
    assert.deepEqual(parts.map((m) => m.raw.toString('latin1')), whole.map((m) => m.raw.toString('latin1')), `chunk size ${size}`);
  }
});

test('mbox: unescape none keeps bytes; CRLF files; loose From_ lines; not an mbox', async () => {
  const kept = await split('From x Mon Jan  1 10:00:00 2024\n\n>From a\n', 1 << 20, 'none');
  assert.equal(kept[0]!.raw.toString(), '\n>From a\n');
  const crlf = await split('From x Mon Jan  1 10:00:00 2024\r\nSubject: a\r\n\r\nbody\r\n\r\nFrom y Mon Jan  1 10:00:00 2024\r\nSubject: b\r\n\r\nb\r\n');
  assert.deepEqual(crlf.map((m) => m.raw.toString()), ['Subject: a\r\n\r\nbody\r\n', 'Subject: b\r\n\r\nb\r\n']);
  // A file whose From_ lines have no date: any "From " after an empty line separates.
  const loose = await split('From a\nSubject: 1\n\nx\nFrom inside\n\nFrom b\nSubject: 2\n\ny\n');
  assert.deepEqual(loose.map((m) => m.raw.toString()), ['Subject: 1\n\nx\nFrom inside\n', 'Subject: 2\n\ny\n']);
  assert.deepEqual(await split(''), []);
  await assert.rejects(split('Subject: not an mbox\n\n'), MboxFormatError);
});

test('From_ line dates', () => {
  assert.equal(fromLineDate('From a@b Sat Nov 27 13:05:09 2026'), Date.UTC(2026, 10, 27, 13, 5, 9));
  assert.equal(fromLineDate('From MAILER-DAEMON Fri Jul  8 12:08:34 2011'), Date.UTC(2011, 6, 8, 12, 8, 34));
  assert.equal(fromLineDate('From a Sat Nov 27 13:05 2026 -0500'), Date.UTC(2026, 10, 27, 18, 5, 0));
  assert.equal(fromLineDate('From someone'), undefined);
});

test('LF to CRLF keeps existing CRLF', () => {
  assert.equal(toCrlf(Buffer.from('a\nb\r\nc\n\nd')).toString(), 'a\r\nb\r\nc\r\n\r\nd');
  const same = Buffer.from('a\r\nb');
  assert.equal(toCrlf(same), same);
  assert.equal(toCrlf(Buffer.from('\n')).toString(), '\r\n');
});

test('IMAP response values: lists, quoted strings, literals, NIL, BODY[]', () => {
  const segs = [Buffer.from('* 3 FETCH (UID 7 FLAGS (\\Seen $Fwd) INTERNALDATE "17-Jul-1996 02:44:25 -0700" X NIL Q "a \\"b\\" \\\\" BODY[] {5}'), Buffer.from('hello'), Buffer.from(')')];
  const v = new ValueReader(segs, 2);
  assert.equal(v.value(), '3');
  assert.equal(v.value(), 'FETCH');
  assert.deepEqual(v.value(), ['UID', '7', 'FLAGS', ['\\Seen', '$Fwd'], 'INTERNALDATE', '17-Jul-1996 02:44:25 -0700', 'X', null, 'Q', 'a "b" \\', 'BODY[]', Buffer.from('hello')]);
  assert.equal(parseInternalDate('17-Jul-1996 02:44:25 -0700'), Date.UTC(1996, 6, 17, 9, 44, 25));
  assert.equal(parseInternalDate(' 7-Jul-1996 02:44:25 +0000'), Date.UTC(1996, 6, 7, 2, 44, 25));
  assert.equal(parseInternalDate('yesterday'), undefined);
  assert.throws(() => new ValueReader([Buffer.from('* LIST (a')], 7).value(), /not closed/);
  assert.throws(() => new ValueReader([Buffer.from('"open')]).value(), /not closed/);
});

test('IMAP folder names: delimiter, modified UTF-7, INBOX', () => {
  assert.equal(facteurName('INBOX.Archives.2024', '.'), 'INBOX/Archives/2024');
  assert.equal(facteurName('inbox', '/'), 'INBOX');
  assert.equal(facteurName('Entw&APw-rfe', '/'), 'Entwürfe');
  assert.equal(facteurName('a/b', null), 'a/b');
});

test('POP3 messages get the date of their topmost Received header', () => {
  const raw = Buffer.from('Received: from a by b;\r\n Tue, 13 Feb 2024 08:09:10 +0100 (CET)\r\nReceived: from c; Mon, 12 Feb 2024 00:00:00 +0000\r\nDate: Sun, 11 Feb 2024 00:00:00 +0000\r\n\r\nx');
  assert.equal(receivedDate(raw), Date.UTC(2024, 1, 13, 7, 9, 10));
  assert.equal(receivedDate(Buffer.from('Date: Sun, 11 Feb 2024 00:00:00 +0000\r\n\r\n')), Date.UTC(2024, 1, 11));
  assert.equal(receivedDate(Buffer.from('Subject: x\r\n\r\n')), undefined);
  // LF line ends (mbox, Maildir files); a Date: in the body is not the message's.
  assert.equal(receivedDate(Buffer.from('Subject: x\nDate: Sun, 11 Feb 2024 00:00:00 +0000\n\nbody\n')), Date.UTC(2024, 1, 11));
  assert.equal(receivedDate(Buffer.from('Subject: x\n\nDate: Sun, 11 Feb 2024 00:00:00 +0000\n')), undefined);
});
