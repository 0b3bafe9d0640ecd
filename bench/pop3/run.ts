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
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { retrieve, sessions, type LoadResult } from './client.js';
import { BENCH_PASSWORD, benchMessage, benchUser } from './messages.js';

const USERS = Number(process.argv[2] ?? 4);
const MESSAGES = Number(process.argv[3] ?? 200);
const SESSIONS_PER_USER = Number(process.argv[4] ?? 25);
const users = Array.from({ length: USERS }, (_, k) => benchUser(k + 1));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a !== null ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number): Promise<void> {
  const { connect } = await import('node:net');
  const deadline = Date.now() + 20_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface Running {
  port: number;
  stop(): Promise<void>;
}

async function startFacteur(dir: string, retrSetsSeen: boolean): Promise<Running> {
  const script = fileURLToPath(new URL('./facteur-server.ts', import.meta.url));
  const child: ChildProcess = spawn(
    process.execPath,
    ['--import', 'tsx', script, dir, String(USERS), String(MESSAGES), String(retrSetsSeen)],
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

function haveDovecot(): boolean {
  try {
    execFileSync('test', ['-x', '/usr/lib/dovecot/pop3']);
    return process.getuid?.() === 0;
  } catch {
    return false;
  }
}

async function startDovecot(dir: string): Promise<Running> {
  const port = await freePort();
  const mail = join(dir, 'mail');
  for (const d of [join(dir, 'run'), join(dir, 'state'), mail]) mkdirSync(d, { recursive: true });
  chmodSync(dir, 0o755);
  const hash = execFileSync('doveadm', ['pw', '-s', 'SHA512-CRYPT', '-p', BENCH_PASSWORD]).toString().trim();
  writeFileSync(join(dir, 'passwd'), users.map((u) => `${u}:${hash}`).join('\n') + '\n');
  const nobody = Number(execFileSync('id', ['-u', 'nobody']).toString().trim());
  const nogroup = Number(execFileSync('id', ['-g', 'nobody']).toString().trim());
  for (const u of users) {
    const box = join(mail, u);
    for (const sub of ['cur', 'new', 'tmp']) mkdirSync(join(box, sub), { recursive: true });
    for (let i = 0; i < MESSAGES; i++) {
      // Zero-padded names keep Dovecot's first scan in the same order as Facteur's UIDs.
      writeFileSync(join(box, 'cur', `${String(i).padStart(6, '0')}.bench:2,`), benchMessage(u, i));
    }
    execFileSync('chown', ['-R', `${nobody}:${nogroup}`, box]);
  }
  chownSync(mail, nobody, nogroup);
  const conf = join(dir, 'dovecot.conf');
  writeFileSync(
    conf,
    `base_dir = ${dir}/run
state_dir = ${dir}/state
log_path = ${dir}/dovecot.log
protocols = pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_fsync = always
mail_location = maildir:${mail}/%u
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
passdb {
  driver = passwd-file
  args = scheme=SHA512-CRYPT ${dir}/passwd
}
userdb {
  driver = static
  args = uid=${nobody} gid=${nogroup} home=${mail}/%u
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = ${port}
  }
  inet_listener pop3s {
    port = 0
  }
}
`,
  );
  const child = spawn('dovecot', ['-F', '-c', conf], { stdio: 'ignore' });
  await waitForPort(port);
  return {
    port,
    stop: () =>
      new Promise((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
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
  if (haveDovecot()) {
    const d = await startDovecot(join(root, 'dovecot'));
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
