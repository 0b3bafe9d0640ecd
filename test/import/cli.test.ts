import { strict as assert } from 'node:assert';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCli } from '../helpers/cli.js';
import { writeDovecotAccount, writeDovecotFolder } from './fixtures.js';

async function dataDir(root: string): Promise<string> {
  const data = join(root, 'data');
  assert.equal((await runCli(['init', '--domain', 'example.com', '--data', data])).code, 0);
  for (const u of ['bob', 'carol']) {
    assert.equal((await runCli(['user', 'add', `${u}@example.com`, '--password', 'password-123', '--data', data])).code, 0);
  }
  return data;
}

test('facteur import maildir, mbox and domain: summaries, and the bad inputs refused', async () => {
  const root = await mkdtemp(join(tmpdir(), 'facteur-import-cli-'));
  try {
    const data = await dataDir(root);
    await writeDovecotAccount(join(root, 'bob'));
    const r = await runCli(['import', 'maildir', 'bob@example.com', join(root, 'bob'), '--data', data]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^bob@example\.com: imported 9 message\(s\), .* from maildir /);
    assert.match(r.stdout, /INBOX: 5 \(UIDVALIDITY and UIDs kept\)/);
    assert.equal(r.stderr, '', 'no progress bar when stderr is not a terminal');
    const again = await runCli(['import', 'maildir', 'bob@example.com', join(root, 'bob'), '--data', data]);
    assert.match(again.stdout, /imported 0 message\(s\)/);
    assert.match(again.stdout, /skipped \(already imported\): 9/);

    const mbox = join(root, 'old.mbox');
    await writeFile(mbox, 'From a Mon Jan  1 10:00:00 2024\nSubject: one\n\nx\n');
    const m = await runCli(['import', 'mbox', 'carol@example.com', mbox, '--mailbox', 'Old', '--data', data]);
    assert.equal(m.code, 0, m.stderr);
    assert.match(m.stdout, /carol@example\.com: imported 1 message\(s\)/);
    assert.match(m.stdout, /Old: 1 \(new UIDs\)/);

    // A whole domain from a map; carol's INBOX already holds... nothing, but bob's does now.
    await writeDovecotFolder(join(root, 'carol'), [{ uid: 3, subject: 'c', letters: 'S', mtime: Date.now() }], { nextUid: 4, uidValidity: 77 });
    await writeFile(join(root, 'map'), '# address path\nbob@example.com bob\ncarol@example.com carol\n');
    const d = await runCli(['import', 'domain', 'example.com', '--map', join(root, 'map'), '--from', 'maildir', root, '--data', data]);
    assert.equal(d.code, 0, d.stderr);
    assert.match(d.stdout, /carol@example\.com: imported 1 message\(s\)/);
    assert.match(d.stdout, /bob@example\.com: imported 0 message\(s\)/);
    assert.equal((await runCli(['check-store', '--data', data])).code, 0);

    // Bad inputs.
    const unknown = await runCli(['import', 'maildir', 'nobody@example.com', join(root, 'bob'), '--data', data]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /No such user: nobody@example\.com/);
    const mode = await runCli(['import', 'maildir', 'bob@example.com', join(root, 'bob'), '--dovecot', 'maybe', '--data', data]);
    assert.equal(mode.code, 2);
    assert.match(mode.stderr, /--dovecot takes auto, yes or no/);
    const url = await runCli(['import', 'imap', 'bob@example.com', 'http://old.example', '--data', data]);
    assert.equal(url.code, 2);
    assert.match(url.stderr, /expected imap:\/\/ or imaps:\/\//);
    const nopw = await runCli(['import', 'imap', 'bob@example.com', 'imaps://bob@127.0.0.1:1', '--data', data], { env: { FACTEUR_IMPORT_PASSWORD: '' } });
    assert.equal(nopw.code, 2);
    assert.match(nopw.stderr, /password/);
    const refused = await runCli(['import', 'pop3', 'bob@example.com', 'pop3://bob@127.0.0.1:1', '--data', data], { env: { FACTEUR_IMPORT_PASSWORD: 'x' } });
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /ECONNREFUSED/);
    await mkdir(join(root, 'empty'));
    const empty = await runCli(['import', 'maildir', 'bob@example.com', join(root, 'empty'), '--data', data]);
    assert.equal(empty.code, 1);
    assert.match(empty.stderr, /holds no Maildir/);
    await writeFile(join(root, 'badmap'), 'eve@elsewhere.org x\n');
    const badmap = await runCli(['import', 'domain', 'example.com', '--map', join(root, 'badmap'), '--from', 'maildir', root, '--data', data]);
    assert.equal(badmap.code, 2);
    assert.match(badmap.stderr, /not in example\.com/);
    assert.equal((await runCli(['import', 'tarball', 'bob@example.com', 'x', '--data', data])).code, 2);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
