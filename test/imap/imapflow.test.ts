import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { ImapFlow } from 'imapflow';
import { startImap, TEST_PASSWORD, TEST_USER, type ImapFixture } from '../helpers/imap-transcript.js';
import { makeMessage } from '../helpers/messages.js';

function client(f: ImapFixture): ImapFlow {
  return new ImapFlow({
    host: '127.0.0.1',
    port: f.port,
    secure: false,
    tls: { rejectUnauthorized: false },
    auth: { user: TEST_USER, pass: TEST_PASSWORD },
    logger: false,
  });
}

test('imapflow lists, appends, fetches, flags, searches and moves messages', async () => {
  const f = await startImap();
  const c = client(f);
  try {
    await c.connect();
    const list = await c.list();
    assert.deepEqual(list.map((m) => m.path).sort(), ['Archive', 'Drafts', 'INBOX', 'Junk', 'Sent', 'Trash']);
    assert.equal(list.find((m) => m.path === 'Sent')?.specialUse, '\\Sent');
    const raw = makeMessage({ from: 'bob@example.test', to: TEST_USER, subject: 'Hello there', body: 'Body text here' });
    const appended = await c.append('INBOX', raw, ['\\Flagged']);
    assert.ok(appended && appended.uid === 1);
    const lock = await c.getMailboxLock('INBOX');
    try {
      const msg = await c.fetchOne('1', { source: true, envelope: true, flags: true, uid: true });
      assert.ok(msg);
      assert.equal(msg.envelope?.subject, 'Hello there');
      assert.equal(msg.source?.toString(), raw.toString());
      await c.messageFlagsAdd('1', ['\\Seen']);
      const found = await c.search({ seen: true, subject: 'hello' });
      assert.deepEqual(found, [1]);
      const moved = await c.messageMove('1', 'Trash');
      assert.ok(moved);
      assert.equal((c.mailbox as { exists: number }).exists, 0);
    } finally {
      lock.release();
    }
    const st = await c.status('Trash', { messages: true, unseen: true });
    assert.ok(st !== false);
    assert.equal(st.messages, 1);
    assert.equal(st.unseen, 0);
  } finally {
    await c.logout().catch(() => {});
    await f.close();
  }
});

test('imapflow in IDLE hears of a message another client appends', async () => {
  const f = await startImap();
  const a = client(f);
  const b = client(f);
  try {
    await a.connect();
    await b.connect();
    await a.mailboxOpen('INBOX');
    const exists = new Promise<number>((resolve) => a.on('exists', (d: { count: number }) => resolve(d.count)));
    const idling = a.idle();
    await new Promise((r) => setTimeout(r, 50));
    await b.append('INBOX', makeMessage({ from: 'b@example.test', to: TEST_USER, subject: 's', body: 'x' }));
    const count = await Promise.race([exists, new Promise<number>((_, rej) => setTimeout(() => rej(new Error('no EXISTS')), 3000))]);
    assert.equal(count, 1);
    void idling;
  } finally {
    await a.logout().catch(() => {});
    await b.logout().catch(() => {});
    await f.close();
  }
});
