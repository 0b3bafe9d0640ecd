/**
 * The flags the `facteur` command gives Node and V8: the first line of bin/facteur.js
 * (`#!/usr/bin/env -S node ...`) and package.json's start script carry them (a test checks the
 * three agree), and the benchmarks start their Facteur processes with them. SMTP worker processes
 * inherit them (node:cluster passes the parent's execArgv). Flags on the command line win over
 * NODE_OPTIONS: run `node bin/facteur.js ...` to do without them. `env -S` is in GNU coreutils
 * (8.30 and later, Debian 10 on) and the BSDs; where env lacks it (BusyBox), run
 * `node --max-semi-space-size=32 bin/facteur.js ...`.
 *
 * --max-semi-space-size=32: V8's young generation grows to 2 x 32 MiB instead of 2 x 16 MiB
 * (Node 20's default), so a busy server collects short-lived garbage about half as often and
 * promotes less of it. Measured with bench/imap/ab.ts (both settings at once under the same load,
 * eight rounds, imaptest logout=0): +4.2% commands/s (faster in 8 of 8 rounds), -3.1% server CPU a
 * command; 64 MiB was no better than 32. The cost is memory under load: up to 32 MiB more young
 * generation (RSS 453 against 411 MiB in bench/imap's IDLE part after loading its accounts).
 */
export const SERVER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=32'];
