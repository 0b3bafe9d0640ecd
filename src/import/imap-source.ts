/**
 * A live IMAP server as an import source: a small client of our own (RFC 9051 / RFC 3501 subset)
 * that lists the folders, EXAMINEs each one (read-only: nothing changes on the old server, not
 * even \Recent, RFC 3501 §6.3.2) and fetches the messages in bounded batches.
 *
 * Invariants:
 * - Memory: one pass of (UID, RFC822.SIZE) per folder, then fetches of at most FETCH_BATCH_BYTES
 *   (or one message when it is larger), so a folder of any size is read in bounded memory.
 * - The messages of a folder are yielded in ascending UID order, with the folder's UIDVALIDITY,
 *   UIDNEXT and (CONDSTORE servers, RFC 7162 §3.1.2.1) HIGHESTMODSEQ.
 * - Literals are length-checked (MAX_LITERAL); a response the parser cannot read ends the import
 *   with an error rather than guessing.
 */
import { decodeMutf7 } from '../imap/protocol/mutf7.js';
import { LineSocket, type Endpoint } from './connection.js';
import { formatPop3Uidl } from './dovecot.js';
import type { ImportSource, SkipTest, SkippedMessage, SourceMailbox, SourceMessage } from './source.js';

/** A message larger than this is skipped (with its reason in the summary) rather than buffered. */
export const MAX_LITERAL = 256 * 1024 * 1024;
/** Bytes of message data asked for in one UID FETCH. */
export const FETCH_BATCH_BYTES = 8 * 1024 * 1024;
export const FETCH_BATCH_COUNT = 500;

/** A parsed response value: atom or quoted string, literal, NIL, or parenthesised list. */
export type ImapValue = string | Buffer | null | ImapValue[];

export interface ImapResponse {
  /** '*', '+' or the tag. */
  tag: string;
  /** Text segments with the literals between them: text, literal, text, ... */
  segments: Buffer[];
}

/** Reads values from a response: literals are spliced in where `{n}` ended a text segment. */
export class ValueReader {
  private si = 0;
  private pos = 0;
  constructor(private readonly segments: readonly Buffer[], start = 0) {
    this.pos = start;
  }

  private get text(): Buffer {
    return this.segments[this.si] ?? Buffer.alloc(0);
  }

  private skipSpaces(): void {
    while (this.text[this.pos] === 32) this.pos++;
  }

  atEnd(): boolean {
    this.skipSpaces();
    return this.pos >= this.text.length && this.si >= this.segments.length - 1;
  }

  value(): ImapValue {
    this.skipSpaces();
    const t = this.text;
    const c = t[this.pos];
    if (c === undefined) throw new Error('Cannot parse IMAP response: value expected at the end of the line');
    if (c === 40) {
      // (
      this.pos++;
      const list: ImapValue[] = [];
      for (;;) {
        this.skipSpaces();
        if (this.text[this.pos] === 41) {
          this.pos++;
          return list;
        }
        if (this.pos >= this.text.length) throw new Error('Cannot parse IMAP response: list not closed');
        list.push(this.value());
      }
    }
    if (c === 34) {
      // quoted string (RFC 9051 §4.3): \" and \\ escapes
      let out = '';
      let i = this.pos + 1;
      for (;;) {
        const ch = t[i];
        if (ch === undefined) throw new Error('Cannot parse IMAP response: quoted string not closed');
        if (ch === 34) break;
        if (ch === 92) i++;
        out += String.fromCharCode(t[i]!);
        i++;
      }
      this.pos = i + 1;
      return Buffer.from(out, 'latin1').toString('utf8');
    }
    if (c === 123) {
      // {n} ends this segment; the next segment is the literal
      const m = /^\{(\d+)\+?\}$/.exec(t.subarray(this.pos).toString('latin1'));
      const literal = this.segments[this.si + 1];
      if (!m || literal === undefined) throw new Error('Cannot parse IMAP response: bad literal');
      this.si += 2;
      this.pos = 0;
      return literal;
    }
    let i = this.pos;
    // Atom, with '[...]' kept inside (BODY[] and friends).
    let depth = 0;
    while (i < t.length) {
      const ch = t[i]!;
      if (ch === 91) depth++;
      else if (ch === 93) depth--;
      else if (depth === 0 && (ch === 32 || ch === 40 || ch === 41)) break;
      i++;
    }
    const atom = t.subarray(this.pos, i).toString('utf8');
    this.pos = i;
    return atom.toUpperCase() === 'NIL' ? null : atom;
  }
}

const asText = (v: ImapValue | undefined): string => (typeof v === 'string' ? v : Buffer.isBuffer(v) ? v.toString('utf8') : '');

/** IMAP quoted string or literal for a command argument (RFC 9051 §4.3). */
function quote(s: string): string {
  if (/[\r\n\0]/.test(s)) throw new Error('A CR, LF or NUL cannot be sent in an IMAP string');
  return `"${s.replace(/[\\"]/g, (m) => `\\${m}`)}"`;
}

const MONTHS: Record<string, number> = { Jan: 0, Feb: 1, Mar: 2, Apr: 3, May: 4, Jun: 5, Jul: 6, Aug: 7, Sep: 8, Oct: 9, Nov: 10, Dec: 11 };

/** INTERNALDATE "17-Jul-1996 02:44:25 -0700" (RFC 9051 §9 date-time) to epoch ms. */
export function parseInternalDate(s: string): number | undefined {
  const m = /^ ?(\d{1,2})-([A-Z][a-z]{2})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)$/.exec(s);
  if (!m || MONTHS[m[2]!] === undefined) return undefined;
  const t = Date.UTC(Number(m[3]), MONTHS[m[2]!]!, Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6]));
  const off = (Number(m[8]) * 60 + Number(m[9])) * 60_000;
  return m[7] === '+' ? t - off : t + off;
}

export class ImapError extends Error {}

export class ImapClient {
  private tagN = 0;
  capabilities = new Set<string>();

  private constructor(private readonly conn: LineSocket) {}

  static async connect(ep: Endpoint, startTls: boolean): Promise<ImapClient> {
    const conn = await LineSocket.open(ep);
    const client = new ImapClient(conn);
    const greeting = await client.readResponse();
    const text = greeting.segments[0]!.toString('latin1');
    if (/^\* BYE/i.test(text)) throw new ImapError(`The server refused the connection: ${text}`);
    if (startTls) {
      await client.command('STARTTLS');
      await conn.startTls(ep);
    }
    await client.refreshCapabilities();
    return client;
  }

  private async readResponse(): Promise<ImapResponse> {
    const segments: Buffer[] = [];
    for (;;) {
      const line = await this.conn.line();
      segments.push(line);
      const m = /\{(\d+)\+?\}$/.exec(line.subarray(Math.max(0, line.length - 16)).toString('latin1'));
      if (!m) break;
      const n = Number(m[1]);
      if (n > MAX_LITERAL) {
        this.conn.close();
        throw new ImapError(`The server sent a literal of ${n} bytes (over ${MAX_LITERAL}); giving up`);
      }
      segments.push(await this.conn.block(n));
    }
    const first = segments[0]!;
    const sp = first.indexOf(32);
    return { tag: first.subarray(0, sp < 0 ? first.length : sp).toString('latin1'), segments };
  }

  /**
   * Sends a command and collects its untagged responses (or hands each to `onUntagged`).
   * Resolves with the tagged OK text; a NO or BAD rejects with the server's text.
   */
  async command(cmd: string, onUntagged?: (r: ImapResponse) => void): Promise<{ text: string; untagged: ImapResponse[] }> {
    const tag = `F${++this.tagN}`;
    this.conn.write(`${tag} ${cmd}\r\n`);
    const untagged: ImapResponse[] = [];
    for (;;) {
      const r = await this.readResponse();
      if (r.tag === tag) {
        const text = r.segments[0]!.toString('utf8').slice(tag.length + 1);
        if (!/^OK\b/i.test(text)) throw new ImapError(`${cmd.split(' ')[0]} failed: ${text}`);
        return { text, untagged };
      }
      if (r.tag === '+') throw new ImapError(`Unexpected continuation request after ${cmd.split(' ')[0]}`);
      if (onUntagged) onUntagged(r);
      else untagged.push(r);
    }
  }

  async refreshCapabilities(): Promise<void> {
    const { untagged } = await this.command('CAPABILITY');
    for (const r of untagged) {
      const text = r.segments[0]!.toString('latin1');
      if (/^\* CAPABILITY /i.test(text)) this.capabilities = new Set(text.slice(13).toUpperCase().split(' '));
    }
  }

  async login(user: string, password: string): Promise<void> {
    if (this.capabilities.has('LOGINDISABLED')) {
      if (!this.capabilities.has('AUTH=PLAIN')) throw new ImapError('The server allows no LOGIN and no AUTHENTICATE PLAIN here (use imaps:// or --starttls)');
      // RFC 4616 PLAIN with the initial response (RFC 4959 SASL-IR), or after the empty challenge.
      const b64 = Buffer.from(`\0${user}\0${password}`, 'utf8').toString('base64');
      await this.command(`AUTHENTICATE PLAIN ${b64}`);
    } else {
      await this.command(`LOGIN ${quote(user)} ${quote(password)}`);
    }
    await this.refreshCapabilities();
  }

  async logout(): Promise<void> {
    try {
      await this.command('LOGOUT');
    } catch {
      // The server may close before its tagged OK; the import is done either way.
    }
    this.conn.close();
  }

  close(): void {
    this.conn.close();
  }
}

export interface ImapFolder {
  /** The server's name, as sent back in EXAMINE. */
  serverName: string;
  /** Facteur name ('/' separator, INBOX). */
  name: string;
}

/** Turns a LIST name into a Facteur name: modified UTF-7 decoded (RFC 3501 §5.1.3), the
 * server's delimiter replaced by '/'. */
export function facteurName(serverName: string, delimiter: string | null): string {
  const decoded = serverName.includes('&') ? decodeMutf7(serverName) : serverName;
  const parts = delimiter ? decoded.split(delimiter) : [decoded];
  if (parts[0]?.toUpperCase() === 'INBOX') parts[0] = 'INBOX';
  return parts.filter((p) => p !== '').join('/');
}

interface FolderState {
  uidValidity: number;
  uidNext: number;
  highestModSeq?: number;
  exists: number;
}

export interface ImapSourceOptions {
  endpoint: Endpoint;
  startTls: boolean;
  user: string;
  password: string;
  /**
   * The POP3 UIDL each message gets, from its UID and the folder's UIDVALIDITY (Dovecot's
   * pop3_uidl_format, default `%08Xu%08Xv`, so mail moved from a Dovecot keeps its UIDLs), or
   * null for Facteur's own ids. Also what makes a resumed import skip what it already stored.
   */
  pop3UidlFormat: string | null;
}

export async function openImapSource(options: ImapSourceOptions): Promise<ImportSource> {
  const client = await ImapClient.connect(options.endpoint, options.startTls);
  try {
    await client.login(options.user, options.password);
  } catch (err) {
    client.close();
    throw err;
  }
  const warnings: string[] = [];
  const condstore = client.capabilities.has('CONDSTORE') || client.capabilities.has('QRESYNC');

  async function listFolders(): Promise<{ folders: ImapFolder[]; subscribed: Set<string> }> {
    const folders: ImapFolder[] = [];
    const { untagged } = await client.command('LIST "" "*"');
    for (const r of untagged) {
      const v = new ValueReader(r.segments, 2);
      if (asText(v.value()).toUpperCase() !== 'LIST') continue;
      const attrs = v.value();
      const delim = v.value();
      const name = asText(v.value());
      const flags = Array.isArray(attrs) ? attrs.map((a) => asText(a).toLowerCase()) : [];
      if (flags.includes('\\noselect') || flags.includes('\\nonexistent')) continue;
      folders.push({ serverName: name, name: facteurName(name, typeof delim === 'string' ? delim : null) });
    }
    const subscribed = new Set<string>();
    const lsub = await client.command('LSUB "" "*"');
    for (const r of lsub.untagged) {
      const v = new ValueReader(r.segments, 2);
      if (asText(v.value()).toUpperCase() !== 'LSUB') continue;
      v.value();
      const delim = v.value();
      subscribed.add(facteurName(asText(v.value()), typeof delim === 'string' ? delim : null));
    }
    folders.sort((a, b) => (a.name === 'INBOX' ? -1 : b.name === 'INBOX' ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return { folders, subscribed };
  }

  async function examine(serverName: string): Promise<FolderState> {
    const state: FolderState = { uidValidity: 0, uidNext: 0, exists: 0 };
    const { untagged, text } = await client.command(`EXAMINE ${quote(serverName)}${condstore ? ' (CONDSTORE)' : ''}`);
    for (const r of untagged) {
      const line = r.segments[0]!.toString('latin1');
      let m: RegExpExecArray | null;
      if ((m = /^\* (\d+) EXISTS/i.exec(line))) state.exists = Number(m[1]);
      else if ((m = /\[UIDVALIDITY (\d+)\]/i.exec(line))) state.uidValidity = Number(m[1]);
      else if ((m = /\[UIDNEXT (\d+)\]/i.exec(line))) state.uidNext = Number(m[1]);
      else if ((m = /\[HIGHESTMODSEQ (\d+)\]/i.exec(line))) state.highestModSeq = Number(m[1]);
      // RFC 7162 §3.1.2.2: NOMODSEQ means the mailbox has no mod-sequences; no floor from it.
    }
    if (/\[HIGHESTMODSEQ (\d+)\]/i.test(text)) state.highestModSeq = Number(/\[HIGHESTMODSEQ (\d+)\]/i.exec(text)![1]);
    if (state.uidValidity === 0) throw new ImapError(`${serverName}: the server sent no UIDVALIDITY`);
    return state;
  }

  if (options.pop3UidlFormat !== null) formatPop3Uidl(options.pop3UidlFormat, { uid: 1, uidValidity: 1 });

  /** (uid, size) of the messages, ascending. */
  async function sizes(): Promise<Array<[number, number]>> {
    const out: Array<[number, number]> = [];
    await client.command('UID FETCH 1:* (UID RFC822.SIZE)', (r) => {
      const v = new ValueReader(r.segments, 2);
      v.value(); // sequence number
      if (asText(v.value()).toUpperCase() !== 'FETCH') return;
      const items = v.value();
      if (!Array.isArray(items)) return;
      let uid = 0;
      let size = 0;
      for (let i = 0; i + 1 < items.length; i += 2) {
        const k = asText(items[i]).toUpperCase();
        if (k === 'UID') uid = Number(asText(items[i + 1]));
        else if (k === 'RFC822.SIZE') size = Number(asText(items[i + 1]));
      }
      if (uid > 0) out.push([uid, size]);
    });
    out.sort((a, b) => a[0] - b[0]);
    return out;
  }

  async function* fetchMessages(folder: ImapFolder, uidValidity: number, skip?: SkipTest): AsyncIterable<SourceMessage | SkippedMessage> {
    const uidl = (uid: number): string | undefined => (options.pop3UidlFormat === null ? undefined : formatPop3Uidl(options.pop3UidlFormat, { uid, uidValidity }));
    const list: Array<[number, number]> = [];
    for (const entry of await sizes()) {
      const u = uidl(entry[0]);
      if (!(await skip?.({ uid: entry[0], ...(u === undefined ? {} : { pop3Uidl: u }) }))) list.push(entry);
    }
    let i = 0;
    while (i < list.length) {
      const batch: number[] = [];
      let bytes = 0;
      while (i < list.length && batch.length < FETCH_BATCH_COUNT && (batch.length === 0 || bytes + list[i]![1] <= FETCH_BATCH_BYTES)) {
        const [uid, size] = list[i]!;
        i++;
        if (size > MAX_LITERAL) {
          yield { kind: 'skipped', origin: `${folder.name}: UID ${uid}`, reason: `larger than ${MAX_LITERAL} bytes`, uid };
          continue;
        }
        batch.push(uid);
        bytes += size;
      }
      if (batch.length === 0) continue;
      const got = new Map<number, SourceMessage>();
      await client.command(`UID FETCH ${batch.join(',')} (UID FLAGS INTERNALDATE BODY.PEEK[])`, (r) => {
        const v = new ValueReader(r.segments, 2);
        v.value();
        if (asText(v.value()).toUpperCase() !== 'FETCH') return;
        const items = v.value();
        if (!Array.isArray(items)) return;
        let uid = 0;
        let flags: string[] = [];
        let date: number | undefined;
        let raw: Buffer | null = null;
        for (let k = 0; k + 1 < items.length; k += 2) {
          const key = asText(items[k]).toUpperCase();
          const val = items[k + 1];
          if (key === 'UID') uid = Number(asText(val));
          else if (key === 'FLAGS' && Array.isArray(val)) flags = val.map(asText).filter((f) => f !== '' && f.toLowerCase() !== '\\recent');
          else if (key === 'INTERNALDATE') date = parseInternalDate(asText(val));
          else if (key === 'BODY[]') raw = Buffer.isBuffer(val) ? val : typeof val === 'string' ? Buffer.from(val, 'utf8') : null;
        }
        const pop3Uidl = uidl(uid);
        if (uid > 0 && raw !== null) {
          got.set(uid, { kind: 'message', raw, flags, internalDate: date ?? Date.now(), uid, origin: `${folder.name}: UID ${uid}`, ...(pop3Uidl === undefined ? {} : { pop3Uidl }) });
        }
      });
      for (const uid of batch) {
        const m = got.get(uid);
        // A message expunged on the old server since the size pass.
        yield m ?? { kind: 'skipped', origin: `${folder.name}: UID ${uid}`, reason: 'expunged on the source during the import', uid };
      }
    }
  }

  return {
    description: `imap${options.endpoint.tls ? 's' : ''}://${options.user}@${options.endpoint.host}:${options.endpoint.port}`,
    warnings,
    async *mailboxes() {
      const { folders, subscribed } = await listFolders();
      for (const folder of folders) {
        const state = await examine(folder.serverName);
        const mailbox: SourceMailbox = {
          name: folder.name,
          uidValidity: state.uidValidity,
          ...(state.uidNext > 0 ? { uidNext: state.uidNext } : {}),
          ...(state.highestModSeq === undefined ? {} : { highestModSeq: state.highestModSeq }),
          subscribed: subscribed.has(folder.name),
          expectedMessages: state.exists,
          expectedBytes: 0,
          messages: (skip?: SkipTest) => fetchMessages(folder, state.uidValidity, skip),
        };
        yield mailbox;
      }
    },
    async close() {
      await client.logout();
    },
  };
}
