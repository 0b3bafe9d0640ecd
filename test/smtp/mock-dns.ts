/**
 * A DNS stand-in answering from a table (DESIGN.md: DNS may be mocked in tests). Unknown names
 * answer ENOTFOUND, known names without the asked type ENODATA, like node:dns.
 */
import type { MxRecord, Resolver } from '../../src/dns/resolver.js';

export interface DnsTable {
  txt?: Record<string, string | string[]>;
  a?: Record<string, string[]>;
  mx?: Record<string, MxRecord[]>;
}

function dnsError(code: string, name: string): Error {
  return Object.assign(new Error(`${code} ${name}`), { code, hostname: name });
}

export function createMockResolver(table: DnsTable): Resolver & { queries: string[] } {
  const queries: string[] = [];
  const known = (name: string) =>
    [table.txt, table.a, table.mx].some((t) => t !== undefined && Object.prototype.hasOwnProperty.call(t, name.toLowerCase()));
  function lookup<T>(kind: string, t: Record<string, T> | undefined, name: string): T {
    const key = name.toLowerCase().replace(/\.$/, '');
    queries.push(`${kind} ${key}`);
    if (t && Object.prototype.hasOwnProperty.call(t, key)) return t[key]!;
    throw dnsError(known(key) ? 'ENODATA' : 'ENOTFOUND', key);
  }
  return {
    queries,
    async resolveTxt(name) {
      const v = lookup('TXT', table.txt, name);
      // One record per entry; long values split in 255-octet character-strings (RFC 1035 §3.3.14).
      return (Array.isArray(v) ? v : [v]).map((s) => s.match(/.{1,255}/g) ?? ['']);
    },
    async resolve4(name) {
      return lookup('A', table.a, name);
    },
    async resolve6(name) {
      queries.push(`AAAA ${name}`);
      throw dnsError(known(name) ? 'ENODATA' : 'ENOTFOUND', name);
    },
    async resolveMx(name) {
      return lookup('MX', table.mx, name);
    },
  };
}
