/**
 * Random hexadecimal identifiers drawn from a block of CSPRNG output: one randomBytes call per
 * block instead of one per id. Each call of randomBytes costs tens of microseconds here (a trip
 * into OpenSSL for a few bytes), and the SMTP path takes two ids per message (session, message).
 *
 * Invariant: every byte of the block is used once, so ids stay as unpredictable and as unique as
 * separate randomBytes calls would make them.
 */
import { randomBytes } from 'node:crypto';
import { strict as assert } from 'node:assert';

export type RandomHex = (bytes: number) => string;

export function createRandomHex(blockBytes = 4096): RandomHex {
  let block = randomBytes(blockBytes);
  let pos = 0;
  return (bytes) => {
    assert.ok(bytes > 0 && bytes <= blockBytes, 'id size out of range');
    if (pos + bytes > blockBytes) {
      block = randomBytes(blockBytes);
      pos = 0;
    }
    const id = block.toString('hex', pos, pos + bytes);
    pos += bytes;
    return id;
  };
}
