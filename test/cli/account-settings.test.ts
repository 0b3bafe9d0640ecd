import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { formatSize, parseSize } from '../../src/cli/account-settings.js';
import { runCli } from '../helpers/cli.js';

test('sizes: binary units, none, refusals', () => {
  assert.equal(parseSize('500M', 'x'), 500 * 1024 * 1024);
  assert.equal(parseSize('2g', 'x'), 2 * 1024 ** 3);
  assert.equal(parseSize('1.5K', 'x'), 1536);
  assert.equal(parseSize('4096', 'x'), 4096);
  assert.equal(parseSize('none', 'x'), null);
  assert.throws(() => parseSize('12X', '--quota-storage'), /--quota-storage: "12X" is not a size/);
  assert.throws(() => parseSize('0', 'x'), /out of range/);
  assert.equal(formatSize(2 * 1024 ** 3), '2G');
  assert.equal(formatSize(1536), '1.5K');
  assert.equal(formatSize(900), '900');
});

test('user set, show, disable and enable: quotas, the POP3 delete policy and the state, as the store keeps them', async () => {
  const dir = join(await mkdtemp(join(tmpdir(), 'facteur-cli-')), 'data');
  const cli = (...args: string[]) => runCli([...args, '--data', dir]);
  try {
    assert.equal((await cli('init', '--domain', 'example.test')).code, 0);
    assert.equal((await cli('user', 'add', 'bob@example.test', '--password', 'password123')).code, 0);
    assert.equal((await cli('alias', 'add', 'info@example.test', 'bob@example.test')).code, 0);
    let show = await cli('user', 'show', 'bob@example.test');
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, /^ {2}state {11}enabled$/m);
    assert.match(show.stdout, /^ {2}storage {9}0 \(no limit\)$/m);
    assert.match(show.stdout, /^ {2}POP3 delete {5}expunge$/m);
    assert.match(show.stdout, /^ {2}also reached at info@example\.test$/m);
    const set = await cli('user', 'set', 'bob@example.test', '--quota-storage', '2G', '--quota-messages', '5000', '--pop3-delete', 'hide');
    assert.equal(set.code, 0, set.stderr);
    assert.equal((await cli('user', 'disable', 'bob@example.test')).code, 0);
    show = await cli('user', 'show', 'bob@example.test');
    assert.match(show.stdout, /^ {2}state {11}disabled$/m);
    assert.match(show.stdout, /^ {2}storage {9}0 of 2G$/m);
    assert.match(show.stdout, /^ {2}messages {8}0 of 5000$/m);
    assert.match(show.stdout, /^ {2}POP3 delete {5}hide$/m);
    assert.match((await cli('user', 'list')).stdout, /^bob@example\.test \(disabled\)$/m);
    assert.equal((await cli('user', 'enable', 'bob@example.test')).code, 0);
    assert.equal((await cli('user', 'set', 'bob@example.test', '--quota-storage', 'none')).code, 0);
    show = await cli('user', 'show', 'bob@example.test');
    assert.match(show.stdout, /^ {2}state {11}enabled$/m);
    assert.match(show.stdout, /^ {2}storage {9}0 \(no limit\)$/m);
    assert.match(show.stdout, /^ {2}messages {8}0 of 5000$/m, 'what was not named is kept');
    // Refusals name what is wrong and change nothing.
    // Usage errors exit with 2, other failures with 1.
    const bad = await cli('user', 'set', 'bob@example.test', '--pop3-delete', 'delete');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--pop3-delete: expunge, trash, hide/);
    assert.equal((await cli('user', 'set', 'bob@example.test')).code, 2);
    const nobody = await cli('user', 'show', 'nobody@example.test');
    assert.equal(nobody.code, 1);
    assert.match(nobody.stderr, /No such user/);
    assert.match((await cli('user', 'show', 'bob@example.test')).stdout, /^ {2}POP3 delete {5}hide$/m);
  } finally {
    await rm(join(dir, '..'), { recursive: true, force: true });
  }
});
