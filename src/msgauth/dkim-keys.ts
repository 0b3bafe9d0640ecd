/**
 * DKIM keys (RFC 6376, RFC 8463): where they live, which of them sign, and the DNS records that
 * publish them. Only node:crypto: the CLI and the DNS tools use this without loading the signer
 * (dkim-sign.ts), whose library takes a third of a second to load.
 *
 * Invariants:
 * - Keys live in `<data>/dkim/<domain>/<selector>.<rsa|ed25519>.key` (PKCS#8 PEM, mode 0600);
 *   the selector published in DNS is the file name before the algorithm.
 * - A domain signs with its newest key of each algorithm once that key is older than the
 *   activation delay (time to publish its DNS record), or at once when it is the domain's first;
 *   older keys stay on disk (and in DNS) until the operator removes them, so mail signed before
 *   a rotation still verifies.
 */
import { generateKeyPair, createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

export type DkimAlgorithm = 'rsa' | 'ed25519';

export interface DkimKey {
  domain: string;
  selector: string;
  algorithm: DkimAlgorithm;
  privateKeyPem: string;
  /** When the key was created (its file's mtime), epoch ms. */
  createdAt: number;
}

const KEY_FILE = /^([a-z0-9][a-z0-9-]{0,62})\.(rsa|ed25519)\.key$/;

function domainDir(dataDir: string, domain: string): string {
  const d = domain.toLowerCase();
  // The domain becomes a path component: refuse anything that is not a plain host name.
  if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/.test(d)) {
    throw new Error(`Cannot use DKIM domain: "${domain}" is not a host name`);
  }
  return join(dataDir, 'dkim', d);
}

/** Every key of a domain, newest first per algorithm. Empty when the domain has none. */
export async function loadDkimKeys(dataDir: string, domain: string): Promise<DkimKey[]> {
  const dir = domainDir(dataDir, domain);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const found: DkimKey[] = [];
  for (const name of names) {
    const m = KEY_FILE.exec(name);
    if (!m) continue;
    const path = join(dir, name);
    const [pem, st] = await Promise.all([readFile(path, 'utf8'), stat(path)]);
    found.push({ domain: domain.toLowerCase(), selector: m[1]!, algorithm: m[2] as DkimAlgorithm, privateKeyPem: pem, createdAt: st.mtimeMs });
  }
  found.sort((a, b) => b.createdAt - a.createdAt || b.selector.localeCompare(a.selector));
  return found;
}

/** How long a new key waits before it signs, when an older key of its algorithm exists: the
 * time for its DNS record to be published and to reach resolvers (a rotation must not sign with
 * a key nobody can look up yet). */
export const DKIM_ACTIVATION_DELAY_MS = 48 * 3600 * 1000;

/**
 * The keys a domain signs with at `now`: per algorithm, the newest key older than the activation
 * delay, or the oldest one when none is (so a domain's first keys sign at once).
 */
export function activeDkimKeys(keys: readonly DkimKey[], now = Date.now(), activationDelayMs = DKIM_ACTIVATION_DELAY_MS): DkimKey[] {
  const out: DkimKey[] = [];
  for (const alg of ['rsa', 'ed25519'] as const) {
    const ofAlg = keys.filter((key) => key.algorithm === alg).sort((a, b) => b.createdAt - a.createdAt);
    // None old enough: the oldest, the one whose record has been out longest.
    const k = ofAlg.find((key) => key.createdAt <= now - activationDelayMs) ?? ofAlg[ofAlg.length - 1];
    if (k) out.push(k);
  }
  return out;
}

export interface GenerateOptions {
  /** Used for the selector name; now by default. */
  now?: Date;
  /** RSA modulus length; 2048 by default (RFC 8301 §3.2: at least 1024, 2048 recommended). */
  rsaBits?: number;
}

const generateKeyPairAsync = promisify(generateKeyPair);

/**
 * Creates a new RSA and a new Ed25519 key for the domain (used by `facteur init` and
 * `facteur dkim rotate`) and returns them; the caller prints their DNS records.
 */
export async function generateDkimKeys(dataDir: string, domain: string, options: GenerateOptions = {}): Promise<DkimKey[]> {
  const dir = domainDir(dataDir, domain);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const existing = new Set(await readdir(dir));
  const day = (options.now ?? new Date()).toISOString().slice(0, 10).replaceAll('-', '');
  const keys: DkimKey[] = [];
  for (const [alg, letter] of [['rsa', 'r'], ['ed25519', 'e']] as const) {
    let selector = `f${day}${letter}`;
    for (let n = 2; existing.has(`${selector}.${alg}.key`); n++) selector = `f${day}${letter}${n}`;
    const pair =
      alg === 'rsa'
        ? await generateKeyPairAsync('rsa', { modulusLength: options.rsaBits ?? 2048 })
        : await generateKeyPairAsync('ed25519');
    const pem = pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    // 'wx': never overwrite a key that DNS may already publish.
    await writeFile(join(dir, `${selector}.${alg}.key`), pem, { mode: 0o600, flag: 'wx' });
    keys.push({ domain: domain.toLowerCase(), selector, algorithm: alg, privateKeyPem: pem, createdAt: Date.now() });
  }
  return keys;
}

/** The owner name of a key's TXT record (RFC 6376 §3.6.2.1). */
export function dkimRecordName(key: Pick<DkimKey, 'selector' | 'domain'>): string {
  return `${key.selector}._domainkey.${key.domain}`;
}

/** The TXT record value publishing a key's public half (RFC 6376 §3.6.1, RFC 8463 §4.2). */
export function dkimDnsRecord(key: Pick<DkimKey, 'algorithm' | 'privateKeyPem'>): string {
  const pub = createPublicKey(createPrivateKey(key.privateKeyPem));
  if (key.algorithm === 'ed25519') {
    // RFC 8463 §4.2: p= is the raw 32-byte public key, not the SubjectPublicKeyInfo.
    const spki = pub.export({ type: 'spki', format: 'der' });
    return `v=DKIM1; k=ed25519; p=${spki.subarray(spki.length - 32).toString('base64')}`;
  }
  return `v=DKIM1; k=rsa; p=${pub.export({ type: 'spki', format: 'der' }).toString('base64')}`;
}
