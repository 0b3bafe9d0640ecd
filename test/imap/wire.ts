/**
 * A test-only writer of ImapValue, used to compare FETCH results byte for byte until the
 * protocol serializer is used instead. Follows RFC 9051 §4.3: a string is quoted when it holds
 * only 7-bit text without CR, LF or NUL, otherwise it is a literal.
 */
import type { ImapValue } from '../../src/imap/protocol/ast.js';

export async function wire(value: ImapValue): Promise<string> {
  if (value === null) return 'NIL';
  if (typeof value === 'number') return String(value);
  if (typeof value === 'string') {
    if (/^[\x01-\x09\x0b\x0c\x0e-\x7f]*$/.test(value)) return `"${value.replace(/(["\\])/g, '\\$1')}"`;
    const b = Buffer.from(value, 'utf8');
    return `{${b.length}}\r\n${b.toString('latin1')}`;
  }
  if (Array.isArray(value)) {
    const parts: string[] = [];
    for (const v of value) parts.push(await wire(v));
    return `(${parts.join(' ')})`;
  }
  if ('atom' in value) return value.atom;
  if ('concat' in value) {
    const parts: string[] = [];
    for (const v of value.concat) parts.push(await wire(v));
    return parts.join('');
  }
  if ('literal' in value) return `${value.binary === true ? '~' : ''}{${value.literal.length}}\r\n${value.literal.toString('latin1')}`;
  const chunks: Buffer[] = [];
  for await (const c of value.stream) chunks.push(c);
  const data = Buffer.concat(chunks);
  if (data.length !== value.size) throw new Error(`stream gave ${data.length} bytes, announced ${value.size}`);
  return `${value.binary === true ? '~' : ''}{${value.size}}\r\n${data.toString('latin1')}`;
}

/** Writes a FETCH item list (name value name value ...) as the inside of `* n FETCH (...)`. */
export async function wireItems(items: ImapValue[]): Promise<string> {
  const parts: string[] = [];
  for (const v of items) parts.push(await wire(v));
  return parts.join(' ');
}
