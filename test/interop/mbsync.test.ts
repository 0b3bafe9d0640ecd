/**
 * Interoperability with isync's mbsync, the way people use it: every folder synchronised both ways
 * between Facteur over IMAP (STARTTLS, the test certificate pinned with CertificateFile) and a
 * local Maildir tree. Skipped, with the reason, only when mbsync is not installed
 * (apt-get install isync).
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImapFlow } from 'imapflow';
import { installed, PASSWORD, run, startInteropServers, USER, type InteropServers } from './servers.js';

const MBSYNC = installed('mbsync');

interface LocalMessage {
  folder: string;
  /** Path relative to the folder: new/NAME or cur/NAME. */
  file: string;
  subject: string;
  flags: string;
}

/** Every message file of the local Maildir tree (folders found by their cur/ directory). */
async function localMessages(root: string): Promise<LocalMessage[]> {
  const out: LocalMessage[] = [];
  async function walk(rel: string): Promise<void> {
    const dir = join(root, rel);
    const names = await readdir(dir).catch(() => [] as string[]);
    if (names.includes('cur')) {
      for (const sub of ['new', 'cur']) {
        for (const name of await readdir(join(dir, sub))) {
          const text = await readFile(join(dir, sub, name), 'latin1');
          const subject = /^Subject: (.*)$/im.exec(text)?.[1]?.trim() ?? '';
          const info = name.lastIndexOf(':2,');
          out.push({ folder: rel, file: `${sub}/${name}`, subject, flags: info >= 0 ? name.slice(info + 3) : '' });
        }
      }
    }
    for (const name of names) {
      if (['cur', 'new', 'tmp'].includes(name) || name.startsWith('.')) continue;
      await walk(rel === '' ? name : `${rel}/${name}`);
    }
  }
  await walk('');
  return out;
}

/** Sets Maildir flags on a message file the way a mail reader does: moved to cur/ and renamed
 * with the flags in the info part, in ASCII order (Maildir's convention). */
async function setLocalFlags(root: string, m: LocalMessage, flags: string): Promise<void> {
  const base = m.file.slice(4).replace(/:2,.*$/, '');
  const sorted = [...new Set([...m.flags, ...flags])].sort().join('');
  await rename(join(root, m.folder, m.file), join(root, m.folder, 'cur', `${base}:2,${sorted}`));
}

/** What the server holds, in a comparable form: per mailbox, uid, flags, modseq and subject. */
async function serverState(s: InteropServers): Promise<string> {
  const snap = await s.snapshot();
  const rows: string[] = [];
  for (const [name, entries] of [...snap].sort(([a], [b]) => a.localeCompare(b))) {
    const box = await s.mailbox(name);
    rows.push(`${name} uidvalidity=${box?.uidValidity} uidnext=${box?.uidNext} modseq=${box?.highestModSeq}`);
    for (const e of entries) rows.push(`  ${e.uid} ${e.modseq} [${[...e.flags].sort().join(' ')}] ${e.subject}`);
  }
  return rows.join('\n');
}

test(
  'mbsync syncs every folder both ways: first sync downloads the tree, local flags, deletions and new files reach the server, a third sync changes nothing',
  { skip: MBSYNC ? false : 'mbsync is not installed (apt-get install isync)', timeout: 180_000 },
  async () => {
    const s = await startInteropServers();
    const dir = await mkdtemp(join(tmpdir(), 'facteur-mbsync-'));
    try {
      // Mail arrives over SMTP into INBOX; a client files mail into a two-level hierarchy.
      for (const subject of ['inbox one', 'inbox two', 'inbox three']) await s.sendMail(subject);
      const imap = new ImapFlow({ host: '127.0.0.1', port: s.ports.imap, secure: false, auth: { user: USER, pass: PASSWORD }, logger: false, tls: { rejectUnauthorized: false } });
      await imap.connect();
      try {
        await imap.mailboxCreate('Work');
        await imap.mailboxCreate('Work/Projects');
        const msg = (subject: string) => `From: colleague@example.test\r\nTo: ${USER}\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/ /g, '.')}@example.test>\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\n${subject} body\r\n`;
        await imap.append('Work', msg('work note'), ['\\Flagged']);
        await imap.append('Work/Projects', msg('project plan'));
      } finally {
        await imap.logout();
      }

      const maildir = join(dir, 'Mail');
      await mkdir(maildir, { recursive: true });
      const rc = join(dir, 'mbsyncrc');
      await writeFile(
        rc,
        [
          'IMAPAccount facteur',
          'Host 127.0.0.1',
          `Port ${s.ports.imap}`,
          `User ${USER}`,
          `Pass "${PASSWORD}"`,
          'SSLType STARTTLS',
          // The test certificate, trusted as a host certificate (matched exactly, whatever its
          // name and issuer); no system CAs.
          `CertificateFile ${s.certFile}`,
          'SystemCertificates no',
          'AuthMechs LOGIN',
          '',
          'IMAPStore remote',
          'Account facteur',
          '',
          'MaildirStore local',
          `Path ${maildir}/`,
          `Inbox ${maildir}/INBOX`,
          'SubFolders Verbatim',
          '',
          'Channel everything',
          'Far :remote:',
          'Near :local:',
          'Patterns *',
          'Create Both',
          'Expunge Both',
          'SyncState *',
          '',
        ].join('\n'),
      );
      const sync = async (label: string): Promise<string> => {
        const r = await run('mbsync', ['-c', rc, '-V', '-a'], { env: { HOME: dir }, timeoutMs: 60_000 });
        assert.equal(r.code, 0, `${label} sync failed (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
        return `${r.stdout}\n${r.stderr}`;
      };

      // First sync: the whole tree arrives, hierarchy as directories.
      await sync('first');
      let local = await localMessages(maildir);
      const where = (l: LocalMessage[]) => l.map((m) => `${m.folder}: ${m.subject} [${m.flags}]`).sort();
      assert.deepEqual(
        where(local),
        ['INBOX: inbox one []', 'INBOX: inbox three []', 'INBOX: inbox two []', 'Work/Projects: project plan []', 'Work: work note [F]'],
      );

      // Local changes, as a Maildir mail reader makes them.
      const one = local.find((m) => m.subject === 'inbox one')!;
      const two = local.find((m) => m.subject === 'inbox two')!;
      await setLocalFlags(maildir, one, 'S');
      await setLocalFlags(maildir, two, 'T');
      const written = [
        'From: carol@example.test',
        'To: friend@example.test',
        'Subject: written locally',
        'Message-ID: <written.locally.1@client.example.test>',
        'Date: Fri, 27 Nov 2026 11:00:00 +0000',
        '',
        'Drafted offline.',
        '',
      ].join('\n');
      await writeFile(join(maildir, 'Work/Projects/new', `${Date.now()}.M1P${process.pid}.testhost`), written);

      const before = await s.snapshot();
      const projectsBefore = before.get('Work/Projects')!.length;
      await sync('second');

      const after = await s.snapshot();
      const inbox = after.get('INBOX')!;
      assert.deepEqual(inbox.map((e) => e.subject).sort(), ['inbox one', 'inbox three'], 'the message deleted locally is expunged on the server');
      assert.ok(inbox.find((e) => e.subject === 'inbox one')!.flags.includes('\\Seen'), 'the local S flag became \\Seen');
      assert.ok(!inbox.find((e) => e.subject === 'inbox three')!.flags.includes('\\Seen'));
      const projects = after.get('Work/Projects')!;
      assert.equal(projects.length, projectsBefore + 1);
      assert.deepEqual(projects.map((e) => e.subject).sort(), ['project plan', 'written locally']);
      assert.equal(projects.filter((e) => e.messageId === '<written.locally.1@client.example.test>').length, 1);
      assert.ok(after.get('Work')!.find((e) => e.subject === 'work note')!.flags.includes('\\Flagged'));
      // Nothing went anywhere else.
      const total = [...after.values()].reduce((n, l) => n + l.length, 0);
      assert.equal(total, 5);

      local = await localMessages(maildir);
      assert.deepEqual(
        where(local),
        ['INBOX: inbox one [S]', 'INBOX: inbox three []', 'Work/Projects: project plan []', 'Work/Projects: written locally []', 'Work: work note [F]'],
      );

      // Third sync: both sides agree, so nothing changes on either (same UIDs, flags, modseqs).
      const serverBefore = await serverState(s);
      const filesBefore = (await localMessages(maildir)).map((m) => `${m.folder}/${m.file}`).sort();
      await sync('third');
      assert.equal(await serverState(s), serverBefore);
      assert.deepEqual((await localMessages(maildir)).map((m) => `${m.folder}/${m.file}`).sort(), filesBefore);
    } finally {
      await s.close();
      await rm(dir, { recursive: true, force: true });
    }
  },
);
