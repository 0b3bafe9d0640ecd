import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import type { Envelope, MimePart } from '../../../src/mail/types.js';
import { envelopeValue } from '../../../src/imap/fetch/envelope.js';
import { bodyStructureValue } from '../../../src/imap/fetch/bodystructure.js';
import { wire } from '../wire.js';

function part(p: Partial<MimePart> & { type: string; subtype: string }): MimePart {
  return {
    headerStart: 0,
    bodyStart: 0,
    bodyEnd: 0,
    params: [],
    id: null,
    description: null,
    encoding: null,
    md5: null,
    disposition: null,
    language: null,
    location: null,
    lines: 0,
    parts: [],
    message: null,
    ...p,
  };
}

const env = (p: Partial<Envelope>): Envelope => ({
  date: null,
  subject: null,
  from: null,
  sender: null,
  replyTo: null,
  to: null,
  cc: null,
  bcc: null,
  inReplyTo: null,
  messageId: null,
  ...p,
});

test('ENVELOPE lists every field in RFC 9051 order with NIL for absent ones', async () => {
  const e = env({
    date: 'Thu, 15 Feb 2007 01:02:03 +0200',
    subject: 'subject header',
    from: [{ name: 'From Real', adl: null, mailbox: 'fromuser', host: 'fromdomain.org' }],
    sender: [{ name: 'Sender Real', adl: null, mailbox: 'senderuser', host: 'senderdomain.org' }],
    replyTo: [{ name: 'ReplyTo Real', adl: null, mailbox: 'replytouser', host: 'replytodomain.org' }],
    to: [{ name: 'To Real', adl: null, mailbox: 'touser', host: 'todomain.org' }],
    cc: [{ name: 'Cc Real', adl: null, mailbox: 'ccuser', host: 'ccdomain.org' }],
    bcc: [{ name: 'Bcc Real', adl: null, mailbox: 'bccuser', host: 'bccdomain.org' }],
    inReplyTo: '<reply@to.id>',
    messageId: '<msg@id>',
  });
  assert.equal(
    await wire(envelopeValue(e)),
    '("Thu, 15 Feb 2007 01:02:03 +0200" "subject header" (("From Real" NIL "fromuser" "fromdomain.org")) ' +
      '(("Sender Real" NIL "senderuser" "senderdomain.org")) (("ReplyTo Real" NIL "replytouser" "replytodomain.org")) ' +
      '(("To Real" NIL "touser" "todomain.org")) (("Cc Real" NIL "ccuser" "ccdomain.org")) ' +
      '(("Bcc Real" NIL "bccuser" "bccdomain.org")) "<reply@to.id>" "<msg@id>")',
  );
});

test('ENVELOPE sender and reply-to fall back to from when absent or empty', async () => {
  const from = [{ name: 'Real Name', adl: null, mailbox: 'user', host: 'domain' }];
  assert.equal(
    await wire(envelopeValue(env({ date: 'd', from, sender: [], replyTo: null }))),
    '("d" NIL (("Real Name" NIL "user" "domain")) (("Real Name" NIL "user" "domain")) (("Real Name" NIL "user" "domain")) NIL NIL NIL NIL NIL)',
  );
});

test('ENVELOPE writes groups as start and end markers and keeps source routes', async () => {
  const e = env({
    from: [{ name: null, adl: '@route', mailbox: 'user', host: 'domain' }],
    to: [
      { name: null, adl: null, mailbox: 'group', host: null },
      { name: null, adl: null, mailbox: 'g1', host: 'd1.org' },
      { name: null, adl: null, mailbox: null, host: null },
    ],
    cc: [],
  });
  assert.equal(
    await wire(envelopeValue(e)),
    '(NIL NIL ((NIL "@route" "user" "domain")) ((NIL "@route" "user" "domain")) ((NIL "@route" "user" "domain")) ' +
      '((NIL NIL "group" NIL) (NIL NIL "g1" "d1.org") (NIL NIL NIL NIL)) NIL NIL NIL NIL)',
  );
});

test('ENVELOPE sends a subject with CR LF or 8-bit text as a string the serializer can literalise', async () => {
  const v = envelopeValue(env({ subject: 'caf\u00e9' }));
  assert.ok(Array.isArray(v));
  assert.equal(v[1], 'caf\u00e9');
  assert.equal(await wire(v[1] ?? null), '{5}\r\ncaf\u00c3\u00a9');
});

const textPart = part({
  type: 'text',
  subtype: 'x-myown',
  params: [['charset', 'us-ascii']],
  headerStart: 10,
  bodyStart: 50,
  bodyEnd: 57,
  lines: 1,
});

test('BODY of a multipart puts child bodies back to back, then the subtype', async () => {
  const root = part({ type: 'multipart', subtype: 'mixed', params: [['boundary', 'foo bar']], parts: [textPart], bodyEnd: 100 });
  assert.equal(await wire(bodyStructureValue(root, false)), '(("TEXT" "X-MYOWN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 7 1) "MIXED")');
  const two = part({ type: 'multipart', subtype: 'alternative', parts: [textPart, textPart] });
  assert.equal(
    await wire(bodyStructureValue(two, false)),
    '(("TEXT" "X-MYOWN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 7 1)("TEXT" "X-MYOWN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 7 1) "ALTERNATIVE")',
  );
});

test('BODYSTRUCTURE adds md5, disposition, language and location to leaves and multiparts', async () => {
  const att = part({
    type: 'application',
    subtype: 'pdf',
    params: [['name', 'a.pdf']],
    id: '<id1@x>',
    description: 'the file',
    encoding: 'base64',
    md5: 'Q2hlY2sgSW50ZWdyaXR5IQ==',
    disposition: { type: 'attachment', params: [['filename', 'a.pdf']] },
    language: ['en', 'fr'],
    location: 'http://example.com/a.pdf',
    bodyStart: 200,
    bodyEnd: 300,
  });
  const alt = part({ type: 'text', subtype: 'plain', bodyStart: 0, bodyEnd: 12, lines: 2, language: ['de'] });
  const root = part({ type: 'multipart', subtype: 'mixed', params: [['boundary', 'b1']], parts: [alt, att], language: null });
  assert.equal(
    await wire(bodyStructureValue(root, true)),
    '(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 12 2 NIL NIL "de" NIL)' +
      '("APPLICATION" "PDF" ("NAME" "a.pdf") "<id1@x>" "the file" "BASE64" 100 "Q2hlY2sgSW50ZWdyaXR5IQ==" ' +
      '("ATTACHMENT" ("FILENAME" "a.pdf")) ("en" "fr") "http://example.com/a.pdf") "MIXED" ("BOUNDARY" "b1") NIL NIL NIL)',
  );
});

test('BODY of a non-text leaf without parameters shows NIL and no line count', async () => {
  const p = part({ type: 'image', subtype: 'png', encoding: 'base64', bodyEnd: 40 });
  assert.equal(await wire(bodyStructureValue(p, false)), '("IMAGE" "PNG" NIL NIL NIL "BASE64" 40)');
});

test('BODYSTRUCTURE of message/rfc822 carries the envelope, the inner body and the line count', async () => {
  const inner = part({ type: 'text', subtype: 'plain', bodyStart: 80, bodyEnd: 93, lines: 1 });
  const msg = part({
    type: 'message',
    subtype: 'rfc822',
    bodyStart: 30,
    bodyEnd: 93,
    lines: 5,
    message: { envelope: env({ subject: 'submsg', from: [{ name: null, adl: null, mailbox: 'sub', host: 'domain.org' }] }), root: inner },
  });
  assert.equal(
    await wire(bodyStructureValue(msg, true)),
    '("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 63 (NIL "submsg" ((NIL NIL "sub" "domain.org")) ((NIL NIL "sub" "domain.org")) ' +
      '((NIL NIL "sub" "domain.org")) NIL NIL NIL NIL NIL) ("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 13 1 NIL NIL NIL NIL) 5 NIL NIL NIL NIL)',
  );
});

test('message/global is encapsulated for IMAP4rev2 only; rev1 sees a basic part', async () => {
  const inner = part({ type: 'text', subtype: 'plain', bodyEnd: 3, lines: 1 });
  const msg = part({ type: 'message', subtype: 'global', bodyEnd: 20, lines: 3, message: { envelope: env({}), root: inner } });
  assert.equal(await wire(bodyStructureValue(msg, false)), '("MESSAGE" "GLOBAL" NIL NIL NIL "7BIT" 20)');
  assert.equal(
    await wire(bodyStructureValue(msg, false, { rev2: true })),
    '("MESSAGE" "GLOBAL" NIL NIL NIL "7BIT" 20 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) ("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 3 1) 3)',
  );
});

test('an unparsable message/rfc822 and an empty multipart still follow the grammar', async () => {
  const msg = part({ type: 'message', subtype: 'rfc822', bodyEnd: 4, lines: 1 });
  assert.equal(
    await wire(bodyStructureValue(msg, false)),
    '("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 4 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) ("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 0 0) 1)',
  );
  const empty = part({ type: 'multipart', subtype: 'mixed' });
  assert.equal(await wire(bodyStructureValue(empty, false)), '(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 0 0) "MIXED")');
});

test('non-ASCII parameter values go out in RFC 2231 form unless the client accepts UTF-8', async () => {
  const p = part({
    type: 'application',
    subtype: 'octet-stream',
    disposition: { type: 'attachment', params: [['filename', 'r\u00e9sum\u00e9 1.txt']] },
  });
  const v = await wire(bodyStructureValue(p, true));
  assert.match(v, /\("ATTACHMENT" \("FILENAME\*" "utf-8''r%C3%A9sum%C3%A9%201\.txt"\)\)/);
  const u = bodyStructureValue(p, true, { utf8: true });
  assert.ok(Array.isArray(u));
  assert.deepEqual(u[8], ['ATTACHMENT', ['FILENAME', 'r\u00e9sum\u00e9 1.txt']]);
});

test('nested multiparts inside a message/rfc822 inside a multipart are described recursively', async () => {
  const html = part({ type: 'text', subtype: 'html', bodyEnd: 20, lines: 1 });
  const plain = part({ type: 'text', subtype: 'plain', bodyEnd: 21, lines: 1 });
  const alt = part({ type: 'multipart', subtype: 'alternative', params: [['boundary', 'sub1']], parts: [html, plain] });
  const msg = part({ type: 'message', subtype: 'rfc822', bodyEnd: 298, lines: 18, message: { envelope: env({ subject: 'submsg' }), root: alt } });
  const root = part({ type: 'multipart', subtype: 'mixed', parts: [textPart, msg] });
  assert.equal(
    await wire(bodyStructureValue(root, false)),
    '(("TEXT" "X-MYOWN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 7 1)("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 298 ' +
      '(NIL "submsg" NIL NIL NIL NIL NIL NIL NIL NIL) (("TEXT" "HTML" ("CHARSET" "us-ascii") NIL NIL "7BIT" 20 1)' +
      '("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 21 1) "ALTERNATIVE") 18) "MIXED")',
  );
});
