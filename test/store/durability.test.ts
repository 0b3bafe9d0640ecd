/**
 * DESIGN.md invariant 1: an acknowledged write survives kill -9 right after the ack. A child
 * process appends messages and prints an ack line after each append resolves; this test kills it
 * with SIGKILL the moment it reads an ack, reopens the store and checks every acknowledged
 * message is there exactly once and the store is consistent.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { openSqliteStore } from '../../src/store/sql/sqlite/sqlite-store.js';

const CHILD = join(import.meta.dirname, '..', 'helpers', 'durability-child.ts');

/** Runs the child until it has acknowledged `killAfterAcks` appends, then SIGKILLs it. Returns
 * subject -> UID of every ack read. */
async function runAndKill(dir: string, tag: string, killAfterAcks: number): Promise<Map<string, number>> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dir, tag], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.on('exit', (code, signal) => resolve(signal ?? code)));
  const acks = new Map<string, number>();
  const lines = createInterface({ input: child.stdout });
  for await (const line of lines) {
    const m = /^ack (\S+) (\d+)$/.exec(line);
    if (m === null) continue;
    acks.set(`durable ${m[1]}`, Number(m[2]));
    if (acks.size >= killAfterAcks) {
      child.kill('SIGKILL');
      break;
    }
  }
  const how = await exited;
  assert.equal(how, 'SIGKILL', `child ended by ${String(how)} before being killed: ${stderr}`);
  return acks;
}

test('every acknowledged append survives kill -9 of the process, exactly once', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'facteur-durability-'));
  try {
    const setup = await openSqliteStore({ dir });
    await setup.addDomain('example.com');
    const bob = await setup.createAccount({ address: 'bob@example.com', passwordHash: 'h' });
    await setup.close();

    // Two crashes in a row: recovery after the first must leave a store that works and crashes
    // safely again.
    const acked = new Map<string, number>();
    for (const [tag, killAfter] of [['a', 40], ['b', 25]] as const) {
      for (const [subject, uid] of await runAndKill(dir, tag, killAfter)) acked.set(subject, uid);
    }

    const store = await openSqliteStore({ dir });
    try {
      const inbox = await store.getMailbox(bob.id, 'INBOX');
      assert.ok(inbox);
      const entries = await store.listEntries(inbox.id);
      const bySubject = new Map<string, number[]>();
      for (const e of entries) {
        const subject = (await store.getParsed(e.blobHash)).subject;
        bySubject.set(subject, [...(bySubject.get(subject) ?? []), e.uid]);
        // The bytes are there too, whole.
        assert.equal((await store.readBlob(e.blobHash)).length, e.size);
      }
      for (const [subject, uid] of acked) {
        assert.deepEqual(bySubject.get(subject), [uid], `acked ${subject} (uid ${uid}) is present exactly once`);
      }
      for (const [subject, list] of bySubject) assert.equal(list.length, 1, `${subject} stored ${list.length} times`);
      assert.deepEqual(await store.checkConsistency(), []);
      await store.collectGarbage();
      assert.deepEqual(await store.checkConsistency(), []);
    } finally {
      await store.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
