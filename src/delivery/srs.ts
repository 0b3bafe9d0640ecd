/**
 * The Sender Rewriting Scheme for mail this server forwards to another domain (an alias whose
 * target is remote). The receiving server checks SPF against the envelope sender; forwarded
 * with the original MAIL FROM, the message would come from an address this server is not
 * authorised for. So the forwarded copy's MAIL FROM is an address of the alias's own domain that
 * encodes the original one, and a bounce sent to it is recognised and forwarded back to the
 * original sender.
 *
 * Forms (the de facto ones of libsrs2 and postsrsd, so that a later forwarder shortens a chain):
 *   SRS0=HHHHH=TT=orig.domain=orig-local@alias.domain
 *   SRS1=HHHHH=first.forwarder==HHHHH=TT=orig.domain=orig-local@alias.domain
 * A sender that is already SRS0 of another forwarder becomes SRS1 pointing at that forwarder;
 * an SRS1 keeps its first forwarder and gets our hash.
 *
 * Invariants:
 * - Only this server can mint an address that reverses: HHHHH is a keyed hash (HMAC-SHA-256 with
 *   the installation's secret) of everything the address carries back, so the rewriting cannot
 *   be used as an open relay towards arbitrary addresses.
 * - TT is the day (mod 1024) the message was forwarded: a reverse address older than
 *   MAX_AGE_DAYS is refused, so a harvested one stops working.
 * - Case-insensitive throughout (the hash is over the lowercased text, in base32): a relay that
 *   changes the case of the address still gets its bounce through.
 * - The null sender is never rewritten: a bounce is forwarded with MAIL FROM <>.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { link, open, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { base32Encode } from '../auth/totp.js';

/** How long a reverse address works (libsrs2's default). */
export const MAX_AGE_DAYS = 21;
const HASH_LENGTH = 5;
/** The day stamp's digits (RFC 4648 base32, lower case). */
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';
const DAY_MS = 86_400_000;

export type SrsReverse =
  | { kind: 'ok'; address: string }
  /** Not an SRS address: look it up as any other. */
  | { kind: 'not-srs' }
  /** SRS in form but not ours, altered, or too old: refused as an unknown address. */
  | { kind: 'invalid'; reason: string };

export interface Srs {
  /** The MAIL FROM of a copy forwarded by an alias of `domain`. '' stays ''. */
  forward(sender: string, domain: string): string;
  /** The original sender a reverse address (local part and domain) stands for. */
  reverse(address: string): SrsReverse;
}

function splitAddress(address: string): { local: string; domain: string } | null {
  const at = address.lastIndexOf('@');
  if (at <= 0 || at === address.length - 1) return null;
  return { local: address.slice(0, at), domain: address.slice(at + 1) };
}

export function createSrs(options: { secret: Buffer; now?: () => number }): Srs {
  if (options.secret.length < 16) throw new Error('Cannot use an SRS secret shorter than 16 bytes');
  const now = options.now ?? Date.now;
  const hash = (...parts: string[]): string =>
    base32Encode(createHmac('sha256', options.secret).update(parts.join('\0').toLowerCase()).digest().subarray(0, 4)).slice(0, HASH_LENGTH).toLowerCase();
  const hashMatches = (given: string, ...parts: string[]): boolean => {
    const want = Buffer.from(hash(...parts));
    const got = Buffer.from(given.toLowerCase());
    return got.length === want.length && timingSafeEqual(got, want);
  };
  const today = (): number => Math.floor(now() / DAY_MS) % 1024;
  const stamp = (day: number): string => BASE32[(day >> 5) & 31]! + BASE32[day & 31]!;
  const age = (tt: string): number | null => {
    if (!/^[a-z2-7]{2}$/i.test(tt)) return null;
    const t = tt.toLowerCase();
    const day = (BASE32.indexOf(t[0]!) << 5) | BASE32.indexOf(t[1]!);
    return (today() - day + 1024) % 1024;
  };

  return {
    forward(sender, domain) {
      if (sender === '') return '';
      const parts = splitAddress(sender);
      if (!parts) return sender;
      const { local, domain: origDomain } = parts;
      const srs1 = /^srs1[=+-]([^=]+)=([^=]+)=(=.*)$/is.exec(local);
      if (srs1) {
        // Keep the first forwarder and its part: a bounce goes back to it in one step.
        const [, , first, rest] = srs1 as unknown as [string, string, string, string];
        return `SRS1=${hash(first, rest)}=${first}=${rest}@${domain}`;
      }
      const srs0 = /^srs0([=+-].*)$/is.exec(local);
      if (srs0) {
        const rest = `=${srs0[1]!.slice(1)}`;
        return `SRS1=${hash(origDomain, rest)}=${origDomain}=${rest}@${domain}`;
      }
      const tt = stamp(today());
      return `SRS0=${hash(tt, origDomain, local)}=${tt}=${origDomain}=${local}@${domain}`;
    },

    reverse(address) {
      const parts = splitAddress(address);
      if (!parts) return { kind: 'not-srs' };
      const { local } = parts;
      if (/^srs1[=+-]/i.test(local)) {
        const m = /^srs1[=+-]([^=]+)=([^=]+)=(=.*)$/is.exec(local);
        if (!m) return { kind: 'invalid', reason: 'malformed SRS1 address' };
        const [, h, first, rest] = m as unknown as [string, string, string, string];
        if (!hashMatches(h, first, rest)) return { kind: 'invalid', reason: 'SRS1 hash does not match' };
        return { kind: 'ok', address: `SRS0${rest}@${first}` };
      }
      if (/^srs0[=+-]/i.test(local)) {
        const m = /^srs0[=+-]([^=]+)=([^=]+)=([^=]+)=(.+)$/is.exec(local);
        if (!m) return { kind: 'invalid', reason: 'malformed SRS0 address' };
        const [, h, tt, origDomain, origLocal] = m as unknown as [string, string, string, string, string];
        const days = age(tt);
        if (days === null) return { kind: 'invalid', reason: 'SRS0 timestamp malformed' };
        if (!hashMatches(h, tt, origDomain, origLocal)) return { kind: 'invalid', reason: 'SRS0 hash does not match' };
        if (days > MAX_AGE_DAYS) return { kind: 'invalid', reason: `SRS0 address expired (${days} days old)` };
        return { kind: 'ok', address: `${origLocal}@${origDomain}` };
      }
      return { kind: 'not-srs' };
    },
  };
}

/** The installation's SRS secret: `<data>/srs.key` (64 hex digits), made at the first start. A
 * cluster's nodes need the same file (docs/scaling.md), or a bounce that reaches another node
 * than the one that forwarded is refused. */
export async function loadSrsSecret(dataDir: string): Promise<Buffer> {
  const path = join(dataDir, SRS_KEY_FILE);
  try {
    return parseSecret(await readFile(path, 'utf8'), path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  // Written whole under a temporary name, then linked into place: a crash leaves no half file,
  // and a key another process made meanwhile is kept (link does not replace).
  const tmp = `${path}.${process.pid}.tmp`;
  const handle = await open(tmp, 'w', 0o600);
  try {
    await handle.writeFile(`${randomBytes(32).toString('hex')}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await link(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    await unlink(tmp);
  }
  // The new name durable too: a key lost in a crash would void the addresses already sent.
  const dir = await open(dataDir, 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
  return parseSecret(await readFile(path, 'utf8'), path);
}

export const SRS_KEY_FILE = 'srs.key';

function parseSecret(text: string, path: string): Buffer {
  const hex = text.trim();
  if (!/^(?:[0-9a-f]{2}){16,}$/i.test(hex)) throw new Error(`Cannot use ${path}: not a secret of at least 16 bytes in hex (remove it to have a new one made)`);
  return Buffer.from(hex, 'hex');
}
