import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import {
  base32Decode,
  base32Encode,
  generateTotpSecret,
  hotp,
  otpauthUri,
  totpCode,
  totpStep,
  verifyTotp,
} from '../../src/auth/totp.js';

// RFC 6238 Appendix B and RFC 4226 Appendix D use this ASCII key for HMAC-SHA-1.
const RFC_KEY = Buffer.from('12345678901234567890', 'ascii');

test('TOTP matches the RFC 6238 Appendix B SHA-1 test vectors (8 digits)', () => {
  const vectors: Array<[seconds: number, code: string]> = [
    [59, '94287082'],
    [1111111109, '07081804'],
    [1111111111, '14050471'],
    [1234567890, '89005924'],
    [2000000000, '69279037'],
    [20000000000, '65353130'],
  ];
  for (const [seconds, code] of vectors) assert.equal(totpCode(RFC_KEY, seconds * 1000, 8), code, `T=${seconds}`);
});

test('HOTP matches the RFC 4226 Appendix D test vectors (6 digits)', () => {
  const codes = ['755224', '287082', '359152', '969429', '338314', '254676', '287922', '162583', '399871', '520489'];
  codes.forEach((code, counter) => assert.equal(hotp(RFC_KEY, counter), code, `counter ${counter}`));
});

test('base32 follows RFC 4648 §10 (without padding) and decodes case-, space- and padding-insensitively', () => {
  const vectors: Array<[string, string]> = [
    ['', ''],
    ['f', 'MY'],
    ['fo', 'MZXQ'],
    ['foo', 'MZXW6'],
    ['foob', 'MZXW6YQ'],
    ['fooba', 'MZXW6YTB'],
    ['foobar', 'MZXW6YTBOI'],
  ];
  for (const [plain, encoded] of vectors) {
    assert.equal(base32Encode(Buffer.from(plain)), encoded);
    assert.equal(base32Decode(encoded)?.toString(), plain);
  }
  assert.equal(base32Decode('mzxw 6ytb oi======')?.toString(), 'foobar');
  assert.equal(base32Decode('MZXW1'), null, '1 is not in the alphabet');
});

test('a generated secret is 160 random bits in base32, different each time', () => {
  const a = generateTotpSecret();
  const b = generateTotpSecret();
  assert.match(a, /^[A-Z2-7]{32}$/);
  assert.equal(base32Decode(a)?.length, 20);
  assert.notEqual(a, b);
});

test('verifyTotp accepts the current step and one either side, and refuses further ones', () => {
  const secret = base32Encode(RFC_KEY);
  const now = 1_700_000_000_000;
  const step = totpStep(now);
  for (const delta of [-1, 0, 1]) {
    const code = hotp(RFC_KEY, step + delta);
    assert.deepEqual(verifyTotp(secret, code, { now, lastStep: null }), { ok: true, step: step + delta }, `delta ${delta}`);
  }
  for (const delta of [-2, 2, 10]) {
    assert.deepEqual(verifyTotp(secret, hotp(RFC_KEY, step + delta), { now, lastStep: null }), { ok: false, reason: 'wrong' });
  }
  // Spaces as apps display them are fine.
  const code = hotp(RFC_KEY, step);
  assert.equal(verifyTotp(secret, `${code.slice(0, 3)} ${code.slice(3)}`, { now, lastStep: null }).ok, true);
});

test('verifyTotp refuses a code whose step was already accepted, or an earlier one (replay)', () => {
  const secret = base32Encode(RFC_KEY);
  const now = 1_700_000_000_000;
  const step = totpStep(now);
  const code = hotp(RFC_KEY, step);
  assert.deepEqual(verifyTotp(secret, code, { now, lastStep: step }), { ok: false, reason: 'replayed' });
  assert.deepEqual(verifyTotp(secret, hotp(RFC_KEY, step - 1), { now, lastStep: step }), { ok: false, reason: 'replayed' });
  // The next step's code is still good after the current one was used.
  assert.deepEqual(verifyTotp(secret, hotp(RFC_KEY, step + 1), { now, lastStep: step }), { ok: true, step: step + 1 });
});

test('verifyTotp refuses malformed codes and secrets', () => {
  const secret = base32Encode(RFC_KEY);
  const now = 1_700_000_000_000;
  for (const code of ['', '12345', '1234567', 'abcdef', '12345x', '١٢٣٤٥٦']) {
    assert.deepEqual(verifyTotp(secret, code, { now, lastStep: null }), { ok: false, reason: 'malformed' }, JSON.stringify(code));
  }
  assert.deepEqual(verifyTotp('not base32!', hotp(RFC_KEY, totpStep(now)), { now, lastStep: null }), { ok: false, reason: 'malformed' });
});

test('otpauthUri carries the secret, issuer and the default parameters, escaped', () => {
  const uri = new URL(otpauthUri('JBSWY3DPEHPK3PXP', 'bob@example.com', 'Mail Example'));
  assert.equal(uri.protocol, 'otpauth:');
  assert.equal(uri.host, 'totp');
  assert.equal(decodeURIComponent(uri.pathname), '/Mail Example:bob@example.com');
  assert.equal(uri.searchParams.get('secret'), 'JBSWY3DPEHPK3PXP');
  assert.equal(uri.searchParams.get('issuer'), 'Mail Example');
  assert.equal(uri.searchParams.get('algorithm'), 'SHA1');
  assert.equal(uri.searchParams.get('digits'), '6');
  assert.equal(uri.searchParams.get('period'), '30');
});
