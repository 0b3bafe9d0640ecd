/**
 * RFC 5256 §2.1 base subject, the key of SORT SUBJECT and of THREAD's subject grouping.
 *
 * Invariants: never throws; input longer than MAX_SUBJECT is cut first, so the repeated
 * anchored removals stay cheap.
 */
import { decodeEncodedWords } from './headers.js';

export const MAX_SUBJECT = 16 * 1024;

export interface BaseSubject {
  /** The base subject (not case-folded: comparisons use i;unicode-casemap, RFC 5256 §2.1). */
  subject: string;
  /** True when a reply or forward marker was removed: RFC 5256 §2.1 "a message is considered
   * to be a reply or forward" then (used by THREAD=REFERENCES, §3 step 5). */
  replyOrForward: boolean;
}

// subj-trailer = "(fwd)" / WSP
const TRAILER_FWD = /\(fwd\)$/i;
// subj-leader = (*subj-blob subj-refwd) / WSP
// subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
// subj-blob = "[" *BLOBCHAR "]" *WSP   (BLOBCHAR: any character but "[" and "]")
const LEADER_REFWD = /^(?:\[[^[\]]*\][ \t]*)*(?:re|fwd?)[ \t]*(?:\[[^[\]]*\][ \t]*)?:/i;
const LEADER_WSP = /^[ \t]+/;
const BLOB = /^\[[^[\]]*\][ \t]*/;
// subj-fwd = subj-fwd-hdr subject subj-fwd-trl; subj-fwd-hdr = "[fwd:"; subj-fwd-trl = "]"
const FWD_HDR = /^\[fwd:/i;

/**
 * Extracts the base subject from a raw (possibly RFC 2047 encoded) or decoded Subject value.
 */
export function extractBaseSubject(value: string | null | undefined): BaseSubject {
  let s = value ?? '';
  if (s.length > MAX_SUBJECT) s = s.slice(0, MAX_SUBJECT);
  // (1) encoded words to UTF-8; tabs and continuations to a space; runs of spaces to one.
  s = decodeEncodedWords(s).replace(/\r?\n/g, '').replace(/[ \t]+/g, ' ');
  let replyOrForward = false;
  for (;;) {
    // (2) remove trailing "(fwd)" and whitespace, repeatedly.
    for (;;) {
      let end = s.length;
      while (end > 0 && (s.charCodeAt(end - 1) === 0x20 || s.charCodeAt(end - 1) === 0x09)) end--;
      if (end < s.length) s = s.slice(0, end);
      else if (TRAILER_FWD.test(s)) {
        s = s.slice(0, -5);
        replyOrForward = true;
      } else break;
    }
    // (5) repeat (3) and (4) until nothing changes.
    for (;;) {
      const before = s;
      // (3) remove the subj-leader, repeatedly.
      for (;;) {
        const m = LEADER_REFWD.exec(s);
        if (m !== null) {
          s = s.slice(m[0].length);
          replyOrForward = true;
          continue;
        }
        const w = LEADER_WSP.exec(s);
        if (w !== null) {
          s = s.slice(w[0].length);
          continue;
        }
        break;
      }
      // (4) remove a leading subj-blob when text remains after it.
      const b = BLOB.exec(s);
      if (b !== null && b[0].length < s.length) s = s.slice(b[0].length);
      if (s === before) break;
    }
    // (6) "[fwd: subject]" unwraps, then back to (2).
    if (FWD_HDR.test(s) && s.endsWith(']')) {
      s = s.slice(5, -1);
      replyOrForward = true;
      continue;
    }
    break;
  }
  return { subject: s, replyOrForward };
}

/** The RFC 5256 §2.1 base subject alone. */
export function baseSubject(value: string | null | undefined): string {
  return extractBaseSubject(value).subject;
}
