import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { openTestStore } from '../../helpers/store.js';
import { makeMessage } from '../../helpers/messages.js';
import { parseMessage } from '../../../src/mail/parse.js';
import { evaluateSearch, createSentDayCache, searchViewOf, type SearchView } from '../../../src/imap/search/search.js';
import { sortMessages, sortViewOf, storeSortView } from '../../../src/imap/search/sort.js';
import type { SearchKey, SortCriterion } from '../../../src/imap/protocol/ast.js';
import type { MailStore, TextQuery } from '../../../src/store/types.js';
import type { MailboxId } from '../../../src/lib/brand.js';
import { readMbox } from '../mbox.js';

const IMAPTEST = '/work/shared/imaptest-tests';

async function mailbox(store: MailStore): Promise<MailboxId> {
  await store.addDomain('example.com');
  const account = await store.createAccount({ address: 'bob@example.com', passwordHash: 'x' });
  const inbox = await store.getMailbox(account.id, 'INBOX');
  assert.ok(inbox !== null);
  return inbox.id;
}

async function append(store: MailStore, mb: MailboxId, raws: Array<{ raw: Buffer; internalDate?: number; flags?: string[] }>): Promise<void> {
  for (const m of raws) {
    await store.append(mb, {
      raw: m.raw,
      parsed: parseMessage(m.raw),
      ...(m.internalDate !== undefined ? { internalDate: m.internalDate } : {}),
      ...(m.flags !== undefined ? { flags: m.flags } : {}),
    });
  }
}

/** Counts searchText calls (the store itself answers). */
function counting(store: MailStore): { store: SearchView['store']; calls: TextQuery[] } {
  const calls: TextQuery[] = [];
  return {
    calls,
    store: {
      searchText: (mb, q) => {
        calls.push(q);
        return store.searchText(mb, q);
      },
      getParsed: (h) => store.getParsed(h),
    },
  };
}

test('text keys search subject, addresses, headers, body and text through the store index', async () => {
  const { store, cleanup } = await openTestStore();
  try {
    const mb = await mailbox(store);
    const msg = (o: Parameters<typeof makeMessage>[0]) => ({ raw: makeMessage(o) });
    await append(store, mb, [
      msg({ from: 'Alice Example <alice@example.org>', to: 'bob@example.com', subject: 'Quarterly report', body: 'numbers inside\r\n', headers: { 'X-Tag': 'blue' } }),
      msg({ from: 'carol@example.net', to: 'Dave <dave@example.net>', cc: 'erin@example.org', subject: 'Lunch?', body: 'Pizza at noon, report later\r\n' }),
      { raw: makeMessage({ from: 'frank@example.com', to: 'bob@example.com', subject: 'x', body: 'ok\r\n', headers: { Bcc: 'secret@example.com' } }), flags: ['\\Seen'] },
    ]);
    const entries = await store.listEntries(mb);
    const c = counting(store);
    const view: SearchView = searchViewOf(entries, { store: c.store, mailboxId: mb });
    const seqs = async (k: SearchKey) => (await evaluateSearch(k, view)).map((i) => i + 1);

    assert.deepEqual(await seqs({ kind: 'subject', value: 'REPORT' }), [1]);
    assert.deepEqual(await seqs({ kind: 'subject', value: 'x' }), [3]); // under 3 characters
    assert.deepEqual(await seqs({ kind: 'address', field: 'from', value: 'alice' }), [1]);
    assert.deepEqual(await seqs({ kind: 'address', field: 'from', value: 'Alice Example' }), [1]);
    assert.deepEqual(await seqs({ kind: 'address', field: 'to', value: 'dave@' }), [2]);
    assert.deepEqual(await seqs({ kind: 'address', field: 'cc', value: 'erin' }), [2]);
    assert.deepEqual(await seqs({ kind: 'address', field: 'bcc', value: 'secret' }), [3]);
    assert.deepEqual(await seqs({ kind: 'body', value: 'report' }), [2]);
    assert.deepEqual(await seqs({ kind: 'text', value: 'report' }), [1, 2]);
    assert.deepEqual(await seqs({ kind: 'header', field: 'X-Tag', value: 'BLU' }), [1]);
    // RFC 9051 §6.4.4: HEADER with an empty string matches every message that has the field.
    assert.deepEqual(await seqs({ kind: 'header', field: 'x-tag', value: '' }), [1]);
    assert.deepEqual(await seqs({ kind: 'header', field: 'Cc', value: '' }), [2]);
    assert.deepEqual(await seqs({ kind: 'not', key: { kind: 'header', field: 'Cc', value: '' } }), [1, 3]);

    // Combined with flags: the store is asked once per text key, and not at all when the cheap
    // keys leave nothing to check.
    c.calls.length = 0;
    assert.deepEqual(
      await seqs({ kind: 'and', keys: [{ kind: 'text', value: 'report' }, { kind: 'flag', flag: '\\Seen', present: false }, { kind: 'subject', value: 'lunch' }] }),
      [2],
    );
    assert.equal(c.calls.length, 2);
    c.calls.length = 0;
    assert.deepEqual(await seqs({ kind: 'and', keys: [{ kind: 'body', value: 'report' }, { kind: 'flag', flag: '\\Deleted', present: true }] }), []);
    assert.equal(c.calls.length, 0);
    c.calls.length = 0;
    assert.deepEqual(
      await seqs({ kind: 'or', a: { kind: 'subject', value: 'report' }, b: { kind: 'or', a: { kind: 'flag', flag: '\\Seen', present: true }, b: { kind: 'body', value: 'pizza' } } }),
      [1, 2, 3],
    );
    assert.deepEqual(await seqs({ kind: 'not', key: { kind: 'or', a: { kind: 'subject', value: 'lunch' }, b: { kind: 'address', field: 'from', value: 'frank' } } }), [1]);
  } finally {
    await cleanup();
  }
});

test('SENTBEFORE, SENTON and SENTSINCE use the day written in Date:, across DST changes (imaptest search-date)', async () => {
  const { store, cleanup } = await openTestStore();
  try {
    const mb = await mailbox(store);
    await append(store, mb, readMbox(`${IMAPTEST}/search-date.mbox`));
    const entries = await store.listEntries(mb);
    assert.equal(entries.length, 16);
    const view: SearchView = searchViewOf(entries, { store, mailboxId: mb, sentDays: createSentDayCache(4), timezoneOffset: () => 0 });
    const sent = (op: 'before' | 'on' | 'since', date: string, from = 1, to = 16): SearchKey => ({
      kind: 'and',
      keys: [{ kind: 'seqset', set: { ranges: [[from, to]] } }, { kind: 'sentdate', op, date }],
    });
    const seqs = async (k: SearchKey) => (await evaluateSearch(k, view)).map((i) => i + 1);
    assert.deepEqual(await seqs(sent('before', '2007-03-24')), []);
    assert.deepEqual(await seqs(sent('before', '2007-03-25')), [1]);
    assert.deepEqual(await seqs(sent('before', '2007-03-26')), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(await seqs(sent('on', '2007-03-25')), [2, 3, 4, 5, 6]);
    assert.deepEqual(await seqs(sent('on', '2007-03-26')), [7]);
    assert.deepEqual(await seqs(sent('since', '2007-03-25', 1, 7)), [2, 3, 4, 5, 6, 7]);
    assert.deepEqual(await seqs(sent('since', '2007-03-27', 1, 7)), []);
    assert.deepEqual(await seqs(sent('before', '2007-10-28', 8)), [8]);
    assert.deepEqual(await seqs(sent('on', '2007-10-28', 8)), [9, 10, 11, 12, 13, 14, 15]);
    assert.deepEqual(await seqs(sent('since', '2007-10-29', 8)), [16]);
    assert.deepEqual(await seqs({ kind: 'and', keys: [{ kind: 'seqset', set: { ranges: [[1, 7]] } }, { kind: 'not', key: { kind: 'sentdate', op: 'on', date: '2007-03-25' } }] }), [1, 7]);
    assert.deepEqual(await seqs({ kind: 'and', keys: [{ kind: 'seqset', set: { ranges: [[8, '*']] } }, { kind: 'not', key: { kind: 'sentdate', op: 'on', date: '2007-10-28' } }] }), [8, 16]);
  } finally {
    await cleanup();
  }
});

test('a message without Date: is searched and sorted by its INTERNALDATE', async () => {
  const { store, cleanup } = await openTestStore();
  try {
    const mb = await mailbox(store);
    await append(store, mb, [
      { raw: Buffer.from('Subject: no date\r\n\r\nbody\r\n'), internalDate: Date.UTC(2020, 4, 5, 10) },
      { raw: Buffer.from('Subject: dated\r\nDate: Mon, 4 May 2020 23:00:00 -0500\r\n\r\nbody\r\n'), internalDate: Date.UTC(2020, 0, 1) },
    ]);
    const entries = await store.listEntries(mb);
    const view: SearchView = searchViewOf(entries, { store, mailboxId: mb, timezoneOffset: () => 0 });
    assert.deepEqual(await evaluateSearch({ kind: 'sentdate', op: 'on', date: '2020-05-05' }, view), [0]);
    assert.deepEqual(await evaluateSearch({ kind: 'sentdate', op: 'on', date: '2020-05-04' }, view), [1]);
    // Sorted by DATE: 2020-05-05 04:00 UTC (message 2) before 2020-05-05 10:00 UTC (message 1).
    assert.deepEqual(await sortMessages([0, 1], [{ key: 'DATE', reverse: false }], sortViewOf(entries, store)), [1, 0]);
  } finally {
    await cleanup();
  }
});

async function sortedMbox(file: string, criteria: SortCriterion[]): Promise<number[]> {
  const { store, cleanup } = await openTestStore();
  try {
    const mb = await mailbox(store);
    await append(store, mb, readMbox(`${IMAPTEST}/${file}`));
    const entries = await store.listEntries(mb);
    const all = entries.map((_, i) => i);
    return (await sortMessages(all, criteria, storeSortView(store, mb, entries.map((e) => e.uid)))).map((i) => i + 1);
  } finally {
    await cleanup();
  }
}

test('SORT by base subject, reversed and with a second key, as imaptest sort-subject expects', async () => {
  assert.deepEqual(await sortedMbox('sort-subject.mbox', [{ key: 'SUBJECT', reverse: false }]), [9, 10, 1, 14, 3, 5, 11, 6, 15, 2, 7, 12, 13, 8, 4]);
  assert.deepEqual(await sortedMbox('sort-subject.mbox', [{ key: 'SUBJECT', reverse: true }]), [4, 8, 2, 7, 12, 13, 15, 6, 3, 5, 11, 14, 1, 9, 10]);
  assert.deepEqual(
    await sortedMbox('sort-subject.mbox', [{ key: 'SUBJECT', reverse: false }, { key: 'SIZE', reverse: true }]),
    [10, 9, 1, 14, 11, 5, 3, 6, 15, 13, 12, 7, 2, 8, 4],
  );
});

test('SORT by DATE falls back to INTERNALDATE, as imaptest sort-date expects', async () => {
  assert.deepEqual(await sortedMbox('sort-date.mbox', [{ key: 'DATE', reverse: false }]), [1, 3, 7, 5, 2, 4, 6]);
  assert.deepEqual(await sortedMbox('sort-date.mbox', [{ key: 'DATE', reverse: true }]), [2, 4, 6, 5, 3, 7, 1]);
  assert.deepEqual(await sortedMbox('sort-date.mbox', [{ key: 'DATE', reverse: false }, { key: 'SIZE', reverse: true }]), [1, 7, 3, 5, 6, 4, 2]);
});

test('SORT by FROM, TO, CC compares the first mailbox; REVERSE keeps ties in sequence order', async () => {
  for (const key of ['FROM', 'TO', 'CC'] as const) {
    assert.deepEqual(await sortedMbox('sort-addresses.mbox', [{ key, reverse: false }]), [3, 1, 2], key);
    assert.deepEqual(await sortedMbox('sort-addresses.mbox', [{ key, reverse: true }]), [1, 2, 3], key);
    assert.deepEqual(await sortedMbox('sort-addresses.mbox', [{ key, reverse: false }, { key: 'ARRIVAL', reverse: true }]), [3, 2, 1], key);
  }
});

test('SORT by DISPLAYFROM uses the decoded display name, else the address (RFC 5957)', async () => {
  assert.deepEqual(await sortedMbox('sort-display-from.mbox', [{ key: 'DISPLAYFROM', reverse: false }]), [2, 3, 4, 1, 5]);
  assert.deepEqual(await sortedMbox('sort-display-from.mbox', [{ key: 'DISPLAYFROM', reverse: true }]), [5, 1, 4, 3, 2]);
});

test('SORT by ARRIVAL and SIZE, with ties in sequence order, as imaptest expects', async () => {
  assert.deepEqual(await sortedMbox('sort-arrival.mbox', [{ key: 'ARRIVAL', reverse: false }]), [1, 3, 2, 4, 5]);
  assert.deepEqual(await sortedMbox('sort-arrival.mbox', [{ key: 'ARRIVAL', reverse: true }]), [2, 4, 5, 3, 1]);
  assert.deepEqual(await sortedMbox('sort-arrival.mbox', [{ key: 'ARRIVAL', reverse: false }, { key: 'SIZE', reverse: true }]), [1, 3, 5, 4, 2]);
  assert.deepEqual(await sortedMbox('sort-size.mbox', [{ key: 'SIZE', reverse: false }]), [1, 8, 2, 6, 3, 5, 4, 7]);
  assert.deepEqual(await sortedMbox('sort-size.mbox', [{ key: 'SIZE', reverse: true }]), [4, 7, 3, 5, 2, 6, 1, 8]);
  assert.deepEqual(await sortedMbox('sort-size.mbox', [{ key: 'SIZE', reverse: false }, { key: 'ARRIVAL', reverse: true }]), [8, 1, 6, 2, 5, 3, 7, 4]);
});

test('SORT by DISPLAYTO, as imaptest sort-display-to expects', async () => {
  assert.deepEqual(await sortedMbox('sort-display-to.mbox', [{ key: 'DISPLAYTO', reverse: false }]), [6, 2, 3, 8, 4, 1, 5, 7]);
  assert.deepEqual(await sortedMbox('sort-display-to.mbox', [{ key: 'DISPLAYTO', reverse: true }]), [7, 5, 1, 4, 8, 3, 2, 6]);
});
