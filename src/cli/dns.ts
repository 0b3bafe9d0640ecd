/**
 * `facteur dns DOMAIN` and `facteur check DOMAIN`: the records a domain needs, from the data
 * directory's configuration and DKIM keys, printed as a zone file or checked against DNS.
 */
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { loadConfig, type Config } from '../config/config.js';
import { checkDomain, hasProblems, renderReport } from '../dns/check.js';
import { requiredRecords, type DnsRecord } from '../dns/records.js';
import { createDnsResolver, type FullResolver } from '../dns/resolver.js';
import { loadDkimKeys } from '../msgauth/dkim-keys.js';
import { CONFIG_FILE } from './data-dir.js';

const DOMAIN = /^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$/;

export interface DomainSetup {
  config: Config;
  domain: string;
  ips: string[];
  records: DnsRecord[];
}

/** The records for a domain: addresses from --ip, else from the config's public_ips. */
export async function domainSetup(dataDir: string, domainArg: string, ipArgs: readonly string[]): Promise<DomainSetup> {
  const domain = domainArg.toLowerCase().replace(/\.$/, '');
  if (!DOMAIN.test(domain)) throw new Error(`Invalid domain name: ${domainArg}`);
  const config = await loadConfig(join(dataDir, CONFIG_FILE));
  const ips = ipArgs.length > 0 ? [...ipArgs] : [...config.publicIps];
  for (const ip of ips) if (isIP(ip) === 0) throw new Error(`Invalid IP address: ${ip}`);
  const dkimKeys = await loadDkimKeys(dataDir, domain);
  const records = requiredRecords({ domain, hostname: config.hostname, ips, listen: config.listen, dkimKeys, mtaSts: config.mtaSts });
  return { config, domain, ips, records };
}

/** The certificate served for the host name (exact file, else the wildcard `_.rest` file). */
export async function hostCertificate(dataDir: string, hostname: string): Promise<string | null> {
  const host = hostname.toLowerCase();
  const dot = host.indexOf('.');
  for (const name of [host, ...(dot > 0 ? [`_${host.slice(dot)}`] : [])]) {
    try {
      return await readFile(join(dataDir, 'tls', `${name}.crt`), 'utf8');
    } catch {
      // try the next name
    }
  }
  return null;
}

export async function runCheck(dataDir: string, domainArg: string, ipArgs: readonly string[], dns: readonly string[], resolver?: FullResolver): Promise<{ report: string; problems: boolean }> {
  const setup = await domainSetup(dataDir, domainArg, ipArgs);
  const r = resolver ?? createDnsResolver({ servers: dns.length > 0 ? dns : setup.config.dns.servers });
  const results = await checkDomain({
    domain: setup.domain,
    hostname: setup.config.hostname,
    ips: setup.ips,
    records: setup.records,
    resolver: r,
    certificatePem: await hostCertificate(dataDir, setup.config.hostname),
  });
  return { report: renderReport(results), problems: hasProblems(results) };
}
