/**
 * Charset decoding over libmime's tables (iconv-lite and encoding-japanese underneath).
 *
 * Invariants: never throws; a charset nobody knows is decoded as UTF-8 when the bytes are valid
 * UTF-8, else as ISO-8859-1 (every byte maps to a character), and reported to the caller so it can
 * record a warning. The decoder holds a per-instance cache, never module state.
 */
import { isUtf8 } from 'node:buffer';
import libcharset from 'libmime/lib/charset.js';

export interface CharsetDecoder {
  /** Decodes `bytes` declared as `charset`; unknown charsets fall back (see module comment). */
  decode(bytes: Buffer, charset: string | null | undefined): string;
  /** Lowercased names of the unknown charsets met so far. */
  readonly unknown: Set<string>;
}

/** Bytes with no declared charset or a declared ASCII: mail in the wild puts UTF-8 or Latin-1
 * there, so take UTF-8 when the bytes are valid UTF-8 and Latin-1 otherwise. */
export function decodeUndeclared(bytes: Buffer): string {
  if (bytes.length === 0) return '';
  return isUtf8(bytes) ? bytes.toString('utf8') : bytes.toString('latin1');
}

const ASCII_NAMES: ReadonlySet<string> = new Set(['us-ascii', 'ascii', 'ansi_x3.4-1968', 'iso646-us', 'us', '646', 'cp367', 'ibm367']);
const UTF8_NAMES: ReadonlySet<string> = new Set(['utf-8', 'utf8']);

export function createCharsetDecoder(): CharsetDecoder {
  const supported = new Map<string, boolean>();
  const unknown = new Set<string>();

  function isSupported(name: string): boolean {
    let known = supported.get(name);
    if (known === undefined) {
      try {
        // createDecodeStream resolves aliases the same way decode() does and says whether the
        // charset is known; refused ones (UTF-7, base64, hex) are reported as unsupported.
        known = libcharset.createDecodeStream(name).supported;
      } catch {
        known = false;
      }
      supported.set(name, known);
    }
    return known;
  }

  return {
    unknown,
    decode(bytes, charset) {
      if (bytes.length === 0) return '';
      // RFC 2231 §5 lets a charset carry a language tag: "us-ascii*en".
      const name = (charset ?? '').trim().toLowerCase().split('*')[0]!.replace(/^["']|["']$/g, '');
      if (name === '' || ASCII_NAMES.has(name)) return decodeUndeclared(bytes);
      if (UTF8_NAMES.has(name)) return bytes.toString('utf8');
      if (!isSupported(name)) {
        unknown.add(name);
        return decodeUndeclared(bytes);
      }
      try {
        return libcharset.decode(bytes, name);
      } catch {
        unknown.add(name);
        return decodeUndeclared(bytes);
      }
    },
  };
}
