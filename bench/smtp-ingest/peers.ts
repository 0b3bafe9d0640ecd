/**
 * Postfix delivering to Dovecot over LMTP, configured from scratch in a temp directory on loopback
 * ports (Debian packages postfix and dovecot-lmtpd; needs root, as both daemons drop privileges).
 * fsync before 250 on both sides: Postfix fsyncs the queue file before answering the data (its
 * default), Dovecot runs with mail_fsync = always.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, readFileSync, readdirSync, writeFileSync, cpSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { groupId, staticAuth, startDovecotDaemon, userId } from '../shared/dovecot.js';

export interface Peers {
  smtpPort: number;
  /** Messages Dovecot has stored so far (files in the users' maildirs). */
  stored(): number;
  stop(): void;
}

export function startPeers(dir: string, smtpPort: number, lmtpPort: number): Peers {
  const dove = join(dir, 'dovecot');
  const mail = join(dir, 'mail');
  const pf = join(dir, 'postfix');
  for (const d of [mail, join(pf, 'conf'), join(pf, 'queue'), join(pf, 'data')]) {
    mkdirSync(d, { recursive: true });
  }
  // The daemons drop privileges: they must be able to reach their directories.
  chmodSync(dir, 0o755);
  chmodSync(dirname(dir), 0o755);
  chownSync(mail, userId('nobody'), groupId('nobody'));
  chownSync(join(pf, 'data'), userId('postfix'), groupId('postfix'));

  const dovecot = startDovecotDaemon({
    dir: dove,
    protocols: ['lmtp'],
    mailLocation: `maildir:${mail}/%d/%n`,
    mailFsync: 'always',
    auth: staticAuth(`${mail}/%d/%n`),
    ports: { lmtp: lmtpPort },
  });

  const conf = join(pf, 'conf');
  cpSync('/etc/postfix/dynamicmaps.cf', join(conf, 'dynamicmaps.cf'));
  if (existsSync('/etc/postfix/dynamicmaps.cf.d')) cpSync('/etc/postfix/dynamicmaps.cf.d', join(conf, 'dynamicmaps.cf.d'), { recursive: true });
  writeFileSync(
    join(conf, 'main.cf'),
    `compatibility_level = 3.6
config_directory = ${conf}
queue_directory = ${pf}/queue
data_directory = ${pf}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.example
mydomain = bench.example
myorigin = bench.example
mydestination =
mynetworks = 127.0.0.0/8
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
local_recipient_maps =
relay_domains =
virtual_mailbox_domains = example.com
virtual_mailbox_maps = static:ok
virtual_transport = lmtp:inet:127.0.0.1:${lmtpPort}
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
default_process_limit = 200
disable_dns_lookups = yes
smtp_dns_support_level = disabled
biff = no
alias_maps =
alias_database =
maillog_file = ${pf}/maillog
maillog_file_prefixes = ${pf}
`,
  );
  const services = readFileSync('/etc/postfix/master.cf', 'utf8')
    .split('\n')
    .filter((l) => !/^smtp\s+inet\b/.test(l) && !/^#/.test(l));
  writeFileSync(join(conf, 'master.cf'), [`127.0.0.1:${smtpPort} inet n - n - - smtpd`, ...services].join('\n'));
  execFileSync('postfix', ['-c', conf, 'set-permissions'], { stdio: 'ignore' });
  execFileSync('postfix', ['-c', conf, 'start'], { stdio: 'ignore' });

  const countDir = (d: string): number => (existsSync(d) ? readdirSync(d).length : 0);
  return {
    smtpPort,
    stored() {
      const domainDir = join(mail, 'example.com');
      if (!existsSync(domainDir)) return 0;
      let n = 0;
      for (const user of readdirSync(domainDir)) n += countDir(join(domainDir, user, 'new')) + countDir(join(domainDir, user, 'cur'));
      return n;
    },
    stop() {
      try {
        execFileSync('postfix', ['-c', conf, 'stop'], { stdio: 'ignore' });
      } catch {
        // already stopped
      }
      dovecot.stop();
    },
  };
}
