/**
 * The DNS records a mail domain served by Facteur needs, computed from the configuration (host
 * name, listeners, public addresses, MTA-STS policy) and the DKIM keys; rendered in zone-file
 * syntax by `facteur dns` and verified one by one by `facteur check` (check.ts).
 *
 * Invariants:
 * - Pure: no I/O. The same input always gives the same records in the same order.
 * - Exactly one SPF record per name (RFC 7208 §4.5: several are a permerror).
 * - Every SRV service of RFC 6186 and RFC 8314 is listed; a service this server does not offer
 *   has the target "." (RFC 6186 §3.4, RFC 2782), so clients do not guess.
 * - TXT values longer than 255 octets are split into several character-strings
 *   (RFC 1035 §3.3.14; RFC 6376 §3.6.2.2 joins them back).
 */
import { createHash } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import { parseHostPort, type ListenerName } from '../config/config.js';
import { renderMtaStsPolicy, renderPacc, type MtaStsPolicy } from '../http/client-config.js';
import { clientEndpoints } from '../http/client-settings.js';
import { dkimDnsRecord, dkimRecordName, type DkimKey } from '../msgauth/dkim-keys.js';

export type RecordType = 'MX' | 'TXT' | 'A' | 'AAAA' | 'CNAME' | 'SRV' | 'PTR';

/** What a record is for; check.ts verifies each kind by its own rule. */
export type RecordKind =
  | 'mx' | 'host-a' | 'host-aaaa' | 'spf' | 'host-spf' | 'dkim' | 'dmarc' | 'mta-sts' | 'mta-sts-host'
  | 'tls-rpt' | 'srv' | 'autoconfig' | 'autodiscover' | 'pacc' | 'pacc-host' | 'ptr';

export interface DnsRecord {
  kind: RecordKind;
  /** Owner name, lower case, without the final dot. */
  name: string;
  type: RecordType;
  /** MX/CNAME/PTR target (no final dot), A/AAAA address, TXT value (unsplit), SRV target or ".". */
  value: string;
  priority?: number;
  weight?: number;
  port?: number;
  /** One line on why the record is needed, printed as a comment above it. */
  why: string;
}

export interface RecordsInput {
  domain: string;
  hostname: string;
  /** The server's public addresses (IPv4 and IPv6). */
  ips: readonly string[];
  listen: Partial<Record<ListenerName, string>>;
  dkimKeys: readonly DkimKey[];
  mtaSts: Omit<MtaStsPolicy, 'mx'>;
  /** Where aggregate DMARC and TLS reports go; postmaster@domain by default. */
  reportAddress?: string;
}

export const DEFAULT_TTL = 3600;

/**
 * RFC 6186 §3.4 and RFC 8314 §5.1: one SRV name per service. The priority orders the choices:
 * implicit TLS before STARTTLS (RFC 8314 §3.3), IMAP before POP3.
 */
export const SRV_SERVICES: ReadonlyArray<{ service: string; listener: ListenerName; priority: number; why: string }> = [
  { service: '_submissions._tcp', listener: 'submissions', priority: 0, why: 'RFC 8314 §5.1: mail submission with implicit TLS' },
  { service: '_submission._tcp', listener: 'submission', priority: 10, why: 'RFC 6186 §3.1: mail submission with STARTTLS' },
  { service: '_imaps._tcp', listener: 'imaps', priority: 0, why: 'RFC 6186 §3.2: IMAP with implicit TLS' },
  { service: '_imap._tcp', listener: 'imap', priority: 10, why: 'RFC 6186 §3.2: IMAP with STARTTLS' },
  { service: '_pop3s._tcp', listener: 'pop3s', priority: 20, why: 'RFC 6186 §3.3: POP3 with implicit TLS (after IMAP)' },
  { service: '_pop3._tcp', listener: 'pop3', priority: 30, why: 'RFC 6186 §3.3: POP3 with STLS (after IMAP)' },
];

/** The PACC digest record value: SHA-256 of the exact document served (draft-ietf-mailmaint-pacc-02). */
export function paccDigestRecord(document: string): string {
  return `v=UAAC1; a=sha256; d=${createHash('sha256').update(document, 'utf8').digest('base64')}`;
}

/** The `_mta-sts` id: changes exactly when the policy text changes (RFC 8461 §3.1). */
export function mtaStsId(policyText: string): string {
  return createHash('sha256').update(policyText).digest('hex').slice(0, 20);
}

function fullIPv6(ip: string): string {
  let s = ip.toLowerCase();
  // An embedded IPv4 tail (::ffff:192.0.2.1) becomes two groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4) {
    const b = v4[1]!.split('.').map(Number);
    s = s.slice(0, -v4[1]!.length) + `${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
  }
  const [head, tail] = s.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const fill = tail === undefined ? [] : Array(8 - h.length - t.length).fill('0');
  return [...h, ...fill, ...t].map((g) => g.padStart(4, '0')).join('');
}

/** The reverse-lookup name of an address (RFC 1035 §3.5 in-addr.arpa, RFC 3596 §2.5 ip6.arpa). */
export function reverseName(ip: string): string {
  if (isIPv4(ip)) return `${ip.split('.').reverse().join('.')}.in-addr.arpa`;
  if (isIPv6(ip)) return `${fullIPv6(ip).split('').reverse().join('.')}.ip6.arpa`;
  throw new Error(`Cannot make a reverse name: "${ip}" is not an IP address`);
}

/** The address as a 128-bit (IPv6) or 32-bit (IPv4) number, for prefix comparisons. */
export function ipToBigInt(ip: string): bigint {
  if (isIPv4(ip)) return ip.split('.').reduce((acc, b) => (acc << 8n) | BigInt(Number(b)), 0n);
  return BigInt(`0x${fullIPv6(ip)}`);
}

export function requiredRecords(input: RecordsInput): DnsRecord[] {
  const domain = input.domain.toLowerCase();
  const host = input.hostname.toLowerCase();
  const report = input.reportAddress ?? `postmaster@${domain}`;
  const v4 = input.ips.filter((ip) => isIPv4(ip));
  const v6 = input.ips.filter((ip) => isIPv6(ip));
  const out: DnsRecord[] = [];

  out.push({ kind: 'mx', name: domain, type: 'MX', value: host, priority: 10, why: 'RFC 5321 §5.1: where other servers deliver mail for the domain' });
  for (const ip of v4) out.push({ kind: 'host-a', name: host, type: 'A', value: ip, why: 'the server\'s IPv4 address (MX target, clients, reverse DNS check)' });
  for (const ip of v6) out.push({ kind: 'host-aaaa', name: host, type: 'AAAA', value: ip, why: 'the server\'s IPv6 address' });

  // RFC 7208: the addresses allowed to send for the domain; -all refuses every other one.
  const mechanisms = [...v4.map((ip) => `ip4:${ip}`), ...v6.map((ip) => `ip6:${ip}`)];
  const spf = `v=spf1 ${mechanisms.length > 0 ? mechanisms.join(' ') : 'mx'} -all`;
  out.push({ kind: 'spf', name: domain, type: 'TXT', value: spf, why: 'RFC 7208: the one SPF record: only this server sends mail for the domain' });
  if (host !== domain) {
    // RFC 7208 §2.3: the HELO name is checked too; it sends only from its own addresses.
    out.push({ kind: 'host-spf', name: host, type: 'TXT', value: `v=spf1 ${mechanisms.length > 0 ? mechanisms.join(' ') : 'a'} -all`, why: 'RFC 7208 §2.3: SPF for the HELO/EHLO name' });
  }

  for (const key of input.dkimKeys) {
    out.push({ kind: 'dkim', name: dkimRecordName({ selector: key.selector, domain }), type: 'TXT', value: dkimDnsRecord(key), why: `RFC 6376 §3.6.1: public ${key.algorithm} key of DKIM selector ${key.selector}` });
  }

  out.push({ kind: 'dmarc', name: `_dmarc.${domain}`, type: 'TXT', value: `v=DMARC1; p=quarantine; rua=mailto:${report}`, why: 'RFC 7489 §6.1: DMARC policy, aggregate reports to rua' });

  const policy = renderMtaStsPolicy({ ...input.mtaSts, mx: [host] });
  out.push({ kind: 'mta-sts', name: `_mta-sts.${domain}`, type: 'TXT', value: `v=STSv1; id=${mtaStsId(policy)}`, why: 'RFC 8461 §3.1: announces the MTA-STS policy; the id changes with the policy' });
  out.push({ kind: 'mta-sts-host', name: `mta-sts.${domain}`, type: 'CNAME', value: host, why: 'RFC 8461 §3.3: the policy is fetched from https://mta-sts.DOMAIN (its certificate must name it)' });
  out.push({ kind: 'tls-rpt', name: `_smtp._tls.${domain}`, type: 'TXT', value: `v=TLSRPTv1; rua=mailto:${report}`, why: 'RFC 8460 §3: where senders report TLS failures' });

  for (const s of SRV_SERVICES) {
    const addr = input.listen[s.listener];
    const name = `${s.service}.${domain}`;
    if (addr) {
      out.push({ kind: 'srv', name, type: 'SRV', value: host, priority: s.priority, weight: 1, port: parseHostPort(addr, `listen.${s.listener}`).port, why: s.why });
    } else {
      out.push({ kind: 'srv', name, type: 'SRV', value: '.', priority: 0, weight: 0, port: 0, why: `${s.why}: not offered (RFC 6186 §3.4 target ".")` });
    }
  }
  out.push({ kind: 'autoconfig', name: `autoconfig.${domain}`, type: 'CNAME', value: host, why: 'Thunderbird autoconfig: http://autoconfig.DOMAIN/mail/config-v1.1.xml' });
  out.push({ kind: 'autodiscover', name: `autodiscover.${domain}`, type: 'CNAME', value: host, why: 'Outlook autodiscover: https://autodiscover.DOMAIN/autodiscover/autodiscover.xml' });
  if (input.listen.https) {
    const port = parseHostPort(input.listen.https, 'listen.https').port;
    out.push({ kind: 'srv', name: `_autodiscover._tcp.${domain}`, type: 'SRV', value: host, priority: 0, weight: 1, port, why: 'Outlook autodiscover, last resort: the https server to ask' });
  }
  // PACC: the document is fetched from ua-auto-config.DOMAIN and checked against the digest in
  // DNS, so the digest is of the exact bytes the http listener serves for this domain.
  const pacc = renderPacc(clientEndpoints({ hostname: host, listen: input.listen, hasTls: true }), domain);
  out.push({ kind: 'pacc-host', name: `ua-auto-config.${domain}`, type: 'CNAME', value: host, why: 'PACC (draft-ietf-mailmaint-pacc): https://ua-auto-config.DOMAIN/.well-known/user-agent-configuration.json' });
  out.push({ kind: 'pacc', name: `_ua-auto-config.${domain}`, type: 'TXT', value: paccDigestRecord(pacc), why: 'PACC: SHA-256 of the configuration document; changes when the listeners change' });

  for (const ip of input.ips) {
    out.push({ kind: 'ptr', name: reverseName(ip), type: 'PTR', value: host, why: 'reverse DNS, set at the address\'s provider: receivers check that it names the server (FCrDNS)' });
  }
  return out;
}

/** Splits a TXT value into quoted character-strings of at most 255 octets (RFC 1035 §3.3.14). */
export function txtStrings(value: string): string[] {
  const parts: string[] = [];
  for (let i = 0; i < value.length; i += 255) parts.push(value.slice(i, i + 255));
  return parts.length > 0 ? parts : [''];
}

function quote(s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** The record's data in zone-file syntax (RFC 1035 §5.1). */
export function rdata(r: DnsRecord): string {
  const fqdn = (n: string) => (n === '.' ? '.' : `${n}.`);
  switch (r.type) {
    case 'MX': return `${r.priority ?? 10} ${fqdn(r.value)}`;
    case 'TXT': return txtStrings(r.value).map(quote).join(' ');
    case 'SRV': return `${r.priority ?? 0} ${r.weight ?? 0} ${r.port ?? 0} ${fqdn(r.value)}`;
    case 'CNAME':
    case 'PTR': return fqdn(r.value);
    default: return r.value;
  }
}

/** Zone-file text: each record preceded by a comment saying why. */
export function renderZone(records: readonly DnsRecord[], ttl = DEFAULT_TTL): string {
  const lines: string[] = [];
  let ptrHeader = false;
  for (const r of records) {
    if (r.kind === 'ptr' && !ptrHeader) {
      lines.push('; Reverse DNS: these go in the reverse zone of your address provider, not in the domain\'s zone.');
      ptrHeader = true;
    }
    lines.push(`; ${r.why}`, `${r.name}.\t${ttl}\tIN\t${r.type}\t${rdata(r)}`);
  }
  return lines.join('\n') + '\n';
}
