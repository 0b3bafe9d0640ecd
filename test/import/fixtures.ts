/**
 * Import fixtures written by the tests: a Dovecot-style Maildir++ tree (dovecot-uidlist version 3,
 * dovecot-keywords, subscriptions) and mbox files.
 */
import { mkdir, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const FIXTURE_UIDVALIDITY = 1_600_000_123;

export interface FixtureMessage {
  uid: number;
  subject: string;
  /** maildir info letters after ":2," (undefined: file in new/ without info). */
  letters?: string;
  /** Recorded POP3 UIDL (P field). */
  pop3Uidl?: string;
  mtime: number;
}

export function fixtureBody(subject: string): string {
  return `From: Alice <alice@example.org>\nTo: bob@example.com\nSubject: ${subject}\nMessage-ID: <${subject.replace(/\W/g, '')}@example.org>\nDate: Mon, 1 Jan 2024 10:00:00 +0000\n\nHello, ${subject}.\n`;
}

/** Writes one Maildir folder; returns nothing, the caller knows what it asked for. */
export async function writeDovecotFolder(
  dir: string,
  messages: readonly FixtureMessage[],
  opts: { uidValidity?: number; nextUid: number; keywords?: string[]; notInUidlist?: string[]; goneFromDisk?: number[] },
): Promise<void> {
  for (const sub of ['cur', 'new', 'tmp']) await mkdir(join(dir, sub), { recursive: true });
  const lines = [`3 V${opts.uidValidity ?? FIXTURE_UIDVALIDITY} N${opts.nextUid} G0123456789abcdef0123456789abcdef`];
  for (const m of messages) {
    const body = fixtureBody(m.subject);
    const base = `${1_700_000_000 + m.uid}.M${m.uid}P1.oldhost,S=${Buffer.byteLength(body)}`;
    lines.push(`${m.uid}${m.pop3Uidl ? ` P${m.pop3Uidl}` : ''} :${base}`);
    if (opts.goneFromDisk?.includes(m.uid)) continue;
    const path = m.letters === undefined ? join(dir, 'new', base) : join(dir, 'cur', `${base}:2,${m.letters}`);
    await writeFile(path, body);
    await utimes(path, m.mtime / 1000, m.mtime / 1000);
  }
  for (const [i, s] of (opts.notInUidlist ?? []).entries()) {
    await writeFile(join(dir, 'new', `${1_800_000_000 + i}.Mnew${i}P1.oldhost`), fixtureBody(s));
  }
  await writeFile(join(dir, 'dovecot-uidlist'), lines.join('\n') + '\n');
  if (opts.keywords) await writeFile(join(dir, 'dovecot-keywords'), opts.keywords.map((k, i) => `${i} ${k}`).join('\n') + '\n');
}

/**
 * A Maildir++ account: INBOX (uids 1, 2, 5, 7; 7 has a recorded UIDL; one new file Dovecot has not
 * listed yet; uid 3 listed but gone from disk), Sent (uids 1-2), "Entwürfe" (modified UTF-7 on
 * disk) and Lists/rust; subscriptions for INBOX, Sent and Lists/rust.
 */
export async function writeDovecotAccount(root: string): Promise<void> {
  const t = Date.UTC(2024, 0, 2, 3, 4, 5);
  await writeDovecotFolder(
    root,
    [
      { uid: 1, subject: 'one', letters: 'S', mtime: t },
      { uid: 2, subject: 'two', letters: 'FRSab', mtime: t + 1000 },
      { uid: 3, subject: 'three', letters: 'S', mtime: t + 2000 },
      { uid: 5, subject: 'five', letters: 'Tc', mtime: t + 3000 },
      { uid: 7, subject: 'seven', pop3Uidl: 'old-uidl-7', mtime: t + 4000 },
    ],
    { nextUid: 9, keywords: ['$Forwarded', 'Work', 'Later'], notInUidlist: ['not listed yet'], goneFromDisk: [3] },
  );
  await writeDovecotFolder(join(root, '.Sent'), [
    { uid: 1, subject: 'sent one', letters: 'S', mtime: t },
    { uid: 2, subject: 'sent two', letters: 'S', mtime: t },
  ], { uidValidity: FIXTURE_UIDVALIDITY + 1, nextUid: 3 });
  await writeDovecotFolder(join(root, '.Entw&APw-rfe'), [{ uid: 4, subject: 'draft', letters: 'D', mtime: t }], { uidValidity: FIXTURE_UIDVALIDITY + 2, nextUid: 5 });
  await writeDovecotFolder(join(root, '.Lists.rust'), [{ uid: 10, subject: 'rust', letters: '', mtime: t }], { uidValidity: FIXTURE_UIDVALIDITY + 3, nextUid: 11 });
  await writeFile(join(root, 'subscriptions'), 'V\t2\n\nINBOX\nSent\nLists\trust\n');
}

/**
 * A Dovecot Maildir INBOX of n generated messages of about `size` bytes each (distinct bodies, so
 * the store cannot deduplicate them), with its dovecot-uidlist. Files are written in parallel
 * groups to keep generation fast.
 */
export async function writeLargeMaildir(root: string, n: number, size = 2048): Promise<void> {
  for (const sub of ['cur', 'new', 'tmp']) await mkdir(join(root, sub), { recursive: true });
  const filler = 'Lorem ipsum dolor sit amet, consectetur adipiscing elit. '.repeat(Math.ceil(size / 57)).slice(0, size);
  const lines = [`3 V${FIXTURE_UIDVALIDITY} N${n + 1}`];
  const GROUP = 256;
  for (let start = 1; start <= n; start += GROUP) {
    const writes: Array<Promise<void>> = [];
    for (let uid = start; uid < Math.min(n + 1, start + GROUP); uid++) {
      const base = `${1_700_000_000 + uid}.M${uid}P1.oldhost`;
      lines.push(`${uid} :${base}`);
      const body = `From: a@example.org\nTo: bob@example.com\nSubject: message ${uid}\nMessage-ID: <${uid}@old.example>\n\n${uid} ${filler}\n`;
      writes.push(writeFile(join(root, 'cur', `${base}:2,S`), body));
    }
    await Promise.all(writes);
  }
  await writeFile(join(root, 'dovecot-uidlist'), lines.join('\n') + '\n');
}
