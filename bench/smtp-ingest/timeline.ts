/**
 * Where a sender's time goes: `senders` clients (default one), each opening one connection after
 * another until `connections` are done, each phase timed from the client (the reply's arrival
 * after the request's write), against Facteur in its own process, with the server's CPU time, its
 * store's COMMIT and WAL fdatasync times, the load generator's own CPU time, and the disk's
 * fdatasync latency measured before and after. With several senders the phases show what each
 * waits for under load (e.g. an RCPT answered by the owner of the store across the channel of an
 * SMTP worker process); "per connection" is then the elapsed time over the connections.
 *
 *   node --import tsx bench/smtp-ingest/timeline.ts [connections=1000] [messages-per-connection=1] [bytes=1024] [senders=1]
 *   FACTEUR_BENCH_SMTP_WORKERS=N ...      # as for run.ts (0: the sessions in the owner's process)
 *
 * MAIL, RCPT and DATA go in one write (RFC 2920 pipelining) and are answered together.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFacteur } from './facteur-process.js';
import { formatProbe, probeFsync } from './fsync-probe.js';
import { makeBenchMessage, runLoad } from './load.js';

const connections = Number(process.argv[2] ?? 1000);
const perConnection = Number(process.argv[3] ?? 1);
const bytes = Number(process.argv[4] ?? 1024);
const senders = Math.max(1, Number(process.argv[5] ?? 1));

/** One connection's phases, in ms, in order. */
async function session(port: number, message: Buffer): Promise<number[]> {
  const s: Socket = connect(port, '127.0.0.1');
  s.setNoDelay(true);
  const laps: number[] = [];
  let mark = performance.now();
  const lap = (): void => {
    const now = performance.now();
    laps.push(now - mark);
    mark = now;
  };
  let buf = '';
  let wake: (() => void) | null = null;
  let failed: Error | null = null;
  s.on('data', (d: Buffer) => {
    buf += d.toString('latin1');
    wake?.();
  });
  s.on('error', (err) => {
    failed = err;
    wake?.();
  });
  /** Waits for `n` final replies (the last line of each), checks their codes. */
  const replies = async (codes: number[]): Promise<void> => {
    for (const code of codes) {
      for (;;) {
        const m = /^(\d{3}) [^\r\n]*\r\n/m.exec(buf);
        if (m) {
          buf = buf.slice(m.index + m[0].length);
          if (Number(m[1]) !== code) throw new Error(`expected ${code}, got ${m[0].trim()}`);
          break;
        }
        if (failed) throw failed;
        await new Promise<void>((r) => (wake = r));
        wake = null;
      }
    }
    lap();
  };
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
  lap();
  try {
    await replies([220]);
    s.write('EHLO bench.example\r\n');
    await replies([250]);
    for (let i = 0; i < perConnection; i++) {
      s.write('MAIL FROM:<bench@sender.example>\r\nRCPT TO:<bench1@example.com>\r\nDATA\r\n');
      await replies([250, 250, 354]);
      s.write(message);
      await replies([250]);
    }
    s.write('QUIT\r\n');
    await replies([221]);
  } finally {
    s.destroy();
  }
  return laps;
}

const root = mkdtempSync(join(tmpdir(), 'facteur-bench-timeline-'));
const before = probeFsync(root);
const facteur = await startFacteur(join(root, 'facteur'));
let stats;
const sums: number[] = [];
const samples: number[][] = [];
let elapsed = 0;
let clientCpu = 0;
try {
  // Warm-up: JIT, statement cache, the WAL's first pages.
  await runLoad({ port: facteur.port, messageBytes: bytes, concurrency: 1, perConnection, durationMs: 1500, recipients: ['bench1@example.com'] });
  await facteur.reset();
  const message = Buffer.concat([makeBenchMessage(bytes, 1, 'bench1@example.com'), Buffer.from('.\r\n')]);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let started = 0;
  await Promise.all(
    Array.from({ length: senders }, async () => {
      while (started < connections) {
        started++;
        const laps = await session(facteur.port, message);
        laps.forEach((v, i) => {
          sums[i] = (sums[i] ?? 0) + v;
          (samples[i] ??= []).push(v);
        });
      }
    }),
  );
  elapsed = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  clientCpu = (cpu.user + cpu.system) / 1000;
} finally {
  stats = await facteur.stop();
}
const after = probeFsync(root);
rmSync(root, { recursive: true, force: true });

const messages = connections * perConnection;
const names = ['TCP connect', '220 greeting', 'EHLO -> 250', ...Array.from({ length: perConnection }, (_, i) => [`MAIL+RCPT+DATA -> 354 (#${i + 1})`, `message -> 250 (#${i + 1})`]).flat(), 'QUIT -> 221'];
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const pace = senders === 1 ? 'one after another' : `${senders} senders at once`;
console.log(`${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), Node ${process.version}; ${connections} connections x ${perConnection} message(s) of ${bytes} bytes, ${pace}`);
console.log(`disk before: ${formatProbe(before)}`);
console.log(`disk after:  ${formatProbe(after)}\n`);
console.log('| phase | mean ms | median ms |');
console.log('|---|---|---|');
names.forEach((n, i) => console.log(`| ${n} | ${((sums[i] ?? 0) / connections).toFixed(3)} | ${median(samples[i] ?? [0]).toFixed(3)} |`));
console.log(`| **per connection** | ${(elapsed / connections).toFixed(3)} | |`);
console.log(`\n${((messages / elapsed) * 1000).toFixed(0)} messages/s; per message: load generator CPU ${(clientCpu / messages).toFixed(3)} ms`);
if (stats) {
  const st = stats.store;
  console.log(
    `server per message: CPU ${((stats.cpuUserMs + stats.cpuSystemMs) / messages).toFixed(3)} ms (system ${(stats.cpuSystemMs / messages).toFixed(3)}); ` +
      `store jobs ${(st.run / Math.max(1, st.jobs)).toFixed(3)} ms, COMMIT ${(st.commit / Math.max(1, st.batches)).toFixed(3)} ms per batch (${st.batches} batches), ` +
      `WAL fdatasync ${(st.sync / Math.max(1, st.syncs)).toFixed(3)} ms mean (${st.syncs} syncs)`,
  );
}
