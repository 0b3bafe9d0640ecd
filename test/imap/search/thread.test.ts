import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { openTestStore } from '../../helpers/store.js';
import { parseMessage } from '../../../src/mail/parse.js';
import { sortViewOf, storeSortView } from '../../../src/imap/search/sort.js';
import { threadMessages, threadValue, type ThreadAlgorithm } from '../../../src/imap/search/thread.js';
import type { MailStore } from '../../../src/store/types.js';
import { asUid } from '../../../src/lib/brand.js';
import { readMbox } from '../mbox.js';
import { wireItems } from '../wire.js';

const IMAPTEST = '/work/shared/imaptest-tests';

/** Stores the mbox's messages (the first `count`), expunges the 1-based `expunge` ones, and
 * returns the THREAD response text over what is left, numbered by sequence. */
async function threads(file: string, algorithm: ThreadAlgorithm, opts: { count?: number; expunge?: number[]; then?: number[] } = {}): Promise<string> {
  const { store, cleanup } = await openTestStore();
  try {
    await store.addDomain('example.com');
    const account = await store.createAccount({ address: 'bob@example.com', passwordHash: 'x' });
    const inbox = (await store.getMailbox(account.id, 'INBOX'))!;
    const msgs = readMbox(`${IMAPTEST}/${file}`);
    const add = async (ms: typeof msgs): Promise<void> => {
      for (const m of ms) await store.append(inbox.id, { raw: m.raw, parsed: parseMessage(m.raw), internalDate: m.internalDate });
    };
    await add(msgs.slice(0, opts.count ?? msgs.length));
    if (opts.expunge !== undefined) {
      const entries = await store.listEntries(inbox.id);
      await store.expunge(inbox.id, opts.expunge.map((n) => asUid(entries[n - 1]!.uid)));
    }
    if (opts.then !== undefined) await add(opts.then.map((n) => msgs[n - 1]!));
    return await threadOf(store, inbox.id, algorithm);
  } finally {
    await cleanup();
  }
}

async function threadOf(store: MailStore, mailboxId: Parameters<MailStore['listEntries']>[0], algorithm: ThreadAlgorithm): Promise<string> {
  const entries = await store.listEntries(mailboxId);
  const tree = await threadMessages(
    entries.map((_, i) => i),
    algorithm,
    storeSortView(store, mailboxId, entries.map((e) => e.uid)),
  );
  return wireItems([{ atom: 'THREAD' }, ...threadValue(tree, (i) => i + 1)]);
}

test('THREAD=ORDEREDSUBJECT groups by base subject under the earliest message (imaptest)', async () => {
  assert.equal(await threads('thread-orderedsubject.mbox', 'ORDEREDSUBJECT'), 'THREAD (1)(2 (7)(12)(13))(3 (5)(11))(4)(6)(8)(9 10)(14)(15)');
  assert.equal(await threads('thread-orderedsubject2.mbox', 'ORDEREDSUBJECT'), 'THREAD (4 (2)(8)(6))(3 (1)(7)(5))');
});

test('THREAD=REFERENCES links by References, lets a message override links others made, and breaks loops', async () => {
  assert.equal(await threads('thread.mbox', 'REFERENCES'), 'THREAD (3 2)(1)');
  assert.equal(await threads('thread.mbox', 'REFERENCES', { expunge: [1] }), 'THREAD (2 1)');
});

test('THREAD=REFERENCES treats duplicate Message-IDs as distinct and joins replies by subject', async () => {
  assert.equal(await threads('thread2.mbox', 'REFERENCES'), 'THREAD (1)(2)');
  assert.equal(await threads('thread3.mbox', 'REFERENCES'), 'THREAD (1 2)');
  assert.equal(await threads('thread4.mbox', 'REFERENCES'), 'THREAD (1 2)');
});

test('THREAD=REFERENCES keeps a dummy root with several children and promotes a single child', async () => {
  assert.equal(await threads('thread6.mbox', 'REFERENCES'), 'THREAD ((1)(2))');
  assert.equal(await threads('thread5.mbox', 'REFERENCES', { count: 4 }), 'THREAD (1 (2 4)(3))');
  assert.equal(await threads('thread5.mbox', 'REFERENCES', { count: 4, expunge: [1, 2] }), 'THREAD (1)(2)');
  assert.equal(await threads('thread5.mbox', 'REFERENCES', { count: 4, expunge: [1, 2], then: [5] }), 'THREAD (1)((2)(3))');
});

test('THREAD of no message is an empty THREAD response', async () => {
  assert.deepEqual(threadValue([], (i) => i), []);
});

test('a References chain of thousands of messages threads without exhausting the stack', async () => {
  const { store, cleanup } = await openTestStore();
  try {
    await store.addDomain('example.com');
    const account = await store.createAccount({ address: 'bob@example.com', passwordHash: 'x' });
    const inbox = (await store.getMailbox(account.id, 'INBOX'))!;
    const inputs = [];
    for (let i = 0; i < 3000; i++) {
      const raw = Buffer.from(`Message-ID: <m${i}@x>\r\n${i > 0 ? `In-Reply-To: <m${i - 1}@x>\r\n` : ''}Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nb\r\n`);
      inputs.push({ raw, parsed: parseMessage(raw) });
    }
    await store.appendMany(inbox.id, inputs);
    const entries = await store.listEntries(inbox.id);
    const tree = await threadMessages(entries.map((_, i) => i), 'REFERENCES', sortViewOf(entries, store));
    let count = 0;
    const stack = [...tree];
    while (stack.length > 0) {
      const n = stack.pop()!;
      if (n.index !== null) count++;
      stack.push(...n.children);
    }
    assert.equal(count, 3000);
    const text = await wireItems(threadValue(tree, (i) => i + 1));
    assert.match(text, /^\(1 2 3 4 5 /);
  } finally {
    await cleanup();
  }
});
