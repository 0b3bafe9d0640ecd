/**
 * Test helper: writes ImapValue with the protocol serializer and reads any streamed literal, so
 * FETCH results compare as the exact bytes a client would receive.
 */
import type { ImapValue } from '../../src/imap/protocol/ast.js';
import { writeValue, writeValues, type Output } from '../../src/imap/protocol/serialize.js';

async function collect(out: Output): Promise<string> {
  const chunks: Buffer[] = [];
  for (const part of out) {
    if (Buffer.isBuffer(part)) {
      chunks.push(part);
      continue;
    }
    let got = 0;
    for await (const c of part.stream) {
      chunks.push(c);
      got += c.length;
    }
    if (got !== part.size) throw new Error(`stream gave ${got} bytes, announced ${part.size}`);
  }
  return Buffer.concat(chunks).toString('latin1');
}

/** One value as written on the wire (latin1 string of the bytes). */
export async function wire(value: ImapValue, utf8 = false): Promise<string> {
  const out: Output = [];
  writeValue(value, { utf8 }, out);
  return collect(out);
}

/** A FETCH item list as written inside `* n FETCH (...)`. */
export async function wireItems(items: ImapValue[], utf8 = false): Promise<string> {
  const out: Output = [];
  writeValues(items, { utf8 }, out);
  return collect(out);
}
