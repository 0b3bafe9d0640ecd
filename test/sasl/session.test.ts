import { strict as assert } from 'node:assert';
import { test, type TestContext } from 'node:test';
import { createAuthenticator } from '../../src/auth/authenticator.js';
import { deriveScram, hashPassword } from '../../src/auth/password.js';
import type { AuthMeta } from '../../src/context.js';
import { createSaslSession, isKnownMechanism, isPlaintextMechanism, saslMechanisms } from '../../src/sasl/session.js';
import type { SaslSession, SaslStep } from '../../src/sasl/types.js';
import { openAuthStore } from '../auth/accounts.js';
import { scramClient } from './scram-client.js';

const secure: AuthMeta = { ip: '192.0.2.1', protocol: 'imap', secure: true };
const clear: AuthMeta = { ip: '192.0.2.1', protocol: 'imap', secure: false };
const b = (s: string) => Buffer.from(s, 'utf8');

/** A real SQLite store (fresh temp directory) with one account. */
async function setup(t: TestContext) {
  const accounts = await openAuthStore(t);
  const tim = await accounts.add('tim@example.test', await hashPassword('tanstaaftanstaaf'));
  const auth = createAuthenticator(accounts.store, { failureDelayMs: 0 });
  return { accounts, tim, auth };
}

function session(name: string, auth: Parameters<typeof createSaslSession>[1], meta = secure): SaslSession {
  const s = createSaslSession(name, auth, meta);
  assert.ok(s, name);
  return s;
}

function challenge(step: SaslStep): Buffer {
  assert.equal(step.kind, 'challenge', JSON.stringify(step));
  return step.kind === 'challenge' ? step.data : Buffer.alloc(0);
}

test('PLAIN and LOGIN are offered only on secure or local connections; SCRAM-SHA-256 always', () => {
  assert.deepEqual(saslMechanisms(true), ['SCRAM-SHA-256', 'PLAIN', 'LOGIN']);
  assert.deepEqual(saslMechanisms(false), ['SCRAM-SHA-256']);
  assert.equal(isKnownMechanism('plain'), true);
  assert.equal(isKnownMechanism('CRAM-MD5'), false);
  assert.equal(isPlaintextMechanism('login'), true);
  assert.equal(isPlaintextMechanism('SCRAM-SHA-256'), false);
});

test('no session for an unknown mechanism, nor for PLAIN/LOGIN in clear unless allowed', async (t) => {
  const { auth } = await setup(t);
  assert.equal(createSaslSession('CRAM-MD5', auth, secure), null);
  assert.equal(createSaslSession('SCRAM-SHA-256-PLUS', auth, secure), null);
  assert.equal(createSaslSession('PLAIN', auth, clear), null);
  assert.equal(createSaslSession('LOGIN', auth, clear), null);
  assert.notEqual(createSaslSession('SCRAM-SHA-256', auth, clear), null);
  assert.notEqual(createSaslSession('plain', auth, clear, { allowPlaintext: true }), null);
  assert.equal(createSaslSession('PLAIN', auth, secure, { allowPlaintext: false }), null);
});

test('PLAIN with an initial response logs in (RFC 4616 example credentials)', async (t) => {
  const { auth, tim } = await setup(t);
  const step = await session('PLAIN', auth).step(b('\0tim@example.test\0tanstaaftanstaaf'));
  assert.equal(step.kind, 'success');
  assert.equal(step.kind === 'success' && step.account.id, tim.id);
});

test('PLAIN without an initial response sends one empty challenge first', async (t) => {
  const { auth } = await setup(t);
  const s = session('PLAIN', auth);
  assert.equal(challenge(await s.step(null)).length, 0);
  assert.equal((await s.step(b('\0tim@example.test\0tanstaaftanstaaf'))).kind, 'success');
  assert.deepEqual(await s.step(b('again')), { kind: 'failure', reason: 'malformed' }, 'the session is over');
});

test('PLAIN failures: wrong password, other authzid, malformed message', async (t) => {
  const { auth } = await setup(t);
  assert.deepEqual(await session('PLAIN', auth).step(b('\0tim@example.test\0nope')), { kind: 'failure', reason: 'invalid' });
  assert.deepEqual(await session('PLAIN', auth).step(b('admin@example.test\0tim@example.test\0tanstaaftanstaaf')), {
    kind: 'failure',
    reason: 'invalid',
  });
  assert.deepEqual(await session('PLAIN', auth).step(b('tim@example.test')), { kind: 'failure', reason: 'malformed' });
  const s = session('PLAIN', auth);
  await s.step(null);
  assert.deepEqual(await s.step(null), { kind: 'failure', reason: 'malformed' });
});

test('LOGIN asks Username: then Password: and logs in', async (t) => {
  const { auth, tim } = await setup(t);
  const s = session('LOGIN', auth);
  assert.equal(challenge(await s.step(null)).toString(), 'Username:');
  assert.equal(challenge(await s.step(b('tim@example.test'))).toString(), 'Password:');
  const done = await s.step(b('tanstaaftanstaaf'));
  assert.equal(done.kind === 'success' && done.account.id, tim.id);
  const wrong = session('LOGIN', auth);
  challenge(await wrong.step(b('tim@example.test')));
  assert.deepEqual(await wrong.step(b('bad')), { kind: 'failure', reason: 'invalid' });
});

async function scramExchange(s: SaslSession, client: ReturnType<typeof scramClient>, initial = true): Promise<SaslStep> {
  if (!initial) assert.equal(challenge(await s.step(null)).length, 0);
  const serverFirst = challenge(await s.step(client.clientFirst));
  return s.step(client.final(serverFirst));
}

test('SCRAM-SHA-256 works after the first password login stored the verifier', async (t) => {
  const { auth, tim } = await setup(t);
  // Before any password login there is no verifier: the exchange fails at the proof.
  assert.deepEqual(await scramExchange(session('SCRAM-SHA-256', auth), scramClient('tim@example.test', 'tanstaaftanstaaf')), {
    kind: 'failure',
    reason: 'invalid',
  });
  assert.equal((await session('PLAIN', auth).step(b('\0tim@example.test\0tanstaaftanstaaf'))).kind, 'success');
  for (const initial of [true, false]) {
    const client = scramClient('Tim@Example.test', 'tanstaaftanstaaf');
    const done = await scramExchange(session('SCRAM-SHA-256', auth, clear), client, initial);
    assert.equal(done.kind, 'success');
    assert.equal(done.kind === 'success' && done.account.id, tim.id);
    assert.deepEqual(done.kind === 'success' && done.data, client.expectedServerFinal(), 'server-final v= proves the server');
  }
});

test('SCRAM-SHA-256 with the RFC 7677 salt, iteration count and nonces gives the expected messages', async (t) => {
  const accounts = await openAuthStore(t);
  await accounts.add('user@example.test', await hashPassword('pencil'), {
    scram: deriveScram('pencil', { salt: Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'), iterations: 4096 }),
  });
  const auth = createAuthenticator(accounts.store, { failureDelayMs: 0 });
  const s = createSaslSession('SCRAM-SHA-256', auth, secure, { scramNonce: () => '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0' });
  assert.ok(s);
  const client = scramClient('user@example.test', 'pencil', { nonce: 'rOprNGfwEbeRWgbNEkqO' });
  assert.equal(client.clientFirst.toString(), 'n,,n=user@example.test,r=rOprNGfwEbeRWgbNEkqO');
  const serverFirst = challenge(await s.step(client.clientFirst));
  assert.equal(
    serverFirst.toString(),
    'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  );
  const done = await s.step(client.final(serverFirst));
  assert.equal(done.kind, 'success');
  assert.deepEqual(done.kind === 'success' && done.data, client.expectedServerFinal());
});

test('SCRAM-SHA-256 with a wrong password or an unknown user fails at the proof, the same way', async (t) => {
  const { auth } = await setup(t);
  await session('PLAIN', auth).step(b('\0tim@example.test\0tanstaaftanstaaf'));
  const wrong = await scramExchange(session('SCRAM-SHA-256', auth), scramClient('tim@example.test', 'wrong'));
  const unknown = await scramExchange(session('SCRAM-SHA-256', auth), scramClient('ghost@example.test', 'x'));
  assert.deepEqual(wrong, { kind: 'failure', reason: 'invalid' });
  assert.deepEqual(unknown, { kind: 'failure', reason: 'invalid' });
  // The unknown user gets a stable salt, like a real account.
  const salt = async () => /,s=([^,]+),/.exec(challenge(await session('SCRAM-SHA-256', auth).step(scramClient('ghost@example.test', 'x').clientFirst)).toString())?.[1];
  assert.equal(await salt(), await salt());
});

test('SCRAM-SHA-256 failures count toward the lockout', async (t) => {
  const accounts = await openAuthStore(t);
  await accounts.add('tim@example.test', await hashPassword('pw'), { scram: deriveScram('pw') });
  const auth = createAuthenticator(accounts.store, { failureDelayMs: 0, maxFailuresPerAccount: 2 });
  for (let i = 0; i < 2; i++) await scramExchange(session('SCRAM-SHA-256', auth), scramClient('tim@example.test', 'bad'));
  assert.deepEqual(await scramExchange(session('SCRAM-SHA-256', auth), scramClient('tim@example.test', 'pw')), {
    kind: 'failure',
    reason: 'throttled',
  });
});

test('SCRAM-SHA-256 malformed messages fail as malformed', async (t) => {
  const { auth } = await setup(t);
  assert.deepEqual(await session('SCRAM-SHA-256', auth).step(b('garbage')), { kind: 'failure', reason: 'malformed' });
  const s = session('SCRAM-SHA-256', auth);
  challenge(await s.step(b('n,,n=tim@example.test,r=abc')));
  assert.deepEqual(await s.step(b('c=biws')), { kind: 'failure', reason: 'malformed' });
  assert.deepEqual(await s.step(b('c=biws')), { kind: 'failure', reason: 'malformed' }, 'still over');
});
