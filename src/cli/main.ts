/**
 * The `facteur` command. Every command takes `--data DIR` (or FACTEUR_DATA). Exit codes: 0 done,
 * 1 failed (message on stderr), 2 usage error.
 */
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createCredentials } from '../auth/password.js';
import { LISTENER_NAMES, parseHostPort, type ListenerName } from '../config/config.js';
import type { MailStore } from '../store/types.js';
import { CONFIG_FILE, dataDirFrom, dataDirStore, exists, initDataDir, openDataDir } from './data-dir.js';
import { parse, readPasswordStdin, UsageError, type Options } from './args.js';
import { appPasswordCommand, CredentialsUsage, totpCommand } from './credentials.js';
import { dkimDnsRecord, dkimRecordName, generateDkimKeys, loadDkimKeys, type DkimKey } from '../msgauth/dkim-keys.js';
import { formatVacation, parseVacation, VACATION_DAYS_DEFAULT, VACATION_ENTRY } from '../delivery/vacation.js';
import { accountSettingsCommand, AccountSettingsUsage } from './account-settings.js';
import { METADATA_LIMITS } from '../imap/server/handlers/metadata.js';

// The server, the importers, backups, the queue and the DNS tools are loaded by the commands that
// use them: `facteur user add` need not load the SMTP stack and mailauth (a third of a second).
const serveModule = () => import('./serve.js');
const backupModule = () => import('./backup.js');
const importModule = () => import('./import.js');
const dnsModule = () => import('./dns.js');


const USAGE = `Usage: facteur COMMAND [options]   (every command takes --data DIR or FACTEUR_DATA)

  init --domain DOMAIN [--hostname HOST] [--dev]   create a data directory
  serve [--listen NAME=HOST:PORT]... [--dns HOST:PORT]...
                                                    run the server in the foreground
  demo                                              create ./data with a demo account if missing, then serve
  domain add DOMAIN | list | remove DOMAIN [--force] (add creates its DKIM keys)
  dkim rotate DOMAIN | list [DOMAIN]                new DKIM keys (sign after 48 h) / show keys and records
  queue list | show ID | retry ID|all | hold ID|all | release ID|all | drop ID|all
  user add ADDRESS (--password P | --password-stdin)
  user passwd ADDRESS (--password P | --password-stdin)
  user list [DOMAIN] | remove ADDRESS | show ADDRESS | disable ADDRESS | enable ADDRESS
  user set ADDRESS [--quota-storage SIZE|none] [--quota-messages N|none] [--pop3-delete expunge|trash|hide]
                                                    quotas (SIZE: 500M, 2G...) and what POP3's DELE
                                                    does at QUIT (hide: POP3 on the desktop, IMAP on
                                                    the phone; docs/pop3-imap.md)
  user app-password add ADDRESS NAME | list ADDRESS | revoke ADDRESS NAME
                                                    per-device passwords (printed once at add)
  user totp enable ADDRESS [--secret BASE32 --confirm CODE] | disable ADDRESS
                                                    second factor; then IMAP/POP3/SMTP take only
                                                    app passwords
  user import FILE                                  one "address password" pair per line
  user vacation ADDRESS on (--text T | --text-file F) [--subject S] [--days N] [--start DATE] [--end DATE]
  user vacation ADDRESS off | show                  automatic reply while away (once per sender per N days, 7 by default)
  alias add SOURCE TARGET | list [DOMAIN] | remove SOURCE   (SOURCE @domain = catch-all;
                                                    a TARGET in another domain forwards there)
  check-store                                       verify the store's invariants
  backup OUT [--no-gzip]                            the whole store in one file, while the server runs
  restore IN [--into-non-empty]                     restore a backup into the configured store (SQLite
                                                    or PostgreSQL), keeping UIDs, modseqs and UIDLs
  export installation OUT | import installation IN  the same as backup / restore
  export account ADDRESS --format maildir|mbox OUT  one account's mail as a Maildir++ tree or mboxrd files
  dns DOMAIN [--ip ADDRESS]...                      print every DNS record the domain needs (zone file)
  import maildir ADDRESS PATH [--dovecot auto|yes|no] [--pop3-uidl-format F]
  import mbox ADDRESS FILE|DIR [--mailbox NAME] [--unescape rd|none]
  import imap ADDRESS imaps://USER@HOST[:PORT] [--password-file F] [--starttls] [--insecure]
  import pop3 ADDRESS pop3s://USER@HOST[:PORT] [--password-file F] [--starttls] [--insecure]
  import domain DOMAIN --map FILE --from maildir ROOT   (map: one "address path" per line)
                                                    move mail in from another server (docs/operations.md)
  check DOMAIN [--ip ADDRESS]... [--dns HOST:PORT]...
                                                    check those records, reverse DNS, certificate and
                                                    blocklists; exit 1 when something is wrong

Listener names: ${LISTENER_NAMES.join(', ')}`;


async function readPassword(values: Options): Promise<string> {
  if (typeof values.password === 'string') return values.password;
  if (values['password-stdin']) return readPasswordStdin();
  throw new UsageError('a password is needed: --password P or --password-stdin');
}

function checkPassword(pw: string): void {
  if (pw.length < 8) throw new Error('Password too short: at least 8 characters');
  if (pw.length > 1024) throw new Error('Password too long: at most 1024 characters');
}

async function withStore<T>(values: Options, fn: (store: MailStore) => Promise<T>): Promise<T> {
  const { store } = await openDataDir(dataDirFrom(values.data as string | undefined));
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

async function addUser(store: MailStore, address: string, password: string): Promise<void> {
  checkPassword(password);
  const at = address.lastIndexOf('@');
  if (at < 1 || at === address.length - 1) throw new Error(`Invalid address: ${address}`);
  const domain = address.slice(at + 1).toLowerCase();
  if (!(await store.isLocalDomain(domain))) throw new Error(`Domain ${domain} is not local: facteur domain add ${domain}`);
  // Hash and SCRAM verifier together, so SCRAM-SHA-256 works from the first login.
  await store.createAccount({ address, ...(await createCredentials(password)) });
}

const out = (s: string) => process.stdout.write(`${s}\n`);

async function domainCmd(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { force: { type: 'boolean' } });
  const [sub, name] = positionals;
  return withStore(values, async (store) => {
    if (sub === 'add' && name) {
      await store.addDomain(name.toLowerCase());
      out(`added ${name.toLowerCase()}`);
      const dir = dataDirFrom(values.data as string | undefined);
      if ((await loadDkimKeys(dir, name)).length === 0) printDkim(await generateDkimKeys(dir, name));
      return 0;
    }
    if (sub === 'list') { for (const d of await store.listDomains()) out(d.name); return 0; }
    if (sub === 'remove' && name) { await store.removeDomain(name.toLowerCase(), values.force === true); out(`removed ${name}`); return 0; }
    throw new UsageError('domain add DOMAIN | list | remove DOMAIN [--force]');
  });
}

function printDkim(keys: readonly DkimKey[]): void {
  // A TXT string holds at most 255 octets (RFC 1035 §3.3.14): longer values are split.
  for (const k of keys) out(`${dkimRecordName(k)}. IN TXT ${(dkimDnsRecord(k).match(/.{1,255}/g) ?? []).map((c) => `"${c}"`).join(' ')}`);
}

async function dkimCmd(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {});
  const [sub, domain] = positionals;
  const dir = dataDirFrom(values.data as string | undefined);
  if (sub === 'rotate' && domain) {
    await withStore(values, async (store) => {
      if (!(await store.isLocalDomain(domain.toLowerCase()))) throw new Error(`Domain ${domain} is not local`);
    });
    const keys = await generateDkimKeys(dir, domain);
    out(`new keys for ${domain.toLowerCase()}: publish these records now; they sign from 48 hours on, the old keys until then:`);
    printDkim(keys);
    return 0;
  }
  if (sub === 'list') {
    const domains = domain ? [domain] : await withStore(values, async (store) => (await store.listDomains()).map((d) => d.name));
    for (const d of domains) printDkim(await loadDkimKeys(dir, d));
    return 0;
  }
  throw new UsageError('dkim rotate DOMAIN | list [DOMAIN]');
}

async function queueCmd(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {});
  const [sub, id] = positionals;
  const dir = dataDirFrom(values.data as string | undefined);
  // The queue beside the store: <data>/queue.db, or the one every node shares in PostgreSQL.
  const { location } = await dataDirStore(dir);
  const [{ describeTls, dropQueued, formatQueueList, holdQueued, listQueue, releaseQueued, retryQueued, showQueued }, { openQueueStore, queueLocation }] =
    await Promise.all([import('../queue/admin.js'), import('../queue/open.js')]);
  const queue = await openQueueStore(queueLocation(dir, location));
  try {
    if (sub === 'list') {
      out(formatQueueList(await listQueue(queue)));
      return 0;
    }
    if (sub === 'show' && id) {
      const shown = await showQueued(queue, id);
      if (!shown) throw new Error(`No queued message ${id}`);
      out(shown.header);
      out('');
      const tls = describeTls(shown.message);
      if (tls) out(tls);
      for (const r of shown.message.recipients) out(`${r.address}: ${r.state}${r.lastError ? ` (${r.lastError})` : ''}`);
      return 0;
    }
    const actions: Record<string, (id: string) => Promise<number>> = {
      retry: (x) => retryQueued(queue, x),
      hold: (x) => holdQueued(queue, x),
      release: (x) => releaseQueued(queue, x),
      drop: (x) => dropQueued(queue, x),
    };
    const act = sub ? actions[sub] : undefined;
    if (act && id) {
      const n = await act(id);
      out(`${sub}: ${n} changed`);
      return n > 0 ? 0 : 1;
    }
    throw new UsageError('queue list | show ID | retry ID|all | hold ID|all | release ID|all | drop ID|all');
  } finally {
    await queue.close();
  }
}

/** `user vacation ADDRESS on|off|show`: the account's automatic reply (delivery/vacation.ts). */
async function vacationCommand(store: MailStore, address: string, action: string | undefined, values: Record<string, unknown>): Promise<number> {
  const account = await store.getAccountByAddress(address);
  if (!account) throw new Error(`No such user: ${address}`);
  const current = (await store.getMetadata(account.id, null)).find((e) => e.name === VACATION_ENTRY);
  if (action === 'show' || action === undefined) {
    const s = current ? parseVacation(current.value) : null;
    if (!s) {
      out(`${account.address}: no vacation reply`);
      return 0;
    }
    const when = (t: number | null) => (t === null ? '-' : new Date(t).toISOString());
    out(`${account.address}: vacation reply on, from ${when(s.start)} until ${when(s.end)}, once every ${s.days} days per sender`);
    out(`Subject: ${s.subject ?? 'Auto: <original subject>'}`);
    out('');
    out(s.text);
    return 0;
  }
  if (action === 'off') {
    if (current) await store.setMetadata(account.id, null, [{ name: VACATION_ENTRY, value: null }], METADATA_LIMITS);
    out(`vacation reply off for ${account.address}`);
    return 0;
  }
  if (action !== 'on') throw new UsageError('user vacation ADDRESS on|off|show');
  const textFile = values['text-file'] as string | undefined;
  const text = textFile !== undefined ? await readFile(textFile, 'utf8') : (values.text as string | undefined);
  if (text === undefined) throw new UsageError('user vacation ADDRESS on needs --text TEXT or --text-file FILE');
  const date = (v: unknown, key: string): number | null => {
    if (v === undefined) return null;
    const t = Date.parse(String(v));
    if (Number.isNaN(t)) throw new UsageError(`--${key}: not a date (YYYY-MM-DD or an ISO 8601 time)`);
    return t;
  };
  const days = values.days === undefined ? VACATION_DAYS_DEFAULT : Number(values.days);
  const value = formatVacation({
    subject: (values.subject as string | undefined) ?? null,
    text,
    days,
    start: date(values.start, 'start'),
    end: date(values.end, 'end'),
  });
  await store.setMetadata(account.id, null, [{ name: VACATION_ENTRY, value }], METADATA_LIMITS);
  out(`vacation reply on for ${account.address}`);
  return 0;
}

async function userCmd(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    password: { type: 'string' },
    'password-stdin': { type: 'boolean' },
    secret: { type: 'string' },
    confirm: { type: 'string' },
    subject: { type: 'string' },
    text: { type: 'string' },
    'text-file': { type: 'string' },
    days: { type: 'string' },
    start: { type: 'string' },
    end: { type: 'string' },
    'quota-storage': { type: 'string' },
    'quota-messages': { type: 'string' },
    'pop3-delete': { type: 'string' },
  });
  const [sub, arg] = positionals;
  if ((sub === 'show' || sub === 'set' || sub === 'disable' || sub === 'enable') && arg) {
    return withStore(values, async (store) => {
      try {
        return await accountSettingsCommand(store, sub, arg, values, out);
      } catch (err) {
        if (err instanceof AccountSettingsUsage) throw new UsageError(err.message);
        throw err;
      }
    });
  }
  if (sub === 'vacation' && arg) {
    return withStore(values, async (store) => vacationCommand(store, arg, positionals[2], values));
  }
  if (sub === 'app-password' || sub === 'totp') {
    const io = { out, err: (s: string) => process.stderr.write(`${s}\n`) };
    const { config, store } = await openDataDir(dataDirFrom(values.data as string | undefined));
    try {
      if (sub === 'app-password') return await appPasswordCommand(store, positionals.slice(1), io);
      const secret = values.secret as string | undefined;
      const confirm = values.confirm as string | undefined;
      return await totpCommand(store, positionals.slice(1), { issuer: config.hostname, ...(secret === undefined ? {} : { secret }), ...(confirm === undefined ? {} : { confirm }) }, io);
    } catch (err) {
      if (err instanceof CredentialsUsage) throw new UsageError(err.message);
      throw err;
    } finally {
      await store.close();
    }
  }
  if (sub === 'add' && arg) {
    const pw = await readPassword(values);
    return withStore(values, async (store) => { await addUser(store, arg, pw); out(`added ${arg.toLowerCase()}`); return 0; });
  }
  if (sub === 'passwd' && arg) {
    const pw = await readPassword(values);
    checkPassword(pw);
    return withStore(values, async (store) => {
      const account = await store.getAccountByAddress(arg);
      if (!account) throw new Error(`No such user: ${arg}`);
      await store.updateAccount(account.id, await createCredentials(pw));
      out(`password changed for ${account.address}`);
      return 0;
    });
  }
  if (sub === 'list') {
    return withStore(values, async (store) => {
      for (const a of await store.listAccounts(arg?.toLowerCase())) {
        out(`${a.address}${a.disabled ? ' (disabled)' : ''}${a.totpSecret !== null ? ' (totp)' : ''}`);
      }
      return 0;
    });
  }
  if (sub === 'remove' && arg) {
    return withStore(values, async (store) => {
      const account = await store.getAccountByAddress(arg);
      if (!account) throw new Error(`No such user: ${arg}`);
      await store.deleteAccount(account.id);
      out(`removed ${account.address}`);
      return 0;
    });
  }
  if (sub === 'import' && arg) {
    const text = await readFile(arg, 'utf8');
    return withStore(values, async (store) => {
      let added = 0;
      let refused = 0;
      const lines = text.split(/\r?\n/);
      for (let i = 0; i < lines.length; i++) {
        const line = lines[i]!.trim();
        if (line === '' || line.startsWith('#')) continue;
        const m = /^(\S+)\s+(\S.*)$/.exec(line);
        try {
          if (!m) throw new Error('expected "address password"');
          await addUser(store, m[1]!, m[2]!);
          added++;
        } catch (err) {
          refused++;
          process.stderr.write(`${arg}:${i + 1}: refused: ${(err as Error).message}\n`);
        }
      }
      out(`imported ${added} user(s), refused ${refused}`);
      return refused > 0 ? 1 : 0;
    });
  }
  throw new UsageError('user add|passwd ADDRESS (--password P | --password-stdin) | list [DOMAIN] | remove ADDRESS | import FILE');
}

async function aliasCmd(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {});
  const [sub, a, b] = positionals;
  return withStore(values, async (store) => {
    if (sub === 'add' && a && b) { await store.addAlias(a.toLowerCase(), b.toLowerCase()); out(`${a.toLowerCase()} -> ${b.toLowerCase()}`); return 0; }
    if (sub === 'list') { for (const al of await store.listAliases(a?.toLowerCase())) out(`${al.source} -> ${al.target}`); return 0; }
    if (sub === 'remove' && a) { await store.removeAlias(a.toLowerCase()); out(`removed ${a.toLowerCase()}`); return 0; }
    throw new UsageError('alias add SOURCE TARGET | list [DOMAIN] | remove SOURCE');
  });
}

async function checkStoreCmd(argv: string[]): Promise<number> {
  const { values } = parse(argv, {});
  return withStore(values, async (store) => {
    const problems = await store.checkConsistency();
    for (const p of problems) out(`problem: ${p}`);
    out(problems.length === 0 ? 'store is consistent' : `${problems.length} problem(s)`);
    return problems.length === 0 ? 0 : 1;
  });
}

function parseListen(values: Options): Partial<Record<ListenerName, string>> {
  const result: Partial<Record<ListenerName, string>> = {};
  for (const spec of (values.listen as string[] | undefined) ?? []) {
    const eq = spec.indexOf('=');
    const name = spec.slice(0, eq) as ListenerName;
    if (eq < 0 || !LISTENER_NAMES.includes(name)) throw new UsageError(`--listen ${spec}: expected NAME=HOST:PORT with NAME one of ${LISTENER_NAMES.join(', ')}`);
    parseHostPort(spec.slice(eq + 1), `--listen ${name}`);
    result[name] = spec.slice(eq + 1);
  }
  return result;
}

const SERVE_OPTIONS = { listen: { type: 'string', multiple: true }, dns: { type: 'string', multiple: true }, only: { type: 'boolean' } } as const;

async function serveCmd(argv: string[]): Promise<number> {
  const { values } = parse(argv, SERVE_OPTIONS);
  const dir = dataDirFrom(values.data as string | undefined);
  return (await serveModule()).serve(dir, { listen: parseListen(values), onlyListed: values.only === true, dns: (values.dns as string[] | undefined) ?? [] });
}

async function dnsCmd(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { ip: { type: 'string', multiple: true } });
  const [domain, extra] = positionals;
  if (!domain || extra) throw new UsageError('dns DOMAIN [--ip ADDRESS]...');
  const [{ domainSetup }, { renderZone }] = await Promise.all([dnsModule(), import('../dns/records.js')]);
  const setup = await domainSetup(dataDirFrom(values.data as string | undefined), domain, (values.ip as string[] | undefined) ?? []);
  if (setup.ips.length === 0) {
    process.stderr.write('facteur dns: no address (public_ips in the config, or --ip): A, AAAA and PTR records are left out and SPF names the MX\n');
  }
  if (!setup.records.some((r) => r.kind === 'dkim')) {
    process.stderr.write(`facteur dns: no DKIM key for ${setup.domain} in the data directory (dkim/${setup.domain}/): mail from it is not signed\n`);
  }
  process.stdout.write(renderZone(setup.records));
  return 0;
}

async function checkCmd(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { ip: { type: 'string', multiple: true }, dns: { type: 'string', multiple: true } });
  const [domain, extra] = positionals;
  if (!domain || extra) throw new UsageError('check DOMAIN [--ip ADDRESS]... [--dns HOST:PORT]...');
  const { report, problems } = await (await dnsModule()).runCheck(dataDirFrom(values.data as string | undefined), domain, (values.ip as string[] | undefined) ?? [], (values.dns as string[] | undefined) ?? []);
  process.stdout.write(report);
  return problems ? 1 : 0;
}

const DEMO_DOMAIN = 'example.test';

/** `npm start`: a working server on unprivileged ports with a demo account, no setup. */
async function demoCmd(argv: string[]): Promise<number> {
  const { values } = parse(argv, SERVE_OPTIONS);
  const dir = resolve((values.data as string | undefined) ?? process.env.FACTEUR_DATA ?? 'data');
  const credFile = join(dir, 'demo-account.txt');
  if (!(await exists(join(dir, CONFIG_FILE)))) {
    await initDataDir(dir, { domain: DEMO_DOMAIN, hostname: 'localhost', dev: true });
    const password = randomBytes(9).toString('base64url');
    const { store } = await openDataDir(dir);
    try {
      await addUser(store, `demo@${DEMO_DOMAIN}`, password);
    } finally {
      await store.close();
    }
    await writeFile(credFile, `demo@${DEMO_DOMAIN} ${password}\n`, { mode: 0o600 });
  }
  const cred = (await readFile(credFile, 'utf8').catch(() => '')).trim();
  const [user, password] = cred.split(' ');
  process.stderr.write(
    `\nFacteur demo: data in ${dir}\n` +
      (user ? `  account:  ${user}\n  password: ${password}\n` : '') +
      `  IMAP 127.0.0.1:2143 (STARTTLS) / 2993 (TLS), POP3 2110 / 2995, SMTP 2525, submission 2587 / 2465, HTTP 8080 / HTTPS 8443\n` +
      `  The certificate is self-signed: accept it in your client. Stop with Ctrl-C.\n\n`,
  );
  return (await serveModule()).serve(dir, { listen: parseListen(values), onlyListed: false, dns: (values.dns as string[] | undefined) ?? [] });
}

async function initCmd(argv: string[]): Promise<number> {
  const { values } = parse(argv, { domain: { type: 'string' }, hostname: { type: 'string' }, dev: { type: 'boolean' } });
  if (typeof values.domain !== 'string') throw new UsageError('init needs --domain DOMAIN');
  const dir = dataDirFrom(values.data as string | undefined);
  const config = await initDataDir(dir, { domain: values.domain, hostname: values.hostname as string | undefined, dev: values.dev === true });
  out(`initialised ${dir} for ${values.domain.toLowerCase()} (hostname ${config.hostname})`);
  out(`next: facteur user add postmaster@${values.domain.toLowerCase()} --password-stdin --data ${dir}`);
  return 0;
}

const COMMANDS: Record<string, (argv: string[]) => Promise<number>> = {
  init: initCmd,
  serve: serveCmd,
  demo: demoCmd,
  domain: domainCmd,
  dkim: dkimCmd,
  queue: queueCmd,
  user: userCmd,
  alias: aliasCmd,
  'check-store': checkStoreCmd,
  backup: async (argv) => (await backupModule()).backupCmd(argv),
  restore: async (argv) => (await backupModule()).restoreCmd(argv),
  export: exportCmd,
  import: importAnyCmd,
  dns: dnsCmd,
  check: checkCmd,
};

async function exportCmd(argv: string[]): Promise<number> {
  const [what, ...rest] = argv;
  if (what === 'installation') return (await backupModule()).backupCmd(rest);
  if (what === 'account') return (await backupModule()).exportAccountCmd(rest);
  throw new UsageError('export installation OUT | account ADDRESS --format maildir|mbox OUT');
}

/** `import installation IN` is a restore; the other kinds move mail in from elsewhere. */
async function importAnyCmd(argv: string[]): Promise<number> {
  const [what, ...rest] = argv;
  if (what === 'installation') return (await backupModule()).restoreCmd(rest);
  return (await importModule()).importCmd(argv);
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    out(USAGE);
    return cmd ? 0 : 2;
  }
  const fn = COMMANDS[cmd];
  if (!fn) {
    process.stderr.write(`facteur: unknown command "${cmd}"\n\n${USAGE}\n`);
    return 2;
  }
  try {
    return await fn(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`facteur ${cmd}: ${err.message}\n`);
      return 2;
    }
    process.stderr.write(`facteur ${cmd}: ${(err as Error).message}\n`);
    return 1;
  }
}
