/**
 * A Maildir tree as an import source, plain or kept by Dovecot.
 *
 * Layouts: Maildir++ (the root is INBOX, `.Sent`, `.Lists.rust` are "Sent", "Lists/rust", names
 * in modified UTF-7 as Dovecot writes them, RFC 3501 §5.1.3) and "fs" (every directory holding
 * cur/ is a mailbox named by its path). Auto-detected: any `.name/cur` under the root means
 * Maildir++.
 *
 * With Dovecot's files (dovecot-uidlist, dovecot-keywords, subscriptions) the UIDVALIDITY, the
 * UIDs, the keywords, the recorded POP3 UIDLs and the subscriptions are kept; without them the
 * messages get new UIDs in file-name order (which starts with the delivery time).
 *
 * Memory: one directory listing (names only) and one message at a time.
 */
import { opendir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeMutf7 } from '../imap/protocol/mutf7.js';
import { formatPop3Uidl, maildirBase, maildirFlags, parseKeywords, parseUidlistHeader, uidlistEntries, type UidlistHeader } from './dovecot.js';
import { toCrlf, type ImportSource, type SkipTest, type SkippedMessage, type SourceMailbox, type SourceMessage } from './source.js';

export type DovecotMode = 'auto' | 'yes' | 'no';

export interface MaildirOptions {
  /** Read Dovecot's files: 'auto' when present, 'yes' requires dovecot-uidlist in every mailbox. */
  dovecot?: DovecotMode;
  /** Dovecot's pop3_uidl_format, for messages without a recorded UIDL (default `%08Xu%08Xv`). */
  pop3UidlFormat?: string;
  /** HIGHESTMODSEQ floor for mailboxes whose UIDVALIDITY is kept (docs/operations.md). */
  modSeqFloor?: number;
}

/** Message files read ahead of the importer (each at most one message in memory). */
const READ_AHEAD = 16;

export const DEFAULT_POP3_UIDL_FORMAT = '%08Xu%08Xv';

/**
 * A Dovecot Maildir has its MODSEQs in dovecot.index, a binary file this importer does not read.
 * A client that cached HIGHESTMODSEQ from Dovecot must never see a lower one here (RFC 7162 §3.1.2
 * would let it miss changes), and a higher one only costs it one full flag resync. Mod-sequences
 * grow by one per change to a mailbox; 2^40 is over a billion changes a day for three years.
 */
export const MAILDIR_MODSEQ_FLOOR = 2 ** 40;

function safeUidl(format: string, uid: number, uidValidity: number, filename: string): string | undefined {
  try {
    return formatPop3Uidl(format, { uid, uidValidity, filename });
  } catch {
    return undefined;
  }
}

async function isDir(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

async function readIfExists(path: string): Promise<string | null> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

interface FolderDir {
  name: string;
  path: string;
}

/** Maildir++ folder name (without the leading dot) to a Facteur name. */
function maildirPlusName(dirName: string): string {
  const parts = dirName.slice(1).split('.');
  const decoded = parts.map((p) => (p.includes('&') ? decodeMutf7(p) : p));
  if (decoded[0]?.toUpperCase() === 'INBOX' && decoded.length === 1) return 'INBOX';
  return decoded.join('/');
}

async function listFolders(root: string): Promise<FolderDir[]> {
  const folders: FolderDir[] = [];
  if (await isDir(join(root, 'cur'))) folders.push({ name: 'INBOX', path: root });
  const names: string[] = [];
  for await (const d of await opendir(root)) if (d.isDirectory()) names.push(d.name);
  names.sort();
  const plus = names.filter((n) => n.startsWith('.') && n !== '.' && n !== '..');
  let isPlus = false;
  for (const n of plus) if (await isDir(join(root, n, 'cur'))) isPlus = true;
  if (isPlus) {
    for (const n of plus) if (await isDir(join(root, n, 'cur'))) folders.push({ name: maildirPlusName(n), path: join(root, n) });
  } else {
    const walk = async (dir: string, prefix: string): Promise<void> => {
      const subs: string[] = [];
      for await (const d of await opendir(dir)) {
        if (d.isDirectory() && !['cur', 'new', 'tmp'].includes(d.name) && !d.name.startsWith('.')) subs.push(d.name);
      }
      subs.sort();
      for (const s of subs) {
        const name = prefix === '' ? s : `${prefix}/${s}`;
        const path = join(dir, s);
        if (await isDir(join(path, 'cur'))) folders.push({ name: name.toUpperCase() === 'INBOX' ? 'INBOX' : name, path });
        await walk(path, name);
      }
    };
    await walk(root, '');
  }
  // Parents before children; INBOX first.
  folders.sort((a, b) => (a.name === 'INBOX' ? -1 : b.name === 'INBOX' ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const seen = new Set<string>();
  return folders.filter((f) => (seen.has(f.name) ? false : (seen.add(f.name), true)));
}

/** Dovecot's subscriptions file: version 2 (`V\t2`, then names with TAB as separator) or old
 * (one name per line, the namespace separator '.' for Maildir++). */
function parseSubscriptions(text: string, plus: boolean): Set<string> {
  const lines = text.split('\n').map((l) => l.replace(/\r$/, ''));
  const v2 = lines[0] === 'V\t2';
  const out = new Set<string>();
  for (const line of v2 ? lines.slice(1) : lines) {
    if (line === '') continue;
    const parts = v2 ? line.split('\t') : plus ? line.split('.') : line.split('/');
    const name = parts.map((p) => (p.includes('&') ? decodeMutf7(p) : p)).join('/');
    out.add(name.toUpperCase() === 'INBOX' ? 'INBOX' : name);
  }
  return out;
}

/** listMessageFiles values: a name in cur/, or "new/" and a name in new/. */
const relPath = (stored: string): string => (stored.startsWith('new/') ? stored : `cur/${stored}`);
const fileName = (stored: string): string => (stored.startsWith('new/') ? stored.slice(4) : stored);

async function listMessageFiles(dir: string): Promise<Map<string, string>> {
  // base -> "cur/<name>" or "new/<name>"; cur wins when a file is in both (a rename in flight).
  // base -> file name; the base is a slice of the name, so both share one string.
  const files = new Map<string, string>();
  for (const sub of ['new', 'cur']) {
    const d = join(dir, sub);
    if (!(await isDir(d))) continue;
    for await (const e of await opendir(d)) {
      if (!e.isFile() || e.name.startsWith('.')) continue;
      files.set(maildirBase(e.name), sub === 'new' ? `new/${e.name}` : e.name);
    }
  }
  return files;
}

export async function openMaildir(root: string, options: MaildirOptions = {}): Promise<ImportSource> {
  if (!(await isDir(root))) throw new Error(`${root} is not a directory`);
  const mode = options.dovecot ?? 'auto';
  const uidlFormat = options.pop3UidlFormat ?? DEFAULT_POP3_UIDL_FORMAT;
  const warnings: string[] = [];
  const folders = await listFolders(root);
  if (folders.length === 0) throw new Error(`${root} holds no Maildir (no cur/ directory in it or its folders)`);
  const plus = folders.some((f) => f.path !== root && f.path.slice(root.length).replace(/^\/+/, '').startsWith('.'));
  const subsText = mode === 'no' ? null : await readIfExists(join(root, 'subscriptions'));
  const subscriptions = subsText === null ? null : parseSubscriptions(subsText, plus);

  async function openFolder(folder: FolderDir): Promise<SourceMailbox> {
    let uidlist: UidlistHeader | null = null;
    let uidlistText = '';
    let keywords: Array<string | undefined> = [];
    if (mode !== 'no') {
      const text = await readIfExists(join(folder.path, 'dovecot-uidlist'));
      if (text === null) {
        if (mode === 'yes') throw new Error(`${folder.path}: no dovecot-uidlist (--dovecot yes)`);
      } else {
        uidlist = parseUidlistHeader(text);
        uidlistText = text;
      }
      keywords = parseKeywords((await readIfExists(join(folder.path, 'dovecot-keywords'))) ?? '');
    }
    const files = await listMessageFiles(folder.path);
    let bytes = 0;
    for (const name of files.values()) {
      const s = /,S=(\d+)/.exec(name);
      bytes += s ? Number(s[1]) : 4096;
    }
    const unknownLetters = new Set<string>();
    const list = uidlist;
    let unlisted = files.size;
    let lastUid = 0;
    if (list) {
      for (const e of uidlistEntries(uidlistText, list)) {
        if (files.has(e.base)) unlisted--;
        lastUid = e.uid;
      }
    }
    const firstFree = list ? Math.max(list.nextUid, lastUid + 1) : 0;

    async function* messages(skip?: SkipTest): AsyncIterable<SourceMessage | SkippedMessage> {
      const read = async (stored: string, uid?: number, pop3Uidl?: string): Promise<SourceMessage | SkippedMessage> => {
        const rel = relPath(stored);
        const path = join(folder.path, rel);
        try {
          const [raw, st] = await Promise.all([readFile(path), stat(path)]);
          const f = maildirFlags(fileName(stored), keywords);
          for (const l of f.unknownLetters) unknownLetters.add(l);
          return {
            kind: 'message',
            raw: toCrlf(raw),
            flags: f.flags,
            // Dovecot's received date for Maildir is the file's mtime.
            internalDate: Math.floor(st.mtimeMs),
            origin: `${folder.name}: ${rel}`,
            ...(uid === undefined ? {} : { uid }),
            ...(pop3Uidl === undefined ? {} : { pop3Uidl }),
          };
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          return { kind: 'skipped', origin: `${folder.name}: ${rel}`, reason: code === 'ENOENT' ? 'file vanished while importing' : `cannot read: ${code ?? (err as Error).message}`, ...(uid === undefined ? {} : { uid }) };
        }
      };
      type Step = SkippedMessage | (() => Promise<SourceMessage | SkippedMessage>);
      function* plan(): Generator<Step> {
        if (list) {
          for (const e of uidlistEntries(uidlistText, list)) {
            const rel = files.get(e.base);
            if (rel === undefined) continue; // expunged since Dovecot listed it
            files.delete(e.base);
            let uidl = e.pop3Uidl;
            if (uidl === undefined) {
              try {
                uidl = formatPop3Uidl(uidlFormat, { uid: e.uid, uidValidity: list.uidValidity, filename: e.base, ...(e.guid === undefined ? {} : { guid: e.guid }) });
              } catch (err) {
                yield { kind: 'skipped', origin: `${folder.name}: ${relPath(rel)}`, reason: (err as Error).message, uid: e.uid };
                continue;
              }
            }
            if (skip?.({ uid: e.uid, pop3Uidl: uidl })) continue;
            const u = uidl;
            yield () => read(rel, e.uid, u);
          }
        }
        // Files Dovecot has not listed yet get the UIDs it would give them next, in delivery (name)
        // order, so that they too are recognised by a second run; in a plain Maildir, new UIDs.
        let next = list ? firstFree : undefined;
        for (const rel of [...files.values()].sort((a, b) => (fileName(a) < fileName(b) ? -1 : 1))) {
          if (list === null || next === undefined) {
            yield () => read(rel);
            continue;
          }
          const uid = next++;
          const uidl = safeUidl(uidlFormat, uid, list.uidValidity, maildirBase(fileName(rel)));
          if (skip?.({ uid, ...(uidl === undefined ? {} : { pop3Uidl: uidl }) })) continue;
          yield () => read(rel, uid, uidl);
        }
      }
      // A few reads in flight hide the file system's latency; order is kept.
      const queue: Array<Promise<SourceMessage | SkippedMessage>> = [];
      for (const step of plan()) {
        queue.push(typeof step === 'function' ? step() : Promise.resolve(step));
        if (queue.length >= READ_AHEAD) yield await queue.shift()!;
      }
      while (queue.length > 0) yield await queue.shift()!;
      if (unknownLetters.size > 0) {
        warnings.push(`${folder.name}: keyword letters ${[...unknownLetters].sort().join('')} are not in dovecot-keywords; left out`);
      }
    }

    return {
      name: folder.name,
      ...(list ? { uidValidity: list.uidValidity, uidNext: firstFree + unlisted, highestModSeq: options.modSeqFloor ?? MAILDIR_MODSEQ_FLOOR } : {}),
      ...(subscriptions ? { subscribed: subscriptions.has(folder.name) } : {}),
      expectedMessages: files.size,
      expectedBytes: bytes,
      messages,
    };
  }

  return {
    description: `maildir ${root}`,
    warnings,
    async *mailboxes() {
      for (const f of folders) yield await openFolder(f);
    },
    async close() {},
  };
}
