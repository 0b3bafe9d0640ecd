/**
 * `facteur backup` / `facteur restore` through the real CLI: a SQLite installation with varied
 * content (mail, annotations, an outbound queue with messages in every state) goes to a file,
 * into a fresh SQLite installation and (with FACTEUR_TEST_PG) into PostgreSQL and back, and a
 * PostgreSQL installation's queue (in the database, shared by the nodes) the same way; every
 * identity a client may have cached, and every queued delivery, must survive exactly.
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { createHash } from 'node:crypto';
import { access, mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import pg from 'pg';
import { restoreBackup, verifyBackupFile } from '../../src/backup/backup.js';
import { createBackupWriter, readBackup } from '../../src/backup/format.js';
import type { BackupRecord } from '../../src/backup/format.js';
import { initDataDir } from '../../src/cli/data-dir.js';
import { asUid } from '../../src/lib/brand.js';
import { queueDbPath } from '../../src/queue/admin.js';
import { createOutboundQueue } from '../../src/queue/outbound-queue.js';
import { openQueueSnapshot, openQueueStore, pgQueueSchema, queueLocation } from '../../src/queue/open.js';
import { openSqliteQueueStore } from '../../src/queue/sqlite-store.js';
import type { QueueStore } from '../../src/queue/types.js';
import { openStore } from '../../src/store/open.js';
import type { MailStore, MetadataEntry } from '../../src/store/types.js';
import { mockResolver, startSink, testLogger } from '../queue/helpers.js';
import { runCli } from '../helpers/cli.js';
import { openTestStore, testMessage, testPgUrl } from '../helpers/store.js';

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
  const junk = (await store.getMailbox(bob.id, 'Junk'))!;
  await store.setMetadata(bob.id, junk.id, [{ name: '/private/comment', value: Buffer.from('gone') }], { maxEntries: 10, maxTotalBytes: 1000 });
  await store.deleteMailbox(bob.id, 'Junk');
  await store.hideFromPop3(inbox.id, [asUid(9)]);
  // Annotations (RFC 5464): server and mailbox entries, private and shared, binary and empty
  // values; those of a deleted mailbox go with it.
  const limits = { maxEntries: 100, maxTotalBytes: 1 << 20 };
  const meta = (name: string, value: string | Buffer) => ({ name, value: Buffer.isBuffer(value) ? value : Buffer.from(value) });
  await store.setMetadata(bob.id, null, [meta('/private/vendor/facteur/theme', 'dark'), meta('/shared/admin', 'mailto:postmaster@example.com')], limits);
  await store.setMetadata(bob.id, inbox.id, [meta('/private/comment', Buffer.from([0, 1, 2, 0xff, 13, 10])), meta('/shared/comment', 'team inbox')], limits);
  await store.setMetadata(bob.id, sub.id, [meta('/private/vendor/x/color with space', 'blue')], limits);
  await store.setMetadata(carol.id, null, [meta('/private/empty', Buffer.alloc(0))], limits);
  const reply = testMessage({ subject: 'Re: message 1', headers: { 'In-Reply-To': '<x@y>' } });
  await store.deliver(reply.raw, reply.parsed, [{ accountId: bob.id }, { accountId: carol.id }]);
  const carolInbox = (await store.getMailbox(carol.id, 'INBOX'))!;
  await store.append(carolInbox.id, testMessage({ subject: 'for carol' }, { flags: ['$Label1'], internalDate: Date.UTC(2019, 4, 1) }));
}

const metaOf = (entries: MetadataEntry[]): string[][] => entries.map((e) => [e.name, e.value.toString('hex')]);

/** Everything a client or operator can see, without the row ids that differ between stores.
 * withMetadata false: as a backup of format 1 (before annotations were carried) restores it. */
async function snapshotOf(store: MailStore, withMetadata = true): Promise<unknown> {
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
        metadata: withMetadata ? metaOf(await store.getMetadata(id, mid)) : [],
      });
    }
    const appPasswords = (await store.listAppPasswords(id)).map(({ id: pid, accountId, ...p }) => {
      void pid;
      void accountId;
      return p;
    });
    accounts.push({
      ...rest,
      appPasswords,
      subscriptions: await store.listSubscriptions(id),
      usage: await store.quotaUsage(id),
      metadata: withMetadata ? metaOf(await store.getMetadata(id, null)) : [],
      metadataBytes: withMetadata ? await store.metadataUsage(id) : 0,
      mailboxes,
    });
  }
  return { domains: (await store.listDomains()).map((d) => d.name), aliases: await store.listAliases(), accounts };
}

const MINUTE = 60_000;
/** Queue ids as the queue makes them (base-36 time, then hex). */
const Q_LATER = 'mabc0000later01';
const Q_HELD = 'mabc0000held001';
const Q_FLIGHT = 'mabc0000flight1';

/** The queue of an installation: queue.db in dir, or beside a PostgreSQL store at storeLocation. */
async function withQueue<T>(dir: string, fn: (q: QueueStore) => Promise<T>, storeLocation = dir): Promise<T> {
  const q = await openQueueStore(queueLocation(dir, storeLocation));
  try {
    return await fn(q);
  } finally {
    await q.close();
  }
}

/**
 * An outbound queue in every state a backup may meet: a message with one recipient delivered,
 * one failed and one deferred to later (2.5 MB, over one data frame); a held message; and one
 * whose recipient is being attempted (leased) at backup time.
 */
async function populateQueue(dir: string, now = Date.now(), storeLocation = dir): Promise<void> {
  await withQueue(dir, async (q) => {
    const body = (subject: string, fill = '') =>
      Buffer.from(`From: bob@example.com\r\nTo: ann@example.net\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@example.com>\r\n\r\n${fill}hello\r\n`);
    const rcpt = (address: string, notify: Array<'SUCCESS' | 'FAILURE' | 'DELAY'> | null = null, orcpt: string | null = null) => ({
      address,
      domain: address.split('@')[1]!,
      notify,
      orcpt,
    });
    const base = { sender: 'bob@example.com', createdAt: now - 10 * MINUTE, envid: null, ret: null, requireTls: false, tlsOptional: false, isReport: false };
    await q.insert(
      {
        ...base,
        id: Q_LATER,
        body: body('later', `${'x'.repeat(998)}\r\n`.repeat(2500)),
        envid: 'env-1',
        ret: 'HDRS',
        recipients: [rcpt('ann@example.net', ['SUCCESS', 'FAILURE'], 'rfc822;ann@example.net'), rcpt('ben@example.net', []), rcpt('cy@example.net')],
      },
      now - 10 * MINUTE,
    );
    const claimed = await q.claimDue(now, 10, now + 15 * MINUTE);
    const id = (a: string) => claimed.find((r) => r.address === a)!.id;
    await q.finish([id('ann@example.net')], 'delivered', '250 2.0.0 ok', now - 9 * MINUTE);
    await q.finish([id('ben@example.net')], 'failed', '550 5.1.1 no such user', now - 9 * MINUTE);
    await q.defer([id('cy@example.net')], now + 60 * MINUTE, 2, '451 4.7.1 greylisted', now - 9 * MINUTE);
    await q.markDelayNotified([id('cy@example.net')]);
    await q.insert({ ...base, id: Q_HELD, body: body('held'), requireTls: true, recipients: [rcpt('dee@example.net')] }, now - 5 * MINUTE);
    await q.setHeld(Q_HELD, true);
    await q.insert({ ...base, id: Q_FLIGHT, body: body('flight'), tlsOptional: true, recipients: [rcpt('eve@example.net', ['DELAY'])] }, now - MINUTE);
    const flying = await q.claimDue(now, 10, now + 15 * MINUTE);
    assert.deepEqual(flying.map((r) => r.address), ['eve@example.net'], 'one recipient in flight at backup time');
  }, storeLocation);
}

/** Every row of a queue (recipient ids and leases aside) and a hash of each message's bytes. */
async function queueOf(dir: string, storeLocation = dir): Promise<unknown> {
  const snap = await openQueueSnapshot(queueLocation(dir, storeLocation));
  if (snap === null) return [];
  try {
    const out = [];
    for (const m of await snap.messages('', 1000)) {
      const h = createHash('sha256');
      for await (const c of snap.body(m.id, m.size)) h.update(c);
      out.push({ ...m, sha256: h.digest('hex') });
    }
    return out;
  } finally {
    await snap.close();
  }
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
    // The store's schema and its queue's (queue/open.ts).
    await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await c.query(`DROP SCHEMA IF EXISTS "${pgQueueSchema(schema)}" CASCADE`);
  } finally {
    await c.end();
  }
}

test('backup of a SQLite installation restores exactly into a fresh SQLite one and, with FACTEUR_TEST_PG, into PostgreSQL and back', async () => {
  const src = await newInstallation();
  await withStore(src, populate);
  await populateQueue(src);
  const expected = await withStore(src, snapshotOf);
  const expectedQueue = await queueOf(src);
  assert.equal((expectedQueue as unknown[]).length, 3);
  const file = join(await tempDir(), 'all.facteur-backup');
  const b = await runCli(['backup', file, '--data', src]);
  assert.equal(b.code, 0, b.stderr);
  assert.match(b.stdout, /3 accounts, \d+ mailboxes, 15 messages .* 6 annotations, 3 queued messages/);
  assert.equal((await readFile(file)).subarray(0, 2).toString('hex'), '1f8b', 'gzip by default');

  const dst = await newInstallation();
  const r = await runCli(['restore', file, '--data', dst]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /6 annotations, 3 queued messages/);
  assert.deepEqual(await withStore(dst, snapshotOf), expected);
  assert.deepEqual(await queueOf(dst), expectedQueue);
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
    // The queue went into the database, where every node claims from it, not into queue.db.
    assert.deepEqual(await queueOf(pgDir, pgTarget.url), expectedQueue);
    assert.equal(await access(queueDbPath(pgDir)).then(() => true, () => false), false, 'no queue.db beside a PostgreSQL store');
    const listed = await runCli(['queue', 'list', '--data', pgDir], { env });
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, new RegExp(`${Q_HELD} .* held`));
    assert.deepEqual(await withStore(pgTarget.url, (s) => s.checkConsistency()), []);
    // And back: PostgreSQL -> file -> a fresh SQLite installation.
    const file2 = join(await tempDir(), 'from-pg.backup');
    const fromPg = await runCli(['export', 'installation', file2, '--no-gzip', '--data', pgDir], { env });
    assert.equal(fromPg.code, 0, fromPg.stderr);
    const back = await newInstallation();
    const r2 = await runCli(['restore', file2, '--data', back]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.deepEqual(await withStore(back, snapshotOf), expected);
    assert.deepEqual(await queueOf(back), expectedQueue);
    // And PostgreSQL -> file -> another PostgreSQL installation: its queue is there too.
    const pgAgain = pgSchemaUrl()!;
    try {
      const pgDir2 = await newInstallation();
      const r3 = await runCli(['restore', file2, '--data', pgDir2], { env: { FACTEUR_STORE: pgAgain.url } });
      assert.equal(r3.code, 0, r3.stderr);
      assert.match(r3.stdout, /3 queued messages/);
      assert.deepEqual(await withStore(pgAgain.url, snapshotOf), expected);
      assert.deepEqual(await queueOf(pgDir2, pgAgain.url), expectedQueue);
    } finally {
      await dropSchema(pgAgain.schema);
    }
  } finally {
    await dropSchema(pgTarget.schema);
  }
});

test('with FACTEUR_TEST_PG: the queue of a PostgreSQL installation, read in one snapshot, survives backup and restore', { skip: testPgUrl() === null ? 'FACTEUR_TEST_PG is not set' : false }, async () => {
  const source = pgSchemaUrl()!;
  const target = pgSchemaUrl()!;
  try {
    const src = await newInstallation();
    // FACTEUR_STORE names a fresh schema: its domain is added as `facteur init` would.
    await withStore(source.url, async (s) => {
      await s.addDomain('example.com');
      await populate(s);
    });
    // No node has opened the queue yet: nothing to back up, and the backup says so.
    const empty = join(await tempDir(), 'empty.backup');
    const e = await runCli(['backup', empty, '--data', src], { env: { FACTEUR_STORE: source.url } });
    assert.equal(e.code, 0, e.stderr);
    assert.match(e.stdout, / 0 queued messages/);
    await populateQueue(src, Date.now(), source.url);
    const expected = await withStore(source.url, snapshotOf);
    const expectedQueue = await queueOf(src, source.url);
    assert.equal((expectedQueue as unknown[]).length, 3);
    const file = join(await tempDir(), 'pg.backup');
    const b = await runCli(['backup', file, '--data', src], { env: { FACTEUR_STORE: source.url } });
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stdout, /3 queued messages/);
    assert.equal(await access(queueDbPath(src)).then(() => true, () => false), false, 'the backup did not read or make a queue.db');
    // Into another PostgreSQL installation and into a SQLite one: the same queue in both.
    const pgDst = await newInstallation();
    const r = await runCli(['restore', file, '--data', pgDst], { env: { FACTEUR_STORE: target.url } });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await withStore(target.url, snapshotOf), expected);
    assert.deepEqual(await queueOf(pgDst, target.url), expectedQueue);
    const sqliteDst = await newInstallation();
    const r2 = await runCli(['restore', file, '--data', sqliteDst]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.deepEqual(await queueOf(sqliteDst), expectedQueue);
  } finally {
    await dropSchema(source.schema);
    await dropSchema(target.schema);
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

test('a restored queue resumes delivery on the new machine: each queued recipient once, the in-flight one again, nothing delivered or failed twice', async () => {
  const src = await newInstallation();
  const now = Date.now();
  await populateQueue(src, now);
  const file = join(await tempDir(), 'queue.backup');
  const b = await runCli(['backup', file, '--data', src]);
  assert.equal(b.code, 0, b.stderr);
  const dst = await newInstallation();
  const r = await runCli(['restore', file, '--data', dst]);
  assert.equal(r.code, 0, r.stderr);
  // The same file restored again into that queue queues nothing twice.
  const again = await runCli(['restore', file, '--data', dst, '--into-non-empty']);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, / 0 queued messages/);

  const sink = await startSink();
  const store = openSqliteQueueStore(queueDbPath(dst));
  // An hour and a half later: the deferred recipient is due too.
  const clock = { t: now + 90 * MINUTE, now() { return this.t; } };
  const reports: string[] = [];
  const queue = createOutboundQueue({
    hostname: 'mail.example.com',
    store,
    resolver: mockResolver({ mx: { 'example.net': [{ exchange: 'mx.example.net', priority: 10 }] }, a: { 'mx.example.net': ['127.0.0.1'] } }),
    log: testLogger(),
    clock,
    port: sink.port,
    mtaSts: { fetcher: async () => null },
    deliverReport: async (_data, to) => {
      reports.push(to);
      return true;
    },
  });
  try {
    await queue.start();
    await queue.runDue();
    await queue.runDue();
    // The recipient leased by an attempt at backup time is queued after the restore: tried again.
    assert.equal(sink.count('eve@example.net'), 1);
    assert.equal(sink.count('cy@example.net'), 1);
    for (const done of ['ann@example.net', 'ben@example.net']) assert.equal(sink.count(done), 0, `${done} was finished before the backup`);
    assert.equal(sink.count('dee@example.net'), 0, 'a held message stays held');
    // The envelope and the bytes came through.
    const later = sink.received.find((m) => m.to.includes('cy@example.net'))!;
    assert.equal(later.from, 'bob@example.com');
    assert.ok(later.data.length > 2_500_000);
    assert.deepEqual((await store.listMessages()).map((m) => m.id), [Q_HELD]);
    // Released, the held one is attempted: it kept its REQUIRETLS (RFC 8689), and this MX's
    // certificate cannot be verified, so it is deferred rather than sent; nothing else is sent
    // again.
    await store.setHeld(Q_HELD, false);
    await queue.runDue();
    assert.equal(sink.count('dee@example.net'), 0);
    assert.equal(sink.received.length, 2);
    const held = (await store.listMessages()).map((m) => ({ id: m.id, requireTls: m.requireTls, attempts: m.recipients.map((x) => [x.state, x.attempts]) }));
    assert.deepEqual(held, [{ id: Q_HELD, requireTls: true, attempts: [['queued', 1]] }]);
    assert.deepEqual(reports, []);
  } finally {
    await queue.stop();
    await store.close();
    await sink.close();
  }
});

/** Rewrites a backup as format 1 wrote it: no annotations, no queue, header format 1. */
async function asFormat1(file: string, out: string): Promise<void> {
  const w = await createBackupWriter(out, { gzip: false });
  let skipping = false;
  for await (const f of readBackup(file)) {
    if (f.kind === 'D') {
      if (!skipping) await w.data(f.data);
      continue;
    }
    const r = f.record;
    skipping = r.type === 'queued';
    if (r.type === 'metadata' || r.type === 'queued') continue;
    await w.record(r.type === 'header' ? { ...r, format: 1 } : r);
  }
  await w.finish();
}

test('a backup of format 1 (before annotations and the queue) still restores, with neither', async () => {
  const src = await newInstallation();
  await withStore(src, populate);
  await populateQueue(src);
  const file = join(await tempDir(), 'v2.backup');
  assert.equal((await runCli(['backup', file, '--data', src])).code, 0);
  const old = join(await tempDir(), 'v1.backup');
  await asFormat1(file, old);
  const header = (await readBackup(old).next()).value as { kind: 'J'; record: { format: number } };
  assert.equal(header.record.format, 1);
  const dst = await newInstallation();
  const r = await runCli(['restore', old, '--data', dst]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /0 annotations, 0 queued messages/);
  assert.deepEqual(await withStore(dst, (s) => snapshotOf(s, false)), await withStore(src, (s) => snapshotOf(s, false)));
  assert.deepEqual(await queueOf(dst), []);
  // A format from the future is refused before anything is written.
  const future = join(await tempDir(), 'v3.backup');
  const w = await createBackupWriter(future);
  await w.record({ type: 'header', v: 1, format: 3 });
  await w.finish();
  await assert.rejects(verifyBackupFile(future), /backup format 3, this program reads 1 to 2/);
});

test('bad annotation and queue records are refused with the reason', async () => {
  const dir = await tempDir();
  let n = 0;
  const write = async (records: Array<Record<string, unknown>>, data: Buffer[] = []): Promise<string> => {
    const path = join(dir, `bad-${n++}`);
    const w = await createBackupWriter(path);
    await w.record({ type: 'header', v: 1, format: 2 });
    for (const r of records) await w.record(r as never);
    for (const d of data) await w.data(d);
    await w.finish();
    return path;
  };
  const domain = { type: 'domain', v: 1, name: 'example.com', createdAt: 1 };
  const account = { type: 'account', v: 1, address: 'bob@example.com', passwordHash: 'h', pop3DeletePolicy: 'expunge', createdAt: 1, modseq: 1 };
  const queued = {
    type: 'queued',
    v: 1,
    id: 'mabc0000bad0001',
    sender: 'bob@example.com',
    createdAt: 1,
    size: 5,
    envid: null,
    ret: null,
    recipients: [{ address: 'ann@example.net', domain: 'example.net', notify: null, orcpt: null, state: 'queued', attempts: 0, nextAttempt: 1, lastError: null, updatedAt: 1 }],
  };
  const rcpt0 = queued.recipients[0]!;
  const cases: Array<[string, RegExp]> = [
    [await write([{ type: 'metadata', v: 1, mailbox: null, entries: [['/private/x', 'eA==']] }]), /metadata record outside an account/],
    [await write([domain, account, { type: 'metadata', v: 1, mailbox: null, entries: [['/other/x', 'eA==']] }]), /bad metadata entry "\/other\/x"/],
    [await write([domain, account, { type: 'metadata', v: 1, mailbox: null, entries: [['/private/X', 'eA==']] }]), /bad metadata entry/],
    [await write([domain, account, { type: 'metadata', v: 1, mailbox: 'Nowhere', entries: [['/private/x', 'eA==']] }]), /mailbox Nowhere/],
    [await write([{ ...queued, id: '../x' }], [Buffer.from('hello')]), /bad id/],
    [await write([{ ...queued, recipients: [{ ...rcpt0, state: 'sending' }] }], [Buffer.from('hello')]), /recipient state sending/],
    [await write([{ ...queued, recipients: [{ ...rcpt0, attempts: -1 }] }], [Buffer.from('hello')]), /attempt count/],
    [await write([{ ...queued, recipients: [] }]), /recipient list/],
    [await write([queued], [Buffer.from('hel')]), /queued message mabc0000bad0001 is cut short/],
    [await write([queued, { type: 'alias', v: 1, source: 'a@example.com', target: 'b@example.com' }], [Buffer.from('hello')]), /cut short|without its blob/],
    [await write([{ ...queued, size: 2 }], [Buffer.from('hello')]), /longer than announced/],
  ];
  for (const [path, why] of cases) {
    await verifyBackupFile(path);
    const t = await openTestStore();
    const qdir = await tempDir();
    const q = openSqliteQueueStore(queueDbPath(qdir));
    try {
      await assert.rejects(restoreBackup(t.store, path, { queue: q }), why);
    } finally {
      await q.close();
      await t.cleanup();
    }
  }
  // Without a queue to restore into, queued records are refused rather than dropped.
  const t = await openTestStore();
  try {
    await assert.rejects(restoreBackup(t.store, await write([queued], [Buffer.from('hello')])), /queued messages and no queue/);
  } finally {
    await t.cleanup();
  }
});

/** Copies made in an order unlike the backup's (accounts by id, mailboxes by name, UIDs). */
async function populateShared(store: MailStore): Promise<void> {
  if (!(await store.isLocalDomain('example.com'))) await store.addDomain('example.com');
  const amy = await store.createAccount({ address: 'amy@example.com', passwordHash: 'h' });
  const bob = await store.createAccount({ address: 'bob@example.com', passwordHash: 'h' });
  const inbox = (await store.getMailbox(bob.id, 'INBOX'))!;
  const one = testMessage({ subject: 'one' });
  await store.append(inbox.id, one);
  await store.append(inbox.id, testMessage({ subject: 'two' }));
  // Archive comes before INBOX in the backup: the blob goes before Archive's copy.
  await store.copy(inbox.id, [asUid(1)], (await store.getMailbox(bob.id, 'Archive'))!.id);
  await store.append(inbox.id, one);
  // Delivered to both: amy is read first.
  const both = testMessage({ subject: 'for both' });
  await store.deliver(both.raw, both.parsed, [{ accountId: bob.id }, { accountId: amy.id }]);
  // More entries than a page: the same content on every page.
  const bulk = await store.createMailbox(bob.id, 'Bulk');
  const same = testMessage({ subject: 'bulk' });
  await store.appendMany(bulk.id, Array.from({ length: 1100 }, (_, i) => ({ ...same, flags: [], internalDate: i })));
}

/** Each blob once in the file, before any entry that references it. */
async function checkBlobsOnce(file: string): Promise<number> {
  const { readBackup } = await import('../../src/backup/format.js');
  const written = new Set<string>();
  let entries = 0;
  for await (const f of readBackup(file)) {
    if (f.kind !== 'J') continue;
    if (f.record.type === 'blob') {
      const h = f.record.hash as string;
      assert.ok(!written.has(h), `blob ${h} written twice`);
      written.add(h);
    } else if (f.record.type === 'entry') {
      entries += 1;
      assert.ok(written.has(f.record.blobHash as string), `entry ${String(f.record.uid)} before its blob`);
    }
  }
  assert.equal(entries, 1106);
  return written.size;
}

test('a backup holds each blob once, before the first entry that needs it, whatever order the copies were made in (SQLite and PostgreSQL)', async () => {
  const src = await newInstallation();
  await withStore(src, populateShared);
  const expected = await withStore(src, snapshotOf);
  const file = join(await tempDir(), 'shared.backup');
  const b = await runCli(['backup', file, '--data', src]);
  assert.equal(b.code, 0, b.stderr);
  assert.match(b.stdout, /1106 messages \(4 distinct\)/);
  assert.equal(await checkBlobsOnce(file), 4);
  const dst = await newInstallation();
  const r = await runCli(['restore', file, '--data', dst]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await withStore(dst, snapshotOf), expected);

  const pgTarget = pgSchemaUrl();
  if (pgTarget === null) return;
  try {
    const pgDir = await newInstallation();
    const env = { FACTEUR_STORE: pgTarget.url };
    await withStore(pgTarget.url, populateShared);
    const file2 = join(await tempDir(), 'shared-pg.backup');
    const fromPg = await runCli(['backup', file2, '--data', pgDir], { env });
    assert.equal(fromPg.code, 0, fromPg.stderr);
    assert.equal(await checkBlobsOnce(file2), 4);
    const back = await newInstallation();
    const r2 = await runCli(['restore', file2, '--data', back]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.deepEqual(await withStore(back, snapshotOf), await withStore(pgTarget.url, snapshotOf));
  } finally {
    await dropSchema(pgTarget.schema);
  }
});
