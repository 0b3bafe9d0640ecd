/**
 * The single-command timings on the large mailbox (issue #7's list), the same commands over the
 * same client for every server. Each figure is the median of `runs` runs; counts are returned
 * so that the servers' answers can be compared.
 */
import { ImapClient } from './client.js';
import { FREQUENT_SENDER, RARE } from './corpus.js';
import { currentRss, peakRss, resetPeak } from './memory.js';
import { BIG, PASSWORD } from './setup.js';

export interface OpResult {
  name: string;
  /** Median, and every run, in ms. */
  median: number;
  runs: number[];
  /** What the server answered (responses counted, hits found), the same for every run. */
  answer: string;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const hits = (line: string): number => line.trim().split(/\s+/).length - 2;

export interface OpsOptions {
  port: number;
  messages: number;
  runs: number;
  /** Facteur's process, for the peak memory of FETCH 1:* (Dovecot's is one process per session). */
  pid?: number;
}

export async function timeOps(o: OpsOptions, log: (s: string) => void): Promise<{ results: OpResult[]; fetchPeakBytes: number | null; firstSelectMs: number }> {
  const results: OpResult[] = [];
  const record = (name: string, runs: number[], answer: string) => {
    results.push({ name, median: median(runs), runs, answer });
    log(`  ${name.padEnd(46)} median ${median(runs).toFixed(0).padStart(6)} ms  [${runs.map((r) => r.toFixed(0)).join(', ')}]  ${answer}`);
  };
  const login = () => ImapClient.login(o.port, BIG, PASSWORD);

  // The first SELECT: Dovecot builds its index of the Maildir here (timed apart, not a goal).
  const first = await login();
  const firstSelect = await first.ok('SELECT INBOX');
  log(`  first SELECT after loading                     ${firstSelect.ms.toFixed(0)} ms`);
  await first.logout();

  // A session that stays selected changes flags on every message between the runs below.
  const other = await login();
  await other.ok('SELECT INBOX');
  let toggle = 0;
  const storeAll = async () => {
    await other.ok(`STORE 1:* ${toggle++ % 2 === 0 ? '+' : '-'}FLAGS.SILENT (\\Seen)`);
    await other.ok('NOOP');
  };

  const timeSelect = async (): Promise<number> => {
    const c = await login();
    const r = await c.ok('SELECT INBOX');
    await c.logout();
    return r.ms;
  };
  const quiet: number[] = [];
  for (let i = 0; i < o.runs; i++) quiet.push(await timeSelect());
  record('SELECT (quiet mailbox)', quiet, '');
  const afterStore: number[] = [];
  for (let i = 0; i < o.runs; i++) {
    await storeAll();
    afterStore.push(await timeSelect());
  }
  record('SELECT after another session STORE 1:*', afterStore, '');

  const s = await login();
  await s.ok('SELECT INBOX');
  const repeat = async (name: string, cmd: string, answer: (r: { untagged: number; lines: string[] }) => string) => {
    const runs: number[] = [];
    let last = '';
    for (let i = 0; i < o.runs; i++) {
      const lines: string[] = [];
      const r = await s.ok(cmd, (l) => {
        if (!/^\* \d+ FETCH/.test(l)) lines.push(l);
      });
      runs.push(r.ms);
      last = answer({ untagged: r.untagged, lines });
    }
    record(name, runs, last);
  };

  let fetchPeakBytes: number | null = null;
  {
    const runs: number[] = [];
    let count = 0;
    for (let i = 0; i < o.runs; i++) {
      const before = o.pid ? currentRss(o.pid) : 0;
      if (o.pid) resetPeak(o.pid);
      const r = await s.ok('FETCH 1:* (UID FLAGS)');
      if (o.pid) fetchPeakBytes = Math.max(fetchPeakBytes ?? 0, peakRss(o.pid) - before);
      runs.push(r.ms);
      count = r.untagged;
    }
    if (count < o.messages) throw new Error(`FETCH 1:* returned ${count} responses for ${o.messages} messages`);
    record('FETCH 1:* (UID FLAGS)', runs, `${count} FETCH`);
  }
  const searchLine = (r: { lines: string[] }) => {
    const l = r.lines.find((x) => /^\* SEARCH/i.test(x));
    return `${l ? hits(l) : '?'} hits`;
  };
  await repeat(`SEARCH TEXT ${RARE[0]} (rare word)`, `SEARCH TEXT ${RARE[0]}`, searchLine);
  await repeat('SEARCH TEXT budget (common word)', 'SEARCH TEXT budget', searchLine);
  await repeat(`SEARCH FROM ${FREQUENT_SENDER}`, `SEARCH FROM ${FREQUENT_SENDER}`, searchLine);
  await repeat('SORT (REVERSE DATE) UTF-8 ALL', 'SORT (REVERSE DATE) UTF-8 ALL', (r) => {
    const l = r.lines.find((x) => /^\* SORT/i.test(x));
    return `${l ? hits(l) : '?'} sorted`;
  });
  await repeat('THREAD REFERENCES UTF-8 ALL', 'THREAD REFERENCES UTF-8 ALL', (r) => {
    const l = r.lines.find((x) => /^\* THREAD/i.test(x)) ?? '';
    // Top-level threads: parentheses at depth 0.
    let depth = 0;
    let top = 0;
    for (const ch of l) {
      if (ch === '(') {
        if (depth === 0) top++;
        depth++;
      } else if (ch === ')') depth--;
    }
    return `${top} threads`;
  });
  {
    const runs: number[] = [];
    let count = 0;
    for (let i = 0; i < o.runs; i++) {
      const r = await s.ok(`STORE 1:* ${i % 2 === 0 ? '+' : '-'}FLAGS (\\Flagged)`);
      runs.push(r.ms);
      count = r.untagged;
    }
    record('STORE 1:* +FLAGS (\\Flagged), then -FLAGS', runs, `${count} FETCH`);
  }
  await s.logout();
  {
    const c = await login();
    const runs: number[] = [];
    let line = '';
    for (let i = 0; i < o.runs; i++) {
      const r = await c.ok('STATUS INBOX (MESSAGES UIDNEXT UNSEEN)', (l) => (line = l));
      runs.push(r.ms);
    }
    await c.logout();
    record('STATUS INBOX (MESSAGES UIDNEXT UNSEEN)', runs, line.replace(/^\* STATUS \S+ /, ''));
  }

  // QRESYNC (RFC 7162 §3.2.5): a client that knows (UIDVALIDITY, HIGHESTMODSEQ) reselects after
  // another session changed 1,000 messages; it must get exactly those 1,000 FETCH responses.
  {
    const step = Math.max(1, Math.floor(o.messages / 1000));
    const uids = Array.from({ length: 1000 }, (_, i) => i * step + 1).join(',');
    const runs: number[] = [];
    const counts: number[] = [];
    for (let i = 0; i < o.runs; i++) {
      const q = await login();
      await q.ok('ENABLE QRESYNC');
      let validity = '';
      let modseq = '';
      await q.ok('SELECT INBOX', (l) => {
        validity = /\[UIDVALIDITY (\d+)\]/i.exec(l)?.[1] ?? validity;
        modseq = /\[HIGHESTMODSEQ (\d+)\]/i.exec(l)?.[1] ?? modseq;
      });
      await q.logout();
      if (!validity || !modseq) throw new Error('SELECT gave no UIDVALIDITY or HIGHESTMODSEQ');
      await other.ok(`UID STORE ${uids} +FLAGS.SILENT ($Resync${i})`);
      await other.ok('NOOP');
      const q2 = await login();
      await q2.ok('ENABLE QRESYNC');
      let fetches = 0;
      const r = await q2.ok(`SELECT INBOX (QRESYNC (${validity} ${modseq}))`, (l) => {
        if (/^\* \d+ FETCH/.test(l)) fetches++;
      });
      await q2.logout();
      runs.push(r.ms);
      counts.push(fetches);
    }
    record('SELECT (QRESYNC) after 1,000 flag changes', runs, `${[...new Set(counts)].join('/')} FETCH`);
  }
  await other.logout();
  return { results, fetchPeakBytes, firstSelectMs: firstSelect.ms };
}
