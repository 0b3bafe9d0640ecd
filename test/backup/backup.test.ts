/**
 * `facteur backup` / `facteur restore` through the real CLI: a SQLite installation with varied
 * content goes to a file, into a fresh SQLite installation and (with FACTEUR_TEST_PG) into
 * PostgreSQL and back; every identity a client may have cached must survive exactly.
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import pg from 'pg';
import { verifyBackupFile } from '../../src/backup/backup.js';
import { createBackupWriter } from '../../src/backup/format.js';
import type { BackupRecord } from '../../src/backup/format.js';
import { initDataDir } from '../../src/cli/data-dir.js';
import { asUid } from '../../src/lib/brand.js';
import { openStore } from '../../src/store/open.js';
import type { MailStore } from '../../src/store/types.js';
import { runCli } from '../helpers/cli.js';
import { testMessage, testPgUrl } from '../helpers/store.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'facteur-backup-'));
  dirs.push(d);
  return d;
}

async function newInstallation(): Promise<string> {
  const dir = await tempDir();
  await initDataDir(dir, { domain: 'example.com', dev: true });
  return dir;
}

async function withStore<T>(location: string, fn: (s: MailStore) => Promise<T>): Promise<T> {
  const store = await openStore(location);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/** Varied content: the cases a restore could get wrong. */
async function populate(store: MailStore): Promise<void> {
  await store.addDomain('example.org');
  const bob = await store.createAccount({ address: 'bob@example.com', passwordHash: 'hash-b', scram: 'scram-b' });
  const carol = await store.createAccount({ address: 'carol@example.org', passwordHash: 'hash-c' });
  const dave = await store.createAccount({ address: 'dave@example.com', passwordHash: 'hash-d' });
  await store.updateAccount(carol.id, { quotaBytes: 10_000_000, quotaMessages: 500, pop3DeletePolicy: 'hide' });
  await store.updateAccount(dave.id, { disabled: true });
  // A second factor and app passwords: a restore that lost them would reopen the main password.
  await store.updateAccount(bob.id, { totpSecret: 'JBSWY3DPEHPK3PXP', totpLastStep: 59_000_000 });
  await store.addAppPassword(bob.id, { name: 'phone', hash: 'sha256:phone-hash', createdAt: Date.UTC(2025, 0, 2), lastUsed: { at: Date.UTC(2025, 5, 1), protocol: 'imap', ip: '192.0.2.7' } });
  await store.addAppPassword(bob.id, { name: 'laptop', hash: 'sha256:laptop-hash', createdAt: Date.UTC(2025, 0, 3) });
  await store.addAlias('postmaster@example.com', 'bob@example.com');
  await store.addAlias('@example.org', 'carol@example.org');
  const inbox = (await store.getMailbox(bob.id, 'INBOX'))!;
  for (let i = 0; i < 12; i++) {
    await store.append(inbox.id, testMessage({ subject: `message ${i}`, body: `body number ${i}\r\n` }, { flags: i % 3 === 0 ? ['\\Seen'] : [] }));
  }
  await store.setFlags(inbox.id, [asUid(2), asUid(5)], 'add', ['$Important', 'Project-X', '\\Flagged']);
  await store.setFlags(inbox.id, [asUid(3), asUid(4)], 'add', ['\\Deleted']);
  await store.expunge(inbox.id);
  // A large message: a file blob.
  await store.append(inbox.id, testMessage({ subject: 'large', body: 'L'.repeat(400_000) }));
  const sub = await store.createMailbox(bob.id, 'Projects/2024/Q1');
  await store.setSubscribed(bob.id, 'Projects/2024/Q1', true);
  await store.setSubscribed(bob.id, 'Gone/Folder', true);
  await store.move(inbox.id, [asUid(6), asUid(7)], sub.id);
  await store.copy(inbox.id, [asUid(8)], sub.id);
  await store.deleteMailbox(bob.id, 'Junk');
  await store.hideFromPop3(inbox.id, [asUid(9)]);
  const reply = testMessage({ subject: 'Re: message 1', headers: { 'In-Reply-To': '<x@y>' } });
  await store.deliver(reply.raw, reply.parsed, [{ accountId: bob.id }, { accountId: carol.id }]);
  const carolInbox = (await store.getMailbox(carol.id, 'INBOX'))!;
  await store.append(carolInbox.id, testMessage({ subject: 'for carol' }, { flags: ['$Label1'], internalDate: Date.UTC(2019, 4, 1) }));
}

/** Everything a client or operator can see, without the row ids that differ between stores. */
async function snapshotOf(store: MailStore): Promise<unknown> {
  const accounts = [];
  for (const a of await store.listAccounts()) {
    const { id, ...rest } = a;
    const mailboxes = [];
    for (const m of await store.listMailboxes(id)) {
      const { id: mid, accountId, ...mrest } = m;
      void accountId;
      const entries = (await store.listEntries(mid)).map(({ mailboxId, ...e }) => {
        void mailboxId;
        return e;
      });
      const bodies = await Promise.all(entries.map(async (e) => (await store.readBlob(e.blobHash)).length));
      mailboxes.push({
        ...mrest,
        counts: await store.mailboxCounts(mid),
        entries,
        bodies,
        // QRESYNC's view: everything since the start, including the expunge log.
        expunged: (await store.changesSince(mid, 1 as never, mrest.uidNext)).expunged,
      });
    }
    const appPasswords = (await store.listAppPasswords(id)).map(({ id: pid, accountId, ...p }) => {
      void pid;
      void accountId;
      return p;
    });
    accounts.push({ ...rest, appPasswords, subscriptions: await store.listSubscriptions(id), usage: await store.quotaUsage(id), mailboxes });
  }
  return { domains: (await store.listDomains()).map((d) => d.name), aliases: await store.listAliases(), accounts };
}

function pgSchemaUrl(): { url: string; schema: string } | null {
  const base = testPgUrl();
  if (base === null) return null;
  const schema = `t_${randomBytes(8).toString('hex')}`;
  const u = new URL(base);
  u.searchParams.set('schema', schema);
  return { url: u.toString(), schema };
}

async function dropSchema(schema: string): Promise<void> {
  const c = new pg.Client({ connectionString: testPgUrl()! });
  await c.connect();
  try {
    await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await c.end();
  }
}

test('backup of a SQLite installation restores exactly into a fresh SQLite one and, with FACTEUR_TEST_PG, into PostgreSQL and back', async () => {
  const src = await newInstallation();
  await withStore(src, populate);
  const expected = await withStore(src, snapshotOf);
  const file = join(await tempDir(), 'all.facteur-backup');
  const b = await runCli(['backup', file, '--data', src]);
  assert.equal(b.code, 0, b.stderr);
  assert.match(b.stdout, /3 accounts, \d+ mailboxes, 15 messages/);
  assert.equal((await readFile(file)).subarray(0, 2).toString('hex'), '1f8b', 'gzip by default');

  const dst = await newInstallation();
  const r = await runCli(['restore', file, '--data', dst]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await withStore(dst, snapshotOf), expected);
  assert.deepEqual(await withStore(dst, (s) => s.checkConsistency()), []);
  // A second restore into the now non-empty store is refused, and changes nothing.
  const again = await runCli(['restore', file, '--data', dst]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /already has accounts/);
  assert.deepEqual(await withStore(dst, snapshotOf), expected);
  // After the restore, new mail continues the restored UIDs and modseqs.
  await withStore(dst, async (s) => {
    const bob = (await s.getAccountByAddress('bob@example.com'))!;
    const inbox = (await s.getMailbox(bob.id, 'INBOX'))!;
    const before = (await s.listEntries(inbox.id)).at(-1)!;
    const res = await s.append(inbox.id, testMessage({ subject: 'after restore' }));
    assert.equal(res.uid, inbox.uidNext);
    assert.ok(res.modseq > inbox.highestModSeq && res.modseq > before.modseq);
    const sub = (await s.getMailbox(bob.id, 'Projects/2024/Q1'))!;
    const c = await s.copy(inbox.id, [asUid(8)], sub.id);
    const pids = (await s.listEntries(sub.id)).map((e) => e.pid);
    assert.equal(new Set(pids).size, pids.length, `copy pids stay unique: ${pids.join(' ')} (${c.pairs.length})`);
  });

  const pgTarget = pgSchemaUrl();
  if (pgTarget === null) return;
  try {
    const pgDir = await newInstallation();
    const env = { FACTEUR_STORE: pgTarget.url };
    const toPg = await runCli(['import', 'installation', file, '--data', pgDir], { env });
    assert.equal(toPg.code, 0, toPg.stderr);
    assert.deepEqual(await withStore(pgTarget.url, snapshotOf), expected);
    assert.deepEqual(await withStore(pgTarget.url, (s) => s.checkConsistency()), []);
    // And back: PostgreSQL -> file -> a fresh SQLite installation.
    const file2 = join(await tempDir(), 'from-pg.backup');
    const fromPg = await runCli(['export', 'installation', file2, '--no-gzip', '--data', pgDir], { env });
    assert.equal(fromPg.code, 0, fromPg.stderr);
    const back = await newInstallation();
    const r2 = await runCli(['restore', file2, '--data', back]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.deepEqual(await withStore(back, snapshotOf), expected);
  } finally {
    await dropSchema(pgTarget.schema);
  }
});

test('a cut or damaged backup is refused before anything is written', async () => {
  const src = await newInstallation();
  await withStore(src, populate);
  const dir = await tempDir();
  const dst = await newInstallation();
  for (const gzip of [true, false]) {
    const file = join(dir, `b-${gzip}`);
    const b = await runCli(['backup', file, '--data', src, ...(gzip ? [] : ['--no-gzip'])]);
    assert.equal(b.code, 0, b.stderr);
    const whole = await readFile(file);
    const cut = join(dir, `cut-${gzip}`);
    await writeFile(cut, whole.subarray(0, Math.floor(whole.length * 0.9)));
    const damaged = join(dir, `damaged-${gzip}`);
    const d = Buffer.from(whole);
    const at = Math.floor(d.length / 2);
    d[at] = (d[at] ?? 0) ^ 0x55;
    await writeFile(damaged, d);
    const trailing = join(dir, `trailing-${gzip}`);
    await writeFile(trailing, Buffer.concat([whole, gzip ? Buffer.alloc(0) : Buffer.from('x')]));
    const cases: Array<[string, RegExp]> = [
      [cut, /cut short|damaged/],
      [damaged, /damaged|checksum|bad frame/],
      [join(dir, 'nope'), /ENOENT|no such file/],
    ];
    if (!gzip) cases.push([trailing, /after its end/]);
    for (const [path, why] of cases) await assert.rejects(verifyBackupFile(path), why);
    // Through the CLI, into one target that must stay empty.
    const r = await runCli(['restore', cut, '--data', dst]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /cut short|damaged/);
    assert.deepEqual(await withStore(dst, (s) => s.listAccounts()), [], 'nothing restored');
  }
  const notBackup = join(dir, 'not-a-backup');
  await writeFile(notBackup, 'From alice@example.org Mon Jan  1 00:00:00 2024\nSubject: hi\n\nhello\n');
  await assert.rejects(verifyBackupFile(notBackup), /not a Facteur backup/);
  const r = await runCli(['restore', notBackup, '--data', dst]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /not a Facteur backup/);
  const exists = await runCli(['backup', notBackup, '--data', src]);
  assert.equal(exists.code, 1);
  assert.match(exists.stderr, /exists/);
});

test('a backup taken while mail is delivered and expunged is one consistent snapshot', async () => {
  const src = await newInstallation();
  const file = join(await tempDir(), 'live.backup');
  const store = await openStore(src);
  let running: Promise<unknown> | null = null;
  try {
    const bob = await store.createAccount({ address: 'bob@example.com', passwordHash: 'h' });
    const inbox = (await store.getMailbox(bob.id, 'INBOX'))!;
    // Large messages (file blobs) that are expunged while the backup runs: their files must stay
    // readable for the backup's snapshot.
    for (let i = 0; i < 30; i++) await store.append(inbox.id, testMessage({ subject: `big ${i}`, body: `${i}`.repeat(300_000) }));
    let stop = false;
    let delivered = 0;
    const churn = (async () => {
      let next = 1;
      while (!stop) {
        const m = testMessage({ subject: `live ${delivered}` });
        await store.deliver(m.raw, m.parsed, [{ accountId: bob.id }]);
        delivered += 1;
        if (next <= 30) await store.expunge(inbox.id, [asUid(next++)]);
        await new Promise((res) => setTimeout(res, 5));
      }
    })();
    running = churn;
    const b = await runCli(['backup', file, '--data', src]);
    stop = true;
    await churn;
    assert.equal(b.code, 0, b.stderr);
    assert.ok(delivered > 0, 'deliveries happened during the backup');
    assert.deepEqual(await store.checkConsistency(), []);
  } finally {
    await running?.catch(() => undefined);
    await store.close();
  }
  const dst = await newInstallation();
  const r = await runCli(['restore', file, '--data', dst]);
  assert.equal(r.code, 0, r.stderr);
  await withStore(dst, async (s) => {
    assert.deepEqual(await s.checkConsistency(), []);
    const bob = (await s.getAccountByAddress('bob@example.com'))!;
    const inbox = (await s.getMailbox(bob.id, 'INBOX'))!;
    const entries = await s.listEntries(inbox.id);
    const expunged = (await s.changesSince(inbox.id, 1 as never, inbox.uidNext)).expunged;
    // One instant: every UID below UIDNEXT is either present or expunged, none both.
    const all = [...entries.map((e) => e.uid), ...expunged].sort((x, y) => x - y);
    assert.deepEqual(all, Array.from({ length: inbox.uidNext - 1 }, (_, i) => i + 1));
    for (const e of entries) assert.equal((await s.readBlob(e.blobHash)).length, e.size);
  });
  // The source's blob files all went with their rows once the backup released its hold.
  await withStore(src, async (s) => {
    await s.collectGarbage();
    assert.deepEqual(await s.checkConsistency(), []);
  });
  assert.ok((await stat(file)).size > 0);
  await truncate(file, 0);
});

test('records of an unknown type or newer version are refused unless optional', async () => {
  const dir = await tempDir();
  const write = async (name: string, records: BackupRecord[]): Promise<string> => {
    const path = join(dir, name);
    const w = await createBackupWriter(path);
    await w.record({ type: 'header', v: 1, format: 1 });
    for (const r of records) await w.record(r);
    await w.finish();
    return path;
  };
  await assert.rejects(verifyBackupFile(await write('a', [{ type: 'app-password', v: 1 }])), /app-password records .* does not know/);
  await assert.rejects(verifyBackupFile(await write('b', [{ type: 'domain', v: 2, name: 'x.org' }])), /domain records \(version 2\)/);
  await verifyBackupFile(await write('c', [{ type: 'hint', v: 1, optional: true }]));
  const w = await createBackupWriter(join(dir, 'd'));
  await w.record({ type: 'domain', v: 1, name: 'x.org', createdAt: 1 });
  await w.finish();
  await assert.rejects(verifyBackupFile(join(dir, 'd')), /does not start with its header/);
});
