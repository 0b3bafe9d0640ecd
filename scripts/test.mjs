// Runs the test suite with node:test. Node 20 takes no globs, so the files are listed here:
// every `*.test.ts` under test/, or the files/directories given as arguments.
// test/store/postgres.test.ts runs the store suite on PostgreSQL when FACTEUR_TEST_PG is set
// (a postgres:// URL; .ci/run sets it). For the whole suite (no arguments) with FACTEUR_TEST_PG
// set, a second pass runs every protocol test (PG_E2E below: IMAP, POP3, SMTP/LMTP sessions)
// again with FACTEUR_TEST_STORE=postgres, over the PostgreSQL store (about 2.5 minutes on the
// reference 2-core machine). Any test runs on PostgreSQL alone with
// `FACTEUR_TEST_STORE=postgres node scripts/test.mjs test/imap`.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

function collect(path, out) {
  const st = statSync(path);
  if (st.isDirectory()) {
    for (const name of readdirSync(path).sort()) collect(join(path, name), out);
  } else if (/\.test\.ts$/.test(path)) {
    out.push(path);
  }
  return out;
}

const args = process.argv.slice(2);
const roots = args.length > 0 ? args : ['test'];
const files = roots.flatMap((r) => collect(r, []));
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}
const PG_E2E = ['test/imap', 'test/pop3', 'test/smtp'].flatMap((r) => collect(r, []));

const concurrency = process.env.FACTEUR_TEST_CONCURRENCY ?? '2';
function run(list, env) {
  const res = spawnSync(
    process.execPath,
    ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, '--test-timeout=600000', ...list],
    { stdio: 'inherit', env },
  );
  return res.status ?? 1;
}
let status = run(files, process.env);
if (args.length === 0 && process.env.FACTEUR_TEST_PG && !process.env.FACTEUR_TEST_STORE) {
  console.log('# second pass: protocol tests over the PostgreSQL store');
  const pgStatus = run(PG_E2E, { ...process.env, FACTEUR_TEST_STORE: 'postgres' });
  if (status === 0) status = pgStatus;
}
process.exit(status);
