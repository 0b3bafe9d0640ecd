import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { scramCredentialsFor } from '../../src/auth/password.js';
import { createScramServer, type ScramServer } from '../../src/sasl/scram.js';
import { scramClient } from './scram-client.js';

const b = (s: string) => Buffer.from(s, 'utf8');

// RFC 7677 §3 example: user "user", password "pencil".
const RFC = {
  clientFirst: 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO',
  serverNonce: '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0',
  serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  clientFinal: 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverFinal: 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
};
const rfcCredentials = scramCredentialsFor('pencil', {
  salt: Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'),
  iterations: 4096,
});

function rfcServer(): ScramServer {
  return createScramServer({ nonce: () => RFC.serverNonce });
}

test('SCRAM-SHA-256 reproduces the RFC 7677 §3 exchange byte for byte', () => {
  const s = rfcServer();
  assert.deepEqual(s.receiveClientFirst(b(RFC.clientFirst)), { ok: true, username: 'user' });
  assert.equal(s.serverFirst(rfcCredentials).toString(), RFC.serverFirst);
  const final = s.receiveClientFinal(b(RFC.clientFinal));
  assert.equal(final.ok, true);
  assert.equal(final.ok && final.proofValid, true);
  assert.equal(final.ok && final.serverFinal?.toString(), RFC.serverFinal);
});

test('a wrong proof is refused and yields no server signature', () => {
  const s = rfcServer();
  s.receiveClientFirst(b(RFC.clientFirst));
  s.serverFirst(rfcCredentials);
  const wrong = RFC.clientFinal.replace('p=dHzb', 'p=dHzc');
  assert.deepEqual(s.receiveClientFinal(b(wrong)), { ok: true, proofValid: false, serverFinal: null });
});

test('a proof computed from another password is refused', () => {
  const s = createScramServer();
  const client = scramClient('user', 'not-pencil');
  s.receiveClientFirst(client.clientFirst);
  const final = s.receiveClientFinal(client.final(s.serverFirst(rfcCredentials)));
  assert.equal(final.ok && final.proofValid, false);
});

test('a random nonce is added to the client nonce each time', () => {
  const nonces = new Set<string>();
  for (let i = 0; i < 3; i++) {
    const s = createScramServer();
    s.receiveClientFirst(b('n,,n=user,r=abc'));
    const r = /^r=abc([^,]+),/.exec(s.serverFirst(rfcCredentials).toString())?.[1];
    assert.ok(r && r.length >= 24, String(r));
    nonces.add(r);
  }
  assert.equal(nonces.size, 3);
});

test('the gs2 header "y,," is accepted and must be echoed in c=', () => {
  const s = createScramServer();
  const client = scramClient('user', 'pencil', { gs2Header: 'y,,' });
  assert.equal(s.receiveClientFirst(client.clientFirst).ok, true);
  const final = s.receiveClientFinal(client.final(s.serverFirst(rfcCredentials)));
  assert.equal(final.ok && final.proofValid, true);
  assert.deepEqual(final.ok && final.serverFinal, client.expectedServerFinal());
});

test('an authzid naming the user itself is accepted, another identity is not', () => {
  const self = createScramServer();
  const client = scramClient('user', 'pencil', { gs2Header: 'n,a=USER,' });
  assert.equal(self.receiveClientFirst(client.clientFirst).ok, true);
  const final = self.receiveClientFinal(client.final(self.serverFirst(rfcCredentials)));
  assert.equal(final.ok && final.proofValid, true);
  assert.deepEqual(createScramServer().receiveClientFirst(b('n,a=admin,n=user,r=abc')), { ok: false, reason: 'invalid' });
});

test('user names are decoded (=2C, =3D) and prepared with SASLprep', () => {
  assert.deepEqual(createScramServer().receiveClientFirst(b('n,,n=a=2Cb=3Dc,r=x')), { ok: true, username: 'a,b=c' });
  assert.deepEqual(createScramServer().receiveClientFirst(b('n,,n=I\u00ADX,r=x')), { ok: true, username: 'IX' });
  assert.deepEqual(createScramServer().receiveClientFirst(b('n,,n=a\u0007b,r=x')), { ok: false, reason: 'invalid' });
});

test('channel binding ("p=") and the reserved "m" extension are refused', () => {
  assert.deepEqual(createScramServer().receiveClientFirst(b('p=tls-server-end-point,,n=user,r=abc')), {
    ok: false,
    reason: 'invalid',
  });
  assert.deepEqual(createScramServer().receiveClientFirst(b('n,,m=ext,n=user,r=abc')), { ok: false, reason: 'invalid' });
});

test('client-first messages outside the RFC 5802 §7 grammar are malformed', () => {
  const cases = [
    '',
    'n',
    'n,',
    'x,,n=user,r=abc',
    'n,,',
    'n,,r=abc,n=user',
    'n,,n=user',
    'n,,n=,r=abc',
    'n,,n=user,r=',
    'n,,n=us=er,r=abc',
    'n,,n=user,r=a,bc',
    'n,,n=user,r=abc,=x',
    'n,,n=user,r=ab c',
    'n,b=x,n=user,r=abc',
    'n,a=,n=user,r=abc',
    'n,,n=' + 'u'.repeat(321) + ',r=abc',
    'n,,n=user,r=' + 'x'.repeat(257),
    'n,,n=user,r=' + 'x'.repeat(5000),
  ];
  for (const c of cases) {
    assert.deepEqual(createScramServer().receiveClientFirst(b(c)), { ok: false, reason: 'malformed' }, JSON.stringify(c));
  }
  assert.deepEqual(createScramServer().receiveClientFirst(Buffer.from([0x6e, 0x2c, 0x2c, 0xff])), {
    ok: false,
    reason: 'malformed',
  });
});

test('client-final messages are checked: structure, channel binding, nonce, proof size', () => {
  const nonce = 'rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0';
  const proof = 'dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=';
  const cases: Array<[string, 'malformed' | 'invalid']> = [
    ['', 'malformed'],
    [`c=biws,r=${nonce}`, 'malformed'], // no proof
    [`r=${nonce},c=biws,p=${proof}`, 'malformed'], // wrong order
    [`c=biws,r=${nonce},p=`, 'malformed'],
    [`c=biws,r=${nonce},p=!!!!`, 'malformed'],
    [`c=biws,r=${nonce},p=AAAA`, 'malformed'], // proof not 32 bytes
    [`c=bi*s,r=${nonce},p=${proof}`, 'malformed'],
    [`c=biws,r=${nonce},=x,p=${proof}`, 'malformed'],
    [`c=eSws,r=${nonce},p=${proof}`, 'invalid'], // "y,," although the client sent "n,,"
    [`c=biws,r=rOprNGfwEbeRWgbNEkqO,p=${proof}`, 'invalid'], // client nonce only
    [`c=biws,r=${nonce}x,p=${proof}`, 'invalid'],
  ];
  for (const [input, reason] of cases) {
    const s = rfcServer();
    s.receiveClientFirst(b(RFC.clientFirst));
    s.serverFirst(rfcCredentials);
    assert.deepEqual(s.receiveClientFinal(b(input)), { ok: false, reason }, input);
  }
});

test('steps out of order are malformed and the machine ends after the final message', () => {
  const s = rfcServer();
  assert.deepEqual(s.receiveClientFinal(b(RFC.clientFinal)), { ok: false, reason: 'malformed' });
  const t = rfcServer();
  t.receiveClientFirst(b(RFC.clientFirst));
  assert.deepEqual(t.receiveClientFirst(b(RFC.clientFirst)), { ok: false, reason: 'malformed' });
  const u = rfcServer();
  u.receiveClientFirst(b(RFC.clientFirst));
  u.serverFirst(rfcCredentials);
  assert.equal(u.receiveClientFinal(b(RFC.clientFinal)).ok, true);
  assert.deepEqual(u.receiveClientFinal(b(RFC.clientFinal)), { ok: false, reason: 'malformed' }, 'no replay');
});
