import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { openTestStore } from '../../helpers/store.js';
import { parseMessage } from '../../../src/mail/parse.js';
import { fetchValues } from '../../../src/imap/fetch/fetch.js';
import { UnknownCteError } from '../../../src/imap/fetch/binary.js';
import type { FetchAtt, SectionSpec } from '../../../src/imap/protocol/ast.js';
import type { MailStore, MessageEntry } from '../../../src/store/types.js';
import { readMbox } from '../mbox.js';
import { wireItems } from '../wire.js';

const IMAPTEST = '/work/shared/imaptest-tests';

async function stored(store: MailStore, raws: Buffer[]): Promise<MessageEntry[]> {
  await store.addDomain('example.com');
  const account = await store.createAccount({ address: 'bob@example.com', passwordHash: 'x' });
  const inbox = await store.getMailbox(account.id, 'INBOX');
  assert.ok(inbox !== null);
  for (const raw of raws) await store.append(inbox.id, { raw, parsed: parseMessage(raw) });
  return store.listEntries(inbox.id);
}

const sec = (part: number[], text: SectionSpec['text'] = null, fields?: string[]): SectionSpec =>
  fields === undefined ? { part, text } : { part, text, fields };
const peek = (section: SectionSpec, partial: { offset: number; length: number } | null = null): FetchAtt => ({ kind: 'BODY[]', section, partial, peek: true });
const bin = (part: number[], partial: { offset: number; length: number } | null = null): FetchAtt => ({ kind: 'BINARY[]', section: sec(part), partial, peek: true });
const lit = (s: string, binary = false): string => `${binary ? '~' : ''}{${Buffer.byteLength(s, 'latin1')}}\r\n${s}`;

test('FETCH of a stored message reads sections by range from the store, as imaptest fetch-body-mime expects', async () => {
  const { store, cleanup } = await openTestStore();
  try {
    const [m] = readMbox(`${IMAPTEST}/fetch-body-mime.mbox`);
    assert.ok(m !== undefined);
    const [entry] = await stored(store, [m.raw]);
    assert.ok(entry !== undefined);
    const raw = m.raw.toString('latin1');
    const get = async (atts: FetchAtt[], largeLiteral?: number) =>
      wireItems(await fetchValues(atts, { entry, store }, { rev2: false, utf8Accept: false, ...(largeLiteral !== undefined ? { largeLiteral } : {}) }));
    const sub = raw.slice(raw.indexOf('From: sub@'), raw.indexOf('\r\n--foo bar--'));

    assert.equal(await get([peek(sec([]))]), `BODY[] ${lit(raw)}`);
    // The same, streamed in chunks from the blob store.
    assert.equal(await get([peek(sec([]))], 16), `BODY[] ${lit(raw)}`);
    assert.equal(await get([peek(sec([1]))]), `BODY[1] ${lit('hello\r\n')}`);
    assert.equal(await get([peek(sec([1], 'MIME'))]), `BODY[1.MIME] ${lit('Content-Type: text/x-myown; charset=us-ascii\r\n\r\n')}`);
    assert.equal(await get([peek(sec([2]))]), `BODY[2] ${lit(sub)}`);
    assert.equal(await get([peek(sec([2], 'MIME'))]), `BODY[2.MIME] ${lit('Content-Type: message/rfc822\r\n\r\n')}`);
    assert.equal(
      await get([peek(sec([2], 'HEADER.FIELDS', ['from', 'subject', 'X-foo']))]),
      `BODY[2.HEADER.FIELDS (from subject X-foo)] ${lit('From: sub@domain.org\r\nSubject: submsg\r\n\r\n')}`,
    );
    assert.equal(
      await get([peek(sec([2], 'HEADER.FIELDS.NOT', ['from', 'subject', 'X-foo']))]),
      `BODY[2.HEADER.FIELDS.NOT (from subject X-foo)] ${lit('Date: Sun, 12 Aug 2012 12:34:56 +0300\r\nContent-Type: multipart/alternative; boundary="sub1"\r\n\r\n')}`,
    );
    assert.equal(await get([peek(sec([2, 1], 'MIME'))]), `BODY[2.1.MIME] ${lit('Content-Type: text/html\r\n\r\n')}`);
    assert.equal(await get([peek(sec([2, 1]))]), `BODY[2.1] ${lit('<p>Hello world</p>\r\n')}`);
    assert.equal(await get([peek(sec([2, 2]))]), `BODY[2.2] ${lit('Hello another world\r\n')}`);
    assert.equal(await get([peek(sec([2]), { offset: 6, length: 10 })], 4), `BODY[2]<6> ${lit('sub@domain')}`);
    assert.equal(await get([{ kind: 'BINARY.SIZE', section: sec([]) }, { kind: 'BINARY.SIZE', section: sec([2]) }]), `BINARY.SIZE[] ${m.raw.length} BINARY.SIZE[2] 298`);
    assert.equal(
      await get([{ kind: 'BODYSTRUCTURE' }]),
      'BODYSTRUCTURE (("TEXT" "X-MYOWN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 7 1 NIL NIL NIL NIL)("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 298 ' +
        '("Sun, 12 Aug 2012 12:34:56 +0300" "submsg" ((NIL NIL "sub" "domain.org")) ((NIL NIL "sub" "domain.org")) ((NIL NIL "sub" "domain.org")) NIL NIL NIL NIL NIL) ' +
        '(("TEXT" "HTML" ("CHARSET" "us-ascii") NIL NIL "7BIT" 20 1 NIL NIL NIL NIL)("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 21 1 NIL NIL NIL NIL) "ALTERNATIVE" ("BOUNDARY" "sub1") NIL NIL NIL) ' +
        '18 NIL NIL NIL NIL) "MIXED" ("BOUNDARY" "foo bar") NIL NIL NIL)',
    );
  } finally {
    await cleanup();
  }
});

test('BINARY of stored base64 and quoted-printable parts decodes as imaptest expects', async () => {
  const { store, cleanup } = await openTestStore();
  try {
    const [b64] = readMbox(`${IMAPTEST}/fetch-binary-mime-base64.mbox`);
    const [qp] = readMbox(`${IMAPTEST}/fetch-binary-mime-qp.mbox`);
    assert.ok(b64 !== undefined && qp !== undefined);
    const [e1, e2] = await stored(store, [b64.raw, qp.raw]);
    assert.ok(e1 !== undefined && e2 !== undefined);
    const get = async (entry: MessageEntry, atts: FetchAtt[]) => wireItems(await fetchValues(atts, { entry, store }, { rev2: true, utf8Accept: false }));
    assert.equal(
      await get(e1, [{ kind: 'BINARY.SIZE', section: sec([1]) }, { kind: 'BINARY.SIZE', section: sec([5]) }]),
      'BINARY.SIZE[1] 11 BINARY.SIZE[5] 30',
    );
    assert.equal(
      await get(e1, [bin([1]), bin([2]), bin([3]), bin([4]), bin([5])]),
      `BINARY[1] ${lit('hello world')} BINARY[2] ${lit('hello world')} BINARY[3] ${lit('hello to you too')} BINARY[4] ${lit('hello to everyone!')} ` +
        `BINARY[5] ${lit('abcdefg\rhijkl\r\nmno\npqrstuvqxyz')}`,
    );
    assert.equal(await get(e1, [bin([5], { offset: 5, length: 10 })]), `BINARY[5]<5> ${lit('fg\rhijkl\r\n')}`);
    const decoded = 'hello\r\nbar\r\nfoo\tbar\r\nfoo\t \tb\r\nfoo bar\r\nfoo b\r\nfoo\r\nbar\r\nfoo_bar\r\n';
    assert.equal(await get(e2, [{ kind: 'BINARY.SIZE', section: sec([1]) }, bin([1])]), `BINARY.SIZE[1] 65 BINARY[1] ${lit(decoded)}`);
    assert.equal(await get(e2, [bin([1], { offset: 15, length: 10 })]), `BINARY[1]<15> ${lit(decoded.slice(15, 25))}`);
  } finally {
    await cleanup();
  }
});

test('BINARY of a stored part with an unknown encoding is refused with UNKNOWN-CTE; its BODY is served', async () => {
  const { store, cleanup } = await openTestStore();
  try {
    const raw = Buffer.from(
      'Subject: uu\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 f\r\nend\r\n--b\r\n' +
        'Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b--\r\n',
    );
    const [entry] = await stored(store, [raw]);
    assert.ok(entry !== undefined);
    const opts = { rev2: true, utf8Accept: false };
    await assert.rejects(fetchValues([bin([1])], { entry, store }, opts), (e: unknown) => e instanceof UnknownCteError && e.encoding === 'x-uuencode');
    assert.equal(await wireItems(await fetchValues([peek(sec([1]))], { entry, store }, opts)), `BODY[1] ${lit('begin 644 f\r\nend')}`);
    // Decoded content with a NUL goes out as a literal8 (RFC 3516 §4.1).
    assert.equal(await wireItems(await fetchValues([bin([2])], { entry, store }, opts)), 'BINARY[2] ~{3}\r\n\x00\x01\x02');
  } finally {
    await cleanup();
  }
});
