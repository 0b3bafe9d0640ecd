import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import {
  classifyTransferEncoding,
  decodeBase64Lenient,
  decodeQuotedPrintable,
  decodeTransfer,
} from '../../src/mail/transfer.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

test('identity encodings return the body unchanged (RFC 2045 §6.2)', () => {
  for (const enc of [null, undefined, '7bit', '8BIT', ' binary ', '']) {
    const r = decodeTransfer(b('a\r\nb=3D'), enc);
    assert.ok(r.ok);
    assert.equal(r.data.toString('latin1'), 'a\r\nb=3D');
  }
});

test('an unknown transfer encoding is reported, not guessed (RFC 3516 §4.3 UNKNOWN-CTE)', () => {
  assert.deepEqual(decodeTransfer(b('x'), 'x-uuencode'), { ok: false, reason: 'unknown-cte', encoding: 'x-uuencode' });
  assert.equal(classifyTransferEncoding('X-Token'), null);
  assert.equal(classifyTransferEncoding('Base64'), 'base64');
  assert.equal(classifyTransferEncoding('Quoted-Printable'), 'quoted-printable');
});

test('base64 decoding skips line breaks and garbage and tolerates missing padding', () => {
  assert.equal(decodeBase64Lenient(b('aGVs\r\nbG8g\nd29y bGQ=')).toString(), 'hello world');
  assert.equal(decodeBase64Lenient(b('aGVsbG8')).toString(), 'hello');
  assert.equal(decodeBase64Lenient(b('aGV*sb!G8=')).toString(), 'hello');
  assert.equal(decodeBase64Lenient(b('aGk=aGk=')).toString(), 'hihi');
  assert.equal(decodeBase64Lenient(b('')).length, 0);
  assert.equal(decodeBase64Lenient(b('====')).length, 0);
  const random = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7919) % 256));
  const wrapped = random.toString('base64').replace(/(.{76})/g, '$1\r\n');
  assert.deepEqual(decodeBase64Lenient(b(wrapped)), random);
  const r = decodeTransfer(b(wrapped), 'BASE64');
  assert.ok(r.ok && r.data.equals(random));
});

test('quoted-printable decodes escapes, joins soft line breaks, drops trailing whitespace (RFC 2045 §6.7)', () => {
  assert.equal(decodeQuotedPrintable(b('caf=C3=A9')).toString(), 'café');
  assert.equal(decodeQuotedPrintable(b('long=\r\nline')).toString(), 'longline');
  assert.equal(decodeQuotedPrintable(b('long=  \nline')).toString(), 'longline');
  assert.equal(decodeQuotedPrintable(b('a  \r\nb\t\nc ')).toString(), 'a\r\nb\nc');
  assert.equal(decodeQuotedPrintable(b('a = b =ZZ =4')).toString(), 'a = b =ZZ =4');
  assert.equal(decodeQuotedPrintable(b('x=3d=3D')).toString(), 'x==');
  assert.equal(decodeQuotedPrintable(b('end=')).toString(), 'end');
});
