/**
 * Which build of Facteur a benchmark's server process runs: the TypeScript sources through tsx
 * (default), or with FACTEUR_BENCH_CODE=dist the compiled JavaScript in dist/ that `facteur`
 * runs in production (`npm run build` first). tsx's transform adds a little (a name helper
 * around every function it creates), and its profiles name lines of the transformed code; the
 * dist build gives figures and profiles of what users run.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const useDist = process.env.FACTEUR_BENCH_CODE === 'dist';
const root = new URL(useDist ? '../../dist/' : '../../src/', import.meta.url);
if (useDist && !existsSync(fileURLToPath(new URL('app.js', root)))) throw new Error('FACTEUR_BENCH_CODE=dist: run `npm run build` first');

/** Imports a module of src/ (path relative to src/, with its .js name) from the chosen build. */
export function facteurModule<T>(path: string): Promise<T> {
  return import(new URL(path, root).href) as Promise<T>;
}
