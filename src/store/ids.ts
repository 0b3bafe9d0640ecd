/**
 * Permanent identifiers: RFC 8474 EMAILID and THREADID, and POP3 UIDLs (entry pids). They are
 * random, so they never collide across accounts, restores or nodes, and stay valid object ids
 * (RFC 8474 §5: 1-255 characters of A-Z a-z 0-9 _ -), and valid UIDLs (RFC 1939 §7: 0x21-0x7E).
 */
import { randomBytes } from 'node:crypto';
import type { Uid } from '../lib/brand.js';

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';

/** 16 base32 characters from 10 random bytes (80 bits). */
function base32of10(bytes: Buffer, offset: number): string {
  let out = '';
  let acc = 0;
  let bits = 0;
  for (let i = offset; i < offset + 10; i++) {
    acc = (acc << 8) | (bytes[i] ?? 0);
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += ALPHABET[(acc >>> bits) & 31];
    }
    acc &= (1 << bits) - 1;
  }
  return out;
}

export interface IdGenerator {
  emailId(): string;
  threadId(): string;
}

/** Draws random bytes in blocks: one call to the CSPRNG per 100 ids instead of one per id. */
export function createIdGenerator(): IdGenerator {
  const BLOCK = 1000;
  let pool = randomBytes(BLOCK);
  let pos = 0;
  const next = (): string => {
    if (pos + 10 > BLOCK) {
      pool = randomBytes(BLOCK);
      pos = 0;
    }
    const id = base32of10(pool, pos);
    pos += 10;
    return id;
  };
  return { emailId: () => `M${next()}`, threadId: () => `T${next()}` };
}
/** A copy's pid: the email id plus a per-account counter, so it is never reused. */
export const copyPid = (emailId: string, counter: number): string => `${emailId}.${counter}`;

/** The UIDs of `wanted` that are not in `present` (the rows a query found), ascending, once each:
 * messages of a command's set expunged meanwhile. */
export function absentUids(wanted: readonly Uid[], present: Iterable<number>): Uid[] {
  const have = new Set<number>(present);
  const out = [...new Set(wanted)].filter((u) => !have.has(u));
  return out.sort((a, b) => a - b);
}
