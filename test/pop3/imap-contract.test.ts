/**
 * The POP3/IMAP contract of docs/pop3-imap.md, one test per point, with a POP3 session open while
 * the IMAP side acts. The IMAP side here is the store operations IMAP commands run (EXPUNGE is
 * store.expunge, MOVE is store.move, STORE is store.setFlags) and what IMAP sessions learn from
 * (entries, flags, change feed events); imap-contract-imapflow.test.ts repeats the key points with
 * a real IMAP client against the IMAP server.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { pino } from 'pino';
import { createAuthenticator } from '../../src/auth/authenticator.js';
import { hashPassword } from '../../src/auth/password.js';
import { createPop3Server } from '../../src/pop3/server/server.js';
import { openStore } from '../../src/store/open.js';
import type { ChangeEvent, MessageEntry } from '../../src/store/types.js';
import type { MailboxId } from '../../src/lib/brand.js';
import { testMessage, testStoreLocation } from '../helpers/store.js';
import { RawPop3, startPop3, USER, PASSWORD, type Pop3Fixture } from './pop3-client.js';

async function uidl(c: RawPop3): Promise<Map<number, string>> {
  const r = await c.multi('UIDL');
  assert.match(r.status, /^\+OK/);
  return new Map(
    r.lines.map((l) => {
      const [n, id] = l.split(' ');
      return [Number(n), id ?? ''];
    }),
  );
}

async function retr(c: RawPop3, n: number): Promise<{ status: string; lines: string[] }> {
  return c.multi(`RETR ${n}`);
}

async function mailboxId(f: Pop3Fixture, name: string): Promise<MailboxId> {
  const box = await f.ctx.store.getMailbox(f.account.id, name);
  if (box === null) throw new Error(`no mailbox ${name}`);
  return box.id;
}

function watch(f: Pop3Fixture): ChangeEvent[] {
  const events: ChangeEvent[] = [];
  f.ctx.store.feed.subscribe(f.account.id, (e) => events.push(e));
  return events;
}

test('POP3 maildrop is INBOX as at login, in UID order; a message delivered during the session waits for the next one', async () => {
  const f = await startPop3();
  try {
    const a = await f.deliver({ subject: 'a' });
    const b = await f.deliver({ subject: 'b' });
    const c = await f.session();
    await f.deliver({ subject: 'c, arrives during the session' });
    assert.match(await c.command('STAT'), /^\+OK 2 /);
    assert.deepEqual([...(await uidl(c)).values()], [a.pid, b.pid]);
    assert.equal(await c.command('RETR 3'), '-ERR No such message');
    assert.equal(await c.command('QUIT'), '+OK Bye, 0 messages removed');
    const d = await f.session();
    assert.match(await d.command('STAT'), /^\+OK 3 /);
  } finally {
    await f.close();
  }
});

test('POP3 keeps message numbers when IMAP expunges or moves a message during the session; its RETR/TOP answer -ERR', async () => {
  const f = await startPop3();
  try {
    const first = await f.deliver({ subject: 'first', body: 'one\r\n' });
    const gone = await f.deliver({ subject: 'expunged by IMAP' });
    const moved = await f.deliver({ subject: 'moved by IMAP' });
    const last = await f.deliver({ subject: 'last', body: 'four\r\n' });
    const c = await f.session();
    const statBefore = await c.command('STAT');
    const listBefore = await c.multi('LIST');
    const uidlBefore = await uidl(c);
    // The IMAP side: EXPUNGE of one message, MOVE of another to Archive.
    await f.ctx.store.setFlags(f.inbox, [gone.uid], 'add', ['\\Deleted']);
    assert.deepEqual(await f.ctx.store.expunge(f.inbox), [gone.uid]);
    await f.ctx.store.move(f.inbox, [moved.uid], await mailboxId(f, 'Archive'));

    assert.equal(await c.command('RETR 2'), '-ERR Message 2 was removed by another session');
    assert.equal(await c.command('TOP 3 0'), '-ERR Message 3 was removed by another session');
    // Nothing else changes: same numbers, sizes and unique-ids; the others are still readable.
    assert.equal(await c.command('STAT'), statBefore);
    assert.deepEqual(await c.multi('LIST'), listBefore);
    assert.deepEqual(await uidl(c), uidlBefore);
    assert.ok((await retr(c, 1)).lines.includes('one'));
    assert.ok((await retr(c, 4)).lines.includes('four'));
    // DELE of a message IMAP removed is harmless; QUIT removes what is still there.
    assert.equal(await c.command('DELE 2'), '+OK Message 2 deleted');
    assert.equal(await c.command('DELE 4'), '+OK Message 4 deleted');
    assert.equal(await c.command('QUIT'), '+OK Bye, 1 messages removed');
    assert.deepEqual((await f.entries()).map((e) => e.uid), [first.uid]);
    assert.equal(last.uid > first.uid, true);
  } finally {
    await f.close();
  }
});

test('POP3 UIDL is the permanent id: same across sessions, after a move out of INBOX and back, and after renames', async () => {
  const f = await startPop3();
  try {
    const m = await f.deliver({ subject: 'traveller' });
    const other = await f.deliver({ subject: 'stays' });
    let c = await f.session();
    const first = await uidl(c);
    assert.deepEqual([...first.values()], [m.pid, other.pid]);
    // RFC 1939 §7: 1-70 characters from 0x21 to 0x7E.
    for (const id of first.values()) assert.match(id, /^[\x21-\x7e]{1,70}$/);
    await c.command('QUIT');

    const store = f.ctx.store;
    const archive = await mailboxId(f, 'Archive');
    await store.move(f.inbox, [m.uid], archive);
    await store.renameMailbox(f.account.id, 'Archive', 'Archive 2024');
    const renamed = await mailboxId(f, 'Archive 2024');
    const [inArchive] = await store.listEntries(renamed);
    assert.ok(inArchive);
    await store.move(renamed, [inArchive.uid], f.inbox);
    c = await f.session();
    const after = await uidl(c);
    // Its UID changed (a new entry in INBOX), its UIDL did not; it is now last by UID.
    assert.deepEqual([...after.values()], [other.pid, m.pid]);
    await c.command('QUIT');

    // Renaming INBOX moves its messages to a new mailbox (RFC 9051 §6.3.6); moved back, same ids.
    await store.renameMailbox(f.account.id, 'INBOX', 'Old inbox');
    const old = await mailboxId(f, 'Old inbox');
    await store.move(old, (await store.listEntries(old)).map((e) => e.uid), f.inbox);
    c = await f.session();
    assert.deepEqual(new Set((await uidl(c)).values()), new Set([other.pid, m.pid]));
  } finally {
    await f.close();
  }
});

test('POP3 UIDL survives a restart of the server and its store', async () => {
  // The backend under test, reopened as a restarted server would.
  const where = await testStoreLocation();
  const log = pino({ level: 'silent' });
  const run = async (work: (c: RawPop3, deliver: () => Promise<void>) => Promise<void>): Promise<void> => {
    const store = await openStore(where.location);
    const server = createPop3Server({ hostname: 'mail.example.test', store, log, auth: createAuthenticator(store), tls: null }, { implicitTls: false });
    const port = await server.listen('127.0.0.1', 0);
    try {
      let account = await store.getAccountByAddress(USER);
      if (account === null) {
        await store.addDomain('example.com');
        account = await store.createAccount({ address: USER, passwordHash: await hashPassword(PASSWORD) });
      }
      const inbox = await store.getMailbox(account.id, 'INBOX');
      assert.ok(inbox);
      const c = await RawPop3.connect(port);
      await work(c, async () => {
        await store.append(inbox.id, testMessage({ subject: 'restart' }));
      });
      c.destroy();
    } finally {
      await server.close(500);
      assert.deepEqual(await store.checkConsistency(), []);
      await store.close();
    }
  };
  try {
    let before: Map<number, string> = new Map();
    await run(async (c, deliver) => {
      await deliver();
      await deliver();
      assert.match(await c.login(USER, PASSWORD), /^\+OK/);
      before = await uidl(c);
      await c.command('QUIT');
    });
    await run(async (c) => {
      assert.match(await c.login(USER, PASSWORD), /^\+OK/);
      assert.deepEqual(await uidl(c), before);
      assert.equal(before.size, 2);
    });
  } finally {
    await where.cleanup();
  }
});

test('POP3 UIDL is unique when the same message is copied into INBOX twice, while EMAILID is shared', async () => {
  const f = await startPop3();
  try {
    const store = f.ctx.store;
    const archive = await mailboxId(f, 'Archive');
    const original = await store.append(archive, testMessage({ subject: 'copied twice' }));
    await store.copy(archive, [original.uid], f.inbox);
    await store.copy(archive, [original.uid], f.inbox);
    const entries = await f.entries();
    assert.equal(entries.length, 2);
    const [x, y] = entries as [(typeof entries)[0], (typeof entries)[0]];
    assert.equal(x.emailId, y.emailId);
    assert.equal(x.emailId, original.emailId);
    assert.notEqual(x.pid, y.pid);
    const c = await f.session();
    const ids = await uidl(c);
    assert.deepEqual([...ids.values()], [x.pid, y.pid]);
    assert.equal(new Set(ids.values()).size, 2);
  } finally {
    await f.close();
  }
});

test('POP3 UIDL is never reused: the same bytes delivered again after deletion get a new one', async () => {
  const f = await startPop3();
  try {
    const raw = testMessage({ subject: 'same bytes', messageId: 'fixed@example.org' }).raw;
    await f.deliver(raw);
    let c = await f.session();
    const [firstId] = (await uidl(c)).values();
    assert.equal(await c.command('DELE 1'), '+OK Message 1 deleted');
    assert.equal(await c.command('QUIT'), '+OK Bye, 1 messages removed');
    await f.deliver(raw);
    c = await f.session();
    const [secondId] = (await uidl(c)).values();
    assert.ok(firstId && secondId);
    assert.notEqual(secondId, firstId);
  } finally {
    await f.close();
  }
});

test('POP3 RETR marks the message \\Seen for IMAP sessions at once; TOP does not', async () => {
  const f = await startPop3();
  try {
    const read = await f.deliver({ subject: 'read me' });
    const peeked = await f.deliver({ subject: 'only the top' });
    const events = watch(f);
    const c = await f.session();
    assert.match((await retr(c, 1)).status, /^\+OK/);
    // Before QUIT: the flag is in the store and the change was published (IMAP: FETCH FLAGS).
    const [after] = await f.ctx.store.getEntries(f.inbox, [read.uid]);
    assert.ok(after?.flags.includes('\\Seen'));
    assert.ok(after && after.modseq > read.modseq);
    assert.ok(events.some((e) => e.kind === 'flags' && e.mailboxId === f.inbox));
    const flagEvents = events.length;
    assert.match((await c.multi('TOP 2 5')).status, /^\+OK/);
    const [top] = await f.ctx.store.getEntries(f.inbox, [peeked.uid]);
    assert.deepEqual(top?.flags, []);
    // A second RETR of a message already \Seen writes nothing.
    assert.match((await retr(c, 1)).status, /^\+OK/);
    assert.equal(events.length, flagEvents);
  } finally {
    await f.close();
  }
});

test('POP3 retrSetsSeen: false leaves flags alone', async () => {
  const f = await startPop3({ retrSetsSeen: false });
  try {
    const m = await f.deliver();
    const c = await f.session();
    assert.match((await retr(c, 1)).status, /^\+OK/);
    const [after] = await f.ctx.store.getEntries(f.inbox, [m.uid]);
    assert.deepEqual(after?.flags, []);
  } finally {
    await f.close();
  }
});

test('POP3 DELE only marks; QUIT expunges through the same store operation as IMAP EXPUNGE (policy expunge)', async () => {
  const f = await startPop3();
  try {
    const del = await f.deliver({ subject: 'to delete' });
    const keep = await f.deliver({ subject: 'to keep' });
    const events = watch(f);
    const c = await f.session();
    assert.equal(await c.command('DELE 1'), '+OK Message 1 deleted');
    // Marked only: IMAP still sees it, with no \Deleted flag and no event.
    assert.equal((await f.entries()).length, 2);
    assert.equal(events.length, 0);
    assert.equal(await c.command('QUIT'), '+OK Bye, 1 messages removed');
    await c.closed();
    assert.deepEqual((await f.entries()).map((e) => e.uid), [keep.uid]);
    assert.ok(events.some((e) => e.kind === 'expunge' && e.mailboxId === f.inbox));
    const changes = await f.ctx.store.changesSince(f.inbox, keep.modseq, keep.uid);
    assert.deepEqual(changes.expunged, [del.uid]);
  } finally {
    await f.close();
  }
});

test('POP3 QUIT with policy trash moves deleted messages to Trash, keeping their UIDL', async () => {
  const f = await startPop3();
  try {
    await f.ctx.store.updateAccount(f.account.id, { pop3DeletePolicy: 'trash' });
    const m = await f.deliver({ subject: 'to trash' });
    const c = await f.session();
    assert.equal(await c.command('DELE 1'), '+OK Message 1 deleted');
    assert.equal(await c.command('QUIT'), '+OK Bye, 1 messages removed');
    assert.equal((await f.entries()).length, 0);
    const trash = await f.ctx.store.listEntries(await mailboxId(f, 'Trash'));
    assert.equal(trash.length, 1);
    assert.equal(trash[0]?.pid, m.pid);
    assert.equal(trash[0]?.blobHash, m.blobHash);
  } finally {
    await f.close();
  }
});

test('POP3 QUIT with policy hide: POP3 never shows the message again, IMAP still does', async () => {
  const f = await startPop3();
  try {
    await f.ctx.store.updateAccount(f.account.id, { pop3DeletePolicy: 'hide' });
    const hidden = await f.deliver({ subject: 'read on the desktop' });
    const visible = await f.deliver({ subject: 'not yet downloaded' });
    let c = await f.session();
    assert.equal(await c.command('DELE 1'), '+OK Message 1 deleted');
    assert.equal(await c.command('QUIT'), '+OK Bye, 1 messages removed');
    const entries = await f.entries();
    assert.deepEqual(entries.map((e) => [e.uid, e.pop3Hidden]), [[hidden.uid, true], [visible.uid, false]]);
    c = await f.session();
    assert.deepEqual([...(await uidl(c)).entries()], [[1, visible.pid]]);
    assert.match(await c.command('STAT'), new RegExp(`^\\+OK 1 ${visible.size}$`));
  } finally {
    await f.close();
  }
});

test('POP3 dropped connection removes nothing and frees the account for the next session', async () => {
  const f = await startPop3();
  try {
    await f.deliver();
    const events = watch(f);
    const c = await f.session();
    assert.equal(await c.command('DELE 1'), '+OK Message 1 deleted');
    c.destroy();
    await new Promise((r) => setTimeout(r, 200));
    assert.equal((await f.entries()).length, 1);
    assert.equal(events.length, 0);
    const d = await f.session();
    assert.match(await d.command('STAT'), /^\+OK 1 /);
  } finally {
    await f.close();
  }
});

test('POP3 holds one session per account while IMAP-side writes go on unblocked', async () => {
  const f = await startPop3();
  try {
    const m = await f.deliver();
    const c = await f.session();
    const second = await f.connect();
    assert.equal(await second.login(USER, PASSWORD), '-ERR [IN-USE] Another POP3 session is open for this account');
    // What IMAP sessions do during the POP3 session is never refused by the POP3 lock.
    await f.ctx.store.setFlags(f.inbox, [m.uid], 'add', ['\\Flagged']);
    await f.deliver({ subject: 'appended while POP3 is open' });
    assert.equal((await f.entries()).length, 2);
    assert.equal(await c.command('NOOP'), '+OK');
  } finally {
    await f.close();
  }
});

test('POP3 and IMAP-side writes running at once lose and duplicate nothing (invariant 2)', async () => {
  const f = await startPop3();
  try {
    const store = f.ctx.store;
    const archive = await mailboxId(f, 'Archive');
    const initial: MessageEntry[] = [];
    for (let i = 0; i < 40; i++) initial.push(await f.deliver({ subject: `m${i}` }));
    const c = await f.session();
    const count = Number((await c.command('STAT')).split(' ')[1]);
    assert.equal(count, 40);
    // Deterministic choices: IMAP moves every 5th, expunges every 7th (if still there), flags
    // every 3rd and appends 10 new ones, while POP3 retrieves everything and deletes the evens.
    const moved = initial.filter((_, i) => i % 5 === 0).map((e) => e.uid);
    const expunged = initial.filter((_, i) => i % 7 === 0 && i % 5 !== 0).map((e) => e.uid);
    const imapSide = (async () => {
      for (let k = 0; k < 10; k++) {
        await store.setFlags(f.inbox, initial.filter((_, i) => i % 3 === k % 3).map((e) => e.uid), 'add', ['\\Flagged']);
        await store.append(f.inbox, testMessage({ subject: `new ${k}` }));
      }
      await store.move(f.inbox, moved, archive);
      await store.expunge(f.inbox, expunged);
    })();
    const popSide = (async () => {
      for (let n = 1; n <= count; n++) {
        const r = await c.multi(`RETR ${n}`);
        assert.ok(r.status.startsWith('+OK') || r.status === `-ERR Message ${n} was removed by another session`, r.status);
        if (n % 2 === 0) assert.equal(await c.command(`DELE ${n}`), `+OK Message ${n} deleted`);
      }
    })();
    await Promise.all([imapSide, popSide]);
    const quit = await c.command('QUIT');
    const removedByPop = Number(/^\+OK Bye, (\d+) messages removed$/.exec(quit)?.[1]);
    await c.closed();

    // Every message is in exactly one place, or was removed by exactly one side.
    const inboxPids = (await f.entries()).map((e) => e.pid);
    const archivePids = (await store.listEntries(archive)).map((e) => e.pid);
    assert.equal(new Set([...inboxPids, ...archivePids]).size, inboxPids.length + archivePids.length);
    assert.deepEqual(archivePids.sort(), initial.filter((_, i) => i % 5 === 0).map((e) => e.pid).sort());
    const evens = initial.filter((_, i) => (i + 1) % 2 === 0);
    const popRemovable = evens.filter((e) => !moved.includes(e.uid) && !expunged.includes(e.uid));
    assert.equal(removedByPop, popRemovable.length);
    const expectedInbox = 40 + 10 - moved.length - expunged.length - popRemovable.length;
    assert.equal(inboxPids.length, expectedInbox);
    for (const e of popRemovable) assert.ok(!inboxPids.includes(e.pid), `deleted message ${e.uid} still in INBOX`);
    // RETR set \Seen on every message it sent that stayed in INBOX.
    const seen = (await f.entries()).filter((e) => initial.some((i) => i.pid === e.pid));
    for (const e of seen) assert.ok(e.flags.includes('\\Seen') || expunged.includes(e.uid), `uid ${e.uid} not \\Seen`);
  } finally {
    await f.close();
  }
});
