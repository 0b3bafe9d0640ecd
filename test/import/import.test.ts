/**
 * `facteur import` into the store: identity kept (UIDVALIDITY, UIDs, UIDLs, HIGHESTMODSEQ floor),
 * appends into mailboxes that already hold mail, re-runs and interrupted runs without duplicates,
 * and, against a live Dovecot, the promise to users: a POP3 client that downloaded everything from
 * the old server finds nothing new, an IMAP client sees the same UIDVALIDITY and UIDs.
 */
import { strict as assert } from 'node:assert';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { ImapFlow } from 'imapflow';
import { createAuthenticator } from '../../src/auth/authenticator.js';
import { createCredentials } from '../../src/auth/password.js';
import { createImapServer } from '../../src/imap/server/server.js';
import { openImapSource } from '../../src/import/imap-source.js';
import { importInto } from '../../src/import/importer.js';
import { openMaildir } from '../../src/import/maildir.js';
import { openMbox } from '../../src/import/mbox-source.js';
import { openPop3Source } from '../../src/import/pop3-source.js';
import type { ImportSource } from '../../src/import/source.js';
import type { AccountId } from '../../src/lib/brand.js';
import { createPop3Server } from '../../src/pop3/server/server.js';
import type { MailStore } from '../../src/store/types.js';
import { pino } from 'pino';
import { dovecotUnavailable, startDovecot } from '../helpers/dovecot.js';
import { openTestStore, testMessage } from '../helpers/store.js';
import { FIXTURE_UIDVALIDITY, writeDovecotAccount } from './fixtures.js';

async function account(store: MailStore, address = 'bob@example.com'): Promise<AccountId> {
  if (!(await store.isLocalDomain('example.com'))) await store.addDomain('example.com');
  return (await store.createAccount({ address, ...(await createCredentials('bob-password-1')) })).id;
}

async function view(store: MailStore, id: AccountId, name: string) {
  const mb = await store.getMailbox(id, name);
  assert.ok(mb, `mailbox ${name}`);
  const entries = await store.listEntries(mb.id);
  return { mb, entries, subjects: await Promise.all(entries.map(async (e) => (await store.getParsed(e.blobHash)).subject)) };
}

test('Dovecot Maildir into a new account: UIDVALIDITY, UIDs, flags, keywords, UIDLs, modseq floor, subscriptions; a second run adds nothing', async () => {
  const { store, cleanup } = await openTestStore();
  const root = await mkdtemp(join(tmpdir(), 'facteur-maildir-'));
  try {
    await writeDovecotAccount(root);
    const id = await account(store);
    const summary = await importInto(store, id, await openMaildir(root));
    assert.equal(summary.messages, 5 + 2 + 1 + 1);
    assert.deepEqual(summary.skipped, []);
    assert.deepEqual(summary.mailboxes.map((m) => [m.name, m.imported, m.identity]), [['INBOX', 5, 'kept'], ['Entwürfe', 1, 'kept'], ['Lists/rust', 1, 'kept'], ['Sent', 2, 'kept']]);

    const inbox = await view(store, id, 'INBOX');
    assert.equal(inbox.mb.uidValidity, FIXTURE_UIDVALIDITY);
    assert.equal(inbox.mb.uidNext, 10);
    assert.ok(inbox.mb.highestModSeq >= 2 ** 40, `HIGHESTMODSEQ ${inbox.mb.highestModSeq} at least the Maildir floor`);
    const hex = FIXTURE_UIDVALIDITY.toString(16);
    assert.deepEqual(inbox.entries.map((e) => [e.uid, e.pid, [...e.flags].sort()]), [
      [1, `00000001${hex}`, ['\\Seen']],
      [2, `00000002${hex}`, ['$Forwarded', 'Work', '\\Answered', '\\Flagged', '\\Seen']],
      [5, `00000005${hex}`, ['Later', '\\Deleted']],
      [7, 'old-uidl-7', []],
      [9, `00000009${hex}`, []],
    ]);
    assert.deepEqual(inbox.subjects, ['one', 'two', 'five', 'seven', 'not listed yet']);
    assert.equal(inbox.entries[0]!.internalDate, Date.UTC(2024, 0, 2, 3, 4, 5));
    // Stored with CRLF line ends.
    assert.ok(!(await store.readBlob(inbox.entries[0]!.blobHash)).toString().includes('\n\n'));
    assert.equal((await view(store, id, 'Entwürfe')).mb.uidValidity, FIXTURE_UIDVALIDITY + 2);
    assert.deepEqual((await view(store, id, 'Lists/rust')).entries.map((e) => e.uid), [10]);
    const subs = await store.listSubscriptions(id);
    assert.ok(subs.includes('Lists/rust') && subs.includes('Sent') && !subs.includes('Entwürfe'), subs.join(','));

    const again = await importInto(store, id, await openMaildir(root));
    assert.equal(again.messages, 0);
    assert.equal(again.alreadyPresent, 9);
    assert.equal((await view(store, id, 'INBOX')).entries.length, 5);
  } finally {
    await rm(root, { recursive: true, force: true });
    await cleanup();
  }
});

test('Import into a mailbox that already holds mail: appended with new UIDs, UIDLs kept, said in the summary', async () => {
  const { store, cleanup } = await openTestStore();
  const root = await mkdtemp(join(tmpdir(), 'facteur-maildir-'));
  try {
    await writeDovecotAccount(root);
    const id = await account(store);
    const inboxBefore = (await store.getMailbox(id, 'INBOX'))!;
    await store.append(inboxBefore.id, testMessage({ subject: 'already here' }));
    const summary = await importInto(store, id, await openMaildir(root), { batchMessages: 2 });
    const report = summary.mailboxes.find((m) => m.name === 'INBOX')!;
    assert.equal(report.identity, 'appended');
    assert.match(report.note ?? '', /could not be kept/);
    const inbox = await view(store, id, 'INBOX');
    assert.equal(inbox.mb.uidValidity, inboxBefore.uidValidity);
    assert.deepEqual(inbox.entries.map((e) => e.uid), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(inbox.subjects, ['already here', 'one', 'two', 'five', 'seven', 'not listed yet']);
    assert.equal(inbox.entries[4]!.pid, 'old-uidl-7');
    // A second run recognises the UIDLs: nothing twice.
    const again = await importInto(store, id, await openMaildir(root));
    assert.equal(again.messages, 0);
    assert.equal((await view(store, id, 'INBOX')).entries.length, 6);
  } finally {
    await rm(root, { recursive: true, force: true });
    await cleanup();
  }
});

test('mbox into a named mailbox: appended, flags from Status/X-Status, From_ date as INTERNALDATE', async () => {
  const { store, cleanup } = await openTestStore();
  const dir = await mkdtemp(join(tmpdir(), 'facteur-mbox-'));
  try {
    const file = join(dir, 'old.mbox');
    await writeFile(file, 'From a@b Mon Jan  1 10:00:00 2024\nSubject: first\nStatus: RO\n\n>From quoted\n\nFrom a@b Mon Jan  1 10:00:01 2024\nSubject: second\nX-Status: F\n\nbody\n');
    const id = await account(store);
    const summary = await importInto(store, id, await openMbox(file, { mailbox: 'Archive/2024' }));
    assert.equal(summary.messages, 2);
    const box = await view(store, id, 'Archive/2024');
    assert.deepEqual(box.subjects, ['first', 'second']);
    assert.deepEqual(box.entries.map((e) => e.flags), [['\\Seen'], ['\\Flagged']]);
    assert.equal(box.entries[1]!.internalDate, Date.UTC(2024, 0, 1, 10, 0, 1));
    assert.match((await store.readBlob(box.entries[0]!.blobHash)).toString(), /\r\n\r\nFrom quoted\r\n$/);
  } finally {
    await rm(dir, { recursive: true, force: true });
    await cleanup();
  }
});

async function snapshot(store: MailStore, id: AccountId) {
  const out: Array<[string, number, number, string[], number, string]> = [];
  for (const mb of await store.listMailboxes(id)) {
    for (const e of await store.listEntries(mb.id)) out.push([mb.name, e.uid, e.modseq, [...e.flags].sort(), e.internalDate, e.blobHash]);
  }
  return out;
}

test('An import leaves a snapshot of each large mailbox it filled, so a running server\'s first SELECT reads one value', { skip: process.env.FACTEUR_TEST_STORE === 'postgres' }, async () => {
  // Snapshots from 2 messages (10,000 by default).
  const { store, dir: storeDir, cleanup } = await openTestStore({ viewSnapshotMin: 2 });
  const dir = await mkdtemp(join(tmpdir(), 'facteur-mbox-'));
  try {
    const file = join(dir, 'big.mbox');
    await writeFile(file, 'From a@b Mon Jan  1 10:00:00 2024\nSubject: one\n\nx\n\nFrom a@b Mon Jan  1 10:00:01 2024\nSubject: two\n\ny\n');
    const small = join(dir, 'small.mbox');
    await writeFile(small, 'From a@b Mon Jan  1 10:00:00 2024\nSubject: alone\n\nz\n');
    const id = await account(store);
    await importInto(store, id, await openMbox(file, { mailbox: 'Big' }));
    await importInto(store, id, await openMbox(small, { mailbox: 'Small' }));
    const big = (await store.getMailbox(id, 'Big'))!;
    const one = (await store.getMailbox(id, 'Small'))!;
    const stored = (mailboxId: number): number => {
      const db = new Database(join(storeDir, 'facteur.db'), { readonly: true });
      try {
        return (db.prepare('SELECT count(*) AS n FROM view_snapshots WHERE mailbox_id = ?').get(mailboxId) as { n: number }).n;
      } finally {
        db.close();
      }
    };
    // Written in the background after the view's read: no close needed.
    for (let waited = 0; stored(big.id) === 0; waited += 20) {
      assert.ok(waited < 5000, 'snapshot of the large mailbox stored');
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(stored(one.id), 0, 'none for a mailbox below the size');
  } finally {
    await rm(dir, { recursive: true, force: true });
    await cleanup();
  }
});

test('A plain Maildir imported twice: the second run imports nothing, says so, and leaves the mailboxes as they were', async () => {
  const { store, cleanup } = await openTestStore();
  const root = await mkdtemp(join(tmpdir(), 'facteur-plain-'));
  try {
    const { mkdir, utimes } = await import('node:fs/promises');
    for (const d of ['cur', 'new', 'tmp', '.Work/cur', '.Work/new', '.Work/tmp']) await mkdir(join(root, d), { recursive: true });
    const files: Array<[string, string]> = [
      ['cur/1700000001.M1P1.old,S=30:2,S', 'Subject: one\n\nbody one\n'],
      // Letters out of order and a file only in new/: names kept as they are.
      ['cur/1700000002.M2P1.old:2,SF', 'Subject: two\n\nbody two\n'],
      ['new/1700000003.M3P1.old', 'Subject: three\n\nbody three\n'],
      // The same message twice (same bytes, same mtime): both are imported, both recognised.
      ['cur/1700000004.M4P1.old:2,', 'Subject: twin\n\nsame\n'],
      ['cur/1700000005.M5P1.old:2,', 'Subject: twin\n\nsame\n'],
      ['.Work/cur/1700000006.M6P1.old:2,R', 'Subject: work\n\nw\n'],
    ];
    const when = new Date(Date.UTC(2024, 2, 3, 4, 5, 6));
    for (const [f, text] of files) {
      await writeFile(join(root, f), text);
      await utimes(join(root, f), when, when);
    }
    const id = await account(store);
    // The INBOX already holds a message of its own, and gets it again only if it differs.
    const inbox = (await store.getMailbox(id, 'INBOX'))!;
    await store.append(inbox.id, testMessage({ subject: 'already there' }));
    const first = await importInto(store, id, await openMaildir(root));
    assert.equal(first.messages, 6);
    assert.equal(first.alreadyPresent, 0);
    assert.deepEqual(first.mailboxes.map((m) => [m.name, m.imported, m.identity]), [['INBOX', 5, 'new'], ['Work', 1, 'new']]);
    const box = await view(store, id, 'INBOX');
    assert.deepEqual(box.subjects, ['already there', 'one', 'two', 'three', 'twin', 'twin']);
    assert.deepEqual([...box.entries[2]!.flags].sort(), ['\\Flagged', '\\Seen']);
    const before = await snapshot(store, id);

    const second = await importInto(store, id, await openMaildir(root));
    assert.equal(second.messages, 0);
    assert.equal(second.alreadyPresent, 6);
    assert.deepEqual(second.skipped, []);
    assert.deepEqual(await snapshot(store, id), before, 'nothing added, no flag or modseq changed');

    // A message added to the source since is imported by a third run, and only it; a message
    // whose file changed (other bytes) is a new message.
    await writeFile(join(root, 'new/1700000007.M7P1.old'), 'Subject: later\n\nnew\n');
    await writeFile(join(root, 'cur/1700000001.M1P1.old,S=30:2,S'), 'Subject: one, edited\n\nbody one\n');
    await utimes(join(root, 'cur/1700000001.M1P1.old,S=30:2,S'), when, when);
    const third = await importInto(store, id, await openMaildir(root));
    assert.equal(third.messages, 2);
    assert.equal(third.alreadyPresent, 5);
    assert.deepEqual((await view(store, id, 'INBOX')).subjects.slice(6), ['one, edited', 'later']);
  } finally {
    await rm(root, { recursive: true, force: true });
    await cleanup();
  }
});

test('An mbox imported twice: the second run imports nothing, also for messages without a From_ date', async () => {
  const { store, cleanup } = await openTestStore();
  const dir = await mkdtemp(join(tmpdir(), 'facteur-mbox-twice-'));
  try {
    const file = join(dir, 'old.mbox');
    // Loose From_ lines (no asctime date): INTERNALDATE from the Date: header, else the file's
    // mtime, the same at every run.
    await writeFile(
      file,
      'From someone\nSubject: dated\nDate: Tue, 02 Jan 2024 03:04:05 +0000\n\nbody\n\nFrom someone\nSubject: undated\n\nbody\n\nFrom someone\nSubject: undated\n\nbody\n',
    );
    const id = await account(store);
    const first = await importInto(store, id, await openMbox(file));
    assert.equal(first.messages, 3);
    const box = await view(store, id, 'INBOX');
    assert.equal(box.entries[0]!.internalDate, Date.UTC(2024, 0, 2, 3, 4, 5));
    assert.equal(box.entries[1]!.internalDate, box.entries[2]!.internalDate);
    const before = await snapshot(store, id);
    await new Promise((r) => setTimeout(r, 20));
    const second = await importInto(store, id, await openMbox(file));
    assert.equal(second.messages, 0);
    assert.equal(second.alreadyPresent, 3);
    assert.deepEqual(await snapshot(store, id), before);
    // Into another mailbox, the same file is imported again (the check is per mailbox).
    const other = await importInto(store, id, await openMbox(file, { mailbox: 'Copy' }));
    assert.equal(other.messages, 3);
  } finally {
    await rm(dir, { recursive: true, force: true });
    await cleanup();
  }
});

const noDovecot = dovecotUnavailable();

async function fill(port: number, user: string, pass: string): Promise<void> {
  const c = new ImapFlow({ host: '127.0.0.1', port, secure: false, auth: { user, pass }, logger: false });
  await c.connect();
  await c.mailboxCreate('Work/Projects');
  const date = new Date(Date.UTC(2023, 4, 6, 7, 8, 9));
  for (let i = 1; i <= 7; i++) {
    await c.append('INBOX', `Message-ID: <m${i}@old.example>\r\nSubject: inbox ${i}\r\nFrom: a@example.org\r\n\r\nbody ${i}\r\n`, i % 3 === 0 ? ['\\Seen', '$Forwarded'] : ['\\Seen'], date);
  }
  for (let i = 1; i <= 3; i++) await c.append('Work/Projects', `Subject: work ${i}\r\n\r\nw\r\n`, ['\\Flagged'], date);
  await c.mailboxOpen('INBOX');
  await c.messageDelete('2', { uid: true });
  await c.logout();
}

function imapSource(port: number, user: string, pass: string): Promise<ImportSource> {
  return openImapSource({ endpoint: { host: '127.0.0.1', port, tls: false }, startTls: false, user, password: pass, pop3UidlFormat: '%08Xu%08Xv' });
}

async function uidlsOf(port: number, user: string, pass: string): Promise<string[]> {
  const src = await openPop3Source({ endpoint: { host: '127.0.0.1', port, tls: false }, startTls: false, user, password: pass });
  const out: string[] = [];
  // Only the listing: skip every message so nothing is downloaded.
  for await (const mb of src.mailboxes()) for await (const _ of mb.messages((m) => (m.pop3Uidl !== undefined && out.push(m.pop3Uidl) > 0))) assert.fail('skipped');
  await src.close();
  return out;
}

async function imapView(port: number, user: string, pass: string, name: string): Promise<{ uidValidity: number; uids: number[]; highestModSeq?: number }> {
  const src = await imapSource(port, user, pass);
  try {
    for await (const mb of src.mailboxes()) {
      if (mb.name !== name) continue;
      const uids: number[] = [];
      for await (const m of mb.messages((x) => (x.uid !== undefined && uids.push(x.uid) > 0))) assert.fail(String(m));
      return { uidValidity: mb.uidValidity!, uids, ...(mb.highestModSeq === undefined ? {} : { highestModSeq: mb.highestModSeq }) };
    }
    throw new Error(`no mailbox ${name}`);
  } finally {
    await src.close();
  }
}

test('From a live Dovecot over IMAP: after the move POP3 finds the same UIDLs (nothing to download) and IMAP the same UIDVALIDITY, UIDs and no lower HIGHESTMODSEQ', { skip: noDovecot ?? false }, async () => {
  const dove = await startDovecot({ bob: 'bob-old-secret' });
  const { store, cleanup } = await openTestStore();
  const log = pino({ level: 'silent' });
  const ctx = { hostname: 'mail.example.test', store, log, auth: createAuthenticator(store), tls: null };
  const pop3 = createPop3Server(ctx, { implicitTls: false });
  const imap = createImapServer(ctx as never, { implicitTls: false });
  try {
    await fill(dove.imapPort, 'bob', 'bob-old-secret');
    const oldUidls = await uidlsOf(dove.pop3Port, 'bob', 'bob-old-secret');
    const oldInbox = await imapView(dove.imapPort, 'bob', 'bob-old-secret', 'INBOX');
    const oldWork = await imapView(dove.imapPort, 'bob', 'bob-old-secret', 'Work/Projects');
    assert.equal(oldUidls.length, 6);

    const id = await account(store);
    const summary = await importInto(store, id, await imapSource(dove.imapPort, 'bob', 'bob-old-secret'));
    assert.equal(summary.messages, 9);
    assert.deepEqual(summary.skipped, []);

    const pop3Port = await pop3.listen('127.0.0.1', 0);
    const imapPort = await imap.listen('127.0.0.1', 0);
    const newUidls = await uidlsOf(pop3Port, 'bob@example.com', 'bob-password-1');
    assert.deepEqual(newUidls, oldUidls, 'a "leave on server" POP3 client sees only UIDLs it has: it downloads nothing');
    const newInbox = await imapView(imapPort, 'bob@example.com', 'bob-password-1', 'INBOX');
    assert.equal(newInbox.uidValidity, oldInbox.uidValidity);
    assert.deepEqual(newInbox.uids, oldInbox.uids);
    assert.ok(newInbox.highestModSeq! >= oldInbox.highestModSeq!, `HIGHESTMODSEQ ${newInbox.highestModSeq} >= the source's ${oldInbox.highestModSeq}`);
    const newWork = await imapView(imapPort, 'bob@example.com', 'bob-password-1', 'Work/Projects');
    assert.equal(newWork.uidValidity, oldWork.uidValidity);
    assert.deepEqual(newWork.uids, oldWork.uids);
    const inbox = await view(store, id, 'INBOX');
    assert.deepEqual(inbox.entries.map((e) => e.internalDate), inbox.entries.map(() => Date.UTC(2023, 4, 6, 7, 8, 9)));
    assert.deepEqual(inbox.entries.filter((e) => e.flags.includes('$Forwarded')).map((e) => e.uid), [3, 6]);

    // Imported over POP3 into another account: the UIDLs are kept too.
    const other = await account(store, 'carol@example.com');
    const p = await importInto(store, other, await openPop3Source({ endpoint: { host: '127.0.0.1', port: dove.pop3Port, tls: false }, startTls: false, user: 'bob', password: 'bob-old-secret' }));
    assert.equal(p.messages, 6);
    assert.deepEqual((await view(store, other, 'INBOX')).entries.map((e) => e.pid), oldUidls);
    const p2 = await importInto(store, other, await openPop3Source({ endpoint: { host: '127.0.0.1', port: dove.pop3Port, tls: false }, startTls: false, user: 'bob', password: 'bob-old-secret' }));
    assert.equal(p2.messages, 0);
    assert.equal(p2.alreadyPresent, 6);
  } finally {
    await pop3.close(500);
    await imap.close(500);
    await cleanup();
    await dove.stop();
  }
});

test('An interrupted live IMAP import resumes without duplicates; a source folder recreated (new UIDVALIDITY) is imported again with a warning', { skip: noDovecot ?? false }, async () => {
  const dove = await startDovecot({ bob: 'bob-old-secret' });
  const { store, cleanup } = await openTestStore();
  try {
    await fill(dove.imapPort, 'bob', 'bob-old-secret');
    const id = await account(store);
    let batches = 0;
    await assert.rejects(
      importInto(store, id, await imapSource(dove.imapPort, 'bob', 'bob-old-secret'), {
        batchMessages: 2,
        onProgress: () => {
          if (++batches === 2) throw new Error('connection lost');
        },
      }),
      /connection lost/,
    );
    assert.equal((await view(store, id, 'INBOX')).entries.length, 4);
    const resumed = await importInto(store, id, await imapSource(dove.imapPort, 'bob', 'bob-old-secret'), { batchMessages: 2 });
    assert.equal(resumed.alreadyPresent, 4);
    assert.equal(resumed.messages, 5);
    const inbox = await view(store, id, 'INBOX');
    assert.deepEqual(inbox.subjects, ['inbox 1', 'inbox 3', 'inbox 4', 'inbox 5', 'inbox 6', 'inbox 7']);
    assert.deepEqual(inbox.entries.map((e) => e.uid), [1, 3, 4, 5, 6, 7]);

    // The old server's folder is deleted and created again: a new UIDVALIDITY.
    const c = new ImapFlow({ host: '127.0.0.1', port: dove.imapPort, secure: false, auth: { user: 'bob', pass: 'bob-old-secret' }, logger: false });
    await c.connect();
    await c.mailboxDelete('Work/Projects');
    await c.mailboxCreate('Work/Projects');
    await c.append('Work/Projects', 'Subject: work again\r\n\r\nw\r\n', []);
    await c.logout();
    const again = await importInto(store, id, await imapSource(dove.imapPort, 'bob', 'bob-old-secret'));
    assert.match(again.warnings.join('\n'), /Work\/Projects: the source's UIDVALIDITY changed/);
    assert.equal(again.messages, 1);
    assert.deepEqual((await view(store, id, 'Work/Projects')).subjects, ['work again']);
    assert.equal((await view(store, id, 'INBOX')).entries.length, 6);
  } finally {
    await cleanup();
    await dove.stop();
  }
});

test('A source mailbox whose UIDVALIDITY equals the new empty INBOX by chance still gets its UIDNEXT and HIGHESTMODSEQ floors', async () => {
  const { store, cleanup } = await openTestStore();
  try {
    const id = await account(store);
    const inbox = (await store.getMailbox(id, 'INBOX'))!;
    // UIDVALIDITYs are creation times on both sides: a source created in the same second as the
    // account's INBOX has the same one.
    const source: ImportSource = {
      description: 'test source',
      warnings: [],
      async close() {},
      async *mailboxes() {
        yield {
          name: 'INBOX',
          uidValidity: inbox.uidValidity,
          uidNext: 40,
          highestModSeq: 5000,
          expectedMessages: 1,
          expectedBytes: 100,
          async *messages() {
            yield { kind: 'message', raw: testMessage({ subject: 'old' }).raw, flags: ['\\Seen'], internalDate: Date.UTC(2024, 0, 1), uid: 37, pop3Uidl: 'old-37', origin: 'UID 37' };
          },
        };
      },
    };
    const summary = await importInto(store, id, source);
    assert.equal(summary.messages, 1);
    const after = (await store.getMailbox(id, 'INBOX'))!;
    assert.equal(after.uidValidity, inbox.uidValidity);
    assert.ok(after.highestModSeq >= 5000, `HIGHESTMODSEQ ${after.highestModSeq}`);
    assert.ok(after.uidNext >= 40, `UIDNEXT ${after.uidNext}`);
    const entries = await store.listEntries(after.id);
    assert.deepEqual(entries.map((e) => [e.uid, e.pid]), [[37, 'old-37']]);
  } finally {
    await cleanup();
  }
});
