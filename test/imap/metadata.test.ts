import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { METADATA_LIMITS } from '../../src/imap/server/handlers/metadata.js';
import { startImap, TEST_USER } from '../helpers/imap-transcript.js';

test('METADATA: CAPABILITY lists METADATA and METADATA-SERVER', async () => {
  const f = await startImap();
  try {
    const t = await f.login();
    const r = await t.command('c', 'CAPABILITY');
    assert.match(r.untagged[0]!, / METADATA METADATA-SERVER/);
  } finally {
    await f.close();
  }
});

test('SETMETADATA then GETMETADATA on a mailbox and on the server; NIL removes; missing entries are NIL', async () => {
  const f = await startImap();
  try {
    const t = await f.login();
    await t.command('s1', 'SETMETADATA INBOX (/private/comment "My own comment" /Shared/Comment {8+}\r\nshared\r\n)');
    let r = await t.command('g1', 'GETMETADATA INBOX (/shared/comment /private/comment /private/none)');
    assert.deepEqual(r.untagged, ['* METADATA "INBOX" (/shared/comment {8}\r\nshared\r\n /private/comment "My own comment" /private/none NIL)']);
    await t.command('s2', 'SETMETADATA "" (/shared/comment "Server note")');
    r = await t.command('g2', 'GETMETADATA "" (/shared/comment /shared/admin)');
    assert.deepEqual(r.untagged, ['* METADATA "" (/shared/comment "Server note" /shared/admin "mailto:postmaster@example.test")']);
    // RFC 5464 §3.2.1.1: /shared/admin is read-only.
    r = await t.command('s3', 'SETMETADATA "" (/shared/admin "mailto:me@example.test")', 'NO');
    assert.match(r.line, /^s3 NO \[NOPERM\]/);
    await t.command('s4', 'SETMETADATA INBOX (/private/comment NIL)');
    r = await t.command('g3', 'GETMETADATA INBOX /private/comment');
    assert.deepEqual(r.untagged, ['* METADATA "INBOX" (/private/comment NIL)']);
    // A mailbox that does not exist.
    r = await t.command('g4', 'GETMETADATA Nope /private/comment', 'NO');
    assert.match(r.line, /\[NONEXISTENT\]/);
    r = await t.command('s5', 'SETMETADATA Nope (/private/comment "x")', 'NO');
    assert.match(r.line, /\[NONEXISTENT\]/);
  } finally {
    await f.close();
  }
});

test('GETMETADATA DEPTH 0, 1 and infinity; MAXSIZE leaves out long values with LONGENTRIES', async () => {
  const f = await startImap();
  try {
    const t = await f.login();
    await t.command('s', 'SETMETADATA INBOX (/private/a "1" /private/a/b "22" /private/a/b/c "333" /private/ab "x")');
    let r = await t.command('g0', 'GETMETADATA (DEPTH 0) INBOX /private/a');
    assert.deepEqual(r.untagged, ['* METADATA "INBOX" (/private/a "1")']);
    r = await t.command('g1', 'GETMETADATA (DEPTH 1) INBOX /private/a');
    assert.deepEqual(r.untagged, ['* METADATA "INBOX" (/private/a "1" /private/a/b "22")']);
    r = await t.command('gi', 'GETMETADATA (DEPTH infinity) INBOX /private');
    assert.deepEqual(r.untagged, ['* METADATA "INBOX" (/private NIL /private/a "1" /private/a/b "22" /private/a/b/c "333" /private/ab "x")']);
    r = await t.command('gm', 'GETMETADATA (MAXSIZE 2 DEPTH infinity) INBOX /private/a');
    assert.deepEqual(r.untagged, ['* METADATA "INBOX" (/private/a "1" /private/a/b "22")']);
    assert.match(r.line, /^gm OK \[METADATA LONGENTRIES 3\]/);
    r = await t.command('gb', 'GETMETADATA (DEPTH 2) INBOX /private/a', 'BAD');
    r = await t.command('gu', 'GETMETADATA (COLOR red) INBOX /private/a', 'BAD');
  } finally {
    await f.close();
  }
});

test('binary values (literal8) come back as literal8, byte for byte', async () => {
  const f = await startImap();
  try {
    const t = await f.login();
    t.send('b1 SETMETADATA INBOX (/private/vendor/facteur/blob ~{5}');
    await t.expect(/^\+ /);
    t.sendRaw(Buffer.from([0x61, 0x00, 0xff, 0x0d, 0x0a]));
    t.sendRaw(')\r\n');
    await t.expectTagged('b1', 'OK');
    const account = (await f.ctx.store.getAccountByAddress(TEST_USER))!;
    const inbox = (await f.ctx.store.getMailbox(account.id, 'INBOX'))!;
    assert.deepEqual((await f.ctx.store.getMetadata(account.id, inbox.id))[0]?.value, Buffer.from([0x61, 0x00, 0xff, 0x0d, 0x0a]));
    const r = await t.command('b2', 'GETMETADATA INBOX /private/vendor/facteur/blob');
    assert.equal(r.untagged[0], '* METADATA "INBOX" (/private/vendor/facteur/blob ~{5}\r\na\u0000\u00ff\r\n)');
  } finally {
    await f.close();
  }
});

test('annotations follow RENAME and go with DELETE', async () => {
  const f = await startImap();
  try {
    const t = await f.login();
    await t.command('c', 'CREATE Box');
    await t.command('s', 'SETMETADATA Box (/shared/comment "note")');
    await t.command('r', 'RENAME Box Other');
    let r = await t.command('g', 'GETMETADATA Other /shared/comment');
    assert.deepEqual(r.untagged, ['* METADATA "Other" (/shared/comment "note")']);
    await t.command('d', 'DELETE Other');
    await t.command('c2', 'CREATE Other');
    r = await t.command('g2', 'GETMETADATA Other /shared/comment');
    assert.deepEqual(r.untagged, ['* METADATA "Other" (/shared/comment NIL)']);
  } finally {
    await f.close();
  }
});

test('hostile SETMETADATA: an oversized literal is refused before its bytes, oversized quoted and non-synchronising values too', async () => {
  const f = await startImap();
  try {
    const t = await f.login();
    const max = METADATA_LIMITS.maxValueBytes;
    // Synchronising: refused at once, no continuation; the client never sends the bytes.
    t.send(`h1 SETMETADATA INBOX (/private/comment {${max + 1}}`);
    const line = await t.readLine();
    assert.equal(line, `h1 NO [METADATA MAXSIZE ${max}] Annotation value too large`);
    // A size beyond 2^32 too.
    t.send('h2 SETMETADATA INBOX (/private/comment {99999999999}');
    assert.match(await t.readLine(), /^h2 NO \[METADATA MAXSIZE \d+\]/);
    // The session goes on.
    await t.command('h3', 'NOOP');
    // Non-synchronising within the general literal limit: read, then refused with the same code.
    let r = await t.command('h4', `SETMETADATA INBOX (/private/comment {${max + 1}+}\r\n${'x'.repeat(max + 1)})`, 'NO');
    assert.match(r.line, new RegExp(`^h4 NO \\[METADATA MAXSIZE ${max}\\]`));
    r = await t.command('h5', `SETMETADATA INBOX (/private/comment "${'y'.repeat(max + 1)}")`, 'NO');
    assert.match(r.line, /\[METADATA MAXSIZE/);
    // Exactly the limit is accepted.
    await t.command('h6', `SETMETADATA INBOX (/private/comment {${max}+}\r\n${'z'.repeat(max)})`);
    r = await t.command('h7', 'GETMETADATA (MAXSIZE 10) INBOX /private/comment');
    assert.match(r.line, new RegExp(`LONGENTRIES ${max}`));
  } finally {
    await f.close();
  }
});

test('hostile SETMETADATA: invalid and deep entry names are BAD, too many entries is NO [METADATA TOOMANY], all or nothing', async () => {
  const f = await startImap();
  try {
    const t = await f.login();
    for (const bad of ['/foo/bar', '/private', '/private/a*', '/private/a%b', '/private//a', '/private/a/', 'private/a', '/private/vendor/x', `/private${'/a'.repeat(16)}`, `/private/${'a'.repeat(300)}`]) {
      await t.command('n', `SETMETADATA INBOX (${JSON.stringify(bad)} "v")`, 'BAD');
    }
    await t.command('n8', 'SETMETADATA INBOX ("/private/\u00e9" "v")', 'BAD');
    await t.command('n9', 'GETMETADATA INBOX ("/private/a*")', 'BAD');
    const many = Array.from({ length: METADATA_LIMITS.maxEntries }, (_, i) => `/private/e${i} "v"`).join(' ');
    await t.command('m1', `SETMETADATA INBOX (${many})`);
    const r = await t.command('m2', 'SETMETADATA INBOX (/private/e0 "changed" /private/one-more "v")', 'NO');
    assert.match(r.line, /^m2 NO \[METADATA TOOMANY\]/);
    const g = await t.command('m3', 'GETMETADATA INBOX /private/e0');
    assert.deepEqual(g.untagged, ['* METADATA "INBOX" (/private/e0 "v")'], 'nothing of the refused command was stored');
    // Another mailbox has its own count.
    await t.command('m4', 'SETMETADATA Drafts (/private/one-more "v")');
  } finally {
    await f.close();
  }
});
