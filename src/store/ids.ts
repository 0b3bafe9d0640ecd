/**
 * Permanent identifiers: RFC 8474 EMAILID and THREADID, and POP3 UIDLs (entry pids). They are
 * random, so they never collide across accounts, restores or nodes, and stay valid object ids
 * (RFC 8474 §5: 1-255 characters of A-Z a-z 0-9 _ -), and valid UIDLs (RFC 1939 §7: 0x21-0x7E).
 */
import { randomBytes } from 'node:crypto';

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';

/** 16 base32 characters: 80 random bits. */
function random16(): string {
  const bytes = randomBytes(10);
  let out = '';
  let acc = 0;
  let bits = 0;
  for (const b of bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += ALPHABET[(acc >>> bits) & 31];
    }
    acc &= (1 << bits) - 1;
  }
  return out;
}

export const newEmailId = (): string => `M${random16()}`;
export const newThreadId = (): string => `T${random16()}`;
/** A copy's pid: the email id plus a per-account counter, so it is never reused. */
export const copyPid = (emailId: string, counter: number): string => `${emailId}.${counter}`;
