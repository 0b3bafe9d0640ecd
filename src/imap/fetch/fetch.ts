/**
 * The data items of one message's FETCH response (RFC 9051 §6.4.5, §7.5.2), as the flat list
 * `name value name value ...` the session writes inside `* n FETCH (...)` (writeValues, or as one
 * ImapValue list).
 *
 * Invariants:
 * - items come back in the order asked, as values to write separated by spaces: a name then its
 *   value, except that a HEADER.FIELDS(.NOT) item's name is two values (see itemName); names are
 *   in the form RFC 9051 §7.5.2 gives them (BODY.PEEK[...] answers as BODY[...], a partial shows
 *   its origin only: BODY[]<0>);
 * - the parse record is loaded only when an item needs it, and at most once;
 * - message bytes are read by range from the store, never re-parsed; a literal larger than
 *   `largeLiteral` is handed over as a stream of known size so the socket's backpressure holds;
 * - nothing here changes state: the session sets \Seen (see needsSeenFlag) before it calls this;
 *   fetchTextInHand only keeps, with the store's facts object of the message, what it derived
 *   from these facts alone (see InHandMemo).
 */
import type { ParsedMessage } from '../../mail/types.js';
import type { EntryFacts, MailStore, ViewEntry } from '../../store/types.js';
import type { FetchAtt, ImapValue, SectionSpec } from '../protocol/ast.js';
import { bodyStructureValue } from './bodystructure.js';
import { binaryBytes, binarySize, resolveBinary } from './binary.js';
import { envelopeValue } from './envelope.js';
import { resolveSection, sectionBytes, type SectionBytes } from './section.js';
import { FetchItemCache, type ItemPlan, type KeptItemsHandle, type KeptText } from './item-cache.js';
import { Serialized } from '../protocol/serialize.js';

/** Default size above which a literal is streamed rather than read into memory. */
export const DEFAULT_LARGE_LITERAL = 256 * 1024;

export interface FetchSource {
  entry: ViewEntry;
  store: Pick<MailStore, 'getParsed' | 'readBlob' | 'streamBlob'>;
  /** The parse record when the caller has it already. */
  parsed?: ParsedMessage;
  /** The message is \Recent in this session (IMAP4rev1 only; RFC 3501 §2.3.2). */
  recent?: boolean;
}

export interface FetchOptions {
  /** IMAP4rev2 enabled (affects BODYSTRUCTURE of message/global). */
  rev2: boolean;
  /** UTF8=ACCEPT enabled (RFC 9051 §6.3.1): UTF-8 may be sent in strings. */
  utf8Accept: boolean;
  /** Literals above this many bytes are streamed; DEFAULT_LARGE_LITERAL when absent. */
  largeLiteral?: number;
  /** Minutes east of UTC for a date-time written in a response; the server's zone by default. */
  timezoneOffset?: (epochMs: number) => number;
  /** Where items that depend on the message alone are kept written out (see item-cache.ts). */
  cache?: FetchItemCache;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

const localOffset = (epochMs: number): number => -new Date(epochMs).getTimezoneOffset();

/** RFC 9051 §9 date-time: "dd-Mon-yyyy hh:mm:ss +zzzz", day padded with a space (date-day-fixed). */
export function formatDateTime(epochMs: number, offsetMinutes: number): string {
  const d = new Date(epochMs + offsetMinutes * 60_000);
  const two = (n: number): string => String(n).padStart(2, '0');
  const day = String(d.getUTCDate()).padStart(2, ' ');
  const sign = offsetMinutes < 0 ? '-' : '+';
  const abs = Math.abs(offsetMinutes);
  const zone = `${sign}${two(Math.floor(abs / 60))}${two(abs % 60)}`;
  return `${day}-${MONTHS[d.getUTCMonth()]}-${d.getUTCFullYear()} ${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} ${zone}`;
}

// RFC 9051 §9 ATOM-CHAR: CHAR except atom-specials ( ) { SP CTL % * " \ ]
const ATOM = /^[!#$&'+,\-./0-9:;<=>?@A-Z[^_`a-z|}~]+$/;

/** A header field name as echoed in a section: an atom when it can be one, else a string the
 * serializer quotes (RFC 9051 §9 header-fld-name = astring). */
function fieldNameValue(name: string): ImapValue {
  return ATOM.test(name) ? { atom: name } : name;
}

/**
 * The name of a BODY[...] or BINARY[...] item as echoed in the response (RFC 9051 §7.5.2):
 * "BODY[1.2.MIME]", "BODY[]<0>" (a partial shows its origin only).
 *
 * For HEADER.FIELDS(.NOT) the name holds a space and a list of field names, which no single
 * atom may carry: it is then two values, `BODY[1.HEADER.FIELDS` and `(FROM TO)]`, that the
 * serializer writes with the space between them. So the item list is "values written in order,
 * separated by spaces", and such an item takes three values instead of two.
 */
export function itemName(prefix: 'BODY' | 'BINARY' | 'BINARY.SIZE', section: SectionSpec, origin: number | null): ImapValue[] {
  const parts = section.part.join('.');
  const tail = `]${origin !== null ? `<${origin}>` : ''}`;
  if (section.text === 'HEADER.FIELDS' || section.text === 'HEADER.FIELDS.NOT') {
    const head = `${prefix}[${parts === '' ? '' : `${parts}.`}${section.text}`;
    const names: ImapValue[] = (section.fields ?? []).map(fieldNameValue);
    return [{ atom: head }, { concat: [names, { atom: tail }] }];
  }
  const text = section.text === null ? parts : parts === '' ? section.text : `${parts}.${section.text}`;
  return [{ atom: `${prefix}[${text}${tail}` }];
}

/** RFC 8474 objectid = 1*255(ALPHA / DIGIT / "_" / "-"): safe to write as an atom. */
const OBJECT_ID = /^[A-Za-z0-9_-]{1,255}$/;

function objectIdValue(id: string): ImapValue {
  return OBJECT_ID.test(id) ? [{ atom: id }] : null;
}

function hasNul(data: Buffer): boolean {
  return data.includes(0);
}

/**
 * True when one of the items is a non-PEEK BODY[...] or BINARY[...] (RFC822 and RFC822.TEXT
 * included): RFC 9051 §6.4.5 "The \Seen flag is implicitly set". RFC822.HEADER does not set it
 * (RFC 3501 §6.4.5: equivalent to BODY.PEEK[HEADER]).
 */
export function needsSeenFlag(atts: readonly FetchAtt[]): boolean {
  return atts.some(
    (a) => (a.kind === 'BODY[]' && !a.peek && a.legacy !== 'RFC822.HEADER') || (a.kind === 'BINARY[]' && !a.peek),
  );
}

/** How fetchTextInHand writes an item: one of the entry's own, by name, or a kept one (its plan). */
type InHandStep = 'UID' | 'FLAGS' | 'INTERNALDATE' | 'RFC822.SIZE' | 'MODSEQ' | ItemPlan;

/** A command's items when each may be in hand (see inHandItems): made once per command, used for
 * each of its messages. */
export interface InHandItems {
  readonly steps: readonly InHandStep[];
  /** FLAGS is asked: the caller hands over the flags text (fetchTextInHand). */
  readonly flags: boolean;
  readonly cache: FetchItemCache | undefined;
  readonly utf8Accept: boolean;
  readonly offset: (epochMs: number) => number;
}

/**
 * The items of a command as fetchTextInHand writes them, or null when one of them is never in
 * hand (the parse record, message bytes, rarer items): fetchValues answers each message then.
 * Made once per command, so that each message costs no plan lookup per item.
 */
export function inHandItems(atts: readonly FetchAtt[], opts: FetchOptions): InHandItems | null {
  const cache = opts.cache;
  const steps: InHandStep[] = [];
  let flags = false;
  for (const att of atts) {
    const plan = cache === undefined ? null : cache.planOf(att, opts);
    if (plan !== null) {
      steps.push(plan);
      continue;
    }
    switch (att.kind) {
      case 'FLAGS':
        flags = true;
        steps.push(att.kind);
        break;
      case 'UID':
      case 'INTERNALDATE':
      case 'RFC822.SIZE':
      case 'MODSEQ':
        steps.push(att.kind);
        break;
      default:
        return null;
    }
  }
  return { steps, flags, cache, utf8Accept: opts.utf8Accept, offset: opts.timezoneOffset ?? localOffset };
}

/**
 * What fetchTextInHand keeps with an entry's facts: the handle of its blob's kept items (no
 * lookup by the 64-character hash a message; see FetchItemCache.handleOf) and its INTERNALDATE
 * item as written (a date-time costs a time-zone lookup and a dozen strings). Kept under a
 * symbol of this module, not enumerable, on the store's facts object, which lives as long as the
 * store caches the facts and never changes (EntryFacts): the store never reads it, and a fresh
 * facts object starts without one. About 150 bytes a message, counted in the facts cache's
 * weight (read-cache.ts FACTS_MEMO_BYTES) so its bound holds; the handle holds no item once the
 * item cache let them go.
 *
 * Measured with imaptest's FETCH (60 random messages of 100 a command, its random items, all
 * kept; 10 such mailboxes, 20 clients): timed around each call, fetchTextInHand took 2 to 2.6 us
 * a message, of which the lookup by hash about 0.4 us and an INTERNALDATE about 0.7 us; what
 * costs is memory more than work (the item cache is near its bound there, and each object
 * touched a message is a cache miss). With the memo, the command's items planned once and no
 * entry object a message, the handler's work a message went from 1.2 to 0.8 us (median, in one
 * process over a store, both builds alternating).
 */
interface InHandMemo {
  /** The cache `kept` comes from: item keys are numbered per cache. */
  cache: FetchItemCache | undefined;
  kept: KeptItemsHandle | undefined;
  /** The zone function `date` was written for (the session's, or the server's zone: a change of
   * the process's TZ while it runs is not followed for dates already written). */
  zone: ((epochMs: number) => number) | undefined;
  date: string | undefined;
}

const MEMO: unique symbol = Symbol('fetchTextInHand memo');

type MemoHolder = { [MEMO]?: InHandMemo };

/** The memo kept with these facts, made when there is none; null for facts that take no new
 * property (a frozen object). */
function memoOf(facts: EntryFacts): InHandMemo | null {
  const holder = facts as MemoHolder;
  let memo = holder[MEMO];
  if (memo === undefined) {
    if (!Object.isExtensible(facts)) return null;
    memo = { cache: undefined, kept: undefined, zone: undefined, date: undefined };
    // Not enumerable: invisible to whoever lists or compares the facts.
    Object.defineProperty(facts, MEMO, { value: memo, writable: false, enumerable: false, configurable: false });
  }
  return memo;
}

/** The items kept of the blob of these facts, through the memo's handle when it still holds
 * them, else by hash (the handle then kept for the next FETCH). */
function keptItems(cache: FetchItemCache, facts: EntryFacts, memo: InHandMemo | null): ReadonlyMap<number, KeptText> | undefined {
  if (memo === null) return cache.itemsOf(facts.blobHash);
  if (memo.cache === cache && memo.kept !== undefined) {
    const items = FetchItemCache.itemsBy(memo.kept);
    if (items !== undefined) return items;
  }
  const handle = cache.handleOf(facts.blobHash);
  memo.cache = cache;
  memo.kept = handle;
  return handle?.value;
}

/** The INTERNALDATE item of these facts in this zone, as written (RFC 9051 §9 date-time: plain
 * ASCII, which the serializer quotes as it is). */
function internalDateItem(facts: EntryFacts, zone: (epochMs: number) => number, memo: InHandMemo | null): string {
  if (memo !== null && memo.zone === zone && memo.date !== undefined) return memo.date;
  const text = `INTERNALDATE "${formatDateTime(facts.internalDate, zone(facts.internalDate))}"`;
  if (memo !== null) {
    memo.zone = zone;
    memo.date = text;
  }
  return text;
}

/**
 * The items of one message's FETCH response as text, `UID 5 FLAGS (\\Seen) ENVELOPE (...)`,
 * the bytes writeValues writes for fetchValues' answer (as Latin-1 text, a character per byte),
 * when every item is in hand: UID, FLAGS (`flagsText`, the list as written, \\Recent included;
 * read only when `items.flags`), INTERNALDATE, RFC822.SIZE, MODSEQ (`modseq`, the one the view
 * holds), and the items the cache holds written out. Null as soon as a kept item is missing:
 * fetchValues answers then. FETCH tries this first for each message: a FETCH of what was
 * fetched before then builds no value tree and waits for no promise a message.
 */
export function fetchTextInHand(items: InHandItems, facts: EntryFacts, modseq: number, flagsText: string): string | null {
  // Made when an item needs it: the entry's own numbers do not.
  let memo: InHandMemo | null | undefined;
  let kept: ReadonlyMap<number, KeptText> | undefined;
  let out = '';
  const steps = items.steps;
  for (let i = 0; i < steps.length; i++) {
    const step = steps[i]!;
    if (i > 0) out += ' ';
    switch (step) {
      case 'UID':
        out += `UID ${facts.uid}`;
        break;
      case 'FLAGS':
        out += `FLAGS ${flagsText}`;
        break;
      case 'INTERNALDATE':
        out += internalDateItem(facts, items.offset, (memo ??= memoOf(facts)));
        break;
      case 'RFC822.SIZE':
        if (!Number.isSafeInteger(facts.size) || facts.size < 0) return null;
        out += `RFC822.SIZE ${facts.size}`;
        break;
      case 'MODSEQ':
        out += `MODSEQ (${modseq})`; // RFC 7162 §3.1.4.1: MODSEQ (n)
        break;
      default: {
        // Bytes for a UTF-8 client never go to another (the serializer refuses them; see
        // Serialized): the plan tells, the items kept under its key were all written so.
        if (items.cache === undefined || (step.utf8 && !items.utf8Accept)) return null;
        kept ??= keptItems(items.cache, facts, (memo ??= memoOf(facts)));
        const text = kept?.get(step.key);
        if (text === undefined) return null;
        if (step.name !== null) out += `${step.name.text} `;
        out += text;
      }
    }
  }
  return out;
}

/**
 * Writes an item that the entry alone answers into `out` (its name, then its value); false for
 * the items that need the parse record or the message's bytes.
 */
function entryItem(att: FetchAtt, src: FetchSource, offset: (epochMs: number) => number, out: ImapValue[]): boolean {
  const entry = src.entry;
  switch (att.kind) {
    case 'FLAGS': {
      const flags: ImapValue[] = entry.flags.map((f) => ({ atom: f }));
      if (src.recent === true) flags.push({ atom: '\\Recent' });
      out.push({ atom: 'FLAGS' }, flags);
      return true;
    }
    case 'UID':
      out.push({ atom: 'UID' }, entry.uid);
      return true;
    case 'INTERNALDATE':
      out.push({ atom: 'INTERNALDATE' }, formatDateTime(entry.internalDate, offset(entry.internalDate)));
      return true;
    case 'RFC822.SIZE':
      out.push({ atom: 'RFC822.SIZE' }, entry.size);
      return true;
    case 'MODSEQ':
      out.push({ atom: 'MODSEQ' }, [entry.modseq]); // RFC 7162 §3.1.4.1: MODSEQ (n)
      return true;
    case 'EMAILID':
      out.push({ atom: 'EMAILID' }, objectIdValue(entry.emailId) ?? [entry.emailId]); // RFC 8474 §5.1
      return true;
    case 'THREADID':
      out.push({ atom: 'THREADID' }, objectIdValue(entry.threadId)); // RFC 8474 §5.2: NIL when none
      return true;
    case 'SAVEDATE':
      // RFC 8514 §4.3: NIL when the mailbox keeps no save date; ours always does.
      out.push({ atom: 'SAVEDATE' }, formatDateTime(entry.saveDate, offset(entry.saveDate)));
      return true;
    default:
      return false;
  }
}

/** What one message's response may hold in memory: past it, ranges of the message are streamed
 * from the store, and a computed value (decoded BINARY, a header subset) is refused. */
export const FETCH_HELD_MAX = 8 * 1024 * 1024;

/** A message's response would hold more than FETCH_HELD_MAX in memory (many large computed
 * items): the command answers NO [LIMIT]. */
export class FetchTooLargeError extends Error {
  constructor() {
    super('Too much asked of one message at once: fetch fewer items');
  }
}

/** Fetches the values of `atts` for one message. Throws UnknownCteError (binary.ts) for
 * BINARY of a part whose encoding cannot be decoded: the command answers NO [UNKNOWN-CTE]; and
 * FetchTooLargeError (see FETCH_HELD_MAX). */
export async function fetchValues(atts: readonly FetchAtt[], src: FetchSource, opts: FetchOptions): Promise<ImapValue[]> {
  const { entry, store } = src;
  const hash = entry.blobHash;
  const large = opts.largeLiteral ?? DEFAULT_LARGE_LITERAL;
  const offset = opts.timezoneOffset ?? localOffset;
  let parsed = src.parsed;
  const getParsed = async (): Promise<ParsedMessage> => (parsed ??= await store.getParsed(hash));

  /** Bytes of literals this response holds in memory (see FETCH_HELD_MAX). */
  let held = 0;
  /** A literal from section bytes: in memory when small, streamed when large. */
  const literal = async (bytes: SectionBytes, binaryItem: boolean): Promise<ImapValue> => {
    if (bytes.kind === 'buffer') {
      held += bytes.data.length;
      if (held > FETCH_HELD_MAX) throw new FetchTooLargeError();
      // RFC 3516 §4.1: literal8 is needed when the content holds NUL, which a literal may not.
      return binaryItem && hasNul(bytes.data) ? { literal: bytes.data, binary: true } : { literal: bytes.data };
    }
    const size = Math.max(0, bytes.end - bytes.start);
    if (size > large || held + size > FETCH_HELD_MAX) {
      // Unknown content: a BINARY item may always be a literal8 (RFC 3516 §4.1 grammar).
      const stream = store.streamBlob(hash, bytes.start, bytes.end);
      return binaryItem ? { stream, size, binary: true } : { stream, size };
    }
    held += size;
    const data = size === 0 ? Buffer.alloc(0) : await store.readBlob(hash, bytes.start, bytes.end);
    return binaryItem && hasNul(data) ? { literal: data, binary: true } : { literal: data };
  };

  const bs = { rev2: opts.rev2, utf8: opts.utf8Accept };
  const cache = opts.cache;
  let items: ReadonlyMap<number, KeptText> | undefined;
  const out: ImapValue[] = [];
  for (const att of atts) {
    const plan = cache === undefined ? null : cache.planOf(att, opts);
    if (plan !== null) items ??= cache?.itemsOf(hash);
    const kept = plan === null ? undefined : items?.get(plan.key);
    if (plan !== null && kept !== undefined) {
      if (plan.name !== null) out.push(plan.name);
      out.push(Serialized.kept(kept, plan.utf8));
      continue;
    }
    if (entryItem(att, src, offset, out)) continue;
    const at = out.length;
    switch (att.kind) {
      case 'ENVELOPE':
        out.push({ atom: 'ENVELOPE' }, envelopeValue((await getParsed()).envelope));
        break;
      case 'BODY':
        out.push({ atom: 'BODY' }, bodyStructureValue((await getParsed()).root, false, bs));
        break;
      case 'BODYSTRUCTURE':
        out.push({ atom: 'BODYSTRUCTURE' }, bodyStructureValue((await getParsed()).root, true, bs));
        break;
      case 'PREVIEW':
        // RFC 8970 §3: the preview was computed at ingest, so LAZY gets it too.
        out.push({ atom: 'PREVIEW' }, (await getParsed()).preview);
        break;
      case 'BODY[]': {
        const source = resolveSection(await getParsed(), att.section);
        const bytes = await sectionBytes(source, att.partial, hash, store);
        // RFC 3501 §6.4.5 legacy items answer under their own names.
        const name = att.legacy !== undefined ? [{ atom: att.legacy }] : itemName('BODY', att.section, att.partial?.offset ?? null);
        out.push(...name, await literal(bytes, false));
        break;
      }
      case 'BINARY[]': {
        const source = resolveBinary(await getParsed(), att.section);
        const bytes = await binaryBytes(source, att.partial, hash, store);
        out.push(...itemName('BINARY', att.section, att.partial?.offset ?? null), await literal(bytes, true));
        break;
      }
      case 'BINARY.SIZE': {
        const source = resolveBinary(await getParsed(), att.section);
        out.push(...itemName('BINARY.SIZE', att.section, null), await binarySize(source, hash, store));
        break;
      }
    }
    if (plan !== null) {
      // Written out once for the next FETCH of this message: the item, or its value alone (the
      // last value, after the name).
      const from = plan.name === null ? at : out.length - 1;
      const written = Serialized.of(out.slice(from), { utf8: opts.utf8Accept });
      if (written !== null) {
        out.length = from;
        out.push(written);
        cache?.set(hash, plan, written);
      }
    }
  }
  return out;
}
