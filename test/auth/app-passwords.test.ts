/**
 * App passwords and the TOTP second factor at the Authenticator: what every protocol's login
 * goes through (the protocol tests in test/security/app-passwords.test.ts show the same through
 * real servers and clients).
 */
import { strict as assert } from 'node:assert';
import { test, type TestContext } from 'node:test';
import { appPasswordCandidate, generateAppPassword, hashAppPassword } from '../../src/auth/app-password.js';
import { APP_PASSWORD_USE_WRITE_MS, createAuthenticator } from '../../src/auth/authenticator.js';
import { hashPassword, parseScram } from '../../src/auth/password.js';
import { base32Decode, generateTotpSecret, hotp, totpStep } from '../../src/auth/totp.js';
import type { AuthMeta } from '../../src/context.js';
import { openAuthStore } from './accounts.js';

const meta: AuthMeta = { ip: '192.0.2.10', protocol: 'imap', secure: true };

function clock(start = 1_700_000_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

interface LogLine {
  level: 'info' | 'warn';
  fields: Record<string, unknown>;
  msg: string;
}

async function setup(t: TestContext, options: Parameters<typeof createAuthenticator>[1] = {}) {
  const accounts = await openAuthStore(t);
  const alice = await accounts.add('alice@example.test', await hashPassword('alice-secret'));
  const lines: LogLine[] = [];
  const log = {
    info: (fields: object, msg: string) => void lines.push({ level: 'info', fields: fields as Record<string, unknown>, msg }),
    warn: (fields: object, msg: string) => void lines.push({ level: 'warn', fields: fields as Record<string, unknown>, msg }),
  };
  const auth = createAuthenticator(accounts.store, { failureDelayMs: 0, log: log as never, ...options });
  async function addApp(name: string, accountId = alice.id): Promise<string> {
    const secret = generateAppPassword();
    await accounts.store.addAppPassword(accountId, { name, hash: hashAppPassword(secret)! });
    return secret;
  }
  async function enableTotp(): Promise<Buffer> {
    const secret = generateTotpSecret();
    await accounts.store.updateAccount(alice.id, { totpSecret: secret, totpLastStep: null });
    return base32Decode(secret)!;
  }
  return { accounts, alice, auth, lines, addApp, enableTotp, store: accounts.store };
}

test('app passwords are 16 base32 characters in groups of four; typed forms are forgiving, other shapes are not app passwords', () => {
  const p = generateAppPassword();
  assert.match(p, /^[a-z2-7]{4}(-[a-z2-7]{4}){3}$/);
  assert.notEqual(generateAppPassword(), p);
  const bare = p.replace(/-/g, '');
  assert.equal(appPasswordCandidate(p.toUpperCase()), bare);
  assert.equal(appPasswordCandidate(p.replace(/-/g, ' ')), bare);
  assert.equal(hashAppPassword(p), hashAppPassword(bare.toUpperCase()));
  assert.match(hashAppPassword(p)!, /^sha256\$[A-Za-z0-9+/]{43}=$/);
  for (const notApp of ['alice-secret', bare.slice(1), bare + 'a', bare.slice(1) + '1', '']) {
    assert.equal(appPasswordCandidate(notApp), null, notApp);
    assert.equal(hashAppPassword(notApp), null, notApp);
  }
});

test('an app password logs in to its own account only; a revoked one no longer does', async (t) => {
  const { auth, alice, accounts, store, addApp } = await setup(t);
  const bob = await accounts.add('bob@example.test', await hashPassword('bob-secret'));
  const phone = await addApp('Phone');
  const r = await auth.verifyPassword('alice@example.test', phone, meta);
  assert.equal(r.ok && r.account.id, alice.id);
  // Typed in capitals without dashes, or with the plus-address form of the user name.
  assert.equal((await auth.verifyPassword('alice+x@example.test', phone.replace(/-/g, '').toUpperCase(), meta)).ok, true);
  assert.deepEqual(await auth.verifyPassword('bob@example.test', phone, meta), { ok: false, reason: 'invalid' });
  assert.deepEqual(await auth.verifyPassword('nobody@example.test', phone, meta), { ok: false, reason: 'invalid' });
  // The main password keeps working next to app passwords when there is no second factor.
  assert.equal((await auth.verifyPassword('alice@example.test', 'alice-secret', meta)).ok, true);
  await store.removeAppPassword(alice.id, 'Phone');
  assert.deepEqual(await auth.verifyPassword('alice@example.test', phone, meta), { ok: false, reason: 'invalid' });
  assert.equal(bob.totpSecret, null);
});

test('an app password of a disabled account is answered disabled', async (t) => {
  const { auth, alice, store, addApp } = await setup(t);
  const phone = await addApp('Phone');
  await store.updateAccount(alice.id, { disabled: true });
  assert.deepEqual(await auth.verifyPassword('alice@example.test', phone, meta), { ok: false, reason: 'disabled' });
});

test('an app password’s last use is recorded with protocol and IP, at most once a minute', async (t) => {
  const c = clock();
  const { auth, alice, store, addApp } = await setup(t, { now: c.now });
  const phone = await addApp('Phone');
  await auth.verifyPassword('alice@example.test', phone, meta);
  const first = (await store.listAppPasswords(alice.id))[0]?.lastUsed;
  assert.deepEqual(first, { at: c.now(), protocol: 'imap', ip: '192.0.2.10' });
  c.advance(APP_PASSWORD_USE_WRITE_MS - 1);
  assert.equal((await auth.verifyPassword('alice@example.test', phone, { ip: '198.51.100.1', protocol: 'smtp', secure: true })).ok, true);
  assert.deepEqual((await store.listAppPasswords(alice.id))[0]?.lastUsed, first, 'not rewritten within the minute');
  c.advance(1);
  assert.equal((await auth.verifyPassword('alice@example.test', phone, { ip: '198.51.100.1', protocol: 'smtp', secure: true })).ok, true);
  assert.deepEqual((await store.listAppPasswords(alice.id))[0]?.lastUsed, { at: c.now(), protocol: 'smtp', ip: '198.51.100.1' });
});

test('failures with app-password-shaped guesses count against the same limits, and a block stops app passwords too', async (t) => {
  const c = clock();
  const { auth, addApp } = await setup(t, { maxFailuresPerAccount: 3, maxFailuresPerIp: 100, now: c.now });
  const phone = await addApp('Phone');
  for (let i = 0; i < 3; i++) {
    assert.deepEqual(await auth.verifyPassword('alice@example.test', generateAppPassword(), meta), { ok: false, reason: 'invalid' });
  }
  assert.deepEqual(await auth.verifyPassword('alice@example.test', phone, meta), { ok: false, reason: 'throttled' });
});

test('with TOTP enabled the main password is refused like a wrong one (counted, logged at info with the reason); app passwords work', async (t) => {
  const c = clock();
  const { auth, lines, addApp, enableTotp } = await setup(t, { maxFailuresPerAccount: 3, maxFailuresPerIp: 100, now: c.now });
  const phone = await addApp('Phone');
  await enableTotp();
  assert.deepEqual(await auth.verifyPassword('alice@example.test', 'alice-secret', meta), { ok: false, reason: 'invalid' });
  const failure = lines.find((l) => l.msg === 'authentication failed');
  assert.equal(failure?.level, 'info');
  assert.match(String(failure?.fields.why), /second factor/);
  assert.equal(failure?.fields.accountFailures, 1);
  assert.equal((await auth.verifyPassword('alice@example.test', phone, meta)).ok, true, 'app password still works');
  // The refusals count like wrong passwords: after the limit, even the app password waits.
  for (let i = 0; i < 3; i++) await auth.verifyPassword('alice@example.test', 'alice-secret', meta);
  assert.deepEqual(await auth.verifyPassword('alice@example.test', phone, meta), { ok: false, reason: 'throttled' });
});

test('with TOTP enabled the main password takes as long to refuse as a wrong password (medians within tolerance)', async (t) => {
  const { auth, enableTotp } = await setup(t, { maxFailuresPerAccount: 1000, maxFailuresPerIp: 1000 });
  await enableTotp();
  const right: number[] = [];
  const wrong: number[] = [];
  for (let i = 0; i < 7; i++) {
    let s = performance.now();
    assert.deepEqual(await auth.verifyPassword('alice@example.test', 'alice-secret', meta), { ok: false, reason: 'invalid' });
    right.push(performance.now() - s);
    s = performance.now();
    await auth.verifyPassword('alice@example.test', `wrong-${i}`, meta);
    wrong.push(performance.now() - s);
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
  const close = (a: number, b: number): boolean => Math.abs(a - b) <= 0.5 * Math.max(a, b);
  const [r, w] = [median(right), median(wrong)];
  const [rMin, wMin] = [Math.min(...right), Math.min(...wrong)];
  // Both run the one scrypt of the main password (tens of ms) and nothing else of note. On a
  // loaded machine the medians can drift apart by the load alone; the fastest of each, the
  // least disturbed, still show a refusal that skipped the scrypt (well under a millisecond).
  assert.ok(close(r, w) || close(rMin, wMin), `right-password median ${r.toFixed(1)} ms (fastest ${rMin.toFixed(1)}), wrong ${w.toFixed(1)} ms (fastest ${wMin.toFixed(1)})`);
});

test('SCRAM-SHA-256 proves the main password, so it is refused for an account with TOTP and counted as a failure', async (t) => {
  const { auth, alice, accounts, lines, enableTotp } = await setup(t);
  // The first password login derives the SCRAM verifier.
  assert.equal((await auth.verifyPassword('alice@example.test', 'alice-secret', meta)).ok, true);
  const fresh = await accounts.get('alice@example.test');
  assert.ok(fresh?.scram);
  assert.equal((await auth.recordScramOutcome('alice@example.test', fresh, true, meta)).ok, true);
  await enableTotp();
  const withTotp = await accounts.get('alice@example.test');
  // The exchange itself runs with the real verifier (a fake one would change the salt)...
  const { credentials, account } = await auth.scramCredentials('alice@example.test');
  assert.equal(account?.id, alice.id);
  assert.deepEqual(credentials.salt, parseScram(withTotp?.scram ?? '').salt);
  // ...and a valid proof is then refused like an invalid one.
  assert.deepEqual(await auth.recordScramOutcome('alice@example.test', withTotp, true, meta), { ok: false, reason: 'invalid' });
  assert.ok(lines.some((l) => l.msg === 'authentication failed' && /second factor/.test(String(l.fields.why))));
});

test('verifyTotp: a current code logs in once; its replay, a wrong code and an account without TOTP are invalid; failures are limited', async (t) => {
  const c = clock();
  const { auth, alice, accounts, enableTotp, lines } = await setup(t, { maxFailuresPerAccount: 4, maxFailuresPerIp: 100, now: c.now });
  assert.deepEqual(await auth.verifyTotp(alice, '123456', meta), { ok: false, reason: 'invalid' }, 'no TOTP yet');
  const key = await enableTotp();
  const code = hotp(key, totpStep(c.now()));
  const ok = await auth.verifyTotp(alice, code, meta);
  assert.equal(ok.ok && ok.account.id, alice.id);
  assert.deepEqual(await auth.verifyTotp(alice, code, meta), { ok: false, reason: 'invalid' }, 'replay');
  assert.ok(lines.some((l) => l.fields.why === 'TOTP code already used'));
  // The next step's code works (the window allows one step ahead), then the clock moves on.
  const next = hotp(key, totpStep(c.now()) + 1);
  assert.equal((await auth.verifyTotp(alice, next, meta)).ok, true);
  c.advance(60_000);
  const current = hotp(key, totpStep(c.now()));
  const wrong = String((Number(current) + 1) % 1_000_000).padStart(6, '0');
  // A success clears the account's failures; four failures after it block the account.
  assert.deepEqual(await auth.verifyTotp(alice, wrong, meta), { ok: false, reason: 'invalid' });
  assert.deepEqual(await auth.verifyTotp(alice, 'x'.repeat(100), meta), { ok: false, reason: 'invalid' });
  assert.deepEqual(await auth.verifyTotp(alice, '12 34', meta), { ok: false, reason: 'invalid' });
  assert.deepEqual(await auth.verifyTotp(alice, next, meta), { ok: false, reason: 'invalid' }, 'replay of an older step');
  assert.deepEqual(await auth.verifyTotp(alice, current, meta), { ok: false, reason: 'throttled' });
  assert.equal((await accounts.get('alice@example.test'))?.totpLastStep, totpStep(c.now() - 60_000) + 1);
});
