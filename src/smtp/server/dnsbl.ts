/**
 * DNS blocklists for port 25 (RFC 5782): is the connecting client's address on one of the
 * configured lists? Like Postfix's postscreen_dnsbl_sites or mox's DNSBLs, off until zones are
 * configured (`[smtp] dnsbl`).
 *
 * Invariants:
 * - Only the injected Resolver is used (the worker's goes to the owner): tests use a stand-in.
 * - A lookup that fails (timeout, SERVFAIL, no answer within timeoutMs) or answers outside
 *   127.0.0.0/8 lists nobody: mail is never refused because a list is down (fail open), and the
 *   failure is logged once per answer kept. An answer of 127.255.255.x is a list's own error
 *   code (Spamhaus: queries through an open resolver, or over quota), not a listing; 127.0.0.1
 *   is never a listing (RFC 5782 §5).
 * - Addresses no list can hold (loopback, private, link-local, unique-local) are not looked up.
 * - Answers are kept per address for `ttlMs` (bounded count), so a client's later transactions
 *   and connections cost no lookup.
 * - What a list says is reduced to printable ASCII before it is put in a reply.
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import type { Resolver } from '../../dns/resolver.js';
import { reverseName } from '../../dns/records.js';
import { LruCache } from '../../lib/lru.js';

export type DnsblVerdict = { listed: false } | { listed: true; zone: string; code: string; reason: string | null };

export interface DnsblChecker {
  check(ip: string): Promise<DnsblVerdict>;
}

export interface DnsblOptions {
  zones: readonly string[];
  resolver: Resolver;
  /** How long an answer is kept per address (5 minutes). */
  ttlMs?: number;
  /** Addresses whose answers are kept at once (10,000). */
  maxEntries?: number;
  /** A list that has not answered in this long lists nobody this time (3 s; the resolver's own
   * timeouts and retries could hold a MAIL for ten). */
  timeoutMs?: number;
  now?: () => number;
  /** Told about a list that could not be asked (once per answer kept). */
  onError?: (zone: string, ip: string, err: unknown) => void;
}

const NOT_LISTED: DnsblVerdict = { listed: false };

/** Addresses no public blocklist holds. */
const UNLISTABLE = new BlockList();
UNLISTABLE.addSubnet('0.0.0.0', 8, 'ipv4');
UNLISTABLE.addSubnet('10.0.0.0', 8, 'ipv4');
UNLISTABLE.addSubnet('100.64.0.0', 10, 'ipv4');
UNLISTABLE.addSubnet('127.0.0.0', 8, 'ipv4');
UNLISTABLE.addSubnet('169.254.0.0', 16, 'ipv4');
UNLISTABLE.addSubnet('172.16.0.0', 12, 'ipv4');
UNLISTABLE.addSubnet('192.168.0.0', 16, 'ipv4');
UNLISTABLE.addSubnet('::', 127, 'ipv6');
UNLISTABLE.addSubnet('fc00::', 7, 'ipv6');
UNLISTABLE.addSubnet('fe80::', 10, 'ipv6');

/** The address as the lists know it: an IPv4-mapped IPv6 address is its IPv4 address. (Not
 * auth's ipKey, which folds an IPv6 address into its /64 for the per-IP limits: a list names
 * the single address.) */
function plainAddress(ip: string): string | null {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1]!;
  if (isIPv4(ip) || isIPv6(ip)) return ip;
  return null;
}

function listable(ip: string): boolean {
  return !UNLISTABLE.check(ip, isIPv4(ip) ? 'ipv4' : 'ipv6');
}

/** Whether a client address is on the public internet (not loopback, private, link-local or
 * unique-local): the clients that lists and greylisting are about. */
export function publicClient(ip: string): boolean {
  const a = plainAddress(ip);
  return a !== null && listable(a);
}

/** The zone's name for an address: its reverse labels under the zone (RFC 5782 §2.1, §2.4). */
export function dnsblQueryName(ip: string, zone: string): string {
  return `${reverseName(ip).replace(/\.(in-addr|ip6)\.arpa$/, '')}.${zone}`;
}

/** A listing answer (RFC 5782 §2.3): 127.0.0.2 and up, but not a list's error codes. */
function listingCode(addresses: readonly string[]): string | null {
  for (const a of addresses) {
    if (!a.startsWith('127.') || a === '127.0.0.1' || a.startsWith('127.255.255.')) continue;
    return a;
  }
  return null;
}

function clean(s: string): string {
  const flat = s.replace(/[^\x20-\x7e]+/g, ' ').trim();
  return flat.length > 200 ? `${flat.slice(0, 200)}...` : flat;
}

export function createDnsblChecker(options: DnsblOptions): DnsblChecker {
  const ttl = options.ttlMs ?? 5 * 60_000;
  const now = options.now ?? Date.now;
  const kept = new LruCache<string, { at: number; verdict: Promise<DnsblVerdict> }>(options.maxEntries ?? 10_000);

  const timeoutMs = options.timeoutMs ?? 3000;

  /** The lookup, or a timeout error once timeoutMs have passed. */
  function bounded<T>(lookup: Promise<T>, zone: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error(`${zone} did not answer within ${timeoutMs} ms`), { code: 'ETIMEOUT' })), timeoutMs);
    });
    return Promise.race([lookup, late]).finally(() => clearTimeout(timer));
  }

  async function ask(ip: string, zone: string): Promise<DnsblVerdict> {
    const name = dnsblQueryName(ip, zone);
    let addresses: string[];
    try {
      addresses = await bounded(options.resolver.resolve4(name), zone);
    } catch (err) {
      const code = (err as { code?: unknown } | null)?.code;
      if (code !== 'ENOTFOUND' && code !== 'ENODATA') options.onError?.(zone, ip, err);
      return NOT_LISTED;
    }
    const code = listingCode(addresses);
    if (code === null) {
      if (addresses.some((a) => a.startsWith('127.255.255.'))) options.onError?.(zone, ip, new Error(`${zone} refused the query (${addresses.join(', ')})`));
      return NOT_LISTED;
    }
    // RFC 5782 §2.1: the TXT record, when there is one, says why.
    let reason: string | null = null;
    try {
      const txt = await bounded(options.resolver.resolveTxt(name), zone);
      if (txt.length > 0) reason = clean(txt[0]!.join(''));
    } catch {
      // A listing without its reason is still a listing.
    }
    return { listed: true, zone, code, reason };
  }

  async function lookUp(ip: string): Promise<DnsblVerdict> {
    // All lists at once; the first in the configured order that lists the address speaks.
    const verdicts = await Promise.all(options.zones.map((zone) => ask(ip, zone)));
    return verdicts.find((v) => v.listed) ?? NOT_LISTED;
  }

  return {
    check(raw) {
      const ip = plainAddress(raw);
      if (ip === null || options.zones.length === 0 || !listable(ip)) return Promise.resolve(NOT_LISTED);
      const hit = kept.get(ip);
      if (hit !== undefined && now() - hit.at < ttl) return hit.verdict;
      // Kept while in flight too: a client's parallel connections share one lookup.
      const verdict = lookUp(ip);
      kept.set(ip, { at: now(), verdict });
      return verdict;
    },
  };
}
