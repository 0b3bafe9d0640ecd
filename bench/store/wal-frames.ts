/**
 * WAL frames written per delivery: what each delivery's fdatasync has to flush (SQLite store).
 * 400 deliveries of about 1 KB into one INBOX, one per transaction (each awaited), checkpoints
 * held off; the -wal file's growth divided by the frame size (page + 24-byte header).
 *
 *   node --import tsx bench/store/wal-frames.ts [REPO_ROOT] ["SQL to run first; ..."]
 *
 * REPO_ROOT (default: this checkout) lets the same script measure another commit's store from a
 * git worktree; the SQL (e.g. "DROP INDEX entries_pid") measures what one index or table costs.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';

const root = process.argv[2] || fileURLToPath(new URL('../..', import.meta.url));
const sql = process.argv[3] ?? '';
const { openSqliteStore } = await import(join(root, 'src/store/sql/sqlite/sqlite-store.ts'));
const { parseMessage } = await import(join(root, 'src/mail/parse.ts'));
const { makeMessage } = await import(join(root, 'test/helpers/messages.ts'));

const dir = mkdtempSync(join(tmpdir(), 'facteur-wal-frames-'));
try {
  // Created by one open; the optional SQL runs on the closed database.
  await (await openSqliteStore({ dir })).close();
  if (sql.trim() !== '') {
    const db = new Database(join(dir, 'facteur.db'));
    for (const statement of sql.split(';')) if (statement.trim() !== '') db.exec(statement);
    db.close();
  }
  const store = await openSqliteStore({ dir, checkpointIntervalMs: 3_600_000 });
  await store.addDomain('example.com');
  const account = await store.createAccount({ address: 'bob@example.com', passwordHash: 'h' });
  const message = (i: number): Buffer =>
    makeMessage({
      from: `s${i % 50}@sender.example`,
      to: 'bob@example.com',
      subject: `hello ${i} re`,
      body: `${'x'.repeat(900)}\r\nword${i}\r\n`,
      messageId: `<m${i}@bench.example>`,
    });
  const deliver = async (i: number): Promise<void> => {
    const raw = message(i);
    await store.deliver(raw, parseMessage(raw), [{ accountId: account.id }]);
  };
  for (let i = 0; i < 50; i++) await deliver(i); // tables and indexes past their first pages
  const wal = join(dir, 'facteur.db-wal');
  const N = 400;
  const before = statSync(wal).size;
  for (let i = 50; i < 50 + N; i++) await deliver(i);
  const grown = statSync(wal).size - before;
  console.log(`WAL frames per delivery: ${(grown / (4096 + 24) / N).toFixed(1)} (${(grown / N).toFixed(0)} bytes)`);
  await store.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
