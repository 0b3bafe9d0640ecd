/**
 * SORT and THREAD as the store ranks and numbers the keys (storeSortView) against a plain
 * implementation over the keys as strings (test/helpers/thread-reference.ts), on random mailboxes
 * from a seeded generator: duplicate and missing Message-IDs, reference loops, replies and
 * forwards, empty subjects, ties in dates, messages without Date:, expunges, copies and moves.
 * A failing seed replays.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { openTestStore } from '../../helpers/store.js';
import { prng } from '../../helpers/prng.js';
import { referenceSort, referenceThread } from '../../helpers/thread-reference.js';
import { parseMessage } from '../../../src/mail/parse.js';
import { sortMessages, sortViewOf, storeSortView } from '../../../src/imap/search/sort.js';
import { threadForest, threadMessages, threadResponseText, threadValue } from '../../../src/imap/search/thread.js';
import type { SortCriterion } from '../../../src/imap/protocol/ast.js';
import type { AppendInput, MailStore } from '../../../src/store/types.js';
import type { MailboxId } from '../../../src/lib/brand.js';
import { wireItems } from '../wire.js';

const encoded = (s: string): string => `=?UTF-8?B?${Buffer.from(s).toString('base64')}?=`;
const SUBJECTS = ['hello', 'Re: hello', 'Fwd: hello', 'RE: [list] hello', 'hello (fwd)', 'news', 'Re: news', '', 'Re:', encoded('Ünïcode'), encoded('ünïcode'), 'Re: Re: news'];
const PEOPLE = ['"Zoé" <zoe@example.org>', 'al@example.com', '"al" <AL@example.com>', 'undisclosed: ;', '"" <b@x>', encoded('Émile') + ' <e@x>'];
const KEYS: Array<SortCriterion['key']> = ['ARRIVAL', 'SIZE', 'DATE', 'SUBJECT', 'FROM', 'TO', 'CC', 'DISPLAYFROM', 'DISPLAYTO'];

function randomMessages(rand: () => number, n: number): AppendInput[] {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(rand() * list.length)]!;
  const id = (): string => `m${Math.floor(rand() * n * 0.7)}@x`;
  const out: AppendInput[] = [];
  for (let k = 0; k < n; k++) {
    const lines: string[] = [];
    if (rand() < 0.9) lines.push(`Message-ID: <${id()}>`);
    const refs = Array.from({ length: Math.floor(rand() * 5) }, id);
    if (refs.length > 0 && rand() < 0.8) lines.push(`References: ${refs.map((r) => `<${r}>`).join(' ')}`);
    else if (refs.length > 0) lines.push(`In-Reply-To: <${refs[0]}>`);
    // Few distinct dates: ties. Some messages have none, or one that cannot be read.
    const day = Date.UTC(2024, 0, 1 + Math.floor(rand() * 4), Math.floor(rand() * 3));
    if (rand() < 0.85) lines.push(`Date: ${new Date(day).toUTCString()}`);
    else if (rand() < 0.5) lines.push('Date: not a date');
    lines.push(`Subject: ${pick(SUBJECTS)}`, `From: ${pick(PEOPLE)}`, `To: ${pick(PEOPLE)}`);
    if (rand() < 0.5) lines.push(`Cc: ${pick(PEOPLE)}`);
    const raw = Buffer.from(`${lines.join('\r\n')}\r\n\r\n${'x'.repeat(Math.floor(rand() * 4))}\r\n`);
    out.push({ raw, parsed: parseMessage(raw), internalDate: Date.UTC(2024, 0, 1 + Math.floor(rand() * 3)) });
  }
  return out;
}

async function compare(store: MailStore, mailboxId: MailboxId, rand: () => number, label: string): Promise<void> {
  const entries = await store.listEntries(mailboxId);
  const keys = await store.listSortKeys(mailboxId);
  assert.deepEqual(keys.map((k) => k.uid), entries.map((e) => e.uid), `${label}: every entry has its keys`);
  const uids = entries.map((e) => e.uid);
  const view = storeSortView(store, mailboxId, uids);
  const all = entries.map((_, i) => i);
  for (const algorithm of ['REFERENCES', 'ORDEREDSUBJECT'] as const) {
    const got = await wireItems(threadValue(await threadMessages(all, algorithm, view), (i) => i + 1));
    const want = await wireItems(threadValue(referenceThread(keys, algorithm), (i) => i + 1));
    assert.equal(got, want, `${label}: THREAD ${algorithm}`);
    // The response text the handler writes, by UID (UID THREAD), against the reference's.
    const text = threadResponseText(await threadForest(Int32Array.from(all), algorithm, view), (i) => uids[i]!);
    const wantUids = await wireItems([{ atom: 'THREAD' }, ...threadValue(referenceThread(keys, algorithm), (i) => uids[i]!)]);
    assert.equal(`THREAD${text === '' ? '' : ` ${text}`}`, wantUids, `${label}: THREAD ${algorithm} response text`);
  }
  const parsedView = sortViewOf(entries, store);
  for (let t = 0; t < 12; t++) {
    const criteria: SortCriterion[] = Array.from({ length: 1 + Math.floor(rand() * 3) }, () => ({
      key: KEYS[Math.floor(rand() * KEYS.length)]!,
      reverse: rand() < 0.5,
    }));
    const subset = all.filter(() => rand() < 0.7);
    const want = referenceSort(keys, subset, criteria);
    const what = `${label}: SORT (${criteria.map((c) => `${c.reverse ? 'REVERSE ' : ''}${c.key}`).join(' ')})`;
    assert.deepEqual(await sortMessages(subset, criteria, view), want, what);
    assert.deepEqual(await sortMessages(subset, criteria, parsedView), want, `${what}, from the parse records`);
  }
}

for (const seed of [1, 2, 3, 4, 5]) {
  test(`SORT and THREAD from the store's ranks and numbers equal the plain ones on a random mailbox (seed ${seed})`, async () => {
    const rand = prng(seed);
    const { store, cleanup } = await openTestStore();
    try {
      await store.addDomain('example.com');
      const account = await store.createAccount({ address: 'bob@example.com', passwordHash: 'x' });
      const inbox = (await store.getMailbox(account.id, 'INBOX'))!;
      const other = await store.createMailbox(account.id, 'Other');
      const messages = randomMessages(rand, 150);
      await store.appendMany(inbox.id, messages.slice(0, 100));
      for (const m of messages.slice(100, 120)) await store.append(inbox.id, m);
      // The same content twice (one blob, two entries), expunges, then more messages.
      await store.appendMany(inbox.id, messages.slice(0, 5));
      const uids = (await store.listEntries(inbox.id)).map((e) => e.uid);
      await store.expunge(inbox.id, uids.filter(() => rand() < 0.15));
      await store.appendMany(inbox.id, messages.slice(120));
      const left = (await store.listEntries(inbox.id)).map((e) => e.uid);
      await store.copy(inbox.id, left.filter(() => rand() < 0.3), other.id);
      await store.move(inbox.id, left.filter(() => rand() < 0.2), other.id);
      await compare(store, inbox.id, rand, `seed ${seed} INBOX`);
      await compare(store, other.id, rand, `seed ${seed} Other`);
      assert.deepEqual(await store.checkConsistency(), []);
    } finally {
      await cleanup();
    }
  });
}

test('SORT and THREAD of a mailbox whose UIDs are sparse (most messages expunged) equal the plain ones', async () => {
  const rand = prng(7);
  const { store, cleanup } = await openTestStore();
  try {
    await store.addDomain('example.com');
    const account = await store.createAccount({ address: 'bob@example.com', passwordHash: 'x' });
    const inbox = (await store.getMailbox(account.id, 'INBOX'))!;
    // UIDs up to 1,200 for 40 messages: the positions of the store's rows are found by binary search.
    await store.appendMany(inbox.id, randomMessages(rand, 1200));
    const uids = (await store.listEntries(inbox.id)).map((e) => e.uid);
    await store.expunge(inbox.id, uids.filter((u) => u % 30 !== 0));
    await compare(store, inbox.id, rand, 'sparse UIDs');
  } finally {
    await cleanup();
  }
});

test('SORT and THREAD of an empty mailbox answer nothing', async () => {
  const { store, cleanup } = await openTestStore();
  try {
    await store.addDomain('example.com');
    const account = await store.createAccount({ address: 'bob@example.com', passwordHash: 'x' });
    const inbox = (await store.getMailbox(account.id, 'INBOX'))!;
    const view = storeSortView(store, inbox.id, []);
    assert.deepEqual(await sortMessages([], [{ key: 'DATE', reverse: true }], view), []);
    assert.deepEqual(await threadMessages([], 'REFERENCES', view), []);
    assert.deepEqual(await threadMessages([], 'ORDEREDSUBJECT', view), []);
  } finally {
    await cleanup();
  }
});
