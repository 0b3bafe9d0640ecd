/**
 * The newcomer's path: `facteur demo` creates a data directory with a demo account and serves;
 * mail sent over SMTP is read over IMAP and POP3 from the same store.
 */
import { strict as assert } from 'node:assert';
import { mkdtemp, readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ImapFlow } from 'imapflow';
import nodemailer from 'nodemailer';
import { startServe } from '../helpers/cli.js';

const ALL_ON_PORT_0 = ['smtp', 'submission', 'imap', 'pop3', 'imaps', 'pop3s', 'submissions', 'http', 'https'].flatMap((n) => ['--listen', `${n}=127.0.0.1:0`]);

/** Minimal POP3 exchange over a raw socket: sends each command, collects each reply. */
async function pop3(port: number, commands: string[]): Promise<string[]> {
  const sock = connect(port, '127.0.0.1');
  let buf = '';
  const replies: string[] = [];
  const waitFor = (multi: boolean) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const end = multi ? buf.indexOf('\r\n.\r\n') : buf.indexOf('\r\n');
        const first = buf.indexOf('\r\n');
        if (first >= 0 && buf.startsWith('-ERR')) {
          const r = buf.slice(0, first);
          buf = buf.slice(first + 2);
          sock.off('data', onData);
          return resolve(r);
        }
        if (end >= 0) {
          const len = multi ? end + 5 : end + 2;
          const r = buf.slice(0, len);
          buf = buf.slice(len);
          sock.off('data', onData);
          resolve(r);
        }
      };
      const onData = (d: Buffer) => { buf += d.toString('latin1'); check(); };
      sock.on('data', onData);
      sock.once('error', reject);
      check();
    });
  replies.push(await waitFor(false));
  for (const c of commands) {
    sock.write(`${c}\r\n`);
    replies.push(await waitFor(/^(RETR|LIST$|UIDL$|TOP|CAPA)/.test(c)));
  }
  sock.end();
  return replies;
}

test('a demo server receives mail over SMTP that IMAP and POP3 then read from one store', async (t) => {
  const data = join(await mkdtemp(join(tmpdir(), 'facteur-demo-')), 'data');
  const srv = await startServe(['demo', '--data', data, ...ALL_ON_PORT_0]);
  t.after(() => srv.stop());
  const [user, password] = (await readFile(join(data, 'demo-account.txt'), 'utf8')).trim().split(' ') as [string, string];
  assert.equal(user, 'demo@example.test');
  assert.match(srv.stderr(), new RegExp(`password: ${password}`));

  const mx = nodemailer.createTransport({ host: '127.0.0.1', port: srv.ports.smtp!, secure: false, ignoreTLS: true });
  const sent = await mx.sendMail({ from: 'friend@remote.test', to: user, subject: 'Hello from the internet', text: 'First message.' });
  assert.match(sent.response, /^250/);

  const imap = new ImapFlow({ host: '127.0.0.1', port: srv.ports.imap!, secure: false, auth: { user, pass: password }, logger: false, tls: { rejectUnauthorized: false } });
  await imap.connect();
  const lock = await imap.getMailboxLock('INBOX');
  try {
    const msgs = [];
    for await (const m of imap.fetch('1:*', { envelope: true, flags: true, uid: true })) msgs.push(m);
    assert.equal(msgs.length, 1);
    assert.equal(msgs[0]!.envelope?.subject, 'Hello from the internet');
    assert.ok(!msgs[0]!.flags?.has('\\Seen'));
  } finally {
    lock.release();
  }

  const replies = await pop3(srv.ports.pop3!, [`USER ${user}`, `PASS ${password}`, 'STAT', 'RETR 1', 'QUIT']);
  assert.match(replies[3]!, /^\+OK 1 \d+/);
  assert.match(replies[4]!, /Subject: Hello from the internet/);
  assert.match(replies[4]!, /First message\./);

  // RETR set \Seen, and IMAP sees it (DESIGN.md: one store, one change log).
  const status = await imap.status('INBOX', { messages: true, unseen: true });
  assert.ok(status);
  assert.equal(status.messages, 1);
  assert.equal(status.unseen, 0);
  await imap.logout();
});
