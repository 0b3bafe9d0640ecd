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
 *   memory, bounded (MEMORY_MAX triplets, the oldest dropped first): a restart greylists known
 *   senders once more, which costs them one retry.
 */
import { createHash } from 'node:crypto';
import { isIPv4 } from 'node:net';
import { ipKey } from '../../auth/authenticator.js';
import type { SharedCounters } from '../../store/counters.js';
import { publicClient } from './dnsbl.js';

/** A first attempt's triplet is forgotten after this long without the retry (postgrey: 2 days). */
export const RETRY_WINDOW_MS = 2 * 86_400_000;
/** A triplet that passed is known this long after its last message. */
export const PASS_TTL_MS = 35 * 86_400_000;
const MEMORY_MAX = 100_000;

export type GreylistVerdict = { pass: true } | { pass: false; retryInSeconds: number };

export interface Greylist {
  check(client: string, sender: string, recipient: string): Promise<GreylistVerdict>;
}

/** The client's network, as greylisting keys it. */
export function greylistNetwork(ip: string): string {
  const key = ipKey(ip);
  return isIPv4(key) ? key.replace(/\.\d+$/, '.0/24') : `${key}/64`;
}

export function createGreylist(options: { delayMs: number; counters?: SharedCounters | null; now?: () => number; exemptPrivate?: boolean }): Greylist {
  const now = options.now ?? Date.now;
  const exemptPrivate = options.exemptPrivate ?? true;
  // Memory: first seen, and the time until which the triplet is known.
  const memory = new Map<string, { first: number; passedUntil: number }>();

  const remember = (key: string, v: { first: number; passedUntil: number }) => {
    memory.delete(key);
    if (memory.size >= MEMORY_MAX) memory.delete(memory.keys().next().value as string);
    memory.set(key, v);
  };

  return {
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
