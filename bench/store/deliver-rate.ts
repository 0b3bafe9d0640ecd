/**
 * Measures durable deliveries per second into the SQLite store: 1 KB messages, each to one
 * account's INBOX, with 1 and 50 concurrent callers (group commit batches the latter).
 *
 *   node --import tsx bench/store/deliver-rate.ts [seconds-per-run]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseMessage } from '../../src/mail/parse.js';
import { openSqliteStore } from '../../src/store/sql/sqlite/sqlite-store.js';
import { makeMessage } from '../../test/helpers/messages.js';

const seconds = Number(process.argv[2] ?? 5);

async function run(concurrency: number): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'facteur-bench-'));
  const store = await openSqliteStore({ dir });
  try {
    await store.addDomain('example.com');
    const account = await store.createAccount({ address: 'bench@example.com', passwordHash: 'x' });
    let n = 0;
    const until = Date.now() + seconds * 1000;
    const worker = async (w: number): Promise<void> => {
      while (Date.now() < until) {
        // Distinct content per message, as in real traffic (no blob dedup help): ~1 KB.
        const raw = makeMessage({
          from: 'sender@example.org',
          to: 'bench@example.com',
          subject: `bench ${w} ${n}`,
          body: `${'lorem ipsum dolor sit amet '.repeat(30)}\r\n${w}-${n}\r\n`,
        });
        await store.deliver(raw, parseMessage(raw), [{ accountId: account.id }]);
        n += 1;
      }
    };
    const start = performance.now();
    await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
    const elapsed = (performance.now() - start) / 1000;
    const problems = await store.checkConsistency();
    if (problems.length > 0) throw new Error(problems.join('\n'));
    return n / elapsed;
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

for (const c of [1, 50]) {
  const rate = await run(c);
  console.log(`${c} concurrent caller(s): ${rate.toFixed(0)} durable deliveries/s`);
}
