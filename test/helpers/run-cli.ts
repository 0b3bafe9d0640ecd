// Entry point for CLI tests: the same main() the installed `facteur` command runs.
import { main } from '../../src/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => { process.stderr.write(`facteur: ${(err as Error).message}\n`); process.exitCode = 1; },
);
