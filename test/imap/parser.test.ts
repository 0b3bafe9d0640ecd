import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { Receiver, type RawCommand } from '../../src/imap/protocol/receiver.js';
import { MailboxNameError, mailboxNameProblem, parseCommand, ParseError, type Request } from '../../src/imap/protocol/parser.js';
import { decodeMutf7, encodeMutf7 } from '../../src/imap/protocol/mutf7.js';
import { formatSet, Serialized, statusResponse, untagged, untaggedNested, untaggedNumbers, untaggedText } from '../../src/imap/protocol/serialize.js';

function raw(text: string): RawCommand {
  const r = new Receiver({ appendLimit: 1 << 20 });
  r.push(Buffer.from(text, 'latin1'));
  for (let e = r.next(); e !== null; e = r.next()) if (e.kind === 'command') return e.command;
  throw new Error('no command');
}

function parse(text: string, utf8 = false): Request {
  return parseCommand(raw(`${text}\r\n`), { utf8 }).request;
}

function bad(text: string, utf8 = false): void {
  assert.throws(() => parse(text, utf8), ParseError, text);
}

test('parser reads LOGIN with atom, quoted and literal arguments', () => {
  assert.deepEqual(parse('a LOGIN joe "p\\"w d"'), { name: 'LOGIN', user: 'joe', password: 'p"w d' });
  assert.deepEqual(parse('a LOGIN {3}\r\njoe {2+}\r\npw'), { name: 'LOGIN', user: 'joe', password: 'pw' });
});

test('parser refuses CR, LF and NUL inside quoted strings and bad escapes', () => {
  bad('a LOGIN "a\rb" c');
  bad('a LOGIN "a\x00b" c');
  bad('a LOGIN "a\\nb" c');
  bad('a LOGIN "ab c');
});

test('parser reads FETCH items, macros and RFC 3501 RFC822 items', () => {
  const r = parse('a FETCH 1:*,4 (UID FLAGS BODY.PEEK[1.2.HEADER.FIELDS (From To)]<0.100> BINARY[2] RFC822.SIZE BODY[] RFC822.HEADER BODY)');
  assert.equal(r.name, 'FETCH');
  if (r.name !== 'FETCH') return;
  assert.deepEqual(r.set, { ranges: [[1, '*'], [4, 4]] });
  assert.deepEqual(r.atts[2], { kind: 'BODY[]', section: { part: [1, 2], text: 'HEADER.FIELDS', fields: ['From', 'To'] }, partial: { offset: 0, length: 100 }, peek: true });
  assert.deepEqual(r.atts[3], { kind: 'BINARY[]', section: { part: [2], text: null }, partial: null, peek: false });
  assert.deepEqual(r.atts[6], { kind: 'BODY[]', section: { part: [], text: 'HEADER' }, partial: null, peek: true, legacy: 'RFC822.HEADER' });
  assert.deepEqual(r.atts[7], { kind: 'BODY' });
  const all = parse('a UID FETCH 1 ALL');
  assert.equal(all.name === 'FETCH' && all.uid && all.atts.length, 4);
  bad('a FETCH 1 (FLAGS');
  bad('a FETCH 1 BODY[1.MIMEX]');
  bad('a FETCH 0 FLAGS');
  bad('a FETCH 1 (ALL)');
  bad('a FETCH 1 BODY[MIME]');
});

test('parser reads SEARCH keys, CHARSET and RETURN options', () => {
  const r = parse('a UID SEARCH RETURN (MIN COUNT) CHARSET utf-8 OR FROM "x" NOT (SEEN 2:4) SINCE 1-Feb-2024 UID $');
  assert.deepEqual(r, {
    name: 'SEARCH',
    uid: true,
    charset: 'UTF-8',
    returns: ['MIN', 'COUNT'],
    key: {
      kind: 'and',
      keys: [
        { kind: 'or', a: { kind: 'address', field: 'from', value: 'x' }, b: { kind: 'not', key: { kind: 'and', keys: [{ kind: 'flag', flag: '\\Seen', present: true }, { kind: 'seqset', set: { ranges: [[2, 4]] } }] } } },
        { kind: 'internaldate', op: 'since', date: '2024-02-01' },
        { kind: 'uid', set: { ranges: [], saved: true } },
      ],
    },
  });
  assert.deepEqual(parse('a SEARCH SAVEDSINCE 2-Mar-2024 YOUNGER 60 SAVEDATESUPPORTED'), {
    name: 'SEARCH',
    uid: false,
    charset: null,
    returns: null,
    key: { kind: 'and', keys: [{ kind: 'savedate', op: 'since', date: '2024-03-02' }, { kind: 'younger', seconds: 60 }, { kind: 'savedatesupported' }] },
  });
  bad('a SEARCH OLDER 0');
  bad('a SEARCH SINCE 31-Feb-2024');
  bad('a SEARCH FOO');
  bad('a SEARCH (SEEN');
});

test('parser bounds nesting depth', () => {
  bad(`a SEARCH ${'('.repeat(100)}ALL${')'.repeat(100)}`);
  bad(`a SEARCH ${'NOT '.repeat(100)}ALL`);
  assert.equal(parse(`a SEARCH ${'('.repeat(10)}ALL${')'.repeat(10)}`).name, 'SEARCH');
});

test('parser reads STORE, COPY, MOVE, UID EXPUNGE and refuses \\Recent', () => {
  assert.deepEqual(parse('a STORE 1 +FLAGS.SILENT (\\seen $Junk)'), { name: 'STORE', uid: false, set: { ranges: [[1, 1]] }, mode: 'add', silent: true, flags: ['\\Seen', '$Junk'], unchangedSince: null });
  assert.deepEqual(parse('a UID STORE 1:2 -FLAGS \\Deleted \\Flagged'), { name: 'STORE', uid: true, set: { ranges: [[1, 2]] }, mode: 'remove', silent: false, flags: ['\\Deleted', '\\Flagged'], unchangedSince: null });
  bad('a STORE 1 +FLAGS (\\Recent)');
  bad('a STORE 1 +FLAGS (\\Bogus)');
  assert.deepEqual(parse('a UID MOVE 3 Trash'), { name: 'MOVE', uid: true, set: { ranges: [[3, 3]] }, mailbox: 'Trash' });
  assert.deepEqual(parse('a UID EXPUNGE 1:3'), { name: 'EXPUNGE', uids: { ranges: [[1, 3]] } });
  bad('a UID NOOP');
});

test('parser reads APPEND with flags, date, MULTIAPPEND and UTF8 literal8', () => {
  const r = parse('a APPEND inbox (\\Seen) " 5-Mar-2024 10:00:00 +0100" {3}\r\nabc ~{2}\r\nde UTF8 (~{1}\r\nf)');
  assert.equal(r.name, 'APPEND');
  if (r.name !== 'APPEND') return;
  assert.equal(r.mailbox, 'INBOX');
  assert.equal(r.messages.length, 3);
  assert.deepEqual(r.messages[0], { flags: ['\\Seen'], date: Date.UTC(2024, 2, 5, 9, 0, 0), data: Buffer.from('abc'), binary: false, utf8: false });
  assert.equal(r.messages[1]!.binary, true);
  assert.equal(r.messages[2]!.utf8, true);
  bad('a APPEND INBOX');
  bad('a APPEND INBOX UTF8 ({1}\r\nf)');
});

test('parser reads LIST-EXTENDED selection and return options', () => {
  const r = parse('a LIST (SUBSCRIBED RECURSIVEMATCH) "" ("INBOX" "%") RETURN (CHILDREN STATUS (MESSAGES UNSEEN) SPECIAL-USE)');
  assert.equal(r.name, 'LIST');
  if (r.name !== 'LIST') return;
  assert.deepEqual(r.patterns, ['INBOX', '%']);
  assert.equal(r.selectSubscribed && r.recursiveMatch && r.returnChildren && r.returnSpecialUse, true);
  assert.deepEqual(r.returnStatus, ['MESSAGES', 'UNSEEN']);
  bad('a LIST (RECURSIVEMATCH) "" *');
  bad('a LIST (BOGUS) "" *');
});

test('parser decodes modified UTF-7 names unless UTF-8 is enabled', () => {
  assert.deepEqual(parse('a SELECT "&AOk-t&AOk-"'), { name: 'SELECT', mailbox: 'été', condstore: false, qresync: null });
  assert.deepEqual(parse('a SELECT "&AOk-t&AOk-"', true), { name: 'SELECT', mailbox: '&AOk-t&AOk-', condstore: false, qresync: null });
  assert.throws(() => parse('a SELECT "&AOk"'), MailboxNameError);
  assert.throws(() => parse('a SELECT &Jjo!'), MailboxNameError);
  assert.deepEqual(parse('a LIST "" &Jjo*'), parse('a LIST "" &Jjo*'));
  assert.deepEqual(parse('a CREATE Sent2 (USE (\\Sent))'), { name: 'CREATE', mailbox: 'Sent2', specialUse: ['\\Sent'] });
  assert.deepEqual(parse('a ID ("name" "x" "version" NIL)'), { name: 'ID', params: [['name', 'x'], ['version', null]] });
});

test('mailbox names with empty levels, NUL, dot levels, wildcards, too long or deep are refused', () => {
  assert.equal(mailboxNameProblem('a/b'), null);
  for (const name of ['', 'a//b', '/a', 'a/', 'a\x00b', '../x', 'a/../b', 'a*', 'x'.repeat(1001), Array(33).fill('a').join('/')]) {
    assert.notEqual(mailboxNameProblem(name), null, JSON.stringify(name));
  }
});

test('modified UTF-7 round-trips every string and decodes the RFC 3501 example', () => {
  assert.equal(decodeMutf7('~peter/mail/&U,BTFw-/&ZeVnLIqe-'), '~peter/mail/台北/日本語');
  assert.equal(encodeMutf7('~peter/mail/台北/日本語'), '~peter/mail/&U,BTFw-/&ZeVnLIqe-');
  assert.equal(encodeMutf7('a&b'), 'a&-b');
  fc.assert(
    fc.property(fc.string({ unit: 'binary' }), (s) => {
      // Lone surrogates are not valid names; skip them.
      fc.pre(!/[\uD800-\uDFFF]/.test(s.replace(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g, '')));
      assert.equal(decodeMutf7(encodeMutf7(s)), s);
    }),
    { seed: 4242, numRuns: 500 },
  );
});

test('serializer quotes safe strings and turns CRLF or 8-bit strings into literals', () => {
  const text = (parts: ReturnType<typeof untagged>) => Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.alloc(0)))).toString('utf8');
  assert.equal(text(untagged([{ atom: 'LIST' }, [{ atom: '\\HasNoChildren' }], '/', 'a"b\\'], { utf8: false })), '* LIST (\\HasNoChildren) "/" "a\\"b\\\\"\r\n');
  assert.equal(text(untagged(['x\r\nA1 OK'], { utf8: false })), '* {8}\r\nx\r\nA1 OK\r\n');
  assert.equal(text(untagged(['é'], { utf8: false })), '* {2}\r\né\r\n');
  assert.equal(text(untagged(['é', null, 5], { utf8: true })), '* "é" NIL 5\r\n');
  assert.equal(text(statusResponse('a1', 'NO', [{ atom: 'TRYCREATE' }], 'No such mailbox', { utf8: false })), 'a1 NO [TRYCREATE] No such mailbox\r\n');
  // Every command's OK is one Buffer; codes that must be bytes (8-bit, literals) as parts.
  assert.equal(statusResponse('a2', 'OK', [{ atom: 'APPENDUID' }, 7, { atom: '1:3' }], 'APPEND completed', { utf8: false }).length, 1);
  assert.equal(text(statusResponse('a2', 'OK', [{ atom: 'APPENDUID' }, 7, { atom: '1:3' }], 'Done\r\nA1 OK é', { utf8: false })), 'a2 OK [APPENDUID 7 1:3] Done  A1 OK é\r\n');
  assert.equal(text(statusResponse('a3', 'OK', [{ atom: 'X' }, 'é'], 'ok', { utf8: true })), 'a3 OK [X "é"] ok\r\n');
  assert.equal(text(statusResponse('a4', 'NO', [{ atom: 'X' }, 'a\r\nb'], '', { utf8: false })), 'a4 NO [X {4}\r\na\r\nb] NO\r\n');
  assert.equal(formatSet([1, 2, 3, 5, 7, 8]), '1:3,5,7:8');
});

test('serializer writes bulk number lists as untagged would, and refuses what is not a 32-bit number or nested numbers', () => {
  const text = (parts: ReturnType<typeof untagged>) => Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.alloc(0)))).toString('latin1');
  const numbers = [1, 0, 9, 10, 99, 100, 4294967295, 12345];
  assert.equal(text(untaggedNumbers('SORT', numbers)), text(untagged([{ atom: 'SORT' }, ...numbers], { utf8: false })));
  assert.equal(text(untaggedNumbers('SORT', [])), '* SORT\r\n');
  assert.throws(() => untaggedNumbers('SORT', [1.5]), /Cannot serialise number/);
  assert.throws(() => untaggedNumbers('SORT', [-1]), /Cannot serialise number/);
  assert.throws(() => untaggedNumbers('SORT', [2 ** 32]), /Cannot serialise number/);
  assert.equal(text(untaggedNested('THREAD', Buffer.from('(1 2)(3 (4)(5))'))), '* THREAD (1 2)(3 (4)(5))\r\n');
  assert.equal(text(untaggedNested('THREAD', Buffer.alloc(0))), '* THREAD\r\n');
  assert.throws(() => untaggedNested('THREAD', Buffer.from('(1)\r\nA1 OK')), /unexpected byte/);
});

test('serializer writes text-only responses as the text of the bytes untagged writes, and refuses literals and escaped or 8-bit strings', () => {
  const bytes = (parts: ReturnType<typeof untagged>) => Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.alloc(0)))).toString('latin1');
  const kept = Serialized.of([{ atom: 'ENVELOPE' }, [null, 'Hi there', [['Ann', null, 'ann', 'example.com']]]], { utf8: false });
  assert.ok(kept !== null);
  const utf8Kept = Serialized.of(['Café'], { utf8: true });
  assert.ok(utf8Kept !== null);
  const textOnly: Array<[Parameters<typeof untagged>[0], boolean]> = [
    [[7, { atom: 'FETCH' }, [{ atom: 'UID' }, 42, { atom: 'FLAGS' }, [{ atom: '\\Seen' }, { atom: '$Work' }], kept]], false],
    [[{ atom: 'LIST' }, [], '/', 'INBOX'], false],
    [[1, { atom: 'FETCH' }, [{ atom: 'INTERNALDATE' }, ' 1-Jan-2026 10:00:00 +0000', { atom: 'MODSEQ' }, [12]]], false],
    [[utf8Kept, null], true],
  ];
  for (const [values, utf8] of textOnly) assert.equal(untaggedText(values, { utf8 }), bytes(untagged(values, { utf8 })));
  const asBytes: Array<[Parameters<typeof untagged>[0], boolean]> = [
    [[1, { atom: 'FETCH' }, [{ atom: 'BODY[]' }, { literal: Buffer.from('x') }]], false],
    [['a"b'], false],
    [['x\r\ny'], true],
    [['é'], false],
    [['é'], true],
  ];
  for (const [values, utf8] of asBytes) assert.equal(untaggedText(values, { utf8 }), null);
  // Refused the same way as untagged: nothing that could break the framing passes as text.
  assert.throws(() => untaggedText([{ atom: 'A B' }], { utf8: false }), /Cannot serialise atom/);
  assert.throws(() => untaggedText([utf8Kept], { utf8: false }), /UTF8=ACCEPT/);
});

test('parser reads the RFC 7162 syntax: SELECT (CONDSTORE)/(QRESYNC ...), CHANGEDSINCE, VANISHED, UNCHANGEDSINCE, MODSEQ', () => {
  assert.deepEqual(parse('a SELECT INBOX (CONDSTORE)'), { name: 'SELECT', mailbox: 'INBOX', condstore: true, qresync: null });
  assert.deepEqual(parse('a EXAMINE INBOX (QRESYNC (67890007 715194045000 41,43:211 (1:3 1:3)))'), {
    name: 'EXAMINE',
    mailbox: 'INBOX',
    condstore: false,
    qresync: { uidValidity: 67890007, modseq: 715194045000, knownUids: { ranges: [[41, 41], [43, 211]] } },
  });
  assert.deepEqual(parse('a SELECT INBOX (QRESYNC (1 2))'), { name: 'SELECT', mailbox: 'INBOX', condstore: false, qresync: { uidValidity: 1, modseq: 2, knownUids: null } });
  const fetch = parse('a UID FETCH 1:* (FLAGS MODSEQ) (CHANGEDSINCE 12345 VANISHED)');
  assert.deepEqual(fetch, { name: 'FETCH', uid: true, set: { ranges: [[1, '*']] }, atts: [{ kind: 'FLAGS' }, { kind: 'MODSEQ' }], changedSince: 12345, vanished: true });
  const store = parse('a STORE 1 (UNCHANGEDSINCE 0) +FLAGS.SILENT (\\Seen)');
  assert.ok(store.name === 'STORE' && store.unchangedSince === 0 && store.silent);
  assert.deepEqual(parse('a SEARCH MODSEQ "/flags/\\\\draft" all 620162338'), { name: 'SEARCH', uid: false, charset: null, returns: null, key: { kind: 'modseq', modseq: 620162338 } });
  // A modseq beyond 2^53 (still within 2^63-1) compares the same clamped.
  const big = parse('a FETCH 1 FLAGS (CHANGEDSINCE 9223372036854775807)');
  assert.ok(big.name === 'FETCH' && big.changedSince === Number.MAX_SAFE_INTEGER);
  bad('a FETCH 1 FLAGS (CHANGEDSINCE 9223372036854775808)');
  bad('a FETCH 1 FLAGS (CHANGEDSINCE 0)');
  bad('a FETCH 1 FLAGS (XYZ)');
  bad('a SELECT INBOX (XYZ)');
  bad('a SELECT INBOX (QRESYNC (0 1))');
  bad('a STORE 1 (CHANGEDSINCE 1) FLAGS (\\Seen)');
  bad('a SEARCH MODSEQ "/flags/\\\\draft" nope 1');
});
