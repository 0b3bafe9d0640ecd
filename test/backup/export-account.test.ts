/**
 * `facteur export account` writes Maildir++ and mboxrd that read back: checked on the files, then
 * round-tripped through `facteur import maildir|mbox` into a fresh installation.
 */
import { strict as assert } from 'node:assert';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { mboxrdRecord } from '../../src/backup/export-account.js';
import { initDataDir } from '../../src/cli/data-dir.js';
import { asUid } from '../../src/lib/brand.js';
import { openStore } from '../../src/store/open.js';
import type { MailStore } from '../../src/store/types.js';
import { runCli } from '../helpers/cli.js';
import { testMessage } from '../helpers/store.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function installation(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'facteur-export-'));
  dirs.push(dir);
  await initDataDir(dir, { domain: 'example.com', dev: true });
  return dir;
}

async function withStore<T>(dir: string, fn: (s: MailStore) => Promise<T>): Promise<T> {
  const s = await openStore(dir);
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

/** subject -> sorted flags, per mailbox name. */
async function view(s: MailStore, address: string): Promise<Record<string, Array<[string, string[]]>>> {
  const a = (await s.getAccountByAddress(address))!;
  const out: Record<string, Array<[string, string[]]>> = {};
  for (const m of await s.listMailboxes(a.id)) {
    const rows: Array<[string, string[]]> = [];
    for (const e of await s.listEntries(m.id)) rows.push([(await s.getParsed(e.blobHash)).subject ?? '', [...e.flags].sort()]);
    if (rows.length > 0) out[m.name] = rows;
  }
  return out;
}

test('mboxrd escapes From_ lines by one more ">" and carries the flags in Status/X-Status/X-Keywords', () => {
  const raw = Buffer.from('Subject: x\r\nStatus: RO\r\n\r\nFrom here\r\n>From there\r\nnot From\r\n');
  const rec = mboxrdRecord(raw, { flags: ['\\Seen', '\\Answered', '$Work'], internalDate: Date.UTC(2024, 0, 2, 3, 4, 5) }).toString();
  assert.equal(
    rec,
    'From MAILER-DAEMON Tue Jan  2 03:04:05 2024\nSubject: x\nStatus: RO\nX-Status: A\nX-Keywords: $Work\n\n>From here\n>>From there\nnot From\n\n',
  );
});

test('export account as maildir and mbox, then import both back', async () => {
  const src = await installation();
  const address = 'bob@example.com';
  await withStore(src, async (s) => {
    const bob = await s.createAccount({ address, passwordHash: 'h' });
    const inbox = (await s.getMailbox(bob.id, 'INBOX'))!;
    await s.append(inbox.id, testMessage({ subject: 'seen and flagged' }, { flags: ['\\Seen', '\\Flagged', '$Work'] }));
    await s.append(inbox.id, testMessage({ subject: 'unseen', body: 'From the start\r\n>From quoted\r\n' }));
    const sub = await s.createMailbox(bob.id, 'Projects/Q1');
    await s.append(sub.id, testMessage({ subject: 'in a subfolder' }, { flags: ['\\Answered', 'Later'] }));
    await s.setFlags(inbox.id, [asUid(2)], 'add', ['\\Deleted']);
  });
  const expected = await withStore(src, (s) => view(s, address));
  const out = await mkdtemp(join(tmpdir(), 'facteur-export-out-'));
  dirs.push(out);

  const md = join(out, 'maildir');
  const r1 = await runCli(['export', 'account', address, '--format', 'maildir', md, '--data', src]);
  assert.equal(r1.code, 0, r1.stderr);
  const cur = (await readdir(join(md, 'cur'))).sort();
  assert.equal(cur.length, 2);
  assert.match(cur[0]!, /\.M1\.facteur,S=\d+:2,FSa$/);
  assert.match(cur[1]!, /\.M2\.facteur,S=\d+:2,T$/);
  assert.equal(await readFile(join(md, 'dovecot-keywords'), 'utf8'), '0 $Work\n');
  assert.match(await readFile(join(md, 'dovecot-uidlist'), 'utf8'), /^3 V\d+ N3\n1 P\S+ :\S+\n2 P\S+ :\S+\n$/);
  const subCur = await readdir(join(md, '.Projects.Q1', 'cur'));
  assert.equal(subCur.length, 1);
  assert.match(subCur[0]!, /:2,Ra$/);
  assert.equal((await stat(join(md, 'cur', cur[0]!))).mtimeMs > 0, true);

  const mb = join(out, 'mbox');
  const r2 = await runCli(['export', 'account', address, '--format', 'mbox', mb, '--data', src]);
  assert.equal(r2.code, 0, r2.stderr);
  const inboxMbox = await readFile(join(mb, 'INBOX.mbox'), 'utf8');
  assert.equal(inboxMbox.match(/^From MAILER-DAEMON /gm)?.length, 2);
  assert.match(inboxMbox, /^>From the start$/m);
  assert.match(inboxMbox, /^>>From quoted$/m);
  assert.ok((await stat(join(mb, 'Projects', 'Q1.mbox'))).size > 0);

  const bad = await runCli(['export', 'account', address, '--format', 'zip', join(out, 'x'), '--data', src]);
  assert.equal(bad.code, 2);
  const none = await runCli(['export', 'account', 'nobody@example.com', '--format', 'mbox', join(out, 'y'), '--data', src]);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /No account/);

  // Round trip through the importers.
  const dst = await installation();
  await withStore(dst, (s) => s.createAccount({ address, passwordHash: 'h' }).then(() => undefined));
  const im = await runCli(['import', 'maildir', address, md, '--data', dst]);
  assert.equal(im.code, 0, im.stdout + im.stderr);
  assert.deepEqual(await withStore(dst, (s) => view(s, address)), expected);
  const dst2 = await installation();
  await withStore(dst2, (s) => s.createAccount({ address, passwordHash: 'h' }).then(() => undefined));
  const im2 = await runCli(['import', 'mbox', address, join(mb, 'INBOX.mbox'), '--mailbox', 'INBOX', '--data', dst2]);
  assert.equal(im2.code, 0, im2.stdout + im2.stderr);
  assert.deepEqual((await withStore(dst2, (s) => view(s, address))).INBOX, expected.INBOX);
});

test('export as maildir then import gives back the same mailbox names: ".", "%", "/", "&" and non-ASCII', async () => {
  const src = await installation();
  const address = 'bob@example.com';
  const names = ['v1.2 notes', '100% done', 'a.b/c.d', 'R&D/Q%2E1', 'Entwürfe', 'Çà/日本語.txt', 'x..y%'];
  await withStore(src, async (s) => {
    const bob = await s.createAccount({ address, passwordHash: 'h' });
    for (const n of names) {
      const mb = await s.createMailbox(bob.id, n);
      await s.append(mb.id, testMessage({ subject: `in ${n}` }));
      await s.setSubscribed(bob.id, n, true);
    }
  });
  const expected = await withStore(src, (s) => view(s, address));
  const out = await mkdtemp(join(tmpdir(), 'facteur-export-names-'));
  dirs.push(out);
  const md = join(out, 'maildir');
  const r = await runCli(['export', 'account', address, '--format', 'maildir', md, '--data', src]);
  assert.equal(r.code, 0, r.stderr);
  const folders = (await readdir(md)).filter((f) => f.startsWith('.')).sort();
  // Every folder name is ASCII (modified UTF-7), and '.' separates levels only.
  assert.ok(folders.includes('.v1%2E2 notes') && folders.includes('.100%25 done') && folders.includes('.a%2Eb.c%2Ed'), folders.join(' '));
  assert.ok(folders.includes('.R&-D.Q%252E1'), folders.join(' '));
  for (const f of folders) assert.match(f, /^[\x20-\x7e]+$/);

  const dst = await installation();
  await withStore(dst, (s) => s.createAccount({ address, passwordHash: 'h' }).then(() => undefined));
  const im = await runCli(['import', 'maildir', address, md, '--data', dst]);
  assert.equal(im.code, 0, im.stdout + im.stderr);
  const got = await withStore(dst, (s) => view(s, address));
  assert.deepEqual(got, expected);
  for (const n of names) assert.deepEqual(got[n], [[`in ${n}`, []]], n);
  const subs = await withStore(dst, async (s) => s.listSubscriptions((await s.getAccountByAddress(address))!.id));
  for (const n of names) assert.ok(subs.includes(n), `${n} subscribed: ${subs.join(', ')}`);
});
