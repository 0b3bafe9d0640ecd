/**
 * Greylisting for port 25 (RFC 6647): the first RCPT of a (client network, sender, recipient)
 * triplet gets a temporary refusal; a real mail server retries after its queue delay and is let
 * through, most spam software does not retry.
 *
 * Invariants:
 * - Only a valid local recipient is greylisted (the policy checks it first): an unknown user
 *   still gets its 550 at once.
 * - The client is its network (IPv4 /24, IPv6 /64, RFC 6647 §5.1): a sender whose retries leave
 *   from another address of its pool is not greylisted again. Loopback and private clients are
 *   never greylisted.
 * - A retry passes once `delayMs` has gone by since the triplet was first seen, within
 *   RETRY_WINDOW_MS; a triplet that passed is let through at once for PASS_TTL_MS, renewed by
 *   each message (§5.3: known correspondents are not delayed again).
 * - State is in the shared counters with PostgreSQL (every node agrees), else in this process's
 *   memory, bounded (MEMORY_MAX triplets, the oldest dropped first), and saved to `file` (the
 *   data directory's greylist.json) within SAVE_DELAY_MS of a change and at close(), read back
 *   at the next start: a restart neither greylists known senders again nor restarts a waiting
 *   triplet's delay. A crash loses at most the last SAVE_DELAY_MS of changes; a file that cannot
 *   be read is reported and replaced (greylisting only delays mail, it never loses it).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { isIPv4 } from 'node:net';
import type { Logger } from 'pino';
import { ipKey } from '../../auth/authenticator.js';
import type { SharedCounters } from '../../store/counters.js';
import { publicClient } from './dnsbl.js';

/** A first attempt's triplet is forgotten after this long without the retry (postgrey: 2 days). */
export const RETRY_WINDOW_MS = 2 * 86_400_000;
/** A triplet that passed is known this long after its last message. */
export const PASS_TTL_MS = 35 * 86_400_000;
const MEMORY_MAX = 100_000;
/** How long a change may wait before the triplets are saved (see the invariants). */
export const SAVE_DELAY_MS = 30_000;
const FILE_VERSION = 1;
/** The file in the data directory (without PostgreSQL's shared counters). */
export const GREYLIST_FILE = 'greylist.json';

export type GreylistVerdict = { pass: true } | { pass: false; retryInSeconds: number };

export interface Greylist {
  check(client: string, sender: string, recipient: string): Promise<GreylistVerdict>;
  /** Saves what a save is pending for (a greylist with a file); nothing to do otherwise. */
  close(): Promise<void>;
}

export interface GreylistOptions {
  delayMs: number;
  counters?: SharedCounters | null;
  now?: () => number;
  exemptPrivate?: boolean;
  /** Without shared counters: where the triplets are kept across restarts. */
  file?: string | null;
  /** A file that could not be read or written. */
  onFileError?: (err: unknown, file: string) => void;
}

/** A greylist file that cannot be read or written: logged; greylisting goes on from memory. */
export function greylistFileError(log: Pick<Logger, 'warn'>): (err: unknown, file: string) => void {
  return (err, file) => log.warn({ err: (err as Error).message, file }, 'greylist file not read or not saved: greylisting continues from memory');
}

type Triplet = { first: number; passedUntil: number };

/** Whether a triplet still matters at `t`: passed and known, or waiting for its retry. */
const live = (v: Triplet, t: number): boolean => v.passedUntil > t || t - v.first <= RETRY_WINDOW_MS;

/** The saved triplets still live at `t`, oldest use first; none when the file is absent. */
function loadTriplets(file: string, t: number): Array<[string, Triplet]> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const data = JSON.parse(text) as { version?: unknown; triplets?: unknown };
  if (data.version !== FILE_VERSION || !Array.isArray(data.triplets)) throw new Error(`not a greylist file of version ${FILE_VERSION}`);
  const out: Array<[string, Triplet]> = [];
  for (const e of data.triplets as unknown[]) {
    if (!Array.isArray(e) || typeof e[0] !== 'string' || typeof e[1] !== 'number' || typeof e[2] !== 'number') continue;
    const v = { first: e[1], passedUntil: e[2] };
    if (live(v, t)) out.push([e[0], v]);
  }
  return out.slice(-MEMORY_MAX);
}

/** The client's network, as greylisting keys it. */
export function greylistNetwork(ip: string): string {
  const key = ipKey(ip);
  return isIPv4(key) ? key.replace(/\.\d+$/, '.0/24') : `${key}/64`;
}

export function createGreylist(options: GreylistOptions): Greylist {
  const now = options.now ?? Date.now;
  const exemptPrivate = options.exemptPrivate ?? true;
  // Memory: first seen, and the time until which the triplet is known; in order of last use.
  const memory = new Map<string, Triplet>();
  const file = options.counters ? null : (options.file ?? null);
  if (file !== null) {
    try {
      for (const [k, v] of loadTriplets(file, now())) memory.set(k, v);
    } catch (err) {
      options.onFileError?.(err, file);
    }
  }
  let timer: NodeJS.Timeout | null = null;
  let saving: Promise<void> = Promise.resolve();

  const save = (): Promise<void> => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    const t = now();
    const triplets: Array<[string, number, number]> = [];
    for (const [k, v] of memory) if (live(v, t)) triplets.push([k, v.first, v.passedUntil]);
    const text = JSON.stringify({ version: FILE_VERSION, triplets });
    // One save at a time, each written whole beside the file and renamed over it.
    saving = saving.then(async () => {
      try {
        await writeFile(`${file}.tmp`, text, { mode: 0o600 });
        await rename(`${file}.tmp`, file!);
      } catch (err) {
        options.onFileError?.(err, file!);
      }
    });
    return saving;
  };

  const remember = (key: string, v: Triplet) => {
    memory.delete(key);
    if (memory.size >= MEMORY_MAX) memory.delete(memory.keys().next().value as string);
    memory.set(key, v);
    if (file !== null && timer === null) {
      timer = setTimeout(() => void save(), SAVE_DELAY_MS);
      timer.unref();
    }
  };

  return {
    async close() {
      if (timer !== null) await save();
      await saving;
    },

    async check(client, sender, recipient) {
      if (exemptPrivate && !publicClient(client)) return { pass: true };
      const triplet = createHash('sha256').update(`${greylistNetwork(client)}\0${sender.toLowerCase()}\0${recipient.toLowerCase()}`).digest('base64url').slice(0, 32);
      const t = now();
      const counters = options.counters;
      if (counters) {
        const passKey = `greylist-pass:${triplet}`;
        const seenKey = `greylist-seen:${triplet}`;
        if ((await counters.blockedFor(passKey)) > 0) {
          await counters.block(passKey, PASS_TTL_MS);
          return { pass: true };
        }
        const left = await counters.blockedFor(seenKey);
        if (left === 0) {
          await counters.block(seenKey, RETRY_WINDOW_MS);
          return { pass: false, retryInSeconds: Math.ceil(options.delayMs / 1000) };
        }
        const waited = RETRY_WINDOW_MS - left;
        if (waited < options.delayMs) return { pass: false, retryInSeconds: Math.ceil((options.delayMs - waited) / 1000) };
        await counters.block(passKey, PASS_TTL_MS);
        return { pass: true };
      }
      const known = memory.get(triplet);
      if (known && known.passedUntil > t) {
        remember(triplet, { first: known.first, passedUntil: t + PASS_TTL_MS });
        return { pass: true };
      }
      if (!known || t - known.first > RETRY_WINDOW_MS) {
        remember(triplet, { first: t, passedUntil: 0 });
        return { pass: false, retryInSeconds: Math.ceil(options.delayMs / 1000) };
      }
      const waited = t - known.first;
      if (waited < options.delayMs) return { pass: false, retryInSeconds: Math.ceil((options.delayMs - waited) / 1000) };
      remember(triplet, { first: known.first, passedUntil: t + PASS_TTL_MS });
      return { pass: true };
    },
  };
}
