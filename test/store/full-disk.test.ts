/**
 * A full disk (ENOSPC / SQLITE_FULL) refuses the write that does not fit, with an error, and
 * loses nothing already acknowledged. The data directory is a small tmpfs mounted for the test
 * (root only: CI and the developers' machines run as root).
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { asMailboxId } from '../../src/lib/brand.js';
import { openSqliteStore } from '../../src/store/sql/sqlite/sqlite-store.js';
import { testMessage } from '../helpers/store.js';

function tryMount(dir: string, size: string): boolean {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const canMount = (() => {
  if (process.getuid?.() !== 0 || process.platform !== 'linux') return false;
  return true;
})();

test('a full disk refuses the append that does not fit and keeps every acknowledged message', { skip: canMount ? false : 'mounting a tmpfs needs root on Linux' }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'facteur-full-'));
  if (!tryMount(dir, '4m')) {
    t.skip('tmpfs mount refused in this sandbox');
    await rm(dir, { recursive: true, force: true });
    return;
  }
  try {
    const store = await openSqliteStore({ dir });
    await store.addDomain('example.com');
    const account = await store.createAccount({ address: 'bob@example.com', passwordHash: 'x' });
    const inbox = (await store.getMailbox(account.id, 'INBOX'))!;
    const acked: number[] = [];
    let failure: unknown = null;
    // 200 KiB messages (inline in the database) until the 4 MiB file system is full; then a
    // few 400 KiB ones (blob files) that must fail too.
    const body = 'x'.repeat(76) + '\r\n';
    for (let i = 0; i < 100 && failure === null; i++) {
      try {
        const r = await store.append(inbox.id, testMessage({ subject: `m${i}`, body: body.repeat(2600) }));
        acked.push(r.uid);
      } catch (err) {
        failure = err;
      }
    }
    assert.ok(failure !== null, 'the disk never filled up');
    assert.ok(acked.length >= 3, `only ${acked.length} messages fitted`);
    await assert.rejects(store.append(inbox.id, testMessage({ subject: 'big', body: body.repeat(5200) })));
    await store.close();

    // Reopened (as after a restart, with the disk still full): every acknowledged message is
    // there, readable, exactly once, and the store is consistent.
    const again = await openSqliteStore({ dir });
    const entries = await again.listEntries(asMailboxId(inbox.id));
    assert.deepEqual(entries.map((e) => e.uid), acked);
    for (const e of entries) assert.equal((await again.readBlob(e.blobHash)).length, e.size);
    assert.deepEqual(await again.checkConsistency(), []);
    await again.close();
  } finally {
    execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
    await rm(dir, { recursive: true, force: true });
  }
});
