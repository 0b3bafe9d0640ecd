import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import {
  deriveScram,
  hashPassword,
  isKnownHash,
  needsRehash,
  parseScram,
  SCRAM_ITERATIONS,
  scramCredentialsFor,
  verifyPassword,
} from '../../src/auth/password.js';

test('a password verifies against its own hash and a wrong one does not', async () => {
  const hash = await hashPassword('correct horse battery staple');
  assert.equal(await verifyPassword(hash, 'correct horse battery staple'), true);
  assert.equal(await verifyPassword(hash, 'correct horse battery stapl'), false);
  assert.equal(await verifyPassword(hash, ''), false);
});

test('hashes use the scrypt encoding with a fresh 16-byte salt each time', async () => {
  const a = await hashPassword('same');
  const b = await hashPassword('same');
  const re = /^\$scrypt\$ln=14,r=8,p=1\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})$/;
  const ma = re.exec(a);
  assert.ok(ma, a);
  assert.equal(Buffer.from(ma[1] ?? '', 'base64').length, 16);
  assert.equal(Buffer.from(ma[2] ?? '', 'base64').length, 32);
  assert.notEqual(a, b);
  assert.equal(isKnownHash(a), true);
  assert.equal(needsRehash(a), false);
});

test('unknown, foreign and out-of-bounds hash formats never verify', async () => {
  const good = await hashPassword('pw');
  const [, , params = '', salt = '', key = ''] = good.split('$');
  const refused = [
    '',
    'pw',
    '$2b$10$abcdefghijklmnopqrstuuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZa',
    `$scrypt$${params}$${salt}`,
    `$scrypt$ln=40,r=8,p=1$${salt}$${key}`, // 2^40 would exhaust memory
    `$scrypt$ln=9,r=8,p=1$${salt}$${key}`,
    `$scrypt$ln=14,r=8,p=0$${salt}$${key}`,
    `$scrypt$ln=14,r=8,p=1$${salt}$${key.slice(0, 8)}`,
    `$scrypt$ln=14,r=8,p=1$${salt}$${key}$`,
    ` ${good}`,
  ];
  for (const hash of refused) {
    assert.equal(isKnownHash(hash), false, hash);
    assert.equal(await verifyPassword(hash, 'pw'), false, hash);
  }
  assert.equal(await verifyPassword(good, 'pw'), true);
});

test('a hash with an older cost verifies and asks to be recomputed', async () => {
  const old = await hashPassword('pw', { ln: 10, r: 8, p: 1 });
  assert.equal(await verifyPassword(old, 'pw'), true);
  assert.equal(needsRehash(old), true);
});

test('passwords are compared after SASLprep (RFC 4013), so equivalent Unicode forms match', async () => {
  const hash = await hashPassword('a\u00A0b\u00ADc'); // non-ASCII space and soft hyphen
  assert.equal(await verifyPassword(hash, 'a bc'), true);
  const roman = await hashPassword('\u2168'); // ROMAN NUMERAL NINE, NFKC "IX"
  assert.equal(await verifyPassword(roman, 'IX'), true);
  assert.equal(await verifyPassword(roman, 'ix'), false);
});

test('deriveScram produces an RFC 5803 verifier that parseScram reads back', () => {
  const s = deriveScram('pencil');
  assert.match(s, /^SCRAM-SHA-256\$10000:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$/);
  const c = parseScram(s);
  assert.equal(c.iterations, SCRAM_ITERATIONS);
  assert.ok(c.iterations >= 4096);
  assert.equal(c.salt.length, 16);
  assert.equal(c.storedKey.length, 32);
  assert.equal(c.serverKey.length, 32);
  assert.notEqual(deriveScram('pencil'), s, 'a fresh salt each time');
});

test('SCRAM keys for the RFC 7677 example salt match the RFC computation', () => {
  const salt = Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64');
  const s = deriveScram('pencil', { salt, iterations: 4096 });
  const c = parseScram(s);
  assert.deepEqual(c, scramCredentialsFor('pencil', { salt, iterations: 4096 }));
  // StoredKey/ServerKey of "pencil" with this salt, as computed by RFC 5802 §3.
  assert.equal(c.storedKey.toString('base64'), 'WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=');
  assert.equal(c.serverKey.toString('base64'), 'wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=');
});

test('parseScram refuses malformed verifiers and iteration counts below 4096', () => {
  const good = deriveScram('pw');
  const [, rest = ''] = good.split('$', 2);
  const bad = [
    '',
    'SCRAM-SHA-1$4096:c2FsdHNhbHQ=$a:b',
    good.replace('SCRAM-SHA-256$10000', 'SCRAM-SHA-256$1000'),
    good.replace(/\$[^$]*$/, '$AAAA:AAAA'),
    `SCRAM-SHA-256$${rest}`.slice(0, -4),
    good + '$',
  ];
  for (const s of bad) assert.throws(() => parseScram(s), /Cannot parse SCRAM verifier/, s);
});
