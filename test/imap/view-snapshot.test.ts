/**
 * SELECT after a server restart on the same data: the new process's view cache starts from the
 * snapshot the previous one stored at close (store/view-snapshot.ts), and what SELECT and FETCH
 * say must be the mailbox as stored now, including everything changed after the snapshot by a
 * process that did not update it. The store-level cases (each kind of change, each kind of
 * unusable snapshot) are in test/store/view-snapshot.test.ts.
 */
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { pino } from 'pino';
import { createAuthenticator } from '../../src/auth/authenticator.js';
import { createCredentials } from '../../src/auth/password.js';
import { createImapServer } from '../../src/imap/server/server.js';
import type { MailboxId } from '../../src/lib/brand.js';
import { asUid } from '../../src/lib/brand.js';
import { openPgStore, parsePgStoreUrl } from '../../src/store/sql/postgres/pg-store.js';
import { openSqliteStore } from '../../src/store/sql/sqlite/sqlite-store.js';
import type { MailStore } from '../../src/store/types.js';
import { viewCacheStats } from '../../src/store/view-cache.js';
import { connectImap, type ImapTranscript } from '../helpers/imap-transcript.js';
import { testMessage, testStoreLocation } from '../helpers/store.js';

const USER = 'bob@example.com';
const PASSWORD = 'restart password';

function openAt(location: string, snapshotMin: number): Promise<MailStore> {
  if (process.env.FACTEUR_TEST_STORE === 'postgres') {
    return openPgStore({ ...parsePgStoreUrl(location), blobs: 'database', viewSnapshotMin: snapshotMin });
  }
  return openSqliteStore({ dir: location, viewSnapshotMin: snapshotMin });
}

/** One server process's life: a store and an IMAP listener on the data, closed gracefully. */
async function serve(location: string, fn: (login: () => Promise<ImapTranscript>, store: MailStore) => Promise<void>): Promise<void> {
  const store = await openAt(location, 1);
  const ctx = { hostname: 'mail.example.test', store, log: pino({ level: 'silent' }), auth: createAuthenticator(store), tls: null };
  const server = createImapServer(ctx, { implicitTls: false });
  const port = await server.listen('127.0.0.1', 0);
  const clients: ImapTranscript[] = [];
  try {
    await fn(async () => {
      const t = await connectImap(port);
      clients.push(t);
      await t.expect(/^\* OK /);
      await t.command('L', `LOGIN ${USER} "${PASSWORD}"`);
      return t;
    }, store);
  } finally {
    for (const c of clients) c.close();
    await server.close(100);
    await store.close();
  }
}

/** What SELECT and FETCH 1:* (UID FLAGS MODSEQ) say, against the stored entries. */
async function assertSelectExact(t: ImapTranscript, store: MailStore, box: MailboxId, recentAll: boolean): Promise<void> {
  const sel = await t.command('S', 'SELECT Projects (CONDSTORE)');
  const entries = await store.listEntries(box);
  const mb = await store.getMailboxById(box);
  assert.ok(mb);
  const said = (re: RegExp): number => Number(re.exec(sel.untagged.join('\n'))?.[1] ?? -1);
  assert.equal(said(/^\* (\d+) EXISTS$/m), entries.length, 'EXISTS');
  assert.equal(said(/^\* (\d+) RECENT$/m), recentAll ? entries.length : 0, 'RECENT');
  assert.equal(said(/UIDNEXT (\d+)\]/), mb.uidNext, 'UIDNEXT');
  assert.equal(said(/UIDVALIDITY (\d+)\]/), mb.uidValidity, 'UIDVALIDITY');
  assert.equal(said(/HIGHESTMODSEQ (\d+)\]/), mb.highestModSeq, 'HIGHESTMODSEQ');
  const firstUnseen = entries.findIndex((e) => !e.flags.includes('\\Seen')) + 1;
  assert.equal(said(/\[UNSEEN (\d+)\]/), firstUnseen === 0 ? -1 : firstUnseen, 'first unseen');
  const fetched = (await t.command('F', 'FETCH 1:* (UID FLAGS MODSEQ)')).untagged.map((l) => {
    const uid = Number(/UID (\d+)/.exec(l)?.[1]);
    const flags = (/FLAGS \(([^)]*)\)/.exec(l)?.[1] ?? '').split(' ').filter((f) => f !== '' && f !== '\\Recent');
    const modseq = Number(/MODSEQ \((\d+)\)/.exec(l)?.[1]);
    return { uid, flags: flags.sort(), modseq };
  });
  assert.deepEqual(
    fetched,
    entries.map((e) => ({ uid: e.uid, flags: [...e.flags].sort(), modseq: e.modseq })),
    'every message, its flags and modseq',
  );
}

test('SELECT after a restart is exact: the snapshot stored at the last close, plus every change made after it', async () => {
  const loc = await testStoreLocation();
  try {
    let box = 0 as MailboxId;
    // First run: the account and 30 messages; a SELECT reads the view whole; the close stores it.
    await serve(loc.location, async (login, store) => {
      await store.addDomain('example.com');
      const bob = await store.createAccount({ address: USER, ...(await createCredentials(PASSWORD)) });
      box = (await store.createMailbox(bob.id, 'Projects')).id;
      const flags = (i: number): string[] => [...(i % 2 === 0 ? ['\\Seen'] : []), ...(i % 4 === 1 ? ['$Work'] : [])];
      await store.appendMany(box, Array.from({ length: 30 }, (_, i) => testMessage({ subject: `m${i}` }, { flags: flags(i) })));
      await assertSelectExact(await login(), store, box, true);
      assert.equal(viewCacheStats(store)?.wholeReads, 1);
    });
    // Meanwhile (another process, or this one before a crash): every kind of change, none of
    // them in the snapshot.
    const writer = await openAt(loc.location, Infinity);
    try {
      await writer.setFlags(box, [1, 3, 5].map(asUid), 'add', ['\\Seen', '$Later']);
      await writer.setFlags(box, [asUid(2)], 'remove', ['\\Seen']);
      await writer.appendMany(box, [testMessage({ subject: 'new' }, { flags: ['\\Flagged'] })]);
      await writer.expunge(box, [4, 10, 30].map(asUid), false);
    } finally {
      await writer.close();
    }
    // Second run: its first SELECT starts from the snapshot and must show all of that.
    await serve(loc.location, async (login, store) => {
      await assertSelectExact(await login(), store, box, true);
      assert.deepEqual({ ...viewCacheStats(store), mailboxes: 0, messages: 0 }, { mailboxes: 0, messages: 0, fromSnapshot: 1, wholeReads: 0, snapshotsWritten: 0 });
      // \Recent went to the first session (RFC 3501 §2.3.2): the next one sees none.
      await assertSelectExact(await login(), store, box, false);
      assert.deepEqual(await store.checkConsistency(), []);
    });
  } finally {
    await loc.cleanup();
  }
});

test('SELECT says [UNSEEN n] of the first message without \\Seen, with few and with many distinct flag lists', async () => {
  const loc = await testStoreLocation();
  try {
    await serve(loc.location, async (login, store) => {
      await store.addDomain('example.com');
      const bob = await store.createAccount({ address: USER, ...(await createCredentials(PASSWORD)) });
      const box = (await store.createMailbox(bob.id, 'Projects')).id;
      // 30 seen messages, then 20 unseen ones each with a keyword of its own: 20 flag lists
      // without \Seen (more than firstUnseen searches one by one).
      await store.appendMany(box, [
        ...Array.from({ length: 30 }, (_, i) => testMessage({ subject: `s${i}` }, { flags: ['\\Seen', `$s${i % 7}`] })),
        ...Array.from({ length: 20 }, (_, i) => testMessage({ subject: `u${i}` }, { flags: [`$u${i}`] })),
      ]);
      const t = await login();
      await assertSelectExact(t, store, box, true);
      // Few lists without \Seen left in use: the first unseen is further on.
      await store.setFlags(box, Array.from({ length: 15 }, (_, i) => asUid(31 + i)), 'add', ['\\Seen']);
      await t.command('U', 'UNSELECT');
      await assertSelectExact(t, store, box, false);
      await store.setFlags(box, Array.from({ length: 50 }, (_, i) => asUid(1 + i)), 'add', ['\\Seen']);
      await assertSelectExact(await login(), store, box, false);
    });
  } finally {
    await loc.cleanup();
  }
});
