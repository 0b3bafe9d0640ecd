/**
 * DKIM signing of outgoing mail (RFC 6376), with an RSA and an Ed25519 key together
 * (RFC 8463 §3: a signer may add one signature per algorithm, verifiers use what they know).
 * The keys, which of them sign and their DNS records are dkim-keys.ts's.
 *
 * The signed header set follows RFC 6376 §5.4.1, and From is oversigned (listed once more than
 * it appears, §5.4.2 / §8.15) so that no From can be added above the signed one.
 *
 * The signature is computed by mailauth's signer engine (the one `dkimSign` runs). It is driven
 * directly because mailauth 4 has no oversigning option: the hook below only adds the extra
 * "From" to the h= list, mailauth does the canonicalisation, hashing and signing.
 */
import { DkimSigner, type MailauthParsedHeader } from 'mailauth/lib/dkim/dkim-signer.js';
import { sealMessage, type ARCSealOptions } from 'mailauth';
import { activeDkimKeys, loadDkimKeys, type DkimKey } from './dkim-keys.js';

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
