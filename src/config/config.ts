/**
 * The configuration file (`facteur.toml` in the data directory): parsed, checked against the
 * schema below, and merged over the defaults. Every mistake is reported with the file, the key
 * and the reason, and a misspelt key names the closest known one: a typo never silently falls
 * back to a default.
 */
import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { parse as parseToml } from 'smol-toml';
import { parseTrustedNetworks } from '../net/proxy-listener.js';
import { DEFAULT_COMMAND_TIMEOUT_MS, DEFAULT_MIN_UPLOAD_BYTES_PER_SECOND } from '../net/command-deadline.js';
import { DEFAULT_MAX_CONNECTIONS as IMAP_MAX_CONNECTIONS_DEFAULT } from '../imap/server/options.js';
import { POP3_MAX_CONNECTIONS_DEFAULT } from '../pop3/server/options.js';
import { CONNECTIONS_MAX_DEFAULT, MESSAGE_TIMEOUT_MS_DEFAULT, SUBMISSION_REMOTE_RECIPIENTS_PER_DAY_DEFAULT } from '../smtp/protocol/limits.js';

/** One SMTP worker process when a second core can run it (config smtp.workers). */
export const SMTP_WORKERS_DEFAULT = availableParallelism() >= 2 ? 1 : 0;

export const LISTENER_NAMES = ['smtp', 'submission', 'submissions', 'lmtp', 'imap', 'imaps', 'pop3', 'pop3s', 'http', 'https'] as const;
export type ListenerName = (typeof LISTENER_NAMES)[number];

/** Production ports (the documented defaults). */
export const PRODUCTION_PORTS: Record<ListenerName, number> = {
  smtp: 25, submission: 587, submissions: 465, lmtp: 24, imap: 143, imaps: 993, pop3: 110, pop3s: 995, http: 80, https: 443,
};
/** Unprivileged ports of a development data directory (`facteur init --dev`, `npm start`). */
export const DEV_PORTS: Record<ListenerName, number> = {
  smtp: 2525, submission: 2587, submissions: 2465, lmtp: 2424, imap: 2143, imaps: 2993, pop3: 2110, pop3s: 2995, http: 8080, https: 8443,
};

export interface Config {
  hostname: string;
  /** "sqlite" (embedded, in the data directory) or a postgres:// URL. FACTEUR_STORE overrides. */
  store: string;
  /** NAME -> "host:port"; a listener absent here does not start. */
  listen: Partial<Record<ListenerName, string>>;
  /** Listeners behind a TCP load balancer that sends the PROXY protocol header (v1 or v2): NAME
   * -> the balancers' addresses or CIDR blocks, the only sources such a listener accepts. In the
   * file: `[listen] imaps = { address = "0.0.0.0:993", proxy_protocol = true,
   * proxy_trusted = ["10.0.0.0/8"] }`. */
  proxyProtocol: Partial<Record<ListenerName, { trusted: string[] }>>;
  dns: { servers: string[] };
  /** The server's public addresses (IPv4 and IPv6): `facteur dns` and `facteur check` use them
   * for SPF, A/AAAA, PTR and DNSBL records. */
  publicIps: string[];
  /** RFC 8461 §3.2 policy served at https://mta-sts.DOMAIN/.well-known/mta-sts.txt. */
  mtaSts: { mode: 'testing' | 'enforce' | 'none'; maxAge: number };
  outbound: {
    /** Port of remote MX hosts: 25 on the internet; another value only for tests and labs. */
    port: number;
    /** Enforce other domains' MTA-STS policies (RFC 8461). */
    mtaSts: boolean;
    /** "host:port" of a provider's submission server that takes every message, or "" for direct delivery. */
    smarthost: string;
    smarthostTls: 'implicit' | 'starttls';
    smarthostUser: string;
    smarthostPassword: string;
  };
  log: { level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent' };
  security: {
    /** Allow AUTH/LOGIN/USER without TLS from other hosts (DESIGN.md invariant 5). */
    allowPlaintextAuth: boolean;
    maxConnectionsPerIp: number;
    maxAuthFailuresPerIp: number;
    maxAuthFailuresPerAccount: number;
    /** A password that verified is accepted again without hashing for this long (0: never). */
    passwordCacheSeconds: number;
    /** After login (IMAP, POP3): time for a started command to arrive complete; SMTP: the grace
     * of a message (DATA, BDAT) before its floor rate applies. */
    commandTimeoutMs: number;
    /** After login (IMAP): floor rate for literal bytes, which extend that time; SMTP: floor
     * average rate of a message's bytes. */
    minUploadBytesPerSecond: number;
  };
  smtp: {
    maxMessageSize: number;
    maxRecipients: number;
    /** Port 25 only, like postscreen's greet delay; early talkers are refused. */
    greetingDelayMs: number;
    /** Cap on one message's DATA or BDAT phase, whatever its rate. */
    messageTimeoutMs: number;
    /** What to do with mail failing DMARC at a p=reject domain. */
    dmarcReject: 'reject' | 'junk';
    /** Processes serving the MX and LMTP sessions beside the one that owns the store
     * (smtp/worker/pool.ts); 0 serves them in the main process. Default SMTP_WORKERS_DEFAULT. */
    workers: number;
    /** Sessions open at once per SMTP listener (port 25, submission, LMTP; per worker process
     * for those in workers); past it 421 and close. */
    maxConnections: number;
    /** Port 25: DNS blocklist zones (RFC 5782) whose listed clients are refused (554 5.7.1 at
     * MAIL); none by default (smtp/server/dnsbl.ts). */
    dnsbl: string[];
    /** Port 25: greylisting (RFC 6647), how long a new (client network, sender, recipient) waits
     * before its retry is accepted; 0 = off (smtp/server/greylist.ts). */
    greylistSeconds: number;
  };
  submission: {
    /** Send-as grants: account address (lowercased) -> addresses ("team@example.com") or whole
     * domains ("@example.com") it may send as besides its own addresses and aliases. */
    sendAs: Record<string, string[]>;
    /** Remote recipients an account may send to in 24 hours (0: no limit): what a stolen
     * password can do to the server's reputation before someone notices. */
    maxRemoteRecipientsPerDay: number;
  };
  /** maxConnections: sessions open at once per listener (IDLE ones included); past it the
   * connection gets BYE (IMAP) or -ERR (POP3) and is closed. */
  imap: { appendLimit: number; maxConnectionsPerAccount: number; maxConnections: number };
  pop3: { retrSetsSeen: boolean; loginDelaySeconds: number; expireDays: number | null; maxConnections: number };
}

export function defaultConfig(hostname: string, ports: Record<ListenerName, number> = PRODUCTION_PORTS): Config {
  const listen: Partial<Record<ListenerName, string>> = {};
  for (const name of LISTENER_NAMES) if (name !== 'lmtp') listen[name] = `0.0.0.0:${ports[name]}`;
  return {
    hostname,
    store: 'sqlite',
    listen,
    proxyProtocol: {},
    dns: { servers: [] },
    publicIps: [],
    // RFC 8461 §3.2: "testing" until the operator has seen the TLS reports; one week.
    mtaSts: { mode: 'testing', maxAge: 604800 },
    outbound: { port: 25, mtaSts: true, smarthost: '', smarthostTls: 'starttls', smarthostUser: '', smarthostPassword: '' },
    log: { level: 'info' },
    security: { allowPlaintextAuth: false, maxConnectionsPerIp: 50, maxAuthFailuresPerIp: 20, maxAuthFailuresPerAccount: 10, passwordCacheSeconds: 900,
      commandTimeoutMs: DEFAULT_COMMAND_TIMEOUT_MS, minUploadBytesPerSecond: DEFAULT_MIN_UPLOAD_BYTES_PER_SECOND },
    smtp: { maxMessageSize: 50 * 1024 * 1024, maxRecipients: 100, greetingDelayMs: 0, messageTimeoutMs: MESSAGE_TIMEOUT_MS_DEFAULT, dmarcReject: 'junk',
      workers: SMTP_WORKERS_DEFAULT, maxConnections: CONNECTIONS_MAX_DEFAULT, dnsbl: [], greylistSeconds: 0 },
    submission: { sendAs: {}, maxRemoteRecipientsPerDay: SUBMISSION_REMOTE_RECIPIENTS_PER_DAY_DEFAULT },
    imap: { appendLimit: 50 * 1024 * 1024, maxConnectionsPerAccount: 50, maxConnections: IMAP_MAX_CONNECTIONS_DEFAULT },
    pop3: { retrSetsSeen: true, loginDelaySeconds: 0, expireDays: null, maxConnections: POP3_MAX_CONNECTIONS_DEFAULT },
  };
}

/** A greylisting delay: whole seconds, 0 (off) to an hour (senders retry within their first
 * hour; a longer delay only loses mail). */
function greylistSeconds(v: number): number {
  if (!Number.isInteger(v) || v < 0 || v > 3600) throw new Error(`smtp.greylist_seconds: ${v} is not a whole number of seconds from 0 to 3600`);
  return v;
}

/** DNS blocklist zones: host names (letters, digits, hyphens, dots), lowercased. */
function dnsblZones(v: string[]): string[] {
  return v.map((z) => {
    const zone = z.trim().toLowerCase().replace(/\.$/, '');
    if (!/^(?=.{1,200}$)[a-z0-9-]+(\.[a-z0-9-]+)+$/.test(zone)) throw new Error(`smtp.dnsbl: "${z}" is not a DNS zone name`);
    return zone;
  });
}

function wholeNumber(key: string, v: number): number {
  if (!Number.isInteger(v) || v < 0) throw new Error(`${key}: expected a whole number ≥ 0, got ${v}`);
  return v;
}

function atLeastOne(key: string, v: number): number {
  if (v < 1) throw new Error(`${key}: expected a whole number ≥ 1, got ${v}`);
  return v;
}

export class ConfigError extends Error {
  constructor(file: string, key: string | null, reason: string) {
    super(key ? `${file}: ${key}: ${reason}` : `${file}: ${reason}`);
    this.name = 'ConfigError';
  }
}

type Kind = 'string' | 'number' | 'boolean' | 'string[]' | 'number|null' | { enum: readonly string[] } | 'listen' | 'send-as';

/** The schema: TOML key (snake_case) -> kind and where it goes in Config. */
const SCHEMA: Record<string, Record<string, { kind: Kind; set: (c: Config, v: never) => void }> | { kind: Kind; set: (c: Config, v: never) => void }> = {
  hostname: { kind: 'string', set: (c, v: string) => { c.hostname = v; } },
  store: { kind: 'string', set: (c, v: string) => { c.store = v; } },
  listen: {
    kind: 'listen',
    set: (c, v: { listen: Config['listen']; proxyProtocol: Config['proxyProtocol'] }) => {
      c.listen = v.listen;
      c.proxyProtocol = v.proxyProtocol;
    },
  },
  dns: { servers: { kind: 'string[]', set: (c, v: string[]) => { c.dns.servers = v; } } },
  public_ips: { kind: 'string[]', set: (c, v: string[]) => { c.publicIps = v; } },
  outbound: {
    port: { kind: 'number', set: (c, v: number) => { c.outbound.port = v; } },
    mta_sts: { kind: 'boolean', set: (c, v: boolean) => { c.outbound.mtaSts = v; } },
    smarthost: { kind: 'string', set: (c, v: string) => { c.outbound.smarthost = v; } },
    smarthost_tls: { kind: { enum: ['implicit', 'starttls'] }, set: (c, v: 'implicit' | 'starttls') => { c.outbound.smarthostTls = v; } },
    smarthost_user: { kind: 'string', set: (c, v: string) => { c.outbound.smarthostUser = v; } },
    smarthost_password: { kind: 'string', set: (c, v: string) => { c.outbound.smarthostPassword = v; } },
  },
  mta_sts: {
    mode: { kind: { enum: ['testing', 'enforce', 'none'] }, set: (c, v: Config['mtaSts']['mode']) => { c.mtaSts.mode = v; } },
    max_age: { kind: 'number', set: (c, v: number) => { c.mtaSts.maxAge = v; } },
  },
  log: { level: { kind: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] }, set: (c, v: Config['log']['level']) => { c.log.level = v; } } },
  security: {
    allow_plaintext_auth: { kind: 'boolean', set: (c, v: boolean) => { c.security.allowPlaintextAuth = v; } },
    max_connections_per_ip: { kind: 'number', set: (c, v: number) => { c.security.maxConnectionsPerIp = v; } },
    max_auth_failures_per_ip: { kind: 'number', set: (c, v: number) => { c.security.maxAuthFailuresPerIp = v; } },
    max_auth_failures_per_account: { kind: 'number', set: (c, v: number) => { c.security.maxAuthFailuresPerAccount = v; } },
    password_cache_seconds: { kind: 'number', set: (c, v: number) => { c.security.passwordCacheSeconds = v; } },
    command_timeout_ms: { kind: 'number', set: (c, v: number) => { c.security.commandTimeoutMs = atLeastOne('security.command_timeout_ms', v); } },
    min_upload_bytes_per_second: { kind: 'number', set: (c, v: number) => { c.security.minUploadBytesPerSecond = atLeastOne('security.min_upload_bytes_per_second', v); } },
  },
  smtp: {
    max_message_size: { kind: 'number', set: (c, v: number) => { c.smtp.maxMessageSize = v; } },
    max_recipients: { kind: 'number', set: (c, v: number) => { c.smtp.maxRecipients = v; } },
    greeting_delay_ms: { kind: 'number', set: (c, v: number) => { c.smtp.greetingDelayMs = v; } },
    message_timeout_ms: { kind: 'number', set: (c, v: number) => { c.smtp.messageTimeoutMs = atLeastOne('smtp.message_timeout_ms', v); } },
    dmarc_reject: { kind: { enum: ['reject', 'junk'] }, set: (c, v: 'reject' | 'junk') => { c.smtp.dmarcReject = v; } },
    workers: { kind: 'number', set: (c, v: number) => { c.smtp.workers = v; } },
    max_connections: { kind: 'number', set: (c, v: number) => { c.smtp.maxConnections = atLeastOne('smtp.max_connections', v); } },
    dnsbl: { kind: 'string[]', set: (c, v: string[]) => { c.smtp.dnsbl = dnsblZones(v); } },
    greylist_seconds: { kind: 'number', set: (c, v: number) => { c.smtp.greylistSeconds = greylistSeconds(v); } },
  },
  submission: {
    send_as: { kind: 'send-as', set: (c, v: Record<string, string[]>) => { c.submission.sendAs = v; } },
    max_remote_recipients_per_day: { kind: 'number', set: (c, v: number) => { c.submission.maxRemoteRecipientsPerDay = wholeNumber('submission.max_remote_recipients_per_day', v); } },
  },
  imap: {
    append_limit: { kind: 'number', set: (c, v: number) => { c.imap.appendLimit = v; } },
    max_connections_per_account: { kind: 'number', set: (c, v: number) => { c.imap.maxConnectionsPerAccount = v; } },
    max_connections: { kind: 'number', set: (c, v: number) => { c.imap.maxConnections = atLeastOne('imap.max_connections', v); } },
  },
  pop3: {
    retr_sets_seen: { kind: 'boolean', set: (c, v: boolean) => { c.pop3.retrSetsSeen = v; } },
    login_delay_seconds: { kind: 'number', set: (c, v: number) => { c.pop3.loginDelaySeconds = v; } },
    expire_days: { kind: 'number|null', set: (c, v: number | null) => { c.pop3.expireDays = v; } },
    max_connections: { kind: 'number', set: (c, v: number) => { c.pop3.maxConnections = atLeastOne('pop3.max_connections', v); } },
  },
};

function isLeaf(x: unknown): x is { kind: Kind; set: (c: Config, v: never) => void } {
  return typeof x === 'object' && x !== null && 'kind' in x && 'set' in x;
}

/** Levenshtein distance, for "did you mean" on misspelt keys. */
function distance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!;
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length]!;
}

function unknownKey(file: string, key: string, known: string[]): ConfigError {
  const name = key.slice(key.lastIndexOf('.') + 1);
  const best = known.map((k) => [k, distance(name, k)] as const).sort((x, y) => x[1] - y[1])[0];
  const hint = best && best[1] <= 3 ? ` (did you mean "${best[0]}"?)` : '';
  return new ConfigError(file, key, `unknown key${hint}`);
}

function checkValue(file: string, key: string, kind: Kind, v: unknown): unknown {
  const fail = (what: string) => new ConfigError(file, key, `expected ${what}, got ${JSON.stringify(v)}`);
  if (kind === 'string') { if (typeof v !== 'string' || v === '') throw fail('a non-empty string'); return v; }
  if (kind === 'boolean') { if (typeof v !== 'boolean') throw fail('true or false'); return v; }
  if (kind === 'number' || kind === 'number|null') {
    if (kind === 'number|null' && (v === 'none' || v === 0)) return null;
    const n = typeof v === 'bigint' ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isFinite(n) || n < 0 || !Number.isInteger(n)) throw fail('a whole number ≥ 0');
    return n;
  }
  if (kind === 'string[]') {
    if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) throw fail('a list of strings');
    return v;
  }
  if (kind === 'listen') {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw fail('a table of NAME = "host:port"');
    const out: Partial<Record<ListenerName, string>> = {};
    const proxyProtocol: Config['proxyProtocol'] = {};
    for (const [name, value] of Object.entries(v)) {
      if (!(LISTENER_NAMES as readonly string[]).includes(name)) throw unknownKey(file, `${key}.${name}`, [...LISTENER_NAMES]);
      const where = `${key}.${name}`;
      let addr: unknown = value;
      if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
        const proxy = listenerTable(file, where, value as Record<string, unknown>);
        addr = proxy.address;
        if (proxy.trusted !== null) proxyProtocol[name as ListenerName] = { trusted: proxy.trusted };
      }
      if (addr === false || addr === '') continue; // a listener turned off
      if (typeof addr !== 'string') throw new ConfigError(file, where, 'expected "host:port", false or { address = "host:port", ... }');
      parseHostPort(addr, `${file}: ${where}`);
      out[name as ListenerName] = addr;
    }
    return { listen: out, proxyProtocol };
  }
  if (kind === 'send-as') {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw fail('a table of "ACCOUNT" = ["ADDRESS" or "@DOMAIN", ...]');
    const out: Record<string, string[]> = {};
    for (const [account, grants] of Object.entries(v)) {
      const where = `${key}.${JSON.stringify(account)}`;
      if (!/^[^@\s]+@[^@\s]+$/.test(account)) throw new ConfigError(file, where, 'expected an account address as the key');
      if (!Array.isArray(grants) || !grants.every((g) => typeof g === 'string' && /^[^@\s]*@[^@\s]+$/.test(g))) {
        throw new ConfigError(file, where, `expected a list of addresses or "@domain", got ${JSON.stringify(grants)}`);
      }
      out[account.toLowerCase()] = (grants as string[]).map((g) => g.toLowerCase());
    }
    return out;
  }
  if (!kind.enum.includes(v as string)) throw fail(`one of ${kind.enum.join(', ')}`);
  return v;
}

/** The table form of a listener: { address, proxy_protocol, proxy_trusted }. */
function listenerTable(file: string, where: string, t: Record<string, unknown>): { address: unknown; trusted: string[] | null } {
  const known = ['address', 'proxy_protocol', 'proxy_trusted'];
  for (const k of Object.keys(t)) if (!known.includes(k)) throw unknownKey(file, `${where}.${k}`, known);
  if (!('address' in t)) throw new ConfigError(file, where, 'missing address = "host:port"');
  const on = t.proxy_protocol ?? false;
  if (typeof on !== 'boolean') throw new ConfigError(file, `${where}.proxy_protocol`, `expected true or false, got ${JSON.stringify(on)}`);
  const trusted = t.proxy_trusted;
  if (!on) {
    if (trusted !== undefined) throw new ConfigError(file, `${where}.proxy_trusted`, 'only meaningful with proxy_protocol = true');
    return { address: t.address, trusted: null };
  }
  // No default: a listener that trusted every source would let any client forge its address.
  if (!Array.isArray(trusted) || trusted.length === 0 || !trusted.every((x) => typeof x === 'string')) {
    throw new ConfigError(file, `${where}.proxy_trusted`, 'expected a non-empty list of the balancers\' addresses or CIDR blocks');
  }
  try {
    parseTrustedNetworks(trusted as string[]);
  } catch (err) {
    throw new ConfigError(file, `${where}.proxy_trusted`, (err as Error).message);
  }
  return { address: t.address, trusted: trusted as string[] };
}

/** Parses "host:port", "[v6]:port" or ":port" (all addresses). */
export function parseHostPort(s: string, where: string): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new Error(`${where}: cannot parse "${s}" as host:port`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

/** Checks a parsed TOML document and applies it over base. */
export function applyConfig(base: Config, doc: Record<string, unknown>, file: string): Config {
  const config = structuredClone(base);
  for (const [key, value] of Object.entries(doc)) {
    const entry = SCHEMA[key];
    if (!entry) throw unknownKey(file, key, Object.keys(SCHEMA));
    if (isLeaf(entry)) {
      entry.set(config, checkValue(file, key, entry.kind, value) as never);
      continue;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ConfigError(file, key, 'expected a table');
    for (const [sub, v] of Object.entries(value)) {
      const leaf = entry[sub];
      if (!leaf) throw unknownKey(file, `${key}.${sub}`, Object.keys(entry));
      leaf.set(config, checkValue(file, `${key}.${sub}`, leaf.kind, v) as never);
    }
  }
  return config;
}

export async function loadConfig(file: string): Promise<Config> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, null, `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError(file, null, `not valid TOML: ${(err as Error).message.split('\n')[0]}`);
  }
  const hostname = typeof doc.hostname === 'string' ? doc.hostname : '';
  if (!hostname) throw new ConfigError(file, 'hostname', 'missing (the server\'s fully qualified host name)');
  const config = applyConfig(defaultConfig(hostname), doc, file);
  if (process.env.FACTEUR_STORE) config.store = process.env.FACTEUR_STORE;
  return config;
}

/** The documented config file written by `facteur init`. */
export function renderConfigFile(config: Config): string {
  const q = (s: string) => JSON.stringify(s);
  const lines = [
    '# Facteur configuration. Every key is optional except hostname; the values shown are the',
    '# defaults unless `facteur init` chose them. A misspelt key is an error at start.',
    '',
    '# Fully qualified name of this server: SMTP greeting and EHLO, Received headers,',
    '# Authentication-Results authserv-id, the default TLS certificate.',
    `hostname = ${q(config.hostname)}`,
    '',
    '# Where mail is stored: "sqlite" (embedded, in this directory) or a postgres:// URL.',
    '# The FACTEUR_STORE environment variable overrides it.',
    `store = ${q(config.store)}`,
    '',
    '# This server\'s public IPv4 and IPv6 addresses, for `facteur dns` (SPF, A/AAAA, PTR) and',
    '# `facteur check` (reverse DNS, blocklists). Empty: give them with --ip.',
    `public_ips = [${config.publicIps.map(q).join(', ')}]`,
    '',
    '# Listeners: NAME = "host:port" (or false to turn one off). smtp (MX, port 25), submission',
    '# (587, STARTTLS), submissions (465, implicit TLS), imap (143, STARTTLS), imaps (993),',
    '# pop3 (110, STLS), pop3s (995), http (80) and https (443, same certificates): autoconfig,',
    '# autodiscover, MTA-STS policy, health and metrics; lmtp (off by default).',
    '# Behind a TCP load balancer sending the PROXY protocol (docs/scaling.md):',
    '# imaps = { address = "0.0.0.0:993", proxy_protocol = true, proxy_trusted = ["10.0.0.0/8"] }',
    '[listen]',
    ...LISTENER_NAMES.filter((n) => config.listen[n]).map((n) => {
      const proxy = config.proxyProtocol[n];
      return proxy
        ? `${n} = { address = ${q(config.listen[n]!)}, proxy_protocol = true, proxy_trusted = [${proxy.trusted.map(q).join(', ')}] }`
        : `${n} = ${q(config.listen[n]!)}`;
    }),
    '',
    '[dns]',
    '# Resolvers used for every lookup (MX, SPF, DKIM, DMARC, MTA-STS), as "host:port"; empty means',
    '# the system resolver. Sites with their own validating resolver name it here.',
    `servers = [${config.dns.servers.map(q).join(', ')}]`,
    '',
    '[outbound]',
    '# Mail to other domains: MX lookup, STARTTLS whenever offered, MTA-STS enforced, retries for',
    '# 5 days with DSNs to the sender. port is 25 on the internet (other values for tests and labs).',
    `port = ${config.outbound.port}`,
    `mta_sts = ${config.outbound.mtaSts}`,
    '# Relay everything through a provider instead (residential IPs): smarthost = "smtp.example.net:587",',
    '# smarthost_tls = "starttls" or "implicit", smarthost_user = "...", smarthost_password = "...".',
    '',
    '[mta_sts]',
    '# RFC 8461 policy served over HTTPS at mta-sts.DOMAIN: "testing" (report only), "enforce" or',
    '# "none". Raise to "enforce" once the TLS reports (TLS-RPT) show no failures.',
    `mode = ${q(config.mtaSts.mode)}`,
    `max_age = ${config.mtaSts.maxAge}  # seconds senders cache the policy`,
    '',
    '[log]',
    '# JSON lines on standard output: fatal, error, warn, info, debug, trace or silent.',
    `level = ${q(config.log.level)}`,
    '',
    '[security]',
    '# Allow passwords over unencrypted connections from other hosts (never do this on the internet).',
    `allow_plaintext_auth = ${config.security.allowPlaintextAuth}`,
    `max_connections_per_ip = ${config.security.maxConnectionsPerIp}`,
    `max_auth_failures_per_ip = ${config.security.maxAuthFailuresPerIp}`,
    `max_auth_failures_per_account = ${config.security.maxAuthFailuresPerAccount}`,
    '# A password that verified is accepted again without re-hashing it for this long (0: hash',
    '# every login). Wrong passwords are always hashed and counted.',
    `password_cache_seconds = ${config.security.passwordCacheSeconds}`,
    '# After login (IMAP, POP3), a command must arrive complete this long after its first byte;',
    '# a client trickling bytes is dropped (IMAP * BYE, POP3 -ERR). IMAP literals get more time:',
    '# one second per min_upload_bytes_per_second bytes announced. An SMTP message (DATA or BDAT)',
    '# gets the same: this long plus one second per min_upload_bytes_per_second bytes received',
    '# (421 4.4.2 when slower), within [smtp] message_timeout_ms.',
    `command_timeout_ms = ${config.security.commandTimeoutMs}`,
    `min_upload_bytes_per_second = ${config.security.minUploadBytesPerSecond}`,
    '',
    '[smtp]',
    `max_message_size = ${config.smtp.maxMessageSize}  # bytes, advertised as SIZE`,
    `max_recipients = ${config.smtp.maxRecipients}`,
    '# Port 25 only: hold the greeting this long and refuse clients that talk first (0 = off).',
    `greeting_delay_ms = ${config.smtp.greetingDelayMs}`,
    '# Cap on receiving one message (DATA, or BDAT from first chunk to LAST) whatever its rate;',
    '# the [security] floor rate applies within it.',
    `message_timeout_ms = ${config.smtp.messageTimeoutMs}`,
    '# Mail failing DMARC from a domain with p=reject: "reject" (550 5.7.1) or "junk" (deliver to Junk).',
    `dmarc_reject = ${q(config.smtp.dmarcReject)}`,
    '# Processes serving port 25 and LMTP sessions beside the one that owns the store (0: none).',
    `# Default: ${SMTP_WORKERS_DEFAULT} on this machine (1 with two or more CPU cores, else 0).`,
    config.smtp.workers === SMTP_WORKERS_DEFAULT ? `# workers = ${config.smtp.workers}` : `workers = ${config.smtp.workers}`,
    '# Sessions open at once per listener (per worker process for port 25 and LMTP); then 421.',
    `max_connections = ${config.smtp.maxConnections}`,
    '# Port 25: DNS blocklists (RFC 5782); a listed client gets 554 5.7.1 at MAIL. Off when empty.',
    '# Ask them through your own resolver ([dns] servers): Spamhaus refuses public resolvers.',
    '# For example: dnsbl = ["zen.spamhaus.org"]',
    ...(config.smtp.dnsbl.length > 0 ? [`dnsbl = [${config.smtp.dnsbl.map(q).join(', ')}]`] : []),
    '# Port 25: greylisting (RFC 6647): a new (client network, sender, recipient) gets 451 4.7.1',
    '# and is accepted when it retries after this many seconds (300 is usual); 0 = off.',
    `greylist_seconds = ${config.smtp.greylistSeconds}`,
    '',
    '[submission]',
    '# Send-as grants: what an account may use as MAIL FROM, From and Sender besides its own',
    '# addresses and aliases: addresses, or "@domain" for a whole domain. For example',
    '# send_as = { "boss@example.com" = ["@example.com", "news@example.org"] }',
    ...(Object.keys(config.submission.sendAs).length > 0
      ? [`send_as = { ${Object.entries(config.submission.sendAs).map(([a, g]) => `${q(a)} = [${g.map(q).join(', ')}]`).join(', ')} }`]
      : []),
    '# Remote recipients one account may send to in 24 hours (0: no limit); past it RCPT gets',
    '# 450 4.7.1 and the log says so: a stolen password cannot spam without bound.',
    `max_remote_recipients_per_day = ${config.submission.maxRemoteRecipientsPerDay}`,
    '',
    '[imap]',
    `append_limit = ${config.imap.appendLimit}  # bytes (RFC 7889 APPENDLIMIT)`,
    `max_connections_per_account = ${config.imap.maxConnectionsPerAccount}`,
    '# Sessions open at once on each IMAP listener, IDLE ones included (an idle session costs',
    '# tens of KiB; raise the process file-descriptor limit with it); then * BYE.',
    `max_connections = ${config.imap.maxConnections}`,
    '',
    '[pop3]',
    '# RETR marks the message \\Seen (visible at once over IMAP); TOP never does.',
    `retr_sets_seen = ${config.pop3.retrSetsSeen}`,
    `login_delay_seconds = ${config.pop3.loginDelaySeconds}  # RFC 2449 LOGIN-DELAY, advertised in CAPA`,
    `expire_days = ${config.pop3.expireDays ?? 0}  # RFC 2449 EXPIRE advertised in CAPA; 0 = NEVER`,
    `max_connections = ${config.pop3.maxConnections}  # sessions open at once per listener; then -ERR`,
    '',
  ];
  return lines.join('\n');
}
