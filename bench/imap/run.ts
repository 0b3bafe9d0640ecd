/**
 * IMAP benchmark: Facteur measured side by side with Dovecot 2.3 in one run, the same accounts
 * and bytes loaded into both (issue #7; the PostgreSQL part of #10).
 *
 *   node --import tsx bench/imap/run.ts [--small] [key=value ...]      # as root (Dovecot)
 *
 * Parts (parts=ops,mixed,idle,pg, all by default):
 * - ops: single commands on one mailbox of `messages` messages (default 100,000; --small 5,000),
 *   medians of `runs` runs: SELECT quiet and right after another session's STORE 1:*, FETCH 1:*
 *   (UID FLAGS), SEARCH TEXT (rare and common word), SEARCH FROM, SORT, THREAD, STORE 1:*,
 *   STATUS, QRESYNC resync after 1,000 flag changes (must send exactly 1,000 FETCH); then LMTP
 *   delivery rate into an empty mailbox and into the full one (`deliveries` each).
 * - mixed: imaptest (IMAPTEST=path) with `clients` clients over `users` accounts of
 *   `user-messages` messages each for `secs` seconds; operations per second and state-check errors.
 *   `mixes=default,logout0` picks the mixes (both by default; logout0: LOGOUT at 0%, see imaptest.ts).
 *   `rounds=n` runs every mix n times, Facteur and Dovecot one after the other in each round, and
 *   adds the medians and the median of the rounds' ratios: a shared machine's speed drifts by
 *   10 to 20% over minutes, and a ratio of runs a minute apart carries that drift.
 *   `idle-beside=0` leaves out the IDLE sessions that run beside imaptest (one per account by
 *   default). FACTEUR_BENCH_IMAPTEST_MIX adds imaptest state probabilities to the mix, e.g.
 *   "select=100 fetch=100 fetch2=0 store=0 delete=0 expunge=0 append=0 status=0 list=0 search=0"
 *   for FETCH alone (SELECT must stay: a client that never selects waits for ever). Facteur's
 *   server prints its event loop's busy share per second of the run when it stops.
 * - idle: `idle` authenticated connections in IDLE (Facteur: `idle-facteur`, default the same),
 *   memory per connection from the idle server and per connection added after the first fifth
 *   (see idle.ts); Dovecot also with imap-hibernate. `idle-login=scram` makes Facteur's sessions
 *   log in with SCRAM-SHA-256 instead of LOGIN (no scrypt on the server: opening 10,000 takes
 *   minutes, not an hour); Dovecot always uses LOGIN.
 * - pg: the mixed workload on Facteur with the PostgreSQL store (`pg`, a scratch database that is
 *   dropped and recreated), one node, then two nodes with the clients split between them.
 * - load (alone, with facteur-cache=DIR): only load Facteur's data directory into DIR.
 * facteur-cache=DIR keeps the loaded SQLite data directory in DIR and copies it in later runs
 * with the same sizes. Dovecot is configured by this script (Debian packages dovecot-imapd, dovecot-lmtpd) in a temp
 * directory, on loopback ports, with its defaults otherwise; without root, or with dovecot=no,
 * it is skipped.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { haveDovecot } from '../shared/dovecot.js';
import { mbox } from './corpus.js';
import { idleMemory, type IdleResult } from './idle.js';
import { cpuOf } from './memory.js';
import { ImapClient } from './client.js';
import { imaptestPath, mix, runImaptest, type MixedResult } from './imaptest.js';
import { deliverAll } from './lmtp.js';
import { timeOps, type OpResult } from './ops.js';
import { corpus } from './corpus.js';
import { accounts, benchUser, BIG, EMPTY, loadCache, PASSWORD, startDovecotImap, startFacteur, type Server } from './setup.js';

const small = process.argv.includes('--small');
const arg = (name: string, dflt: string): string => {
  const a = process.argv.find((x) => x.startsWith(`${name}=`));
  return a ? a.slice(name.length + 1) : dflt;
};
const MESSAGES = Number(arg('messages', small ? '5000' : '100000'));
const RUNS = Number(arg('runs', small ? '3' : '5'));
const USERS = Number(arg('users', '10'));
const USER_MESSAGES = Number(arg('user-messages', '100'));
const CLIENTS = Number(arg('clients', '20'));
const SECS = Number(arg('secs', small ? '10' : '30'));
const IDLE = Number(arg('idle', small ? '200' : '1000'));
const IDLE_FACTEUR = Number(arg('idle-facteur', String(IDLE)));
const IDLE_LOGIN = arg('idle-login', 'password');
if (IDLE_LOGIN !== 'password' && IDLE_LOGIN !== 'scram') throw new Error(`idle-login=${IDLE_LOGIN}: password or scram`);
const DELIVERIES = Number(arg('deliveries', small ? '100' : '300'));
const PG = arg('pg', 'postgres://postgres@127.0.0.1:5432/facteur_bench_imap');
const PARTS = new Set(arg('parts', 'ops,mixed,idle,pg').split(','));
/** mixes=default,logout0: which imaptest mixes the mixed part runs (both by default). */
const ROUNDS = Math.max(1, Number(arg('rounds', '1')));
/** idle-beside=0: no IDLE sessions beside imaptest. */
const IDLE_BESIDE = arg('idle-beside', '1') !== '0';
const MIXES = arg('mixes', 'default,logout0')
  .split(',')
  .map((m) => {
    if (m !== 'default' && m !== 'logout0') throw new Error(`mixes=${m}: default or logout0`);
    return m === 'logout0';
  });
const OUT = arg('out', '');
/** A directory where the loaded SQLite data directory is kept between runs (see startFacteur). */
const CACHE = arg('facteur-cache', '');
/**
 * shards=n (mixed part, SQLite): also runs the mixed workload against n independent Facteur
 * processes, each with its own data directory holding a contiguous slice of the accounts, and
 * against Dovecot with the same n imaptest processes (one per slice, on its one port). Facteur
 * does not shard its store: this measures what sharding by account could give at best.
 */
const SHARDS = Math.max(1, Number(arg('shards', '1')));

const log = (s: string) => process.stdout.write(`${s}\n`);
const loads: string[] = [];
const noteLoad = (when: string) => loads.push(`${when} ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);

interface MixedRow extends MixedResult {
  stayLoggedIn: boolean;
  /** The server's processes' CPU time per command completed, ms (the IDLE watchers' too). */
  cpuMsPerCommand: number;
  idle: { sessions: number; pushed: number; failed: number };
}

interface ServerReport {
  name: string;
  ops?: { results: OpResult[]; fetchPeakBytes: number | null; firstSelectMs: number };
  delivery?: { empty: number; full: number };
  mixed?: MixedRow[];
  idle?: IdleResult[];
}
const reports = new Map<string, ServerReport>();
const report = (name: string): ServerReport => {
  let r = reports.get(name);
  if (!r) reports.set(name, (r = { name }));
  return r;
};

async function opsPart(s: Server, pid: number | undefined): Promise<void> {
  log(`\n${s.name}: ${MESSAGES} messages, ${RUNS} runs`);
  const r = report(s.name);
  r.ops = await timeOps({ port: s.imap[0]!, messages: MESSAGES, runs: RUNS, ...(pid ? { pid } : {}) }, log);
  const empty = await deliverAll(s.lmtp, EMPTY, (function* () {
    for (const m of corpus(7, DELIVERIES, EMPTY)) yield m.raw;
  })());
  const full = await deliverAll(s.lmtp, BIG, (function* () {
    for (const m of corpus(8, DELIVERIES, BIG)) yield m.raw;
  })());
  r.delivery = { empty: empty.perSecond, full: full.perSecond };
  log(`  LMTP deliveries/s: empty mailbox ${empty.perSecond.toFixed(0)}, ${MESSAGES} messages ${full.perSecond.toFixed(0)}`);
}

/** One IDLE session per account beside imaptest, counting what the server pushes to them. */
async function idleWatchers(ports: number[]): Promise<() => Promise<{ sessions: number; pushed: number; failed: number }>> {
  let pushed = 0;
  const watchers = await Promise.all(
    Array.from({ length: IDLE_BESIDE ? USERS : 0 }, async (_, k) => {
      // The node of the account's slice (see mixedPart), so that shards=n finds it.
      const per = Math.floor(USERS / ports.length);
      const c = await ImapClient.login(ports[Math.min(ports.length - 1, Math.floor(k / per))]!, benchUser(k + 1), PASSWORD);
      await c.ok('SELECT INBOX');
      const idle = await c.idle((line) => {
        if (/^\* \d+ (EXISTS|EXPUNGE|FETCH)/i.test(line)) pushed++;
      });
      return { c, idle };
    }),
  );
  return async () => {
    let failed = 0;
    for (const w of watchers) {
      try {
        const r = await w.idle.done();
        if (r.status !== 'OK') failed++;
        await w.c.logout();
      } catch {
        failed++;
      }
    }
    return { sessions: watchers.length, pushed, failed };
  };
}

async function mixedPart(name: string, ports: number[], pids: number[], bin: string, mboxPath: string, stayLoggedIn: boolean): Promise<void> {
  log(`\n${name}: imaptest${stayLoggedIn ? ' (logout=0)' : ''}, ${CLIENTS} clients, ${USERS} accounts, ${SECS} s, ${IDLE_BESIDE ? USERS : 0} IDLE sessions beside`);
  const stopWatchers = await idleWatchers(ports);
  // CPU per command does not move with the machine's load the way commands/s does.
  const cpuBefore = cpuOf(pids);
  // With several nodes, each gets its own imaptest with its own accounts: imaptest's state
  // tracking covers the sessions of one imaptest process only.
  const per = Math.floor(USERS / ports.length);
  const results = await Promise.all(
    ports.map((port, n) =>
      runImaptest(bin, {
        port,
        users: `${n * per + 1}-${n === ports.length - 1 ? USERS : (n + 1) * per}`,
        password: PASSWORD,
        clients: Math.floor(CLIENTS / ports.length),
        seconds: SECS,
        msgs: USER_MESSAGES,
        mbox: mboxPath,
        seed: 7 + n,
        stayLoggedIn,
      }),
    ),
  );
  const cpuMs = cpuOf(pids) - cpuBefore;
  const idle = await stopWatchers();
  const counts: Record<string, number> = {};
  for (const r of results) for (const [k, v] of Object.entries(r.counts)) counts[k] = (counts[k] ?? 0) + v;
  const total = results.reduce((a, r) => a + r.total, 0);
  const merged: MixedRow = {
    stayLoggedIn,
    cpuMsPerCommand: total > 0 ? cpuMs / total : 0,
    counts,
    total,
    seconds: SECS,
    opsPerSecond: total / SECS,
    errors: results.flatMap((r) => r.errors),
    tail: results.map((r) => r.tail).join('\n'),
    idle,
  };
  (report(name).mixed ??= []).push(merged);
  log(merged.tail);
  log(`  ${merged.opsPerSecond.toFixed(0)} commands/s, server CPU ${merged.cpuMsPerCommand.toFixed(3)} ms/command, ${merged.errors.length} errors; IDLE sessions: ${idle.pushed} untagged responses pushed, ${idle.failed} failed`);
  for (const e of merged.errors.slice(0, 10)) log(`    ${e}`);
}

async function idlePart(s: Server, count: number, settleMs: number, login: 'password' | 'scram'): Promise<void> {
  const users = Array.from({ length: USERS }, (_, k) => benchUser(k + 1));
  const r = await idleMemory({ ports: s.imap, pids: s.pids, users, count, settleMs, login, ...(s.collect ? { collect: s.collect } : {}) });
  (report(s.name).idle ??= []).push(r);
  const mib = (n: number) => (n / 1048576).toFixed(0);
  log(
    `\n${s.name}: ${count} IDLE connections (${r.login}) opened in ${r.openSeconds.toFixed(1)} s; ` +
      `RSS ${mib(r.before.rss)} -> ${mib(r.warmed.rss)} (${r.warm} sessions) -> ${mib(r.after.rss)} MiB, ` +
      `PSS ${mib(r.before.pss)} -> ${mib(r.warmed.pss)} -> ${mib(r.after.pss)} MiB (${r.after.processes} processes); ` +
      `per connection from the idle server ${(r.rssPerConnection / 1024).toFixed(1)} KiB RSS, ${(r.pssPerConnection / 1024).toFixed(1)} KiB PSS; ` +
      `per added connection ${(r.rssPerAddedConnection / 1024).toFixed(1)} KiB RSS, ${(r.pssPerAddedConnection / 1024).toFixed(1)} KiB PSS`,
  );
}

/** SHARDS Facteur processes on SQLite, each with its slice of the accounts (see mixedPart). */
async function startShards(dir: string, specs: ReturnType<typeof accounts>): Promise<Server> {
  const users = specs.filter((a) => /^bench\d+@/.test(a.address));
  const others = specs.filter((a) => !users.includes(a));
  const per = Math.floor(USERS / SHARDS);
  const started: Server[] = [];
  try {
    for (let n = 0; n < SHARDS; n++) {
      const slice = users.filter((a) => {
        const k = users.indexOf(a);
        return k >= n * per && (n === SHARDS - 1 || k < (n + 1) * per);
      });
      started.push(await startFacteur({ dir: join(dir, String(n)), accounts: n === 0 ? [...others, ...slice] : slice }));
    }
  } catch (err) {
    await Promise.all(started.map((s) => s.stop()));
    throw err;
  }
  return {
    name: `Facteur, SQLite, ${SHARDS} shards`,
    imap: started.map((s) => s.imap[0]!),
    lmtp: started[0]!.lmtp,
    pids: started.flatMap((s) => s.pids),
    stop: async () => {
      await Promise.all(started.map((s) => s.stop()));
    },
  };
}

if (PARTS.has('load')) {
  if (!CACHE) throw new Error('parts=load needs facteur-cache=DIR');
  await loadCache(CACHE, accounts(MESSAGES, USERS, USER_MESSAGES));
  process.exit(0);
}
const root = mkdtempSync(join(tmpdir(), 'facteur-bench-imap-'));
// Dovecot's processes drop privileges and must reach their files below it.
chmodSync(root, 0o755);
const withDovecot = arg('dovecot', 'yes') !== 'no' && haveDovecot('imap') && haveDovecot('lmtp');
const imaptest = imaptestPath();
noteLoad('start');
const started = Date.now();
try {
  const specs = accounts(MESSAGES, USERS, USER_MESSAGES);
  const mboxPath = join(root, 'append.mbox');
  writeFileSync(mboxPath, mbox(9, 500, 'bench@example.com'));

  let t = performance.now();
  const facteur = await startFacteur({ dir: join(root, 'facteur'), accounts: specs, ...(CACHE ? { cache: CACHE } : {}) });
  log(`Facteur (SQLite) loaded and listening in ${((performance.now() - t) / 1000).toFixed(0)} s`);
  let dovecot: Server | null = null;
  try {
    if (withDovecot) {
      t = performance.now();
      dovecot = await startDovecotImap(join(root, 'dovecot'), specs);
      log(`Dovecot Maildirs written and listening in ${((performance.now() - t) / 1000).toFixed(0)} s`);
    } else {
      log('Dovecot not measured (dovecot=no, or not root, or dovecot-imapd/dovecot-lmtpd missing)');
    }
    if (PARTS.has('ops')) {
      await opsPart(facteur, facteur.pids[0]);
      if (dovecot) await opsPart(dovecot, undefined);
      noteLoad('after ops');
    }
    if (PARTS.has('mixed')) {
      if (!imaptest) log('\nmixed workload skipped: no imaptest (set IMAPTEST, see docs/benchmarks.md)');
      else {
        for (let round = 0; round < ROUNDS; round++) {
          for (const stay of MIXES) {
            await mixedPart(facteur.name, facteur.imap, facteur.pids, imaptest, mboxPath, stay);
            if (dovecot) await mixedPart(dovecot.name, dovecot.imap, dovecot.pids, imaptest, mboxPath, stay);
            if (SHARDS > 1) {
              const sharded = await startShards(join(root, `facteur-shards-${round}-${stay}`), specs);
              try {
                await mixedPart(sharded.name, sharded.imap, sharded.pids, imaptest, mboxPath, stay);
              } finally {
                await sharded.stop();
              }
              if (dovecot) await mixedPart(`${dovecot.name}, ${SHARDS} imaptest`, Array(SHARDS).fill(dovecot.imap[0]!), dovecot.pids, imaptest, mboxPath, stay);
            }
          }
        }
      }
      noteLoad('after mixed');
    }
    if (PARTS.has('idle')) {
      await idlePart(facteur, IDLE_FACTEUR, 2000, IDLE_LOGIN);
      if (dovecot) {
        await idlePart(dovecot, IDLE, 2000, 'password');
        await dovecot.stop();
        dovecot = await startDovecotImap(join(root, 'dovecot'), specs, { hibernate: true, reuse: true });
        // Sessions are handed to imap-hibernate after 2 s in IDLE.
        await idlePart(dovecot, IDLE, 6000, 'password');
      }
      noteLoad('after idle');
    }
  } finally {
    await facteur.stop();
    await dovecot?.stop();
  }
  if (PARTS.has('pg') && PG !== 'none' && imaptest) {
    const pgSpecs = accounts(0, USERS, USER_MESSAGES);
    for (const nodes of [1, 2]) {
      const f = await startFacteur({ pgUrl: PG, nodes, accounts: pgSpecs });
      try {
        for (const stay of MIXES) await mixedPart(f.name, f.imap, f.pids, imaptest, mboxPath, stay);
      } finally {
        await f.stop();
      }
    }
    noteLoad('after pg');
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}

// ---- Summary, as Markdown for docs/benchmarks.md ----
const all = [...reports.values()];
const fmt = (n: number): string => (n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2));
log(`\n## Results (${((Date.now() - started) / 60000).toFixed(0)} min)\n`);
log(`${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), Node ${process.version}, Dovecot ${withDovecot ? execFileSync('dovecot', ['--version']).toString().trim() : '-'}; load average (1/5/15 min): ${loads.join('; ')}`);
const withOps = all.filter((r) => r.ops);
if (withOps.length > 0) {
  log(`\n${MESSAGES.toLocaleString('en')} messages, median of ${RUNS} runs, ms\n`);
  log(`| command | ${withOps.map((r) => r.name).join(' | ')} |`);
  log(`|---|${withOps.map(() => '---|').join('')}`);
  log(`| first SELECT after loading | ${withOps.map((r) => fmt(r.ops!.firstSelectMs)).join(' | ')} |`);
  for (let i = 0; i < withOps[0]!.ops!.results.length; i++) {
    const name = withOps[0]!.ops!.results[i]!.name;
    log(`| ${name} | ${withOps.map((r) => { const x = r.ops!.results[i]!; return `${fmt(x.median)}${x.answer ? ` (${x.answer})` : ''}`; }).join(' | ')} |`);
  }
  log(`| LMTP deliveries/s, empty mailbox | ${withOps.map((r) => fmt(r.delivery!.empty)).join(' | ')} |`);
  log(`| LMTP deliveries/s, into the ${MESSAGES.toLocaleString('en')} | ${withOps.map((r) => fmt(r.delivery!.full)).join(' | ')} |`);
  const f = withOps[0]!.ops!.fetchPeakBytes;
  if (f !== null) log(`\nFacteur's peak RSS growth during FETCH 1:* (UID FLAGS): ${(f / 1048576).toFixed(1)} MiB`);
}
const withMixed = all.filter((r) => r.mixed);
if (withMixed.length > 0) {
  const names = Object.keys(withMixed[0]!.mixed![0]!.counts);
  log(`\nMixed workload: imaptest, ${CLIENTS} clients, ${USERS} accounts of ~${USER_MESSAGES} messages, ${SECS} s, default mix + ${mix(false).join(' ')}; ${IDLE_BESIDE ? `${USERS} IDLE sessions beside (one per account)` : "no IDLE sessions beside"}\n`);
  log(`| server | mix | commands/s | server CPU ms/command | errors | IDLE pushes | ${names.join(' | ')} |`);
  log(`|---|---|---|---|---|---|${names.map(() => '---|').join('')}`);
  for (const r of withMixed) {
    for (const m of r.mixed!) {
      log(`| ${r.name} | ${m.stayLoggedIn ? 'logout=0' : 'default'} | ${m.opsPerSecond.toFixed(0)} | ${m.cpuMsPerCommand.toFixed(3)} | ${m.errors.length} | ${m.idle.pushed}${m.idle.failed ? ` (${m.idle.failed} failed)` : ''} | ${names.map((n) => m.counts[n] ?? 0).join(' | ')} |`);
    }
  }
  // With rounds: each mix's medians, and the median of the ratios of runs made side by side.
  const f = withMixed.find((r) => r.name === 'Facteur, SQLite');
  const d = withMixed.find((r) => r.name === 'Dovecot 2.3');
  if (ROUNDS > 1 && f && d) {
    const median = (xs: number[]): number => {
      const s = [...xs].sort((a, b) => a - b);
      return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
    };
    log(`\n| mix | Facteur commands/s, median of ${ROUNDS} | Dovecot commands/s, median of ${ROUNDS} | ratio, median of the rounds' | rounds' ratios |`);
    log('|---|---|---|---|---|');
    for (const stay of MIXES) {
      const fr = f.mixed!.filter((m) => m.stayLoggedIn === stay).map((m) => m.opsPerSecond);
      const dr = d.mixed!.filter((m) => m.stayLoggedIn === stay).map((m) => m.opsPerSecond);
      const ratios = fr.map((x, k) => x / dr[k]!);
      log(`| ${stay ? 'logout=0' : 'default'} | ${median(fr).toFixed(0)} | ${median(dr).toFixed(0)} | ${median(ratios).toFixed(2)}x | ${ratios.map((x) => `${x.toFixed(2)}x`).join(', ')} |`);
    }
  }
}
const withIdle = all.filter((r) => r.idle);
if (withIdle.length > 0) {
  const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
  log('\n| server | IDLE connections | login | opened in | per connection from the idle server, RSS / PSS | per added connection, RSS / PSS |');
  log('|---|---|---|---|---|---|');
  for (const r of withIdle) {
    for (const i of r.idle!) {
      log(`| ${r.name} | ${i.count} | ${i.login} | ${i.openSeconds.toFixed(1)} s | ${kib(i.rssPerConnection)} / ${kib(i.pssPerConnection)} | ${kib(i.rssPerAddedConnection)} / ${kib(i.pssPerAddedConnection)} (after ${i.warm}) |`);
    }
  }
}
if (OUT) writeFileSync(OUT, JSON.stringify({ loads, reports: all }, null, 2));
