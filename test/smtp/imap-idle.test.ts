import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { ImapFlow } from 'imapflow';
import { createImapServer } from '../../src/imap/server/server.js';
import { openTransaction } from './wire.js';
import { dotStuff, startServer } from './harness.js';

test('a message delivered over SMTP reaches an IMAP session in IDLE at once, with its trace fields', async () => {
  const h = await startServer();
  const imap = createImapServer(h.ctx, { implicitTls: false });
  const imapPort = await imap.listen('127.0.0.1', 0);
  const client = new ImapFlow({ host: '127.0.0.1', port: imapPort, secure: false, tls: { rejectUnauthorized: false }, auth: { user: 'bob@example.com', pass: 'pw-bob-123456' }, logger: false });
  try {
    await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    await client.connect();
    await client.mailboxOpen('INBOX');
    const exists = new Promise<number>((resolve) => client.on('exists', (e: { count: number }) => resolve(e.count)));
    const idling = client.idle();
    const c = await openTransaction(h.port, 'sender@example.net', ['bob@example.com']);
    await c.cmd('DATA', 354);
    c.write(dotStuff('Subject: pushed\r\nFrom: sender@example.net\r\n\r\nhello IMAP\r\n'));
    await c.expect(250);
    c.close();
    assert.equal(await exists, 1);
    // The next command ends IDLE (imapflow sends DONE first); idle() settles then.
    const msg = await client.fetchOne('1', { source: true, envelope: true });
    assert.ok(msg);
    assert.equal(msg.envelope?.subject, 'pushed');
    await idling;
    assert.match(msg.source!.toString(), /^Return-Path: <sender@example\.net>\r\nReceived: from client\.example\.net/);
  } finally {
    await client.logout().catch(() => {});
    await imap.close(500);
    await h.close();
  }
});
