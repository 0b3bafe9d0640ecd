/**
 * Bounds on keywords (RFC 9051 §2.3.2) set by IMAP clients. A message's flags are in every FETCH
 * FLAGS of it and a mailbox's keywords in its FLAGS and PERMANENTFLAGS responses (and in every
 * SELECT of it), so a client adding thousands made each of those megabytes. Clients use a dozen.
 * Over a bound, STORE and APPEND answer NO [LIMIT] (RFC 5530); a mailbox at its bound no longer
 * offers "\*" in PERMANENTFLAGS (RFC 9051 §7.1: new keywords cannot be created).
 *
 * The store keeps whatever it is given (imports, restores): only what clients ask is bounded.
 */
import type { Uid } from '../../lib/brand.js';
import { NoError } from './errors.js';
import type { MailboxView } from './view.js';

export const MAX_KEYWORDS_PER_MESSAGE = 100;
export const MAX_MAILBOX_KEYWORDS = 1000;

/** The distinct keywords of a flag list, lowercased. */
export function keywordsOf(flags: readonly string[]): string[] {
  return [...new Set(flags.filter((f) => !f.startsWith('\\')).map((f) => f.toLowerCase()))];
}

/** APPEND: the message's own keywords. */
export function checkMessageKeywords(flags: readonly string[]): void {
  if (keywordsOf(flags).length > MAX_KEYWORDS_PER_MESSAGE) throw new NoError('LIMIT', `At most ${MAX_KEYWORDS_PER_MESSAGE} keywords on a message`);
}

/** STORE FLAGS or +FLAGS on `uids` of the view: the messages' and the mailbox's bounds. */
export function checkStoreKeywords(view: MailboxView, uids: readonly Uid[], mode: 'set' | 'add' | 'remove', flags: readonly string[]): void {
  if (mode === 'remove') return;
  const keywords = keywordsOf(flags);
  if (keywords.length === 0) return;
  checkMessageKeywords(flags);
  if (view.keywordCount + view.unknownKeywords(keywords) > MAX_MAILBOX_KEYWORDS) {
    throw new NoError('LIMIT', `At most ${MAX_MAILBOX_KEYWORDS} keywords in a mailbox`);
  }
  // No message has more keywords than the mailbox: most STOREs stop here.
  if (mode === 'set' || view.keywordCount + keywords.length <= MAX_KEYWORDS_PER_MESSAGE) return;
  for (const uid of uids) {
    const have = keywordsOf(view.knownFlags(uid));
    const adding = keywords.filter((k) => !have.includes(k)).length;
    if (have.length + adding > MAX_KEYWORDS_PER_MESSAGE) throw new NoError('LIMIT', `At most ${MAX_KEYWORDS_PER_MESSAGE} keywords on a message`);
  }
}

/** PERMANENTFLAGS' "\*": offered while new keywords may still be created. */
export function canCreateKeywords(view: MailboxView): boolean {
  return view.keywordCount < MAX_MAILBOX_KEYWORDS;
}
