import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import type { FetchAtt, SectionSpec } from '../../../src/imap/protocol/ast.js';
import { fetchValues, needsSeenFlag, formatDateTime, type FetchSource } from '../../../src/imap/fetch/fetch.js';
import { UnknownCteError } from '../../../src/imap/fetch/binary.js';
import type { ParsedMessage } from '../../../src/mail/types.js';
import type { MessageEntry } from '../../../src/store/types.js';
import { asMailboxId, asModSeq, asUid } from '../../../src/lib/brand.js';
import { buildMessage, type Spec } from '../mime-builder.js';
import { wireItems } from '../wire.js';

/** Reads from the bytes of one message; counts parse-record loads. */
function memoryStore(raw: Buffer, parsed: ParsedMessage): FetchSource['store'] & { parsedLoads: number } {
  const s = {
    parsedLoads: 0,
    async getParsed(): Promise<ParsedMessage> {
      s.parsedLoads++;
      return parsed;
    },
    async readBlob(_h: string, start = 0, end = raw.length): Promise<Buffer> {
      return Buffer.from(raw.subarray(start, end));
    },
    async *streamBlob(_h: string, start = 0, end = raw.length): AsyncIterable<Buffer> {
      for (let i = start; i < end; i += 1000) yield Buffer.from(raw.subarray(i, Math.min(end, i + 1000)));
    },
  };
  return s;
}

function entry(size: number, p: Partial<MessageEntry> = {}): MessageEntry {
  return {
    mailboxId: asMailboxId(1),
    uid: asUid(7),
    modseq: asModSeq(42),
    flags: ['\\Seen', '$Forwarded'],
    internalDate: Date.UTC(1996, 6, 17, 9, 44, 25),
    saveDate: Date.UTC(2024, 0, 2, 3, 4, 5),
    size,
    blobHash: 'h',
    emailId: 'M6d3c1f',
    threadId: 'T9a',
    pid: 'M6d3c1f',
    pop3Hidden: false,
    ...p,
  };
}

async function fetchOne(spec: Spec | { raw: Buffer; parsed: ParsedMessage }, atts: FetchAtt[], opts: Partial<Parameters<typeof fetchValues>[2]> = {}): Promise<string> {
  const { raw, parsed } = 'raw' in spec ? spec : buildMessage(spec);
  const store = memoryStore(raw, parsed);
  const values = await fetchValues(atts, { entry: entry(raw.length), store }, { rev2: false, utf8Accept: false, timezoneOffset: () => 0, ...opts });
  return wireItems(values);
}

const sec = (part: number[], text: SectionSpec['text'] = null, fields?: string[]): SectionSpec =>
  fields === undefined ? { part, text } : { part, text, fields };
const body = (section: SectionSpec, partial: { offset: number; length: number } | null = null): FetchAtt => ({
  kind: 'BODY[]',
  section,
  partial,
  peek: true,
});
const lit = (s: string): string => `{${Buffer.byteLength(s)}}\r\n${Buffer.from(s, 'utf8').toString('latin1')}`;

// The message of Dovecot's imaptest fetch-body-mime test.
const mixed: Spec = {
  header: [
    'From: user@domain.org',
    'Date: Sat, 24 Mar 2007 23:00:00 +0200',
    'Mime-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="foo',
    ' bar"',
  ],
  multipart: {
    boundary: 'foo bar',
    preamble: 'Root MIME prologue\r\n',
    epilogue: 'Root MIME epilogue\r\n',
    parts: [
      { header: ['Content-Type: text/x-myown; charset=us-ascii'], subtype: 'x-myown', body: 'hello\r\n' },
      {
        header: ['Content-Type: message/rfc822'],
        message: {
          header: [
            'From: sub@domain.org',
            'Date: Sun, 12 Aug 2012 12:34:56 +0300',
            'Subject: submsg',
            'Content-Type: multipart/alternative; boundary="sub1"',
          ],
          subtype: 'alternative',
          multipart: {
            boundary: 'sub1',
            preamble: 'Sub MIME prologue',
            epilogue: 'Sub MIME epilogue\r\n',
            parts: [
              { header: ['Content-Type: text/html'], subtype: 'html', body: '<p>Hello world</p>\r\n' },
              { header: ['Content-Type: text/plain'], body: 'Hello another world\r\n' },
            ],
          },
        },
      },
    ],
  },
};

const SUB_MSG =
  'From: sub@domain.org\r\nDate: Sun, 12 Aug 2012 12:34:56 +0300\r\nSubject: submsg\r\n' +
  'Content-Type: multipart/alternative; boundary="sub1"\r\n\r\nSub MIME prologue\r\n--sub1\r\n' +
  'Content-Type: text/html\r\n\r\n<p>Hello world</p>\r\n\r\n--sub1\r\nContent-Type: text/plain\r\n\r\n' +
  'Hello another world\r\n\r\n--sub1--\r\nSub MIME epilogue\r\n';

test('BODY[] sections of a multipart with an encapsulated message match Dovecot byte for byte', async () => {
  const { raw } = buildMessage(mixed);
  const text = raw.toString('utf8').slice(raw.indexOf('\r\n\r\n') + 4);
  assert.equal(await fetchOne(mixed, [body(sec([]))]), `BODY[] ${lit(raw.toString('utf8'))}`);
  assert.equal(await fetchOne(mixed, [body(sec([], 'TEXT'))]), `BODY[TEXT] ${lit(text)}`);
  assert.equal(await fetchOne(mixed, [body(sec([1]))]), `BODY[1] ${lit('hello\r\n')}`);
  assert.equal(await fetchOne(mixed, [body(sec([1], 'MIME'))]), `BODY[1.MIME] ${lit('Content-Type: text/x-myown; charset=us-ascii\r\n\r\n')}`);
  assert.equal(await fetchOne(mixed, [body(sec([2]))]), `BODY[2] ${lit(SUB_MSG)}`);
  assert.equal(await fetchOne(mixed, [body(sec([2], 'MIME'))]), `BODY[2.MIME] ${lit('Content-Type: message/rfc822\r\n\r\n')}`);
  assert.equal(await fetchOne(mixed, [body(sec([2], 'HEADER'))]), `BODY[2.HEADER] ${lit(SUB_MSG.slice(0, SUB_MSG.indexOf('\r\n\r\n') + 4))}`);
  assert.equal(await fetchOne(mixed, [body(sec([2], 'TEXT'))]), `BODY[2.TEXT] ${lit(SUB_MSG.slice(SUB_MSG.indexOf('\r\n\r\n') + 4))}`);
  assert.equal(await fetchOne(mixed, [body(sec([2, 1], 'MIME'))]), `BODY[2.1.MIME] ${lit('Content-Type: text/html\r\n\r\n')}`);
  assert.equal(await fetchOne(mixed, [body(sec([2, 1]))]), `BODY[2.1] ${lit('<p>Hello world</p>\r\n')}`);
  assert.equal(await fetchOne(mixed, [body(sec([2, 2], 'MIME'))]), `BODY[2.2.MIME] ${lit('Content-Type: text/plain\r\n\r\n')}`);
  assert.equal(await fetchOne(mixed, [body(sec([2, 2]))]), `BODY[2.2] ${lit('Hello another world\r\n')}`);
});

test('HEADER.FIELDS and HEADER.FIELDS.NOT of an encapsulated message echo the names asked', async () => {
  assert.equal(
    await fetchOne(mixed, [body(sec([2], 'HEADER.FIELDS', ['from', 'subject', 'X-foo']))]),
    `BODY[2.HEADER.FIELDS (from subject X-foo)] ${lit('From: sub@domain.org\r\nSubject: submsg\r\n\r\n')}`,
  );
  assert.equal(
    await fetchOne(mixed, [body(sec([2], 'HEADER.FIELDS.NOT', ['from', 'subject', 'X-foo']))]),
    `BODY[2.HEADER.FIELDS.NOT (from subject X-foo)] ${lit('Date: Sun, 12 Aug 2012 12:34:56 +0300\r\nContent-Type: multipart/alternative; boundary="sub1"\r\n\r\n')}`,
  );
  // Folded fields come whole; a name that is not an atom is echoed quoted.
  assert.equal(
    await fetchOne(mixed, [body(sec([], 'HEADER.FIELDS', ['Content-Type', 'X(y)']))]),
    `BODY[HEADER.FIELDS (Content-Type "X(y)")] ${lit('Content-Type: multipart/mixed; boundary="foo\r\n bar"\r\n\r\n')}`,
  );
  // No field matches: only the blank line.
  assert.equal(await fetchOne(mixed, [body(sec([], 'HEADER.FIELDS', ['X-None']))]), `BODY[HEADER.FIELDS (X-None)] ${lit('\r\n')}`);
});

test('BODY[1.2.HEADER] reaches a message/rfc822 nested in a multipart inside a multipart', async () => {
  const spec: Spec = {
    header: ['Content-Type: multipart/mixed; boundary=a'],
    multipart: {
      boundary: 'a',
      parts: [
        {
          header: ['Content-Type: multipart/related; boundary=b'],
          subtype: 'related',
          multipart: {
            boundary: 'b',
            parts: [
              { header: [], body: 'first' },
              { header: ['Content-Type: message/rfc822'], message: { header: ['Subject: deep', 'X-A: 1'], body: 'inner body\r\n' } },
            ],
          },
        },
      ],
    },
  };
  assert.equal(await fetchOne(spec, [body(sec([1, 2], 'HEADER'))]), `BODY[1.2.HEADER] ${lit('Subject: deep\r\nX-A: 1\r\n\r\n')}`);
  assert.equal(await fetchOne(spec, [body(sec([1, 2], 'TEXT'))]), `BODY[1.2.TEXT] ${lit('inner body\r\n')}`);
  // A non-multipart encapsulated message has a part 1: its body.
  assert.equal(await fetchOne(spec, [body(sec([1, 2, 1]))]), `BODY[1.2.1] ${lit('inner body\r\n')}`);
  assert.equal(await fetchOne(spec, [body(sec([1, 1]))]), `BODY[1.1] ${lit('first')}`);
  // An empty MIME header still ends with its blank line.
  assert.equal(await fetchOne(spec, [body(sec([1, 1], 'MIME'))]), `BODY[1.1.MIME] ${lit('\r\n')}`);
  // HEADER of a part that is not a message, and parts that do not exist, are empty.
  assert.equal(await fetchOne(spec, [body(sec([1, 1], 'HEADER'))]), `BODY[1.1.HEADER] {0}\r\n`);
  assert.equal(await fetchOne(spec, [body(sec([3]))]), `BODY[3] {0}\r\n`);
  assert.equal(await fetchOne(spec, [body(sec([1, 1, 1]))]), `BODY[1.1.1] {0}\r\n`);
  assert.equal(await fetchOne(spec, [body(sec([1, 3, 1], 'MIME'))]), `BODY[1.3.1.MIME] {0}\r\n`);
});

test('a non-multipart message has a part 1 that is its body, and 1.MIME is its header', async () => {
  const spec: Spec = { header: ['Subject: one', 'From: a@b.c'], body: 'only text\r\n' };
  assert.equal(await fetchOne(spec, [body(sec([1]))]), `BODY[1] ${lit('only text\r\n')}`);
  assert.equal(await fetchOne(spec, [body(sec([1], 'MIME'))]), `BODY[1.MIME] ${lit('Subject: one\r\nFrom: a@b.c\r\n\r\n')}`);
  assert.equal(await fetchOne(spec, [body(sec([2]))]), `BODY[2] {0}\r\n`);
  assert.equal(await fetchOne(spec, [body(sec([1], 'TEXT'))]), `BODY[1.TEXT] {0}\r\n`);
});

test('a top-level message/rfc822 answers 1, 1.1 and 1.HEADER from the encapsulated message', async () => {
  const spec: Spec = {
    header: ['From: user@domain.org', 'Content-Type: message/rfc822'],
    message: { header: ['From: sub@domain.org', 'Subject: submsg'], body: 'Hello world\r\n' },
  };
  const inner = 'From: sub@domain.org\r\nSubject: submsg\r\n\r\nHello world\r\n';
  assert.equal(await fetchOne(spec, [body(sec([1]))]), `BODY[1] ${lit(inner)}`);
  assert.equal(await fetchOne(spec, [body(sec([1, 1]))]), `BODY[1.1] ${lit('Hello world\r\n')}`);
  assert.equal(await fetchOne(spec, [body(sec([1], 'HEADER'))]), `BODY[1.HEADER] ${lit('From: sub@domain.org\r\nSubject: submsg\r\n\r\n')}`);
  assert.equal(await fetchOne(spec, [body(sec([1], 'HEADER.FIELDS.NOT', ['FROM']))]), `BODY[1.HEADER.FIELDS.NOT (FROM)] ${lit('Subject: submsg\r\n\r\n')}`);
  assert.equal(await fetchOne(spec, [body(sec([], 'TEXT'))]), `BODY[TEXT] ${lit(inner)}`);
});

test('a partial shows its origin, is clipped at the end, and is empty past the end', async () => {
  const spec: Spec = { header: ['Subject: p'], body: '0123456789' };
  const size = buildMessage(spec).raw.length; // "Subject: p\r\n\r\n" + 10
  assert.equal(await fetchOne(spec, [body(sec([1]), { offset: 2, length: 3 })]), `BODY[1]<2> ${lit('234')}`);
  assert.equal(await fetchOne(spec, [body(sec([1]), { offset: 8, length: 100 })]), `BODY[1]<8> ${lit('89')}`);
  assert.equal(await fetchOne(spec, [body(sec([]), { offset: size, length: 5 })]), `BODY[]<${size}> {0}\r\n`);
  assert.equal(await fetchOne(spec, [body(sec([]), { offset: 4000000000, length: 5 })]), `BODY[]<4000000000> {0}\r\n`);
  assert.equal(await fetchOne(spec, [body(sec([], 'HEADER.FIELDS', ['subject']), { offset: 3, length: 4 })]), `BODY[HEADER.FIELDS (subject)]<3> ${lit('ject')}`);
  assert.equal(await fetchOne(spec, [body(sec([], 'HEADER'), { offset: 0, length: 0 })]), `BODY[HEADER]<0> {0}\r\n`);
});

test('RFC822, RFC822.HEADER and RFC822.TEXT answer under their own names', async () => {
  const spec: Spec = { header: ['Subject: legacy'], body: 'text' };
  const atts: FetchAtt[] = [
    { kind: 'BODY[]', section: sec([]), partial: null, peek: false, legacy: 'RFC822' },
    { kind: 'BODY[]', section: sec([], 'HEADER'), partial: null, peek: true, legacy: 'RFC822.HEADER' },
    { kind: 'BODY[]', section: sec([], 'TEXT'), partial: null, peek: false, legacy: 'RFC822.TEXT' },
  ];
  assert.equal(
    await fetchOne(spec, atts),
    `RFC822 ${lit('Subject: legacy\r\n\r\ntext')} RFC822.HEADER ${lit('Subject: legacy\r\n\r\n')} RFC822.TEXT ${lit('text')}`,
  );
});

// The base64 parts of imaptest's fetch-binary-mime-base64 test.
const b64: Spec = {
  header: ['Content-Type: multipart/mixed; boundary="foo bar"'],
  multipart: {
    boundary: 'foo bar',
    parts: [
      { header: ['Content-Transfer-Encoding: base64'], encoding: 'base64', body: '\r\naGVs\r\nbG8gd29y\r\nbGQ=\r\n' },
      { header: ['Content-Transfer-Encoding: base64'], encoding: 'base64', body: '  aGVs    \r\n bG8g  \r\n   d29y  \t \r\n    bGQ= \r\n\r\n' },
      { header: ['Content-Transfer-Encoding: BASE64'], encoding: 'BASE64', body: 'YWJjZGVmZw1oaWprbA0KbW5vCnBxcnN0dXZxeHl6\r\n' },
      { header: ['Content-Transfer-Encoding: base64'], encoding: 'base64', body: Buffer.from('a\0b').toString('base64') },
      { header: ['Content-Transfer-Encoding: x-uuencode'], encoding: 'x-uuencode', body: 'begin 644 x\r\nend\r\n' },
      { header: [], body: '' },
    ],
  },
};

const binary = (part: number[], partial: { offset: number; length: number } | null = null): FetchAtt => ({
  kind: 'BINARY[]',
  section: sec(part),
  partial,
  peek: true,
});
const binSize = (part: number[]): FetchAtt => ({ kind: 'BINARY.SIZE', section: sec(part) });

test('BINARY decodes base64 leaves, whitespace and line breaks ignored, and BINARY.SIZE counts decoded bytes', async () => {
  assert.equal(await fetchOne(b64, [binSize([1]), binary([1])]), `BINARY.SIZE[1] 11 BINARY[1] ${lit('hello world')}`);
  assert.equal(await fetchOne(b64, [binary([2])]), `BINARY[2] ${lit('hello world')}`);
  assert.equal(await fetchOne(b64, [binary([3])]), `BINARY[3] ${lit('abcdefg\rhijkl\r\nmno\npqrstuvqxyz')}`);
  assert.equal(await fetchOne(b64, [binary([3], { offset: 10, length: 10 })]), `BINARY[3]<10> ${lit('jkl\r\nmno\np')}`);
  assert.equal(await fetchOne(b64, [binary([3], { offset: 15, length: 100 })]), `BINARY[3]<15> ${lit('mno\npqrstuvqxyz')}`);
  assert.equal(await fetchOne(b64, [binary([3], { offset: 99, length: 1 })]), `BINARY[3]<99> {0}\r\n`);
});

test('BINARY with a NUL in the decoded content is a literal8', async () => {
  assert.equal(await fetchOne(b64, [binary([4]), binSize([4])]), 'BINARY[4] ~{3}\r\na\0b BINARY.SIZE[4] 3');
});

test('BINARY of an unknown transfer encoding throws UnknownCteError for NO [UNKNOWN-CTE]', async () => {
  await assert.rejects(fetchOne(b64, [binary([5])]), (e: unknown) => e instanceof UnknownCteError && e.code === 'UNKNOWN-CTE' && e.encoding === 'x-uuencode');
  await assert.rejects(fetchOne(b64, [binSize([5])]), UnknownCteError);
  // BODY[] of the same part is fine: it is not decoded.
  assert.equal(await fetchOne(b64, [body(sec([5]))]), `BODY[5] ${lit('begin 644 x\r\nend\r\n')}`);
});

test('BINARY of an empty part, a missing part, a multipart and the whole message', async () => {
  const { raw } = buildMessage(b64);
  assert.equal(await fetchOne(b64, [binary([6]), binSize([6])]), 'BINARY[6] {0}\r\n BINARY.SIZE[6] 0');
  assert.equal(await fetchOne(b64, [binary([9]), binSize([9])]), 'BINARY[9] {0}\r\n BINARY.SIZE[9] 0');
  assert.equal(await fetchOne(b64, [binSize([])]), `BINARY.SIZE[] ${raw.length}`);
  assert.equal(await fetchOne(b64, [binary([])]), `BINARY[] ${lit(raw.toString('latin1'))}`);
  const { raw: mraw } = buildMessage(mixed);
  assert.equal(await fetchOne(mixed, [binary([2]), binSize([2]), binSize([2, 1])]), `BINARY[2] ${lit(SUB_MSG)} BINARY.SIZE[2] ${SUB_MSG.length} BINARY.SIZE[2.1] 20`);
  assert.equal(await fetchOne(mixed, [binSize([])]), `BINARY.SIZE[] ${mraw.length}`);
});

test('BINARY decodes quoted-printable as Dovecot does (soft breaks, transport padding)', async () => {
  const qp: Spec = {
    header: ['Content-Type: multipart/mixed; boundary=b'],
    multipart: {
      boundary: 'b',
      parts: [
        {
          header: ['Content-Transfer-Encoding: quoted-printable'],
          encoding: 'quoted-printable',
          body: 'hello  \r\nbar=\r\n\r\nfoo\t=\r\nbar\r\nfoo\t \t= \r\n=62\r\nfoo = \t\r\nbar\r\nfoo =\r\n=62\r\nfoo  \r\nbar=\r\n\r\nfoo_bar\r\n',
        },
      ],
    },
  };
  const decoded = 'hello\r\nbar\r\nfoo\tbar\r\nfoo\t \tb\r\nfoo bar\r\nfoo b\r\nfoo\r\nbar\r\nfoo_bar\r\n';
  assert.equal(await fetchOne(qp, [binSize([1]), binary([1])]), `BINARY.SIZE[1] 65 BINARY[1] ${lit(decoded)}`);
  assert.equal(await fetchOne(qp, [binary([1], { offset: 40, length: 100 })]), `BINARY[1]<40> ${lit(decoded.slice(40))}`);
});

test('simple items: FLAGS, UID, INTERNALDATE, RFC822.SIZE, MODSEQ, EMAILID, THREADID, SAVEDATE, PREVIEW', async () => {
  const m = buildMessage({ header: ['Subject: s'], body: 'x' }, { preview: 'the preview' });
  const atts: FetchAtt[] = [
    { kind: 'FLAGS' },
    { kind: 'UID' },
    { kind: 'INTERNALDATE' },
    { kind: 'RFC822.SIZE' },
    { kind: 'MODSEQ' },
    { kind: 'EMAILID' },
    { kind: 'THREADID' },
    { kind: 'SAVEDATE' },
    { kind: 'PREVIEW', lazy: false },
  ];
  assert.equal(
    await fetchOne(m, atts, { timezoneOffset: () => -7 * 60 }),
    `FLAGS (\\Seen $Forwarded) UID 7 INTERNALDATE "17-Jul-1996 02:44:25 -0700" RFC822.SIZE ${m.raw.length} MODSEQ (42) ` +
      'EMAILID (M6d3c1f) THREADID (T9a) SAVEDATE " 1-Jan-2024 20:04:05 -0700" PREVIEW "the preview"',
  );
});

test('INTERNALDATE pads the day with a space and writes the zone of the configured offset', () => {
  assert.equal(formatDateTime(Date.UTC(2020, 1, 3, 23, 30, 0), 0), ' 3-Feb-2020 23:30:00 +0000');
  assert.equal(formatDateTime(Date.UTC(2020, 1, 3, 23, 30, 0), 330), ' 4-Feb-2020 05:00:00 +0530');
  assert.equal(formatDateTime(Date.UTC(2020, 0, 1, 0, 0, 0), -150), '31-Dec-2019 21:30:00 -0230');
});

test('the parse record is loaded only for items that need it, once per message', async () => {
  const { raw, parsed } = buildMessage({ header: ['Subject: s'], body: 'x' });
  const store = memoryStore(raw, parsed);
  const opts = { rev2: false, utf8Accept: false };
  await fetchValues([{ kind: 'FLAGS' }, { kind: 'UID' }, { kind: 'RFC822.SIZE' }, { kind: 'INTERNALDATE' }], { entry: entry(raw.length), store }, opts);
  assert.equal(store.parsedLoads, 0);
  await fetchValues([{ kind: 'ENVELOPE' }, { kind: 'BODYSTRUCTURE' }, body(sec([]))], { entry: entry(raw.length), store }, opts);
  assert.equal(store.parsedLoads, 1);
  await fetchValues([{ kind: 'ENVELOPE' }], { entry: entry(raw.length), store, parsed }, opts);
  assert.equal(store.parsedLoads, 1);
});

test('a literal above the threshold is handed over as a stream of the announced size', async () => {
  const big = 'y'.repeat(5000);
  const { raw, parsed } = buildMessage({ header: ['Subject: big'], body: big });
  const store = memoryStore(raw, parsed);
  const values = await fetchValues([body(sec([1])), binary([1])], { entry: entry(raw.length), store }, { rev2: false, utf8Accept: false, largeLiteral: 4096 });
  const v = values[1];
  assert.ok(v !== null && typeof v === 'object' && 'stream' in v);
  assert.equal(v.size, 5000);
  assert.equal(await wireItems(values), `BODY[1] ${lit(big)} BINARY[1] ~${lit(big)}`);
});

test('needsSeenFlag is true only for non-PEEK BODY[], BINARY[], RFC822 and RFC822.TEXT', () => {
  const b = (peek: boolean, legacy?: 'RFC822' | 'RFC822.HEADER' | 'RFC822.TEXT'): FetchAtt =>
    legacy === undefined ? { kind: 'BODY[]', section: sec([]), partial: null, peek } : { kind: 'BODY[]', section: sec([]), partial: null, peek, legacy };
  assert.equal(needsSeenFlag([{ kind: 'FLAGS' }, { kind: 'BODYSTRUCTURE' }, { kind: 'ENVELOPE' }]), false);
  assert.equal(needsSeenFlag([b(true)]), false);
  assert.equal(needsSeenFlag([b(false)]), true);
  assert.equal(needsSeenFlag([b(false, 'RFC822')]), true);
  assert.equal(needsSeenFlag([b(false, 'RFC822.TEXT')]), true);
  assert.equal(needsSeenFlag([b(true, 'RFC822.HEADER')]), false);
  assert.equal(needsSeenFlag([b(false, 'RFC822.HEADER')]), false);
  assert.equal(needsSeenFlag([{ kind: 'BINARY[]', section: sec([1]), partial: null, peek: false }]), true);
  assert.equal(needsSeenFlag([{ kind: 'BINARY[]', section: sec([1]), partial: null, peek: true }, { kind: 'BINARY.SIZE', section: sec([1]) }]), false);
});

test('BODY and BODYSTRUCTURE items follow the session options', async () => {
  const spec: Spec = { header: ['Subject: s'], body: 'line1\r\nline2\r\n' };
  assert.equal(
    await fetchOne(spec, [{ kind: 'BODY' }, { kind: 'BODYSTRUCTURE' }]),
    'BODY ("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 14 2) BODYSTRUCTURE ("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 14 2 NIL NIL NIL NIL)',
  );
});
