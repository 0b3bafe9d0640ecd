/**
 * The two servers of bench/imap with the same accounts and the same bytes: Facteur (its own
 * process, or two over one PostgreSQL database) and Dovecot 2.3 on Maildir, both on loopback.
 */
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { SERVER_NODE_FLAGS } from '../../src/cli/node-flags.js';
import { groupId, passwdFileAuth, startDovecot, userId, writeMaildir, writePasswdFile, type RunningDovecot } from '../shared/dovecot.js';
import { freePort, spawnTsx, type PortChild } from '../shared/net.js';
import { corpus } from './corpus.js';

export const PASSWORD = 'bench password 123';
export const BIG = 'big@example.com';
export const EMPTY = 'empty@example.com';
export const benchUser = (k: number): string => `bench${k}@example.com`;

export interface AccountSpec {
  address: string;
  seed: number;
  messages: number;
}

/** What a Facteur node process is asked to do (bench/imap/facteur-server.ts). */
export interface FacteurJob {
  store: string;
  load: boolean;
  /** Exit once loaded (to copy the loaded data directory, see `cache`). */
  loadOnly?: boolean;
  password: string;
  accounts: AccountSpec[];
}

export function accounts(big: number, users: number, userMessages: number): AccountSpec[] {
  const list: AccountSpec[] = [];
  if (big > 0) list.push({ address: BIG, seed: 1, messages: big });
  list.push({ address: EMPTY, seed: 2, messages: 0 });
  for (let k = 1; k <= users; k++) list.push({ address: benchUser(k), seed: 100 + k, messages: userMessages });
  return list;
}

export interface Server {
  name: string;
  /** IMAP ports: one per node. */
  imap: number[];
  lmtp: number;
  /** Processes whose memory is the server's (for Dovecot, the master: its children count). */
  pids: number[];
  /** Facteur: a full garbage collection in each node before memory is read. */
  collect?: () => Promise<void>;
  stop(): Promise<void>;
}

const FACTEUR_SERVER = fileURLToPath(new URL('./facteur-server.ts', import.meta.url));

/**
 * Facteur on SQLite in `dir`, or on PostgreSQL at `pgUrl` (a scratch database, recreated) with
 * `nodes` processes. SQLite with `cache`: the loaded data directory is kept there (for the same
 * accounts) and copied for later runs, since loading 100,000 messages takes many minutes here.
 */
export async function startFacteur(opts: { dir?: string; pgUrl?: string; nodes?: number; accounts: AccountSpec[]; cache?: string }): Promise<Server> {
  let store: string;
  let loaded = false;
  if (opts.pgUrl) {
    await recreateDatabase(opts.pgUrl);
    store = opts.pgUrl;
  } else {
    store = opts.dir!;
    if (opts.cache) {
      await loadCache(opts.cache, opts.accounts);
      cpSync(opts.cache, store, { recursive: true });
      loaded = true;
    }
  }
  const children: PortChild[] = [];
  try {
    const nodes = opts.nodes ?? 1;
    for (let n = 0; n < nodes; n++) {
      const job: FacteurJob = { store, load: n === 0 && !loaded, password: PASSWORD, accounts: opts.accounts };
      // --expose-gc: the memory figures are taken after a full collection (SIGUSR2).
      // FACTEUR_BENCH_PROF=DIR: each server process writes a CPU profile there when it stops.
      const prof = process.env.FACTEUR_BENCH_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.FACTEUR_BENCH_PROF}`] : [];
      // The flags `facteur` runs with (src/cli/node-flags.ts): what users run is measured.
      children.push(await spawnTsx(FACTEUR_SERVER, [JSON.stringify(job)], [...SERVER_NODE_FLAGS, '--expose-gc', ...prof]));
    }
  } catch (err) {
    await Promise.all(children.map((c) => c.stop()));
    throw err;
  }
  return {
    name: opts.pgUrl ? `Facteur, PostgreSQL, ${children.length} node${children.length > 1 ? 's' : ''}` : 'Facteur, SQLite',
    imap: children.map((c) => c.ports.imap!),
    lmtp: children[0]!.ports.lmtp!,
    pids: children.map((c) => c.child.pid!),
    collect: async () => {
      for (const c of children) c.child.kill('SIGUSR2');
      await new Promise((r) => setTimeout(r, 1000));
    },
    stop: async () => {
      await Promise.all(children.map((c) => c.stop()));
    },
  };
}

/** Loads `accounts` into a SQLite data directory `cache` unless it already holds them. */
export async function loadCache(cache: string, specs: AccountSpec[]): Promise<void> {
  const key = JSON.stringify(specs);
  const marker = join(cache, 'accounts.json');
  if (existsSync(marker) && readFileSync(marker, 'utf8') === key) return;
  rmSync(cache, { recursive: true, force: true });
  const job: FacteurJob = { store: cache, load: true, loadOnly: true, password: PASSWORD, accounts: specs };
  await (await spawnTsx(FACTEUR_SERVER, [JSON.stringify(job)])).stop();
  writeFileSync(marker, key);
}

async function recreateDatabase(url: string): Promise<void> {
  const u = new URL(url);
  const name = u.pathname.slice(1);
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`bad database name ${name}`);
  u.pathname = '/postgres';
  u.search = '';
  const c = new pg.Client({ connectionString: u.toString() });
  await c.connect();
  try {
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await c.query(`CREATE DATABASE ${name}`);
  } finally {
    await c.end();
  }
}

/** Dovecot with each account's messages written as a Maildir (`reuse`: already written by an
 * earlier start); `hibernate` moves IDLE sessions to imap-hibernate after 2 s. */
export async function startDovecotImap(dir: string, specs: AccountSpec[], opts: { hibernate?: boolean; reuse?: boolean } = {}): Promise<Server> {
  const hibernate = opts.hibernate ?? false;
  const mail = join(dir, 'mail');
  if (!opts.reuse) {
    mkdirSync(mail, { recursive: true });
    chmodSync(dir, 0o755);
    writePasswdFile(join(dir, 'passwd'), specs.map((a) => a.address), PASSWORD);
    for (const a of specs) writeMaildir(join(mail, a.address, 'Maildir'), corpus(a.seed, a.messages, a.address));
    chownSync(mail, userId('nobody'), groupId('nobody'));
  }
  const imap = await freePort();
  const lmtp = await freePort();
  const d: RunningDovecot = await startDovecot({
    dir: join(dir, 'dovecot'),
    protocols: ['imap', 'lmtp'],
    // Dovecot's defaults otherwise (mail_fsync = optimized: deliveries are fsync'd, flag
    // changes are not); no full-text search plugin.
    mailLocation: `maildir:~/Maildir`,
    auth: passwdFileAuth(join(dir, 'passwd'), 'SHA512-CRYPT', `${mail}/%u`),
    ports: { imap, lmtp },
    extra: `lmtp_save_to_detail_mailbox = no
protocol imap {
  mail_max_userip_connections = 100000
}
default_process_limit = 12000
default_client_limit = 30000
default_vsz_limit = 512M
service imap {
  process_limit = 12000
}
service imap-login {
  process_limit = 12000
}
${
  hibernate
    ? `imap_hibernate_timeout = 2s
service imap-hibernate {
  unix_listener imap-hibernate {
    mode = 0666
  }
}
service imap {
  unix_listener imap-master {
    mode = 0666
  }
}
`
    : ''
}`,
  });
  return {
    name: hibernate ? 'Dovecot 2.3, imap_hibernate_timeout = 2s' : 'Dovecot 2.3',
    imap: [imap],
    lmtp,
    pids: [d.pid],
    stop: d.stop,
  };
}
