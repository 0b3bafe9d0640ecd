/**
 * DNS as an interface, so that every module that looks something up (outbound MX resolution,
 * SPF/DKIM/DMARC checks, MTA-STS discovery) can be given a stand-in in tests.
 *
 * Errors follow node:dns: a name that does not exist rejects with code 'ENOTFOUND', a name with
 * no record of the asked type with 'ENODATA'; anything else (SERVFAIL, timeout) is temporary.
 */
import { Resolver as NodeResolver } from 'node:dns/promises';

export interface MxRecord {
  exchange: string;
  priority: number;
}

export interface SrvRecord {
  name: string;
  port: number;
  priority: number;
  weight: number;
}

export interface Resolver {
  resolveMx(name: string): Promise<MxRecord[]>;
  resolve4(name: string): Promise<string[]>;
  resolve6(name: string): Promise<string[]>;
  /** Each record as its list of character-strings (join them for the value). */
  resolveTxt(name: string): Promise<string[][]>;
  /** Reverse lookups (`facteur check`: forward-confirmed reverse DNS). Optional so that
   * stand-ins written for the lookups above stay valid. */
  resolvePtr?(name: string): Promise<string[]>;
  resolveCname?(name: string): Promise<string[]>;
  resolveSrv?(name: string): Promise<SrvRecord[]>;
}

/** A resolver with every record type (the real one; `facteur check` needs all of them). */
export type FullResolver = Resolver & Required<Pick<Resolver, 'resolvePtr' | 'resolveCname' | 'resolveSrv'>>;

export interface DnsOptions {
  /** Name servers ("1.2.3.4", "[2001:db8::1]:53"); the system's when absent. */
  servers?: readonly string[];
  /** Per-query timeout, ms. */
  timeoutMs?: number;
  tries?: number;
}

export function createDnsResolver(options: DnsOptions = {}): FullResolver {
  const r = new NodeResolver({ timeout: options.timeoutMs ?? 5000, tries: options.tries ?? 2 });
  if (options.servers && options.servers.length > 0) r.setServers([...options.servers]);
  return {
    resolveMx: (name) => r.resolveMx(name),
    resolve4: (name) => r.resolve4(name),
    resolve6: (name) => r.resolve6(name),
    resolveTxt: (name) => r.resolveTxt(name),
    resolvePtr: (name) => r.resolvePtr(name),
    resolveCname: (name) => r.resolveCname(name),
    resolveSrv: (name) => r.resolveSrv(name),
  };
}

/** True when the error means "this name or record does not exist" (a permanent answer). */
export function isNotFound(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ENOTFOUND' || code === 'ENODATA';
}

/**
 * The resolver function mailauth takes (`(name, rrtype) => records`), built on a Resolver, so
 * mailauth's checks use the same (possibly mocked) DNS as the rest of the server.
 */
export function mailauthResolver(resolver: Resolver): (name: string, rrtype: string) => Promise<any> {
  return async (name, rrtype) => {
    switch (rrtype.toUpperCase()) {
      case 'TXT':
        return resolver.resolveTxt(name);
      case 'MX':
        return resolver.resolveMx(name);
      case 'A':
        return resolver.resolve4(name);
      case 'AAAA':
        return resolver.resolve6(name);
      default: {
        const err = new Error(`Cannot resolve record type ${rrtype}: not supported by this resolver`) as Error & { code: string };
        err.code = 'ENOTIMP';
        throw err;
      }
    }
  };
}
