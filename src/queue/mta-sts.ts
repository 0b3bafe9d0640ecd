/**
 * MTA-STS for outbound delivery (RFC 8461): discover, fetch, cache and apply a domain's policy.
 *
 * Parsing and MX matching are mailauth's (`parsePolicy`, `validateMx`); discovery goes through
 * our Resolver and the HTTPS fetch through an injectable fetcher, so tests serve policies locally.
 * Policies are cached in the queue store (they must outlive restarts: RFC 8461 §5.1, the cached
 * policy protects against an attacker who blocks the fetch).
 */
import { request } from 'node:https';
import { parsePolicy, validateMx } from 'mailauth/lib/mta-sts.js';
import { isNotFound, type Resolver } from '../dns/resolver.js';
import type { QueueStore, StoredStsPolicy } from './types.js';

/** Fetches `https://mta-sts.<domain>/.well-known/mta-sts.txt`; resolves null when absent. */
export type StsFetcher = (domain: string) => Promise<string | null>;

/** RFC 8461 §3.2: policy bodies are small; a larger answer is refused. */
export const STS_MAX_POLICY_BYTES = 64 * 1024;
const STS_FETCH_TIMEOUT_MS = 15_000;

/**
 * The real fetcher: HTTPS with certificate validation against the policy host name
 * (RFC 8461 §3.3), no redirects, bounded size and time.
 */
export function httpsStsFetcher(): StsFetcher {
  return (domain) =>
    new Promise((resolve, reject) => {
      const host = `mta-sts.${domain}`;
      const req = request(
        { host, servername: host, path: '/.well-known/mta-sts.txt', method: 'GET', timeout: STS_FETCH_TIMEOUT_MS, rejectUnauthorized: true },
        (res) => {
          // RFC 8461 §3.3: redirects MUST NOT be followed; any non-200 means no policy.
          if (res.statusCode !== 200) {
            res.resume();
            resolve(null);
            return;
          }
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > STS_MAX_POLICY_BYTES) {
              req.destroy(new Error(`Cannot read MTA-STS policy of ${domain}: over ${STS_MAX_POLICY_BYTES} bytes`));
              return;
            }
            chunks.push(c);
          });
          res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`Cannot fetch MTA-STS policy of ${domain}: timed out`)));
      req.on('error', reject);
      req.end();
    });
}

export interface StsOptions {
  resolver: Resolver;
  store: QueueStore;
  fetcher: StsFetcher;
  now: () => number;
}

export interface StsPolicyService {
  /** The policy to apply to a delivery to `domain`, or null (no policy, or mode none). */
  policyFor(domain: string): Promise<StoredStsPolicy | null>;
}

async function policyId(resolver: Resolver, domain: string): Promise<string | null> {
  let records: string[][];
  try {
    records = await resolver.resolveTxt(`_mta-sts.${domain}`);
  } catch (err) {
    if (isNotFound(err)) return null;
    throw err;
  }
  // RFC 8461 §3.1: exactly one record starting with v=STSv1, else no policy.
  const sts = records.map((r) => r.join('')).filter((r) => /^v=STSv1\s*(;|$)/.test(r));
  if (sts.length !== 1) return null;
  const id = /(?:^|;)\s*id=([A-Za-z0-9]{1,32})\s*(;|$)/.exec(sts[0]!);
  return id ? id[1]! : null;
}

export function createStsPolicyService(options: StsOptions): StsPolicyService {
  const { resolver, store, fetcher, now } = options;
  // Deliveries to one domain that start together (several messages, REQUIRETLS or not) share one
  // discovery and at most one fetch.
  const inflight = new Map<string, Promise<StoredStsPolicy | null>>();
  return {
    policyFor(domain) {
      const d = domain.toLowerCase();
      let p = inflight.get(d);
      if (!p) {
        p = discover(d).finally(() => inflight.delete(d));
        inflight.set(d, p);
      }
      return p;
    },
  };

  async function discover(d: string): Promise<StoredStsPolicy | null> {
    const cached = await store.getStsPolicy(d);
    const fresh = cached && cached.expiresAt > now() ? cached : null;
    let id: string | null;
    try {
      id = await policyId(resolver, d);
    } catch {
      // RFC 8461 §5.1: when discovery fails, a cached unexpired policy still applies.
      return fresh && fresh.mode !== 'none' ? fresh : null;
    }
    if (id === null) return fresh && fresh.mode !== 'none' ? fresh : null;
    if (fresh && fresh.id === id) return fresh.mode === 'none' ? null : fresh;
    let text: string | null;
    try {
      text = await fetcher(d);
    } catch {
      text = null;
    }
    if (text === null) return fresh && fresh.mode !== 'none' ? fresh : null;
    let parsed: { mode: 'enforce' | 'testing' | 'none'; mx?: string[]; maxAge?: number };
    try {
      parsed = parsePolicy(text);
    } catch {
      return fresh && fresh.mode !== 'none' ? fresh : null;
    }
    const t = now();
    const policy: StoredStsPolicy = {
      domain: d,
      id,
      mode: parsed.mode,
      mx: parsed.mx ?? [],
      maxAge: parsed.maxAge ?? 86400,
      fetchedAt: t,
      expiresAt: t + (parsed.maxAge ?? 86400) * 1000,
    };
    await store.putStsPolicy(policy);
    return policy.mode === 'none' ? null : policy;
  }
}

/** RFC 8461 §4.1: whether an MX host name matches the policy's mx patterns. */
export function mxAllowed(policy: StoredStsPolicy, mxHost: string): boolean {
  return validateMx(mxHost, { mode: policy.mode, mx: policy.mx }).valid;
}
