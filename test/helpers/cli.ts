/**
 * Runs the `facteur` CLI in a child process (as an operator would run it), and
 * starts `facteur serve` children that report their ports on the "ready" line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const MAIN = fileURLToPath(new URL('./run-cli.ts', import.meta.url));
const SRC = fileURLToPath(new URL('../../src', import.meta.url));
const COMPILED = fileURLToPath(new URL('../../bin/facteur.js', import.meta.url));
const COMPILED_MAIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

function newestMtime(dir: string): number {
  let newest = 0;
  for (const name of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, name.name);
    newest = Math.max(newest, name.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

let argvCache: string[] | null = null;
/**
 * How to start the CLI: the compiled `bin/facteur.js` when dist/ was built after the last change
 * to src/ (npm ci builds it, so CI takes this path), else the sources through tsx. Starting the
 * compiled CLI takes half the time, and the CLI tests start it hundreds of times.
 * FACTEUR_TEST_CLI=tsx forces the sources.
 */
function cliArgv(): string[] {
  if (argvCache !== null) return argvCache;
  let compiled = false;
  if (process.env.FACTEUR_TEST_CLI !== 'tsx') {
    try {
      compiled = statSync(COMPILED_MAIN).mtimeMs > newestMtime(SRC);
    } catch {
      compiled = false;
    }
  }
  argvCache = compiled ? [COMPILED] : ['--import', 'tsx', MAIN];
  return argvCache;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export async function runCli(args: string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  const child = spawn(process.execPath, [...cliArgv(), ...args], {
    env: { ...process.env, ...options.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  child.stdin.end(options.input ?? '');
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

export interface ServeProcess {
  child: ChildProcess;
  ports: Record<string, number>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  stderr(): string;
}

/** Starts `facteur serve` (or demo) and resolves once it printed its ready line. */
export async function startServe(args: string[], env: NodeJS.ProcessEnv = {}): Promise<ServeProcess> {
  const child = spawn(process.execPath, [...cliArgv(), ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const lines = createInterface({ input: child.stdout! });
  const ports = await new Promise<Record<string, number>>((resolve, reject) => {
    lines.on('line', (line) => {
      try {
        const msg = JSON.parse(line) as { msg?: string; listeners?: Record<string, number> };
        if (msg.msg === 'ready' && msg.listeners) resolve(msg.listeners);
      } catch {
        // not JSON: ignore
      }
    });
    child.once('exit', (code) => reject(new Error(`facteur exited with ${code} before ready: ${err}`)));
  });
  return {
    child,
    ports,
    stderr: () => err,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null) return child.exitCode;
      child.kill(signal);
      const [code] = (await once(child, 'exit')) as [number | null];
      return code;
    },
  };
}
