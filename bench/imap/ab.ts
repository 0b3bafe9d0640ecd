/**
 * Two Facteur builds side by side, at the same moment, under the same imaptest load: for changes
 * whose effect is smaller than the machine's drift from one minute to the next (docs/benchmarks.md,
 * sessions 8 and 10: the same build measured 3,858 and 6,190 commands/s minutes apart), which runs
 * one after the other cannot show. Both servers share the machine's state of the moment (and its
 * two cores, so their rates are each about half of a run alone): what is compared is the ratio.
 *
 *   npm run build   # in each checkout
 *   node --import tsx bench/imap/ab.ts a=/path/to/checkout-a b=/path/to/checkout-b [rounds=6] [secs=20] [mix=logout0|default]
 *   a_env='NAME=value ...' b_env='...'     # environment given to that side's server only
 *   a_flags='--v8-flag ...' b_flags='...'  # Node flags for that side, after `facteur`'s own
 *
 * Each side runs its checkout's bench/imap/facteur-server.ts on its own dist/ (FACTEUR_BENCH_CODE=dist)
 * over its own SQLite directory, loaded with the same accounts (10 accounts of 100 messages); one
 * imaptest process against each, started together (imaptest's mix as in run.ts, `logout=0` by
 * default; FACTEUR_BENCH_IMAPTEST_MIX adds to it; no IDLE sessions beside it, unlike run.ts).
 * Each round starts fresh servers, the side started first alternating. Per round: commands/s
 * and server CPU per command of each side, and b/a of both; then the medians. imaptest's state
 * checks must report no error on either side.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SERVER_NODE_FLAGS } from '../../src/cli/node-flags.js';
import { spawnTsx, type PortChild } from '../shared/net.js';
import { mbox } from './corpus.js';
import { imaptestPath, runImaptest, type MixedResult } from './imaptest.js';
import { cpuOf } from './memory.js';
import { accounts, PASSWORD, type FacteurJob } from './setup.js';

const arg = (name: string, def: string): string => process.argv.find((a) => a.startsWith(`${name}=`))?.slice(name.length + 1) ?? def;
const sides = [
  { name: 'a', root: arg('a', ''), env: arg('a_env', ''), flags: arg('a_flags', '') },
  { name: 'b', root: arg('b', ''), env: arg('b_env', ''), flags: arg('b_flags', '') },
];
if (sides.some((s) => s.root === '')) throw new Error('usage: ab.ts a=CHECKOUT b=CHECKOUT [rounds=6] [secs=20] [mix=logout0|default]');
const ROUNDS = Number(arg('rounds', '6'));
const SECS = Number(arg('secs', '20'));
const MIX = arg('mix', 'logout0');
if (MIX !== 'logout0' && MIX !== 'default') throw new Error(`mix=${MIX}: logout0 or default`);
const USERS = 10;
const bin = imaptestPath();
if (bin === null) throw new Error('imaptest not found (IMAPTEST=path)');

function parseEnv(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of text.split(/\s+/).filter((p) => p !== '')) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new Error(`bad environment pair ${pair}`);
    env[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return env;
}

/** A side's server, loaded and listening: its checkout's facteur-server.ts on its dist/. */
function startSide(root: string, env: Record<string, string>, flags: string[], dir: string): Promise<PortChild> {
  const job: FacteurJob = { store: dir, load: true, password: PASSWORD, accounts: accounts(0, USERS, 100) };
  // This checkout's flags for `facteur` (src/cli/node-flags.ts), then the side's own (the last
  // of a V8 flag wins; NODE_OPTIONS would not: the command line wins over it).
  return spawnTsx(join(root, 'bench/imap/facteur-server.ts'), [JSON.stringify(job)], [...SERVER_NODE_FLAGS, ...flags], { ...process.env, ...env, FACTEUR_BENCH_CODE: 'dist' });
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((x, y) => x - y);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

const work = mkdtempSync(join(tmpdir(), 'facteur-bench-ab-'));
const mboxPath = join(work, 'append.mbox');
writeFileSync(mboxPath, mbox(9, 500, 'bench@example.com'));
const rows: Array<{ rate: number[]; cpu: number[] }> = [];
process.stdout.write(`${sides.map((s) => `${s.name} = ${s.root}${s.env ? ` (${s.env})` : ''}${s.flags ? ` [${s.flags}]` : ''}`).join('; ')}; imaptest ${MIX}, ${SECS} s, 20 clients a side\n\n`);
process.stdout.write('| round | a commands/s | b commands/s | b/a | a CPU ms/command | b CPU ms/command | b/a |\n|---|---|---|---|---|---|---|\n');
try {
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? [0, 1] : [1, 0];
    const servers: PortChild[] = [];
    try {
      for (const i of order) {
        const dir = join(work, `r${round}-${sides[i]!.name}`);
        servers[i] = await startSide(sides[i]!.root, parseEnv(sides[i]!.env), sides[i]!.flags.split(/\s+/).filter((f) => f !== ''), dir);
      }
      const before = servers.map((s) => cpuOf([s.child.pid!]));
      const results: MixedResult[] = await Promise.all(
        servers.map((s, i) =>
          runImaptest(bin, { port: s.ports.imap!, users: `1-${USERS}`, password: PASSWORD, clients: 20, seconds: SECS, msgs: 100, mbox: mboxPath, seed: 7 + round, stayLoggedIn: MIX === 'logout0' }).then((r) => {
            if (r.errors.length > 0) throw new Error(`side ${sides[i]!.name}: imaptest reported errors:\n${r.errors.slice(0, 5).join('\n')}`);
            return r;
          }),
        ),
      );
      const cpu = servers.map((s, i) => (cpuOf([s.child.pid!]) - before[i]!) / Math.max(1, results[i]!.total));
      const rate = results.map((r) => r.opsPerSecond);
      rows.push({ rate, cpu });
      process.stdout.write(
        `| ${round + 1} | ${rate[0]!.toFixed(0)} | ${rate[1]!.toFixed(0)} | ${(rate[1]! / rate[0]!).toFixed(3)} | ${cpu[0]!.toFixed(3)} | ${cpu[1]!.toFixed(3)} | ${(cpu[1]! / cpu[0]!).toFixed(3)} |\n`,
      );
    } finally {
      await Promise.all(servers.filter((s) => s !== undefined).map((s) => s.stop()));
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
const rateRatios = rows.map((r) => r.rate[1]! / r.rate[0]!);
const cpuRatios = rows.map((r) => r.cpu[1]! / r.cpu[0]!);
process.stdout.write(
  `\nmedian b/a: commands/s ${median(rateRatios).toFixed(3)} (b faster in ${rateRatios.filter((x) => x > 1).length} of ${rows.length}), ` +
    `CPU per command ${median(cpuRatios).toFixed(3)} (b cheaper in ${cpuRatios.filter((x) => x < 1).length} of ${rows.length})\n`,
);
