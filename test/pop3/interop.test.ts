/**
 * Interoperability with real POP3 clients from Debian: fetchmail (keep + UIDL, then delete) and
 * getmail6. Each test is skipped, with the reason, only when its binary is not installed
 * (apt-get install fetchmail getmail6).
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { execFile, spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPop3, USER, PASSWORD, type Pop3Fixture } from './pop3-client.js';

function installed(binary: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${binary}`]).status === 0;
}

const FETCHMAIL = installed('fetchmail');
const GETMAIL = installed('getmail');

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env: { ...process.env, ...env }, timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

async function deliverThree(f: Pop3Fixture): Promise<string[]> {
  const subjects = ['interop one', 'interop two', 'interop three'];
  // A line starting with a dot checks the client's un-stuffing too.
  for (const s of subjects) await f.deliver({ subject: s, body: `Body of ${s}\r\n.a line with a leading dot\r\n` });
  return subjects;
}

test(
  'fetchmail in keep+UIDL mode fetches each message once; in delete mode the messages are gone for IMAP too',
  { skip: FETCHMAIL ? false : 'fetchmail is not installed (apt-get install fetchmail)' },
  async () => {
    const f = await startPop3();
    const dir = await mkdtemp(join(tmpdir(), 'facteur-fetchmail-'));
    try {
      const subjects = await deliverThree(f);
      const out = join(dir, 'out');
      await mkdir(out);
      const rc = join(dir, 'fetchmailrc');
      // The MDA writes each message to its own file; sslproto '' keeps fetchmail from trying STLS
      // against the test's self-signed certificate (the client is on the same host, so USER/PASS
      // is allowed in clear).
      const mda = `/bin/sh -c 'cat > ${out}/msg.$$$$'`;
      const rcText = (keep: boolean): string =>
        [
          'set no syslog',
          `poll 127.0.0.1 with proto POP3 port ${f.port} and uidl timeout 20`,
          `  user "${USER}" there with password "${PASSWORD}" is "local" here`,
          `  options ${keep ? 'keep' : 'nokeep fetchall'} sslproto '' mda "${mda.replace(/"/g, '\\"')}"`,
          '',
        ].join('\n');
      const env = { FETCHMAILHOME: dir, HOME: dir };
      const args = ['-f', rc, '--idfile', join(dir, 'fetchids'), '--nodetach', '--nosyslog', '-v'];

      await writeFile(rc, rcText(true));
      await chmod(rc, 0o600);
      const first = await run('fetchmail', args, env);
      assert.equal(first.code, 0, `first run failed:\n${first.stdout}\n${first.stderr}`);
      const files = await readdir(out);
      assert.equal(files.length, 3, first.stdout);
      const texts = await Promise.all(files.map((n) => readFile(join(out, n), 'latin1')));
      for (const s of subjects) assert.ok(texts.some((t) => t.includes(`Subject: ${s}`)), s);
      for (const t of texts) assert.match(t, /\n\.a line with a leading dot\r?\n/);

      // Second run: the UIDL list says every message is old, so nothing is fetched (exit 1:
      // "no mail").
      const second = await run('fetchmail', args, env);
      assert.equal(second.code, 1, `second run:\n${second.stdout}\n${second.stderr}`);
      assert.equal((await readdir(out)).length, 3);
      assert.equal((await f.entries()).length, 3, 'keep mode removed messages');

      // Delete mode: everything is fetched again and deleted; IMAP's INBOX is empty after QUIT.
      await writeFile(rc, rcText(false));
      const third = await run('fetchmail', args, env);
      assert.equal(third.code, 0, `delete run failed:\n${third.stdout}\n${third.stderr}`);
      assert.equal((await readdir(out)).length, 6);
      assert.deepEqual(await f.entries(), []);
      const counts = await f.ctx.store.mailboxCounts(f.inbox);
      assert.equal(counts.messages, 0);
    } finally {
      await f.close();
      await rm(dir, { recursive: true, force: true });
    }
  },
);

test(
  'getmail6 fetches new messages only once over POP3 with UIDL, and leaves them on the server',
  { skip: GETMAIL ? false : 'getmail6 is not installed (apt-get install getmail6)' },
  async () => {
    const f = await startPop3();
    const dir = await mkdtemp(join(tmpdir(), 'facteur-getmail-'));
    try {
      const subjects = await deliverThree(f);
      const maildir = join(dir, 'Maildir');
      for (const sub of ['cur', 'new', 'tmp']) await mkdir(join(maildir, sub), { recursive: true });
      const rc = join(dir, 'getmailrc');
      await writeFile(
        rc,
        [
          '[retriever]',
          'type = SimplePOP3Retriever',
          'server = 127.0.0.1',
          `port = ${f.port}`,
          `username = ${USER}`,
          `password = ${PASSWORD}`,
          '',
          // An external MDA writing one file per message: getmail's Maildir destination refuses
          // to run as root, which test containers often are.
          '[destination]',
          'type = MDA_external',
          'path = /bin/sh',
          `arguments = ("-c", "cat > ${maildir}/new/msg.$$$$")`,
          'allow_root_commands = true',
          '',
          '[options]',
          'delete = false',
          'read_all = false',
          'verbose = 1',
          '',
        ].join('\n'),
      );
      const args = ['--getmaildir', dir, '--rcfile', rc];
      const first = await run('getmail', args, { HOME: dir });
      assert.equal(first.code, 0, `first run failed:\n${first.stdout}\n${first.stderr}`);
      const got = await readdir(join(maildir, 'new'));
      assert.equal(got.length, 3, first.stdout);
      const texts = await Promise.all(got.map((n) => readFile(join(maildir, 'new', n), 'latin1')));
      for (const s of subjects) assert.ok(texts.some((t) => t.includes(`Subject: ${s}`)), s);

      await f.deliver({ subject: 'arrived later' });
      const second = await run('getmail', args, { HOME: dir });
      assert.equal(second.code, 0, `second run failed:\n${second.stdout}\n${second.stderr}`);
      const after = await readdir(join(maildir, 'new'));
      assert.equal(after.length, 4, second.stdout);
      assert.equal((await f.entries()).length, 4);
    } finally {
      await f.close();
      await rm(dir, { recursive: true, force: true });
    }
  },
);
