/**
 * The flags `facteur` runs Node with (src/cli/node-flags.ts): bin/facteur.js's first line and
 * package.json's start script carry the same ones, and the first line, as the system runs it
 * (`env -S`), hands them to Node.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SERVER_NODE_FLAGS } from '../../src/cli/node-flags.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

test('bin/facteur.js and npm start run Node with the server flags, and env -S hands them over', () => {
  const first = readFileSync(`${root}bin/facteur.js`, 'utf8').split('\n')[0]!;
  const m = /^#!\/usr\/bin\/env -S node((?: --\S+)*)$/.exec(first);
  assert.ok(m, `first line: ${first}`);
  assert.deepEqual(m[1]!.trim().split(' '), SERVER_NODE_FLAGS);

  const pkg = JSON.parse(readFileSync(`${root}package.json`, 'utf8')) as { scripts: Record<string, string> };
  assert.equal(pkg.scripts.start, `node ${SERVER_NODE_FLAGS.join(' ')} bin/facteur.js demo`);

  // What the kernel runs for the first line, with a script in place of bin/facteur.js.
  const dir = mkdtempSync(join(tmpdir(), 'facteur-node-flags-'));
  try {
    const script = join(dir, 'flags.cjs');
    writeFileSync(script, 'process.stdout.write(JSON.stringify(process.execArgv));\n');
    const seen = execFileSync('/usr/bin/env', ['-S', first.slice('#!/usr/bin/env -S '.length), script], {
      encoding: 'utf8',
      env: { ...process.env, NODE_OPTIONS: '' },
    });
    assert.deepEqual(JSON.parse(seen), SERVER_NODE_FLAGS);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
