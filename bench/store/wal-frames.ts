/**
 * WAL frames written per delivery: what each delivery's fdatasync has to flush (SQLite store).
 * 400 deliveries of about 1 KB into one INBOX, one per transaction (each awaited), checkpoints
 * held off; the -wal file's growth divided by the frame size (page + 24-byte header), and the
 * frames by table or index (the WAL's page numbers mapped with dbstat).
 *
 *   node --import tsx bench/store/wal-frames.ts [REPO_ROOT] ["SQL to run first; ..."]
 *   BATCH=8 node --import tsx bench/store/wal-frames.ts     # 8 deliveries per transaction (group
 *                                                           # commit under 8 concurrent senders)
 *
 * REPO_ROOT (default: this checkout) lets the same script measure another commit's store from a
 * git worktree; the SQL (e.g. "DROP INDEX entries_pid") measures what one index or table costs.
 */
import { closeSync, mkdtempSync, openSync, readSync, rmSync, statSync } from 'node:fs';
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
  // Deliveries started together are committed as one transaction (group commit).
  const batch = Math.max(1, Number(process.env.BATCH ?? 1));
  const before = statSync(wal).size;
  for (let i = 50; i < 50 + N; i += batch) await Promise.all(Array.from({ length: Math.min(batch, 50 + N - i) }, (_, k) => deliver(i + k)));
  const grown = statSync(wal).size - before;
  const frame = 4096 + 24;
  console.log(`WAL frames per delivery: ${(grown / frame / N).toFixed(1)} (${(grown / N).toFixed(0)} bytes), ${batch} per transaction`);
  // Which table or index each new frame's page belongs to (the first 4 bytes of a frame header).
  const fd = openSync(wal, 'r');
  const pages: number[] = [];
  const header = Buffer.alloc(4);
  for (let at = before; at + frame <= before + grown; at += frame) {
    readSync(fd, header, 0, 4, at);
    pages.push(header.readUInt32BE(0));
  }
  closeSync(fd);
  const reader = new Database(join(dir, 'facteur.db'), { readonly: true });
  const owner = new Map((reader.prepare('SELECT name, pageno FROM dbstat').all() as Array<{ name: string; pageno: number }>).map((r) => [r.pageno, r.name]));
  reader.close();
  const by = new Map<string, number>();
  for (const p of pages) {
    const name = p === 1 ? '(page 1)' : (owner.get(p) ?? '(free or other)');
    by.set(name, (by.get(name) ?? 0) + 1);
  }
  for (const [name, n] of [...by].sort((a, b) => b[1] - a[1])) console.log(`  ${(n / N).toFixed(2).padStart(6)}  ${name}`);
  await store.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
