/**
 * WAL frames per write of each kind the mixed IMAP workload does (bench/imap, imaptest): a flag
 * change on one message, an APPEND, an EXPUNGE of one message, B jobs per transaction (group
 * commit; default 14, what the mixed workload's batches hold), over 10 mailboxes of 100 messages
 * of the benchmark corpus (1-6 KB). Checkpoints held off; frames mapped to tables and indexes with
 * dbstat, as wal-frames.ts does. Deterministic: the same figures on every run.
 *
 *   node --import tsx bench/store/wal-ops.ts            # B=1 for one job per transaction
 *   ROOT=/path/to/other/checkout node --import tsx bench/store/wal-ops.ts
 */
import { mkdtempSync, statSync, openSync, readSync, closeSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
const root = process.env.ROOT ?? fileURLToPath(new URL('../..', import.meta.url));
const { openSqliteStore } = await import(join(root, 'src/store/sql/sqlite/sqlite-store.ts'));
const { parseMessage } = await import(join(root, 'src/mail/parse.ts'));
const { corpus } = await import(join(root, 'bench/imap/corpus.ts'));
const B = Number(process.env.B ?? 14);
const dir = mkdtempSync(join(tmpdir(), 'facteur-wal-ops-'));
const store = await openSqliteStore({ dir, checkpointIntervalMs: 3_600_000 });
await store.addDomain('example.com');
const accts: Array<{ id: number }> = [];
const msgs = [...corpus(7, 4000, 'x@example.com')];
let mi = 0;
for (let a = 0; a < 10; a++) {
  const acc = await store.createAccount({ address: `u${a}@example.com`, passwordHash: 'h' });
  const inbox = await store.getMailbox(acc.id, 'INBOX');
  await store.appendMany(inbox.id, msgs.slice(mi, mi + 100).map((m) => ({ raw: m.raw, parsed: parseMessage(m.raw), internalDate: m.time })));
  mi += 100;
  accts.push(inbox);
}
const wal = join(dir, 'facteur.db-wal');
const frame = 4096 + 24;
async function measure(name: string, N: number, op: (i: number) => Promise<unknown>) {
  const before = statSync(wal).size;
  for (let i = 0; i < N; i += B) await Promise.all(Array.from({ length: Math.min(B, N - i) }, (_, k) => op(i + k)));
  const grown = statSync(wal).size - before;
  const fd = openSync(wal, 'r'); const pages: number[] = []; const h = Buffer.alloc(4);
  for (let at = before; at + frame <= before + grown; at += frame) { readSync(fd, h, 0, 4, at); pages.push(h.readUInt32BE(0)); }
  closeSync(fd);
  const reader = new Database(join(dir, 'facteur.db'), { readonly: true });
  const owner = new Map((reader.prepare('SELECT name, pageno FROM dbstat').all() as Array<{ name: string; pageno: number }>).map((r) => [r.pageno, r.name]));
  reader.close();
  const by = new Map<string, number>();
  for (const p of pages) { const n = p === 1 ? '(page 1)' : (owner.get(p) ?? '(free/other)'); by.set(n, (by.get(n) ?? 0) + 1); }
  console.log(`${name}: ${(grown / frame / N).toFixed(1)} frames per job (batch ${B})  ` + [...by].sort((a, b) => b[1] - a[1]).slice(0, 12).map(([n, c]) => `${n} ${(c / N).toFixed(2)}`).join(', '));
}
const uidsOf = new Map<number, number[]>();
for (const m of accts) uidsOf.set(m.id, Array.from({ length: 100 }, (_, i) => i + 1));
await measure("STORE", Number(process.env.N ?? 280), async (i) => { const m = accts[i % 10]!; const u = uidsOf.get(m.id)!; return store.setFlags(m.id, [u[(i * 7) % u.length]], i % 2 ? 'add' : 'remove', ['\\Seen']); });
await measure("APPEND", Number(process.env.N ?? 280), async (i) => { const m = accts[i % 10]!; const x = msgs[mi++]!; const r = await store.append(m.id, { raw: x.raw, parsed: parseMessage(x.raw), internalDate: x.time }); uidsOf.get(m.id)!.push(r.uid); });
await measure("EXPUNGE", Number(process.env.N ?? 280), async (i) => { const m = accts[i % 10]!; const u = uidsOf.get(m.id)!; const uid = u.shift()!; return store.expunge(m.id, [uid]); });
await store.close();
rmSync(dir, { recursive: true, force: true });
