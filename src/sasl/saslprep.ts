/**
 * SASLprep (RFC 4013), the stringprep profile (RFC 3454) that SCRAM (RFC 5802 §2.2) and PLAIN
 * (RFC 4616 §2) apply to user names and passwords, so that two clients typing the same password
 * with different Unicode forms derive the same key.
 *
 * Exact for ASCII (the common case: an ASCII string is returned unchanged unless it holds a control
 * character, which is prohibited). For other text, two approximations, both conservative in the
 * sense that they never accept what RFC 4013 refuses for an assigned character:
 * - "unassigned code points" (RFC 3454 A.1, Unicode 3.2) are those unassigned in the Unicode
 *   version of this Node.js runtime (\p{Cn}), so newer characters are accepted;
 * - the bidirectional classes R/AL and L (RFC 3454 §6) are taken from code-point ranges of the
 *   right-to-left scripts, since JavaScript regular expressions do not expose Bidi_Class.
 */

/** RFC 3454 C.1.2 non-ASCII space characters, mapped to U+0020 (RFC 4013 §2.1). */
const NON_ASCII_SPACE = /[\u00A0\u1680\u2000-\u200B\u202F\u205F\u3000]/gu;

/** RFC 3454 B.1 "commonly mapped to nothing" (RFC 4013 §2.1). */
const MAPPED_TO_NOTHING = /[\u00AD\u034F\u1806\u180B-\u180D\u200B-\u200D\u2060\uFE00-\uFE0F\uFEFF]/gu;

/**
 * RFC 4013 §2.3 prohibited output: C.1.2 (checked after mapping, so only what NFKC produced),
 * C.2.1, C.2.2, C.3, C.4, C.5, C.6, C.7, C.8, C.9; and RFC 4013 §2.5 unassigned code points
 * (stored strings, RFC 5802 §2.2), approximated by \p{Cn}.
 */
const PROHIBITED = new RegExp(
  [
    '[\\u00A0\\u1680\\u2000-\\u200B\\u202F\\u205F\\u3000]', // C.1.2
    '[\\u0000-\\u001F\\u007F]', // C.2.1
    '[\\u0080-\\u009F\\u06DD\\u070F\\u180E\\u200C\\u200D\\u2028\\u2029\\u2060-\\u2063\\u206A-\\u206F\\uFEFF\\uFFF9-\\uFFFC\\u{1D173}-\\u{1D17A}]', // C.2.2
    '[\\uE000-\\uF8FF\\u{F0000}-\\u{FFFFD}\\u{100000}-\\u{10FFFD}]', // C.3
    '[\\uFDD0-\\uFDEF\\uFFFE\\uFFFF\\u{1FFFE}\\u{1FFFF}\\u{2FFFE}\\u{2FFFF}\\u{3FFFE}\\u{3FFFF}\\u{4FFFE}\\u{4FFFF}\\u{5FFFE}\\u{5FFFF}\\u{6FFFE}\\u{6FFFF}\\u{7FFFE}\\u{7FFFF}\\u{8FFFE}\\u{8FFFF}\\u{9FFFE}\\u{9FFFF}\\u{AFFFE}\\u{AFFFF}\\u{BFFFE}\\u{BFFFF}\\u{CFFFE}\\u{CFFFF}\\u{DFFFE}\\u{DFFFF}\\u{EFFFE}\\u{EFFFF}\\u{FFFFE}\\u{FFFFF}\\u{10FFFE}\\u{10FFFF}]', // C.4
    '[\\uD800-\\uDFFF]', // C.5 (lone surrogates)
    '[\\uFFF9-\\uFFFD]', // C.6
    '[\\u2FF0-\\u2FFB]', // C.7
    '[\\u0340\\u0341\\u200E\\u200F\\u202A-\\u202E\\u206A-\\u206F]', // C.8
    '[\\u{E0001}\\u{E0020}-\\u{E007F}]', // C.9
    '\\p{Cn}', // RFC 4013 §2.5, approximated (see the header)
  ].join('|'),
  'u',
);

/** Right-to-left script blocks (Hebrew .. NKo and later RTL blocks, presentation forms). */
const RTL_BLOCK = /[\u0590-\u08FF\uFB1D-\uFDFF\uFE70-\uFEFE\u{10800}-\u{10FFF}\u{1E800}-\u{1EFFF}]/u;
const MARK_OR_DIGIT = /[\p{M}\p{Nd}]/u;
const LETTER = /\p{L}/u;

function isRandAL(ch: string): boolean {
  return RTL_BLOCK.test(ch) && !MARK_OR_DIGIT.test(ch);
}

function isL(ch: string): boolean {
  return LETTER.test(ch) && !RTL_BLOCK.test(ch);
}

const PRINTABLE_ASCII = /^[\x20-\x7E]*$/;

/**
 * Prepares a string per SASLprep for stored strings. Returns null when the string holds a
 * prohibited character or breaks the bidirectional rule; the caller then fails the
 * authentication (RFC 4013 §2.3, §2.4).
 */
export function saslprep(input: string): string | null {
  // Fast path: printable ASCII maps to itself (no mapping, NFKC identity, nothing prohibited).
  if (PRINTABLE_ASCII.test(input)) return input;
  // RFC 4013 §2.1 mapping, then §2.2 normalization form KC.
  const mapped = input.replace(NON_ASCII_SPACE, ' ').replace(MAPPED_TO_NOTHING, '').normalize('NFKC');
  if (PROHIBITED.test(mapped)) return null;
  // RFC 3454 §6: a string with any R/AL character holds no L character and starts and ends with
  // an R/AL character.
  const chars = Array.from(mapped);
  if (chars.some(isRandAL)) {
    if (chars.some(isL)) return null;
    if (!isRandAL(chars[0] ?? '') || !isRandAL(chars[chars.length - 1] ?? '')) return null;
  }
  return mapped;
}
