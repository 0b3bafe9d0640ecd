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
 * Memory: a few dozen bytes a message of the folder being read (see FolderIndex; no string per
 * message unless Dovecot does not list it), and the messages read ahead (READ_AHEAD).
 */
import { createReadStream } from 'node:fs';
import { opendir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { decodeMutf7 } from '../imap/protocol/mutf7.js';
import { HashIndex, StringArena, Uint32List } from '../lib/compact-strings.js';
import { decodeMaildirLevel, formatPop3Uidl, maildirBase, maildirFlags, parseKeywords, parseUidlistHeader, uidlistLineParser, type UidlistEntry, type UidlistHeader } from './dovecot.js';
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
  const decoded = parts.map(decodeMaildirLevel);
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
    // Maildir++ names are escaped like folder names (a '.' in a level is %2E); v2 and fs ones are not.
    const name = parts.map((p) => (plus && !v2 ? decodeMaildirLevel(p) : p.includes('&') ? decodeMutf7(p) : p)).join('/');
    out.add(name.toUpperCase() === 'INBOX' ? 'INBOX' : name);
  }
  return out;
}

/** Maildir info letters in ASCII order, the order of a canonical name: bit i of a mask is letter i. */
const INFO_LETTERS = 'DFPRSTabcdefghijklmnopqrstuvwxyz';

/** A message file name as bits: whether it has an info part (":2,"), and its letters. */
interface NameBits {
  base: string;
  info: boolean;
  letters: number;
  /** Whether base and bits give the name back (else the name is kept as it is). */
  canonical: boolean;
}

function nameBits(name: string): NameBits {
  const base = maildirBase(name);
  if (name.length === base.length) return { base, info: false, letters: 0, canonical: true };
  if (!name.startsWith(':2,', base.length)) return { base, info: false, letters: 0, canonical: false };
  let letters = 0;
  let last = -1;
  let canonical = true;
  for (let i = base.length + 3; i < name.length; i++) {
    const k = INFO_LETTERS.indexOf(name[i]!);
    if (k <= last) canonical = false;
    else letters |= 1 << k;
    last = Math.max(last, k);
  }
  return { base, info: true, letters: letters >>> 0, canonical };
}

function nameFromBits(base: string, info: boolean, letters: number): string {
  if (!info) return base;
  let out = `${base}:2,`;
  for (let k = 0; k < INFO_LETTERS.length; k++) if ((letters >>> k) & 1) out += INFO_LETTERS[k];
  return out;
}

/** State bits of a dovecot-uidlist entry. */
const FOUND = 1;
const IN_NEW = 2;
const HAS_INFO = 4;
const ODD_NAME = 8;

/** A file's path under the folder: "new/<name>" or "cur/<name>". */
const relPath = (name: string, inNew: boolean): string => `${inNew ? 'new' : 'cur'}/${name}`;

/** Bytes a Maildir++ name says it has (",S=<size>"), else a guess. */
function sizeFromName(name: string): number {
  const s = /,S=(\d+)/.exec(name);
  return s ? Number(s[1]) : 4096;
}

/** The lines of a file, read as a stream (only the current line is held). */
async function* fileLines(path: string): AsyncGenerator<string> {
  const lines = createInterface({ input: createReadStream(path, { encoding: 'utf8', highWaterMark: 64 * 1024 }), crlfDelay: Infinity });
  try {
    yield* lines;
  } finally {
    lines.close();
  }
}

/** The header of a dovecot-uidlist, or null when there is none. */
async function readUidlistHeader(path: string): Promise<UidlistHeader | null> {
  try {
    for await (const line of fileLines(path)) return parseUidlistHeader(line);
    return parseUidlistHeader('');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** The entries of a dovecot-uidlist, streamed. */
async function* readUidlist(path: string, header: UidlistHeader): AsyncGenerator<UidlistEntry> {
  const parse = uidlistLineParser(header);
  let first = true;
  for await (const line of fileLines(path)) {
    if (first) {
      first = false;
      continue;
    }
    const e = parse(line);
    if (e !== null) yield e;
  }
}

/**
 * What a folder holds, in memory of a few dozen bytes a message (typed arrays, no string per
 * message): the dovecot-uidlist entries (by the hash of their base: uid, whether their file is
 * there, in new/ or cur/, and its flag letters) and the files it does not list (names in an
 * arena). The uidlist is read again, as a stream, when the messages are read.
 */
interface FolderIndex {
  byBase: HashIndex;
  uids: Uint32List;
  letters: Uint32List;
  state: Uint8Array;
  /** Names that the bits do not give back (letters out of order, another info): rare. */
  oddNames: Map<number, string>;
  unlisted: StringArena;
  unlistedInNew: Uint8Array;
  /** Indexes into unlisted, in the order they are imported (unlistedOrder). */
  order: Uint32Array;
  files: number;
  bytes: number;
  lastUid: number;
}

async function indexFolder(dir: string, uidlistPath: string, header: UidlistHeader | null): Promise<FolderIndex> {
  const byBase = new HashIndex();
  const uids = new Uint32List();
  let lastUid = 0;
  if (header) {
    for await (const e of readUidlist(uidlistPath, header)) {
      // A base listed twice (Dovecot never writes one): the first line keeps it.
      if (byBase.add(e.base, uids.length)) uids.push(e.uid);
      lastUid = e.uid;
    }
  }
  const letters = new Uint32List();
  for (let i = 0; i < uids.length; i++) letters.push(0);
  const state = new Uint8Array(uids.length);
  const oddNames = new Map<number, string>();
  const unlisted = new StringArena();
  let unlistedInNew = new Uint8Array(1024);
  let bytes = 0;
  let files = 0;
  // new/ first: a file in both (a rename in flight) is taken from cur/.
  for (const sub of ['new', 'cur']) {
    const d = join(dir, sub);
    if (!(await isDir(d))) continue;
    for await (const e of await opendir(d)) {
      if (!e.isFile() || e.name.startsWith('.')) continue;
      const bits = nameBits(e.name);
      const i = byBase.get(bits.base);
      if (i >= 0) {
        if ((state[i]! & FOUND) === 0) {
          files++;
          bytes += sizeFromName(e.name);
        }
        state[i] = FOUND | (sub === 'new' ? IN_NEW : 0) | (bits.info ? HAS_INFO : 0) | (bits.canonical ? 0 : ODD_NAME);
        letters.set(i, bits.letters);
        if (bits.canonical) oddNames.delete(i);
        else oddNames.set(i, e.name);
        continue;
      }
      const k = unlisted.push(e.name);
      if (k >= unlistedInNew.length) {
        const grown = new Uint8Array(unlistedInNew.length * 2);
        grown.set(unlistedInNew);
        unlistedInNew = grown;
      }
      unlistedInNew[k] = sub === 'new' ? 1 : 0;
      files++;
      bytes += sizeFromName(e.name);
    }
  }
  const order = unlistedOrder({ unlisted, unlistedInNew });
  files -= unlisted.length - order.length;
  return { byBase, uids, letters, state, oddNames, unlisted, unlistedInNew, order, files, bytes, lastUid };
}

/**
 * The files no uidlist line names, in delivery order (by base: Maildir names start with the
 * delivery time), one per base (cur/ before new/ for a file in both, the new/ one left out).
 */
function unlistedOrder(ix: Pick<FolderIndex, 'unlisted' | 'unlistedInNew'>): Uint32Array {
  const COLON = 0x3a;
  const order = new Uint32Array(ix.unlisted.length);
  for (let i = 0; i < order.length; i++) order[i] = i;
  order.sort((a, b) => ix.unlisted.compare(a, b, COLON) || ix.unlistedInNew[a]! - ix.unlistedInNew[b]! || a - b);
  let n = 0;
  for (let j = 0; j < order.length; j++) {
    if (n > 0 && ix.unlisted.compare(order[n - 1]!, order[j]!, COLON) === 0) continue;
    order[n++] = order[j]!;
  }
  return order.subarray(0, n);
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
    let list: UidlistHeader | null = null;
    let keywords: Array<string | undefined> = [];
    const uidlistPath = join(folder.path, 'dovecot-uidlist');
    if (mode !== 'no') {
      list = await readUidlistHeader(uidlistPath);
      if (list === null && mode === 'yes') throw new Error(`${folder.path}: no dovecot-uidlist (--dovecot yes)`);
      keywords = parseKeywords((await readIfExists(join(folder.path, 'dovecot-keywords'))) ?? '');
    }
    const ix = await indexFolder(folder.path, uidlistPath, list);
    const unknownLetters = new Set<string>();
    const unlistedCount = ix.order.length;
    const firstFree = list ? Math.max(list.nextUid, ix.lastUid + 1) : 0;

    async function* messages(skip?: SkipTest): AsyncIterable<SourceMessage | SkippedMessage> {
      const read = async (rel: string, name: string, uid?: number, pop3Uidl?: string): Promise<SourceMessage | SkippedMessage> => {
        const path = join(folder.path, rel);
        try {
          const [raw, st] = await Promise.all([readFile(path), stat(path)]);
          const f = maildirFlags(name, keywords);
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
      async function* plan(): AsyncGenerator<Step> {
        if (list) {
          // The uidlist again, as a stream: each line finds its file's record by the base's hash.
          for await (const e of readUidlist(uidlistPath, list)) {
            const i = ix.byBase.get(e.base);
            // No file (expunged since Dovecot listed it), or a line the first reading did not have
            // (the uidlist changed meanwhile: Dovecot must be stopped during an import).
            if (i < 0 || ix.uids.get(i) !== e.uid || (ix.state[i]! & FOUND) === 0) continue;
            const st = ix.state[i]!;
            const name = ix.oddNames.get(i) ?? nameFromBits(e.base, (st & HAS_INFO) !== 0, ix.letters.get(i));
            const rel = relPath(name, (st & IN_NEW) !== 0);
            let uidl = e.pop3Uidl;
            if (uidl === undefined) {
              try {
                uidl = formatPop3Uidl(uidlFormat, { uid: e.uid, uidValidity: list.uidValidity, filename: e.base, ...(e.guid === undefined ? {} : { guid: e.guid }) });
              } catch (err) {
                yield { kind: 'skipped', origin: `${folder.name}: ${rel}`, reason: (err as Error).message, uid: e.uid };
                continue;
              }
            }
            if (await skip?.({ uid: e.uid, pop3Uidl: uidl })) continue;
            const u = uidl;
            yield () => read(rel, name, e.uid, u);
          }
        }
        // Files Dovecot has not listed yet get the UIDs it would give them next, in delivery (name)
        // order, so that they too are recognised by a second run; in a plain Maildir, new UIDs.
        let next = list ? firstFree : undefined;
        for (const k of ix.order) {
          const name = ix.unlisted.get(k);
          const rel = relPath(name, ix.unlistedInNew[k] === 1);
          if (list === null || next === undefined) {
            yield () => read(rel, name);
            continue;
          }
          const uid = next++;
          const uidl = safeUidl(uidlFormat, uid, list.uidValidity, maildirBase(name));
          if (await skip?.({ uid, ...(uidl === undefined ? {} : { pop3Uidl: uidl }) })) continue;
          yield () => read(rel, name, uid, uidl);
        }
      }
      // A few reads in flight hide the file system's latency; order is kept.
      const queue: Array<Promise<SourceMessage | SkippedMessage>> = [];
      for await (const step of plan()) {
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
      ...(list ? { uidValidity: list.uidValidity, uidNext: firstFree + unlistedCount, highestModSeq: options.modSeqFloor ?? MAILDIR_MODSEQ_FLOOR } : {}),
      ...(subscriptions ? { subscribed: subscriptions.has(folder.name) } : {}),
      expectedMessages: ix.files,
      expectedBytes: ix.bytes,
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
