import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { openStore } from '../../src/store/open.js';
import { testStoreLocation } from '../helpers/store.js';
import { connectSmtp } from './wire.js';
import { dotStuff } from './harness.js';

const CHILD = fileURLToPath(new URL('./fixtures/server-child.ts', import.meta.url));

async function startChild(location: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, location], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /PORT (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`child exited with ${code}`)));
  });
  return { child, port };
}

function kill9(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

async function subjects(location: string): Promise<string[]> {
  const store = await openStore(location);
  try {
    assert.deepEqual(await store.checkConsistency(), []);
    const bob = await store.getAccountByAddress('bob@example.com');
    const inbox = await store.getMailbox(bob!.id, 'INBOX');
    const entries = await store.listEntries(inbox!.id);
    const out: string[] = [];
    for (const e of entries) out.push((await store.getParsed(e.blobHash)).subject);
    return out;
  } finally {
    await store.close();
  }
}

test('kill -9 right after 250: after restart every acknowledged message is there exactly once', async () => {
  // The backend under test (FACTEUR_TEST_STORE): the child reopens the same store.
  const where = await testStoreLocation();
  const location = where.location;
  try {
    let { child, port } = await startChild(location);
    // Five senders at once; the server is killed as soon as the first one is acknowledged.
    const acked: string[] = [];
    let killed: Promise<void> | null = null;
    await Promise.all(
      [0, 1, 2, 3, 4].map(async (n) => {
        const c = await connectSmtp(port);
        try {
          await c.expect(220);
          c.write(`EHLO c${n}.example\r\nMAIL FROM:<s@example.net>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n`);
          await c.expect(250);
          await c.expect(250);
          await c.expect(250);
          await c.expect(354);
          c.write(dotStuff(`Subject: crash-${n}\r\n\r\nbody ${n}\r\n`));
          const r = await c.read();
          if (r.code === 250) {
            acked.push(`crash-${n}`);
            killed ??= kill9(child);
          }
        } catch {
          // connection cut by the kill: not acknowledged
        } finally {
          c.close();
        }
      }),
    );
    await killed;
    assert.ok(acked.length >= 1);
    // Restart on the same store, deliver one more, kill again.
    ({ child, port } = await startChild(location));
    const c = await connectSmtp(port);
    await c.expect(220);
    c.write(`EHLO again.example\r\nMAIL FROM:<s@example.net>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n`);
    for (const code of [250, 250, 250, 354]) await c.expect(code);
    c.write(dotStuff('Subject: after-restart\r\n\r\nbody\r\n'));
    await c.expect(250);
    await kill9(child);
    c.close();
    const stored = await subjects(location);
    for (const s of [...acked, 'after-restart']) {
      assert.equal(stored.filter((x) => x === s).length, 1, `${s} stored exactly once; stored: ${stored.join(', ')}`);
    }
    assert.equal(new Set(stored).size, stored.length, 'no duplicates');
  } finally {
    await where.cleanup();
  }
});
