#!/usr/bin/env -S node --max-semi-space-size=32
// The `facteur` command: runs the compiled CLI (npm install builds dist/ through the prepare script).
// The flags on the first line are src/cli/node-flags.ts's (a test checks that they agree).
import { main } from '../dist/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => { if (typeof code === 'number') process.exitCode = code; },
  (err) => { process.stderr.write(`facteur: ${err instanceof Error ? err.message : String(err)}\n`); process.exitCode = 1; },
);
