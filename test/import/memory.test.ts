/**
 * A large Maildir import runs in bounded memory: after a forced GC, the live heap plus Buffers
 * stays flat from the first quarter of the import to its end (a source or importer that kept
 * messages would grow by the size of what it imported), and RSS growth stays bounded.
 * The 200,000-message figure is in docs/benchmarks.md (bench/import/run.ts).
 */
import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createCredentials } from '../../src/auth/password.js';
import { importInto } from '../../src/import/importer.js';
import { openMaildir } from '../../src/import/maildir.js';
import { openTestStore } from '../helpers/store.js';
import { writeLargeMaildir } from './fixtures.js';

const MESSAGES = 20_000;
const SIZE = 3000;

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const live = (): number => {
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
};
const MB = 1024 * 1024;

test(`A ${MESSAGES}-message Maildir import keeps memory flat`, async () => {
  const { store, cleanup } = await openTestStore();
  const root = await mkdtemp(join(tmpdir(), 'facteur-maildir-big-'));
  try {
    await writeLargeMaildir(root, MESSAGES, SIZE);
    await store.addDomain('example.com');
    const account = await store.createAccount({ address: 'bob@example.com', ...(await createCredentials('bob-password-1')) });
    const rssBefore = process.memoryUsage.rss();
    let rssPeak = rssBefore;
    const sampler = setInterval(() => { rssPeak = Math.max(rssPeak, process.memoryUsage.rss()); }, 50);
    const samples: Array<{ at: number; live: number }> = [];
    let summary;
    try {
      summary = await importInto(store, account.id, await openMaildir(root), {
        onProgress: (p) => { samples.push({ at: p.messages, live: live() }); },
      });
    } finally {
      clearInterval(sampler);
    }
    assert.equal(summary.messages, MESSAGES);
    const imported = summary.bytes;
    assert.ok(imported > MESSAGES * SIZE, `imported ${imported} bytes`);
    const quarter = samples.filter((s) => s.at >= MESSAGES / 4);
    const first = quarter[0]!.live;
    const worst = Math.max(...quarter.map((s) => s.live));
    const growth = worst - first;
    // What remains after the first quarter is three quarters of the mail (about 45 MB): a leak of
    // the messages (or of their parse records) shows here; a flat import stays within GC noise.
    assert.ok(growth < 12 * MB, `live memory grew by ${(growth / MB).toFixed(1)} MB from message ${quarter[0]!.at} to the end (${samples.map((s) => (s.live / MB).toFixed(0)).join(' ')})`);
    assert.ok(rssPeak - rssBefore < 200 * MB, `RSS grew by ${((rssPeak - rssBefore) / MB).toFixed(0)} MB`);
    const inbox = (await store.getMailbox(account.id, 'INBOX'))!;
    assert.equal((await store.mailboxCounts(inbox.id)).messages, MESSAGES);
  } finally {
    await rm(root, { recursive: true, force: true });
    await cleanup();
  }
});
