import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import nodemailer from 'nodemailer';
import { makeMessage } from '../helpers/messages.js';
import { connectSmtp, openTransaction } from './wire.js';
import { dotStuff, startServer } from './harness.js';

const FROM = 'sender@example.net';

test('nodemailer delivers a message over SMTP and it is stored in INBOX with trace fields', async () => {
  const h = await startServer();
  try {
    const bob = await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: h.port, secure: false, ignoreTLS: true, name: 'client.example.net' });
    const info = await transport.sendMail({ from: FROM, to: 'bob@example.com', subject: 'Hello', text: 'Hi Bob' });
    assert.match(info.response, /^250 2\.0\.0 /);
    const msgs = await h.messages(bob.id);
    assert.equal(msgs.length, 1);
    const text = msgs[0]!.toString();
    assert.match(text, /^Return-Path: <sender@example\.net>\r\n/);
    assert.match(text, /Received: from client\.example\.net \(\[127\.0\.0\.1\]\)\r\n\tby mail\.example\.test \(Facteur\) with ESMTP id [0-9a-f]+\r\n\tfor <bob@example\.com>; /);
    assert.match(text, /Subject: Hello/);
    assert.match(text, /Hi Bob/);
  } finally {
    await h.close();
  }
});

test('an IDN greeting goes into Received as A-labels when the message is not SMTPUTF8, as given when it is', async () => {
  const h = await startServer();
  try {
    const bob = await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    for (const utf8 of [false, true]) {
      const c = await connectSmtp(h.port);
      await c.expect(220);
      c.write(Buffer.from('EHLO bücher.example\r\n', 'utf8'));
      await c.expect(250);
      await c.cmd(`MAIL FROM:<${FROM}>${utf8 ? ' SMTPUTF8' : ''}`, 250);
      await c.cmd('RCPT TO:<bob@example.com>', 250);
      await c.cmd('DATA', 354);
      c.write(dotStuff('Subject: idn\r\n\r\nhello\r\n'));
      await c.expect(250);
      c.close();
    }
    const [plain, utf8] = (await h.messages(bob.id)).map((m) => m.toString('utf8'));
    assert.match(plain!, /Received: from xn--bcher-kva\.example \(/);
    assert.match(utf8!, /Received: from bücher\.example \(/);
  } finally {
    await h.close();
  }
});

test('EHLO advertises the extensions, greeting and EHLO use the host name', async () => {
  const h = await startServer({ limits: { maxMessageSize: 1234567 } });
  try {
    const c = await connectSmtp(h.port);
    const g = await c.expect(220);
    assert.match(g.text, /^mail\.example\.test ESMTP/);
    const e = await c.cmd('EHLO client.example.net', 250);
    assert.equal(e.lines[0], 'mail.example.test');
    for (const ext of ['PIPELINING', 'SIZE 1234567', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES', 'DSN', 'CHUNKING', 'STARTTLS']) {
      assert.ok(e.lines.includes(ext), `missing ${ext}: ${e.text}`);
    }
    assert.ok(!e.lines.some((l) => l.startsWith('AUTH')), 'no AUTH on port 25');
    await c.cmd('QUIT', 221);
    await c.closed();
  } finally {
    await h.close();
  }
});

test('unknown local user is refused with 550 5.1.1', async () => {
  const h = await startServer();
  try {
    await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const c = await openTransaction(h.port, FROM, []);
    const r = await c.cmd('RCPT TO:<nobody@example.com>', 550);
    assert.match(r.text, /^5\.1\.1 /);
    c.close();
  } finally {
    await h.close();
  }
});

test('relay is denied for non-local domains whatever the address tricks', async () => {
  const h = await startServer({ limits: { maxErrors: 50 } });
  try {
    await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const c = await openTransaction(h.port, FROM, []);
    const refused = [
      'victim@remote.example', // plain remote
      'VICTIM@REMOTE.EXAMPLE', // case
      '@example.com:victim@remote.example', // source route through a local domain
      '@example.com,@other.example:victim@remote.example',
      'victim@[192.0.2.1]', // IP literal
      'victim@[127.0.0.1]',
      'victim@[IPv6:::1]',
    ];
    for (const addr of refused) {
      const r = await c.cmd(`RCPT TO:<${addr}>`);
      assert.equal(r.code, 554, `${addr}: ${r.code} ${r.text}`);
      assert.match(r.text, /^5\.7\.1 /);
    }
    // Tricks that keep the domain local are local parts here: never relayed, unknown users.
    for (const addr of ['victim%remote.example@example.com', '"victim@remote.example"@example.com', 'remote.example!victim@example.com']) {
      const r = await c.cmd(`RCPT TO:<${addr}>`);
      assert.equal(r.code, 550, `${addr}: ${r.code} ${r.text}`);
    }
    // A trailing dot is not in the Domain grammar: a syntax error, never a relay.
    const r = await c.cmd('RCPT TO:<victim@remote.example.>');
    assert.equal(r.code, 501);
    c.close();
  } finally {
    await h.close();
  }
});

test('a source route to a local mailbox is ignored and the mail is delivered', async () => {
  const h = await startServer();
  try {
    const bob = await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const c = await openTransaction(h.port, FROM, ['@relay.example:Bob@EXAMPLE.com']);
    await c.cmd('DATA', 354);
    c.write(dotStuff(makeMessage({ from: FROM, to: 'bob@example.com', subject: 'routed', body: 'x' })));
    await c.expect(250);
    assert.equal((await h.messages(bob.id)).length, 1);
    c.close();
  } finally {
    await h.close();
  }
});

test('aliases, catch-all and plus-addressing reach accounts; an account reached twice gets one copy', async () => {
  const h = await startServer();
  try {
    const bob = await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const carol = await h.ctx.addUser('carol@example.com', 'pw-carol-123456');
    await h.ctx.store.addAlias('team@example.com', 'bob@example.com');
    await h.ctx.store.addAlias('team2@example.com', 'bob@example.com');
    await h.ctx.store.addAlias('@example.com', 'carol@example.com');
    const c = await openTransaction(h.port, FROM, ['team@example.com', 'bob+news@example.com', 'team2@example.com', 'whoever@example.com']);
    await c.cmd('DATA', 354);
    c.write(dotStuff(makeMessage({ from: FROM, to: 'team@example.com', subject: 'once', body: 'x' })));
    await c.expect(250);
    assert.equal((await h.messages(bob.id)).length, 1, 'bob has one copy');
    assert.equal((await h.messages(carol.id)).length, 1, 'catch-all reached carol');
    c.close();
  } finally {
    await h.close();
  }
});

test('an account over quota is refused at RCPT with 452 4.2.2', async () => {
  const h = await startServer();
  try {
    const bob = await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    await h.ctx.store.updateAccount(bob.id, { quotaMessages: 1 });
    const c = await openTransaction(h.port, FROM, ['bob@example.com']);
    await c.cmd('DATA', 354);
    c.write(dotStuff(makeMessage({ from: FROM, to: 'bob@example.com', subject: 'first', body: 'x' })));
    await c.expect(250);
    await c.cmd(`MAIL FROM:<${FROM}>`, 250);
    const r = await c.cmd('RCPT TO:<bob@example.com>', 452);
    assert.match(r.text, /^4\.2\.2 /);
    c.close();
  } finally {
    await h.close();
  }
});

test('SIZE over the limit is refused at MAIL FROM and a larger message while streaming, with 552 5.3.4', async () => {
  const h = await startServer({ limits: { maxMessageSize: 2000 } });
  try {
    const bob = await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const c = await connectSmtp(h.port);
    await c.expect(220);
    await c.cmd('EHLO client.example.net', 250);
    const r1 = await c.cmd(`MAIL FROM:<${FROM}> SIZE=2001`, 552);
    assert.match(r1.text, /^5\.3\.4 /);
    await c.cmd(`MAIL FROM:<${FROM}> SIZE=100`, 250);
    await c.cmd('RCPT TO:<bob@example.com>', 250);
    await c.cmd('DATA', 354);
    c.write(dotStuff(makeMessage({ from: FROM, to: 'bob@example.com', subject: 'big', body: 'y'.repeat(70) + '\r\n'.repeat(1) + ('z'.repeat(70) + '\r\n').repeat(40) })));
    const r2 = await c.expect(552);
    assert.match(r2.text, /^5\.3\.4 /);
    // The session is still in sync and usable.
    await c.cmd('NOOP', 250);
    assert.equal((await h.messages(bob.id)).length, 0);
    c.close();
  } finally {
    await h.close();
  }
});

test('more than the recipient limit is refused with 452 4.5.3', async () => {
  const h = await startServer({ limits: { maxRecipients: 3 } });
  try {
    await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const c = await openTransaction(h.port, FROM, ['bob@example.com', 'bob+1@example.com', 'bob+2@example.com']);
    const r = await c.cmd('RCPT TO:<bob+3@example.com>', 452);
    assert.match(r.text, /^4\.5\.3 /);
    c.close();
  } finally {
    await h.close();
  }
});

test('too many errors end the session with 421', async () => {
  const h = await startServer({ limits: { maxErrors: 3 } });
  try {
    const c = await connectSmtp(h.port);
    await c.expect(220);
    await c.cmd('EHLO client.example.net', 250);
    await c.cmd('BOGUS', 500);
    await c.cmd('MAIL FROM:bad', 501);
    c.write('RCPT TO:<x@example.com>\r\n');
    await c.expect(503);
    await c.expect(421);
    await c.closed();
  } finally {
    await h.close();
  }
});

test('command lines over the limit get 500 5.5.2 and the session continues', async () => {
  const h = await startServer();
  try {
    const c = await connectSmtp(h.port);
    await c.expect(220);
    c.write(`NOOP ${'a'.repeat(5000)}\r\n`);
    const r = await c.expect(500);
    assert.match(r.text, /^5\.5\.2 Line too long/);
    await c.cmd('NOOP', 250);
    c.close();
  } finally {
    await h.close();
  }
});

test('pipelined commands are answered in order in one batch', async () => {
  const h = await startServer();
  try {
    const bob = await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const c = await connectSmtp(h.port);
    await c.expect(220);
    await c.cmd('EHLO client.example.net', 250);
    const msg = makeMessage({ from: FROM, to: 'bob@example.com', subject: 'pipelined', body: 'x' });
    c.write(`MAIL FROM:<${FROM}>\r\nRCPT TO:<bob@example.com>\r\nRCPT TO:<nobody@example.com>\r\nDATA\r\n`);
    await c.expect(250);
    await c.expect(250);
    await c.expect(550);
    await c.expect(354);
    c.write(`${dotStuff(msg)}MAIL FROM:<${FROM}>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n${dotStuff(msg)}QUIT\r\n`);
    await c.expect(250);
    await c.expect(250);
    await c.expect(250);
    await c.expect(354);
    await c.expect(250);
    await c.expect(221);
    await c.closed();
    assert.equal((await h.messages(bob.id)).length, 2);
  } finally {
    await h.close();
  }
});

test('BDAT chunks (RFC 3030) deliver one message, and a refused BDAT still consumes its octets', async () => {
  const h = await startServer();
  try {
    const bob = await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const c = await connectSmtp(h.port);
    await c.expect(220);
    await c.cmd('EHLO client.example.net', 250);
    // Without a transaction: 503, and the 5 octets are not read as a command.
    c.write('BDAT 5\r\nNOOP\n');
    await c.expect(503);
    await c.cmd(`MAIL FROM:<${FROM}>`, 250);
    await c.cmd('RCPT TO:<bob@example.com>', 250);
    const msg = makeMessage({ from: FROM, to: 'bob@example.com', subject: 'chunks', body: '.leading dot kept\r\nline2\r\n' });
    const a = msg.subarray(0, 100);
    const b = msg.subarray(100);
    c.write(Buffer.concat([Buffer.from(`BDAT ${a.length}\r\n`), a]));
    await c.expect(250);
    c.write(Buffer.concat([Buffer.from(`BDAT ${b.length} LAST\r\n`), b]));
    await c.expect(250);
    const msgs = await h.messages(bob.id);
    assert.equal(msgs.length, 1);
    assert.ok(msgs[0]!.toString().endsWith(msg.toString()), 'content unchanged, no dot-unstuffing in BDAT');
    await c.cmd('DATA', 503);
    c.close();
  } finally {
    await h.close();
  }
});

test('SMTP smuggling: bare LF or bare CR around a dot never ends the message nor starts a second one', async () => {
  const h = await startServer();
  try {
    const bob = await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    await h.ctx.addUser('victim@example.com', 'pw-victim-123456');
    const smuggled = `MAIL FROM:<admin@example.com>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n`;
    for (const sep of ['\n.\n', '\n.\r\n', '\r\n.\n', '\r.\r\n', '\r\n.\r', '\r.\r', '\n.\r']) {
      const c = await openTransaction(h.port, FROM, ['bob@example.com']);
      await c.cmd('DATA', 354);
      c.write(`Subject: carrier\r\n\r\nbody${sep}${smuggled}\r\n.\r\n`);
      const r = await c.expect(250);
      assert.match(r.text, /^2\.0\.0/);
      await c.cmd('NOOP', 250);
      c.close();
    }
    const victim = await h.ctx.store.getAccountByAddress('victim@example.com');
    assert.equal((await h.messages(victim!.id)).length, 0, 'no smuggled second message');
    const msgs = await h.messages(bob.id);
    assert.equal(msgs.length, 7);
    for (const m of msgs) {
      assert.match(m.toString(), /MAIL FROM:<admin@example\.com>/, 'the smuggled text stayed inside the first message');
      assert.ok(!/[^\r]\n/.test(m.toString()) && !/\r[^\n]/.test(m.toString()), 'line endings normalised to CRLF');
    }
  } finally {
    await h.close();
  }
});

test('commands pipelined behind STARTTLS are discarded (CVE-2011-0411)', async () => {
  const h = await startServer();
  try {
    const bob = await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const c = await connectSmtp(h.port);
    await c.expect(220);
    await c.cmd('EHLO client.example.net', 250);
    c.write(`STARTTLS\r\nMAIL FROM:<${FROM}>\r\nRCPT TO:<bob@example.com>\r\n`);
    await c.expect(220);
    await c.upgrade();
    // The injected MAIL did not survive: RCPT needs MAIL, and EHLO is needed again.
    await c.cmd('RCPT TO:<bob@example.com>', 503);
    await c.cmd(`MAIL FROM:<${FROM}>`, 503);
    const e = await c.cmd('EHLO client.example.net', 250);
    assert.ok(!e.lines.includes('STARTTLS'));
    await c.cmd(`MAIL FROM:<${FROM}>`, 250);
    await c.cmd('RCPT TO:<bob@example.com>', 250);
    await c.cmd('DATA', 354);
    c.write(dotStuff(makeMessage({ from: FROM, to: 'bob@example.com', subject: 'tls', body: 'x' })));
    await c.expect(250);
    const [m] = await h.messages(bob.id);
    assert.match(m!.toString(), /with ESMTPS id [0-9a-f]+\r\n\t\(version=TLSv1\.[23] cipher=[A-Z0-9_-]+\)/);
    c.close();
  } finally {
    await h.close();
  }
});

test('NUL octets and 8-bit headers without SMTPUTF8 are refused; with SMTPUTF8 the header is accepted', async () => {
  const h = await startServer();
  try {
    const bob = await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const c = await openTransaction(h.port, FROM, ['bob@example.com']);
    await c.cmd('DATA', 354);
    c.write('Subject: nul\r\n\r\nbad\0byte\r\n.\r\n');
    const r1 = await c.expect(554);
    assert.match(r1.text, /^5\.6\.0 /);
    await c.cmd(`MAIL FROM:<${FROM}>`, 250);
    await c.cmd('RCPT TO:<bob@example.com>', 250);
    await c.cmd('DATA', 354);
    c.write(Buffer.concat([Buffer.from('Subject: '), Buffer.from('Grüße', 'utf8'), Buffer.from('\r\n\r\nbody\r\n.\r\n')]));
    const r2 = await c.expect(550);
    assert.match(r2.text, /^5\.6\.7 /);
    await c.cmd(`MAIL FROM:<${FROM}> SMTPUTF8`, 250);
    c.write(Buffer.from('RCPT TO:<bob@example.com>\r\nDATA\r\n'));
    await c.expect(250);
    await c.expect(354);
    c.write(Buffer.concat([Buffer.from('Subject: '), Buffer.from('Grüße', 'utf8'), Buffer.from('\r\n\r\nbody\r\n.\r\n')]));
    await c.expect(250);
    assert.equal((await h.messages(bob.id)).length, 1);
    c.close();
  } finally {
    await h.close();
  }
});

test('invalid addresses are refused with 501 and a UTF-8 address needs SMTPUTF8', async () => {
  const h = await startServer();
  try {
    await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const c = await connectSmtp(h.port);
    await c.expect(220);
    await c.cmd('EHLO client.example.net', 250);
    for (const bad of ['MAIL FROM:<a@@b>', 'MAIL FROM:<a b@c.d>', 'MAIL FROM:<a@b', 'MAIL FROM:<.a@b.c>', 'MAIL FROM:<a@-b.c>']) {
      const r = await c.cmd(bad);
      assert.equal(r.code, 501, `${bad}: ${r.code}`);
    }
    c.write(Buffer.from('MAIL FROM:<jöran@example.net>\r\n', 'utf8'));
    await c.expect(553);
    c.write(Buffer.from('MAIL FROM:<jöran@example.net> SMTPUTF8\r\n', 'utf8'));
    await c.expect(250);
    c.close();
  } finally {
    await h.close();
  }
});

test('bare LF lines are normalised to CRLF and a dot after a bare LF is not unstuffed', async () => {
  const h = await startServer();
  try {
    const bob = await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const c = await openTransaction(h.port, FROM, ['bob@example.com']);
    await c.cmd('DATA', 354);
    c.write('Subject: lf\nX-A: b\n\nline1\n..two\r\n..three\r\n.\r\n');
    await c.expect(250);
    const [m] = await h.messages(bob.id);
    assert.ok(m!.toString().endsWith('Subject: lf\r\nX-A: b\r\n\r\nline1\r\n..two\r\n.three\r\n'), JSON.stringify(m!.toString()));
    c.close();
  } finally {
    await h.close();
  }
});

test('a data line over the bound refuses the message after its end, in sync', async () => {
  const h = await startServer({ limits: { maxDataLineLength: 2000 } });
  try {
    const bob = await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const c = await openTransaction(h.port, FROM, ['bob@example.com']);
    await c.cmd('DATA', 354);
    c.write(`Subject: long\r\n\r\n${'x'.repeat(1500)}\r\n${'y'.repeat(2500)}\r\n.\r\n`);
    const r = await c.expect(554);
    assert.match(r.text, /^5\.6\.0 .*line over 2000/);
    await c.cmd('NOOP', 250);
    assert.equal((await h.messages(bob.id)).length, 0);
    c.close();
  } finally {
    await h.close();
  }
});

test('connections over the per-IP limit get 421', async () => {
  const h = await startServer({ limits: { maxConnectionsPerIp: 2 } });
  try {
    const a = await connectSmtp(h.port);
    await a.expect(220);
    const b = await connectSmtp(h.port);
    await b.expect(220);
    const c = await connectSmtp(h.port);
    const r = await c.expect(421);
    assert.match(r.text, /^4\.7\.0 /);
    await c.closed();
    a.close();
    await new Promise((r) => setTimeout(r, 100));
    const d = await connectSmtp(h.port);
    await d.expect(220);
    b.close();
    d.close();
  } finally {
    await h.close();
  }
});

test('an idle client is disconnected with 421 4.4.2 after the command timeout', async () => {
  const h = await startServer({ limits: { commandTimeoutMs: 200 } });
  try {
    const c = await connectSmtp(h.port);
    await c.expect(220);
    const r = await c.expect(421, 5000);
    assert.match(r.text, /^4\.4\.2 /);
    await c.closed();
  } finally {
    await h.close();
  }
});

test('with a greeting delay, a client talking before the greeting is refused', async () => {
  const h = await startServer({ greetingDelayMs: 300 });
  try {
    const c = await connectSmtp(h.port);
    c.write('EHLO early.example\r\n');
    const r = await c.expect(554);
    assert.match(r.text, /talked before the greeting/);
    await c.closed();
    const d = await connectSmtp(h.port);
    await d.expect(220);
    d.close();
  } finally {
    await h.close();
  }
});

test('forged Authentication-Results claiming this server are removed', async () => {
  const h = await startServer();
  try {
    const bob = await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const c = await openTransaction(h.port, FROM, ['bob@example.com']);
    await c.cmd('DATA', 354);
    c.write(
      dotStuff(
        'Authentication-Results: MAIL.example.test; dkim=pass header.d=bank.example\r\n' +
          'Authentication-Results: other.example; spf=pass\r\nSubject: forged\r\n\r\nbody\r\n',
      ),
    );
    await c.expect(250);
    const [m] = await h.messages(bob.id);
    assert.ok(!/MAIL\.example\.test; dkim=pass/.test(m!.toString()));
    assert.match(m!.toString(), /Authentication-Results: other\.example; spf=pass/);
    c.close();
  } finally {
    await h.close();
  }
});

test('DSN parameters are accepted; unknown parameters get 555', async () => {
  const h = await startServer();
  try {
    await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const c = await connectSmtp(h.port);
    await c.expect(220);
    await c.cmd('EHLO client.example.net', 250);
    await c.cmd(`MAIL FROM:<${FROM}> RET=HDRS ENVID=abc+2Bdef BODY=8BITMIME`, 250);
    await c.cmd('RCPT TO:<bob@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.com', 250);
    await c.cmd('RCPT TO:<bob@example.com> FOO=bar', 555);
    await c.cmd('RCPT TO:<bob@example.com> NOTIFY=NEVER,SUCCESS', 501);
    c.close();
  } finally {
    await h.close();
  }
});

test('RCPT TO:<Postmaster> reaches the postmaster of the server host name', async () => {
  const h = await startServer();
  try {
    const pm = await h.ctx.addUser('postmaster@mail.example.test', 'pw-postmaster-1');
    const c = await openTransaction(h.port, FROM, ['Postmaster']);
    await c.cmd('DATA', 354);
    c.write(dotStuff('Subject: pm\r\n\r\nhello\r\n'));
    await c.expect(250);
    assert.equal((await h.messages(pm.id)).length, 1);
    c.close();
  } finally {
    await h.close();
  }
});

test('RCPT TO:<Postmaster> reaches the postmaster of the parent domain when the host name is not a local domain', async () => {
  const h = await startServer();
  try {
    const pm = await h.ctx.addUser('postmaster@example.test', 'pw-postmaster-1');
    assert.equal(await h.ctx.store.isLocalDomain('mail.example.test'), false);
    const c = await openTransaction(h.port, FROM, ['Postmaster']);
    await c.cmd('DATA', 354);
    c.write(dotStuff('Subject: pm\r\n\r\nhello\r\n'));
    await c.expect(250);
    assert.equal((await h.messages(pm.id)).length, 1);
    // Another host's postmaster is still not ours to take.
    await c.cmd('MAIL FROM:<jane@sender.example>', 250);
    await c.cmd('RCPT TO:<postmaster@elsewhere.example>', 554);
    c.close();
  } finally {
    await h.close();
  }
});

test('one hostile client does not hold up another: an endless line and a silent DATA next to a normal delivery', async () => {
  const h = await startServer();
  try {
    const bob = await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const flood = await connectSmtp(h.port);
    await flood.expect(220);
    const silent = await openTransaction(h.port, FROM, ['bob@example.com']);
    await silent.cmd('DATA', 354);
    silent.write('Subject: never ends\r\n\r\npartial');
    const chunk = 'x'.repeat(64 * 1024);
    for (let i = 0; i < 64; i++) flood.write(chunk); // 4 MB without a line end
    const c = await openTransaction(h.port, FROM, ['bob@example.com']);
    await c.cmd('DATA', 354);
    c.write(dotStuff('Subject: normal\r\n\r\nbody\r\n'));
    await c.expect(250);
    assert.equal((await h.messages(bob.id)).length, 1);
    const r = await flood.expect(500);
    assert.match(r.text, /Line too long/);
    c.close();
    flood.close();
    silent.close();
  } finally {
    await h.close();
  }
});

test('a client that keeps sending far past the size limit is cut off; a BDAT chunk over the limit is refused at once', async () => {
  const h = await startServer({ limits: { maxMessageSize: 10_000 } });
  try {
    await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const c = await openTransaction(h.port, FROM, ['bob@example.com']);
    await c.cmd('DATA', 354);
    const line = `${'z'.repeat(98)}\r\n`;
    for (let i = 0; i < 300 && !c.ended; i++) c.write(line); // 30 KB, never ending
    const r = await c.expect(552);
    assert.match(r.text, /^5\.3\.4 /);
    await c.closed();
    const d = await openTransaction(h.port, FROM, ['bob@example.com']);
    d.write('BDAT 999999999 LAST\r\n');
    await d.expect(552);
    await d.closed();
  } finally {
    await h.close();
  }
});

test('a client silent in the middle of DATA is disconnected with 421 after the data timeout, nothing stored', async () => {
  const h = await startServer({ limits: { dataTimeoutMs: 300 } });
  try {
    const bob = await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const c = await openTransaction(h.port, FROM, ['bob@example.com']);
    await c.cmd('DATA', 354);
    c.write('Subject: half\r\n\r\nhalf a message');
    const r = await c.expect(421, 5000);
    assert.match(r.text, /^4\.4\.2 /);
    await c.closed();
    assert.equal((await h.messages(bob.id)).length, 0);
  } finally {
    await h.close();
  }
});
