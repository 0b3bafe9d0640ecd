/**
 * DKIM signing of outgoing mail (RFC 6376), with an RSA and an Ed25519 key together
 * (RFC 8463 §3: a signer may add one signature per algorithm, verifiers use what they know).
 *
 * Invariants:
 * - Keys live in `<data>/dkim/<domain>/<selector>.<rsa|ed25519>.key` (PKCS#8 PEM, mode 0600);
 *   the selector published in DNS is the file name before the algorithm.
 * - A domain signs with its newest key of each algorithm once that key is older than the
 *   activation delay (time to publish its DNS record), or at once when it is the domain's first;
 *   older keys stay on disk (and in DNS) until the operator removes them, so mail signed before
 *   a rotation still verifies.
 * - The signed header set follows RFC 6376 §5.4.1, and From is oversigned (listed once more than
 *   it appears, §5.4.2 / §8.15) so that no From can be added above the signed one.
 *
 * The signature is computed by mailauth's signer engine (the one `dkimSign` runs). It is driven
 * directly because mailauth 4 has no oversigning option: the hook below only adds the extra
 * "From" to the h= list, mailauth does the canonicalisation, hashing and signing.
 */
import { generateKeyPair, createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DkimSigner, type MailauthParsedHeader } from 'mailauth/lib/dkim/dkim-signer.js';
import { sealMessage, type ARCSealOptions } from 'mailauth';

export type DkimAlgorithm = 'rsa' | 'ed25519';

export interface DkimKey {
  domain: string;
  selector: string;
  algorithm: DkimAlgorithm;
  privateKeyPem: string;
  /** When the key was created (its file's mtime), epoch ms. */
  createdAt: number;
}

/**
 * RFC 6376 §5.4.1: From is required; the others are the fields whose change would alter what
 * the reader sees or how replies go. Received, Return-Path and trace fields are left out
 * (they change in transit).
 */
export const DKIM_SIGNED_HEADERS: readonly string[] = [
  'From', 'Sender', 'Reply-To', 'Subject', 'Date', 'Message-ID', 'To', 'Cc',
  'MIME-Version', 'Content-Type', 'Content-Transfer-Encoding', 'Content-ID', 'Content-Description',
  'Resent-Date', 'Resent-From', 'Resent-Sender', 'Resent-To', 'Resent-Cc', 'Resent-Message-ID',
  'In-Reply-To', 'References',
  'List-Id', 'List-Help', 'List-Unsubscribe', 'List-Subscribe', 'List-Post', 'List-Owner', 'List-Archive',
  'List-Unsubscribe-Post',
];

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

/** mailauth's signer, with From oversigned. */
class OversigningSigner extends DkimSigner {
  hasFrom = false;

  override async messageHeaders(headers: { parsed: MailauthParsedHeader[]; original: Buffer }): Promise<void> {
    await super.messageHeaders(headers);
    // The signer lists the headers bottom-up in h=, so the topmost From comes after every other
    // From; naming it twice there adds one "from" that matches no field: RFC 6376 §5.4.2 signs
    // it as a null string, so a From added later breaks the signature.
    const top = headers.parsed.find((h) => h.key === 'from');
    this.hasFrom = top !== undefined;
    if (top?.casedKey) top.casedKey = `${top.casedKey}:${top.casedKey}`;
  }
}

export interface SignOptions {
  /** Signature time (t=); now by default. */
  now?: Date;
}

/**
 * Returns the DKIM-Signature header fields (CRLF-terminated) for the message, one per key.
 * Empty when there is no key or the message has no From header (RFC 6376 §5.4: From must be
 * signed, so such a message cannot be).
 */
export async function dkimSignatures(message: Buffer, keys: readonly DkimKey[], options: SignOptions = {}): Promise<string> {
  if (keys.length === 0) return '';
  const signer = new OversigningSigner({
    canonicalization: 'relaxed/relaxed',
    headerList: DKIM_SIGNED_HEADERS.join(':'),
    signTime: options.now ?? new Date(),
    signatureData: keys.map((k) => ({
      signingDomain: k.domain,
      selector: k.selector,
      privateKey: k.privateKeyPem,
      algorithm: k.algorithm === 'rsa' ? 'rsa-sha256' : 'ed25519-sha256',
      canonicalization: 'relaxed/relaxed',
    })),
  });
  await new Promise<void>((resolve, reject) => {
    signer.once('error', reject);
    signer.once('finish', () => resolve());
    signer.end(message);
  });
  const first = signer.errors[0];
  if (first) throw new Error(`Cannot sign with DKIM key ${first.selector ?? '?'}: ${first.err?.message ?? 'unknown error'}`);
  if (!signer.hasFrom || signer.signatureHeaders.length === 0) return '';
  return signer.signatureHeaders.join('\r\n') + '\r\n';
}

/** The message with its signatures prepended (a signature goes above the fields it covers). */
export async function signMessage(message: Buffer, keys: readonly DkimKey[], options: SignOptions = {}): Promise<Buffer> {
  const sigs = await dkimSignatures(message, keys, options);
  return sigs ? Buffer.concat([Buffer.from(sigs, 'latin1'), message]) : message;
}

export interface DkimSigningService {
  /** Signs with the domain's active keys; the message unchanged when the domain has none. */
  sign(message: Buffer, domain: string, options?: SignOptions): Promise<Buffer>;
  /** Adds this hop's ARC set (RFC 8617 §5.1) with the domain's active RSA key; the message
   * unchanged when the domain has none. */
  seal(message: Buffer, domain: string, arc: ArcSealInput, options?: SignOptions): Promise<Buffer>;
}

/** What the hop that seals found (RFC 8617 §4.1.3 cv, §4.1.1 the Authentication-Results it
 * recorded: the value after "Authentication-Results:"). A failed chain is not sealed. */
export interface ArcSealInput {
  cv: 'none' | 'pass';
  authResults: string;
}

/** The ARC set for the message (ARC-Seal, ARC-Message-Signature, ARC-Authentication-Results,
 * CRLF-terminated, to go above it), signed with an RSA key (RFC 8617 §7.1: ARC is rsa-sha256). */
export async function arcSeal(message: Buffer, key: DkimKey, arc: ArcSealInput, options: SignOptions = {}): Promise<Buffer> {
  const seal = {
    signingDomain: key.domain,
    selector: key.selector,
    privateKey: key.privateKeyPem,
    algorithm: 'rsa-sha256',
    signTime: options.now ?? new Date(),
    // Read by mailauth's sealer though absent from its typings.
    cv: arc.cv,
    authResults: arc.authResults,
  };
  return sealMessage(message, seal as ARCSealOptions);
}

/**
 * Signing service reading keys from the data directory. Keys are read at each signature
 * (a few small files), so a rotation takes effect without a restart, once its activation delay
 * has passed.
 */
export function createDkimSigning(dataDir: string, options: { activationDelayMs?: number; now?: () => number } = {}): DkimSigningService {
  return {
    async sign(message, domain, signOptions) {
      const keys = activeDkimKeys(await loadDkimKeys(dataDir, domain), options.now?.() ?? Date.now(), options.activationDelayMs);
      return signMessage(message, keys, signOptions);
    },
    async seal(message, domain, arc, signOptions) {
      const keys = activeDkimKeys(await loadDkimKeys(dataDir, domain), options.now?.() ?? Date.now(), options.activationDelayMs);
      const key = keys.filter((k) => k.algorithm === 'rsa').sort((a, b) => b.createdAt - a.createdAt)[0];
      if (!key) return message;
      return Buffer.concat([await arcSeal(message, key, arc, signOptions), message]);
    },
  };
}
