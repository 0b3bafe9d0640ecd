/**
 * Times IMAP operations on one mailbox of 100,000 messages over real IMAP (raw socket client)
 * against Facteur's listener in its own process (bench/store/imap-100k-server.ts), SQLite store.
 *
 *   node --import tsx bench/store/imap-100k.ts [cache-dir=/work/tmp/facteur-imap100k] [messages=100000]
 *   PROFILE=1 ...   # the server runs under node --cpu-prof, profiles in <cache-dir>/prof
 *   OPS=select,qresync ...   # only the operations whose key is listed (keys: select (with restarts), status,
 *                            # fetch, search, sort, thread, store, select-after, qresync, deliver)
 *
 * The mailbox is built once into <cache-dir>/template (minutes) and copied to <cache-dir>/run-<pid>
 * before each run, so every run starts from the same state. Each timing is the median of a few
 * repetitions, from sending the command to reading its tagged OK. The messages: threads of five
 * (Message-ID, References, "Re:" subjects), 500 distinct senders with display names, dates a
 * minute apart with jitter, ~1.5 KB each; one rare body word ("zanzibarquux") in one message.
 */
import { fork, type ChildProcess } from 'node:child_process';
import Database from 'better-sqlite3';
import { cp, mkdir, rm, stat } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { hashPassword } from '../../src/auth/password.js';
import { SERVER_NODE_FLAGS } from '../../src/cli/node-flags.js';
import { parseMessage } from '../../src/mail/parse.js';
import { openSqliteStore } from '../../src/store/sql/sqlite/sqlite-store.js';
import type { AppendInput } from '../../src/store/types.js';
import { makeMessage } from '../../test/helpers/messages.js';

const cacheDir = process.argv[2] ?? '/work/tmp/facteur-imap100k';
const total = Number(process.argv[3] ?? 100_000);
const template = join(cacheDir, `template-${total}`);
const runDir = join(cacheDir, `run-${process.pid}`);
const PASSWORD = 'bench password 123';
const BIG = 'big@example.com';
const EMPTY = 'empty@example.com';
const RARE = 'zanzibarquux';

const WORDS = 'alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa'.split(' ');

function benchMessage(i: number): Buffer {
  const thread = Math.floor(i / 5);
  const root = thread * 5;
  const refs = Array.from({ length: i - root }, (_, k) => `<m${root + k}@bench.example>`);
  const when = new Date(Date.UTC(2020, 0, 1) + i * 60_000 + ((i * 7919) % 3_600_000));
  const body = Array.from({ length: 16 }, (_, l) => Array.from({ length: 12 }, (_, w) => WORDS[(i * 31 + l * 7 + w) % WORDS.length]).join(' ')).join('\r\n');
  return makeMessage({
    from: `"Sender ${i % 500} Name" <user${i % 500}@example.org>`,
    to: BIG,
    subject: `${i === root ? '' : 'Re: '}thread ${thread} about ${WORDS[thread % WORDS.length]}`,
    body: `${body}\r\n${i === Math.floor(total * 0.77) ? RARE : 'common'} ${i}\r\n`,
    date: when,
    messageId: `m${i}@bench.example`,
    headers: refs.length > 0 ? [['In-Reply-To', refs[refs.length - 1]!], ['References', refs.join(' ')]] : [],
  });
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function buildTemplate(): Promise<void> {
  if (await exists(join(template, 'ready'))) return;
  await rm(template, { recursive: true, force: true });
  await mkdir(template, { recursive: true });
  const start = performance.now();
  const store = await openSqliteStore({ dir: template });
  try {
    await store.addDomain('example.com');
    const hash = await hashPassword(PASSWORD);
    const big = await store.createAccount({ address: BIG, passwordHash: hash });
    await store.createAccount({ address: EMPTY, passwordHash: hash });
    const inbox = (await store.getMailbox(big.id, 'INBOX'))!;
    for (let i = 0; i < total; i += 500) {
      const batch: AppendInput[] = [];
      for (let j = i; j < Math.min(total, i + 500); j++) {
        const raw = benchMessage(j);
        batch.push({ raw, parsed: parseMessage(raw), internalDate: Date.UTC(2020, 0, 1) + j * 60_000 });
      }
      await store.appendMany(inbox.id, batch);
      if (i % 10_000 === 0) process.stderr.write(`built ${i}\n`);
    }
  } finally {
    await store.close();
  }
  await mkdir(join(template, 'ready'));
  console.log(`template built in ${((performance.now() - start) / 1000).toFixed(0)} s`);
}

/** A raw IMAP client: one command at a time, the reply counted, not kept. */
class Client {
  #socket: Socket;
  #tail = '';
  #n = 0;
  #waiter: { tag: string; lines: number; keep: string[]; keepRe: RegExp | null; resolve: (r: Reply) => void; reject: (e: Error) => void } | null = null;
  #greeting: Promise<void>;

  constructor(port: number) {
    this.#socket = connect(port, '127.0.0.1');
    this.#socket.setNoDelay(true);
    this.#greeting = new Promise((resolve, reject) => {
      this.#waiter = { tag: '*', lines: 0, keep: [], keepRe: null, resolve: () => resolve(), reject };
    });
    this.#socket.on('data', (chunk: Buffer) => this.#data(chunk.toString('latin1')));
    this.#socket.on('error', (err) => this.#waiter?.reject(err));
  }

  #data(text: string): void {
    const all = this.#tail + text;
    let from = 0;
    for (let nl = all.indexOf('\r\n', from); nl >= 0; nl = all.indexOf('\r\n', from)) {
      const line = all.slice(from, nl);
      from = nl + 2;
      const w = this.#waiter;
      if (w === null) continue;
      if (w.tag === '*' && line.startsWith('* OK')) {
        this.#waiter = null;
        w.resolve({ status: 'OK', line, lines: 0, kept: [] });
        continue;
      }
      if (line.startsWith(`${w.tag} `)) {
        this.#waiter = null;
        const status = line.slice(w.tag.length + 1).split(' ')[0]!;
        w.resolve({ status, line, lines: w.lines, kept: w.keep });
      } else {
        w.lines += 1;
        if (w.keepRe?.test(line) === true) w.keep.push(line);
      }
    }
    this.#tail = all.slice(from);
  }

  ready(): Promise<void> {
    return this.#greeting;
  }

  /** Sends a command; resolves at its tagged response. `keep`: untagged lines to return. */
  run(command: string, keep: RegExp | null = null): Promise<Reply> {
    const tag = `t${++this.#n}`;
    return new Promise((resolve, reject) => {
      this.#waiter = { tag, lines: 0, keep: [], keepRe: keep, resolve, reject };
      this.#socket.write(`${tag} ${command}\r\n`);
    });
  }

  async ok(command: string, keep: RegExp | null = null): Promise<Reply> {
    const r = await this.run(command, keep);
    if (r.status !== 'OK') throw new Error(`${command.slice(0, 60)}: ${r.line}`);
    return r;
  }

  close(): void {
    this.#socket.destroy();
  }
}

interface Reply {
  status: string;
  line: string;
  lines: number;
  kept: string[];
}

async function login(port: number): Promise<Client> {
  const c = new Client(port);
  await c.ready();
  await c.ok(`LOGIN ${BIG} "${PASSWORD}"`);
  return c;
}

const results: Array<{ op: string; ms: number; cpu: number; note: string }> = [];

const only = process.env.OPS?.split(',') ?? null;
const wanted = (key: string): boolean => only === null || only.includes(key);

/**
 * Median over `reps` runs of fn of the wall time and of the server process's CPU time (the
 * machine is shared: CPU time moves less than wall time under load). fn may call start() to
 * leave untimed work (another session's) out.
 */
async function timed(op: string, reps: number, fn: (rep: number, start: () => Promise<void>) => Promise<string | void>): Promise<void> {
  const times: number[] = [];
  const cpus: number[] = [];
  let note = '';
  for (let r = 0; r < reps; r++) {
    let wall = 0;
    let cpu = 0;
    const start = async (): Promise<void> => {
      cpu = (await ask<{ cpu: number }>(server.child, { op: 'cpu' })).cpu;
      wall = performance.now();
    };
    await start();
    note = (await fn(r, start)) ?? note;
    times.push(performance.now() - wall);
    cpus.push((await ask<{ cpu: number }>(server.child, { op: 'cpu' })).cpu - cpu);
  }
  const median = (xs: number[]): number => xs.sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
  const ms = median(times);
  const cpu = median(cpus);
  results.push({ op, ms, cpu, note });
  console.log(`${op.padEnd(52)} ${ms.toFixed(0).padStart(7)} ms  ${cpu.toFixed(0).padStart(6)} ms CPU  ${note}`);
}

function ask<T>(child: ChildProcess, msg: object): Promise<T> {
  return new Promise((resolve) => {
    child.once('message', (m) => resolve(m as T));
    child.send(msg);
  });
}

async function startServer(dir: string, profileDir: string | null, env: Record<string, string> = {}): Promise<{ child: ChildProcess; port: number }> {
  // The flags `facteur` runs with (src/cli/node-flags.ts): what users run is measured.
  const execArgv = [...SERVER_NODE_FLAGS, '--import', 'tsx', ...(profileDir !== null ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [])];
  const child = fork(new URL('./imap-100k-server.ts', import.meta.url).pathname, [dir], {
    execArgv,
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    env: { ...process.env, ...env },
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /PORT (\d+)/.exec(out);
      if (m !== null) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`server exited ${code}`)));
  });
  return { child, port };
}

await buildTemplate();
await rm(runDir, { recursive: true, force: true });
await cp(template, runDir, { recursive: true });
// Brings the copy to this program's schema (migrations, backfills); the template is left as
// built, so that programs with other migrations can share it.
await (await openSqliteStore({ dir: runDir })).close();
// No view snapshot in the copy, whatever an earlier program left in the template: the first
// start below reads every row, as the first start after an upgrade to snapshots would.
withDb(runDir, (db) => db.prepare('DELETE FROM view_snapshots').run());
const profileDir = process.env.PROFILE === '1' ? join(cacheDir, 'prof') : null;
let server = await startServer(runDir, profileDir);
try {
  let a = await login(server.port);
  let b = await login(server.port);
  // The process's view cache is empty and there is no snapshot: this one reads every row.
  await timed('SELECT INBOX (first after server start, no snapshot)', 1, async () => {
    const r = await a.ok('SELECT INBOX', /EXISTS/);
    return r.kept[0];
  });
  await timed('SELECT INBOX (quiet)', 5, async () => {
    const r = await a.ok('SELECT INBOX', /EXISTS/);
    return r.kept[0];
  });
  // A graceful stop (the store writes the view snapshot at close), then a new process on the
  // same directory: its first SELECT starts from the snapshot the previous process wrote.
  const restart = async (how: 'SIGTERM' | 'SIGKILL', warm = true): Promise<string> => {
    a.close();
    b.close();
    const t0 = performance.now();
    await stopServer(how);
    const stopped = performance.now() - t0;
    const snap = withDb(runDir, (db) => db.prepare('SELECT length(data) AS bytes, modseq FROM view_snapshots').get() as { bytes: number; modseq: number } | undefined);
    server = await startServer(runDir, profileDir, warm ? {} : { VIEW_WARM: '0' });
    a = await login(server.port);
    b = await login(server.port);
    return `(stop ${stopped.toFixed(0)} ms; snapshot ${snap === undefined ? 'none' : `${(snap.bytes / 1048576).toFixed(2)} MiB at modseq ${snap.modseq}`})`;
  };
  if (wanted('select')) {
    // Without the warm-up: the SELECT itself reads the snapshot and applies the changes since.
    let note = await restart('SIGTERM', false);
    await timed('SELECT INBOX (first after restart, snapshot, no warm-up)', 1, async () => `${(await a.ok('SELECT INBOX', /EXISTS/)).kept[0]} ${note}`);
    // With it (the default): the store loads the view at open, before the client's LOGIN ends.
    note = await restart('SIGTERM');
    await timed('SELECT INBOX (first after restart, warm-up)', 1, async () => `${(await a.ok('SELECT INBOX', /EXISTS/)).kept[0]} ${note}`);
    // Changes after the snapshot, then a crash: the next process applies them on top of it.
    await b.ok('SELECT INBOX');
    await b.ok('UID STORE 1:1500 +FLAGS.SILENT (\\Flagged)');
    await b.ok('UNSELECT');
    await a.ok('UNSELECT');
    note = await restart('SIGKILL', false);
    await timed('SELECT INBOX (after kill -9, 1,500 changes newer than snapshot, no warm-up)', 1, async () => `${(await a.ok('SELECT INBOX', /EXISTS/)).kept[0]} ${note}`);
    // STORE 1:* then a crash: the drift rewrite (in the background, seconds later) is what the
    // next process finds.
    await b.ok('SELECT INBOX');
    await b.ok('STORE 1:* -FLAGS.SILENT (\\Flagged)');
    await b.ok('UNSELECT');
    await a.ok('UNSELECT');
    await new Promise((r) => setTimeout(r, 4000));
    note = await restart('SIGKILL', false);
    await timed('SELECT INBOX (after STORE 1:* and kill -9 4 s later, no warm-up)', 1, async () => `${(await a.ok('SELECT INBOX', /EXISTS/)).kept[0]} ${note}`);
  }
  if (wanted('status')) {
    await timed('STATUS INBOX (MESSAGES UNSEEN UIDNEXT HIGHESTMODSEQ)', 5, async () => {
      await b.ok('STATUS INBOX (MESSAGES UNSEEN UIDNEXT HIGHESTMODSEQ)');
    });
  }
  if (wanted('fetch')) await fetchAll();
  if (wanted('search')) await searches();
  if (wanted('sort')) await sorts();
  if (wanted('thread')) {
    await timed('THREAD REFERENCES UTF-8 ALL', 3, async () => {
      const r = await a.ok('THREAD REFERENCES UTF-8 ALL', /^\* THREAD/);
      return (r.kept[0] ?? '').slice(0, 40);
    });
  }
  if (wanted('store')) await stores();
  if (wanted('select-after')) await selectAfter();
  if (wanted('qresync')) await qresync();
  a.close();
  b.close();
  if (wanted('deliver')) await deliveries();

  async function fetchAll(): Promise<void> {
    await ask(server.child, { op: 'heap-reset' });
    const base = (await ask<{ peak: number }>(server.child, { op: 'heap-reset' })).peak;
    await timed('FETCH 1:* (UID FLAGS)', 3, async () => {
      const r = await a.ok('FETCH 1:* (UID FLAGS)');
      return `${r.lines} lines`;
    });
    const peak = (await ask<{ peak: number }>(server.child, { op: 'heap-peak' })).peak;
    console.log(`  server memory during FETCH: +${((peak - base) / 1048576).toFixed(0)} MB over ${(base / 1048576).toFixed(0)} MB`);
  }

  async function searches(): Promise<void> {
    await timed(`SEARCH TEXT ${RARE}`, 3, async () => (await a.ok(`SEARCH TEXT ${RARE}`, /^\* SEARCH/)).kept[0]);
    await timed('SEARCH FROM user123@example.org', 3, async () => {
      const r = await a.ok('SEARCH FROM user123@example.org', /^\* SEARCH/);
      return `${(r.kept[0] ?? '').split(' ').length - 2} hits`;
    });
  }

  async function sorts(): Promise<void> {
    await timed('SORT (REVERSE DATE) UTF-8 ALL', 3, async () => {
      const r = await a.ok('SORT (REVERSE DATE) UTF-8 ALL', /^\* SORT/);
      return (r.kept[0] ?? '').slice(0, 40);
    });
    await timed('SORT (SUBJECT) UTF-8 ALL', 3, async () => {
      const r = await a.ok('SORT (SUBJECT) UTF-8 ALL', /^\* SORT/);
      return (r.kept[0] ?? '').slice(0, 40);
    });
  }

  async function stores(): Promise<void> {
    let flip = 0;
    await timed('STORE 1:* +FLAGS (\\Seen) / -FLAGS alternately', 4, async () => {
      const r = await a.ok(`STORE 1:* ${flip++ % 2 === 0 ? '+' : '-'}FLAGS (\\Seen)`);
      return `${r.lines} lines`;
    });
  }

  async function selectAfter(): Promise<void> {
    await timed('SELECT INBOX after another session STORE 1:*', 3, async (rep, start) => {
      // Not timed: the other session's STORE.
      const t0 = performance.now();
      await b.ok('SELECT INBOX');
      await b.ok(`STORE 1:* ${rep % 2 === 0 ? '+' : '-'}FLAGS.SILENT (\\Flagged)`);
      await b.ok('UNSELECT');
      const spent = performance.now() - t0;
      await start();
      await a.ok('SELECT INBOX');
      return `(the other session's SELECT + STORE took ${spent.toFixed(0)} ms)`;
    });
  }

  async function qresync(): Promise<void> {
    // QRESYNC: A knows the state, leaves; B changes the flags of 1,000 messages one STORE at a time.
    await a.ok('UNSELECT');
    await a.ok('ENABLE QRESYNC');
    const sel = await a.ok('SELECT INBOX', /HIGHESTMODSEQ|UIDVALIDITY/);
    const modseq = /HIGHESTMODSEQ (\d+)/.exec(sel.kept.join(' '))![1];
    const validity = /UIDVALIDITY (\d+)/.exec(sel.kept.join(' '))![1];
    await a.ok('UNSELECT');
    await b.ok('SELECT INBOX');
    for (let k = 0; k < 1000; k++) await b.ok(`UID STORE ${k * 97 + 1} +FLAGS.SILENT (\\Answered)`);
    await b.ok('UNSELECT');
    await timed('SELECT (QRESYNC) after 1,000 flag changes', 1, async () => {
      const r = await a.ok(`SELECT INBOX (QRESYNC (${validity} ${modseq}))`, /FETCH/);
      return `${r.kept.length} FETCH responses`;
    });
  }

  async function deliveries(): Promise<void> {
    const empty = await ask<{ rate: number }>(server.child, { op: 'deliver', address: EMPTY, count: 400, concurrency: 20 });
    const full = await ask<{ rate: number }>(server.child, { op: 'deliver', address: BIG, count: 400, concurrency: 20 });
    const empty2 = await ask<{ rate: number }>(server.child, { op: 'deliver', address: EMPTY, count: 400, concurrency: 20 });
    const full2 = await ask<{ rate: number }>(server.child, { op: 'deliver', address: BIG, count: 400, concurrency: 20 });
    console.log(`delivery, 20 concurrent: empty mailbox ${empty.rate.toFixed(0)}, ${empty2.rate.toFixed(0)}/s; 100k mailbox ${full.rate.toFixed(0)}, ${full2.rate.toFixed(0)}/s`);
  }
} finally {
  await stopServer('SIGTERM');
  await rm(runDir, { recursive: true, force: true });
}

async function stopServer(how: 'SIGTERM' | 'SIGKILL'): Promise<void> {
  const { child } = server;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill(how);
  await exited;
}

/** Runs fn on the store's database file, opened and closed around it (no server running). */
function withDb<T>(dir: string, fn: (db: Database.Database) => T): T {
  const db = new Database(join(dir, 'facteur.db'));
  try {
    return fn(db);
  } finally {
    db.close();
  }
}
