/**
 * An in-memory DNS zone implementing every Resolver lookup (DESIGN.md: DNS is the one network
 * service tests stand in for). Unknown names answer ENOTFOUND, known names without the asked
 * type ENODATA, names listed in `fail` a temporary error, like node:dns.
 */
import type { DnsRecord } from '../../src/dns/records.js';
import type { FullResolver, MxRecord, SrvRecord } from '../../src/dns/resolver.js';

export interface Zone {
  mx: Map<string, MxRecord[]>;
  a: Map<string, string[]>;
  aaaa: Map<string, string[]>;
  txt: Map<string, string[]>;
  cname: Map<string, string>;
  srv: Map<string, SrvRecord[]>;
  ptr: Map<string, string[]>;
  /** name -> error code (ESERVFAIL, ETIMEOUT) for every lookup of that name. */
  fail: Map<string, string>;
}

export function emptyZone(): Zone {
  return { mx: new Map(), a: new Map(), aaaa: new Map(), txt: new Map(), cname: new Map(), srv: new Map(), ptr: new Map(), fail: new Map() };
}

function dnsError(code: string, name: string): Error {
  return Object.assign(new Error(`${code} ${name}`), { code, hostname: name });
}

export function mockResolver(zone: Zone): FullResolver & { queries: string[] } {
  const queries: string[] = [];
  const maps = () => [zone.mx, zone.a, zone.aaaa, zone.txt, zone.cname, zone.srv, zone.ptr];
  function get<T>(type: string, map: Map<string, T>, name: string): T {
    const key = name.toLowerCase().replace(/\.$/, '');
    queries.push(`${type} ${key}`);
    const failure = zone.fail.get(key);
    if (failure) throw dnsError(failure, key);
    const v = map.get(key);
    if (v !== undefined) return v;
    throw dnsError(maps().some((m) => m.has(key)) ? 'ENODATA' : 'ENOTFOUND', key);
  }
  return {
    queries,
    resolveMx: async (n) => get('MX', zone.mx, n),
    resolve4: async (n) => get('A', zone.a, n),
    resolve6: async (n) => get('AAAA', zone.aaaa, n),
    // One record per value, split in 255-octet character-strings (RFC 1035 §3.3.14).
    resolveTxt: async (n) => get('TXT', zone.txt, n).map((v) => v.match(/.{1,255}/gs) ?? ['']),
    resolvePtr: async (n) => get('PTR', zone.ptr, n),
    resolveCname: async (n) => [get('CNAME', zone.cname, n)],
    resolveSrv: async (n) => get('SRV', zone.srv, n),
  };
}

/** Appends a value to a multi-valued entry. */
export function addTo<T>(map: Map<string, T[]>, name: string, value: T): void {
  const list = map.get(name) ?? [];
  list.push(value);
  map.set(name, list);
}

/** The zone with exactly the records `facteur dns` prints. */
export function zoneOf(records: readonly DnsRecord[]): Zone {
  const z = emptyZone();
  for (const r of records) {
    switch (r.type) {
      case 'MX': addTo(z.mx, r.name, { exchange: r.value, priority: r.priority ?? 10 }); break;
      case 'A': addTo(z.a, r.name, r.value); break;
      case 'AAAA': addTo(z.aaaa, r.name, r.value); break;
      case 'TXT': addTo(z.txt, r.name, r.value); break;
      case 'CNAME': z.cname.set(r.name, r.value); break;
      case 'SRV': addTo(z.srv, r.name, { name: r.value === '.' ? '' : r.value, port: r.port ?? 0, priority: r.priority ?? 0, weight: r.weight ?? 0 }); break;
      case 'PTR': addTo(z.ptr, r.name, r.value); break;
    }
  }
  return z;
}
