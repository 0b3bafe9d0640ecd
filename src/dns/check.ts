/**
 * `facteur check DOMAIN`: looks up every record `facteur dns` prints and says, for each, OK,
 * missing or wrong, with the fix; then forward-confirmed reverse DNS of each public address,
 * the certificate (names the host, not expiring within 14 days) and the common DNS blocklists.
 *
 * Invariants:
 * - Only the Resolver is used for DNS (mocked in tests; `dns.servers` or --dns in use).
 * - A lookup that fails for another reason than "no such name/record" is reported as an error
 *   (the check could not be made), never as OK.
 * - A record is judged by what matters for mail, not by byte equality: an SPF record must be
 *   the only one and authorize every address; a DMARC record must have a policy and rua; an
 *   SRV record must point at the host and port; a CNAME may be replaced by the same addresses.
 */
import { X509Certificate } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import { isNotFound, type FullResolver } from './resolver.js';
import { DEFAULT_TTL, ipToBigInt, rdata, reverseName, type DnsRecord } from './records.js';

export type CheckStatus = 'ok' | 'missing' | 'wrong' | 'warn' | 'error';

export interface CheckResult {
  status: CheckStatus;
  /** What was checked: "MX example.test", "PTR 192.0.2.1", "certificate", "zen.spamhaus.org". */
  subject: string;
  detail: string;
  fix?: string;
}

export interface CheckInput {
  domain: string;
  hostname: string;
  ips: readonly string[];
  records: readonly DnsRecord[];
  resolver: FullResolver;
  /** PEM of the certificate served for the host name; null when there is none. */
  certificatePem: string | null;
  now?: Date;
  dnsbls?: readonly string[];
}

/** Blocklists checked by default: widely used by receivers, free for low-volume queries. */
export const DEFAULT_DNSBLS: readonly string[] = ['zen.spamhaus.org', 'bl.spamcop.net', 'b.barracudacentral.org'];
/** Blocklists that list IPv6 addresses (the others take IPv4 only). */
const IPV6_DNSBLS = new Set(['zen.spamhaus.org']);
/** A certificate expiring sooner than this is reported. */
export const CERT_MIN_DAYS = 14;

type Lookup<T> = { ok: true; value: T } | { ok: false; notFound: true } | { ok: false; notFound: false; error: string };

async function lookup<T>(fn: () => Promise<T>): Promise<Lookup<T>> {
  try {
    return { ok: true, value: await fn() };
  } catch (err) {
    if (isNotFound(err)) return { ok: false, notFound: true };
    return { ok: false, notFound: false, error: (err as NodeJS.ErrnoException).code ?? (err as Error).message };
  }
}

const norm = (name: string) => name.toLowerCase().replace(/\.$/, '');
const zoneLine = (r: DnsRecord) => `${r.name}.\t${DEFAULT_TTL}\tIN\t${r.type}\t${rdata(r)}`;

function subjectOf(r: DnsRecord): string {
  return `${r.type} ${r.name}`;
}

/** The TXT records at a name that start with a version tag (case-insensitive, RFC 7208 §4.5). */
function tagged(txt: string[][], prefix: string): string[] {
  const p = prefix.toLowerCase();
  return txt.map((parts) => parts.join('')).filter((v) => {
    const l = v.toLowerCase().trimStart();
    return l === p || l.startsWith(`${p} `) || l.startsWith(`${p};`);
  });
}

/** Tag-value list (DKIM, DMARC, MTA-STS, TLS-RPT: "k=v; k=v"). */
function tags(value: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of value.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0) out.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim());
  }
  return out;
}

/** Whether an SPF record authorizes the address through an ip4/ip6 mechanism, or names mx/a. */
function spfCovers(record: string, ip: string): boolean {
  for (const term of record.split(/\s+/).slice(1)) {
    const t = term.replace(/^[+]/, '').toLowerCase();
    if (t === 'mx' || t === 'a' || t.startsWith('mx:') || t.startsWith('a:') || t.startsWith('include:')) return true;
    const m = /^(ip4|ip6):([^/]+)(?:\/(\d+))?$/.exec(t);
    if (!m) continue;
    const [, kind, net, len] = m;
    const bits = kind === 'ip4' ? 32 : 128;
    if ((kind === 'ip4' && !isIPv4(ip)) || (kind === 'ip6' && !isIPv6(ip))) continue;
    if ((kind === 'ip4' && !isIPv4(net!)) || (kind === 'ip6' && !isIPv6(net!))) continue;
    const prefix = len === undefined ? bits : Number(len);
    const shift = BigInt(bits - prefix);
    if (ipToBigInt(net!) >> shift === ipToBigInt(ip) >> shift) return true;
  }
  return false;
}

export async function checkDomain(input: CheckInput): Promise<CheckResult[]> {
  const { resolver } = input;
  const host = norm(input.hostname);
  const results: CheckResult[] = [];
  const add = (r: CheckResult): void => {
    results.push(r);
  };
  const missing = (r: DnsRecord, detail = 'not published') => add({ status: 'missing', subject: subjectOf(r), detail, fix: `add: ${zoneLine(r)}` });
  const wrong = (r: DnsRecord, detail: string, fix = `publish instead: ${zoneLine(r)}`) => add({ status: 'wrong', subject: subjectOf(r), detail, fix });
  const failed = (r: DnsRecord, error: string) => add({ status: 'error', subject: subjectOf(r), detail: `lookup failed (${error}); cannot check` });
  const ok = (r: DnsRecord, detail: string) => add({ status: 'ok', subject: subjectOf(r), detail });

  const hostAddrs = { v4: await lookup(() => resolver.resolve4(host)), v6: await lookup(() => resolver.resolve6(host)) };

  async function checkTxt(r: DnsRecord, prefix: string, judge: (values: string[]) => void): Promise<void> {
    const res = await lookup(() => resolver.resolveTxt(r.name));
    if (!res.ok) return res.notFound ? missing(r) : failed(r, res.error);
    const values = tagged(res.value, prefix);
    if (values.length === 0) return missing(r, `no ${prefix} record among the TXT records`);
    judge(values);
  }

  /** A CNAME to the host, or the same addresses as the host. */
  async function checkAlias(r: DnsRecord): Promise<void> {
    const cname = await lookup(() => resolver.resolveCname(r.name));
    if (cname.ok) {
      const target = norm(cname.value[0] ?? '');
      return target === host ? ok(r, `CNAME to ${host}`) : wrong(r, `CNAME to ${target}, not ${host}`);
    }
    if (!cname.notFound) return failed(r, cname.error);
    const a = await lookup(() => resolver.resolve4(r.name));
    if (!a.ok) return a.notFound ? missing(r) : failed(r, a.error);
    const hostV4 = hostAddrs.v4.ok ? hostAddrs.v4.value : [];
    const same = a.value.length > 0 && a.value.every((ip) => hostV4.includes(ip) || input.ips.includes(ip));
    return same ? ok(r, `A ${a.value.join(', ')} (the host's addresses)`) : wrong(r, `A ${a.value.join(', ')} is not this server`);
  }

  for (const r of input.records) {
    switch (r.kind) {
      case 'mx': {
        const res = await lookup(() => resolver.resolveMx(r.name));
        if (!res.ok) { if (res.notFound) missing(r); else failed(r, res.error); break; }
        const ours = res.value.find((mx) => norm(mx.exchange) === host);
        if (ours) ok(r, `${host} (priority ${ours.priority})`);
        else wrong(r, `MX is ${res.value.map((mx) => norm(mx.exchange) || '.').join(', ')}, not ${host}`);
        break;
      }
      case 'host-a':
      case 'host-aaaa': {
        const res = r.kind === 'host-a' ? hostAddrs.v4 : hostAddrs.v6;
        if (!res.ok) { if (res.notFound) missing(r); else failed(r, res.error); break; }
        if (res.value.includes(r.value)) ok(r, r.value);
        else wrong(r, `${r.name} has ${res.value.join(', ')}, not ${r.value}`);
        break;
      }
      case 'spf':
      case 'host-spf':
        await checkTxt(r, 'v=spf1', (values) => {
          // RFC 7208 §4.5: more than one SPF record is a permerror: every check fails.
          if (values.length > 1) return wrong(r, `${values.length} SPF records (RFC 7208 §4.5: a permerror); keep exactly one`);
          const rec = values[0]!;
          if (/\s\+?all\b/i.test(` ${rec}`) && !/[-~?]all\b/i.test(rec)) return wrong(r, `"${rec}" allows every sender (+all)`);
          const uncovered = input.ips.filter((ip) => !spfCovers(rec, ip));
          if (uncovered.length > 0) return wrong(r, `"${rec}" does not authorize ${uncovered.join(', ')}`);
          ok(r, rec);
        });
        break;
      case 'dkim':
        await checkTxt(r, 'v=DKIM1', (values) => {
          const want = tags(r.value).get('p')?.replace(/\s+/g, '');
          const found = values.some((v) => tags(v).get('p')?.replace(/\s+/g, '') === want);
          if (found) ok(r, 'the published key is the selector\'s key');
          else wrong(r, 'the published key is not the one in the data directory: signatures will fail');
        });
        break;
      case 'dmarc':
        await checkTxt(r, 'v=DMARC1', (values) => {
          // RFC 7489 §6.6.3: several records mean no policy at all.
          if (values.length > 1) return wrong(r, `${values.length} DMARC records (RFC 7489 §6.6.3: none applies); keep one`);
          const t = tags(values[0]!);
          if (!t.has('p')) return wrong(r, 'no p= policy (RFC 7489 §6.3)');
          if (!t.has('rua')) return wrong(r, 'no rua=: no aggregate report will tell you who fails');
          ok(r, values[0]!);
        });
        break;
      case 'mta-sts':
        await checkTxt(r, 'v=STSv1', (values) => {
          // RFC 8461 §3.1: several records: senders treat the domain as having no policy.
          if (values.length > 1) return wrong(r, `${values.length} records (RFC 8461 §3.1: no policy applies); keep one`);
          const id = tags(values[0]!).get('id') ?? '';
          if (!/^[A-Za-z0-9]{1,32}$/.test(id)) return wrong(r, `id "${id}" is not 1 to 32 letters and digits (RFC 8461 §3.1)`);
          const current = tags(r.value).get('id');
          ok(r, id === current ? `id=${id}` : `id=${id} (the current policy's id is ${current}: change it whenever the policy changes)`);
        });
        break;
      case 'tls-rpt':
        await checkTxt(r, 'v=TLSRPTv1', (values) => {
          if (values.length > 1) return wrong(r, `${values.length} records (RFC 8460 §3: none applies); keep one`);
          if (!tags(values[0]!).has('rua')) return wrong(r, 'no rua= (RFC 8460 §3: required)');
          ok(r, values[0]!);
        });
        break;
      case 'srv': {
        const res = await lookup(() => resolver.resolveSrv(r.name));
        if (!res.ok) { if (res.notFound) missing(r); else failed(r, res.error); break; }
        const offered = r.value !== '.';
        const targets = res.value.map((s) => ({ target: norm(s.name) || '.', port: s.port }));
        if (!offered) {
          if (targets.every((t) => t.target === '.')) ok(r, 'not offered (target ".")');
          else wrong(r, `announces ${targets.map((t) => `${t.target}:${t.port}`).join(', ')}, a service this server does not run`);
        } else if (targets.some((t) => t.target === host && t.port === r.port)) {
          ok(r, `${host}:${r.port}`);
        } else {
          wrong(r, `points to ${targets.map((t) => `${t.target}:${t.port}`).join(', ')}, not ${host}:${r.port}`);
        }
        break;
      }
      case 'pacc':
        await checkTxt(r, 'v=UAAC1', (values) => {
          const want = tags(r.value).get('d');
          if (values.some((v) => tags(v).get('d') === want)) ok(r, 'the digest matches the document this server serves');
          else wrong(r, 'the digest does not match the document this server serves: clients will refuse it');
        });
        break;
      case 'mta-sts-host':
      case 'autoconfig':
      case 'autodiscover':
      case 'pacc-host':
        await checkAlias(r);
        break;
      case 'ptr':
        await checkPtr(r);
        break;
    }
  }

  /** Forward-confirmed reverse DNS: the PTR names the host, and the host resolves back to the address. */
  async function checkPtr(r: DnsRecord): Promise<void> {
    const ip = input.ips.find((a) => reverseName(a) === r.name) ?? r.name;
    const subject = `PTR ${ip}`;
    const res = await lookup(() => resolver.resolvePtr(r.name));
    if (!res.ok) {
      if (res.notFound) add({ status: 'missing', subject, detail: `no reverse DNS for ${ip}`, fix: `ask the provider of ${ip} to set: ${zoneLine(r)}` });
      else add({ status: 'error', subject, detail: `lookup failed (${res.error}); cannot check` });
      return;
    }
    const names = res.value.map(norm);
    if (!names.includes(host)) {
      add({ status: 'wrong', subject, detail: `reverse DNS is ${names.join(', ') || '(empty)'}, not ${host}`, fix: `ask the provider of ${ip} to set: ${zoneLine(r)}` });
      return;
    }
    const fwd = isIPv4(ip) ? hostAddrs.v4 : hostAddrs.v6;
    if (fwd.ok && fwd.value.includes(ip)) {
      add({ status: 'ok', subject, detail: `${host}, which resolves back to ${ip} (forward-confirmed)` });
    } else {
      add({ status: 'wrong', subject, detail: `${host} does not resolve back to ${ip}: not forward-confirmed`, fix: `add: ${host}.\t${DEFAULT_TTL}\tIN\t${isIPv4(ip) ? 'A' : 'AAAA'}\t${ip}` });
    }
  }

  if (input.ips.length === 0) {
    add({ status: 'warn', subject: 'addresses', detail: 'no public address (public_ips or --ip): reverse DNS and blocklists were not checked', fix: 'set public_ips in facteur.toml' });
  }
  results.push(...checkCertificate(input, host));

  for (const ip of input.ips) {
    for (const zone of input.dnsbls ?? DEFAULT_DNSBLS) {
      if (isIPv6(ip) && !IPV6_DNSBLS.has(zone)) continue;
      const query = `${reverseName(ip).replace(/\.(in-addr|ip6)\.arpa$/, '')}.${zone}`;
      const subject = `${zone} ${ip}`;
      const res = await lookup(() => resolver.resolve4(query));
      if (!res.ok) {
        if (res.notFound) add({ status: 'ok', subject, detail: 'not listed' });
        else add({ status: 'error', subject, detail: `lookup failed (${res.error}); cannot check` });
        continue;
      }
      // Spamhaus answers 127.255.255.x when it refuses the query (public resolvers, no key).
      if (res.value.every((a) => a.startsWith('127.255.255.'))) {
        add({ status: 'error', subject, detail: `the list refused the query (${res.value.join(', ')}): use your own resolver (dns.servers)` });
        continue;
      }
      const codes = res.value.filter((a) => a.startsWith('127.0.0.'));
      if (codes.length > 0) add({ status: 'wrong', subject, detail: `listed (${codes.join(', ')})`, fix: `find out why and request removal on the ${zone} web site` });
      else add({ status: 'error', subject, detail: `unexpected answer ${res.value.join(', ')}` });
    }
  }
  return results;
}

function checkCertificate(input: CheckInput, host: string): CheckResult[] {
  const subject = `certificate ${host}`;
  if (input.certificatePem === null) {
    return [{ status: 'missing', subject, detail: 'no certificate for the host name in the data directory', fix: `put ${host}.crt and ${host}.key in DATA/tls/` }];
  }
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(input.certificatePem);
  } catch (err) {
    return [{ status: 'wrong', subject, detail: `cannot read the certificate: ${(err as Error).message}` }];
  }
  const out: CheckResult[] = [];
  const now = input.now ?? new Date();
  if (cert.checkHost(host) === undefined) {
    out.push({ status: 'wrong', subject, detail: `does not name ${host} (${cert.subjectAltName ?? cert.subject})`, fix: `get a certificate for ${host}` });
  } else {
    out.push({ status: 'ok', subject, detail: `names ${host}` });
  }
  const stsHost = `mta-sts.${input.domain.toLowerCase()}`;
  if (cert.checkHost(stsHost) === undefined) {
    // RFC 8461 §3.3: senders fetch the policy over HTTPS with a valid certificate for this name.
    out.push({ status: 'wrong', subject: `certificate ${stsHost}`, detail: `does not name ${stsHost}: senders cannot fetch the MTA-STS policy`, fix: `add ${stsHost} to the certificate's names` });
  } else {
    out.push({ status: 'ok', subject: `certificate ${stsHost}`, detail: `names ${stsHost}` });
  }
  const notAfter = new Date(cert.validTo);
  const notBefore = new Date(cert.validFrom);
  const days = Math.floor((notAfter.getTime() - now.getTime()) / 86_400_000);
  if (notBefore.getTime() > now.getTime()) {
    out.push({ status: 'wrong', subject: `${subject} validity`, detail: `not valid before ${notBefore.toISOString()}` });
  } else if (days < 0) {
    out.push({ status: 'wrong', subject: `${subject} validity`, detail: `expired on ${notAfter.toISOString()}`, fix: 'renew the certificate' });
  } else if (days < CERT_MIN_DAYS) {
    out.push({ status: 'wrong', subject: `${subject} validity`, detail: `expires in ${days} day(s), on ${notAfter.toISOString()}`, fix: 'renew the certificate' });
  } else {
    out.push({ status: 'ok', subject: `${subject} validity`, detail: `valid until ${notAfter.toISOString()} (${days} days)` });
  }
  if (cert.issuer === cert.subject && cert.verify(cert.publicKey)) {
    out.push({ status: 'warn', subject: `${subject} issuer`, detail: 'self-signed: clients will warn, and MTA-STS senders will not deliver in enforce mode', fix: 'use a certificate from a public CA (ACME)' });
  }
  return out;
}

/** Missing, wrong, or not checkable: the exit code is non-zero. */
export function hasProblems(results: readonly CheckResult[]): boolean {
  return results.some((r) => r.status === 'missing' || r.status === 'wrong' || r.status === 'error');
}

const LABEL: Record<CheckStatus, string> = { ok: 'OK', missing: 'MISSING', wrong: 'WRONG', warn: 'WARNING', error: 'ERROR' };

export function renderReport(results: readonly CheckResult[]): string {
  const lines: string[] = [];
  for (const r of results) {
    lines.push(`${LABEL[r.status].padEnd(8)} ${r.subject}: ${r.detail}`);
    if (r.fix && r.status !== 'ok') lines.push(`         fix: ${r.fix}`);
  }
  const problems = results.filter((r) => r.status === 'missing' || r.status === 'wrong' || r.status === 'error').length;
  lines.push(problems === 0 ? 'everything checked is in order' : `${problems} problem(s)`);
  return lines.join('\n') + '\n';
}
