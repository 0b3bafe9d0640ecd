/**
 * POP3 benchmark: sessions per second and messages retrieved per second, Facteur against Dovecot's
 * pop3d, side by side in one run, the same messages loaded into both.
 *
 *   sudo node --import tsx bench/pop3/run.ts [users=4] [messages=200] [sessions-per-user=25]
 *
 * Each server runs in its own process(es); this process is the load: one client per user, all
 * concurrent. Workloads:
 * - sessions: connect, USER, PASS, STAT, QUIT, back to back (password check included: Facteur
 *   uses scrypt N=2^14, Dovecot here SHA512-CRYPT with 5000 rounds, each one's default);
 * - first retrieval: one session per user, RETR of every message (Facteur writes \Seen at each
 *   RETR, fsync'd; Dovecot with mail_fsync=always updates the maildir flags at QUIT);
 * - second retrieval: the same again, every message already \Seen.
 * Dovecot (Debian package dovecot-pop3d) is configured by this script on a loopback port with a
 * temporary config and maildirs; it needs root (it drops privileges). Without it, only Facteur
 * is measured.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SERVER_NODE_FLAGS } from '../../src/cli/node-flags.js';
import { retrieve, sessions, type LoadResult } from './client.js';
import { BENCH_PASSWORD, benchMessage, benchUser } from './messages.js';
import { groupId, haveDovecot, passwdFileAuth, startDovecot, userId, writeMaildir, writePasswdFile } from '../shared/dovecot.js';
import { freePort } from '../shared/net.js';

const USERS = Number(process.argv[2] ?? 4);
const MESSAGES = Number(process.argv[3] ?? 200);
const SESSIONS_PER_USER = Number(process.argv[4] ?? 25);
const users = Array.from({ length: USERS }, (_, k) => benchUser(k + 1));

interface Running {
  port: number;
  stop(): Promise<void>;
}

async function startFacteur(dir: string, retrSetsSeen: boolean): Promise<Running> {
  const script = fileURLToPath(new URL('./facteur-server.ts', import.meta.url));
  const child: ChildProcess = spawn(
    process.execPath,
    // The flags `facteur` runs with (src/cli/node-flags.ts): what users run is measured.
    [...SERVER_NODE_FLAGS, '--import', 'tsx', script, dir, String(USERS), String(MESSAGES), String(retrSetsSeen)],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /PORT (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`facteur server exited with ${code}`)));
  });
  return {
    port,
    stop: () =>
      new Promise((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

async function startPop3Dovecot(dir: string): Promise<Running> {
  const port = await freePort();
  const mail = join(dir, 'mail');
  mkdirSync(mail, { recursive: true });
  chmodSync(dir, 0o755);
  writePasswdFile(join(dir, 'passwd'), users, BENCH_PASSWORD);
  for (const u of users) writeMaildir(join(mail, u), Array.from({ length: MESSAGES }, (_, i) => ({ raw: benchMessage(u, i) })));
  chownSync(mail, userId('nobody'), groupId('nobody'));
  const dovecot = await startDovecot({
    dir,
    protocols: ['pop3'],
    mailLocation: `maildir:${mail}/%u`,
    mailFsync: 'always',
    auth: passwdFileAuth(join(dir, 'passwd'), 'SHA512-CRYPT', `${mail}/%u`),
    ports: { pop3: port },
  });
  return { port, stop: dovecot.stop };
}

interface Row {
  server: string;
  sessions: LoadResult;
  first: LoadResult;
  second: LoadResult;
}

async function measure(name: string, server: Running): Promise<Row> {
  // Warm-up: one session per user (Dovecot builds its index and UID list here).
  await sessions(server.port, users, BENCH_PASSWORD, 1);
  const s = await sessions(server.port, users, BENCH_PASSWORD, SESSIONS_PER_USER);
  const first = await retrieve(server.port, users, BENCH_PASSWORD);
  const second = await retrieve(server.port, users, BENCH_PASSWORD);
  return { server: name, sessions: s, first, second };
}

const perSecond = (n: number, ms: number): string => ((n / ms) * 1000).toFixed(0);
const mbPerSecond = (bytes: number, ms: number): string => ((bytes / ms) * 1000 / 1e6).toFixed(1);

const root = mkdtempSync(join(tmpdir(), 'facteur-bench-pop3-'));
chmodSync(root, 0o755);
const rows: Row[] = [];
try {
  for (const seen of [true, false]) {
    const f = await startFacteur(join(root, `facteur-${seen}`), seen);
    try {
      rows.push(await measure(seen ? 'Facteur' : 'Facteur, retr_sets_seen = false', f));
    } finally {
      await f.stop();
    }
  }
  if (haveDovecot('pop3')) {
    const d = await startPop3Dovecot(join(root, 'dovecot'));
    try {
      rows.push(await measure('Dovecot 2.3 pop3d', d));
    } finally {
      await d.stop();
    }
  } else {
    console.error('Dovecot not measured: needs root and the dovecot-pop3d package');
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}

console.log(`${USERS} concurrent clients (one account each), ${MESSAGES} messages per account, ` +
  `${SESSIONS_PER_USER} sessions per client; ${cpus().length} CPUs, Node ${process.version}\n`);
console.log('| server | sessions/s | first retrieval: messages/s | MB/s | second retrieval: messages/s | MB/s |');
console.log('|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(
    `| ${r.server} | ${perSecond(r.sessions.sessions, r.sessions.elapsedMs)} | ` +
      `${perSecond(r.first.messages, r.first.elapsedMs)} | ${mbPerSecond(r.first.bytes, r.first.elapsedMs)} | ` +
      `${perSecond(r.second.messages, r.second.elapsedMs)} | ${mbPerSecond(r.second.bytes, r.second.elapsedMs)} |`,
  );
}
