/**
 * Shared settings of the fuzz suite (test/fuzz/). CI runs every property with a fixed seed and a
 * small number of runs, so a failure reproduces exactly; a longer hunt is run by hand:
 *
 *   FUZZ_SEED=$RANDOM FUZZ_RUNS=20000 node scripts/test.mjs test/fuzz
 *
 * fast-check prints the seed and the shrunk counterexample of a failure; rerun with that seed.
 */
import { strict as assert } from 'node:assert';

export const FUZZ = {
  seed: Number(process.env.FUZZ_SEED ?? 1),
  numRuns: Number(process.env.FUZZ_RUNS ?? 200),
};

/** CPU time (user + system, this process) one input may take. CPU rather than wall time: the
 * machine is shared with other test processes, and a load of 20 on 2 cores stretches wall time
 * tenfold. What it catches is a hang or a super-linear blow-up (the IMAP receiver once took 3 s of
 * CPU for a 64 KiB line sent byte by byte), not a slow run. */
export const PER_INPUT_MS = 2000;

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** Runs fn and fails when it used more than PER_INPUT_MS of CPU. */
export function bounded<T>(what: string, fn: () => T): T {
  const start = cpuMs();
  const result = fn();
  const took = cpuMs() - start;
  assert.ok(took < PER_INPUT_MS, `${what} used ${took.toFixed(0)} ms of CPU on one input`);
  return result;
}
