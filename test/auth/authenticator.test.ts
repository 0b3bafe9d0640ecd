import { strict as assert } from 'node:assert';
import { test, type TestContext } from 'node:test';
import { createAuthenticator, ipKey, normalizeUsername } from '../../src/auth/authenticator.js';
import { deriveScram, hashPassword, parseScram, verifyPassword } from '../../src/auth/password.js';
import type { AuthMeta } from '../../src/context.js';
import { openAuthStore } from './accounts.js';

const meta: AuthMeta = { ip: '192.0.2.10', protocol: 'imap', secure: true };
const other: AuthMeta = { ip: '198.51.100.7', protocol: 'imap', secure: true };

/** verifyPassword, counting its calls. */
function countingHash() {
  const c = {
    calls: 0,
    verify: async (stored: string, password: string) => {
      c.calls++;
      return verifyPassword(stored, password);
    },
  };
  return c;
}

function clock(start = 1_700_000_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

async function setup(t: TestContext, options: Parameters<typeof createAuthenticator>[1] = {}) {
  const accounts = await openAuthStore(t);
  const alice = await accounts.add('alice@example.test', await hashPassword('alice-secret'));
  const auth = createAuthenticator(accounts.store, { failureDelayMs: 0, ...options });
  return { accounts, alice, auth };
}

test('the right password logs in; a wrong password or an unknown user is invalid', async (t) => {
  const { auth, alice } = await setup(t);
  const ok = await auth.verifyPassword('alice@example.test', 'alice-secret', meta);
  assert.equal(ok.ok, true);
  assert.equal(ok.ok && ok.account.id, alice.id);
  assert.deepEqual(await auth.verifyPassword('alice@example.test', 'wrong', meta), { ok: false, reason: 'invalid' });
  assert.deepEqual(await auth.verifyPassword('nobody@example.test', 'alice-secret', meta), { ok: false, reason: 'invalid' });
  assert.deepEqual(await auth.verifyPassword('', 'alice-secret', meta), { ok: false, reason: 'invalid' });
});

test('user names are case-insensitive and the plus-addressed form reaches the account', async (t) => {
  const { auth, alice } = await setup(t);
  for (const name of ['Alice@Example.TEST', 'alice+phone@example.test', 'ALICE+x+y@example.test']) {
    const r = await auth.verifyPassword(name, 'alice-secret', meta);
    assert.equal(r.ok && r.account.id, alice.id, name);
  }
  assert.equal(normalizeUsername('B\u00F6B@Example.test'), 'b\u00F6b@example.test');
});

test('a disabled account is reported only to someone who knows its password', async (t) => {
  const { auth, accounts } = await setup(t);
  await accounts.add('gone@example.test', await hashPassword('gone-secret'), { disabled: true });
  assert.deepEqual(await auth.verifyPassword('gone@example.test', 'gone-secret', meta), { ok: false, reason: 'disabled' });
  assert.deepEqual(await auth.verifyPassword('gone@example.test', 'guess', meta), { ok: false, reason: 'invalid' });
});

test('over-long user names and passwords are refused without hashing', async (t) => {
  const { auth } = await setup(t);
  const start = performance.now();
  assert.deepEqual(await auth.verifyPassword('a'.repeat(400) + '@example.test', 'x', meta), { ok: false, reason: 'invalid' });
  assert.deepEqual(await auth.verifyPassword('alice@example.test', 'x'.repeat(2000), meta), { ok: false, reason: 'invalid' });
  assert.ok(performance.now() - start < 500);
});

test('an unknown user takes as long as a known user with a wrong password (medians within tolerance)', async (t) => {
  const { auth } = await setup(t, { maxFailuresPerAccount: 1000, maxFailuresPerIp: 1000 });
  await auth.verifyPassword('warmup@example.test', 'x', meta); // the dummy hash is ready after this
  const known: number[] = [];
  const unknown: number[] = [];
  for (let i = 0; i < 7; i++) {
    let t = performance.now();
    await auth.verifyPassword('alice@example.test', `wrong-${i}`, meta);
    known.push(performance.now() - t);
    t = performance.now();
    await auth.verifyPassword(`nobody-${i}@example.test`, `wrong-${i}`, meta);
    unknown.push(performance.now() - t);
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
  const k = median(known);
  const u = median(unknown);
  // Both run one scrypt of the same cost (tens of ms); a missing dummy hash would make u ~0.1 ms.
  assert.ok(Math.abs(k - u) <= 0.5 * Math.max(k, u), `known median ${k.toFixed(1)} ms, unknown median ${u.toFixed(1)} ms`);
});

test('an account is locked after N failures, even for the right password, and unlocks after the block', async (t) => {
  const c = clock();
  const { auth } = await setup(t, { maxFailuresPerAccount: 5, windowMs: 60_000, blockMs: 120_000, now: c.now });
  for (let i = 0; i < 5; i++) {
    assert.deepEqual(await auth.verifyPassword('alice@example.test', `guess-${i}`, meta), { ok: false, reason: 'invalid' });
  }
  assert.deepEqual(await auth.verifyPassword('alice@example.test', 'alice-secret', meta), { ok: false, reason: 'throttled' });
  // The lock is on the account, whatever the client address.
  assert.deepEqual(await auth.verifyPassword('ALICE@example.test', 'alice-secret', other), { ok: false, reason: 'throttled' });
  c.advance(119_999);
  assert.deepEqual(await auth.verifyPassword('alice@example.test', 'alice-secret', meta), { ok: false, reason: 'throttled' });
  c.advance(1);
  assert.equal((await auth.verifyPassword('alice@example.test', 'alice-secret', meta)).ok, true);
});

test('unknown user names are limited like accounts', async (t) => {
  const c = clock();
  const { auth } = await setup(t, { maxFailuresPerAccount: 3, now: c.now });
  for (let i = 0; i < 3; i++) await auth.verifyPassword('ghost@example.test', `g${i}`, meta);
  assert.deepEqual(await auth.verifyPassword('ghost@example.test', 'g', meta), { ok: false, reason: 'throttled' });
});

test('an IP that fails too often is blocked for every account, other IPs are not', async (t) => {
  const c = clock();
  const { auth } = await setup(t, { maxFailuresPerIp: 4, maxFailuresPerAccount: 100, blockMs: 60_000, now: c.now });
  for (let i = 0; i < 4; i++) await auth.verifyPassword(`user${i}@example.test`, 'spray', meta);
  assert.deepEqual(await auth.verifyPassword('alice@example.test', 'alice-secret', meta), { ok: false, reason: 'throttled' });
  assert.equal((await auth.verifyPassword('alice@example.test', 'alice-secret', other)).ok, true);
  c.advance(60_000);
  assert.equal((await auth.verifyPassword('alice@example.test', 'alice-secret', meta)).ok, true);
});

test('IPv6 clients are counted per /64 and IPv4-mapped addresses as IPv4', async (t) => {
  assert.equal(ipKey('2001:db8:1:2:aaaa::1'), '2001:0db8:0001:0002::/64');
  assert.equal(ipKey('2001:db8:1:2:bbbb:cccc:dddd:eeee'), '2001:0db8:0001:0002::/64');
  assert.equal(ipKey('::1'), '0000:0000:0000:0000::/64');
  assert.equal(ipKey('fe80::1%eth0'), 'fe80:0000:0000:0000::/64');
  assert.equal(ipKey('::ffff:192.0.2.1'), '192.0.2.1');
  assert.equal(ipKey('192.0.2.1'), '192.0.2.1');
  const c = clock();
  const { auth } = await setup(t, { maxFailuresPerIp: 2, maxFailuresPerAccount: 100, now: c.now });
  const v6 = (ip: string): AuthMeta => ({ ip, protocol: 'smtp', secure: true });
  await auth.verifyPassword('x@example.test', 'a', v6('2001:db8:1:2::10'));
  await auth.verifyPassword('y@example.test', 'b', v6('2001:db8:1:2::20'));
  assert.deepEqual(await auth.verifyPassword('alice@example.test', 'alice-secret', v6('2001:db8:1:2::30')), {
    ok: false,
    reason: 'throttled',
  });
  assert.equal((await auth.verifyPassword('alice@example.test', 'alice-secret', v6('2001:db8:1:3::30'))).ok, true);
});

test('a successful login clears the account counter', async (t) => {
  const c = clock();
  const { auth } = await setup(t, { maxFailuresPerAccount: 3, maxFailuresPerIp: 100, now: c.now });
  for (let round = 0; round < 3; round++) {
    await auth.verifyPassword('alice@example.test', 'typo-1', meta);
    await auth.verifyPassword('alice@example.test', 'typo-2', meta);
    assert.equal((await auth.verifyPassword('alice@example.test', 'alice-secret', meta)).ok, true, `round ${round}`);
  }
});

test('failures after the third are answered after a growing, capped delay', async (t) => {
  const delays: number[] = [];
  const { auth } = await setup(t, {
    maxFailuresPerAccount: 10,
    failureDelayMs: 100,
    maxFailureDelayMs: 1000,
    sleep: async (ms) => void delays.push(ms),
  });
  for (let i = 0; i < 9; i++) await auth.verifyPassword('alice@example.test', `w${i}`, meta);
  assert.deepEqual(delays, [100, 200, 400, 800, 1000, 1000]);
});

test('the first password login stores a SCRAM verifier for that password', async (t) => {
  const { auth, accounts } = await setup(t);
  assert.equal((await accounts.get('alice@example.test'))?.scram, null);
  assert.equal((await auth.verifyPassword('alice@example.test', 'alice-secret', meta)).ok, true);
  const scram = (await accounts.get('alice@example.test'))?.scram;
  assert.ok(scram);
  const stored = parseScram(scram);
  const { credentials, account } = await auth.scramCredentials('Alice@example.test');
  assert.equal(account?.address, 'alice@example.test');
  assert.deepEqual(credentials, stored);
  // The verifier is for the right password: recomputing with its salt gives the same keys.
  assert.equal(deriveScram('alice-secret', { salt: stored.salt, iterations: stored.iterations }), scram);
});

test('a hash with an outdated cost is replaced at login', async (t) => {
  const accounts = await openAuthStore(t);
  await accounts.add('old@example.test', await hashPassword('pw', { ln: 10, r: 8, p: 1 }), { scram: deriveScram('pw') });
  const auth = createAuthenticator(accounts.store, { failureDelayMs: 0 });
  assert.equal((await auth.verifyPassword('old@example.test', 'pw', meta)).ok, true);
  const hash = (await accounts.get('old@example.test'))?.passwordHash ?? '';
  assert.match(hash, /^\$scrypt\$ln=14,/);
  assert.equal(await verifyPassword(hash, 'pw'), true);
});

test('SCRAM credentials for an unknown user are fake but stable, and differ per name', async (t) => {
  const { auth, accounts } = await setup(t);
  const a = await auth.scramCredentials('nobody@example.test');
  const b = await auth.scramCredentials('NOBODY@example.test');
  const c = await auth.scramCredentials('someone@example.test');
  assert.equal(a.account, null);
  assert.deepEqual(a.credentials, b.credentials);
  assert.notDeepEqual(a.credentials.salt, c.credentials.salt);
  assert.equal(a.credentials.salt.length, 16);
  assert.equal(a.credentials.iterations, 10000);
  // Another process (another authenticator) uses another secret.
  const other = createAuthenticator(accounts.store, { failureDelayMs: 0 });
  assert.notDeepEqual((await other.scramCredentials('nobody@example.test')).credentials.salt, a.credentials.salt);
});

test('SCRAM outcomes count against the same limits and a success clears the account counter', async (t) => {
  const c = clock();
  const { auth, alice } = await setup(t, { maxFailuresPerAccount: 3, now: c.now, blockMs: 1000 });
  assert.deepEqual(await auth.recordScramOutcome('alice@example.test', alice, false, meta), { ok: false, reason: 'invalid' });
  assert.deepEqual(await auth.recordScramOutcome('alice@example.test', alice, false, meta), { ok: false, reason: 'invalid' });
  assert.equal((await auth.recordScramOutcome('alice@example.test', alice, true, meta)).ok, true);
  for (let i = 0; i < 3; i++) await auth.recordScramOutcome('alice@example.test', alice, false, meta);
  assert.deepEqual(await auth.recordScramOutcome('alice@example.test', alice, true, meta), { ok: false, reason: 'throttled' });
  // The SCRAM lock also stops password logins.
  assert.deepEqual(await auth.verifyPassword('alice@example.test', 'alice-secret', meta), { ok: false, reason: 'throttled' });
  c.advance(1000);
  assert.equal((await auth.recordScramOutcome('alice@example.test', alice, true, meta)).ok, true);
  assert.deepEqual(await auth.recordScramOutcome('nobody@example.test', null, true, meta), { ok: false, reason: 'invalid' });
  assert.deepEqual(await auth.recordScramOutcome('gone@example.test', { ...alice, disabled: true }, true, meta), {
    ok: false,
    reason: 'disabled',
  });
});

test('parallel attempts on one account get no more guesses than the limit', async (t) => {
  const { auth } = await setup(t, { maxFailuresPerAccount: 5, maxFailuresPerIp: 1000 });
  const results = await Promise.all(
    Array.from({ length: 12 }, (_, i) => auth.verifyPassword('alice@example.test', `parallel-${i}`, i % 2 ? meta : other)),
  );
  const reasons = results.map((r) => (r.ok ? 'ok' : r.reason));
  assert.equal(reasons.filter((r) => r === 'invalid').length, 5, reasons.join(' '));
  assert.equal(reasons.filter((r) => r === 'throttled').length, 7, reasons.join(' '));
});

test('parallel logins of one user (a client opening several connections) all succeed', async (t) => {
  const { auth } = await setup(t);
  const results = await Promise.all(Array.from({ length: 5 }, () => auth.verifyPassword('alice@example.test', 'alice-secret', meta)));
  assert.deepEqual(
    results.map((r) => r.ok),
    [true, true, true, true, true],
  );
});

test("an attacker who gets an account blocked does not lock out the owner's usual IP", async (t) => {
  const c = clock();
  const day = 24 * 3600_000;
  const { auth } = await setup(t, { maxFailuresPerAccount: 3, maxFailuresPerIp: 100, blockMs: 3600_000, trustMs: 7 * day, now: c.now });
  const attacker: AuthMeta = { ip: '203.0.113.66', protocol: 'imap', secure: true };
  const fresh: AuthMeta = { ip: '203.0.113.99', protocol: 'imap', secure: true };
  assert.equal((await auth.verifyPassword('alice@example.test', 'alice-secret', meta)).ok, true); // the owner's phone
  for (let i = 0; i < 3; i++) await auth.verifyPassword('alice@example.test', `guess-${i}`, attacker);
  assert.deepEqual(await auth.verifyPassword('alice@example.test', 'alice-secret', attacker), { ok: false, reason: 'throttled' });
  assert.deepEqual(await auth.verifyPassword('alice@example.test', 'alice-secret', fresh), { ok: false, reason: 'throttled' });
  assert.equal((await auth.verifyPassword('alice@example.test', 'alice-secret', meta)).ok, true, 'the trusted IP still logs in');
  // The trusted IP's own failures are limited too.
  for (let i = 0; i < 3; i++) await auth.verifyPassword('alice@example.test', `typo-${i}`, meta);
  assert.deepEqual(await auth.verifyPassword('alice@example.test', 'alice-secret', meta), { ok: false, reason: 'throttled' });
  // Trust lapses trustMs after the last success from that IP.
  c.advance(3600_000);
  assert.equal((await auth.verifyPassword('alice@example.test', 'alice-secret', meta)).ok, true);
  c.advance(7 * day);
  for (let i = 0; i < 3; i++) await auth.verifyPassword('alice@example.test', `guess-${i}`, attacker);
  assert.deepEqual(await auth.verifyPassword('alice@example.test', 'alice-secret', meta), { ok: false, reason: 'throttled' });
});

test('a password that verified is not hashed again within the TTL; wrong ones always are', async (t) => {
  const c = clock();
  const counting = countingHash();
  const verifyHash = counting.verify;
  const { auth } = await setup(t, { now: c.now, verifyHash, verifiedPasswordTtlMs: 60_000 });
  for (let i = 0; i < 5; i++) assert.equal((await auth.verifyPassword('alice@example.test', 'alice-secret', meta)).ok, true);
  assert.equal(counting.calls, 1, 'four logins served from the cache');
  // A wrong password is hashed every time and counted as a failure, cache or not.
  for (let i = 0; i < 3; i++) assert.deepEqual(await auth.verifyPassword('alice@example.test', 'alice-secret ', meta), { ok: false, reason: 'invalid' });
  assert.equal(counting.calls, 4);
  // Past the TTL the password is hashed again (a hit does not extend the entry).
  c.advance(30_000);
  assert.equal((await auth.verifyPassword('alice@example.test', 'alice-secret', other)).ok, true);
  assert.equal(counting.calls, 4);
  c.advance(31_000);
  assert.equal((await auth.verifyPassword('alice@example.test', 'alice-secret', meta)).ok, true);
  assert.equal(counting.calls, 5);
});

test('a changed password invalidates the cached old one at once; a disabled account stays refused', async (t) => {
  const counting = countingHash();
  const verifyHash = counting.verify;
  const { auth, accounts, alice } = await setup(t, { verifyHash });
  assert.equal((await auth.verifyPassword('alice@example.test', 'alice-secret', meta)).ok, true);
  await accounts.store.updateAccount(alice.id, { passwordHash: await hashPassword('new-secret') });
  assert.deepEqual(await auth.verifyPassword('alice@example.test', 'alice-secret', meta), { ok: false, reason: 'invalid' });
  assert.equal((await auth.verifyPassword('alice@example.test', 'new-secret', meta)).ok, true);
  assert.equal((await auth.verifyPassword('alice@example.test', 'new-secret', meta)).ok, true);
  assert.equal(counting.calls, 3, 'old password hashed (and refused), new one hashed once, then cached');
  await accounts.store.updateAccount(alice.id, { disabled: true });
  assert.deepEqual(await auth.verifyPassword('alice@example.test', 'new-secret', meta), { ok: false, reason: 'disabled' });
});

test('with the cache off (TTL 0) every login is hashed', async (t) => {
  const counting = countingHash();
  const verifyHash = counting.verify;
  const { auth } = await setup(t, { verifyHash, verifiedPasswordTtlMs: 0 });
  for (let i = 0; i < 3; i++) assert.equal((await auth.verifyPassword('alice@example.test', 'alice-secret', meta)).ok, true);
  assert.equal(counting.calls, 3);
});

test('the main password of an account with a second factor is hashed on every attempt, never cached', async (t) => {
  const counting = countingHash();
  const verifyHash = counting.verify;
  const { auth, accounts, alice } = await setup(t, { verifyHash, maxFailuresPerAccount: 100, maxFailuresPerIp: 100 });
  assert.equal((await auth.verifyPassword('alice@example.test', 'alice-secret', meta)).ok, true);
  await accounts.store.updateAccount(alice.id, { totpSecret: 'JBSWY3DPEHPK3PXP' });
  for (let i = 0; i < 3; i++) assert.deepEqual(await auth.verifyPassword('alice@example.test', 'alice-secret', meta), { ok: false, reason: 'invalid' });
  assert.equal(counting.calls, 4);
});

test('60 parallel logins of one user from one IP are queued and all succeed (none is answered as a failure)', async (t) => {
  const { auth } = await setup(t, { maxFailuresPerAccount: 10, maxFailuresPerIp: 30 });
  const results = await Promise.all(Array.from({ length: 60 }, () => auth.verifyPassword('alice@example.test', 'alice-secret', meta)));
  assert.deepEqual(results.map((r) => (r.ok ? 'ok' : r.reason)), Array<string>(60).fill('ok'));
});

test("past a full queue an attempt is answered 'busy', which is no failure: the failure limit still takes as many wrong passwords", async (t) => {
  // trustMs 0: the IP's successes do not make its failures count apart (tested elsewhere).
  const { auth } = await setup(t, { maxConcurrentPerIp: 1, maxQueuedPerIp: 2, maxFailuresPerAccount: 3, maxFailuresPerIp: 1000, trustMs: 0 });
  // One runs, two wait, three find the queue full.
  const burst = await Promise.all(Array.from({ length: 6 }, () => auth.verifyPassword('alice@example.test', 'alice-secret', meta)));
  assert.deepEqual(burst.map((r) => (r.ok ? 'ok' : r.reason)), ['ok', 'ok', 'ok', 'busy', 'busy', 'busy']);
  // A burst of wrong passwords: the busy ones are not counted either.
  const wrong = await Promise.all(Array.from({ length: 6 }, (_, i) => auth.verifyPassword('alice@example.test', `wrong-${i}`, meta)));
  assert.deepEqual(wrong.map((r) => (r.ok ? 'ok' : r.reason)), ['invalid', 'invalid', 'invalid', 'busy', 'busy', 'busy']);
  // Three real failures reached the limit of 3: blocked now, even for the right password.
  assert.deepEqual(await auth.verifyPassword('alice@example.test', 'alice-secret', meta), { ok: false, reason: 'throttled' });
  // From another IP (its own queue), the account's block holds too.
  assert.deepEqual(await auth.verifyPassword('alice@example.test', 'alice-secret', other), { ok: false, reason: 'throttled' });
});

test("a full account queue (attempts from many IPs) answers 'busy', not 'throttled'", async (t) => {
  const { auth } = await setup(t, { maxQueuedPerAccount: 1, maxFailuresPerIp: 1000 });
  const ips = ['192.0.2.1', '192.0.2.2', '192.0.2.3', '192.0.2.4'];
  const results = await Promise.all(ips.map((ip) => auth.verifyPassword('alice@example.test', 'alice-secret', { ...meta, ip })));
  assert.deepEqual(results.map((r) => (r.ok ? 'ok' : r.reason)), ['ok', 'ok', 'busy', 'busy']);
});
