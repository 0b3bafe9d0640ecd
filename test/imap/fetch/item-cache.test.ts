import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { openTestStore } from '../../helpers/store.js';
import { parseMessage } from '../../../src/mail/parse.js';
import { fetchTextInHand, fetchValues, inHandItems, type FetchOptions, type FetchSource } from '../../../src/imap/fetch/fetch.js';
import { FetchItemCache } from '../../../src/imap/fetch/item-cache.js';
import type { FetchAtt } from '../../../src/imap/protocol/ast.js';
import { Serialized, writeValues, type Output } from '../../../src/imap/protocol/serialize.js';
import type { MailStore, MessageEntry } from '../../../src/store/types.js';
import { wireItems } from '../wire.js';

const RAW = Buffer.from(
  'From: Ann <ann@example.com>\r\nTo: bob@example.com\r\nSubject: Caf\xc3\xa9\r\nMessage-ID: <1@example.com>\r\n' +
    'Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--\r\n',
  'latin1',
);

async function storedEntry(store: MailStore): Promise<MessageEntry> {
  await store.addDomain('example.com');
  const account = await store.createAccount({ address: 'bob@example.com', passwordHash: 'x' });
  const inbox = await store.getMailbox(account.id, 'INBOX');
  assert.ok(inbox !== null);
  await store.append(inbox.id, { raw: RAW, parsed: parseMessage(RAW) });
  const [entry] = await store.listEntries(inbox.id);
  assert.ok(entry !== undefined);
  return entry;
}

/** The store's reads of message content, counted. */
function counting(store: MailStore): { reader: FetchSource['store']; reads: () => number } {
  let n = 0;
  return {
    reader: {
      getParsed: (hash) => (n++, store.getParsed(hash)),
      readBlob: (hash, start, end) => (n++, store.readBlob(hash, start, end)),
      streamBlob: (hash, start, end) => (n++, store.streamBlob(hash, start, end)),
    },
    reads: () => n,
  };
}

/** A message's items as the FETCH handler writes them in hand: the command's items made once,
 * the entry's facts, modseq and flags text. */
function textInHand(atts: readonly FetchAtt[], src: FetchSource, opts: FetchOptions, flagsText: () => string): string | null {
  const items = inHandItems(atts, opts);
  return items === null ? null : fetchTextInHand(items, src.entry, src.entry.modseq, items.flags ? flagsText() : '');
}

const ATTS: FetchAtt[] = [
  { kind: 'UID' },
  { kind: 'ENVELOPE' },
  { kind: 'BODYSTRUCTURE' },
  { kind: 'BODY[]', section: { part: [], text: 'HEADER.FIELDS', fields: ['Subject', 'from'] }, partial: null, peek: true },
];

test('FETCH answers ENVELOPE, BODYSTRUCTURE and HEADER.FIELDS from the item cache the second time, the same bytes, no store read', async () => {
  const { store, cleanup } = await openTestStore();
  try {
    const entry = await storedEntry(store);
    const { reader, reads } = counting(store);
    const cache = new FetchItemCache();
    const opts = { rev2: false, utf8Accept: false };
    const plain = await wireItems(await fetchValues(ATTS, { entry, store: reader }, opts));
    const first = await wireItems(await fetchValues(ATTS, { entry, store: reader }, { ...opts, cache }));
    const before = reads();
    // Another command: other FetchAtt objects for the same items.
    const again = await wireItems(await fetchValues(structuredClone(ATTS), { entry, store: reader }, { ...opts, cache }));
    assert.equal(first, plain);
    assert.equal(again, plain);
    // The same fields named in another order and case: the kept value, the names as written.
    const other: FetchAtt[] = [{ kind: 'BODY[]', section: { part: [], text: 'HEADER.FIELDS', fields: ['FROM', 'subject'] }, partial: null, peek: true }];
    const reordered = await wireItems(await fetchValues(other, { entry, store: reader }, { ...opts, cache }));
    assert.equal(reads(), before);
    assert.equal(reordered, plain.slice(plain.indexOf('BODY[')).replace('(Subject from)', '(FROM subject)'));
    assert.ok(cache.bytes > 0);
  } finally {
    await cleanup();
  }
});

test('FETCH writes a message as text in hand (no store, no value tree) only when every item is the entry\'s or kept, the bytes fetchValues\' values make', async () => {
  const { store, cleanup } = await openTestStore();
  try {
    const entry = await storedEntry(store);
    const { reader, reads } = counting(store);
    const cache = new FetchItemCache();
    const opts = { rev2: false, utf8Accept: false, cache, timezoneOffset: () => 60 };
    const src = { entry: { ...entry, flags: ['\\Seen', '$Work'] }, store: reader, recent: true };
    const flagsText = () => '(\\Seen $Work \\Recent)';
    // The entry's own items need nothing kept.
    const own: FetchAtt[] = [{ kind: 'UID' }, { kind: 'FLAGS' }, { kind: 'INTERNALDATE' }, { kind: 'RFC822.SIZE' }, { kind: 'MODSEQ' }];
    const ownText = textInHand(own, src, opts, flagsText);
    assert.equal(ownText, await wireItems(await fetchValues(own, src, opts)));
    assert.match(ownText ?? '', /^UID \d+ FLAGS \(\\Seen \$Work \\Recent\) INTERNALDATE "[ 0-9]{2}-[A-Z][a-z]{2}-[0-9]{4} [0-9:]{8} \+0100" RFC822\.SIZE \d+ MODSEQ \(\d+\)$/);
    // Not kept yet: the store must answer.
    assert.equal(textInHand(ATTS, src, opts, flagsText), null);
    const first = await wireItems(await fetchValues(ATTS, src, opts));
    const before = reads();
    assert.equal(textInHand(structuredClone(ATTS), src, opts, flagsText), first);
    // The same header fields in another order and case: the kept value under the names as written.
    const other: FetchAtt[] = [{ kind: 'BODY[]', section: { part: [], text: 'HEADER.FIELDS', fields: ['FROM', 'subject'] }, partial: null, peek: true }];
    assert.equal(textInHand(other, src, opts, flagsText), await wireItems(await fetchValues(other, src, opts)));
    // A body section is never kept, nor are the rarer items written here: the store's path.
    assert.equal(textInHand([{ kind: 'UID' }, { kind: 'BODY[]', section: { part: [], text: 'TEXT' }, partial: null, peek: true }], src, opts, flagsText), null);
    assert.equal(textInHand([{ kind: 'EMAILID' }], src, opts, flagsText), null);
    assert.equal(reads(), before);
    // Without a cache, only the entry's items.
    assert.equal(textInHand(ATTS, src, { rev2: false, utf8Accept: false }, flagsText), null);
    // Kept for a UTF8=ACCEPT session: the same text as its values make, 8-bit quoted.
    const utf8 = { rev2: true, utf8Accept: true, cache };
    const envelope: FetchAtt[] = [{ kind: 'ENVELOPE' }];
    const utf8Wire = await wireItems(await fetchValues(envelope, src, utf8), true);
    assert.equal(textInHand(envelope, src, utf8, flagsText), utf8Wire);
    assert.ok(utf8Wire.includes('"Caf\xc3\xa9"'));
  } finally {
    await cleanup();
  }
});

test('items kept for a UTF8=ACCEPT session are not given to a session without it', async () => {
  const { store, cleanup } = await openTestStore();
  try {
    const entry = await storedEntry(store);
    const cache = new FetchItemCache();
    const atts: FetchAtt[] = [{ kind: 'ENVELOPE' }];
    const utf8 = await wireItems(await fetchValues(atts, { entry, store }, { rev2: true, utf8Accept: true, cache }), true);
    const ascii = await wireItems(await fetchValues(atts, { entry, store }, { rev2: false, utf8Accept: false, cache }));
    // The wire as latin1: é is two bytes.
    assert.ok(utf8.includes('"Caf\xc3\xa9"'));
    // RFC 6855 §3: 8-bit text only in a literal for a client that has not enabled UTF8=ACCEPT.
    assert.ok(ascii.includes('{5}\r\nCaf\xc3\xa9'));
  } finally {
    await cleanup();
  }
});

test('the serializer refuses bytes written for a UTF-8 client in a response to another', () => {
  const kept = Serialized.of(['Café'], { utf8: true });
  assert.ok(kept !== null);
  const out: Output = [];
  assert.throws(() => writeValues([kept], { utf8: false }, out), /UTF8=ACCEPT/);
  writeValues([kept], { utf8: true }, out);
  assert.equal(Buffer.concat(out as Buffer[]).toString('utf8'), '"Café"');
  const ascii = Serialized.of(['Café'], { utf8: false });
  assert.ok(ascii !== null);
  const both: Output = [];
  writeValues([ascii], { utf8: true }, both);
  assert.equal(Buffer.concat(both as Buffer[]).toString('utf8'), '{5}\r\nCafé');
});

test('item keys stay distinct for distinct items however many header lists clients name', () => {
  const cache = new FetchItemCache();
  const v = { rev2: false, utf8Accept: false };
  const att = (name: string): FetchAtt => ({ kind: 'BODY[]', section: { part: [], text: 'HEADER.FIELDS', fields: [name] }, partial: null, peek: true });
  const seen = new Map<number, string>();
  for (let i = 0; i < 25_000; i++) {
    const name = `X-F${i % 12_000}`;
    const plan = cache.planOf(att(name), v);
    assert.ok(plan !== null);
    const had = seen.get(plan.key);
    assert.ok(had === undefined || had === name, `key ${plan.key} named both ${had} and ${name}`);
    seen.set(plan.key, name);
  }
  // The same item in another spelling, in the same window: the same key.
  assert.equal(cache.planOf(att('x-f5'), v)?.key, cache.planOf(att('X-F5'), v)?.key);
  assert.equal(cache.planOf({ kind: 'ENVELOPE' }, v)?.key, cache.planOf({ kind: 'ENVELOPE' }, v)?.key);
  assert.notEqual(cache.planOf({ kind: 'ENVELOPE' }, v)?.key, cache.planOf({ kind: 'ENVELOPE' }, { rev2: false, utf8Accept: true })?.key);
});

test('FETCH in hand finds a message\'s kept items again through its facts, never once the cache let them go, and only from the cache that kept them', async () => {
  const { store, cleanup } = await openTestStore();
  try {
    const entry = await storedEntry(store);
    const inbox = entry.mailboxId;
    const other = Buffer.from('From: Cy <cy@example.com>\r\nSubject: other\r\n\r\nbody\r\n', 'latin1');
    await store.append(inbox, { raw: other, parsed: parseMessage(other) });
    const [, second] = await store.listEntries(inbox);
    assert.ok(second !== undefined);
    const [facts] = await store.getEntryFacts(inbox, [entry.uid], true);
    assert.ok(facts !== undefined);
    const copy = { ...facts };
    const envelope: FetchAtt[] = [{ kind: 'UID' }, { kind: 'ENVELOPE' }, { kind: 'INTERNALDATE' }];
    const src = { entry: { ...facts, flags: [], modseq: entry.modseq }, store };
    // Room for the items of one message only.
    const cache = new FetchItemCache(800);
    const opts = { rev2: false, utf8Accept: false, cache, timezoneOffset: () => 60 };
    const want = await wireItems(await fetchValues(envelope, src, opts));
    const items = inHandItems(envelope, opts);
    assert.ok(items !== null);
    assert.equal(fetchTextInHand(items, facts, entry.modseq, ''), want);
    assert.equal(fetchTextInHand(items, facts, entry.modseq, ''), want);
    // What is kept with the facts is not theirs to show: the same keys, equal to a copy.
    assert.deepEqual(Object.keys(facts), Object.keys(copy));
    assert.deepEqual(facts, copy);
    // The other message's items push this one's out (twice: the hits gave it a second chance):
    // not in hand any more, though the facts kept the way to them.
    for (let i = 0; i < 2; i++) await fetchValues(envelope, { entry: { ...second, flags: [] }, store }, opts);
    assert.equal(cache.itemsOf(facts.blobHash), undefined);
    assert.equal(fetchTextInHand(items, facts, entry.modseq, ''), null);
    await fetchValues(envelope, src, opts);
    assert.equal(fetchTextInHand(items, facts, entry.modseq, ''), want);
    // The date follows the zone asked, not the one written before.
    const west = { ...opts, timezoneOffset: () => -300 };
    const westItems = inHandItems(envelope, west);
    assert.ok(westItems !== null);
    assert.equal(fetchTextInHand(westItems, facts, entry.modseq, ''), await wireItems(await fetchValues(envelope, src, west)));
    // Another cache numbers its items otherwise (BODY first here): what the first cache kept
    // under a number is not taken for this cache's item of that number.
    const cache2 = new FetchItemCache();
    const opts2 = { rev2: false, utf8Accept: false, cache: cache2 };
    const body: FetchAtt[] = [{ kind: 'BODY' }];
    const bodyItems = inHandItems(body, opts2);
    assert.ok(bodyItems !== null);
    assert.equal(fetchTextInHand(bodyItems, facts, entry.modseq, ''), null);
    const bodyWire = await wireItems(await fetchValues(body, src, opts2));
    assert.equal(fetchTextInHand(bodyItems, facts, entry.modseq, ''), bodyWire);
    assert.equal(fetchTextInHand(inHandItems([{ kind: 'ENVELOPE' }], opts2)!, facts, entry.modseq, ''), null);
  } finally {
    await cleanup();
  }
});

test('the item cache keeps an item only under a key of the client kind it was written for, so bytes for a UTF-8 client never reach another in hand', async () => {
  const { store, cleanup } = await openTestStore();
  try {
    const entry = await storedEntry(store);
    const [facts] = await store.getEntryFacts(entry.mailboxId, [entry.uid], true);
    assert.ok(facts !== undefined);
    const cache = new FetchItemCache();
    const envelope: FetchAtt[] = [{ kind: 'ENVELOPE' }];
    const ascii = { rev2: false, utf8Accept: false, cache };
    const plan = cache.planOf(envelope[0]!, ascii);
    assert.ok(plan !== null && !plan.utf8);
    // An ENVELOPE written for a UTF8=ACCEPT client (8-bit quoted) offered under the other kind's key.
    const utf8Written = Serialized.of([null, 'Caf\u00e9'], { utf8: true });
    assert.ok(utf8Written !== null);
    cache.set(facts.blobHash, plan, utf8Written);
    assert.equal(cache.itemsOf(facts.blobHash), undefined);
    const items = inHandItems(envelope, ascii);
    assert.ok(items !== null);
    assert.equal(fetchTextInHand(items, facts, entry.modseq, ''), null);
    // Written for its own kind, it is kept, and given back byte for byte, in hand and as a value.
    const want = await wireItems(await fetchValues(envelope, { entry, store }, ascii));
    assert.ok(want.includes('{5}\r\nCaf\xc3\xa9'));
    assert.equal(fetchTextInHand(items, facts, entry.modseq, ''), want);
    assert.equal(await wireItems(await fetchValues(envelope, { entry, store }, ascii)), want);
  } finally {
    await cleanup();
  }
});
