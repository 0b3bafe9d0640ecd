/**
 * Starts facteur-server.ts in its own process and reads its counters (see that file).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { SERVER_NODE_FLAGS } from '../../src/cli/node-flags.js';
import type { SqliteStoreStats } from '../../src/store/sql/sqlite/sqlite-store.js';

export interface FacteurStats {
  wallMs: number;
  cpuUserMs: number;
  cpuSystemMs: number;
  loopMeanMs: number;
  store: SqliteStoreStats;
}

export interface FacteurProcess {
  child: ChildProcess;
  port: number;
  /** Restarts the server's counters; resolves with those of the interval that ends. */
  reset(): Promise<FacteurStats>;
  /** Stops the server; resolves with its counters since the start or the last reset. */
  stop(): Promise<FacteurStats | null>;
}

export async function startFacteur(dir: string): Promise<FacteurProcess> {
  const script = fileURLToPath(new URL('./facteur-server.ts', import.meta.url));
  // FACTEUR_BENCH_PROF=DIR: the server writes its CPU profile there when it stops.
  const prof = process.env.FACTEUR_BENCH_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.FACTEUR_BENCH_PROF}`] : [];
  // The flags `facteur` runs with (src/cli/node-flags.ts): what users run is measured.
  const child = spawn(process.execPath, [...SERVER_NODE_FLAGS, ...prof, '--import', 'tsx', script, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const waiters: Array<() => void> = [];
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    for (const w of waiters.splice(0)) w();
  });
  const next = (re: RegExp): Promise<RegExpExecArray> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const m = re.exec(out);
        if (m) {
          out = out.slice(m.index + m[0].length);
          resolve(m);
        } else if (child.exitCode !== null) reject(new Error(`facteur server exited with ${child.exitCode}`));
        else waiters.push(check);
      };
      check();
    });
  child.once('exit', () => {
    for (const w of waiters.splice(0)) w();
  });
  const port = Number((await next(/PORT (\d+)\n/))[1]);
  return {
    child,
    port,
    async reset() {
      child.kill('SIGUSR2');
      return JSON.parse((await next(/RESET (.*)\n/))[1]!) as FacteurStats;
    },
    async stop() {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const stats = await next(/STATS (.*)\n/).then(
        (m) => JSON.parse(m[1]!) as FacteurStats,
        () => null,
      );
      await exited;
      return stats;
    },
  };
}
