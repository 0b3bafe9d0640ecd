/**
 * The POP3/IMAP contract of docs/pop3-imap.md with a real IMAP client (imapflow against the IMAP
 * server) open on the same account as a POP3 session, both servers over one store.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { ImapFlow } from 'imapflow';
import { createImapServer } from '../../src/imap/server/server.js';
import { startPop3, USER, PASSWORD, type Pop3Fixture } from './pop3-client.js';

interface Both {
  f: Pop3Fixture;
  imap: ImapFlow;
  close(): Promise<void>;
}

async function startBoth(): Promise<Both> {
  const f = await startPop3();
  const server = createImapServer(f.ctx, { implicitTls: false });
  const port = await server.listen('127.0.0.1', 0);
  const imap = new ImapFlow({
    host: '127.0.0.1',
    port,
    secure: false,
    tls: { rejectUnauthorized: false },
    auth: { user: USER, pass: PASSWORD },
    logger: false,
  });
  await imap.connect();
  return {
    f,
    imap,
    async close() {
      await imap.logout().catch(() => undefined);
      await server.close(500);
      await f.close();
    },
  };
}

/** Resolves with the first event of that name satisfying the predicate, or rejects after 5 s. */
function nextEvent<T>(client: ImapFlow, name: string, match: (data: T) => boolean = () => true): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off(name, onEvent);
      reject(new Error(`no ${name} event from the IMAP server`));
    }, 5000);
    function onEvent(data: T): void {
      if (!match(data)) return;
      clearTimeout(timer);
      client.off(name, onEvent);
      resolve(data);
    }
    client.on(name, onEvent);
  });
}

test('IMAP (imapflow) expunges a message during a POP3 session: POP3 keeps its numbers and RETR answers -ERR', async () => {
  const { f, imap, close } = await startBoth();
  try {
    await f.deliver({ subject: 'one', body: 'first\r\n' });
    await f.deliver({ subject: 'two' });
    await f.deliver({ subject: 'three', body: 'third\r\n' });
    const pop = await f.session();
    const stat = await pop.command('STAT');
    const uidl = await pop.multi('UIDL');
    const lock = await imap.getMailboxLock('INBOX');
    try {
      assert.ok(await imap.messageDelete('2'));
    } finally {
      lock.release();
    }
    assert.equal(await pop.command('RETR 2'), '-ERR Message 2 was removed by another session');
    assert.equal(await pop.command('STAT'), stat);
    assert.deepEqual(await pop.multi('UIDL'), uidl);
    assert.ok((await pop.multi('RETR 3')).lines.includes('third'));
  } finally {
    await close();
  }
});

test('POP3 RETR marks \\Seen and an IMAP client in IDLE hears of it before POP3 QUIT; TOP does not', async () => {
  const { f, imap, close } = await startBoth();
  try {
    await f.deliver({ subject: 'read over POP3' });
    await f.deliver({ subject: 'peeked over POP3' });
    await imap.mailboxOpen('INBOX');
    const pop = await f.session();
    const heard = nextEvent<{ uid?: number; seq: number; flags: Set<string> }>(imap, 'flags', (d) => d.flags.has('\\Seen'));
    void imap.idle();
    await new Promise((r) => setTimeout(r, 50));
    assert.match((await pop.multi('RETR 1')).status, /^\+OK/);
    const event = await heard;
    assert.equal(event.seq, 1);
    assert.match((await pop.multi('TOP 2 3')).status, /^\+OK/);
    const msgs: Array<{ seq: number; flags?: Set<string> }> = [];
    for await (const m of imap.fetch('1:*', { flags: true })) msgs.push({ seq: m.seq, flags: m.flags });
    assert.deepEqual(msgs.map((m) => [m.seq, [...(m.flags ?? [])]]), [[1, ['\\Seen']], [2, []]]);
  } finally {
    await close();
  }
});

test('POP3 DELE + QUIT expunges and an IMAP client in IDLE gets EXPUNGE at once', async () => {
  const { f, imap, close } = await startBoth();
  try {
    await f.deliver({ subject: 'keep' });
    await f.deliver({ subject: 'delete over POP3' });
    await imap.mailboxOpen('INBOX');
    const pop = await f.session();
    assert.equal(await pop.command('DELE 2'), '+OK Message 2 deleted');
    const expunged = nextEvent<{ seq: number }>(imap, 'expunge');
    void imap.idle();
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(await pop.command('QUIT'), '+OK Bye, 1 messages removed');
    assert.equal((await expunged).seq, 2);
    const status = await imap.status('INBOX', { messages: true });
    assert.ok(status !== false);
    assert.equal(status.messages, 1);
  } finally {
    await close();
  }
});

test('POP3 policy hide: after DELE + QUIT the message is still in INBOX for IMAP and gone for POP3', async () => {
  const { f, imap, close } = await startBoth();
  try {
    await f.ctx.store.updateAccount(f.account.id, { pop3DeletePolicy: 'hide' });
    await f.deliver({ subject: 'desktop downloaded this' });
    let pop = await f.session();
    assert.equal(await pop.command('DELE 1'), '+OK Message 1 deleted');
    assert.equal(await pop.command('QUIT'), '+OK Bye, 1 messages removed');
    const lock = await imap.getMailboxLock('INBOX');
    try {
      const msg = await imap.fetchOne('1', { envelope: true });
      assert.ok(msg);
      assert.equal(msg.envelope?.subject, 'desktop downloaded this');
    } finally {
      lock.release();
    }
    pop = await f.session();
    assert.equal(await pop.command('STAT'), '+OK 0 0');
  } finally {
    await close();
  }
});

test('POP3 UIDL stays the same after an IMAP MOVE out of INBOX and back', async () => {
  const { f, imap, close } = await startBoth();
  try {
    await f.deliver({ subject: 'goes to Archive and back' });
    let pop = await f.session();
    const before = await pop.multi('UIDL');
    assert.equal(await pop.command('QUIT'), '+OK Bye, 0 messages removed');
    let lock = await imap.getMailboxLock('INBOX');
    try {
      assert.ok(await imap.messageMove('1', 'Archive'));
    } finally {
      lock.release();
    }
    lock = await imap.getMailboxLock('Archive');
    try {
      assert.ok(await imap.messageMove('1', 'INBOX'));
    } finally {
      lock.release();
    }
    pop = await f.session();
    assert.deepEqual(await pop.multi('UIDL'), before);
  } finally {
    await close();
  }
});

test('A POP3 session blocks a second POP3 login ([IN-USE]) but never an IMAP session', async () => {
  const { f, imap, close } = await startBoth();
  try {
    await f.session();
    const second = await f.connect();
    assert.equal(await second.login(USER, PASSWORD), '-ERR [IN-USE] Another POP3 session is open for this account');
    const appended = await imap.append('INBOX', Buffer.from('Subject: from IMAP\r\n\r\nhi\r\n'));
    assert.ok(appended);
    const lock = await imap.getMailboxLock('INBOX');
    try {
      assert.ok(await imap.messageFlagsAdd('1', ['\\Flagged']));
    } finally {
      lock.release();
    }
  } finally {
    await close();
  }
});
