/**
 * MIME structured header values: `value; name=value; ...` (RFC 2045 §5.1, RFC 2183 §2) with
 * RFC 2231 parameter continuations (§3) and charset/language encoding (§4).
 *
 * Invariants: never throws; one left-to-right pass per step, so the cost is linear in the value
 * (a general-purpose parser was measured at over a microsecond per character on hostile values,
 * which a message of many parts multiplies); at most MAX_PARAMS parameters and MAX_SECTIONS
 * continuation sections per parameter are kept. Unknown charsets fall back as in charset.ts.
 */
import type { Params } from './types.js';
import { createCharsetDecoder, type CharsetDecoder } from './charset.js';
import { stripComments, trimWsp } from './headers.js';

/** Parameters kept per header value; bounds the stored record for a hostile header. */
export const MAX_PARAMS = 256;
/** RFC 2231 sections kept per parameter. */
export const MAX_SECTIONS = 1000;

export interface StructuredValue {
  /** The part before the first ";", trimmed (case kept). */
  value: string;
  /** Names lowercased, in the order first seen; values unquoted and RFC 2231 decoded. */
  params: Params;
}

/** Splits at ";" outside quoted strings (RFC 2045 §5.1 tspecials are quoted there). */
function splitTopLevel(s: string): string[] {
  const out: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (quoted) {
      if (c === 0x5c) i++;
      else if (c === 0x22) quoted = false;
    } else if (c === 0x22) quoted = true;
    else if (c === 0x3b) {
      out.push(s.slice(start, i));
      start = i + 1;
    }
  }
  out.push(s.slice(start));
  return out;
}

/** A token as is, or a quoted-string unquoted (RFC 5322 §3.2.4 quoted pairs); an unterminated
 * quote runs to the end. */
function unquote(v: string): string {
  if (!v.startsWith('"')) return v;
  let out = '';
  for (let i = 1; i < v.length; i++) {
    const c = v[i]!;
    if (c === '\\' && i + 1 < v.length) out += v[++i];
    else if (c === '"') break;
    else out += c;
  }
  return out;
}

function hex(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/** RFC 2231 §4 extended value: "%XX" is a byte, other characters stand for themselves. */
function percentDecode(s: string, out: number[]): void {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x25 && i + 2 < s.length && hex(s.charCodeAt(i + 1)) >= 0 && hex(s.charCodeAt(i + 2)) >= 0) {
      out.push(hex(s.charCodeAt(i + 1)) * 16 + hex(s.charCodeAt(i + 2)));
      i += 2;
    } else if (c < 0x80) out.push(c);
    else for (const b of Buffer.from(s[i]!, 'utf8')) out.push(b);
  }
}

interface Section {
  text: string;
  encoded: boolean;
}

/**
 * Parses a Content-Type or Content-Disposition value. Comments are removed first (RFC 2045 §5.1
 * allows them). When a parameter comes both plain and RFC 2231 encoded, the encoded one wins
 * (RFC 2231 §4 is how a sender says what the plain one could not).
 */
export function parseStructuredHeader(input: string, decoder: CharsetDecoder = createCharsetDecoder()): StructuredValue {
  const pieces = splitTopLevel(stripComments(input));
  const value = trimWsp(pieces[0] ?? '');
  const order: string[] = [];
  const plain = new Map<string, string>();
  const extended = new Map<string, Map<number, Section>>();
  for (let p = 1; p < pieces.length && order.length < MAX_PARAMS; p++) {
    const piece = pieces[p]!;
    const eq = piece.indexOf('=');
    if (eq <= 0) continue;
    let name = trimWsp(piece.slice(0, eq)).toLowerCase();
    const rawValue = trimWsp(piece.slice(eq + 1));
    if (name === '') continue;
    // RFC 2231 §3 "name*N" continuation sections; §4 a trailing "*" marks an encoded section.
    let section = -1;
    let encoded = false;
    if (name.endsWith('*')) {
      encoded = true;
      name = name.slice(0, -1);
      section = 0;
    }
    const star = name.lastIndexOf('*');
    if (star > 0 && /^\d{1,4}$/.test(name.slice(star + 1))) {
      section = Number(name.slice(star + 1));
      name = name.slice(0, star);
    }
    if (name === '') continue;
    if (!plain.has(name) && !extended.has(name)) order.push(name);
    if (section < 0) {
      if (!plain.has(name)) plain.set(name, unquote(rawValue));
      continue;
    }
    let sections = extended.get(name);
    if (sections === undefined) {
      sections = new Map();
      extended.set(name, sections);
    }
    if (!sections.has(section) && sections.size < MAX_SECTIONS) sections.set(section, { text: unquote(rawValue), encoded });
  }

  const params: Params = [];
  for (const name of order) {
    const sections = extended.get(name);
    if (sections === undefined) {
      params.push([name, plain.get(name) ?? '']);
      continue;
    }
    // Sections are joined in number order (RFC 2231 §3); the first encoded one carries
    // charset'language' (§4), which applies to the whole value.
    const keys = [...sections.keys()].sort((a, b) => a - b);
    const bytes: number[] = [];
    let charset = '';
    keys.forEach((k, i) => {
      const s = sections.get(k)!;
      let text = s.text;
      if (s.encoded && i === 0) {
        const q1 = text.indexOf("'");
        const q2 = q1 < 0 ? -1 : text.indexOf("'", q1 + 1);
        if (q2 >= 0) {
          charset = text.slice(0, q1);
          text = text.slice(q2 + 1);
        }
      }
      if (s.encoded) percentDecode(text, bytes);
      else for (const b of Buffer.from(text, 'utf8')) bytes.push(b);
    });
    params.push([name, decoder.decode(Buffer.from(bytes), charset)]);
  }
  return { value, params };
}
