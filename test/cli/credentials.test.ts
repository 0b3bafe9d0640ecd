/**
 * `facteur user app-password` and `facteur user totp` as an operator runs them, with a real
 * `facteur serve` for the logins in between.
 */
import { strict as assert } from 'node:assert';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { base32Decode, hotp, totpStep } from '../../src/auth/totp.js';
import { connectImap } from '../helpers/imap-transcript.js';
import { runCli, startServe } from '../helpers/cli.js';

const ADDRESS = 'alice@example.test';
const PASSWORD = 'correct horse battery';

async function setup(): Promise<string> {
  const dir = join(await mkdtemp(join(tmpdir(), 'facteur-cred-')), 'data');
  assert.equal((await runCli(['init', '--domain', 'example.test', '--data', dir])).code, 0);
  const add = await runCli(['user', 'add', ADDRESS, '--password', PASSWORD, '--data', dir]);
  assert.equal(add.code, 0, add.stderr);
  return dir;
}

async function imapLogin(port: number, user: string, password: string): Promise<string> {
  const t = await connectImap(port);
  await t.expect(/^\* OK/);
  t.send(`a1 LOGIN "${user}" "${password}"`);
  const line = await t.readLine();
  t.close();
  return line;
}

test('app-password add prints the password once; list shows name, creation and last use with protocol and IP; revoke removes it', async () => {
  const dir = await setup();
  const add = await runCli(['user', 'app-password', 'add', ADDRESS, 'Phone', '--data', dir]);
  assert.equal(add.code, 0, add.stderr);
  const [intro, password] = add.stdout.trim().split('\n');
  assert.match(intro ?? '', /"Phone" for alice@example\.test \(shown only now/);
  assert.match(password ?? '', /^[a-z2-7]{4}(-[a-z2-7]{4}){3}$/);
  const dup = await runCli(['user', 'app-password', 'add', ADDRESS, 'Phone', '--data', dir]);
  assert.equal(dup.code, 1);
  assert.match(dup.stderr, /has one so named/);
  const nobody = await runCli(['user', 'app-password', 'list', 'nobody@example.test', '--data', dir]);
  assert.equal(nobody.code, 1);
  assert.match(nobody.stderr, /No such user/);
  assert.equal((await runCli(['user', 'app-password', 'add', ADDRESS, '--data', dir])).code, 2, 'NAME is required');

  let list = await runCli(['user', 'app-password', 'list', ADDRESS, '--data', dir]);
  assert.match(list.stdout, /^Phone\tcreated \d{4}-\d\d-\d\d \d\d:\d\d UTC\tnever used\n$/);

  const srv = await startServe(['serve', '--only', '--listen', 'imap=127.0.0.1:0', '--data', dir]);
  try {
    assert.match(await imapLogin(srv.ports.imap!, ADDRESS, password!), /^a1 OK/);
  } finally {
    assert.equal(await srv.stop('SIGTERM'), 0);
  }
  list = await runCli(['user', 'app-password', 'list', ADDRESS, '--data', dir]);
  assert.match(list.stdout, /^Phone\tcreated .* UTC\tlast used \d{4}-\d\d-\d\d \d\d:\d\d UTC imap (::ffff:)?127\.0\.0\.1\n$/);

  const revoke = await runCli(['user', 'app-password', 'revoke', ADDRESS, 'Phone', '--data', dir]);
  assert.equal(revoke.code, 0, revoke.stderr);
  assert.equal((await runCli(['user', 'app-password', 'list', ADDRESS, '--data', dir])).stdout, '');
  const again = await runCli(['user', 'app-password', 'revoke', ADDRESS, 'Phone', '--data', dir]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /none so named/);
});

test('totp enable prints the secret and otpauth URI and needs a matching code; then the main password no longer opens IMAP; disable restores it', async () => {
  const dir = await setup();
  // No code on standard input: nothing is enabled, and the command says how to confirm later.
  const first = await runCli(['user', 'totp', 'enable', ADDRESS, '--data', dir]);
  assert.equal(first.code, 1);
  const secret = /^secret: ([A-Z2-7]{32})$/m.exec(first.stdout)?.[1];
  assert.ok(secret, first.stdout);
  const uri = new URL(/^uri: (\S+)$/m.exec(first.stdout)?.[1] ?? '');
  assert.equal(uri.protocol, 'otpauth:');
  assert.equal(uri.searchParams.get('secret'), secret);
  assert.equal(uri.searchParams.get('issuer'), 'mail.example.test');
  assert.match(first.stderr, /TOTP not enabled: no code.*--secret [A-Z2-7]{32} --confirm CODE/);
  assert.doesNotMatch((await runCli(['user', 'list', '--data', dir])).stdout, /totp/);

  // A wrong code on standard input (interactive form) is refused.
  const key = base32Decode(secret)!;
  const code = hotp(key, totpStep(Date.now()));
  const wrongCode = String((Number(code) + 500_000) % 1_000_000).padStart(6, '0');
  const wrong = await runCli(['user', 'totp', 'enable', ADDRESS, '--data', dir], { input: `${wrongCode}\n` });
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /does not match/);
  assert.equal((await runCli(['user', 'totp', 'enable', ADDRESS, '--confirm', code, '--data', dir])).code, 2, '--confirm needs --secret');
  const bad = await runCli(['user', 'totp', 'enable', ADDRESS, '--secret', 'short', '--confirm', code, '--data', dir]);
  assert.equal(bad.code, 1);

  const ok = await runCli(['user', 'totp', 'enable', ADDRESS, '--secret', secret, '--confirm', hotp(key, totpStep(Date.now())), '--data', dir]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /TOTP enabled for alice@example\.test/);
  assert.match(ok.stdout, /facteur user app-password add alice@example\.test NAME/);
  assert.match((await runCli(['user', 'list', '--data', dir])).stdout, /^alice@example\.test \(totp\)$/m);
  const twice = await runCli(['user', 'totp', 'enable', ADDRESS, '--data', dir]);
  assert.equal(twice.code, 1);
  assert.match(twice.stderr, /already enabled/);

  const app = (await runCli(['user', 'app-password', 'add', ADDRESS, 'Laptop', '--data', dir])).stdout.trim().split('\n')[1]!;
  let srv = await startServe(['serve', '--only', '--listen', 'imap=127.0.0.1:0', '--data', dir]);
  try {
    assert.match(await imapLogin(srv.ports.imap!, ADDRESS, PASSWORD), /^a1 NO \[AUTHENTICATIONFAILED\]/);
    assert.match(await imapLogin(srv.ports.imap!, ADDRESS, app), /^a1 OK/);
  } finally {
    assert.equal(await srv.stop('SIGTERM'), 0);
  }

  const off = await runCli(['user', 'totp', 'disable', ADDRESS, '--data', dir]);
  assert.equal(off.code, 0, off.stderr);
  srv = await startServe(['serve', '--only', '--listen', 'imap=127.0.0.1:0', '--data', dir]);
  try {
    assert.match(await imapLogin(srv.ports.imap!, ADDRESS, PASSWORD), /^a1 OK/);
  } finally {
    assert.equal(await srv.stop('SIGTERM'), 0);
  }
});
