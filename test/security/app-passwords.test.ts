/**
 * App passwords and the TOTP second factor through the real IMAP, POP3 and submission servers,
 * with real clients (imapflow, nodemailer) and raw transcripts: an app password logs in on each
 * protocol and each password command; a revoked one does not; an account with TOTP is refused
 * its main password everywhere (also over SCRAM-SHA-256) with the very answer a wrong password
 * gets, while its app passwords work; the list shows the last use.
 */
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { ImapFlow } from 'imapflow';
import nodemailer from 'nodemailer';
import { generateAppPassword, hashAppPassword } from '../../src/auth/app-password.js';
import { generateTotpSecret } from '../../src/auth/totp.js';
import { scramClient } from '../sasl/scram-client.js';
import { PASSWORD, startServers, USER, type ServerSet } from './servers.js';

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');

async function addApp(s: ServerSet, name: string): Promise<string> {
  const secret = generateAppPassword();
  await s.ctx.store.addAppPassword(s.alice.id, { name, hash: hashAppPassword(secret)! });
  return secret;
}

/** The client's side of every answer, so that two refusals can be compared word for word. */
interface Answers {
  imapLogin: string;
  imapPlain: string;
  pop3Pass: string;
  pop3Plain: string;
  smtpPlain: string;
  smtpLogin: string;
}

/** Tries the password with every password command of the three protocols (from 127.0.0.1: the
 * same host, so plaintext logins are allowed without TLS). Tags are fixed so answers compare. */
async function tryEverywhere(s: ServerSet, password: string): Promise<Answers> {
  const i = await s.imap();
  i.send(`a1 LOGIN "${USER}" "${password}"`);
  const imapLogin = await i.readLine();
  i.send(`a2 AUTHENTICATE PLAIN ${b64(`\0${USER}\0${password}`)}`);
  const imapPlain = await i.readLine();
  i.close();
  const p = await s.pop3();
  const pop3Pass = await p.login(USER, password);
  const pop3Plain = pop3Pass.startsWith('+OK') ? '(logged in already)' : await p.command(`AUTH PLAIN ${b64(`\0${USER}\0${password}`)}`);
  p.destroy();
  const c = await s.submission();
  await c.cmd('EHLO client.example.net', 250);
  const plain = await c.cmd(`AUTH PLAIN ${b64(`\0${USER}\0${password}`)}`);
  let login = '(logged in already)';
  if (plain.code !== 235) {
    await c.cmd('AUTH LOGIN', 334);
    await c.cmd(b64(USER), 334);
    const r = await c.cmd(b64(password));
    login = `${r.code} ${r.text}`;
  }
  c.close();
  return { imapLogin, imapPlain, pop3Pass, pop3Plain, smtpPlain: `${plain.code} ${plain.text}`, smtpLogin: login };
}

function imapFlow(s: ServerSet, pass: string): ImapFlow {
  return new ImapFlow({
    host: '127.0.0.1',
    port: s.ports.imap,
    secure: false,
    tls: { rejectUnauthorized: false },
    auth: { user: USER, pass },
    logger: false,
  });
}

function mailer(s: ServerSet, pass: string, method: 'PLAIN' | 'LOGIN') {
  return nodemailer.createTransport({
    host: '127.0.0.1',
    port: s.ports.submission,
    secure: false,
    tls: { rejectUnauthorized: false },
    auth: { user: USER, pass, method },
  });
}

test('an app password logs in with imapflow, POP3 USER/PASS and nodemailer (PLAIN and LOGIN); the list shows its last use; once revoked it fails everywhere', async () => {
  const s = await startServers({ auth: { maxFailuresPerAccount: 100 } });
  try {
    const phone = await addApp(s, 'Phone');
    await addApp(s, 'Laptop');
    const flow = imapFlow(s, phone);
    await flow.connect();
    const box = await flow.mailboxOpen('INBOX');
    assert.equal(box.path, 'INBOX');
    await flow.logout();
    const used = (await s.ctx.store.listAppPasswords(s.alice.id)).find((p) => p.name === 'Phone')?.lastUsed;
    assert.equal(used?.protocol, 'imap');
    assert.match(used?.ip ?? '', /127\.0\.0\.1$/);
    assert.equal((await s.ctx.store.listAppPasswords(s.alice.id)).find((p) => p.name === 'Laptop')?.lastUsed, null);

    const p = await s.pop3();
    assert.match(await p.login(USER, phone), /^\+OK/);
    assert.match(await p.command('STAT'), /^\+OK 0 0/);
    assert.match(await p.command('QUIT'), /^\+OK/);
    p.destroy();
    for (const method of ['PLAIN', 'LOGIN'] as const) {
      const transport = mailer(s, phone, method);
      assert.equal(await transport.verify(), true, method);
      transport.close();
    }
    const sent = mailer(s, phone, 'PLAIN');
    await sent.sendMail({ from: USER, to: USER, subject: 'sent with an app password', text: 'hello' });
    sent.close();
    assert.equal((await s.messages()).length, 1);

    await s.ctx.store.removeAppPassword(s.alice.id, 'Phone');
    const after = await tryEverywhere(s, phone);
    assert.match(after.imapLogin, /^a1 NO /);
    assert.match(after.imapPlain, /^a2 NO /);
    assert.match(after.pop3Pass, /^-ERR/);
    assert.match(after.pop3Plain, /^-ERR/);
    assert.match(after.smtpPlain, /^535 /);
    assert.match(after.smtpLogin, /^535 /);
    await assert.rejects(imapFlow(s, phone).connect());
  } finally {
    await s.close();
  }
});

test('with TOTP enabled the main password fails on IMAP, POP3 and SMTP with the same answers as a wrong password; app passwords still work', async () => {
  const s = await startServers({ auth: { maxFailuresPerAccount: 100 } });
  try {
    const phone = await addApp(s, 'Phone');
    // Before TOTP the main password works everywhere.
    const before = await tryEverywhere(s, PASSWORD);
    assert.match(before.imapLogin, /^a1 OK /);
    assert.match(before.pop3Pass, /^\+OK/);
    assert.match(before.smtpPlain, /^235 /);

    await s.ctx.store.updateAccount(s.alice.id, { totpSecret: generateTotpSecret(), totpLastStep: null });
    const main = await tryEverywhere(s, PASSWORD);
    const wrong = await tryEverywhere(s, 'not the password at all');
    assert.deepEqual(main, wrong);
    assert.match(main.imapLogin, /^a1 NO \[AUTHENTICATIONFAILED\]/);
    assert.match(main.pop3Pass, /^-ERR/);
    assert.match(main.smtpPlain, /^535 5\.7\.8/);
    assert.match(main.smtpLogin, /^535 5\.7\.8/);

    const app = await tryEverywhere(s, phone);
    assert.match(app.imapLogin, /^a1 OK /);
    assert.match(app.pop3Pass, /^\+OK/);
    assert.match(app.smtpPlain, /^235 /);
    const flow = imapFlow(s, phone);
    await flow.connect();
    await flow.logout();
    await assert.rejects(imapFlow(s, PASSWORD).connect());
  } finally {
    await s.close();
  }
});

test('SCRAM-SHA-256 stays bound to the main password: it works without TOTP and fails like a wrong password with TOTP', async () => {
  const s = await startServers({ auth: { maxFailuresPerAccount: 100 } });
  async function scram(tag: string, password: string): Promise<string> {
    const i = await s.imap();
    const client = scramClient(USER, password);
    i.send(`${tag} AUTHENTICATE SCRAM-SHA-256 ${b64(client.clientFirst)}`);
    const serverFirst = Buffer.from((await i.expect(/^\+ /)).slice(2), 'base64');
    i.send(b64(client.final(serverFirst)));
    let line = await i.readLine();
    // A success sends the server signature as a last challenge first.
    if (line.startsWith('+ ')) {
      i.send('');
      line = await i.readLine();
    }
    i.close();
    return line;
  }
  try {
    // The first password login derives the verifier.
    (await s.imapLogin()).close();
    assert.match(await scram('s1', PASSWORD), /^s1 OK /);
    await s.ctx.store.updateAccount(s.alice.id, { totpSecret: generateTotpSecret(), totpLastStep: null });
    const main = await scram('s2', PASSWORD);
    assert.match(main, /^s2 NO /);
    assert.equal(main, await scram('s2', 'a wrong password'));
  } finally {
    await s.close();
  }
});
