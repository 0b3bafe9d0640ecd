import { strict as assert } from 'node:assert';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCli, startServe } from '../helpers/cli.js';

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'facteur-cli-'));
}

test('init creates a documented config, a certificate and the domain; a second init refuses', async () => {
  const dir = join(await tempDir(), 'data');
  const r = await runCli(['init', '--domain', 'Example.TEST', '--data', dir]);
  assert.equal(r.code, 0, r.stderr);
  const conf = await readFile(join(dir, 'facteur.toml'), 'utf8');
  assert.match(conf, /hostname = "mail\.example\.test"/);
  assert.match(conf, /# Fully qualified name/);
  await readFile(join(dir, 'tls', 'mail.example.test.crt'));
  const list = await runCli(['domain', 'list', '--data', dir]);
  assert.equal(list.stdout.trim(), 'example.test');
  const again = await runCli(['init', '--domain', 'example.test', '--data', dir]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /already exists/);
});

test('user, alias and domain commands manage accounts; check-store reports a consistent store', async () => {
  const dir = join(await tempDir(), 'data');
  assert.equal((await runCli(['init', '--domain', 'example.test', '--data', dir])).code, 0);
  const add = await runCli(['user', 'add', 'Alice@example.test', '--password-stdin', '--data', dir], { input: 'correct horse\n' });
  assert.equal(add.code, 0, add.stderr);
  const dup = await runCli(['user', 'add', 'alice@example.test', '--password', 'another one', '--data', dir]);
  assert.equal(dup.code, 1);
  const foreign = await runCli(['user', 'add', 'bob@elsewhere.test', '--password', 'password123', '--data', dir]);
  assert.equal(foreign.code, 1);
  assert.match(foreign.stderr, /not local/);
  const short = await runCli(['user', 'add', 'carol@example.test', '--password', 'short', '--data', dir]);
  assert.equal(short.code, 1);
  assert.match(short.stderr, /too short/);
  assert.equal((await runCli(['alias', 'add', 'sales@example.test', 'alice@example.test', '--data', dir])).code, 0);
  assert.equal((await runCli(['alias', 'list', '--data', dir])).stdout.trim(), 'sales@example.test -> alice@example.test');
  assert.equal((await runCli(['user', 'passwd', 'alice@example.test', '--password', 'new password', '--data', dir])).code, 0);
  assert.equal((await runCli(['user', 'list', '--data', dir])).stdout.trim(), 'alice@example.test');
  const check = await runCli(['check-store', '--data', dir]);
  assert.equal(check.code, 0, check.stdout + check.stderr);
  assert.match(check.stdout, /consistent/);
  assert.equal((await runCli(['user', 'remove', 'alice@example.test', '--data', dir])).code, 0);
  assert.equal((await runCli(['user', 'list', '--data', dir])).stdout.trim(), '');
});

test('user import adds valid lines and reports each refused line with its number', async () => {
  const base = await tempDir();
  const dir = join(base, 'data');
  assert.equal((await runCli(['init', '--domain', 'example.test', '--data', dir])).code, 0);
  const file = join(base, 'users.txt');
  await writeFile(file, '# provisioning\nann@example.test password-one\nbroken-line\nzed@other.test password-two\nbea@example.test password-three\n');
  const r = await runCli(['user', 'import', file, '--data', dir]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /users\.txt:3: refused/);
  assert.match(r.stderr, /users\.txt:4: refused: Domain other\.test is not local/);
  assert.match(r.stdout, /imported 2 user\(s\), refused 2/);
  assert.deepEqual((await runCli(['user', 'list', '--data', dir])).stdout.trim().split('\n').sort(), ['ann@example.test', 'bea@example.test']);
});

test('a config typo names the file, the key and the likely intended key', async () => {
  const dir = join(await tempDir(), 'data');
  assert.equal((await runCli(['init', '--domain', 'example.test', '--data', dir])).code, 0);
  const path = join(dir, 'facteur.toml');
  const conf = await readFile(path, 'utf8');
  await writeFile(path, conf.replace('max_recipients', 'max_recipents'));
  const r = await runCli(['serve', '--data', dir]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /facteur\.toml: smtp\.max_recipents: unknown key \(did you mean "max_recipients"\?\)/);
  await writeFile(path, conf.replace(/max_recipients = \d+/, 'max_recipients = "lots"'));
  const r2 = await runCli(['serve', '--data', dir]);
  assert.equal(r2.code, 1);
  assert.match(r2.stderr, /smtp\.max_recipients: expected a whole number/);
  await writeFile(path, 'hostname = "x"\n[smtp\n');
  const r3 = await runCli(['serve', '--data', dir]);
  assert.equal(r3.code, 1);
  assert.match(r3.stderr, /not valid TOML/);
});

test('a data directory that cannot be written is refused with a clear message', async () => {
  // Below a regular file: no user, not even root, can create it.
  const base = await tempDir();
  await writeFile(join(base, 'file'), 'x');
  const r = await runCli(['init', '--domain', 'example.test', '--data', join(base, 'file', 'data')]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /cannot be written \(ENOTDIR\)/);
  await rm(base, { recursive: true });
});

test('commands without a data directory or with a wrong one fail with a usage hint', async () => {
  const r = await runCli(['user', 'list'], { env: { FACTEUR_DATA: '' } });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /--data DIR or set FACTEUR_DATA/);
  const r2 = await runCli(['user', 'list', '--data', await tempDir()]);
  assert.equal(r2.code, 1);
  assert.match(r2.stderr, /not a Facteur data directory/);
  const r3 = await runCli(['frobnicate']);
  assert.equal(r3.code, 2);
});

test('serve exits non-zero naming the listener when its port is in use, and stops cleanly on SIGTERM', async () => {
  const dir = join(await tempDir(), 'data');
  assert.equal((await runCli(['init', '--domain', 'example.test', '--dev', '--data', dir])).code, 0);
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  const port = (blocker.address() as { port: number }).port;
  const r = await runCli(['serve', '--only', '--listen', `imap=127.0.0.1:${port}`, '--data', dir]);
  blocker.close();
  assert.equal(r.code, 1);
  assert.match(r.stderr, new RegExp(`Cannot listen for imap on 127\\.0\\.0\\.1:${port}: the port is in use`));
  const srv = await startServe(['serve', '--only', '--listen', 'imap=127.0.0.1:0', '--listen', 'smtp=127.0.0.1:0', '--data', dir]);
  assert.ok(srv.ports.imap! > 0);
  assert.ok(srv.ports.smtp! > 0);
  assert.equal(await srv.stop('SIGTERM'), 0);
});

test('init and domain add create DKIM keys; dkim rotate adds keys and prints their records; dkim list shows them', async () => {
  const dir = join(await tempDir(), 'data');
  assert.equal((await runCli(['init', '--domain', 'example.test', '--data', dir])).code, 0);
  const listed = await runCli(['dkim', 'list', '--data', dir]);
  assert.equal(listed.code, 0, listed.stderr);
  const records = listed.stdout.trim().split('\n');
  assert.equal(records.length, 2);
  assert.match(listed.stdout, /\._domainkey\.example\.test\. IN TXT "v=DKIM1; k=rsa; p=/);
  assert.match(listed.stdout, /\._domainkey\.example\.test\. IN TXT "v=DKIM1; k=ed25519; p=/);
  for (const line of records) for (const chunk of line.match(/"[^"]*"/g) ?? []) assert.ok(chunk.length - 2 <= 255);
  const added = await runCli(['domain', 'add', 'example.org', '--data', dir]);
  assert.equal(added.code, 0, added.stderr);
  assert.match(added.stdout, /_domainkey\.example\.org\. IN TXT/);
  const rotated = await runCli(['dkim', 'rotate', 'example.test', '--data', dir]);
  assert.equal(rotated.code, 0, rotated.stderr);
  assert.match(rotated.stdout, /48 hours/);
  assert.equal((await runCli(['dkim', 'list', 'example.test', '--data', dir])).stdout.trim().split('\n').length, 4);
  assert.equal((await runCli(['dkim', 'rotate', 'elsewhere.test', '--data', dir])).code, 1);
});

test('queue list on an empty queue, and actions on an unknown id, answer without harm', async () => {
  const dir = join(await tempDir(), 'data');
  assert.equal((await runCli(['init', '--domain', 'example.test', '--data', dir])).code, 0);
  const list = await runCli(['queue', 'list', '--data', dir]);
  assert.equal(list.code, 0, list.stderr);
  const show = await runCli(['queue', 'show', 'nope', '--data', dir]);
  assert.equal(show.code, 1);
  assert.match(show.stderr, /No queued message nope/);
  const drop = await runCli(['queue', 'drop', 'nope', '--data', dir]);
  assert.equal(drop.code, 1);
  assert.match(drop.stdout, /drop: 0 changed/);
});

test('--password-stdin drops one final line break and refuses an empty input, for user add and import alike', async () => {
  const dir = join(await tempDir(), 'data');
  assert.equal((await runCli(['init', '--domain', 'example.test', '--data', dir])).code, 0);
  for (const input of ['', '\n', '\r\n']) {
    const add = await runCli(['user', 'add', 'dora@example.test', '--password-stdin', '--data', dir], { input });
    assert.equal(add.code, 1, JSON.stringify(input));
    assert.match(add.stderr, /Empty password on standard input/);
    // The secret is read before any connection is tried (port 1 is never reached).
    const imp = await runCli(['import', 'imap', 'dora@example.test', 'imap://dora@127.0.0.1:1', '--password-stdin', '--data', dir], { input });
    assert.equal(imp.code, 1, JSON.stringify(input));
    assert.match(imp.stderr, /Empty password on standard input/);
  }
  // A password with spaces and a CRLF ending is taken; passwd reads standard input the same way.
  const add = await runCli(['user', 'add', 'dora@example.test', '--password-stdin', '--data', dir], { input: 'two words here\r\n' });
  assert.equal(add.code, 0, add.stderr);
  assert.equal((await runCli(['user', 'passwd', 'dora@example.test', '--password-stdin', '--data', dir], { input: 'short\n' })).code, 1);
});
