import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { openStore } from '../../src/store/open.js';
import { testStoreLocation } from '../helpers/store.js';
import { connectSmtp } from './wire.js';
import { alive, dotStuff } from './harness.js';

const CHILD = fileURLToPath(new URL('./fixtures/server-child.ts', import.meta.url));

async function startChild(location: string, mode: 'in-process' | 'workers' = 'in-process'): Promise<{ child: ChildProcess; port: number; worker: number | null }> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, location, mode], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /PORT (\d+)(?: WORKER (\d+))?\n/.exec(out);
      if (m) resolve({ child, port: Number(m[1]), worker: m[2] === undefined ? null : Number(m[2]) });
    });
    child.once('exit', (code) => reject(new Error(`child exited with ${code}`)));
  });
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

for (const mode of ['in-process', 'workers'] as const) {
  test(`kill -9 right after 250 (${mode}): after restart every acknowledged message is there exactly once`, async () => {
    // The backend under test (FACTEUR_TEST_STORE): the child reopens the same store.
    const where = await testStoreLocation();
    const location = where.location;
    try {
      let { child, port, worker } = await startChild(location, mode);
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
      if (worker !== null) {
        // The worker process of a killed owner stops too: nothing can be delivered through it.
        const deadline = Date.now() + 10_000;
        while (alive(worker) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        assert.ok(!alive(worker), 'the SMTP worker exits when its owner is gone');
      }
      // Restart on the same store, deliver one more, kill again.
      ({ child, port, worker } = await startChild(location, mode));
      const c = await connectSmtp(port);
      await c.expect(220);
      c.write(`EHLO again.example\r\nMAIL FROM:<s@example.net>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n`);
      for (const code of [250, 250, 250, 354]) await c.expect(code);
      c.write(dotStuff('Subject: after-restart\r\n\r\nbody\r\n'));
      await c.expect(250);
      await kill9(child);
      c.close();
      if (worker !== null) {
        const deadline = Date.now() + 10_000;
        while (alive(worker) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      }
      const stored = await subjects(location);
      for (const s of [...acked, 'after-restart']) {
        assert.equal(stored.filter((x) => x === s).length, 1, `${s} stored exactly once; stored: ${stored.join(', ')}`);
      }
      assert.equal(new Set(stored).size, stored.length, 'no duplicates');
    } finally {
      await where.cleanup();
    }
  });
}
