/**
 * A Dovecot (Debian packages dovecot-imapd, dovecot-pop3d) configured from scratch in a temp
 * directory, on loopback ports, as the "old server" of the import tests. Needs root (Dovecot
 * drops privileges to the mail user, nobody). `dovecotUnavailable()` says why a test must skip.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';

export interface DovecotServer {
  imapPort: number;
  pop3Port: number;
  /** Mail root: the user's Maildir is `${mail}/${user}/Maildir`. */
  mail: string;
  maildir(user: string): string;
  stop(): Promise<void>;
}

export function dovecotUnavailable(): string | null {
  if (!existsSync('/usr/sbin/dovecot')) return 'Dovecot is not installed (/usr/sbin/dovecot)';
  if (!existsSync('/usr/lib/dovecot/imap') || !existsSync('/usr/lib/dovecot/pop3')) return 'dovecot-imapd or dovecot-pop3d is not installed';
  if (process.getuid?.() !== 0) return 'Dovecot needs root to drop privileges to the mail user';
  return null;
}

async function waitForPort(port: number, child: ChildProcess, logFile: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`dovecot exited with ${child.exitCode}; see ${logFile}`);
    const ok = await new Promise<boolean>((resolve) => {
      const c = connect(port, '127.0.0.1', () => { c.destroy(); resolve(true); });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`dovecot did not listen on ${port}; see ${logFile}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function startDovecot(users: Record<string, string>): Promise<DovecotServer> {
  const dir = await mkdtemp(join(tmpdir(), 'facteur-dovecot-'));
  await chmod(dir, 0o755);
  const mail = join(dir, 'mail');
  for (const d of [join(dir, 'run'), join(dir, 'state'), mail]) await mkdir(d, { recursive: true });
  await writeFile(join(dir, 'passwd'), Object.entries(users).map(([u, p]) => `${u}:{PLAIN}${p}`).join('\n') + '\n');
  const nobody = Number(execFileSync('id', ['-u', 'nobody']).toString().trim());
  const nogroup = Number(execFileSync('id', ['-g', 'nobody']).toString().trim());
  for (const u of Object.keys(users)) await mkdir(join(mail, u), { recursive: true });
  execFileSync('chown', ['-R', `${nobody}:${nogroup}`, mail]);
  const [imapPort, pop3Port] = [await freePort(), await freePort()];
  const conf = join(dir, 'dovecot.conf');
  const log = join(dir, 'dovecot.log');
  await writeFile(
    conf,
    `base_dir = ${dir}/run
state_dir = ${dir}/state
log_path = ${log}
protocols = imap pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
passdb {
  driver = passwd-file
  args = scheme=PLAIN ${dir}/passwd
}
userdb {
  driver = static
  args = uid=${nobody} gid=${nogroup} home=${mail}/%u
}
namespace inbox {
  inbox = yes
  separator = /
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = ${imapPort}
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = ${pop3Port}
  }
  inet_listener pop3s {
    port = 0
  }
}
`,
  );
  const child = spawn('/usr/sbin/dovecot', ['-F', '-c', conf], { stdio: 'ignore' });
  try {
    await waitForPort(imapPort, child, log);
    await waitForPort(pop3Port, child, log);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  return {
    imapPort,
    pop3Port,
    mail,
    maildir: (user) => join(mail, user, 'Maildir'),
    async stop() {
      if (child.exitCode === null) {
        await new Promise<void>((resolve) => {
          child.once('exit', () => resolve());
          child.kill('SIGTERM');
        });
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
