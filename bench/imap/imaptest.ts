/**
 * The mixed workload: Dovecot's imaptest (not part of this repository; see docs/benchmarks.md
 * for how to build it) runs N clients doing random commands with its state tracking, which
 * reports any response that contradicts what the server said before (flags, expunges, counts,
 * message contents) as an error. The path comes from IMAPTEST.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

export interface MixedResult {
  /** Short state name -> commands completed. */
  counts: Record<string, number>;
  total: number;
  seconds: number;
  opsPerSecond: number;
  /** imaptest's "Error:" lines (state check failures, unexpected NO/BAD, disconnects). */
  errors: string[];
  /** The command lines with the output tail, for the log. */
  tail: string;
}

export function imaptestPath(): string | null {
  const p = process.env.IMAPTEST ?? '/work/tools/imaptest/src/imaptest';
  return existsSync(p) ? p : null;
}

/**
 * The command mix: imaptest's default (LOGIN/LIST/STATUS/SELECT/FETCH/FETCH2/STORE/DELETE/
 * EXPUNGE/APPEND/LOGOUT) plus SEARCH, which its default leaves out. Not IDLE: imaptest's random
 * mode stops on an assertion when it plans commands after an IDLE (client-state.c,
 * flags2login_state), so IDLE sessions are run beside it by the benchmark instead.
 * `stayLoggedIn` sets LOGOUT to 0%: each client logs in once and keeps working, so the figure is
 * about mailbox commands rather than password checks.
 */
export function mix(stayLoggedIn: boolean): string[] {
  const extra = process.env.FACTEUR_BENCH_IMAPTEST_MIX?.split(/\s+/).filter((a) => a !== '') ?? [];
  return [...(stayLoggedIn ? ['search=20', 'logout=0'] : ['search=20']), ...extra];
}

export interface MixedJob {
  port: number;
  /** imaptest's users=RANGE, e.g. "1-10": bench1..bench10@example.com. */
  users: string;
  password: string;
  clients: number;
  seconds: number;
  /** Target number of messages in each INBOX (imaptest APPENDs or EXPUNGEs towards it). */
  msgs: number;
  mbox: string;
  seed: number;
  stayLoggedIn: boolean;
}

export function runImaptest(bin: string, job: MixedJob): Promise<MixedResult> {
  const args = [
    'host=127.0.0.1',
    `port=${job.port}`,
    'user=bench%d@example.com',
    `users=${job.users}`,
    `pass=${job.password}`,
    `mbox=${job.mbox}`,
    `clients=${job.clients}`,
    // After secs, clients finish their command and log out within 10 s.
    `secs=${job.seconds},10`,
    `msgs=${job.msgs}`,
    `seed=${job.seed}`,
    ...mix(job.stayLoggedIn),
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { env: { ...process.env, LD_LIBRARY_PATH: '/usr/lib/dovecot' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const errors: string[] = [];
    let errBuf = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      errBuf += d.toString();
      let nl: number;
      while ((nl = errBuf.indexOf('\n')) >= 0) {
        const line = errBuf.slice(0, nl);
        errBuf = errBuf.slice(nl + 1);
        if (/Error|Panic|Fatal/i.test(line)) errors.push(line);
      }
    });
    child.once('error', reject);
    child.once('exit', () => {
      const at = out.lastIndexOf('Totals:');
      if (at < 0) return reject(new Error(`imaptest printed no totals:\n${out.slice(-2000)}`));
      const lines = out.slice(at).split('\n').slice(1).map((l) => l.trim()).filter((l) => l.length > 0);
      const names = lines[0]!.split(/\s+/);
      const numbers = lines.filter((l) => /^[\d\s]+$/.test(l)).pop()!.split(/\s+/).map(Number);
      const counts: Record<string, number> = {};
      names.forEach((n, i) => (counts[n] = numbers[i] ?? 0));
      const total = numbers.reduce((a, b) => a + b, 0);
      resolve({
        counts,
        total,
        seconds: job.seconds,
        opsPerSecond: total / job.seconds,
        errors,
        tail: `imaptest ${args.join(' ')}\n${out.slice(Math.max(0, at - 600))}`,
      });
    });
  });
}
