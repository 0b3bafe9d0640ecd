/**
 * SMTP on port 25 is not an open relay, whatever the spelling of the recipient, and SMTP smuggling
 * (a second message hidden behind a bare-LF or bare-CR end of data) never produces a second message.
 * VRFY and EXPN reveal nothing. DESIGN.md invariant 5; RFC 5321 §3.6 (relaying), §4.1.1.4 (end of
 * data), §7.3 (VRFY/EXPN).
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { startServers, USER } from './servers.js';

// Each of these names a remote mailbox through a local-looking spelling (or is plainly remote).
const RELAY_TRICKS = [
  '<victim@remote.test>',
  '<victim@REMOTE.TEST>',
  '<victim@remote.test.>',
  '<victim%remote.test@example.test>', // the %-hack
  '<victim%remote.test@[127.0.0.1]>',
  '<@example.test:victim@remote.test>', // source route (RFC 5321 §4.1.1.3 / appendix C)
  '<@example.test,@relay.test:victim@remote.test>',
  '<"victim@remote.test"@example.test>', // quoted local part
  '<"victim@remote.test">',
  '<victim@remote.test@example.test>',
  '<remote.test!victim@example.test>', // bang path
  '<remote.test!victim>',
  '<victim@[127.0.0.1]>', // address literal of this very host
  '<alice@[127.0.0.1]>',
  '<victim@[IPv6:::1]>',
  '<victim@example.test@remote.test>',
  '<victim@remote.test >',
  '<victim@remote.test\\>',
];

test('SMTP port 25 refuses every relay spelling with 5xx, before and after a local recipient, and stores nothing', async () => {
  const s = await startServers();
  try {
    let c = await s.smtp();
    await c.cmd('EHLO client.example.net', 250);
    for (const rcpt of RELAY_TRICKS) {
      await c.cmd('MAIL FROM:<sender@elsewhere.test>', 250);
      const r = await c.cmd(`RCPT TO:${rcpt}`);
      // 554 5.7.1 relay denied, 550 5.1.1 no such local user, 553 / 501 mailbox syntax: all are
      // refusals; none is "accepted for later relaying".
      assert.ok([501, 550, 553, 554].includes(r.code), `${rcpt} -> ${r.code} ${r.text}`);
      if (r.code === 554) assert.match(r.text, /^5\.7\.1/);
      const d = await c.cmd('DATA');
      assert.ok(d.code === 554 || d.code === 503, `DATA after refused ${rcpt} -> ${d.code}`);
      await c.cmd('RSET', 250);
      // The server limits errors per session (ERRORS_MAX_DEFAULT): reconnect before reaching it.
      if (RELAY_TRICKS.indexOf(rcpt) % 4 === 3) {
        c.close();
        c = await s.smtp();
        await c.cmd('EHLO client.example.net', 250);
      }
    }
    // A transaction mixing a local recipient and a relay attempt delivers to the local one only.
    const m = await s.smtp();
    await m.cmd('EHLO client.example.net', 250);
    await m.cmd('MAIL FROM:<sender@elsewhere.test>', 250);
    await m.cmd(`RCPT TO:<${USER}>`, 250);
    await m.cmd('RCPT TO:<victim%remote.test@example.test>');
    await m.cmd('RCPT TO:<@example.test:victim@remote.test>', 554);
    await m.cmd('DATA', 354);
    await m.cmd('Subject: mixed\r\n\r\nhello\r\n.', 250);
    await m.cmd('QUIT', 221);
    assert.equal(await s.totalMessages(), 1);
    await s.stillServes();
  } finally {
    await s.close();
  }
});

test('SMTP submission refuses MAIL without authentication, so nothing can be relayed through it', async () => {
  const s = await startServers();
  try {
    const c = await s.submission();
    await c.cmd('EHLO client.example.net', 250);
    const r = await c.cmd('MAIL FROM:<alice@example.test>');
    assert.equal(r.code, 530); // RFC 4954 §6: 530 5.7.0 Authentication required
    await c.cmd('RCPT TO:<victim@remote.test>', 503);
    assert.equal(await s.totalMessages(), 0);
  } finally {
    await s.close();
  }
});

const SMUGGLING = ['\n.\n', '\r.\r', '\n.\r\n', '\r\n.\n', '\r.\r\n', '\n.', '.\n', '\r\n.\r'];

for (const sep of SMUGGLING) {
  test(`SMTP smuggling with ${JSON.stringify(sep)} inside DATA neither ends the message nor makes a second one`, async () => {
    const s = await startServers();
    try {
      const c = await s.smtp();
      await c.cmd('EHLO client.example.net', 250);
      await c.cmd('MAIL FROM:<sender@elsewhere.test>', 250);
      await c.cmd(`RCPT TO:<${USER}>`, 250);
      await c.cmd('DATA', 354);
      const smuggled = `MAIL FROM:<ceo@example.test>\r\nRCPT TO:<${USER}>\r\nDATA\r\nSubject: smuggled\r\n\r\nsecond\r\n`;
      // One write: the whole attack arrives in one packet, as an attacker's relay would send it.
      c.write(`Subject: first\r\n\r\nfirst${sep}${smuggled}.\r\nNOOP\r\n`);
      const end = await c.read();
      assert.equal(end.code, 250, `end of data -> ${end.code} ${end.text}`);
      // The next reply is the NOOP's: nothing of the smuggled commands was read as a command.
      const next = await c.read();
      assert.equal(next.code, 250);
      assert.match(next.text, /^2\.0\.0 OK|OK/i);
      await c.cmd('QUIT', 221);
      const stored = await s.messages();
      assert.equal(stored.length, 1);
      const text = stored[0]!.toString('latin1');
      assert.ok(text.includes('Subject: smuggled'), 'the smuggled bytes are content of the one message');
      assert.ok(text.includes('MAIL FROM:<ceo@example.test>'));
      // Stored with CRLF line ends only (RFC 5322 §2.1): a later hop cannot re-split it.
      assert.doesNotMatch(text, /\r(?!\n)|(?<!\r)\n/);
      await s.stillServes();
    } finally {
      await s.close();
    }
  });
}

test('SMTP VRFY answers 252 and EXPN 502 for existing and unknown names alike', async () => {
  const s = await startServers();
  try {
    for (const port of [s.ports.smtp, s.ports.submission]) {
      const c = await s.smtp(undefined, port);
      await c.cmd('EHLO client.example.net', 250);
      const known = await c.cmd(`VRFY ${USER}`);
      const unknown = await c.cmd('VRFY nobody@example.test');
      // RFC 5321 §3.5.3: 252 "cannot verify, will attempt delivery"; the same words for both.
      assert.equal(known.code, 252);
      assert.deepEqual(known.lines, unknown.lines);
      const expnKnown = await c.cmd('EXPN alice');
      const expnUnknown = await c.cmd('EXPN staff');
      assert.equal(expnKnown.code, 502);
      assert.deepEqual(expnKnown.lines, expnUnknown.lines);
      assert.doesNotMatch(known.text + expnKnown.text, /alice/i);
      await c.cmd('QUIT', 221);
    }
  } finally {
    await s.close();
  }
});

test('SMTP RCPT probing: after the limit of unknown recipients from one IP, every RCPT from it is deferred, across connections', async () => {
  const s = await startServers({ smtp: { recipientProbes: { limit: 5, windowMs: 60_000 } } });
  try {
    const prober = '127.0.0.40';
    let c = await s.smtp(prober);
    await c.cmd('EHLO client.example.net', 250);
    await c.cmd('MAIL FROM:<sender@elsewhere.test>', 250);
    for (let i = 0; i < 3; i++) await c.cmd(`RCPT TO:<guess${i}@example.test>`, 550);
    await c.cmd(`RCPT TO:<${USER}>`, 250); // real recipients are still answered before the limit
    c.close();
    // A new connection does not reset the count.
    c = await s.smtp(prober);
    await c.cmd('EHLO client.example.net', 250);
    await c.cmd('MAIL FROM:<sender@elsewhere.test>', 250);
    for (let i = 3; i < 5; i++) await c.cmd(`RCPT TO:<guess${i}@example.test>`, 550);
    // Limit reached: known and unknown recipients get the same temporary refusal.
    const known = await c.cmd(`RCPT TO:<${USER}>`);
    const unknown = await c.cmd('RCPT TO:<guess9@example.test>');
    assert.equal(known.code, 450);
    assert.match(known.text, /^4\.7\.1/);
    assert.deepEqual(unknown.lines, known.lines);
    c.close();
    // Another client address is not affected.
    const other = await s.smtp('127.0.0.41');
    await other.cmd('EHLO client.example.net', 250);
    await other.cmd('MAIL FROM:<sender@elsewhere.test>', 250);
    await other.cmd(`RCPT TO:<${USER}>`, 250);
  } finally {
    await s.close();
  }
});
