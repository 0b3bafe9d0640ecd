/**
 * SMTP ingest benchmark: messages per second accepted and stored, Facteur against Postfix
 * delivering to Dovecot over LMTP, side by side in one run, for 1 KB and 100 KB messages, 1, 10
 * and 50 concurrent senders, 1 and 10 messages per connection.
 *
 *   sudo node --import tsx bench/smtp-ingest/run.ts [seconds-per-case] [facteur-only]   (npm run bench:smtp)
 *
 * "Stored" means: for Facteur, acknowledged with 250 (the store has fsync'd before the reply, and
 * the count is checked in the store afterwards); for Postfix + Dovecot, present in a maildir
 * (the rate is accepted messages over the time until Dovecot has stored the last of them).
 * Without root or the Debian packages, only Facteur is measured.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSqliteStore } from '../../src/store/sql/sqlite/sqlite-store.js';
import { startFacteur } from './facteur-process.js';
import { runLoad } from './load.js';
import { startPeers, type Peers } from './peers.js';

const seconds = Number(process.argv[2] ?? 5);
const SIZES = [1024, 100 * 1024];
const CONCURRENCY = [1, 10, 50];
const PER_CONNECTION = [1, 10];
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

async function measurePeers(peers: Peers, size: number, concurrency: number, perConnection: number): Promise<number> {
  const before = peers.stored();
  const start = Date.now();
  const r = await runLoad({ port: peers.smtpPort, messageBytes: size, concurrency, perConnection, durationMs: seconds * 1000, recipients: RECIPIENTS });
  // Wait for Dovecot to store everything Postfix accepted.
  const deadline = Date.now() + 120_000;
  while (peers.stored() - before < r.accepted && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
  const stored = peers.stored() - before;
  const elapsed = Date.now() - start;
  if (r.failed > 0) console.error(`  postfix: ${r.failed} failures`);
  return (stored / elapsed) * 1000;
}

const root = mkdtempSync(join(tmpdir(), 'facteur-bench-smtp-'));
const facteurDir = join(root, 'facteur');
const rows: string[] = [];
let facteurAccepted = 0;
const facteur = await startFacteur(facteurDir);
const { port } = facteur;
let peers: Peers | null = null;
try {
  peers = process.argv[3] !== 'facteur-only' && havePeers() ? startPeers(join(root, 'peers'), 25260, 24240) : null;
} catch (err) {
  await facteur.stop();
  throw err;
}
if (!peers && process.argv[3] !== 'facteur-only') console.error('Postfix/Dovecot not available (needs root and the postfix, dovecot-lmtpd packages): Facteur only');
await new Promise((r) => setTimeout(r, 1500));
try {
  for (const size of SIZES) {
    for (const concurrency of CONCURRENCY) {
      for (const perConnection of PER_CONNECTION) {
        const r = await runLoad({ port, messageBytes: size, concurrency, perConnection, durationMs: seconds * 1000, recipients: RECIPIENTS });
        facteurAccepted += r.accepted;
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
  await facteur.stop();
  peers?.stop();
}
// Every acknowledged message is in the store, once.
const store = await openSqliteStore({ dir: facteurDir });
let stored = 0;
for (const a of await store.listAccounts('example.com')) {
  const inbox = await store.getMailbox(a.id, 'INBOX');
  stored += (await store.listEntries(inbox!.id)).length;
}
await store.close();
rmSync(root, { recursive: true, force: true });

console.log(`\n${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), ${seconds} s per case, Node ${process.version}`);
console.log(`Facteur: ${facteurAccepted} messages acknowledged, ${stored} in the store after the run\n`);
console.log('| message | senders | messages/connection | Facteur msg/s | Postfix+Dovecot msg/s | ratio |');
console.log('|---|---|---|---|---|---|');
for (const r of rows) console.log(r);
