/**
 * LIST / LSUB pattern matching (RFC 9051 §6.3.9): "*" matches any run of characters, "%" any run
 * without the hierarchy separator. INBOX is matched case-insensitively (RFC 9051 §5.1).
 *
 * Invariant: matching costs O(pattern × name) whatever the input. A pattern turned into a
 * backtracking regular expression (`*a*a*a…b`) can take exponential time on a long name, which
 * would let one client stall the event loop for everyone.
 */
import { HIERARCHY_SEPARATOR } from '../protocol/parser.js';

/** Longer patterns (after the reference is joined) match nothing: names are at most 1000 bytes
 * (parser MAX_MAILBOX_BYTES), and this bounds the matching work. */
export const MAX_PATTERN_LENGTH = 2048;

export type NameMatcher = (name: string) => boolean;

export function listMatcher(reference: string, pattern: string): NameMatcher {
  let full = pattern.startsWith(HIERARCHY_SEPARATOR) || reference === '' ? pattern : reference + pattern;
  if (full.slice(0, 5).toUpperCase() === 'INBOX' && (full.length === 5 || full[5] === HIERARCHY_SEPARATOR || full[5] === '*' || full[5] === '%')) {
    full = `INBOX${full.slice(5)}`;
  }
  // "**" is "*", and "*" absorbs a neighbouring "%".
  const p = full.replace(/[*%]{2,}/g, (run) => (run.includes('*') ? '*' : '%'));
  if (p.length > MAX_PATTERN_LENGTH) return () => false;
  const sep = HIERARCHY_SEPARATOR.charCodeAt(0);
  return (name: string): boolean => {
    const n = name.length;
    // prev[j]: the pattern so far matches name[0, j).
    let prev = new Uint8Array(n + 1);
    let cur = new Uint8Array(n + 1);
    prev[0] = 1;
    for (let i = 0; i < p.length; i++) {
      const c = p.charCodeAt(i);
      if (c === 0x2a) {
        cur[0] = prev[0]!;
        for (let j = 1; j <= n; j++) cur[j] = prev[j]! | cur[j - 1]!;
      } else if (c === 0x25) {
        cur[0] = prev[0]!;
        for (let j = 1; j <= n; j++) cur[j] = prev[j]! | (cur[j - 1]! & (name.charCodeAt(j - 1) !== sep ? 1 : 0));
      } else {
        cur[0] = 0;
        for (let j = 1; j <= n; j++) cur[j] = prev[j - 1]! & (name.charCodeAt(j - 1) === c ? 1 : 0);
      }
      [prev, cur] = [cur, prev];
    }
    return prev[n] === 1;
  };
}
