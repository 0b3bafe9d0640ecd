import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { openSqliteQueueStore } from '../../src/queue/sqlite-store.js';
import { queueDbPath } from '../../src/queue/admin.js';
import { startSink } from './helpers.js';

const CHILD = join(import.meta.dirname, 'fixtures', 'queue-child.ts');

interface Child {
  proc: ChildProcess;
  lines: string[];
  /** Resolves with the line count once `predicate` holds for the lines read so far. */
  waitLines(predicate: (lines: string[]) => boolean, timeoutMs?: number): Promise<void>;
  kill9(): Promise<void>;
}

function startChild(env: Record<string, string>): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', CHILD], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: string[] = [];
  const waiters: Array<() => void> = [];
  createInterface({ input: proc.stdout! }).on('line', (l) => {
    lines.push(l);
    for (const w of waiters.splice(0)) w();
  });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  return {
    proc,
    lines,
    waitLines(predicate, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`child output so far: ${lines.join(' | ')}`)), timeoutMs);
        const check = () => {
          if (predicate(lines)) {
            clearTimeout(timer);
            resolve();
          } else waiters.push(check);
        };
        check();
      });
    },
    async kill9() {
      proc.kill('SIGKILL');
      await exited;
    },
  };
}

test('a message whose enqueue resolved survives kill -9 of the process', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'facteur-crash-'));
  try {
    const child = startChild({ QUEUE_DIR: dir, SINK_PORT: '1', MODE: 'enqueue', COUNT: '3' });
    await child.waitLines((l) => l.length >= 3);
    await child.kill9();
    const ids = child.lines.map((l) => l.split(' ')[1]);
    const store = openSqliteQueueStore(queueDbPath(dir));
    try {
      const messages = await store.listMessages();
      assert.deepEqual(messages.map((m) => m.id).sort(), [...ids].sort());
      for (const m of messages) {
        assert.equal(m.recipients.length, 1);
        assert.equal(m.recipients[0]!.state, 'queued');
        assert.ok((await store.readBody(m.id))?.includes('Subject: Hello'));
      }
    } finally {
      await store.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('kill -9 right after the remote accepted: the restarted worker delivers the rest and nobody twice', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'facteur-crash-'));
  const sink = await startSink();
  try {
    const enq = startChild({ QUEUE_DIR: dir, SINK_PORT: String(sink.port), MODE: 'enqueue', COUNT: '10' });
    await enq.waitLines((l) => l.length >= 10);
    await enq.kill9();

    // The worker blocks right after recording the third delivery, and is killed there.
    const first = startChild({ QUEUE_DIR: dir, SINK_PORT: String(sink.port), MODE: 'deliver', BLOCK_AFTER: '3' });
    await first.waitLines((l) => l.filter((x) => x.startsWith('delivered')).length >= 3);
    await first.kill9();
    assert.equal(sink.received.length, 3, 'the remote got exactly what was recorded');

    const second = startChild({ QUEUE_DIR: dir, SINK_PORT: String(sink.port), MODE: 'deliver' });
    try {
      await second.waitLines((l) => l.filter((x) => x.startsWith('delivered')).length >= 7);
      // Give a duplicate every chance to show up.
      await new Promise((r) => setTimeout(r, 500));
    } finally {
      await second.kill9();
    }
    for (let i = 0; i < 10; i++) assert.equal(sink.count(`u${i}@example.net`), 1, `u${i} delivered exactly once`);
    const again = second.lines.filter((x) => x.startsWith('delivered')).map((x) => x.split(' ')[1]);
    const before = first.lines.filter((x) => x.startsWith('delivered')).map((x) => x.split(' ')[1]);
    assert.deepEqual(again.filter((r) => before.includes(r)), []);

    const store = openSqliteQueueStore(queueDbPath(dir));
    try {
      assert.deepEqual(await store.listMessages(), []);
    } finally {
      await store.close();
    }
  } finally {
    await sink.close();
    await rm(dir, { recursive: true, force: true });
  }
});
