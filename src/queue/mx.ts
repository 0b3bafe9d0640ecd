/**
 * Where mail for a domain goes: RFC 5321 §5.1 MX resolution with the A/AAAA fallback, and
 * RFC 7505 null MX.
 */
import { isNotFound, type Resolver } from '../dns/resolver.js';

export interface MxHost {
  /** Host name (for TLS server name and MTA-STS matching), lowercase, no trailing dot. */
  name: string;
  preference: number;
  addresses: string[];
}

export type Destination =
  | { kind: 'hosts'; hosts: MxHost[]; implicit: boolean }
  /** RFC 7505 §3: the domain accepts no mail. */
  | { kind: 'null-mx' }
  /** The domain does not exist, or has neither MX nor address records. */
  | { kind: 'no-domain'; detail: string };

/** Bounds on one resolution: a hostile zone cannot make one delivery try hundreds of hosts. */
export const MX_LIMITS = {
  /** MX hosts tried per attempt. */
  maxHosts: 10,
  /** Addresses tried per host. */
  maxAddressesPerHost: 4,
} as const;

export class TemporaryDnsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TemporaryDnsError';
  }
}

export interface ResolveOptions {
  /** Address families to use, in order of preference. */
  families?: ReadonlyArray<4 | 6>;
  /** Reorders hosts of equal preference (RFC 5321 §5.1 SHOULD); identity in tests. */
  shuffle?: <T>(items: T[]) => T[];
}

function normalise(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

function randomShuffle<T>(items: T[]): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

async function addressesOf(resolver: Resolver, host: string, families: ReadonlyArray<4 | 6>): Promise<{ addresses: string[]; temporary: string | null }> {
  const addresses: string[] = [];
  let temporary: string | null = null;
  for (const family of families) {
    try {
      const list = family === 4 ? await resolver.resolve4(host) : await resolver.resolve6(host);
      addresses.push(...list);
    } catch (err) {
      if (!isNotFound(err)) temporary = `${host}: ${(err as Error).message}`;
    }
  }
  return { addresses: addresses.slice(0, MX_LIMITS.maxAddressesPerHost), temporary };
}

/**
 * Resolves a recipient domain. Throws TemporaryDnsError when DNS did not answer (the attempt is
 * retried later); a permanent answer is returned as 'null-mx' or 'no-domain'.
 */
export async function resolveDestination(resolver: Resolver, domain: string, options: ResolveOptions = {}): Promise<Destination> {
  const families = options.families ?? [4, 6];
  const shuffle = options.shuffle ?? randomShuffle;
  let mx: Array<{ exchange: string; priority: number }>;
  try {
    mx = await resolver.resolveMx(domain);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENOTFOUND') return { kind: 'no-domain', detail: `${domain} does not exist` };
    if (code !== 'ENODATA') throw new TemporaryDnsError(`MX lookup for ${domain} failed: ${(err as Error).message}`);
    mx = [];
  }

  // RFC 7505 §3: a single MX whose exchange is the root (".") means "no mail".
  if (mx.length === 1 && normalise(mx[0]!.exchange) === '') return { kind: 'null-mx' };
  const real = mx.filter((r) => normalise(r.exchange) !== '');

  if (real.length === 0) {
    // RFC 5321 §5.1: no MX records: the domain itself is the implicit MX, preference 0.
    const { addresses, temporary } = await addressesOf(resolver, domain, families);
    if (addresses.length > 0) return { kind: 'hosts', implicit: true, hosts: [{ name: normalise(domain), preference: 0, addresses }] };
    if (temporary) throw new TemporaryDnsError(temporary);
    return { kind: 'no-domain', detail: `${domain} has no MX and no address record` };
  }

  // RFC 5321 §5.1: ascending preference; hosts of equal preference in random order.
  const byPref = new Map<number, string[]>();
  for (const r of real) {
    const list = byPref.get(r.priority) ?? [];
    const name = normalise(r.exchange);
    if (!list.includes(name)) list.push(name);
    byPref.set(r.priority, list);
  }
  const ordered: Array<{ name: string; preference: number }> = [];
  for (const pref of [...byPref.keys()].sort((a, b) => a - b)) {
    for (const name of shuffle(byPref.get(pref)!)) ordered.push({ name, preference: pref });
  }

  const hosts: MxHost[] = [];
  let temporary: string | null = null;
  for (const h of ordered.slice(0, MX_LIMITS.maxHosts)) {
    const r = await addressesOf(resolver, h.name, families);
    if (r.temporary) temporary = r.temporary;
    if (r.addresses.length > 0) hosts.push({ ...h, addresses: r.addresses });
  }
  if (hosts.length > 0) return { kind: 'hosts', implicit: false, hosts };
  if (temporary) throw new TemporaryDnsError(temporary);
  // Every MX name is without address: a misconfiguration that may be fixed; retried, not bounced.
  throw new TemporaryDnsError(`no MX host of ${domain} has an address`);
}
