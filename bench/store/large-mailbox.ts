/**
 * Times the store operations a session runs on one mailbox of N messages (default 100,000):
 * listEntries, counts, STORE 1:* (changing and unchanged), changesSince, search, COPY, EXPUNGE.
 *
 *   node --import tsx bench/store/large-mailbox.ts [messages]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { asModSeq, asUid } from '../../src/lib/brand.js';
import type { Uid } from '../../src/lib/brand.js';
import { parseMessage } from '../../src/mail/parse.js';
import { openSqliteStore } from '../../src/store/sql/sqlite/sqlite-store.js';
import type { AppendInput } from '../../src/store/types.js';
import { makeMessage } from '../../test/helpers/messages.js';

const total = Number(process.argv[2] ?? 100_000);
const dir = await mkdtemp(join(tmpdir(), 'facteur-bench-large-'));
const store = await openSqliteStore({ dir });

async function time<T>(label: string, fn: () => Promise<T>): Promise<T> {
  const start = performance.now();
  const result = await fn();
  console.log(`${label.padEnd(44)} ${(performance.now() - start).toFixed(0).padStart(7)} ms`);
  return result;
}

try {
  await store.addDomain('example.com');
  const account = await store.createAccount({ address: 'big@example.com', passwordHash: 'x' });
  const inbox = (await store.getMailbox(account.id, 'INBOX'))!;
  const archive = (await store.getMailbox(account.id, 'Archive'))!;
  await time(`append ${total} (appendMany, 500 per call)`, async () => {
    for (let i = 0; i < total; i += 500) {
      const batch: AppendInput[] = [];
      for (let j = i; j < Math.min(total, i + 500); j++) {
        const raw = makeMessage({
          from: `sender${j % 97}@example.org`,
          to: 'big@example.com',
          subject: `message number ${j} about topic ${j % 13}`,
          body: `body of message ${j}\r\n${'text '.repeat(40)}\r\n`,
        });
        batch.push({ raw, parsed: parseMessage(raw) });
      }
      await store.appendMany(inbox.id, batch);
    }
  });
  const all: Uid[] = Array.from({ length: total }, (_, i) => asUid(i + 1));
  const entries = await time('listEntries', () => store.listEntries(inbox.id));
  if (entries.length !== total) throw new Error('count mismatch');
  await time('mailboxCounts', () => store.mailboxCounts(inbox.id));
  const before = (await store.getMailboxById(inbox.id))!;
  await time('setFlags 1:* +\\Seen (all change)', () => store.setFlags(inbox.id, all, 'add', ['\\Seen']));
  await time('setFlags 1:* +\\Seen (none change)', () => store.setFlags(inbox.id, all, 'add', ['\\Seen']));
  await time('setFlags 1:* +$Keyword', () => store.setFlags(inbox.id, all, 'add', ['$Keyword']));
  await time('setFlags 100 uids -\\Seen', () => store.setFlags(inbox.id, all.slice(5000, 5100), 'remove', ['\\Seen']));
  await time('changesSince (all changed)', () => store.changesSince(inbox.id, before.highestModSeq, before.uidNext));
  await time('changesSince (nothing new)', async () => {
    const m = (await store.getMailboxById(inbox.id))!;
    return store.changesSince(inbox.id, asModSeq(m.highestModSeq), m.uidNext);
  });
  await time('getEntries 100 uids', () => store.getEntries(inbox.id, all.slice(40_000, 40_100)));
  await time('searchText subject "number 4242"', () => store.searchText(inbox.id, { field: 'subject', value: 'number 4242' }));
  await time('searchText body "message 99999"', () => store.searchText(inbox.id, { field: 'body', value: 'message 99999' }));
  await time('searchText text "sender5@"', () => store.searchText(inbox.id, { field: 'text', value: 'sender5@' }));
  await time('searchText subject "xy" (scan)', () => store.searchText(inbox.id, { field: 'subject', value: 'xy' }));
  await time('copy 10,000 to Archive', () => store.copy(inbox.id, all.slice(0, 10_000), archive.id));
  await time('move 10,000 to Archive', () => store.move(inbox.id, all.slice(10_000, 20_000), archive.id));
  await time('setFlags 1:* +\\Deleted', () => store.setFlags(inbox.id, all, 'add', ['\\Deleted']));
  await time('expunge (80,000 \\Deleted)', () => store.expunge(inbox.id));
  await time('checkConsistency', async () => {
    const problems = await store.checkConsistency();
    if (problems.length > 0) throw new Error(problems.join('\n'));
  });
} finally {
  await store.close();
  await rm(dir, { recursive: true, force: true });
}
