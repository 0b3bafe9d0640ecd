import { strict as assert } from 'node:assert';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ImapFlow } from 'imapflow';
import { openImapSource } from '../../src/import/imap-source.js';
import { openMaildir } from '../../src/import/maildir.js';
import { openMbox } from '../../src/import/mbox-source.js';
import { openPop3Source } from '../../src/import/pop3-source.js';
import type { ImportSource, SourceMessage } from '../../src/import/source.js';
import { dovecotUnavailable, startDovecot } from '../helpers/dovecot.js';
import { FIXTURE_UIDVALIDITY, writeDovecotAccount } from './fixtures.js';

interface Read {
  name: string;
  uidValidity?: number;
  uidNext?: number;
  highestModSeq?: number;
  subscribed?: boolean;
  messages: Array<Omit<SourceMessage, 'raw' | 'kind'> & { subject: string }>;
  skipped: string[];
}

async function readAll(source: ImportSource): Promise<Read[]> {
  const out: Read[] = [];
  for await (const mb of source.mailboxes()) {
    const r: Read = { name: mb.name, messages: [], skipped: [] };
    for (const k of ['uidValidity', 'uidNext', 'highestModSeq', 'subscribed'] as const) if (mb[k] !== undefined) (r as unknown as Record<string, unknown>)[k] = mb[k];
    for await (const m of mb.messages()) {
      if (m.kind === 'skipped') r.skipped.push(m.reason);
      else {
        const { raw, kind: _k, ...rest } = m;
        r.messages.push({ ...rest, subject: /^Subject: (.*?)\r?$/m.exec(raw.toString())?.[1] ?? '' });
      }
    }
    out.push(r);
  }
  await source.close();
  return out;
}

test('Dovecot Maildir with odd file names: letters out of order, another info, a file in new/ and cur/, listed twice, gone', async () => {
  const root = await mkdtemp(join(tmpdir(), 'facteur-maildir-odd-'));
  try {
    for (const d of ['cur', 'new', 'tmp']) await mkdir(join(root, d));
    const files: Array<[string, string]> = [
      ['cur/100.a.host:2,TS', 'one'],
      ['cur/200.b.host:2,S,extra', 'two'],
      ['new/300.c.host', 'three (new)'],
      ['cur/300.c.host:2,S', 'three (cur)'],
      ['new/400.d.host', 'four'],
      ['cur/500.e.host:2,', 'five, not listed'],
      ['new/500.e.host', 'five, not listed (new)'],
      ['cur/050.f.host:2,F', 'zero, not listed'],
    ];
    for (const [f, subject] of files) await writeFile(join(root, f), `Subject: ${subject}\n\nx\n`);
    await writeFile(join(root, 'dovecot-uidlist'), '3 V77 N9\n1 :100.a.host\n2 :200.b.host:2,S\n3 :300.c.host\n4 :400.d.host\n5 :999.gone.host\n6 P7 :100.a.host\n');
    const [inbox] = await readAll(await openMaildir(root));
    assert.deepEqual(inbox!.messages.map((m) => [m.uid, m.subject, m.flags]), [
      [1, 'one', ['\\Deleted', '\\Seen']],
      [2, 'two', ['\\Seen']],
      [3, 'three (cur)', ['\\Seen']],
      [4, 'four', []],
      // Not listed: after the last listed UID, by base (delivery time), cur/ over new/.
      [9, 'zero, not listed', ['\\Flagged']],
      [10, 'five, not listed', []],
    ]);
    assert.equal(inbox!.uidNext, 11);
    assert.deepEqual(inbox!.skipped, []);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('Dovecot Maildir fixture: hierarchy, UIDVALIDITY, UIDs, flags and keywords, UIDLs, subscriptions', async () => {
  const root = await mkdtemp(join(tmpdir(), 'facteur-maildir-'));
  try {
    await writeDovecotAccount(root);
    const source = await openMaildir(root);
    const boxes = await readAll(source);
    assert.deepEqual(boxes.map((b) => b.name), ['INBOX', 'Entwürfe', 'Lists/rust', 'Sent']);
    const inbox = boxes[0]!;
    assert.equal(inbox.uidValidity, FIXTURE_UIDVALIDITY);
    assert.equal(inbox.uidNext, 10);
    assert.equal(inbox.subscribed, true);
    assert.ok(inbox.highestModSeq! >= 2 ** 40);
    assert.deepEqual(inbox.messages.map((m) => [m.uid, m.subject, m.flags, m.pop3Uidl]), [
      [1, 'one', ['\\Seen'], `00000001${FIXTURE_UIDVALIDITY.toString(16).padStart(8, '0')}`],
      [2, 'two', ['\\Flagged', '\\Answered', '\\Seen', '$Forwarded', 'Work'], `00000002${FIXTURE_UIDVALIDITY.toString(16)}`],
      [5, 'five', ['\\Deleted', 'Later'], `00000005${FIXTURE_UIDVALIDITY.toString(16)}`],
      [7, 'seven', [], 'old-uidl-7'],
      [9, 'not listed yet', [], `00000009${FIXTURE_UIDVALIDITY.toString(16)}`],
    ]);
    assert.equal(inbox.messages[0]!.internalDate, Date.UTC(2024, 0, 2, 3, 4, 5));
    assert.equal(boxes[1]!.subscribed, false);
    assert.deepEqual(boxes[1]!.messages.map((m) => [m.uid, m.flags]), [[4, ['\\Draft']]]);
    assert.deepEqual(boxes[2]!.messages.map((m) => m.uid), [10]);
    assert.equal(boxes[2]!.subscribed, true);

    // Plain Maildir reading: no UIDs, no keywords, file-name order.
    const plain = await readAll(await openMaildir(root, { dovecot: 'no' }));
    assert.equal(plain[0]!.uidValidity, undefined);
    assert.deepEqual(plain[0]!.messages.map((m) => [m.uid, m.subject, m.flags]), [
      [undefined, 'one', ['\\Seen']],
      [undefined, 'two', ['\\Flagged', '\\Answered', '\\Seen']],
      [undefined, 'five', ['\\Deleted']],
      [undefined, 'seven', []],
      [undefined, 'not listed yet', []],
    ]);
    // --dovecot yes refuses a folder without dovecot-uidlist.
    await mkdir(join(root, '.Plain', 'cur'), { recursive: true });
    await assert.rejects(readAll(await openMaildir(root, { dovecot: 'yes' })), /no dovecot-uidlist/);
    await assert.rejects(openMaildir(join(root, 'missing')), /not a directory/);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('mbox directory: one mailbox per file, Thunderbird .sbd folders, INBOX', async () => {
  const root = await mkdtemp(join(tmpdir(), 'facteur-mbox-'));
  try {
    await mkdir(join(root, 'Lists.sbd'));
    await writeFile(join(root, 'Inbox'), 'From a Mon Jan  1 10:00:00 2024\nSubject: i\n\nx\n');
    await writeFile(join(root, 'Inbox.msf'), 'not mail');
    await writeFile(join(root, 'Lists.sbd', 'rust.mbox'), 'From a Mon Jan  1 10:00:00 2024\nSubject: r1\n\nx\n\nFrom a Mon Jan  1 10:00:01 2024\nSubject: r2\n\ny\n');
    await writeFile(join(root, 'garbage'), 'not an mbox\n');
    const source = await openMbox(root);
    const boxes = await readAll(source);
    assert.deepEqual(boxes.map((b) => [b.name, b.messages.map((m) => m.subject)]), [['INBOX', ['i']], ['Lists/rust', ['r1', 'r2']], ['garbage', []]]);
    assert.equal(boxes[1]!.messages[1]!.internalDate, Date.UTC(2024, 0, 1, 10, 0, 1));
    assert.match(source.warnings.join('\n'), /garbage: skipped, Not an mbox/);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

const skip = dovecotUnavailable();

test('Live Dovecot: IMAP, POP3 and its Maildir read the same UIDs, flags, UIDLs', { skip: skip ?? false }, async () => {
  const dove = await startDovecot({ bob: 'bob-secret-1' });
  try {
    const c = new ImapFlow({ host: '127.0.0.1', port: dove.imapPort, secure: false, auth: { user: 'bob', pass: 'bob-secret-1' }, logger: false });
    await c.connect();
    await c.mailboxCreate('Lists/rust');
    await c.mailboxCreate('Entwürfe');
    const date = new Date(Date.UTC(2023, 4, 6, 7, 8, 9));
    for (let i = 1; i <= 5; i++) await c.append('INBOX', `Subject: m${i}\r\nFrom: a@example.org\r\n\r\nbody ${i}\r\n`, i % 2 ? ['\\Seen', '$Forwarded'] : ['Work'], date);
    await c.append('Lists/rust', 'Subject: r\r\n\r\nrust\r\n', ['\\Flagged']);
    await c.append('Entwürfe', 'Subject: d\r\n\r\ndraft\r\n', ['\\Draft']);
    await c.mailboxOpen('INBOX');
    await c.messageDelete('2', { uid: true });
    await c.logout();

    const imap = await readAll(await openImapSource({ endpoint: { host: '127.0.0.1', port: dove.imapPort, tls: false }, startTls: false, user: 'bob', password: 'bob-secret-1', pop3UidlFormat: '%08Xu%08Xv' }));
    const inbox = imap.find((b) => b.name === 'INBOX')!;
    assert.deepEqual(imap.map((b) => b.name).sort(), ['Entwürfe', 'INBOX', 'Lists/rust']);
    assert.deepEqual(inbox.messages.map((m) => [m.uid, m.subject, [...m.flags].sort()]), [
      [1, 'm1', ['$Forwarded', '\\Seen']],
      [3, 'm3', ['$Forwarded', '\\Seen']],
      [4, 'm4', ['Work']],
      [5, 'm5', ['$Forwarded', '\\Seen']],
    ]);
    assert.equal(inbox.messages[0]!.internalDate, date.getTime());
    assert.equal(inbox.uidNext, 6);
    assert.ok(inbox.highestModSeq! > 1, 'Dovecot announces CONDSTORE: HIGHESTMODSEQ read');
    assert.equal(imap.find((b) => b.name === 'Lists/rust')!.subscribed, true);

    // Dovecot's own Maildir, read from disk, agrees with what its IMAP server said.
    const disk = await readAll(await openMaildir(dove.maildir('bob'), { dovecot: 'yes' }));
    const dinbox = disk.find((b) => b.name === 'INBOX')!;
    assert.equal(dinbox.uidValidity, inbox.uidValidity);
    assert.deepEqual(dinbox.messages.map((m) => [m.uid, [...m.flags].sort(), m.pop3Uidl]), inbox.messages.map((m) => [m.uid, [...m.flags].sort(), m.pop3Uidl]));
    assert.deepEqual(disk.map((b) => b.name).sort(), ['Entwürfe', 'INBOX', 'Lists/rust']);

    const pop3 = await readAll(await openPop3Source({ endpoint: { host: '127.0.0.1', port: dove.pop3Port, tls: false }, startTls: false, user: 'bob', password: 'bob-secret-1' }));
    assert.deepEqual(pop3.map((b) => b.name), ['INBOX']);
    // Dovecot's UIDLs are what the IMAP source derives from UID and UIDVALIDITY (pop3_uidl_format).
    assert.deepEqual(pop3[0]!.messages.map((m) => m.pop3Uidl), inbox.messages.map((m) => m.pop3Uidl));
    assert.deepEqual(pop3[0]!.messages.map((m) => m.subject), ['m1', 'm3', 'm4', 'm5']);

    await assert.rejects(openImapSource({ endpoint: { host: '127.0.0.1', port: dove.imapPort, tls: false }, startTls: false, user: 'bob', password: 'wrong', pop3UidlFormat: null }), /LOGIN failed/);
    await assert.rejects(openPop3Source({ endpoint: { host: '127.0.0.1', port: dove.pop3Port, tls: false }, startTls: false, user: 'bob', password: 'wrong' }), /PASS/);
  } finally {
    await dove.stop();
  }
});
