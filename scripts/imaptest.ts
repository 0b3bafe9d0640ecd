// Runs Dovecot's imaptest compliance scripts against a fresh Facteur IMAP server:
//   node --import tsx scripts/imaptest.ts [TEST_DIR]
// IMAPTEST names the imaptest binary (default: `imaptest` on PATH; it needs libdovecot, e.g.
// LD_LIBRARY_PATH=/usr/lib/dovecot). TEST_DIR defaults to ../shared/imaptest-tests. Exits 1 when
// imaptest reports a failed command.
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { createImapServer } from '../src/imap/server/server.js';
import { makeTestContext } from '../test/helpers/context.js';

const testDir = resolve(process.argv[2] ?? '../shared/imaptest-tests');
const binary = process.env.IMAPTEST ?? 'imaptest';
const ctx = await makeTestContext();
await ctx.addUser('imaptest@example.test', 'pass');
// imaptest opens many connections from one address as one user.
const server = createImapServer(ctx, { implicitTls: false, maxConnectionsPerIp: 1000, maxConnectionsPerAccount: 1000 });
const port = await server.listen('127.0.0.1', 0);
const child = spawn(binary, ['host=127.0.0.1', `port=${port}`, 'user=imaptest@example.test', 'pass=pass', `test=${testDir}`], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
let output = '';
child.stdout.on('data', (d: Buffer) => {
  output += d.toString();
  process.stdout.write(d);
});
const code: number = await new Promise((done) => child.on('close', (c) => done(c ?? 1)));
await server.close(100);
await ctx.cleanup();
const failed = [...output.matchAll(/: (\d+)\/\d+ individual commands failed/g)].some((m) => Number(m[1]) > 0);
process.exit(code !== 0 || failed ? 1 : 0);
