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

/** Wall time one input may take. Generous (the machine is shared with other test processes);
 * what it catches is a hang or a super-linear blow-up, which takes seconds, not a slow run. */
export const PER_INPUT_MS = 2000;

/** Runs fn and fails when it took longer than PER_INPUT_MS. */
export function bounded<T>(what: string, fn: () => T): T {
  const start = performance.now();
  const result = fn();
  const took = performance.now() - start;
  assert.ok(took < PER_INPUT_MS, `${what} took ${took.toFixed(0)} ms on one input`);
  return result;
}

/** Asynchronous version of `bounded`. */
export async function boundedAsync<T>(what: string, fn: () => Promise<T>): Promise<T> {
  const start = performance.now();
  const result = await fn();
  const took = performance.now() - start;
  assert.ok(took < PER_INPUT_MS, `${what} took ${took.toFixed(0)} ms on one input`);
  return result;
}
