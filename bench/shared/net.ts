/**
 * Loopback helpers shared by the benchmarks: a free port, waiting for a listener, and a child
 * process that reports the ports it listens on.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { connect, createServer } from 'node:net';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a !== null ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export async function waitForPort(port: number, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface PortChild {
  child: ChildProcess;
  /** NAME -> port, from the child's "PORT NAME n" lines (a bare "PORT n" is named "port"). */
  ports: Record<string, number>;
  stop(): Promise<void>;
}

/**
 * Starts `node [nodeArgs] --import tsx script ...args` and resolves once it printed "READY" (after its
 * "PORT [NAME] n" lines). Its stderr goes to ours.
 */
export function spawnTsx(script: string, args: string[], nodeArgs: string[] = [], env: NodeJS.ProcessEnv = process.env): Promise<PortChild> {
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', script, ...args], { stdio: ['ignore', 'pipe', 'inherit'], env });
  return new Promise((resolve, reject) => {
    let out = '';
    const ports: Record<string, number> = {};
    const onExit = (code: number | null) => reject(new Error(`${script} exited with ${code}`));
    child.once('exit', onExit);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      for (;;) {
        const nl = out.indexOf('\n');
        if (nl < 0) break;
        const line = out.slice(0, nl).trim();
        out = out.slice(nl + 1);
        const m = /^PORT (?:(\S+) )?(\d+)$/.exec(line);
        if (m) ports[m[1] ?? 'port'] = Number(m[2]);
        else if (line === 'READY') {
          child.off('exit', onExit);
          resolve({
            child,
            ports,
            stop: () =>
              new Promise((res) => {
                if (child.exitCode !== null || child.signalCode !== null) return res();
                child.once('exit', () => res());
                child.kill('SIGTERM');
              }),
          });
        } else if (line.length > 0) process.stdout.write(`  ${line}\n`);
      }
    });
  });
}
