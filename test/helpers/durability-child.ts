/**
 * Child process for test/store/durability.test.ts: appends messages to bob@example.com's INBOX
 * without end, several at a time, and prints "ack <n> <uid>" only after each append resolved.
 * The parent kills it with SIGKILL and checks that every acknowledged message survived.
 *
 *   node --import tsx test/helpers/durability-child.ts <data-dir> <run-tag>
 */
import { openSqliteStore } from '../../src/store/sql/sqlite/sqlite-store.js';
import { testMessage } from './store.js';

const [dir, tag] = process.argv.slice(2);
if (dir === undefined || tag === undefined) throw new Error('usage: durability-child.ts <data-dir> <run-tag>');
// Odd messages are larger than this, so both inline and file blobs are exercised.
const store = await openSqliteStore({ dir, blobs: { inlineMaxBytes: 4096 } });
const account = await store.getAccountByAddress('bob@example.com');
if (account === null) throw new Error('bob@example.com missing');
const inbox = await store.getMailbox(account.id, 'INBOX');
if (inbox === null) throw new Error('INBOX missing');

const CONCURRENCY = 8;
let next = 0;
async function worker(): Promise<void> {
  for (;;) {
    const n = next++;
    const body = n % 2 === 1 ? `large ${n}\r\n${'z'.repeat(10_000)}\r\n` : `small ${n}\r\n`;
    const r = await store.append(inbox!.id, testMessage({ subject: `durable ${tag}-${n}`, body }));
    process.stdout.write(`ack ${tag}-${n} ${r.uid}\n`);
  }
}
process.stdout.write('ready\n');
await Promise.all(Array.from({ length: CONCURRENCY }, () => worker()));
