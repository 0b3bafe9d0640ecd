/**
 * Import benchmark: a generated Dovecot Maildir of N messages (default 200,000, about SIZE = 2 KiB
 * each) imported with the real command, `facteur import maildir`, into a fresh data directory.
 * The import runs in its own process: the compiled CLI (bin/facteur.js, after `npm run build`),
 * or the CLI from source through tsx when dist/ is missing (tsx alone adds about 30 MB);
 * its peak resident memory is read from /proc/PID/status (VmHWM) while it runs.
 *
 *   npm run build && node --import tsx bench/import/run.ts [N] [SIZE]
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeLargeMaildir } from '../../test/import/fixtures.js';

const n = Number(process.argv[2] ?? 200_000);
const size = Number(process.argv[3] ?? 2048);
const DIST = fileURLToPath(new URL('../../bin/facteur.js', import.meta.url));
const compiled = existsSync(fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url)));
const CLI_ARGS = compiled ? [DIST] : ['--import', 'tsx', fileURLToPath(new URL('../../test/helpers/run-cli.ts', import.meta.url))];
const mb = (kb: number): string => `${(kb / 1024).toFixed(0)} MB`;

function cli(args: string[], input = ''): void {
  const r = spawnSync(process.execPath, [...CLI_ARGS, ...args], { input, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`facteur ${args.join(' ')}: ${r.stderr}`);
}

const root = await mkdtemp(join(tmpdir(), 'facteur-bench-import-'));
try {
  const t0 = Date.now();
  await writeLargeMaildir(join(root, 'Maildir'), n, size);
  console.log(`generated ${n} messages of ${size} bytes in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const data = join(root, 'data');
  cli(['init', '--domain', 'example.com', '--data', data]);
  cli(['user', 'add', 'bob@example.com', '--password-stdin', '--data', data], 'bench-password\n');

  const start = Date.now();
  const child = spawn(process.execPath, [...CLI_ARGS, 'import', 'maildir', 'bob@example.com', join(root, 'Maildir'), '--data', data], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  let peak = 0;
  const samples: string[] = [];
  const poll = setInterval(() => {
    try {
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      peak = Math.max(peak, Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0));
      const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
      if (samples.length === 0 || Date.now() - start > samples.length * 30_000) samples.push(mb(rss));
    } catch {
      // exited
    }
  }, 100);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  clearInterval(poll);
  const secs = (Date.now() - start) / 1000;
  process.stdout.write(out);
  console.log(`${compiled ? 'compiled CLI' : 'CLI through tsx'}, exit ${code}; ${n} messages in ${secs.toFixed(0)} s (${(n / secs).toFixed(0)} msg/s); peak RSS ${mb(peak)}; RSS every 30 s: ${samples.join(' ')}`);
} finally {
  await rm(root, { recursive: true, force: true });
}
