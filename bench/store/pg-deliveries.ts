/**
 * Durable deliveries per second into the PostgreSQL store, through one store instance and
 * through two (two Facteur nodes on one database): 1 KB messages of distinct content, each to
 * one of 20 accounts' INBOX, with 1 and 32 concurrent callers per instance. Runs in a fresh
 * schema, dropped at the end; checks consistency after each run.
 *
 *   FACTEUR_TEST_PG=postgres://postgres@127.0.0.1:5432/test node --import tsx bench/store/pg-deliveries.ts [seconds-per-run]
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { parseMessage } from '../../src/mail/parse.js';
import { openPgStore } from '../../src/store/sql/postgres/pg-store.js';
import type { AccountId } from '../../src/lib/brand.js';
import type { MailStore } from '../../src/store/types.js';
import { makeMessage } from '../../test/helpers/messages.js';

const url = process.env.FACTEUR_TEST_PG;
if (url === undefined || url === '') {
  console.error('set FACTEUR_TEST_PG=postgres://user@host:port/db');
  process.exit(2);
}
const seconds = Number(process.argv[2] ?? 5);
const ACCOUNTS = 20;

async function run(instances: number, concurrency: number, notifyAfterCommit: boolean): Promise<{ rate: number; p50: number; p99: number }> {
  const schema = `bench_${randomBytes(6).toString('hex')}`;
  const stores: MailStore[] = [];
  for (let i = 0; i < instances; i++) stores.push(await openPgStore({ url: url!, schema, notifyAfterCommit }));
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  try {
    const first = stores[0]!;
    await first.addDomain('example.com');
    const accounts: AccountId[] = [];
    for (let i = 0; i < ACCOUNTS; i++) accounts.push((await first.createAccount({ address: `u${i}@example.com`, passwordHash: 'x' })).id);
    let n = 0;
    const latencies: number[] = [];
    const until = Date.now() + seconds * 1000;
    const worker = async (store: MailStore, w: number): Promise<void> => {
      while (Date.now() < until) {
        const raw = makeMessage({
          from: 'sender@example.org',
          to: 'u@example.com',
          subject: `bench ${w} ${n}`,
          body: `${'lorem ipsum dolor sit amet '.repeat(30)}\r\n${w}-${n}-${Math.random()}\r\n`,
        });
        const account = accounts[(w * 7 + n) % ACCOUNTS]!;
        const t0 = performance.now();
        await store.deliver(raw, parseMessage(raw), [{ accountId: account }]);
        latencies.push(performance.now() - t0);
        n += 1;
      }
    };
    const start = performance.now();
    await Promise.all(stores.flatMap((s, i) => Array.from({ length: concurrency }, (_, w) => worker(s, i * concurrency + w))));
    const elapsed = (performance.now() - start) / 1000;
    const problems = await first.checkConsistency();
    if (problems.length > 0) throw new Error(`inconsistent after the run:\n${problems.join('\n')}`);
    latencies.sort((a, b) => a - b);
    const at = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
    return { rate: n / elapsed, p50: at(0.5), p99: at(0.99) };
  } finally {
    for (const s of stores) await s.close();
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await admin.end();
  }
}

console.log(`PostgreSQL store, ${seconds} s per run, 1 KB messages, ${ACCOUNTS} accounts`);
console.log('NOTIFY          instances  callers/instance  deliveries/s  p50 ms  p99 ms');
for (const notifyAfterCommit of [false, true]) {
  for (const [instances, concurrency] of [
    [1, 1],
    [1, 32],
    [2, 1],
    [2, 32],
  ] as const) {
    const r = await run(instances, concurrency, notifyAfterCommit);
    console.log(
      `${(notifyAfterCommit ? 'after COMMIT' : 'in transaction').padEnd(14)}  ${String(instances).padStart(9)}  ${String(concurrency).padStart(16)}  ${r.rate.toFixed(0).padStart(12)}  ${r.p50.toFixed(1).padStart(6)}  ${r.p99.toFixed(1).padStart(6)}`,
    );
  }
}
