/**
 * `facteur export account ADDRESS --format maildir|mbox OUT`: one account's mail in the formats
 * other servers and `facteur import` read, one message in memory at a time.
 *
 * - maildir: a Maildir++ tree (INBOX at the top, `.Parent.Child` for the others, each level in
 *   modified UTF-7 as Dovecot writes names, then a '.' or '%' in it written %2E / %25: what
 *   `facteur import maildir` reads back to the same names), every message in cur/ named
 *   `<internaldate>.M<uid>.facteur,S=<size>:2,<flags>` with the mtime set to its INTERNALDATE;
 *   flags D F R S T (the Maildir letters for \Draft \Flagged \Answered \Seen \Deleted) and
 *   keywords as letters a-z listed in dovecot-keywords, and dovecot-uidlist with the UIDVALIDITY,
 *   UIDs and POP3 UIDLs, as Dovecot keeps them.
 * - mbox: one mboxrd file per mailbox, `NAME.mbox` (a '/' in the name is a directory); lines
 *   starting with `>*From ` get one more '>', line ends are LF, and Status: / X-Status: /
 *   X-Keywords: carry the flags.
 */
import { createWriteStream } from 'node:fs';
import type { WriteStream } from 'node:fs';
import { once } from 'node:events';
import { mkdir, utimes, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { encodeMaildirLevel } from '../import/dovecot.js';
import type { MailStore, MessageEntry } from '../store/types.js';

export type AccountExportFormat = 'maildir' | 'mbox';

export interface AccountExportSummary {
  mailboxes: number;
  messages: number;
}

const MAILDIR_LETTER: Readonly<Record<string, string>> = { '\\Draft': 'D', '\\Flagged': 'F', '\\Answered': 'R', '\\Seen': 'S', '\\Deleted': 'T' };
/** Dovecot maps at most 26 keywords per folder to the letters a-z; further ones are dropped. */
const MAX_KEYWORD_LETTERS = 26;

function maildirFolder(root: string, name: string): string {
  if (name === 'INBOX') return root;
  const enc = name.split('/').map(encodeMaildirLevel);
  return join(root, `.${enc.join('.')}`);
}

async function put(out: WriteStream, data: string | Buffer): Promise<void> {
  if (!out.write(data)) await once(out, 'drain');
}

async function close(out: WriteStream): Promise<void> {
  out.end();
  await once(out, 'finish');
}

async function exportMaildirBox(store: MailStore, dir: string, mailbox: { id: number; uidValidity: number; uidNext: number }, entries: MessageEntry[]): Promise<void> {
  for (const sub of ['cur', 'new', 'tmp']) await mkdir(join(dir, sub), { recursive: true });
  const keywords: string[] = [];
  const uidlist = createWriteStream(join(dir, 'dovecot-uidlist'));
  await put(uidlist, `3 V${mailbox.uidValidity} N${mailbox.uidNext}\n`);
  for (const e of entries) {
    let letters = '';
    for (const f of e.flags) {
      const system = MAILDIR_LETTER[f];
      if (system !== undefined) {
        letters += system;
        continue;
      }
      if (f.startsWith('\\')) continue;
      let i = keywords.indexOf(f);
      if (i < 0 && keywords.length < MAX_KEYWORD_LETTERS) i = keywords.push(f) - 1;
      if (i >= 0) letters += String.fromCharCode(0x61 + i);
    }
    const base = `${Math.floor(e.internalDate / 1000)}.M${e.uid}.facteur,S=${e.size}`;
    const path = join(dir, 'cur', `${base}:2,${[...letters].sort().join('')}`);
    await writeFile(path, await store.readBlob(e.blobHash));
    const when = new Date(e.internalDate);
    await utimes(path, when, when);
    await put(uidlist, `${e.uid} P${e.pid} :${base}\n`);
  }
  await close(uidlist);
  await writeFile(join(dir, 'dovecot-keywords'), keywords.map((k, i) => `${i} ${k}\n`).join(''));
}

/** asctime() form of the From_ line date (UTC). */
function fromLineDate(ms: number): string {
  const d = new Date(ms);
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${days[d.getUTCDay()]} ${months[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, ' ')} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} ${d.getUTCFullYear()}`;
}

/** One message as an mboxrd record: From_ line, status headers, escaped body, blank line. */
export function mboxrdRecord(raw: Buffer, e: Pick<MessageEntry, 'flags' | 'internalDate'>): Buffer {
  const text = raw.toString('latin1').replace(/\r\n/g, '\n');
  // The header section with its last line end; the body starts at the empty line.
  const split = text.indexOf('\n\n');
  const headerEnd = split < 0 ? text.length : split + 1;
  // Status fields of another program would contradict ours.
  const header = text.slice(0, headerEnd).replace(/^(status|x-status|x-keywords):.*\n(?:[ \t].*\n)*/gim, '');
  const flags = new Set(e.flags);
  const status = `Status: ${flags.has('\\Seen') ? 'R' : ''}O\n`;
  const xs = [['\\Answered', 'A'], ['\\Flagged', 'F'], ['\\Draft', 'T'], ['\\Deleted', 'D']].filter(([f]) => flags.has(f!)).map(([, l]) => l).join('');
  const keywords = e.flags.filter((f) => !f.startsWith('\\'));
  let body = header + status + (xs === '' ? '' : `X-Status: ${xs}\n`) + (keywords.length === 0 ? '' : `X-Keywords: ${keywords.join(' ')}\n`) + text.slice(headerEnd);
  // mboxrd: every line that is ">"* then "From " gets one more ">", so a reader can undo it.
  body = body.replace(/^(>*From )/gm, '>$1');
  if (!body.endsWith('\n')) body += '\n';
  return Buffer.from(`From MAILER-DAEMON ${fromLineDate(e.internalDate)}\n${body}\n`, 'latin1');
}

export async function exportAccount(store: MailStore, address: string, format: AccountExportFormat, out: string): Promise<AccountExportSummary> {
  const account = await store.getAccountByAddress(address);
  if (account === null) throw new Error(`No account ${address}`);
  const sum: AccountExportSummary = { mailboxes: 0, messages: 0 };
  await mkdir(out, { recursive: true });
  for (const m of await store.listMailboxes(account.id)) {
    const entries = await store.listEntries(m.id);
    sum.mailboxes += 1;
    sum.messages += entries.length;
    if (format === 'maildir') {
      await exportMaildirBox(store, maildirFolder(out, m.name), m, entries);
      continue;
    }
    const path = join(out, `${m.name}.mbox`);
    await mkdir(dirname(path), { recursive: true });
    const file = createWriteStream(path);
    for (const e of entries) await put(file, mboxrdRecord(await store.readBlob(e.blobHash), e));
    await close(file);
  }
  if (format === 'maildir') {
    // Maildir++: the subscribed folders, by their folder names without the leading dot.
    const subs = (await store.listSubscriptions(account.id)).filter((n) => n !== 'INBOX');
    await writeFile(join(out, 'subscriptions'), subs.map((n) => `${maildirFolder('', n).slice(1)}\n`).join(''));
  }
  return sum;
}
