/**
 * Modified UTF-7 mailbox names (RFC 3501 §5.1.3), for clients that have not enabled UTF8=ACCEPT
 * or IMAP4rev2. Internally every name is UTF-8 (RFC 9051 §5.1).
 *
 * Invariants: decode(encode(s)) === s for every string; decode refuses anything that encode would
 * never produce (so one name has exactly one encoding and a name cannot be smuggled twice).
 */

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,';

export class Mutf7Error extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Mutf7Error';
  }
}

/** RFC 3501 §5.1.3: printable US-ASCII except "&" represents itself. */
function isDirect(code: number): boolean {
  return code >= 0x20 && code <= 0x7e;
}

export function encodeMutf7(name: string): string {
  let out = '';
  let pending: number[] = [];
  const flush = (): void => {
    if (pending.length === 0) return;
    // UTF-16BE bytes, base64 with "," for "/" and no padding (RFC 3501 §5.1.3).
    const bytes: number[] = [];
    for (const unit of pending) bytes.push(unit >> 8, unit & 0xff);
    let bits = 0;
    let acc = 0;
    let enc = '';
    for (const b of bytes) {
      acc = (acc << 8) | b;
      bits += 8;
      while (bits >= 6) {
        bits -= 6;
        enc += B64[(acc >> bits) & 0x3f];
      }
      acc &= (1 << bits) - 1;
    }
    if (bits > 0) enc += B64[(acc << (6 - bits)) & 0x3f];
    out += `&${enc}-`;
    pending = [];
  };
  for (let i = 0; i < name.length; i++) {
    const unit = name.charCodeAt(i);
    if (isDirect(unit)) {
      flush();
      out += unit === 0x26 ? '&-' : name[i];
    } else {
      pending.push(unit);
    }
  }
  flush();
  return out;
}

export function decodeMutf7(input: string): string {
  let out = '';
  let i = 0;
  while (i < input.length) {
    const c = input.charCodeAt(i);
    if (!isDirect(c)) throw new Mutf7Error('Cannot decode mailbox name: 8-bit or control character in modified UTF-7');
    if (c !== 0x26) {
      out += input[i];
      i++;
      continue;
    }
    const end = input.indexOf('-', i + 1);
    if (end < 0) throw new Mutf7Error('Cannot decode mailbox name: unterminated "&" sequence');
    if (end === i + 1) {
      out += '&';
      i = end + 1;
      continue;
    }
    let acc = 0;
    let bits = 0;
    const units: number[] = [];
    let byteHi = -1;
    for (let j = i + 1; j < end; j++) {
      const v = B64.indexOf(input[j] ?? '');
      if (v < 0) throw new Mutf7Error('Cannot decode mailbox name: invalid base64 character');
      acc = (acc << 6) | v;
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        const byte = (acc >> bits) & 0xff;
        acc &= (1 << bits) - 1;
        if (byteHi < 0) byteHi = byte;
        else {
          units.push((byteHi << 8) | byte);
          byteHi = -1;
        }
      }
    }
    // Leftover bits must be padding zeros, fewer than 6, and no half UTF-16 unit (RFC 3501 §5.1.3).
    if (byteHi >= 0 || bits >= 6 || acc !== 0) throw new Mutf7Error('Cannot decode mailbox name: truncated base64');
    for (let k = 0; k < units.length; k++) {
      const u = units[k]!;
      if (isDirect(u)) throw new Mutf7Error('Cannot decode mailbox name: printable character encoded in base64');
      if (u >= 0xd800 && u <= 0xdbff) {
        const lo = units[k + 1];
        if (lo === undefined || lo < 0xdc00 || lo > 0xdfff) throw new Mutf7Error('Cannot decode mailbox name: unpaired surrogate');
        out += String.fromCharCode(u, lo);
        k++;
      } else if (u >= 0xdc00 && u <= 0xdfff) {
        throw new Mutf7Error('Cannot decode mailbox name: unpaired surrogate');
      } else {
        out += String.fromCharCode(u);
      }
    }
    i = end + 1;
    // Two adjacent encoded sequences would be a second spelling of one name (RFC 3501 §5.1.3).
    if (input[i] === '&' && input[i + 1] !== '-') throw new Mutf7Error('Cannot decode mailbox name: adjacent encoded sequences');
  }
  return out;
}
