/**
 * The Authenticator every protocol uses (IMAP LOGIN/AUTHENTICATE, POP3 USER/PASS/AUTH, SMTP AUTH):
 * one place for user-name rules, password checks, SCRAM credentials and failure limits.
 *
 * Invariants:
 * - The answer never tells an unknown account from a wrong password: both are 'invalid', both
 *   run one scrypt (an unknown user is checked against a dummy hash of the same cost), and both
 *   count against the same limits. A disabled account is reported only after its password
 *   verified, so 'disabled' reveals nothing to someone without the password.
 * - SCRAM for an unknown user gets deterministic fake credentials (HMAC of the name with a
 *   per-process secret): the same salt on every attempt, failing at the proof like a wrong
 *   password, so the exchange never reveals which users exist (the RFC 5802 §7 "unknown-user"
 *   error is never used).
 * - Limits (DESIGN.md invariant 4): failures are counted per client IP (IPv6 per /64) and per
 *   account name within a window; reaching a limit blocks the key for blockMs ('throttled',
 *   without checking the password); each failure past the third is answered after a growing
 *   delay. A successful login clears the account's counter for that origin (not the IP's).
 * - An IP that logged in to an account within the last 30 days has its failures on that account
 *   counted apart: someone who gets an account blocked does not lock out its owner's usual
 *   devices (their own failures are still limited).
 * - Attempts on one account run one at a time and at most 4 per IP at once (gate.ts), so a
 *   client opening many connections in parallel gets no more guesses than the limit allows; at
 *   most 2 scrypt computations run at once in the process, leaving libuv threads for the store.
 *   The others wait their turn in order (IP_QUEUE_MAX, ACCOUNT_QUEUE_MAX). Only an attempt past
 *   a full queue is refused, as 'busy': a temporary answer that is not a failure and counts
 *   towards no limit. 'throttled' means a block earned by real failures, nothing else.
 * - Bounded input: names over 320 bytes or passwords over 1024 bytes are refused before any
 *   hashing.
 * - App passwords (app-password.ts) work for every account, on every protocol, through the same
 *   limits and gates. A password shaped like one is looked up first (one indexed query, also
 *   for an unknown user); a match logs in without scrypt. Any failure still runs the scrypt of
 *   the main password (or the dummy), so a failure takes the same time whatever was tried.
 * - An account with a second factor (TOTP) never logs in with its main password here, nor with
 *   SCRAM (whose verifier is the main password's): such an attempt is answered and timed exactly
 *   like a wrong password, counted as a failure, and logged at info with the reason. Its mail
 *   clients use app passwords; the main password plus a code is for the web (verifyTotp).
 * - A password that verified is accepted again for a while without scrypt (verified-passwords.ts:
 *   successes only, keyed by account, stored hash and password); the gates, blocks, second
 *   factor and disabled checks apply to such a login as to any other.
 * - An app password's last use is written at most once per APP_PASSWORD_USE_WRITE_MS, so a
 *   client logging in every few seconds does not write every time.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import type { Logger } from 'pino';
import type { AuthMeta, AuthResult, Authenticator, ScramCredentials } from '../context.js';
import type { Account, AppPassword, MailStore } from '../store/types.js';
import { saslprep } from '../sasl/saslprep.js';
import {
  createMemoryFailureCounters,
  type AuthFailureCounters,
  type FailureLimits,
} from './failure-counters.js';
import { createGate } from './gate.js';
import { DEFAULT_MAX_KEYS } from './rate-limit.js';
import { deriveScram, hashPassword, needsRehash, parseScram, SCRAM_ITERATIONS, verifyPassword } from './password.js';
import { DEFAULT_VERIFIED_PASSWORD_TTL_MS, VerifiedPasswords } from './verified-passwords.js';
import { hashAppPassword } from './app-password.js';
import { verifyTotp } from './totp.js';
import { asAccountId } from '../lib/brand.js';

/** RFC 5321 §4.5.3.1.3: a path is at most 256 octets; 320 leaves room for odd but valid names. */
export const MAX_USERNAME_BYTES = 320;
/** Long passphrases fit; a megabyte "password" does not reach scrypt. */
export const MAX_PASSWORD_BYTES = 1024;

/** What the authenticator needs from the store. */
export type AuthStore = Pick<
  MailStore,
  'getAccount' | 'getAccountByAddress' | 'updateAccount' | 'findAppPassword' | 'recordAppPasswordUse' | 'acceptTotpStep'
>;

/** An app password's last use is rewritten at most this often (the list shows it to the minute). */
export const APP_PASSWORD_USE_WRITE_MS = 60_000;
/** Never an account id (ids start at 1): the app-password lookup made for an unknown user. */
const NO_ACCOUNT = asAccountId(0);

export interface AuthenticatorOptions extends FailureLimits {
  /** Shared counters (several nodes); default: in memory, built from the limits above. */
  counters?: AuthFailureCounters;
  /** Base of the growing delay after a failure (default 250 ms; 0 disables). */
  failureDelayMs?: number;
  /** Cap of that delay (default 4000 ms). */
  maxFailureDelayMs?: number;
  /** Waits before answering a failure; injected by tests. */
  sleep?: (ms: number) => Promise<void>;
  /** Failures are logged at info, blocks at warn (with IP, account name and protocol), so an
   * operator (or fail2ban) sees an attack as it happens. */
  log?: Pick<Logger, 'warn' | 'info'>;
  /** Password checks running at once from one IP (default 4); more wait their turn. */
  maxConcurrentPerIp?: number;
  /** Checks from one IP waiting for their turn before more are answered 'busy' (default
   * IP_QUEUE_MAX). */
  maxQueuedPerIp?: number;
  /** Checks on one account waiting for their turn before more are answered 'busy' (default
   * ACCOUNT_QUEUE_MAX). */
  maxQueuedPerAccount?: number;
  /** scrypt computations at once in this process (default 2, the core count of the reference
   * machine); past 1024 waiting, attempts are answered 'busy'. */
  maxConcurrentHashes?: number;
  /** How long an IP stays trusted for an account after a successful login from it (default 30
   * days; 0 disables): its failures are then counted apart from the account's. */
  trustMs?: number;
  /** How long a password that verified is accepted again without hashing it (default 15
   * minutes; 0 disables): see verified-passwords.ts. Failures are never cached. */
  verifiedPasswordTtlMs?: number;
  /** Checks a password against a stored hash (default password.ts's scrypt); tests count calls. */
  verifyHash?: (stored: string, password: string) => Promise<boolean>;
}

/** Logged (never told to the client) when an account with a second factor offers its main password. */
const SECOND_FACTOR_REFUSAL = 'main password refused: the account has a second factor (TOTP); its mail clients need app passwords';

/** Attempts from one IP waiting for their turn (4 run at once) before more are answered 'busy'.
 * One IP may hold maxConnectionsPerIp connections on each listener (50 by default), each with one
 * login in progress, so a client or benchmark opening that many logins at once is queued, never
 * refused; a waiter is one closure, its connection already counted by the listener. */
export const IP_QUEUE_MAX = 256;
/** Attempts on one account waiting for their turn (one runs at a time; each IP has at most 4
 * here, see above) before more are answered 'busy'. */
export const ACCOUNT_QUEUE_MAX = 256;

/** Failures in the window answered without delay (a user mistyping twice waits for nothing). */
const FREE_FAILURES = 3;

/**
 * The key failures are counted under for an IP: IPv4 as is (also when IPv4-mapped), IPv6 by its
 * /64, since one host usually owns a whole /64 and could otherwise rotate addresses freely.
 */
export function ipKey(ip: string): string {
  const bare = ip.replace(/%.*$/, '');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(bare);
  if (mapped?.[1]) return mapped[1];
  if (isIPv4(bare) || !isIPv6(bare)) return bare;
  let text = bare.toLowerCase();
  // An embedded IPv4 tail (e.g. 64:ff9b::192.0.2.1) becomes two groups.
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = text.slice(0, v4.index) + ((a << 8) | b).toString(16) + ':' + ((c << 8) | d).toString(16);
  }
  const [head = '', tail] = text.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups =
    tail === undefined ? headGroups : [...headGroups, ...Array<string>(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups];
  return groups.slice(0, 4).map((g) => g.padStart(4, '0')).join(':') + '::/64';
}

/** The form user names are compared in: SASLprep (RFC 4013), then lower case. */
export function normalizeUsername(username: string): string {
  return (saslprep(username) ?? username).toLowerCase();
}

export function createAuthenticator(store: AuthStore, options: AuthenticatorOptions = {}): Authenticator {
  const counters = options.counters ?? createMemoryFailureCounters(options);
  const failureDelayMs = options.failureDelayMs ?? 250;
  const maxFailureDelayMs = options.maxFailureDelayMs ?? 4000;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  // Per instance, never stored: fake SCRAM credentials stay stable for this process's lifetime.
  const secret = randomBytes(32);
  const ipGate = createGate({ max: options.maxConcurrentPerIp ?? 4, maxQueue: options.maxQueuedPerIp ?? IP_QUEUE_MAX });
  const accountGate = createGate({ max: 1, maxQueue: options.maxQueuedPerAccount ?? ACCOUNT_QUEUE_MAX });
  const hashGate = createGate({ max: options.maxConcurrentHashes ?? 2, maxQueue: 1024 });
  const now = options.now ?? Date.now;
  const trustMs = options.trustMs ?? 30 * 24 * 3600_000;
  const maxTrusted = options.maxKeys ?? DEFAULT_MAX_KEYS;
  // "account\nip" -> time of the last successful login from that IP; oldest first.
  const trusted = new Map<string, number>();
  const verifyHash = options.verifyHash ?? verifyPassword;
  const verified = new VerifiedPasswords({ ttlMs: options.verifiedPasswordTtlMs ?? DEFAULT_VERIFIED_PASSWORD_TTL_MS, now });
  // Same parameters as real hashes, so an unknown user costs the same scrypt as a known one.
  const dummyHash = hashPassword(randomBytes(18).toString('base64'));
  // Handled where awaited; this only keeps a failure from being reported as unhandled before.
  dummyHash.catch(() => undefined);

  async function findAccount(name: string): Promise<Account | null> {
    const exact = await store.getAccountByAddress(name);
    if (exact) return exact;
    // Accept the sub-address form too: user+tag@domain logs in as user@domain.
    const m = /^([^@+]+)\+[^@]*(@.+)$/.exec(name);
    return m ? store.getAccountByAddress(`${m[1]}${m[2]}`) : null;
  }

  /**
   * The key an account's failures are counted under for this IP: the account itself, or, for an
   * IP that logged in to it successfully within trustMs, a key of the pair. So an attacker who
   * gets the account blocked does not lock out its owner's usual devices, whose own failures
   * are still limited, per pair.
   */
  function counterKey(accountKey: string, ip: string): string {
    const pair = `${accountKey}\n${ip}`;
    const last = trusted.get(pair);
    if (last === undefined) return accountKey;
    if (now() - last >= trustMs) {
      trusted.delete(pair);
      return accountKey;
    }
    return pair;
  }

  function trust(accountKey: string, ip: string): void {
    if (trustMs <= 0) return;
    const pair = `${accountKey}\n${ip}`;
    trusted.delete(pair);
    if (trusted.size >= maxTrusted) {
      const oldest = trusted.keys().next();
      if (!oldest.done) trusted.delete(oldest.value);
    }
    trusted.set(pair, now());
  }

  async function throttled(ip: string, accountKey: string | null): Promise<boolean> {
    if ((await counters.blockedFor('ip', ip)) > 0) return true;
    return accountKey !== null && (await counters.blockedFor('account', accountKey)) > 0;
  }

  /** Records a failure; returns how long to wait before answering. `why` is logged, never told
   * to the client. */
  async function recordFailure(ip: string, accountKey: string, protocol: AuthMeta['protocol'], why?: string): Promise<number> {
    const ipCount = await counters.recordFailure('ip', ip);
    const accountCount = await counters.recordFailure('account', accountKey);
    const n = Math.max(ipCount, accountCount);
    // The account key may be a name nobody has; it is logged as given (bounded to 320 bytes).
    const fields = {
      ip,
      account: accountKey.split('\n')[0],
      protocol,
      ipFailures: ipCount,
      accountFailures: accountCount,
      ...(why === undefined ? {} : { why }),
    };
    options.log?.info(fields, 'authentication failed');
    if ((await counters.blockedFor('ip', ip)) > 0 || (await counters.blockedFor('account', accountKey)) > 0) {
      options.log?.warn(fields, 'authentication blocked: too many failures');
    }
    if (n <= FREE_FAILURES || failureDelayMs <= 0) return 0;
    return Math.min(failureDelayMs * 2 ** (n - FREE_FAILURES - 1), maxFailureDelayMs);
  }

  const INVALID: AuthResult = { ok: false, reason: 'invalid' };
  const THROTTLED: AuthResult = { ok: false, reason: 'throttled' };
  /** A full queue: not a failure, not counted, not 'throttled' (which tells of failures). */
  const BUSY: AuthResult = { ok: false, reason: 'busy' };

  /**
   * Runs one attempt inside the IP and account gates (see gate.ts) and re-checks the blocks once
   * admitted. The attempt is given the key to count failures under and returns its result and
   * the delay to apply; the delay is waited out after the gates are released, since the failure
   * is already counted. A success makes the IP trusted for the account.
   */
  async function gated(
    ip: string,
    accountKey: string,
    attempt: (key: string) => Promise<{ result: AuthResult; delayMs: number }>,
  ): Promise<AuthResult> {
    const ipTurn = ipGate.acquire(ip);
    if (!ipTurn) return BUSY;
    const releaseIp = await ipTurn;
    let outcome: { result: AuthResult; delayMs: number };
    try {
      const accountTurn = accountGate.acquire(accountKey);
      if (!accountTurn) return BUSY;
      const releaseAccount = await accountTurn;
      try {
        const key = counterKey(accountKey, ip);
        if (await throttled(ip, key)) return THROTTLED;
        outcome = await attempt(key);
        if (outcome.result.ok) trust(accountKey, ip);
      } finally {
        releaseAccount();
      }
    } finally {
      releaseIp();
    }
    if (outcome.delayMs > 0) await sleep(outcome.delayMs);
    return outcome.result;
  }

  /** scrypt under the global gate; null when too many hashes are already waiting. */
  async function hashGated<T>(work: () => Promise<T>): Promise<T | null> {
    const turn = hashGate.acquire('');
    if (!turn) return null;
    const release = await turn;
    try {
      return await work();
    } finally {
      release();
    }
  }

  function fakeScram(name: string): ScramCredentials {
    const derive = (label: string) => createHmac('sha256', secret).update(label).update('\0').update(name).digest();
    return {
      salt: derive('salt').subarray(0, 16),
      iterations: SCRAM_ITERATIONS,
      storedKey: derive('stored-key'),
      serverKey: derive('server-key'),
    };
  }

  /** Records where the app password was used, at most once per APP_PASSWORD_USE_WRITE_MS. */
  async function noteAppPasswordUse(account: Account, app: AppPassword, meta: AuthMeta): Promise<void> {
    const at = now();
    if (app.lastUsed !== null && at - app.lastUsed.at < APP_PASSWORD_USE_WRITE_MS && at >= app.lastUsed.at) return;
    try {
      await store.recordAppPasswordUse(app.id, { at, protocol: meta.protocol, ip: meta.ip });
    } catch (err) {
      // The login itself succeeded; the next one records the use.
      options.log?.warn({ err, account: account.address, appPassword: app.name }, 'cannot record app password use');
    }
  }

  async function afterPasswordLogin(account: Account, password: string): Promise<void> {
    const patch: { scram?: string; passwordHash?: string } = {};
    // First password login of an account without a verifier: derive it now, so that the next
    // login can use SCRAM (RFC 5802 §3: the server keeps only StoredKey and ServerKey).
    if (account.scram === null) patch.scram = deriveScram(password);
    if (needsRehash(account.passwordHash)) {
      const rehashed = await hashGated(() => hashPassword(password));
      if (rehashed !== null) patch.passwordHash = rehashed;
    }
    if (patch.scram === undefined && patch.passwordHash === undefined) return;
    try {
      await store.updateAccount(account.id, patch);
    } catch (err) {
      // The login itself succeeded; the upgrade is retried at the next one.
      options.log?.warn({ err, account: account.address }, 'cannot store upgraded credentials');
    }
  }

  return {
    async verifyPassword(username: string, password: string, meta: AuthMeta): Promise<AuthResult> {
      const ip = ipKey(meta.ip);
      if (await throttled(ip, null)) return THROTTLED;
      const name = normalizeUsername(username);
      if (Buffer.byteLength(name) > MAX_USERNAME_BYTES || Buffer.byteLength(password) > MAX_PASSWORD_BYTES) {
        const delayMs = await recordFailure(ip, name.slice(0, MAX_USERNAME_BYTES), meta.protocol);
        if (delayMs > 0) await sleep(delayMs);
        return INVALID;
      }
      const account = name === '' ? null : await findAccount(name);
      const accountKey = account?.address ?? name;
      const appHash = hashAppPassword(password);
      return gated(ip, accountKey, async (key) => {
        if (appHash !== null) {
          const app = await store.findAppPassword(account?.id ?? NO_ACCOUNT, appHash);
          if (app !== null && account !== null) {
            if (account.disabled) return { result: { ok: false, reason: 'disabled' }, delayMs: 0 };
            await counters.reset('account', key);
            await noteAppPasswordUse(account, app, meta);
            return { result: { ok: true, account }, delayMs: 0 };
          }
        }
        // A password that logged in within the TTL is not hashed again (verified-passwords.ts),
        // except for an account with a second factor: its main password is refused, and a fast
        // refusal would tell a guesser the guess was right. An unknown user is checked against
        // the dummy hash: same cost, always false.
        const cached = account !== null && account.totpSecret === null && verified.has(account.id, account.passwordHash, password);
        const matched =
          cached ||
          (await hashGated(async () =>
            account ? verifyHash(account.passwordHash, password) : (await verifyHash(await dummyHash, password)) && false,
          ));
        if (matched === null) return { result: BUSY, delayMs: 0 };
        if (!matched || !account) return { result: INVALID, delayMs: await recordFailure(ip, key, meta.protocol) };
        if (account.totpSecret !== null) {
          return { result: INVALID, delayMs: await recordFailure(ip, key, meta.protocol, SECOND_FACTOR_REFUSAL) };
        }
        if (account.disabled) return { result: { ok: false, reason: 'disabled' }, delayMs: 0 };
        if (!cached) verified.add(account.id, account.passwordHash, password);
        await counters.reset('account', key);
        await afterPasswordLogin(account, password);
        return { result: { ok: true, account }, delayMs: 0 };
      });
    },

    async scramCredentials(username: string) {
      const name = normalizeUsername(username);
      const account =
        name === '' || Buffer.byteLength(name) > MAX_USERNAME_BYTES ? null : await findAccount(name);
      if (account?.scram) {
        try {
          return { credentials: parseScram(account.scram), account };
        } catch (err) {
          options.log?.warn({ err, account: account.address }, 'stored SCRAM verifier is unreadable');
        }
      }
      // Unknown user, or an account whose verifier is not derived yet (that happens at its next
      // password login): the exchange fails at the proof, like a wrong password.
      return { credentials: fakeScram(name), account };
    },

    async recordScramOutcome(username: string, account: Account | null, success: boolean, meta: AuthMeta) {
      const ip = ipKey(meta.ip);
      const accountKey = account?.address ?? normalizeUsername(username).slice(0, MAX_USERNAME_BYTES);
      if (await throttled(ip, null)) return THROTTLED;
      return gated(ip, accountKey, async (key) => {
        if (!success || !account) return { result: INVALID, delayMs: await recordFailure(ip, key, meta.protocol) };
        // SCRAM proves the main password: refused like PLAIN with it (see the header).
        if (account.totpSecret !== null) {
          return { result: INVALID, delayMs: await recordFailure(ip, key, meta.protocol, SECOND_FACTOR_REFUSAL) };
        }
        if (account.disabled) return { result: { ok: false, reason: 'disabled' }, delayMs: 0 };
        await counters.reset('account', key);
        return { result: { ok: true, account }, delayMs: 0 };
      });
    },

    async verifyTotp(given: Account, code: string, meta: AuthMeta) {
      const ip = ipKey(meta.ip);
      if (await throttled(ip, null)) return THROTTLED;
      return gated(ip, given.address, async (key) => {
        // Read again: the last accepted step may have moved since the caller loaded the account.
        const account = await store.getAccount(given.id);
        const secret = account?.totpSecret ?? null;
        if (account === null || secret === null || code.length > 16) {
          return { result: INVALID, delayMs: await recordFailure(ip, key, meta.protocol, 'no second factor') };
        }
        const check = verifyTotp(secret, code, { now: now(), lastStep: account.totpLastStep });
        // The store records the step only if it is later than the last one: of two logins racing
        // with one code (two nodes), one wins.
        const accepted = check.ok && (await store.acceptTotpStep(account.id, check.step));
        if (!accepted) {
          const why = check.ok || check.reason === 'replayed' ? 'TOTP code already used' : `TOTP code ${check.reason}`;
          return { result: INVALID, delayMs: await recordFailure(ip, key, meta.protocol, why) };
        }
        if (account.disabled) return { result: { ok: false, reason: 'disabled' }, delayMs: 0 };
        await counters.reset('account', key);
        return { result: { ok: true, account }, delayMs: 0 };
      });
    },
  };
}
