/**
 * SMTP ingest benchmark: messages per second accepted and stored, Facteur against Postfix
 * delivering to Dovecot over LMTP, side by side in one run, for 1 KB and 100 KB messages, 1, 10
 * and 50 concurrent senders, 1 and 10 messages per connection.
 *
 *   sudo node --import tsx bench/smtp-ingest/run.ts [seconds-per-case] [facteur-only]   (npm run bench:smtp)
 *   node --import tsx bench/smtp-ingest/run.ts [seconds] --pg=postgres://user@host/db [--nodes=2]
 *   ... --cases=1024x10x1,1024x1x1        # only these cases (bytes x senders x messages/connection)
 *   ... --warmup=0                        # no warm-up load before the first case (default 3 s)
 *   FACTEUR_BENCH_PROF=DIR ...            # Facteur's process writes a CPU profile into DIR
 *   FACTEUR_BENCH_CODE=dist ...           # the server runs the compiled build (npm run build first)
 *   FACTEUR_BENCH_SMTP_WORKERS=N ...      # SMTP worker processes (default: the config's default
 *                                         # for this machine, 1 with two or more cores; 0: none)
 *
 * With --pg, Facteur stores into a fresh schema of that database (dropped at the end), as
 * --nodes processes (default 1) on the one schema, the senders of each case split between them;
 * Postfix is not run.
 *
 * "Stored" means: for Facteur, acknowledged with 250 (the store has fsync'd before the reply, and
 * the count is checked in the store afterwards); for Postfix + Dovecot, present in a maildir
 * (the rate is accepted messages over the time until Dovecot has stored the last of them).
 * Without root or the Debian packages, only Facteur is measured.
 *
 * Before the first case, Facteur gets --warmup seconds of unmeasured load (1 KB, 10 senders, one
 * message per connection): without it the first case also paid for compiling the server's code
 * (V8's optimising compiler runs for seconds, on threads whose CPU time counts): 1 KB x 1 x 1
 * first measured 1.44 and 1.61 ms of server CPU per message, 1.18 after the warm-up. Postfix and
 * Dovecot get the same load first (their processes start on demand), until it is all stored.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { SMTP_WORKERS_DEFAULT } from '../../src/config/config.js';
import { openStore } from '../../src/store/open.js';
import { startFacteur, type FacteurProcess } from './facteur-process.js';
import { runLoad, type LoadResult } from './load.js';
import { startPeers, type Peers } from './peers.js';

const positional = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const flag = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const seconds = Number(positional[0] ?? 5);
const pgUrl = flag('pg');
const nodes = Number(flag('nodes') ?? 1);
const warmupSeconds = Number(flag('warmup') ?? 3);
const facteurOnly = positional[1] === 'facteur-only' || pgUrl !== undefined;
const SIZES = [1024, 100 * 1024];
const CONCURRENCY = [1, 10, 50];
const PER_CONNECTION = [1, 10];
/** --cases=1024x10x1,... (bytes x senders x messages per connection): only those cases. */
const CASES = flag('cases')?.split(',') ?? null;
const RECIPIENTS = Array.from({ length: 10 }, (_, i) => `bench${i + 1}@example.com`);

function havePeers(): boolean {
  try {
    execFileSync('postfix', ['-c', '/etc/postfix', 'check'], { stdio: 'ignore' });
    execFileSync('test', ['-x', '/usr/lib/dovecot/lmtp']);
    return process.getuid?.() === 0;
  } catch {
    return false;
  }
}

async function measurePeers(peers: Peers, size: number, concurrency: number, perConnection: number, secs = seconds): Promise<number> {
  const before = peers.stored();
  const start = Date.now();
  const r = await runLoad({ port: peers.smtpPort, messageBytes: size, concurrency, perConnection, durationMs: secs * 1000, recipients: RECIPIENTS });
  // Wait for Dovecot to store everything Postfix accepted.
  const deadline = Date.now() + 120_000;
  while (peers.stored() - before < r.accepted && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
  const stored = peers.stored() - before;
  const elapsed = Date.now() - start;
  if (r.failed > 0) console.error(`  postfix: ${r.failed} failures`);
  return (stored / elapsed) * 1000;
}

/** The senders of a case split between the nodes (the first ones get one more). */
async function loadAll(ports: number[], size: number, concurrency: number, perConnection: number): Promise<LoadResult> {
  const shares = ports.map((_, i) => Math.floor(concurrency / ports.length) + (i < concurrency % ports.length ? 1 : 0));
  const results = await Promise.all(
    ports
      .map((port, i) => ({ port, senders: shares[i] ?? 0 }))
      .filter((p) => p.senders > 0)
      .map((p) => runLoad({ port: p.port, messageBytes: size, concurrency: p.senders, perConnection, durationMs: seconds * 1000, recipients: RECIPIENTS })),
  );
  return results.reduce((a, r) => ({
    accepted: a.accepted + r.accepted,
    failed: a.failed + r.failed,
    connections: a.connections + r.connections,
    elapsedMs: Math.max(a.elapsedMs, r.elapsedMs),
    // Each load measured this whole process's CPU over the same interval.
    cpuMs: Math.max(a.cpuMs, r.cpuMs),
  }));
}

const root = mkdtempSync(join(tmpdir(), 'facteur-bench-smtp-'));
// SQLite in a temp directory, or a fresh schema of the PostgreSQL database.
const schema = `bench_${randomBytes(6).toString('hex')}`;
const location = pgUrl === undefined ? join(root, 'facteur') : `${pgUrl}${pgUrl.includes('?') ? '&' : '?'}schema=${schema}`;
const rows: string[] = [];
let facteurAccepted = 0;
// One after the other: the first node creates the schema, the domain and the users.
const facteurs: FacteurProcess[] = [];
for (let i = 0; i < nodes; i++) facteurs.push(await startFacteur(location));
const ports = facteurs.map((f) => f.port);
const stopAll = async () => {
  for (const f of facteurs) await f.stop();
};
let peers: Peers | null = null;
try {
  peers = !facteurOnly && havePeers() ? startPeers(join(root, 'peers'), 25260, 24240) : null;
} catch (err) {
  await stopAll();
  throw err;
}
if (!peers && !facteurOnly) console.error('Postfix/Dovecot not available (needs root and the postfix, dovecot-lmtpd packages): Facteur only');
await new Promise((r) => setTimeout(r, 1500));
try {
  if (warmupSeconds > 0) {
    const warm = await Promise.all(
      ports.map((port) => runLoad({ port, messageBytes: 1024, concurrency: 10, perConnection: 1, durationMs: warmupSeconds * 1000, recipients: RECIPIENTS })),
    );
    // Stored too: counted with the acknowledged messages the store is checked against.
    for (const w of warm) facteurAccepted += w.accepted;
    // The same for Postfix and Dovecot: their processes are started on demand, and the first
    // case should not pay for that either.
    // Waited for until stored, so that none is counted in the first case.
    if (peers) await measurePeers(peers, 1024, 10, 1, warmupSeconds);
  }
  for (const size of SIZES) {
    for (const concurrency of CONCURRENCY) {
      for (const perConnection of PER_CONNECTION) {
        if (CASES !== null && !CASES.includes(`${size}x${concurrency}x${perConnection}`)) continue;
        for (const f of facteurs) await f.reset();
        const r = await loadAll(ports, size, concurrency, perConnection);
        // Server CPU per acknowledged message in this case (all nodes), a figure that moves less
        // with the machine's load than the rates.
        let serverCpuMs = 0;
        let batches = 0;
        let syncs = 0;
        let syncMs = 0;
        let loopMs = 0;
        let holds = 0;
        let heldMs = 0;
        let runMs = 0;
        let commitMs = 0;
        for (const f of facteurs) {
          const st = await f.reset();
          serverCpuMs += st.cpuUserMs + st.cpuSystemMs;
          batches += st.store.batches;
          syncs += st.store.syncs;
          syncMs += st.store.sync;
          loopMs = Math.max(loopMs, st.loopMeanMs);
          holds += st.store.holds;
          heldMs += st.store.held;
          runMs += st.store.run;
          commitMs += st.store.commit;
        }
        facteurAccepted += r.accepted;
        const per = (x: number) => (x / Math.max(1, r.accepted)).toFixed(2);
        console.error(
          `  facteur: ${r.accepted} acknowledged; per message: server CPU ${per(serverCpuMs)} ms (store jobs ${per(runMs)} + COMMIT ${per(commitMs)} ms on the event loop), load generator CPU ${per(r.cpuMs)} ms; ` +
            `${(r.accepted / Math.max(1, batches)).toFixed(1)} messages per batch, WAL fdatasync mean ${(syncMs / Math.max(1, syncs)).toFixed(2)} ms, event-loop delay mean ${loopMs.toFixed(1)} ms, writes held ${holds} times (${heldMs.toFixed(0)} ms) for a catch-up checkpoint`,
        );
        const facteurRate = (r.accepted / r.elapsedMs) * 1000;
        if (r.failed > 0) console.error(`  facteur: ${r.failed} failures`);
        const peerRate = peers ? await measurePeers(peers, size, concurrency, perConnection) : NaN;
        const row = `| ${size >= 1024 * 100 ? '100 KB' : '1 KB'} | ${concurrency} | ${perConnection} | ${facteurRate.toFixed(0)} | ${Number.isNaN(peerRate) ? 'n/a' : peerRate.toFixed(0)} | ${Number.isNaN(peerRate) ? '' : `${(facteurRate / peerRate).toFixed(1)}x`} |`;
        rows.push(row);
        console.error(row);
      }
    }
  }
} finally {
  await stopAll();
  peers?.stop();
}
// Every acknowledged message is in the store, once.
const store = await openStore(location);
let stored = 0;
for (const a of await store.listAccounts('example.com')) {
  const inbox = await store.getMailbox(a.id, 'INBOX');
  stored += (await store.listEntries(inbox!.id)).length;
}
await store.close();
rmSync(root, { recursive: true, force: true });
if (pgUrl !== undefined) {
  const admin = new pg.Client({ connectionString: pgUrl });
  await admin.connect();
  await admin.query(`DROP SCHEMA "${schema}" CASCADE`);
  await admin.end();
}

const where = pgUrl === undefined ? 'SQLite' : `PostgreSQL, ${nodes} node${nodes > 1 ? 's' : ''} (processes) on one schema`;
console.log(
  `\n${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), ${seconds} s per case, Node ${process.version}, ${where}, SMTP worker processes: ${process.env.FACTEUR_BENCH_SMTP_WORKERS ?? `default (${SMTP_WORKERS_DEFAULT})`}`,
);
console.log(`Facteur: ${facteurAccepted} messages acknowledged, ${stored} in the store after the run\n`);
console.log('| message | senders | messages/connection | Facteur msg/s | Postfix+Dovecot msg/s | ratio |');
console.log('|---|---|---|---|---|---|');
for (const r of rows) console.log(r);
