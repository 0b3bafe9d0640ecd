/**
 * Memory per idle connection: `count` authenticated sessions, each with INBOX selected and in
 * IDLE, spread over the benchmark's accounts; the server's memory (its processes and their
 * children) before and after, divided by the count.
 */
import { ImapClient } from './client.js';
import { memoryOf, type Memory } from './memory.js';
import { PASSWORD } from './setup.js';

export interface IdleResult {
  count: number;
  openSeconds: number;
  before: Memory;
  after: Memory;
  rssPerConnection: number;
  pssPerConnection: number;
}

export async function idleMemory(opts: {
  ports: number[];
  pids: number[];
  users: string[];
  count: number;
  settleMs: number;
  collect?: () => Promise<void>;
}): Promise<IdleResult> {
  await new Promise((r) => setTimeout(r, 1000));
  await opts.collect?.();
  const before = memoryOf(opts.pids);
  const clients: ImapClient[] = [];
  const start = performance.now();
  let next = 0;
  // 16 logins at a time: the password check is the slow part of opening a session, and
  // Facteur answers "throttled" past 36 password checks running or queued from one address
  // (src/auth/authenticator.ts: 4 at once per IP, 32 waiting).
  const worker = async () => {
    while (next < opts.count) {
      const i = next++;
      const c = await ImapClient.login(opts.ports[i % opts.ports.length]!, opts.users[i % opts.users.length]!, PASSWORD);
      await c.ok('SELECT INBOX');
      await c.idle();
      clients.push(c);
    }
  };
  try {
    await Promise.all(Array.from({ length: 16 }, worker));
    const openSeconds = (performance.now() - start) / 1000;
    await new Promise((r) => setTimeout(r, opts.settleMs));
    await opts.collect?.();
    const after = memoryOf(opts.pids);
    return {
      count: opts.count,
      openSeconds,
      before,
      after,
      rssPerConnection: (after.rss - before.rss) / opts.count,
      pssPerConnection: (after.pss - before.pss) / opts.count,
    };
  } finally {
    for (const c of clients) c.close();
    await new Promise((r) => setTimeout(r, 2000));
  }
}
