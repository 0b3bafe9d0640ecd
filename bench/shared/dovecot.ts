/**
 * Dovecot 2.3 (Debian packages dovecot-imapd, -pop3d, -lmtpd) configured from scratch in a
 * directory, on loopback ports, for the benchmarks that compare with it. Needs root: the daemons
 * drop privileges, mail is owned by `nobody`.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { accessSync, chmodSync, constants, mkdirSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitForPort } from './net.js';

export function userId(name: string): number {
  return Number(execFileSync('id', ['-u', name]).toString().trim());
}
export function groupId(name: string): number {
  return Number(execFileSync('id', ['-g', name]).toString().trim());
}

/** True when we are root and the Dovecot binary of `protocol` is installed. */
export function haveDovecot(protocol: 'imap' | 'pop3' | 'lmtp'): boolean {
  try {
    accessSync(`/usr/lib/dovecot/${protocol}`, constants.X_OK);
    return process.getuid?.() === 0;
  } catch {
    return false;
  }
}

export interface DovecotConfig {
  /** Holds run/, state/, dovecot.conf and dovecot.log. */
  dir: string;
  protocols: Array<'imap' | 'pop3' | 'lmtp'>;
  /** e.g. `maildir:/tmp/x/mail/%u`. */
  mailLocation: string;
  /** `always` for benchmarks whose peer fsyncs every write; Dovecot's default is `optimized`. */
  mailFsync?: 'always' | 'optimized' | 'never';
  /** passdb and userdb blocks (staticAuth, passwdFileAuth). */
  auth: string;
  /** protocol -> port (inet listener on 127.0.0.1). */
  ports: Partial<Record<'imap' | 'pop3' | 'lmtp', number>>;
  /** Appended as is (limits, plugins, hibernation). */
  extra?: string;
}

/** Any user, no password (LMTP only), mail owned by nobody under `home` (a template: %d, %n). */
export function staticAuth(home: string): string {
  return `passdb {
  driver = static
  args = nopassword=y
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=${home} allow_all_users=yes
}
`;
}

/** passdb/userdb from a passwd-file of `user:{SCHEME}hash` lines; mail owned by nobody. */
export function passwdFileAuth(passwdFile: string, scheme: string, home: string): string {
  return `passdb {
  driver = passwd-file
  args = scheme=${scheme} ${passwdFile}
}
userdb {
  driver = static
  args = uid=${userId('nobody')} gid=${groupId('nobody')} home=${home}
}
`;
}

/** Writes a passwd-file for `users`, all with `password` hashed by doveadm in `scheme`. */
export function writePasswdFile(path: string, users: readonly string[], password: string, scheme = 'SHA512-CRYPT'): void {
  const hash = execFileSync('doveadm', ['pw', '-s', scheme, '-p', password]).toString().trim();
  writeFileSync(path, users.map((u) => `${u}:${hash}`).join('\n') + '\n');
}

function listener(protocol: 'imap' | 'pop3' | 'lmtp', port: number): string {
  if (protocol === 'lmtp') {
    return `service lmtp {\n  inet_listener lmtp {\n    address = 127.0.0.1\n    port = ${port}\n  }\n}\n`;
  }
  // The implicit-TLS listener of the login service is turned off (ssl = no).
  return `service ${protocol}-login {
  inet_listener ${protocol} {
    address = 127.0.0.1
    port = ${port}
  }
  inet_listener ${protocol}s {
    port = 0
  }
}
`;
}

export function writeDovecotConfig(c: DovecotConfig): string {
  for (const d of [join(c.dir, 'run'), join(c.dir, 'state')]) mkdirSync(d, { recursive: true });
  chmodSync(c.dir, 0o755);
  const conf = join(c.dir, 'dovecot.conf');
  writeFileSync(
    conf,
    `base_dir = ${c.dir}/run
state_dir = ${c.dir}/state
log_path = ${c.dir}/dovecot.log
protocols = ${c.protocols.join(' ')}
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
${c.mailFsync ? `mail_fsync = ${c.mailFsync}\n` : ''}mail_location = ${c.mailLocation}
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
${c.auth}${Object.entries(c.ports)
      .map(([p, port]) => listener(p as 'imap' | 'pop3' | 'lmtp', port))
      .join('')}${c.extra ?? ''}`,
  );
  return conf;
}

export interface RunningDovecot {
  /** The master process (its children are the login, imap, auth... processes). */
  pid: number;
  stop(): Promise<void>;
}

/** Starts Dovecot in the foreground (-F) and waits until every configured port listens. */
export async function startDovecot(c: DovecotConfig): Promise<RunningDovecot> {
  const conf = writeDovecotConfig(c);
  // stdio ignored: the daemons keep inherited pipes open.
  const child: ChildProcess = spawn('dovecot', ['-F', '-c', conf], { stdio: 'ignore' });
  for (const port of Object.values(c.ports)) await waitForPort(port);
  return {
    pid: child.pid!,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/** Starts Dovecot as a daemon (it forks); stop() signals the master from its pid file. */
export function startDovecotDaemon(c: DovecotConfig): { stop(): void } {
  const conf = writeDovecotConfig(c);
  execFileSync('dovecot', ['-c', conf], { stdio: 'ignore' });
  return {
    stop() {
      try {
        const pid = Number(readFileSync(join(c.dir, 'run', 'master.pid'), 'utf8').trim());
        if (pid > 0) process.kill(pid, 'SIGTERM');
      } catch {
        // already stopped
      }
    },
  };
}

/** A maildir (cur, new, tmp) owned by nobody, with `messages` in cur/ in the order given. */
export function writeMaildir(dir: string, messages: Iterable<{ raw: Buffer; /** epoch ms: the file's mtime, Dovecot's INTERNALDATE */ time?: number; flags?: string }>): number {
  for (const sub of ['cur', 'new', 'tmp']) mkdirSync(join(dir, sub), { recursive: true });
  let i = 0;
  for (const m of messages) {
    // Zero-padded names keep Dovecot's first scan in the same order as Facteur's UIDs; the
    // ,S=size part spares Dovecot a stat per message.
    const name = `${String(i).padStart(7, '0')}.bench,S=${m.raw.length}:2,${m.flags ?? ''}`;
    const path = join(dir, 'cur', name);
    writeFileSync(path, m.raw);
    if (m.time !== undefined) utimesSync(path, m.time / 1000, m.time / 1000);
    i++;
  }
  execFileSync('chown', ['-R', `${userId('nobody')}:${groupId('nobody')}`, dir]);
  return i;
}

/** Messages in a maildir (new/ and cur/). */
export function countMaildir(dir: string): number {
  let n = 0;
  for (const sub of ['new', 'cur']) {
    try {
      n += readdirSync(join(dir, sub)).length;
    } catch {
      // not created yet
    }
  }
  return n;
}
