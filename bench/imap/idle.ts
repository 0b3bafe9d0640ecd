/**
 * Memory per idle connection: `count` authenticated sessions, each with INBOX selected and in
 * IDLE, spread over the benchmark's accounts; the server's memory (its processes and their
 * children) is read three times: before any session, after the first `warm` sessions, and after
 * all of them.
 *
 * Two figures per connection come out of it:
 * - from the idle server: (all - before) / count. It includes what the first logins cost once
 *   for the whole process: Facteur's scrypt (16 MiB per computation) leaves up to 16-32 MiB
 *   resident in the malloc arena of each libuv thread that ran one, some 70 MiB in all, which
 *   with 1,000 sessions reads as 70 KiB "per connection".
 * - per added connection: (all - warm) / (count - warm), the slope once those one-time costs
 *   are paid. This is what each further connection costs, and what the 10,000-connection goal
 *   depends on.
 */
import { ImapClient } from './client.js';
import { memoryOf, type Memory } from './memory.js';
import { PASSWORD } from './setup.js';

export interface IdleResult {
  count: number;
  /** Sessions opened before the middle reading. */
  warm: number;
  /** How the sessions logged in. */
  login: 'password' | 'scram';
  openSeconds: number;
  before: Memory;
  warmed: Memory;
  after: Memory;
  rssPerConnection: number;
  pssPerConnection: number;
  /** The slope between the middle and the last reading. */
  rssPerAddedConnection: number;
  pssPerAddedConnection: number;
}

export async function idleMemory(opts: {
  ports: number[];
  pids: number[];
  users: string[];
  count: number;
  settleMs: number;
  /** password: LOGIN (the server runs scrypt each time); scram: AUTHENTICATE SCRAM-SHA-256. */
  login?: 'password' | 'scram';
  collect?: () => Promise<void>;
}): Promise<IdleResult> {
  const login = opts.login ?? 'password';
  const warm = Math.min(Math.max(16, Math.floor(opts.count / 5)), opts.count - 1);
  const read = async (): Promise<Memory> => {
    await new Promise((r) => setTimeout(r, opts.settleMs));
    await opts.collect?.();
    return memoryOf(opts.pids);
  };
  await new Promise((r) => setTimeout(r, 1000));
  await opts.collect?.();
  const before = memoryOf(opts.pids);
  const clients: ImapClient[] = [];
  let openMs = 0;
  let next = 0;
  // 16 logins at a time. With LOGIN the password check is the slow part of opening a session:
  // Facteur runs scrypt (about 45 ms of one core) for each, two at a time per process, and one
  // at a time per account (src/auth/authenticator.ts), so 1,000 sessions take at least 25 s
  // on two idle cores, and far more on a loaded machine.
  const openUpTo = async (n: number): Promise<void> => {
    const start = performance.now();
    const worker = async () => {
      while (next < n) {
        const i = next++;
        const port = opts.ports[i % opts.ports.length]!;
        const user = opts.users[i % opts.users.length]!;
        const c = login === 'scram' ? await ImapClient.loginScram(port, user, PASSWORD) : await ImapClient.login(port, user, PASSWORD);
        await c.ok('SELECT INBOX');
        await c.idle();
        clients.push(c);
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    openMs += performance.now() - start;
  };
  try {
    await openUpTo(warm);
    const warmed = await read();
    await openUpTo(opts.count);
    const after = await read();
    return {
      count: opts.count,
      warm,
      login,
      openSeconds: openMs / 1000,
      before,
      warmed,
      after,
      rssPerConnection: (after.rss - before.rss) / opts.count,
      pssPerConnection: (after.pss - before.pss) / opts.count,
      rssPerAddedConnection: (after.rss - warmed.rss) / (opts.count - warm),
      pssPerAddedConnection: (after.pss - warmed.pss) / (opts.count - warm),
    };
  } finally {
    for (const c of clients) c.close();
    await new Promise((r) => setTimeout(r, 2000));
  }
}
