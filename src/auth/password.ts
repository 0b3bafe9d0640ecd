/**
 * Stored credentials: the password hash every login checks, and the SCRAM-SHA-256 verifier
 * (RFC 5802 §3, RFC 7677) that lets a client prove it knows the password without sending it.
 *
 * Invariants:
 * - A clear password is never stored or returned; only the encodings below are.
 * - Only known encodings verify: anything else (a foreign or truncated hash) fails closed.
 * - Comparisons of secret-derived bytes are constant-time (timingSafeEqual).
 * - Cost parameters read from a stored hash are bounded, so a corrupt row cannot make one login
 *   use gigabytes of memory or minutes of CPU.
 *
 * Password hash: `$scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt base64>$<key base64>`.
 * Cost: N=2^14, r=8, p=1 (16 MiB) measured at about 40-50 ms per hash on the 2-core reference
 * machine (N=2^15 took 150 ms there), which keeps a login near the 50 ms target. The parameters
 * are in each hash, so raising them later only needs `needsRehash` at the next login.
 *
 * SCRAM verifier (RFC 5803 form): `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
 *
 * Passwords are prepared with SASLprep (RFC 4013) before hashing, as RFC 5802 §2.2 requires for
 * SCRAM, so that PLAIN/LOGIN and SCRAM agree on one password. A password SASLprep refuses is used
 * as given (its UTF-8 bytes), so such a password still works with PLAIN.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import type { ScramCredentials } from '../context.js';
import { saslprep } from '../sasl/saslprep.js';

export interface ScryptParams {
  /** log2 of the CPU/memory cost N. */
  ln: number;
  r: number;
  p: number;
}

/** Current cost (see the header for the measurement). */
export const SCRYPT_DEFAULTS: Readonly<ScryptParams> = { ln: 14, r: 8, p: 1 };
const SALT_BYTES = 16;
const KEY_BYTES = 32;

/** Bounds on parameters read back from a stored hash (stops a corrupt row exhausting memory). */
const MAX_SCRYPT_MEMORY = 256 * 1024 * 1024;
const SCRYPT_LN_RANGE = [10, 20] as const;

/** RFC 7677 §4: at least 4096 iterations. 10000 costs about 3 ms here; clients pay it per login. */
export const SCRAM_ITERATIONS = 10000;
/** Bounds on stored SCRAM iterations (clients compute Hi() with this count; keep it sane). */
const SCRAM_ITERATIONS_RANGE = [4096, 1_000_000] as const;

const HASH_FORMAT = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})$/;
const SCRAM_FORMAT = /^SCRAM-SHA-256\$(\d{1,7}):([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2}):([A-Za-z0-9+/]+={0,2})$/;

/** RFC 5802 §2.2 Normalize(): SASLprep, or the string as given when SASLprep refuses it. */
export function normalizePassword(password: string): string {
  return saslprep(password) ?? password;
}

function scryptMemory(params: ScryptParams): number {
  return 128 * 2 ** params.ln * params.r * params.p;
}

function scryptAsync(password: string, salt: Buffer, params: ScryptParams): Promise<Buffer> {
  const N = 2 ** params.ln;
  return new Promise((resolve, reject) => {
    // maxmem: scrypt needs 128*N*r bytes (plus a little); Node's default cap (32 MiB) would
    // refuse a raised cost, so the cap is stated explicitly with headroom.
    scrypt(
      normalizePassword(password),
      salt,
      KEY_BYTES,
      { N, r: params.r, p: params.p, maxmem: 2 * scryptMemory(params) + 1024 * 1024 },
      (err, key) => (err ? reject(err) : resolve(key)),
    );
  });
}

export async function hashPassword(password: string, params: ScryptParams = SCRYPT_DEFAULTS): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const key = await scryptAsync(password, salt, params);
  return `$scrypt$ln=${params.ln},r=${params.r},p=${params.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

interface ParsedHash {
  params: ScryptParams;
  salt: Buffer;
  key: Buffer;
}

function parseHash(hash: string): ParsedHash | null {
  const m = HASH_FORMAT.exec(hash);
  if (!m) return null;
  const params: ScryptParams = { ln: Number(m[1]), r: Number(m[2]), p: Number(m[3]) };
  if (params.ln < SCRYPT_LN_RANGE[0] || params.ln > SCRYPT_LN_RANGE[1]) return null;
  if (params.r < 1 || params.p < 1 || scryptMemory(params) > MAX_SCRYPT_MEMORY) return null;
  const salt = Buffer.from(m[4] ?? '', 'base64');
  const key = Buffer.from(m[5] ?? '', 'base64');
  if (salt.length < 8 || salt.length > 64 || key.length < 16 || key.length > 64) return null;
  return { params, salt, key };
}

/** Whether a stored hash is in a known format (for `facteur` admin checks and imports). */
export function isKnownHash(hash: string): boolean {
  return parseHash(hash) !== null;
}

/** True when the hash should be recomputed with the current parameters at the next login. */
export function needsRehash(hash: string): boolean {
  const parsed = parseHash(hash);
  if (!parsed) return true;
  const { ln, r, p } = parsed.params;
  return ln !== SCRYPT_DEFAULTS.ln || r !== SCRYPT_DEFAULTS.r || p !== SCRYPT_DEFAULTS.p || parsed.key.length !== KEY_BYTES;
}

/** Checks a password against a stored hash; false for a wrong password or an unknown format. */
export async function verifyPassword(hash: string, password: string): Promise<boolean> {
  const parsed = parseHash(hash);
  if (!parsed) return false;
  const key = await scryptAsync(password, parsed.salt, parsed.params);
  // Lengths are public (they come from the stored hash), so the early length check leaks nothing.
  return key.length === parsed.key.length && timingSafeEqual(key, parsed.key);
}

function hmac(key: Buffer, data: string | Buffer): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

/** Serialises credentials in the RFC 5803 form. */
export function formatScram(c: ScramCredentials): string {
  return `SCRAM-SHA-256$${c.iterations}:${c.salt.toString('base64')}$${c.storedKey.toString('base64')}:${c.serverKey.toString('base64')}`;
}

/** RFC 5802 §3: SaltedPassword = Hi(Normalize(password), salt, i); StoredKey = H(HMAC(SaltedPassword,
 * "Client Key")); ServerKey = HMAC(SaltedPassword, "Server Key"). */
export function scramCredentialsFor(
  password: string,
  options: { salt?: Buffer; iterations?: number } = {},
): ScramCredentials {
  const salt = options.salt ?? randomBytes(SALT_BYTES);
  const iterations = options.iterations ?? SCRAM_ITERATIONS;
  // RFC 5802 §2.2: Hi() is PBKDF2 with HMAC as the PRF and dkLen the hash output length.
  const salted = pbkdf2Sync(normalizePassword(password), salt, iterations, 32, 'sha256');
  const clientKey = hmac(salted, 'Client Key');
  return { salt, iterations, storedKey: sha256(clientKey), serverKey: hmac(salted, 'Server Key') };
}

/** A stored SCRAM-SHA-256 verifier string for the password. */
export function deriveScram(password: string, options: { salt?: Buffer; iterations?: number } = {}): string {
  return formatScram(scramCredentialsFor(password, options));
}

/** Parses a stored verifier; throws on anything but the RFC 5803 SCRAM-SHA-256 form. */
export function parseScram(s: string): ScramCredentials {
  const m = SCRAM_FORMAT.exec(s);
  if (!m) throw new Error('Cannot parse SCRAM verifier: not in the SCRAM-SHA-256$i:salt$stored:server form');
  const iterations = Number(m[1]);
  if (iterations < SCRAM_ITERATIONS_RANGE[0] || iterations > SCRAM_ITERATIONS_RANGE[1]) {
    throw new Error(`Cannot parse SCRAM verifier: iteration count ${iterations} is outside 4096..1000000`);
  }
  const salt = Buffer.from(m[2] ?? '', 'base64');
  const storedKey = Buffer.from(m[3] ?? '', 'base64');
  const serverKey = Buffer.from(m[4] ?? '', 'base64');
  if (salt.length < 8 || storedKey.length !== 32 || serverKey.length !== 32) {
    throw new Error('Cannot parse SCRAM verifier: salt under 8 bytes or key not 32 bytes');
  }
  return { salt, iterations, storedKey, serverKey };
}

/** Both stored forms for a new or changed password (CLI, admin API). */
export async function createCredentials(password: string): Promise<{ passwordHash: string; scram: string }> {
  return { passwordHash: await hashPassword(password), scram: deriveScram(password) };
}
