/**
 * Memory of a server's processes from /proc: RSS, and PSS (shared pages split between the
 * processes that map them, so a forking server like Dovecot is not counted many times over).
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';

function field(text: string, name: string): number {
  const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text);
  return m ? Number(m[1]) * 1024 : 0;
}

/** `pid` and all its descendants. */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      // The command name (field 2) may hold spaces: the fields after it start at the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(e));
      children.set(ppid, list);
    } catch {
      // exited meanwhile
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    out.push(p);
    for (const c of children.get(p) ?? []) walk(c);
  };
  walk(pid);
  return out;
}

export interface Memory {
  rss: number;
  pss: number;
  processes: number;
}

/** Sum over the processes and their descendants, in bytes. */
export function memoryOf(pids: readonly number[]): Memory {
  let rss = 0;
  let pss = 0;
  let processes = 0;
  for (const root of pids) {
    for (const p of processTree(root)) {
      try {
        const rollup = readFileSync(`/proc/${p}/smaps_rollup`, 'utf8');
        rss += field(rollup, 'Rss');
        pss += field(rollup, 'Pss');
        processes++;
      } catch {
        // exited meanwhile
      }
    }
  }
  return { rss, pss, processes };
}

/** Resets the peak RSS (VmHWM) of `pid` (proc(5), clear_refs value 5). */
export function resetPeak(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
}

export function peakRss(pid: number): number {
  return field(readFileSync(`/proc/${pid}/status`, 'utf8'), 'VmHWM');
}

export function currentRss(pid: number): number {
  return field(readFileSync(`/proc/${pid}/status`, 'utf8'), 'VmRSS');
}

/**
 * CPU time in ms used so far by the processes and their descendants: each one's own user +
 * system time plus that of its children it has already waited for (proc(5) fields 14-17), so a
 * forking server's exited session processes count through their parent. Clock ticks are 100/s
 * on Linux.
 */
export function cpuOf(pids: readonly number[]): number {
  let ticks = 0;
  for (const root of pids) {
    for (const p of processTree(root)) {
      try {
        const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
        const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        // After the name, field 3 (state) is f[0]: utime, stime, cutime, cstime are f[11..14].
        for (let i = 11; i <= 14; i++) ticks += Number(f[i]);
      } catch {
        // exited meanwhile
      }
    }
  }
  return ticks * 10;
}
