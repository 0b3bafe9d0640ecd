import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import type { SearchKey, SequenceSet } from '../../../src/imap/protocol/ast.js';
import { evaluateSearch, checkSearchCharset, BadCharsetError, searchViewOf, writtenDay, type SearchView } from '../../../src/imap/search/search.js';
import type { MessageEntry } from '../../../src/store/types.js';
import { asMailboxId, asModSeq, asUid, type Uid } from '../../../src/lib/brand.js';

/** A store that fails the test if touched: entry-level keys must need no I/O. */
const noStore: SearchView['store'] = {
  searchText: () => Promise.reject(new Error('searchText must not be called')),
  getParsed: () => Promise.reject(new Error('getParsed must not be called')),
};

function entry(uid: number, p: Partial<MessageEntry> = {}): MessageEntry {
  return {
    mailboxId: asMailboxId(1),
    uid: asUid(uid),
    modseq: asModSeq(uid * 10),
    flags: [],
    internalDate: Date.UTC(2024, 0, uid, 12),
    saveDate: Date.UTC(2024, 1, uid, 12),
    size: uid * 100,
    blobHash: `b${uid}`,
    emailId: `M${uid}`,
    threadId: `T${uid % 2}`,
    pid: `M${uid}`,
    pop3Hidden: false,
    ...p,
  };
}

// The flags of imaptest's search-flags test, with UIDs that are not the sequence numbers.
const entries = [
  entry(3, { flags: ['$$hello'] }),
  entry(5, { flags: ['\\Seen', '\\Flagged'] }),
  entry(6, { flags: ['\\Answered', '$$hello'] }),
  entry(9, { flags: ['\\Flagged', '\\Draft'] }),
  entry(12, { flags: ['\\Deleted', '\\Answered'] }),
];

function view(p: Partial<Omit<SearchView, 'entries'>> & { entries?: MessageEntry[] } = {}): SearchView {
  const { entries: list = entries, ...rest } = p;
  return searchViewOf(list, { store: noStore, mailboxId: asMailboxId(1), timezoneOffset: () => 0, ...rest });
}

const seqs = async (key: SearchKey, v: SearchView = view()): Promise<number[]> => (await evaluateSearch(key, v)).map((i) => i + 1);
const set = (...ranges: Array<[number | '*', number | '*']>): SequenceSet => ({ ranges });
const flag = (f: string, present = true): SearchKey => ({ kind: 'flag', flag: f, present });

test('flag keys match set and unset system flags and keywords, keywords case-insensitively', async () => {
  assert.deepEqual(await seqs(flag('\\Answered')), [3, 5]);
  assert.deepEqual(await seqs(flag('\\Answered', false)), [1, 2, 4]);
  assert.deepEqual(await seqs(flag('\\Deleted')), [5]);
  assert.deepEqual(await seqs(flag('\\Deleted', false)), [1, 2, 3, 4]);
  assert.deepEqual(await seqs(flag('\\Draft')), [4]);
  assert.deepEqual(await seqs(flag('\\Flagged')), [2, 4]);
  assert.deepEqual(await seqs(flag('\\Seen')), [2]);
  assert.deepEqual(await seqs(flag('\\Seen', false)), [1, 3, 4, 5]);
  assert.deepEqual(await seqs(flag('$$HELLO')), [1, 3]);
  assert.deepEqual(await seqs(flag('$$hello', false)), [2, 4, 5]);
  assert.deepEqual(await seqs(flag('\\seen')), [2]);
});

test('RECENT, NEW and OLD follow the session recent set', async () => {
  const recent = new Set<Uid>([asUid(5), asUid(9)]);
  assert.deepEqual(await seqs({ kind: 'recent' }, view({ recent })), [2, 4]);
  assert.deepEqual(await seqs({ kind: 'new' }, view({ recent })), [4]);
  assert.deepEqual(await seqs({ kind: 'old' }, view({ recent })), [1, 3, 5]);
  assert.deepEqual(await seqs({ kind: 'recent' }), []);
  assert.deepEqual(await seqs({ kind: 'old' }), [1, 2, 3, 4, 5]);
});

test('sequence sets resolve * to the last message and accept reversed ranges', async () => {
  assert.deepEqual(await seqs({ kind: 'seqset', set: set([1, 3], [5, 5]) }), [1, 2, 3, 5]);
  assert.deepEqual(await seqs({ kind: 'seqset', set: set([4, 2]) }), [2, 3, 4]);
  assert.deepEqual(await seqs({ kind: 'seqset', set: set(['*', '*']) }), [5]);
  assert.deepEqual(await seqs({ kind: 'seqset', set: set(['*', 3]) }), [3, 4, 5]);
  assert.deepEqual(await seqs({ kind: 'seqset', set: set([1, 1], [4, 4], ['*', '*']) }), [1, 4, 5]);
  assert.deepEqual(await seqs({ kind: 'seqset', set: set([6, 9]) }), []);
  assert.deepEqual(await seqs({ kind: 'seqset', set: set([6, '*']) }), [5]);
  assert.deepEqual(await seqs({ kind: 'seqset', set: set([1, '*']) }, view({ entries: [] })), []);
});

test('UID sets resolve * to the last UID, and n:* always includes the last message', async () => {
  assert.deepEqual(await seqs({ kind: 'uid', set: set([3, 6], [12, 12]) }), [1, 2, 3, 5]);
  assert.deepEqual(await seqs({ kind: 'uid', set: set([9, 4]) }), [2, 3, 4]);
  assert.deepEqual(await seqs({ kind: 'uid', set: set(['*', '*']) }), [5]);
  assert.deepEqual(await seqs({ kind: 'uid', set: set([13, '*']) }), [5]); // RFC 9051 §6.4.8 "559:*"
  assert.deepEqual(await seqs({ kind: 'uid', set: set([13, 4294967295]) }), []);
  assert.deepEqual(await seqs({ kind: 'uid', set: set([1, 4294967295]) }), [1, 2, 3, 4, 5]);
  assert.deepEqual(await seqs({ kind: 'uid', set: set([4, 4], [7, 8]) }), []);
});

test('$ is the saved result, and empty when nothing was saved', async () => {
  const saved = new Set<Uid>([asUid(6), asUid(12), asUid(99)]);
  assert.deepEqual(await seqs({ kind: 'seqset', set: { ranges: [], saved: true } }, view({ saved })), [3, 5]);
  assert.deepEqual(await seqs({ kind: 'uid', set: { ranges: [], saved: true } }, view({ saved })), [3, 5]);
  assert.deepEqual(await seqs({ kind: 'seqset', set: { ranges: [], saved: true } }), []);
  assert.deepEqual(await seqs({ kind: 'not', key: { kind: 'uid', set: { ranges: [], saved: true } } }, view({ saved })), [1, 2, 4]);
});

test('NOT, OR and AND nest to any depth', async () => {
  // imaptest search-sets: "1:3 not uid $uid3" (uid 6 is seq 3) and "or 1 uid $uid3".
  assert.deepEqual(await seqs({ kind: 'and', keys: [{ kind: 'seqset', set: set([1, 3]) }, { kind: 'not', key: { kind: 'uid', set: set([6, 6]) } }] }), [1, 2]);
  assert.deepEqual(await seqs({ kind: 'or', a: { kind: 'seqset', set: set([1, 1]) }, b: { kind: 'uid', set: set([6, 6]) } }), [1, 3]);
  assert.deepEqual(await seqs({ kind: 'not', key: { kind: 'seqset', set: set([2, 2], [4, 4]) } }), [1, 3, 5]);
  // OR (NOT FLAGGED) (AND SEEN (NOT DELETED)) -> not flagged: 1 3 5; seen and undeleted: 2
  assert.deepEqual(
    await seqs({ kind: 'or', a: { kind: 'not', key: flag('\\Flagged') }, b: { kind: 'and', keys: [flag('\\Seen'), { kind: 'not', key: flag('\\Deleted') }] } }),
    [1, 2, 3, 5],
  );
  // NOT (OR ANSWERED (OR DRAFT SEEN)) -> 1
  assert.deepEqual(await seqs({ kind: 'not', key: { kind: 'or', a: flag('\\Answered'), b: { kind: 'or', a: flag('\\Draft'), b: flag('\\Seen') } } }), [1]);
  assert.deepEqual(await seqs({ kind: 'not', key: { kind: 'not', key: flag('\\Flagged') } }), [2, 4]);
  assert.deepEqual(await seqs({ kind: 'and', keys: [] }), [1, 2, 3, 4, 5]);
  assert.deepEqual(await seqs({ kind: 'all' }), [1, 2, 3, 4, 5]);
  assert.deepEqual(await seqs({ kind: 'not', key: { kind: 'all' } }), []);
});

test('LARGER and SMALLER are strict; MODSEQ is at least; EMAILID and THREADID are equality', async () => {
  assert.deepEqual(await seqs({ kind: 'size', op: 'larger', n: 500 }), [3, 4, 5]);
  assert.deepEqual(await seqs({ kind: 'size', op: 'smaller', n: 500 }), [1]);
  assert.deepEqual(await seqs({ kind: 'size', op: 'smaller', n: 501 }), [1, 2]);
  assert.deepEqual(await seqs({ kind: 'modseq', modseq: 90 }), [4, 5]);
  assert.deepEqual(await seqs({ kind: 'emailid', id: 'M9' }), [4]);
  assert.deepEqual(await seqs({ kind: 'emailid', id: 'm9' }), []);
  assert.deepEqual(await seqs({ kind: 'threadid', id: 'T1' }), [1, 2, 4]);
});

test('BEFORE, ON and SINCE compare the INTERNALDATE day in the server time zone', async () => {
  // 2024-01-03 23:30 UTC is the 3rd in UTC, the 4th in UTC+1, the 3rd in UTC-5.
  const late = [entry(1, { internalDate: Date.UTC(2024, 0, 3, 23, 30) }), entry(2, { internalDate: Date.UTC(2024, 0, 4, 0, 30) })];
  const utc = view({ entries: late, timezoneOffset: () => 0 });
  const paris = view({ entries: late, timezoneOffset: () => 60 });
  const ny = view({ entries: late, timezoneOffset: () => -300 });
  assert.deepEqual(await seqs({ kind: 'internaldate', op: 'on', date: '2024-01-03' }, utc), [1]);
  assert.deepEqual(await seqs({ kind: 'internaldate', op: 'on', date: '2024-01-03' }, paris), []);
  assert.deepEqual(await seqs({ kind: 'internaldate', op: 'on', date: '2024-01-04' }, paris), [1, 2]);
  assert.deepEqual(await seqs({ kind: 'internaldate', op: 'on', date: '2024-01-03' }, ny), [1, 2]);
  assert.deepEqual(await seqs({ kind: 'internaldate', op: 'before', date: '2024-01-04' }, utc), [1]);
  assert.deepEqual(await seqs({ kind: 'internaldate', op: 'before', date: '2024-01-04' }, paris), []);
  assert.deepEqual(await seqs({ kind: 'internaldate', op: 'since', date: '2024-01-04' }, utc), [2]);
  assert.deepEqual(await seqs({ kind: 'internaldate', op: 'since', date: '2024-01-04' }, paris), [1, 2]);
  assert.deepEqual(await seqs({ kind: 'internaldate', op: 'since', date: '2024-01-05' }, ny), []);
});

test('SAVEDBEFORE/SAVEDON/SAVEDSINCE use the save date; SAVEDATESUPPORTED matches all', async () => {
  assert.deepEqual(await seqs({ kind: 'savedate', op: 'on', date: '2024-02-05' }), [2]);
  assert.deepEqual(await seqs({ kind: 'savedate', op: 'before', date: '2024-02-06' }), [1, 2]);
  assert.deepEqual(await seqs({ kind: 'savedate', op: 'since', date: '2024-02-09' }), [4, 5]);
  assert.deepEqual(await seqs({ kind: 'savedatesupported' }), [1, 2, 3, 4, 5]);
});

test('OLDER and YOUNGER split the mailbox by INTERNALDATE age in seconds', async () => {
  const now = () => Date.UTC(2024, 0, 10, 12); // 1 day after uid 9's date
  assert.deepEqual(await seqs({ kind: 'younger', seconds: 86400 }, view({ now })), [5]);
  assert.deepEqual(await seqs({ kind: 'older', seconds: 86400 }, view({ now })), [1, 2, 3, 4]);
  assert.deepEqual(await seqs({ kind: 'younger', seconds: 86401 }, view({ now })), [4, 5]);
});

test('the calendar day of a Date: header is the one written, whatever its zone', () => {
  const d = (y: number, m: number, day: number) => Date.UTC(y, m - 1, day) / 86_400_000;
  assert.equal(writtenDay('Sat, 24 Mar 2007 23:00:00 +0200'), d(2007, 3, 24));
  assert.equal(writtenDay('Sun, 25 Mar 2007 04:00:00 +0300'), d(2007, 3, 25));
  assert.equal(writtenDay('25 mar 07 04:00 -1200'), d(2007, 3, 25));
  assert.equal(writtenDay('1 January 1999 00:00 GMT'), d(1999, 1, 1));
  assert.equal(writtenDay('5 Dec 103 00:00 GMT'), d(2003, 12, 5));
  assert.equal(writtenDay('not a date'), null);
  assert.equal(writtenDay('32 Jan 2020'), null);
});

test('SEARCH CHARSET accepts US-ASCII and UTF-8 and refuses others with BADCHARSET', () => {
  checkSearchCharset(undefined);
  checkSearchCharset('utf-8');
  checkSearchCharset('US-ASCII');
  assert.throws(() => checkSearchCharset('ISO-8859-1'), (e: unknown) => e instanceof BadCharsetError && e.code === 'BADCHARSET');
});

test('a flag, size and UID search over 100,000 messages is answered from the entries alone, with no store access', async () => {
  const many: MessageEntry[] = [];
  for (let i = 1; i <= 100_000; i++) many.push(entry(i, { flags: i % 3 === 0 ? ['\\Seen'] : i % 7 === 0 ? ['\\Flagged', '\\Seen'] : [] }));
  const v = view({ entries: many });
  const key: SearchKey = {
    kind: 'and',
    keys: [{ kind: 'not', key: flag('\\Seen') }, { kind: 'or', a: flag('\\Deleted'), b: { kind: 'size', op: 'larger', n: 5_000_000 } }, { kind: 'uid', set: set([1, '*']) }],
  };
  // The view's store (noStore) throws on any call: these keys must need no I/O. Speed is
  // measured in bench/, not here.
  const unseen = await evaluateSearch({ kind: 'and', keys: [{ kind: 'not', key: flag('\\Seen') }, { kind: 'uid', set: set([1, '*']) }] }, v);
  const r = await evaluateSearch(key, v);
  assert.equal(unseen.length, 100_000 - Math.floor(100_000 / 3) - (Math.floor(100_000 / 7) - Math.floor(100_000 / 21)));
  const expected = many.flatMap((e, i) => (!e.flags.includes('\\Seen') && e.size > 5_000_000 ? [i] : []));
  assert.equal(expected.length > 1000, true);
  assert.deepEqual(r, expected);
});
