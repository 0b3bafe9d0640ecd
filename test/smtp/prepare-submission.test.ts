import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { headerAuthors, prepareSubmission, rfc5322DateTime } from '../../src/mail/submission.js';
import { parseDate } from '../../src/mail/date.js';

const NOW = new Date(Date.UTC(2026, 10, 27, 9, 5, 7));
const DATE = 'Date: Fri, 27 Nov 2026 09:05:07 +0000\r\n';
const MID = 'Message-ID: <fixed@mail.example.test>\r\n';
const opts = { hostname: 'mail.example.test', now: NOW, idLeft: () => 'fixed' };

const cases: Array<{ name: string; input: string; output: string }> = [
  {
    name: 'a complete header is left byte for byte',
    input: `From: a@example.com\r\nDate: Thu, 1 Jan 2026 00:00:00 +0100\r\nMessage-ID: <x@y>\r\n\r\nbody\r\n`,
    output: `From: a@example.com\r\nDate: Thu, 1 Jan 2026 00:00:00 +0100\r\nMessage-ID: <x@y>\r\n\r\nbody\r\n`,
  },
  {
    name: 'Date and Message-ID are added at the end of the header when missing',
    input: `From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n`,
    output: `From: a@example.com\r\nSubject: hi\r\n${DATE}${MID}\r\nbody\r\n`,
  },
  {
    name: 'only the missing one is added',
    input: `From: a@example.com\r\nmessage-id: <x@y>\r\n\r\nbody\r\n`,
    output: `From: a@example.com\r\nmessage-id: <x@y>\r\n${DATE}\r\nbody\r\n`,
  },
  {
    name: 'Bcc is removed with its continuation lines, wherever it is',
    input: `Bcc: hidden@example.net,\r\n\tother@example.net\r\nFrom: a@example.com\r\nBCC: x@example.net\r\nDate: d\r\nMessage-ID: <x@y>\r\nbcc:\r\n\r\nbody\r\nBcc: stays in the body\r\n`,
    output: `From: a@example.com\r\nDate: d\r\nMessage-ID: <x@y>\r\n\r\nbody\r\nBcc: stays in the body\r\n`,
  },
  {
    name: 'Resent-Bcc is removed too',
    input: `From: a@example.com\r\nResent-Bcc: hidden@example.net\r\nDate: d\r\nMessage-ID: <x@y>\r\n\r\nb\r\n`,
    output: `From: a@example.com\r\nDate: d\r\nMessage-ID: <x@y>\r\n\r\nb\r\n`,
  },
  {
    name: 'removal and addition together',
    input: `From: a@example.com\r\nBcc: hidden@example.net\r\n\r\nb\r\n`,
    output: `From: a@example.com\r\n${DATE}${MID}\r\nb\r\n`,
  },
  {
    name: 'a header without a body gets its fields at the end',
    input: `From: a@example.com\r\n`,
    output: `From: a@example.com\r\n${DATE}${MID}`,
  },
  {
    name: 'a header whose last line has no line end gets one before the added fields',
    input: `From: a@example.com`,
    output: `From: a@example.com\r\n${DATE}${MID}`,
  },
  {
    name: 'a removed last field without a line end adds no blank line',
    input: `From: a@example.com\r\nBcc: x@example.net`,
    output: `From: a@example.com\r\n${DATE}${MID}`,
  },
  {
    name: 'a message with no header gets the fields and a blank line before it',
    input: `just text\r\n`,
    output: `${DATE}${MID}\r\njust text\r\n`,
  },
  {
    name: 'a field named like Bcc but longer is kept',
    input: `From: a@example.com\r\nBcc-Note: keep\r\nDate: d\r\nMessage-ID: <x@y>\r\n\r\nb\r\n`,
    output: `From: a@example.com\r\nBcc-Note: keep\r\nDate: d\r\nMessage-ID: <x@y>\r\n\r\nb\r\n`,
  },
];

for (const c of cases) {
  test(`prepareSubmission: ${c.name}`, () => {
    assert.equal(prepareSubmission(Buffer.from(c.input, 'latin1'), opts).toString('latin1'), c.output);
  });
}

test('prepareSubmission: the added Date parses back to the submission time, the Message-ID is random', () => {
  const raw = Buffer.from('From: a@example.com\r\n\r\nb\r\n');
  const a = prepareSubmission(raw, { hostname: 'mail.example.test', now: NOW }).toString();
  const b = prepareSubmission(raw, { hostname: 'mail.example.test', now: NOW }).toString();
  const date = /^Date: (.*)\r$/m.exec(a)?.[1];
  assert.equal(parseDate(date), NOW.getTime());
  const ids = [a, b].map((m) => /^Message-ID: <([0-9a-f]{24})@mail\.example\.test>\r$/m.exec(m)?.[1]);
  assert.ok(ids[0] && ids[1] && ids[0] !== ids[1], `${a}\n${b}`);
});

test('rfc5322DateTime pads the time but not the day (RFC 5322 §3.3)', () => {
  assert.equal(rfc5322DateTime(new Date(Date.UTC(2026, 0, 4, 1, 2, 3))), 'Sun, 4 Jan 2026 01:02:03 +0000');
});

test('headerAuthors: From and Sender addresses, every field counted, groups flattened', () => {
  const a = headerAuthors(
    Buffer.from('From: "A, B" <a@example.com>, b@Example.com\r\nSender: s@example.com\r\nTo: t@example.net\r\nFrom: x:;\r\n\r\nFrom: body@example.com\r\n'),
  );
  assert.deepEqual(a, { fromFields: 2, from: ['a@example.com', 'b@Example.com'], senderFields: 1, sender: ['s@example.com'] });
  assert.deepEqual(headerAuthors(Buffer.from('Subject: none\r\n\r\n')), { fromFields: 0, from: [], senderFields: 0, sender: [] });
  assert.deepEqual(headerAuthors(Buffer.from('From: Just A Name\r\n\r\n')).from, ['']);
});
