import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { startImap } from '../helpers/imap-transcript.js';

test('greeting, CAPABILITY, LOGIN, SELECT INBOX, APPEND, FETCH FLAGS and LOGOUT', async () => {
  const f = await startImap();
  try {
    const t = await f.open();
    const caps = await t.command('a1', 'CAPABILITY');
    assert.match(caps.untagged[0]!, /^\* CAPABILITY IMAP4rev1 IMAP4rev2 /);
    await t.command('a2', 'LOGIN alice@example.test "correct horse"');
    const sel = await t.command('a3', 'SELECT INBOX');
    assert.ok(sel.untagged.includes('* 0 EXISTS'), sel.untagged.join('\n'));
    assert.match(sel.line, /^a3 OK \[READ-WRITE\]/);
    const msg = 'From: a@example.test\r\nSubject: hi\r\n\r\nHello\r\n';
    t.send(`a4 APPEND INBOX (\\Flagged) {${msg.length}}`);
    await t.expect(/^\+ /);
    t.sendRaw(`${msg}\r\n`);
    const app = await t.expectTagged('a4', 'OK');
    assert.match(app.line, /^a4 OK \[APPENDUID \d+ 1\]/);
    assert.ok(app.untagged.includes('* 1 EXISTS'), app.untagged.join('\n'));
    const fetch = await t.command('a5', 'FETCH 1 (UID FLAGS)');
    // The session saw the message arrive: it is \Recent here (RFC 3501 §2.3.2).
    assert.deepEqual(fetch.untagged, ['* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))']);
    const body = await t.command('a6', 'FETCH 1 BODY[]');
    assert.equal(body.untagged[0], `* 1 FETCH (BODY[] {${msg.length}}\r\n${msg} FLAGS (\\Seen \\Flagged \\Recent))`);
    const logout = await t.command('a7', 'LOGOUT');
    assert.deepEqual(logout.untagged, ['* BYE Logging out']);
    await t.expectClosed();
  } finally {
    await f.close();
  }
});

test('closing the server sends BYE to waiting and idling sessions and closes them', async () => {
  const f = await startImap();
  try {
    const waiting = await f.login();
    const idling = await f.login();
    await idling.command('s', 'SELECT INBOX');
    idling.send('i IDLE');
    await idling.expect(/^\+ /);
    await f.server.close(2000);
    await waiting.expect('* BYE Server shutting down');
    await idling.expect('* BYE Server shutting down');
    await waiting.expectClosed();
    await idling.expectClosed();
  } finally {
    await f.close();
  }
});
