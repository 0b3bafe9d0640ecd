/**
 * IMAP command parser: a RawCommand from the receiver becomes a typed Request (RFC 9051 §9 grammar,
 * with the RFC 3501 items IMAP4rev1 clients still send, e.g. RFC822.* fetch items, RECENT/NEW/OLD
 * search keys). Sans-IO and pure.
 *
 * Invariants:
 * - Anything not in the grammar throws ParseError (the session answers BAD); nothing is guessed.
 * - Nesting (parenthesised lists, NOT/OR chains) is bounded by MAX_NESTING.
 * - Mailbox names come out as UTF-8 strings: decoded from modified UTF-7 (RFC 3501 §5.1.3) unless
 *   the client enabled UTF8=ACCEPT or IMAP4rev2.
 */
import type { FetchAtt, Partial, SearchKey, SectionSpec, SeqBound, SequenceSet, SortCriterion } from './ast.js';
import { decodeMutf7, Mutf7Error } from './mutf7.js';
import type { Literal, RawCommand } from './receiver.js';
import { isValidTag } from './receiver.js';

/** Parenthesis / NOT / OR depth: stops stack exhaustion from `((((...` or `NOT NOT NOT ...`. */
export const MAX_NESTING = 32;
/** Items in one parenthesised list (flags, fetch items, header names, STATUS items). */
export const MAX_LIST_ITEMS = 1000;
/** Ranges in one sequence set: stops a command from costing unbounded work to resolve. */
export const MAX_SEQUENCE_RANGES = 10_000;
/** Mailbox name limits: longer or deeper names are refused. */
export const MAX_MAILBOX_BYTES = 1000;
export const MAX_MAILBOX_DEPTH = 32;
/** RFC 2971 §3.3: at most 30 field-value pairs, fields of 30 octets, values of 1024. */
export const MAX_ID_PAIRS = 30;

export const HIERARCHY_SEPARATOR = '/';

export class ParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ParseError';
  }
}

/** A mailbox name that is not valid modified UTF-7: not a syntax error (the command is
 * well-formed) but a name that cannot exist, answered NO like Dovecot does. */
export class MailboxNameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MailboxNameError';
  }
}

export interface ParseOptions {
  /** UTF8=ACCEPT (RFC 6855) or IMAP4rev2 enabled: mailbox names are UTF-8, not modified UTF-7. */
  utf8: boolean;
}

export type StatusItem = 'MESSAGES' | 'UIDNEXT' | 'UIDVALIDITY' | 'UNSEEN' | 'DELETED' | 'SIZE' | 'RECENT' | 'APPENDLIMIT' | 'DELETED-STORAGE' | 'MAILBOXID' | 'HIGHESTMODSEQ';
const STATUS_ITEMS: readonly StatusItem[] = ['MESSAGES', 'UIDNEXT', 'UIDVALIDITY', 'UNSEEN', 'DELETED', 'SIZE', 'RECENT', 'APPENDLIMIT', 'DELETED-STORAGE', 'MAILBOXID', 'HIGHESTMODSEQ'];

/** RFC 7162 §3.2.5 QRESYNC select parameter: what the client remembers of the mailbox. */
export interface QresyncParams {
  uidValidity: number;
  modseq: number;
  /** known-uids: the UIDs the client has (null: all). */
  knownUids: SequenceSet | null;
}

export type SearchReturn = 'MIN' | 'MAX' | 'ALL' | 'COUNT' | 'SAVE';

export interface AppendMessage {
  flags: string[];
  /** epoch ms, or null for now. */
  date: number | null;
  data: Buffer;
  binary: boolean;
  /** Sent as `UTF8 (~{n})` (RFC 6855 §4). */
  utf8: boolean;
}

export interface ListRequest {
  name: 'LIST';
  selectSubscribed: boolean;
  recursiveMatch: boolean;
  selectSpecialUse: boolean;
  reference: string;
  patterns: string[];
  returnSubscribed: boolean;
  returnChildren: boolean;
  returnSpecialUse: boolean;
  returnStatus: StatusItem[] | null;
  /** Whether any LIST-EXTENDED syntax was used (RFC 5258 §3: changes what is returned). */
  extended: boolean;
}

export type Request =
  | { name: 'CAPABILITY' | 'NOOP' | 'LOGOUT' | 'STARTTLS' | 'CHECK' | 'CLOSE' | 'UNSELECT' | 'IDLE' | 'NAMESPACE' }
  | { name: 'EXPUNGE'; uids: SequenceSet | null }
  | { name: 'AUTHENTICATE'; mechanism: string; initial: Buffer | null }
  | { name: 'LOGIN'; user: string; password: string }
  | { name: 'ENABLE'; capabilities: string[] }
  | { name: 'SELECT' | 'EXAMINE'; mailbox: string; condstore: boolean; qresync: QresyncParams | null }
  | { name: 'CREATE'; mailbox: string; specialUse: string[] }
  | { name: 'DELETE' | 'SUBSCRIBE' | 'UNSUBSCRIBE'; mailbox: string }
  | { name: 'RENAME'; from: string; to: string }
  | ListRequest
  | { name: 'LSUB'; reference: string; pattern: string }
  | { name: 'STATUS'; mailbox: string; items: StatusItem[] }
  | { name: 'APPEND'; mailbox: string; messages: AppendMessage[] }
  | { name: 'SEARCH'; uid: boolean; charset: string | null; returns: SearchReturn[] | null; key: SearchKey }
  | { name: 'SORT'; uid: boolean; returns: SearchReturn[] | null; criteria: SortCriterion[]; charset: string; key: SearchKey }
  | { name: 'THREAD'; uid: boolean; algorithm: 'ORDEREDSUBJECT' | 'REFERENCES'; charset: string; key: SearchKey }
  | { name: 'FETCH'; uid: boolean; set: SequenceSet; atts: FetchAtt[]; changedSince: number | null; vanished: boolean }
  | { name: 'STORE'; uid: boolean; set: SequenceSet; mode: 'add' | 'remove' | 'set'; silent: boolean; flags: string[]; unchangedSince: number | null }
  | { name: 'COPY' | 'MOVE'; uid: boolean; set: SequenceSet; mailbox: string }
  | { name: 'ID'; params: Array<[string, string | null]> | null }
  | { name: 'COMPRESS'; mechanism: string }
  | { name: 'GETQUOTA'; root: string }
  | { name: 'GETQUOTAROOT'; mailbox: string }
  | { name: 'SETQUOTA'; root: string }
  | { name: 'GETMETADATA'; mailbox: string; maxSize: number | null; depth: MetadataDepth; entries: string[] }
  | { name: 'SETMETADATA'; mailbox: string; entries: Array<{ name: string; value: Buffer | null }> }
  | { name: 'NOTIFY'; status: boolean; groups: NotifyGroup[] | null };

/** RFC 5464 §4.2.2 DEPTH. */
export type MetadataDepth = 0 | 1 | 'infinity';

/** RFC 5464 §3.2 entry names: a longer or deeper name is refused (BAD), which bounds the work of
 * matching names and what one entry costs to store. */
export const MAX_ENTRY_NAME_BYTES = 256;
export const MAX_ENTRY_DEPTH = 16;

/** RFC 5465 §8 filter-mailboxes. */
export type NotifyFilter =
  | { kind: 'selected' | 'selected-delayed' | 'inboxes' | 'personal' | 'subscribed' }
  | { kind: 'subtree' | 'mailboxes'; names: string[] };

export type NotifyEventName =
  | 'MessageNew'
  | 'MessageExpunge'
  | 'FlagChange'
  | 'AnnotationChange'
  | 'MailboxName'
  | 'SubscriptionChange'
  | 'MailboxMetadataChange'
  | 'ServerMetadataChange';

const NOTIFY_EVENTS: readonly NotifyEventName[] = [
  'MessageNew',
  'MessageExpunge',
  'FlagChange',
  'AnnotationChange',
  'MailboxName',
  'SubscriptionChange',
  'MailboxMetadataChange',
  'ServerMetadataChange',
];
const MESSAGE_EVENTS: ReadonlySet<string> = new Set(['MessageNew', 'MessageExpunge', 'FlagChange', 'AnnotationChange']);

/** Event groups in one NOTIFY SET: a group is cheap to parse but each is matched against every
 * change, so their number is bounded. */
export const MAX_NOTIFY_GROUPS = 100;
/** Mailbox names across the groups of one NOTIFY SET: every change is matched against them, so
 * their number bounds the work each change costs the session. */
export const MAX_NOTIFY_NAMES = 1000;

/** One RFC 5465 event-group; `events` empty is NONE. Unknown event names (event-ext) are kept in
 * `unknown`: the command is well-formed and answered NO [BADEVENT] (§3.1), not BAD. */
export interface NotifyGroup {
  filter: NotifyFilter;
  events: NotifyEventName[];
  /** MessageNew's fetch attributes (only with selected / selected-delayed). */
  fetchAtts: FetchAtt[] | null;
  unknown: string[];
}

export type RequestName = Request['name'];

export interface ParsedCommand {
  tag: string;
  request: Request;
}

/** Reads the tag and command name only: the session uses it to check the state before parsing
 * arguments, and to answer BAD with the right tag. */
export function parseCommandName(command: RawCommand): { tag: string; name: string } {
  const c = new Cursor(command);
  if (c.atEnd()) throw new ParseError('Empty command');
  const tag = c.atomLike(isTagChar);
  if (!isValidTag(tag)) throw new ParseError('Invalid tag');
  c.sp();
  let name = c.atom().toUpperCase();
  if (name === 'UID') {
    c.sp();
    name = `UID ${c.atom().toUpperCase()}`;
  }
  return { tag, name };
}

export function parseCommand(command: RawCommand, options: ParseOptions): ParsedCommand {
  const c = new Cursor(command);
  const tag = c.atomLike(isTagChar);
  if (!isValidTag(tag)) throw new ParseError('Invalid tag');
  c.sp();
  let name = c.atom().toUpperCase();
  let uid = false;
  if (name === 'UID') {
    uid = true;
    c.sp();
    name = c.atom().toUpperCase();
    if (!['FETCH', 'STORE', 'COPY', 'MOVE', 'SEARCH', 'EXPUNGE', 'SORT', 'THREAD'].includes(name)) throw new ParseError('Unknown UID command');
  }
  const p = new ArgParser(c, options);
  const request = p.request(name, uid);
  if (!c.atEnd()) throw new ParseError('Unexpected characters at end of command');
  return { tag, request };
}

// RFC 9051 §9 character classes.
/** ATOM-CHAR: CHAR except atom-specials "(" ")" "{" SP CTL "%" "*" DQUOTE "\" "]". */
function isAtomChar(b: number): boolean {
  return b > 0x20 && b < 0x7f && b !== 0x28 && b !== 0x29 && b !== 0x7b && b !== 0x25 && b !== 0x2a && b !== 0x22 && b !== 0x5c && b !== 0x5d;
}
/** ASTRING-CHAR = ATOM-CHAR / "]"; 8-bit bytes are accepted too (UTF-8 names in atoms, RFC 6855). */
const isAstringChar = (b: number): boolean => isAtomChar(b) || b === 0x5d || b >= 0x80;
const isTagChar = (b: number): boolean => isAtomChar(b) || b === 0x5d;
/** list-char = ATOM-CHAR / list-wildcards / resp-specials. */
const isListChar = (b: number): boolean => isAstringChar(b) || b === 0x25 || b === 0x2a;

/** A cursor over the segments and literals of a command. */
class Cursor {
  private seg = 0;
  private pos = 0;
  constructor(private readonly cmd: RawCommand) {}

  private get cur(): Buffer {
    return this.cmd.segments[this.seg]!;
  }

  peek(): number {
    return this.pos < this.cur.length ? this.cur[this.pos]! : -1;
  }

  peekAt(offset: number): number {
    const i = this.pos + offset;
    return i < this.cur.length ? this.cur[i]! : -1;
  }

  /** At the end of a segment that a literal follows. */
  atLiteral(): boolean {
    return this.pos >= this.cur.length && this.seg < this.cmd.literals.length;
  }

  atEnd(): boolean {
    return this.pos >= this.cur.length && this.seg === this.cmd.segments.length - 1;
  }

  advance(n = 1): void {
    this.pos += n;
  }

  takeLiteral(): Literal {
    if (!this.atLiteral()) throw new ParseError('Expected a literal');
    const lit = this.cmd.literals[this.seg]!;
    this.seg++;
    this.pos = 0;
    return lit;
  }

  sp(): void {
    if (this.peek() !== 0x20) throw new ParseError('Expected a space');
    this.pos++;
  }

  expect(ch: string): void {
    if (this.peek() !== ch.charCodeAt(0)) throw new ParseError(`Expected "${ch}"`);
    this.pos++;
  }

  /** Consumes the given word (case-insensitive) if it is next, followed by a non-atom byte. */
  tryWord(word: string): boolean {
    const w = word.length;
    if (this.pos + w > this.cur.length) return false;
    if (this.cur.toString('latin1', this.pos, this.pos + w).toUpperCase() !== word) return false;
    const after = this.peekAt(w);
    if (after !== -1 && isAtomChar(after) && after !== 0x5b && after !== 0x2e) {
      // A longer atom ("FLAGSX"); "[" and "." continue fetch item names and are checked by callers.
      return false;
    }
    this.pos += w;
    return true;
  }

  atomLike(pred: (b: number) => boolean): string {
    const start = this.pos;
    while (this.pos < this.cur.length && pred(this.cur[this.pos]!)) this.pos++;
    if (this.pos === start) throw new ParseError('Expected an atom');
    return this.cur.toString('latin1', start, this.pos);
  }

  /** Raw bytes of an atom-like token (for astrings that may hold UTF-8). */
  atomBytes(pred: (b: number) => boolean): Buffer {
    const start = this.pos;
    while (this.pos < this.cur.length && pred(this.cur[this.pos]!)) this.pos++;
    if (this.pos === start) throw new ParseError('Expected an atom');
    return this.cur.subarray(start, this.pos);
  }

  atom(): string {
    return this.atomLike(isAtomChar);
  }

  /** quoted = DQUOTE *QUOTED-CHAR DQUOTE (RFC 9051 §9; UTF-8 allowed, RFC 6855 §3). */
  quoted(): Buffer {
    this.expect('"');
    const out: number[] = [];
    for (;;) {
      const b = this.peek();
      if (b === -1) throw new ParseError('Unterminated quoted string');
      this.pos++;
      if (b === 0x22) break;
      if (b === 0x5c) {
        const e = this.peek();
        // Only "\" and DQUOTE may be escaped (RFC 9051 §9 quoted-specials).
        if (e !== 0x22 && e !== 0x5c) throw new ParseError('Invalid escape in quoted string');
        this.pos++;
        out.push(e);
        continue;
      }
      // CR, LF and NUL can never be in a quoted string (TEXT-CHAR excludes them).
      if (b === 0x00 || b === 0x0d || b === 0x0a) throw new ParseError('Invalid character in quoted string');
      out.push(b);
    }
    return Buffer.from(out);
  }
}

const MONTHS = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'];

function utf8(buf: Buffer): string {
  const s = buf.toString('utf8');
  // Invalid UTF-8 would decode to U+FFFD: refuse rather than change what the client meant.
  if (!Buffer.from(s, 'utf8').equals(buf)) throw new ParseError('Invalid UTF-8');
  return s;
}

class ArgParser {
  private depth = 0;
  constructor(
    private readonly c: Cursor,
    private readonly options: ParseOptions,
  ) {}

  request(name: string, uid: boolean): Request {
    const c = this.c;
    switch (name) {
      case 'CAPABILITY':
      case 'NOOP':
      case 'LOGOUT':
      case 'STARTTLS':
      case 'CHECK':
      case 'CLOSE':
      case 'UNSELECT':
      case 'IDLE':
      case 'NAMESPACE':
        return { name };
      case 'EXPUNGE': {
        if (!uid) return { name, uids: null };
        c.sp();
        return { name, uids: this.sequenceSet() };
      }
      case 'AUTHENTICATE': {
        c.sp();
        const mechanism = c.atom().toUpperCase();
        let initial: Buffer | null = null;
        if (c.peek() === 0x20) {
          c.sp();
          // RFC 4959 SASL-IR: base64, or "=" for an empty initial response.
          const ir = c.atomLike((b) => isAtomChar(b));
          initial = ir === '=' ? Buffer.alloc(0) : decodeBase64(ir);
        }
        return { name, mechanism, initial };
      }
      case 'LOGIN': {
        c.sp();
        const user = utf8(this.astring());
        c.sp();
        const password = utf8(this.astring());
        return { name, user, password };
      }
      case 'ENABLE': {
        const capabilities: string[] = [];
        do {
          c.sp();
          capabilities.push(c.atom().toUpperCase());
        } while (c.peek() === 0x20 && capabilities.length < MAX_LIST_ITEMS);
        return { name, capabilities };
      }
      case 'SELECT':
      case 'EXAMINE': {
        c.sp();
        const mailbox = this.mailbox();
        let condstore = false;
        let qresync: QresyncParams | null = null;
        if (c.peek() === 0x20) {
          // RFC 4466 §2.5 select-params; RFC 7162 §3.1.8 CONDSTORE, §3.2.5 QRESYNC.
          c.sp();
          for (const p of this.list(() => this.selectParam(), false)) {
            if (p === 'CONDSTORE') condstore = true;
            else if (qresync !== null) throw new ParseError('QRESYNC given twice');
            else qresync = p;
          }
        }
        return { name, mailbox, condstore, qresync };
      }
      case 'CREATE': {
        c.sp();
        const mailbox = this.mailbox();
        const specialUse: string[] = [];
        if (c.peek() === 0x20) {
          // RFC 6154 §3 CREATE-SPECIAL-USE: create-param "USE" SP "(" [use-attr *(SP use-attr)] ")".
          c.sp();
          c.expect('(');
          if (!c.tryWord('USE')) throw new ParseError('Unknown CREATE parameter');
          c.sp();
          for (const f of this.list(() => this.flagAtom())) specialUse.push(f);
          c.expect(')');
        }
        return { name, mailbox, specialUse };
      }
      case 'DELETE':
      case 'SUBSCRIBE':
      case 'UNSUBSCRIBE': {
        c.sp();
        return { name, mailbox: this.mailbox() };
      }
      case 'RENAME': {
        c.sp();
        const from = this.mailbox();
        c.sp();
        return { name, from, to: this.mailbox() };
      }
      case 'LIST':
        return this.list_();
      case 'LSUB': {
        c.sp();
        const reference = this.mailboxText(this.astring(), true);
        c.sp();
        return { name, reference, pattern: this.listMailbox() };
      }
      case 'STATUS': {
        c.sp();
        const mailbox = this.mailbox();
        c.sp();
        return { name, mailbox, items: this.statusItems() };
      }
      case 'APPEND':
        return this.append();
      case 'SEARCH':
        return this.search(uid);
      case 'SORT':
        return this.sort(uid);
      case 'THREAD':
        return this.thread(uid);
      case 'FETCH': {
        c.sp();
        const set = this.sequenceSet();
        c.sp();
        const atts = this.fetchAtts();
        let changedSince: number | null = null;
        let vanished = false;
        if (c.peek() === 0x20) {
          // RFC 4466 §2.4 fetch-modifiers; RFC 7162 §3.1.4.1 CHANGEDSINCE, §3.2.6 VANISHED.
          c.sp();
          for (const m of this.list(() => {
            const w = c.atom().toUpperCase();
            if (w === 'VANISHED') return null;
            if (w !== 'CHANGEDSINCE') throw new ParseError('Unknown FETCH modifier');
            c.sp();
            return this.modseqValue(false);
          }, false)) {
            if (m === null) vanished = true;
            else changedSince = m;
          }
        }
        return { name, uid, set, atts, changedSince, vanished };
      }
      case 'STORE':
        return this.store(uid);
      case 'COPY':
      case 'MOVE': {
        c.sp();
        const set = this.sequenceSet();
        c.sp();
        return { name, uid, set, mailbox: this.mailbox() };
      }
      case 'ID':
        return this.id();
      case 'GETQUOTA':
      case 'SETQUOTA': {
        // RFC 9208 §4.1: quota-root is an astring; SETQUOTA's list is not read (not supported).
        c.sp();
        const root = utf8(this.astring());
        if (name === 'SETQUOTA') {
          c.sp();
          this.list(() => {
            c.atom();
            c.sp();
            return this.number();
          });
        }
        return { name, root };
      }
      case 'COMPRESS':
        // RFC 4978 §3.
        c.sp();
        return { name, mechanism: c.atom().toUpperCase() };
      case 'GETQUOTAROOT':
        c.sp();
        return { name, mailbox: this.mailbox() };
      case 'GETMETADATA':
        return this.getMetadata();
      case 'SETMETADATA': {
        // RFC 5464 §5 setmetadata = "SETMETADATA" SP mailbox SP entry-values.
        c.sp();
        const mailbox = this.mailbox();
        c.sp();
        const entries = this.list(() => {
          const entryName = this.metadataEntry(true);
          c.sp();
          return { name: entryName, value: this.metadataValue() };
        }, false);
        return { name, mailbox, entries };
      }
      case 'NOTIFY':
        return this.notify();
      default:
        throw new ParseError('Unknown command');
    }
  }

  // --- METADATA (RFC 5464) --------------------------------------------------------------------

  private getMetadata(): Request {
    const c = this.c;
    c.sp();
    let maxSize: number | null = null;
    let depth: MetadataDepth = 0;
    // RFC 5464 §5: getmetadata-options come before the mailbox (a mailbox is never a list).
    if (c.peek() === 0x28) {
      this.list(() => {
        const opt = c.atom().toUpperCase();
        c.sp();
        if (opt === 'MAXSIZE') maxSize = this.number();
        else if (opt === 'DEPTH') {
          const d = c.atom().toLowerCase();
          if (d !== '0' && d !== '1' && d !== 'infinity') throw new ParseError('DEPTH must be 0, 1 or infinity');
          depth = d === 'infinity' ? d : Number(d) as 0 | 1;
        } else throw new ParseError('Unknown GETMETADATA option');
        return opt;
      }, false);
      c.sp();
    }
    const mailbox = this.mailbox();
    c.sp();
    const entries = c.peek() === 0x28 ? this.list(() => this.metadataEntry(false), false) : [this.metadataEntry(false)];
    return { name: 'GETMETADATA', mailbox, maxSize, depth, entries };
  }

  /**
   * RFC 5464 §3.2 entry: ASCII above 0x19 without "*" or "%", no "//", no trailing "/", under
   * /private or /shared, lowercased (names are case-insensitive). SETMETADATA needs at least two
   * components (four under /vendor); GETMETADATA may name a whole scope ("/private") for DEPTH.
   * An invalid name is BAD (§3.2).
   */
  metadataEntry(forSet: boolean): string {
    const bytes = this.astring();
    if (bytes.length > MAX_ENTRY_NAME_BYTES) throw new ParseError('Entry name too long');
    for (const b of bytes) {
      if (b < 0x20 || b > 0x7e || b === 0x2a || b === 0x25) throw new ParseError('Invalid character in entry name');
    }
    const name = bytes.toString('latin1').toLowerCase();
    const parts = name.split('/');
    if (parts[0] !== '' || parts.slice(1).some((p) => p === '')) throw new ParseError('Invalid entry name');
    if (parts.length - 1 > MAX_ENTRY_DEPTH) throw new ParseError('Entry name too deep');
    if (parts[1] !== 'private' && parts[1] !== 'shared') throw new ParseError('Entry name must start with /private or /shared');
    if (forSet && (parts.length < 3 || (parts[2] === 'vendor' && parts.length < 5))) throw new ParseError('Invalid entry name');
    return name;
  }

  /** RFC 5464 §5 value = nstring / literal8: NIL removes the entry. */
  private metadataValue(): Buffer | null {
    const c = this.c;
    if (c.tryWord('NIL')) return null;
    if (c.peek() === 0x22) return c.quoted();
    return c.takeLiteral().data;
  }

  // --- NOTIFY (RFC 5465 §8) --------------------------------------------------------------------

  private notify(): Request {
    const c = this.c;
    c.sp();
    const verb = c.atom().toUpperCase();
    if (verb === 'NONE') return { name: 'NOTIFY', status: false, groups: null };
    if (verb !== 'SET') throw new ParseError('Expected SET or NONE');
    c.sp();
    const status = c.tryWord('STATUS');
    if (status) c.sp();
    const groups: NotifyGroup[] = [];
    let selectedSeen = false;
    let names = 0;
    for (;;) {
      const g = this.notifyGroup();
      if (g.filter.kind === 'selected' || g.filter.kind === 'selected-delayed') {
        // RFC 5465 §6.1: only one of SELECTED and SELECTED-DELAYED per command.
        if (selectedSeen) throw new ParseError('SELECTED given twice');
        selectedSeen = true;
      }
      groups.push(g);
      if (groups.length > MAX_NOTIFY_GROUPS) throw new ParseError('Too many event groups');
      names += 'names' in g.filter ? g.filter.names.length : 0;
      if (names > MAX_NOTIFY_NAMES) throw new ParseError('Too many mailbox names');
      if (c.peek() !== 0x20) break;
      c.sp();
    }
    return { name: 'NOTIFY', status, groups };
  }

  private notifyGroup(): NotifyGroup {
    const c = this.c;
    c.expect('(');
    this.enter();
    const word = c.atom().toLowerCase();
    let filter: NotifyFilter;
    if (word === 'selected' || word === 'selected-delayed' || word === 'inboxes' || word === 'personal' || word === 'subscribed') {
      filter = { kind: word };
    } else if (word === 'subtree' || word === 'mailboxes') {
      c.sp();
      // one-or-more-mailbox = mailbox / "(" mailbox *(SP mailbox) ")"
      const names = c.peek() === 0x28 ? this.list(() => this.mailbox(), false) : [this.mailbox()];
      filter = { kind: word, names };
    } else throw new ParseError('Unknown NOTIFY mailbox filter');
    c.sp();
    const selected = filter.kind === 'selected' || filter.kind === 'selected-delayed';
    const group: NotifyGroup = { filter, events: [], fetchAtts: null, unknown: [] };
    if (c.tryWord('NONE')) {
      c.expect(')');
      this.depth--;
      return group;
    }
    this.list(() => {
      const ev = c.atom();
      const known = NOTIFY_EVENTS.find((e) => e.toLowerCase() === ev.toLowerCase());
      if (known === undefined) {
        // event-ext = atom: well-formed, refused with BADEVENT by the handler.
        group.unknown.push(ev);
        return ev;
      }
      // RFC 5465 §6.1: only message events with SELECTED / SELECTED-DELAYED.
      if (selected && !MESSAGE_EVENTS.has(known)) throw new ParseError(`${known} cannot be used with ${filter.kind}`);
      if (!group.events.includes(known)) group.events.push(known);
      if (known === 'MessageNew' && c.peek() === 0x20 && c.peekAt(1) === 0x28) {
        // RFC 5465 §8: the fetch-att list is only allowed for the selected mailbox.
        if (!selected) throw new ParseError('Fetch attributes only with SELECTED or SELECTED-DELAYED');
        c.sp();
        group.fetchAtts = this.list(() => this.fetchAtt(), false);
      }
      return ev;
    }, false);
    c.expect(')');
    this.depth--;
    return group;
  }

  // --- Strings ---------------------------------------------------------------------------------

  /** string = quoted / literal (a literal8 is not a string). */
  string(): Buffer {
    const c = this.c;
    if (c.peek() === 0x22) return c.quoted();
    if (c.atLiteral()) {
      const lit = c.takeLiteral();
      if (lit.binary) throw new ParseError('Binary literal not allowed here');
      // A literal is CHAR8 (RFC 9051 §9): no NUL.
      if (lit.data.includes(0)) throw new ParseError('NUL in literal');
      return lit.data;
    }
    throw new ParseError('Expected a string');
  }

  astring(): Buffer {
    const c = this.c;
    const b = c.peek();
    if (b === 0x22 || c.atLiteral()) return this.string();
    return c.atomBytes(isAstringChar);
  }

  nstring(): Buffer | null {
    if (this.c.tryWord('NIL')) return null;
    return this.string();
  }

  number(): number {
    const s = this.c.atomLike((b) => b >= 0x30 && b <= 0x39);
    if (s.length > 10) throw new ParseError('Number too big');
    const n = Number(s);
    if (n > 0xffffffff) throw new ParseError('Number too big');
    return n;
  }

  /** RFC 7162 §7 mod-sequence-value (1*DIGIT up to 2^63-1; mod-sequence-valzer allows 0). Our
   * modseqs stay far below 2^53, so a larger value is clamped: it compares the same way. */
  modseqValue(allowZero: boolean): number {
    const s = this.c.atomLike((b) => b >= 0x30 && b <= 0x39);
    if (s.length > 19 || BigInt(s) > 0x7fffffffffffffffn) throw new ParseError('Mod-sequence too big');
    const n = Math.min(Number(s), Number.MAX_SAFE_INTEGER);
    if (n === 0 && !allowZero) throw new ParseError('Expected a non-zero mod-sequence');
    return n;
  }

  /** One select-param: CONDSTORE, or QRESYNC (uidvalidity modseq [known-uids [seq-match-data]])
   * (RFC 7162 §3.2.5). seq-match-data is parsed and not used: expunged UIDs are kept forever, so
   * the server never needs it to narrow down what vanished. */
  private selectParam(): 'CONDSTORE' | QresyncParams {
    const c = this.c;
    const w = c.atom().toUpperCase();
    if (w === 'CONDSTORE') return w;
    if (w !== 'QRESYNC') throw new ParseError('Unknown SELECT parameter');
    c.sp();
    c.expect('(');
    const uidValidity = this.nzNumber();
    c.sp();
    const modseq = this.modseqValue(false);
    let knownUids: SequenceSet | null = null;
    if (c.peek() === 0x20 && c.peekAt(1) !== 0x28) {
      c.sp();
      knownUids = this.sequenceSet();
      if (knownUids.saved) throw new ParseError('Invalid known-uids');
    }
    if (c.peek() === 0x20) {
      c.sp();
      c.expect('(');
      this.sequenceSet();
      c.sp();
      this.sequenceSet();
      c.expect(')');
    }
    c.expect(')');
    return { uidValidity, modseq, knownUids };
  }

  nzNumber(): number {
    const n = this.number();
    if (n === 0) throw new ParseError('Expected a non-zero number');
    return n;
  }

  /** "(" item *(SP item) ")" with the "(" already consumed? No: consumes both. Empty allowed. */
  list<T>(item: () => T, allowEmpty = true): T[] {
    const c = this.c;
    c.expect('(');
    this.enter();
    const out: T[] = [];
    if (c.peek() === 0x29) {
      if (!allowEmpty) throw new ParseError('Empty list');
    } else {
      for (;;) {
        out.push(item());
        if (out.length > MAX_LIST_ITEMS) throw new ParseError('Too many items in list');
        if (c.peek() !== 0x20) break;
        c.sp();
      }
    }
    c.expect(')');
    this.depth--;
    return out;
  }

  private enter(): void {
    if (++this.depth > MAX_NESTING) throw new ParseError('Too deeply nested');
  }

  // --- Mailboxes -------------------------------------------------------------------------------

  /** Decodes a mailbox name's bytes: UTF-8 when enabled (or when 8-bit bytes show UTF-8 was
   * meant), else modified UTF-7. */
  mailboxText(bytes: Buffer, pattern = false): string {
    const has8bit = bytes.some((b) => b >= 0x80);
    if (this.options.utf8 || has8bit) return utf8(bytes);
    try {
      return decodeMutf7(bytes.toString('latin1'));
    } catch (err) {
      if (!(err instanceof Mutf7Error)) throw err;
      // A pattern that is not modified UTF-7 simply matches no name; a mailbox name is refused.
      if (pattern) return bytes.toString('latin1');
      throw new MailboxNameError(err.message);
    }
  }

  mailbox(): string {
    const name = this.mailboxText(this.astring());
    // RFC 9051 §5.1: INBOX is case-insensitive, also as the first level of a hierarchy.
    const first = name.split(HIERARCHY_SEPARATOR, 1)[0]!;
    return first.toUpperCase() === 'INBOX' ? `INBOX${name.slice(5)}` : name;
  }

  /** list-mailbox = 1*list-char / string (RFC 9051 §9). */
  listMailbox(): string {
    const c = this.c;
    if (c.peek() === 0x22 || c.atLiteral()) return this.mailboxText(this.string(), true);
    return this.mailboxText(c.atomBytes(isListChar), true);
  }

  // --- LIST (RFC 9051 §6.3.9, RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS) --------------------

  private list_(): ListRequest {
    const c = this.c;
    const req: ListRequest = {
      name: 'LIST',
      selectSubscribed: false,
      recursiveMatch: false,
      selectSpecialUse: false,
      reference: '',
      patterns: [],
      returnSubscribed: false,
      returnChildren: false,
      returnSpecialUse: false,
      returnStatus: null,
      extended: false,
    };
    c.sp();
    if (c.peek() === 0x28) {
      req.extended = true;
      for (const opt of this.list(() => c.atom().toUpperCase())) {
        if (opt === 'SUBSCRIBED') req.selectSubscribed = true;
        else if (opt === 'RECURSIVEMATCH') req.recursiveMatch = true;
        else if (opt === 'SPECIAL-USE') req.selectSpecialUse = true;
        else if (opt === 'REMOTE') continue; // RFC 5258 §3.1: no remote mailboxes here, so a no-op.
        else throw new ParseError('Unknown LIST selection option');
      }
      // RFC 5258 §3.1: RECURSIVEMATCH alone is an error.
      if (req.recursiveMatch && !req.selectSubscribed && !req.selectSpecialUse) throw new ParseError('RECURSIVEMATCH needs another selection option');
      c.sp();
    }
    req.reference = this.mailboxText(this.astring(), true);
    c.sp();
    if (c.peek() === 0x28) {
      req.extended = true;
      req.patterns = this.list(() => this.listMailbox(), false);
    } else {
      req.patterns = [this.listMailbox()];
    }
    if (c.peek() === 0x20) {
      c.sp();
      if (!c.tryWord('RETURN')) throw new ParseError('Expected RETURN');
      c.sp();
      req.extended = true;
      c.expect('(');
      this.enter();
      if (c.peek() !== 0x29) {
        for (;;) {
          const opt = c.atom().toUpperCase();
          if (opt === 'SUBSCRIBED') req.returnSubscribed = true;
          else if (opt === 'CHILDREN') req.returnChildren = true;
          else if (opt === 'SPECIAL-USE') req.returnSpecialUse = true;
          else if (opt === 'STATUS') {
            c.sp();
            req.returnStatus = this.statusItems();
          } else throw new ParseError('Unknown LIST return option');
          if (c.peek() !== 0x20) break;
          c.sp();
        }
      }
      c.expect(')');
      this.depth--;
    }
    return req;
  }

  statusItems(): StatusItem[] {
    return this.list(() => {
      const item = this.c.atom().toUpperCase() as StatusItem;
      if (!STATUS_ITEMS.includes(item)) throw new ParseError('Unknown STATUS item');
      return item;
    }, false);
  }

  // --- Flags -----------------------------------------------------------------------------------

  /** A flag as an atom, "\" allowed at its start (RFC 9051 §9 flag). */
  flagAtom(): string {
    const c = this.c;
    if (c.peek() === 0x5c) {
      c.advance();
      return `\\${c.atom()}`;
    }
    return c.atom();
  }

  /** A storable flag: system flags in canonical case; keywords as given. \Recent and unknown
   * system flags are refused (RFC 9051 §2.3.2: \Recent was removed; RFC 3501 §6.4.6 it cannot be
   * stored). */
  flag(): string {
    const f = this.flagAtom();
    if (!f.startsWith('\\')) return f;
    const canon = SYSTEM_FLAGS.get(f.toLowerCase());
    if (canon === undefined) throw new ParseError('Invalid system flag');
    return canon;
  }

  flagList(): string[] {
    return this.list(() => this.flag());
  }

  // --- APPEND (RFC 9051 §6.3.12, RFC 3502 MULTIAPPEND, RFC 3516 BINARY, RFC 6855 UTF8) ----------

  private append(): Request {
    const c = this.c;
    c.sp();
    const mailbox = this.mailbox();
    const messages: AppendMessage[] = [];
    while (c.peek() === 0x20) {
      c.sp();
      let flags: string[] = [];
      let date: number | null = null;
      if (c.peek() === 0x28) {
        flags = this.flagList();
        c.sp();
      }
      if (c.peek() === 0x22) {
        date = this.dateTime();
        c.sp();
      }
      let utf8Msg = false;
      if (c.tryWord('UTF8')) {
        c.sp();
        c.expect('(');
        utf8Msg = true;
      }
      const lit = c.takeLiteral();
      // RFC 3516 §4.2: NUL only in a literal8; a plain literal is CHAR8 (RFC 9051 §9).
      if (!lit.binary && lit.data.includes(0)) throw new ParseError('NUL in message literal; use a binary literal');
      if (utf8Msg) {
        if (!lit.binary) throw new ParseError('UTF8 APPEND data must be a literal8');
        c.expect(')');
      }
      messages.push({ flags, date, data: lit.data, binary: lit.binary, utf8: utf8Msg });
    }
    if (messages.length === 0) throw new ParseError('Missing message literal');
    return { name: 'APPEND', mailbox, messages };
  }

  /** date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE. */
  dateTime(): number {
    const s = this.c.quoted().toString('latin1');
    const m = /^([ \d]?\d)-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$/.exec(s);
    if (!m) throw new ParseError('Invalid date-time');
    const month = MONTHS.indexOf(m[2]!.toUpperCase());
    const day = Number(m[1]!.trim());
    const [hh, mm, ss, zh, zm] = [Number(m[4]), Number(m[5]), Number(m[6]), Number(m[8]), Number(m[9])];
    if (month < 0 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60 || zm > 59) throw new ParseError('Invalid date-time');
    const utc = Date.UTC(Number(m[3]), month, day, hh, mm, ss);
    if (new Date(Date.UTC(Number(m[3]), month, day)).getUTCDate() !== day) throw new ParseError('Invalid date-time');
    const offset = (zh * 60 + zm) * 60_000 * (m[7] === '-' ? -1 : 1);
    return utc - offset;
  }

  /** date = date-text / DQUOTE date-text DQUOTE, returned as 'YYYY-MM-DD'. */
  date(): string {
    const c = this.c;
    const text = c.peek() === 0x22 ? c.quoted().toString('latin1') : c.atom();
    const m = /^(\d{1,2})-([A-Za-z]{3})-(\d{4})$/.exec(text);
    if (!m) throw new ParseError('Invalid date');
    const month = MONTHS.indexOf(m[2]!.toUpperCase());
    const day = Number(m[1]);
    if (month < 0 || day < 1 || new Date(Date.UTC(Number(m[3]), month, day)).getUTCDate() !== day) throw new ParseError('Invalid date');
    return `${m[3]}-${String(month + 1).padStart(2, '0')}-${String(day).padStart(2, '0')}`;
  }

  // --- Sequence sets ---------------------------------------------------------------------------

  sequenceSet(): SequenceSet {
    const c = this.c;
    if (c.peek() === 0x24) {
      // RFC 5182 §2: "$" is the saved search result.
      c.advance();
      return { ranges: [], saved: true };
    }
    const ranges: Array<[SeqBound, SeqBound]> = [];
    for (;;) {
      const a = this.seqNumber();
      let b = a;
      if (c.peek() === 0x3a) {
        c.advance();
        b = this.seqNumber();
      }
      ranges.push([a, b]);
      if (ranges.length > MAX_SEQUENCE_RANGES) throw new ParseError('Too many ranges in sequence set');
      if (c.peek() !== 0x2c) break;
      c.advance();
    }
    return { ranges };
  }

  private seqNumber(): SeqBound {
    if (this.c.peek() === 0x2a) {
      this.c.advance();
      return '*';
    }
    return this.nzNumber();
  }

  // --- FETCH (RFC 9051 §6.4.5) -----------------------------------------------------------------

  fetchAtts(): FetchAtt[] {
    const c = this.c;
    if (c.peek() === 0x28) return this.list(() => this.fetchAtt(), false);
    // Macros (RFC 9051 §6.4.5) are only allowed alone.
    if (c.tryWord('ALL')) return [{ kind: 'FLAGS' }, { kind: 'INTERNALDATE' }, { kind: 'RFC822.SIZE' }, { kind: 'ENVELOPE' }];
    if (c.tryWord('FAST')) return [{ kind: 'FLAGS' }, { kind: 'INTERNALDATE' }, { kind: 'RFC822.SIZE' }];
    if (c.tryWord('FULL')) return [{ kind: 'FLAGS' }, { kind: 'INTERNALDATE' }, { kind: 'RFC822.SIZE' }, { kind: 'ENVELOPE' }, { kind: 'BODY' }];
    return [this.fetchAtt()];
  }

  fetchAtt(): FetchAtt {
    const c = this.c;
    // The item name runs up to "[", "<", SP or ")".
    const name = c.atomLike((b) => isAtomChar(b) && b !== 0x5b && b !== 0x3c).toUpperCase();
    switch (name) {
      case 'FLAGS':
      case 'INTERNALDATE':
      case 'RFC822.SIZE':
      case 'ENVELOPE':
      case 'BODYSTRUCTURE':
      case 'UID':
      case 'EMAILID':
      case 'THREADID':
      case 'SAVEDATE':
      case 'MODSEQ': // RFC 7162 §3.1.4.1
        return { kind: name };
      case 'PREVIEW': {
        // RFC 8970 §3: PREVIEW [SP "(" "LAZY" ")"] — only as the modifier list form.
        let lazy = false;
        if (c.peek() === 0x20 && c.peekAt(1) === 0x28) {
          c.sp();
          for (const m of this.list(() => c.atom().toUpperCase(), false)) {
            if (m !== 'LAZY') throw new ParseError('Unknown PREVIEW modifier');
            lazy = true;
          }
        }
        return { kind: 'PREVIEW', lazy };
      }
      case 'RFC822':
        return { kind: 'BODY[]', section: { part: [], text: null }, partial: null, peek: false, legacy: 'RFC822' };
      case 'RFC822.HEADER':
        return { kind: 'BODY[]', section: { part: [], text: 'HEADER' }, partial: null, peek: true, legacy: 'RFC822.HEADER' };
      case 'RFC822.TEXT':
        return { kind: 'BODY[]', section: { part: [], text: 'TEXT' }, partial: null, peek: false, legacy: 'RFC822.TEXT' };
      case 'BODY':
      case 'BODY.PEEK': {
        if (c.peek() !== 0x5b) {
          if (name === 'BODY.PEEK') throw new ParseError('BODY.PEEK needs a section');
          return { kind: 'BODY' };
        }
        const section = this.section();
        return { kind: 'BODY[]', section, partial: this.partial(), peek: name === 'BODY.PEEK' };
      }
      case 'BINARY':
      case 'BINARY.PEEK':
      case 'BINARY.SIZE': {
        // RFC 3516 §4: section-binary = "[" [section-part] "]".
        c.expect('[');
        const part = c.peek() === 0x5d ? [] : this.sectionPart();
        c.expect(']');
        const section: SectionSpec = { part, text: null };
        if (name === 'BINARY.SIZE') return { kind: 'BINARY.SIZE', section };
        return { kind: 'BINARY[]', section, partial: this.partial(), peek: name === 'BINARY.PEEK' };
      }
      default:
        throw new ParseError('Unknown FETCH item');
    }
  }

  private sectionPart(): number[] {
    const c = this.c;
    const part = [this.nzNumber()];
    while (c.peek() === 0x2e && c.peekAt(1) >= 0x30 && c.peekAt(1) <= 0x39) {
      c.advance();
      part.push(this.nzNumber());
      if (part.length > MAX_NESTING) throw new ParseError('Section part too deep');
    }
    return part;
  }

  /** section = "[" [section-spec] "]" (RFC 9051 §9). */
  section(): SectionSpec {
    const c = this.c;
    c.expect('[');
    let part: number[] = [];
    let text: SectionSpec['text'] = null;
    let fields: string[] | undefined;
    if (c.peek() !== 0x5d) {
      if (c.peek() >= 0x30 && c.peek() <= 0x39) {
        part = this.sectionPart();
        if (c.peek() === 0x2e) c.advance();
        else {
          c.expect(']');
          return { part, text: null };
        }
      }
      const word = c.atomLike((b) => isAtomChar(b) && b !== 0x5b).toUpperCase();
      if (word === 'HEADER' || word === 'TEXT') text = word;
      else if (word === 'MIME' && part.length > 0) text = 'MIME';
      else if (word === 'HEADER.FIELDS' || word === 'HEADER.FIELDS.NOT') {
        text = word;
        c.sp();
        fields = this.list(() => {
          const f = this.astring().toString('latin1');
          // RFC 5322 §3.6.8 field-name: printable US-ASCII except ":".
          if (!/^[\x21-\x39\x3b-\x7e]+$/.test(f)) throw new ParseError('Invalid header field name');
          return f;
        }, false);
      } else throw new ParseError('Invalid section');
    }
    c.expect(']');
    return fields ? { part, text, fields } : { part, text };
  }

  /** partial = "<" number "." nz-number ">". */
  private partial(): Partial | null {
    const c = this.c;
    if (c.peek() !== 0x3c) return null;
    c.advance();
    const offset = this.number();
    c.expect('.');
    const length = this.nzNumber();
    c.expect('>');
    return { offset, length };
  }

  // --- STORE -----------------------------------------------------------------------------------

  private store(uid: boolean): Request {
    const c = this.c;
    c.sp();
    const set = this.sequenceSet();
    c.sp();
    let unchangedSince: number | null = null;
    if (c.peek() === 0x28) {
      // RFC 4466 §2.5 store-modifiers; RFC 7162 §3.1.3 UNCHANGEDSINCE.
      for (const m of this.list(() => {
        if (!c.tryWord('UNCHANGEDSINCE')) throw new ParseError('Unknown STORE modifier');
        c.sp();
        return this.modseqValue(true);
      }, false))
        unchangedSince = m;
      c.sp();
    }
    let mode: 'add' | 'remove' | 'set' = 'set';
    if (c.peek() === 0x2b) {
      mode = 'add';
      c.advance();
    } else if (c.peek() === 0x2d) {
      mode = 'remove';
      c.advance();
    }
    const item = c.atom().toUpperCase();
    if (item !== 'FLAGS' && item !== 'FLAGS.SILENT') throw new ParseError('Expected FLAGS or FLAGS.SILENT');
    c.sp();
    let flags: string[];
    if (c.peek() === 0x28) flags = this.flagList();
    else {
      flags = [this.flag()];
      while (c.peek() === 0x20) {
        c.sp();
        flags.push(this.flag());
        if (flags.length > MAX_LIST_ITEMS) throw new ParseError('Too many flags');
      }
    }
    return { name: 'STORE', uid, set, mode, silent: item === 'FLAGS.SILENT', flags, unchangedSince };
  }

  // --- SEARCH (RFC 9051 §6.4.4, RFC 4731 ESEARCH, RFC 5182 SEARCHRES) ---------------------------

  private search(uid: boolean): Request {
    const c = this.c;
    c.sp();
    let returns: SearchReturn[] | null = null;
    if (c.tryWord('RETURN')) {
      c.sp();
      returns = this.searchReturns();
      c.sp();
    }
    let charset: string | null = null;
    if (c.tryWord('CHARSET')) {
      c.sp();
      charset = this.astring().toString('latin1').toUpperCase();
      c.sp();
    }
    const keys = [this.searchKey()];
    while (c.peek() === 0x20) {
      c.sp();
      keys.push(this.searchKey());
      if (keys.length > MAX_LIST_ITEMS) throw new ParseError('Too many search keys');
    }
    const key: SearchKey = keys.length === 1 ? keys[0]! : { kind: 'and', keys };
    return { name: 'SEARCH', uid, charset, returns, key };
  }

  /** RFC 4731 §3.1 search-return-opts: "(" [option *(SP option)] ")". */
  private searchReturns(): SearchReturn[] {
    return this.list(() => {
      const r = this.c.atom().toUpperCase() as SearchReturn;
      if (!['MIN', 'MAX', 'ALL', 'COUNT', 'SAVE'].includes(r)) throw new ParseError('Unknown SEARCH return option');
      return r;
    });
  }

  /** The search keys after SEARCH's options: search-key *(SP search-key), ANDed. */
  private searchKeys(): SearchKey {
    const c = this.c;
    const keys = [this.searchKey()];
    while (c.peek() === 0x20) {
      c.sp();
      keys.push(this.searchKey());
      if (keys.length > MAX_LIST_ITEMS) throw new ParseError('Too many search keys');
    }
    return keys.length === 1 ? keys[0]! : { kind: 'and', keys };
  }

  /** RFC 5256 §5: SORT sort-criteria SP search-charset 1*(SP search-key); RFC 5957 DISPLAY keys. */
  private sort(uid: boolean): Request {
    const c = this.c;
    c.sp();
    let returns: SearchReturn[] | null = null;
    if (c.tryWord('RETURN')) {
      // RFC 5267 §3.2 ESORT: the RFC 4731 result options; SAVE is not one of them here.
      c.sp();
      returns = this.searchReturns().filter((r) => r !== 'SAVE');
      c.sp();
    }
    const criteria = this.list(() => {
      const reverse = c.tryWord('REVERSE');
      if (reverse) c.sp();
      const key = c.atom().toUpperCase() as SortCriterion['key'];
      if (!['ARRIVAL', 'CC', 'DATE', 'FROM', 'SIZE', 'SUBJECT', 'TO', 'DISPLAYFROM', 'DISPLAYTO'].includes(key)) throw new ParseError('Unknown sort key');
      return { key, reverse };
    }, false);
    c.sp();
    const charset = this.astring().toString('latin1').toUpperCase();
    c.sp();
    return { name: 'SORT', uid, returns, criteria, charset, key: this.searchKeys() };
  }

  /** RFC 5256 §5: THREAD thread-alg SP search-charset 1*(SP search-key). */
  private thread(uid: boolean): Request {
    const c = this.c;
    c.sp();
    const algorithm = c.atom().toUpperCase();
    if (algorithm !== 'ORDEREDSUBJECT' && algorithm !== 'REFERENCES') throw new ParseError('Unknown THREAD algorithm');
    c.sp();
    const charset = this.astring().toString('latin1').toUpperCase();
    c.sp();
    return { name: 'THREAD', uid, algorithm, charset, key: this.searchKeys() };
  }

  private searchText(): string {
    return utf8(this.astring());
  }

  searchKey(): SearchKey {
    const c = this.c;
    const b = c.peek();
    if (b === 0x28) {
      const keys = this.list(() => this.searchKey(), false);
      return keys.length === 1 ? keys[0]! : { kind: 'and', keys };
    }
    if ((b >= 0x30 && b <= 0x39) || b === 0x2a || b === 0x24) return { kind: 'seqset', set: this.sequenceSet() };
    const word = c.atom().toUpperCase();
    const arg = (): void => c.sp();
    switch (word) {
      case 'ALL':
        return { kind: 'all' };
      case 'ANSWERED':
      case 'DELETED':
      case 'DRAFT':
      case 'FLAGGED':
      case 'SEEN':
        return { kind: 'flag', flag: SYSTEM_FLAGS.get(`\\${word.toLowerCase()}`)!, present: true };
      case 'UNANSWERED':
      case 'UNDELETED':
      case 'UNDRAFT':
      case 'UNFLAGGED':
      case 'UNSEEN':
        return { kind: 'flag', flag: SYSTEM_FLAGS.get(`\\${word.slice(2).toLowerCase()}`)!, present: false };
      case 'KEYWORD':
      case 'UNKEYWORD':
        arg();
        return { kind: 'flag', flag: c.atom(), present: word === 'KEYWORD' };
      case 'NEW':
        return { kind: 'new' };
      case 'OLD':
        return { kind: 'old' };
      case 'RECENT':
        return { kind: 'recent' };
      case 'BCC':
      case 'CC':
      case 'FROM':
      case 'TO':
        arg();
        return { kind: 'address', field: word.toLowerCase() as 'from' | 'to' | 'cc' | 'bcc', value: this.searchText() };
      case 'SUBJECT':
        arg();
        return { kind: 'subject', value: this.searchText() };
      case 'BODY':
        arg();
        return { kind: 'body', value: this.searchText() };
      case 'TEXT':
        arg();
        return { kind: 'text', value: this.searchText() };
      case 'HEADER': {
        arg();
        const field = this.astring().toString('latin1');
        arg();
        return { kind: 'header', field, value: this.searchText() };
      }
      case 'BEFORE':
      case 'ON':
      case 'SINCE':
        arg();
        return { kind: 'internaldate', op: word.toLowerCase() as 'before' | 'on' | 'since', date: this.date() };
      case 'SENTBEFORE':
      case 'SENTON':
      case 'SENTSINCE':
        arg();
        return { kind: 'sentdate', op: word.slice(4).toLowerCase() as 'before' | 'on' | 'since', date: this.date() };
      case 'SAVEDBEFORE':
      case 'SAVEDON':
      case 'SAVEDSINCE':
        // RFC 8514 §4.
        arg();
        return { kind: 'savedate', op: word.slice(5).toLowerCase() as 'before' | 'on' | 'since', date: this.date() };
      case 'SAVEDATESUPPORTED':
        return { kind: 'savedatesupported' };
      case 'OLDER':
      case 'YOUNGER':
        // RFC 5032 §3: interval in seconds, nz-number.
        arg();
        return { kind: word.toLowerCase() as 'older' | 'younger', seconds: this.nzNumber() };
      case 'EMAILID':
      case 'THREADID': {
        // RFC 8474 §6: objectid = 1*255(ALPHA / DIGIT / "_" / "-").
        arg();
        const id = c.atom();
        if (!/^[A-Za-z0-9_-]{1,255}$/.test(id)) throw new ParseError('Invalid object id');
        return word === 'EMAILID' ? { kind: 'emailid', id } : { kind: 'threadid', id };
      }
      case 'MODSEQ': {
        // RFC 7162 §3.1.5: MODSEQ [entry-name entry-type-req] mod-sequence-valzer. Modseqs are
        // kept per message, not per flag, so the entry names only have to be well-formed.
        arg();
        if (c.peek() === 0x22) {
          this.astring();
          c.sp();
          const t = c.atom().toLowerCase();
          if (t !== 'priv' && t !== 'shared' && t !== 'all') throw new ParseError('Invalid entry type');
          c.sp();
        }
        return { kind: 'modseq', modseq: this.modseqValue(true) };
      }
      case 'LARGER':
      case 'SMALLER':
        arg();
        return { kind: 'size', op: word.toLowerCase() as 'larger' | 'smaller', n: this.number() };
      case 'UID':
        arg();
        return { kind: 'uid', set: this.sequenceSet() };
      case 'NOT': {
        arg();
        this.enter();
        const key = this.searchKey();
        this.depth--;
        return { kind: 'not', key };
      }
      case 'OR': {
        arg();
        this.enter();
        const a = this.searchKey();
        c.sp();
        const k = this.searchKey();
        this.depth--;
        return { kind: 'or', a, b: k };
      }
      default:
        throw new ParseError('Unknown search key');
    }
  }

  // --- ID (RFC 2971) ---------------------------------------------------------------------------

  private id(): Request {
    const c = this.c;
    c.sp();
    if (c.tryWord('NIL')) return { name: 'ID', params: null };
    const flat = this.list(() => this.nstring());
    if (flat.length % 2 !== 0 || flat.length / 2 > MAX_ID_PAIRS) throw new ParseError('Invalid ID parameter list');
    const params: Array<[string, string | null]> = [];
    for (let i = 0; i < flat.length; i += 2) {
      const k = flat[i];
      const v = flat[i + 1];
      if (!k || k.length > 30 || (v && v.length > 1024)) throw new ParseError('Invalid ID parameter');
      params.push([utf8(k), v ? utf8(v) : null]);
    }
    return { name: 'ID', params };
  }
}

const SYSTEM_FLAGS = new Map<string, string>([
  ['\\seen', '\\Seen'],
  ['\\answered', '\\Answered'],
  ['\\flagged', '\\Flagged'],
  ['\\deleted', '\\Deleted'],
  ['\\draft', '\\Draft'],
]);

function decodeBase64(s: string): Buffer {
  // Strict: RFC 4648 alphabet with padding only at the end; Node's decoder silently skips junk.
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(s)) throw new ParseError('Invalid base64');
  return Buffer.from(s, 'base64');
}

export { decodeBase64 };

/**
 * Checks a mailbox name against this server's rules. Returns the reason it is refused, or null.
 * Not syntax (the session answers NO [CANNOT]): empty levels, NUL or other control characters,
 * "." / ".." levels, wildcards, names over MAX_MAILBOX_BYTES bytes or MAX_MAILBOX_DEPTH levels.
 */
export function mailboxNameProblem(name: string): string | null {
  if (name.length === 0) return 'Mailbox name is empty';
  if (Buffer.byteLength(name, 'utf8') > MAX_MAILBOX_BYTES) return `Mailbox name is over ${MAX_MAILBOX_BYTES} bytes`;
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(name)) return 'Mailbox name has a control character';
  if (/[*%]/.test(name)) return 'Mailbox name has a wildcard character';
  const levels = name.split(HIERARCHY_SEPARATOR);
  if (levels.length > MAX_MAILBOX_DEPTH) return `Mailbox name is deeper than ${MAX_MAILBOX_DEPTH} levels`;
  for (const level of levels) {
    if (level === '') return 'Mailbox name has an empty level';
    if (level === '.' || level === '..') return 'Mailbox name has a "." or ".." level';
    if (level.trim() !== level) return 'Mailbox name level starts or ends with a space';
  }
  return null;
}
