import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { encodeNulParts } from '../../src/mail/nul-parts.js';
import { parseMessage } from '../../src/mail/parse.js';
import { decodeTransfer } from '../../src/mail/transfer.js';
import type { MimePart } from '../../src/mail/types.js';

const BINARY = Buffer.from([0x00, 0x2d, 0xe4, 0x0a, 0x0d, 0x0a, 0x0a, 0x00, 0xff]);

function msg(...pieces: Array<string | Buffer>): Buffer {
  return Buffer.concat(pieces.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : p)));
}

/** The decoded content of a leaf part, as BINARY[] would return it. */
function content(raw: Buffer, part: MimePart): Buffer {
  const r = decodeTransfer(raw.subarray(part.bodyStart, part.bodyEnd), part.encoding);
  assert.ok(r.ok);
  return r.data;
}

test('a message without NUL is returned unchanged (same buffer)', () => {
  const raw = msg('Subject: x\r\n\r\nhello\r\n');
  assert.equal(encodeNulParts(raw, parseMessage(raw)), raw);
});

test('a single binary part has its Content-Transfer-Encoding replaced and its data kept', () => {
  const raw = msg('From: a@b.example\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\nX-After: 1\r\n\r\n', BINARY);
  const out = encodeNulParts(raw, parseMessage(raw));
  assert.ok(out !== null);
  assert.equal(out.includes(0), false);
  const text = out.toString('latin1');
  assert.match(text, /\r\nContent-Transfer-Encoding: base64\r\nX-After: 1\r\n\r\n/);
  assert.equal(/binary/i.test(text), false);
  const p = parseMessage(out);
  assert.equal(p.root.encoding, 'base64');
  assert.deepEqual(content(out, p.root), BINARY);
});

test('a folded Content-Transfer-Encoding field is replaced whole; a missing one is added', () => {
  const folded = msg('Subject: x\r\nContent-Transfer-Encoding:\r\n  8bit\r\n\r\n', BINARY);
  const a = encodeNulParts(folded, parseMessage(folded));
  assert.ok(a !== null);
  assert.equal(a.toString('latin1').split('\r\n\r\n')[0], 'Subject: x\r\nContent-Transfer-Encoding: base64');
  const none = msg('Subject: y\r\n\r\n', BINARY);
  const b = encodeNulParts(none, parseMessage(none));
  assert.ok(b !== null);
  assert.equal(b.toString('latin1').split('\r\n\r\n')[0], 'Subject: y\r\nContent-Transfer-Encoding: base64');
  assert.deepEqual(content(b, parseMessage(b).root), BINARY);
});

test('only the NUL-holding leaf of a multipart is rewritten; boundaries and siblings stay', () => {
  const raw = msg(
    'Content-Type: multipart/mixed; boundary="b1"\r\n\r\npreamble\r\n--b1\r\nContent-Type: text/plain\r\n\r\nplain text\r\n',
    '--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n', BINARY, '\r\n--b1--\r\nepilogue\r\n',
  );
  const out = encodeNulParts(raw, parseMessage(raw));
  assert.ok(out !== null);
  const p = parseMessage(out);
  assert.equal(p.root.parts.length, 2);
  assert.equal(out.subarray(p.root.parts[0]!.bodyStart, p.root.parts[0]!.bodyEnd).toString(), 'plain text');
  assert.equal(p.root.parts[1]!.encoding, 'base64');
  assert.deepEqual(content(out, p.root.parts[1]!), BINARY);
  assert.match(out.toString('latin1'), /--b1--\r\nepilogue\r\n$/);
});

test('a long binary body is wrapped in 76-character base64 lines', () => {
  const big = Buffer.alloc(1000, 0);
  const raw = msg('Subject: z\r\n\r\n', big);
  const out = encodeNulParts(raw, parseMessage(raw));
  assert.ok(out !== null);
  const lines = out.toString('latin1').split('\r\n\r\n')[1]!.split('\r\n');
  assert.ok(lines.every((l) => l.length <= 76));
  assert.deepEqual(content(out, parseMessage(out).root), big);
});

test('NUL where re-encoding cannot remove it is refused', () => {
  const inHeader = msg('Subject: a\x00b\r\n\r\nbody');
  assert.equal(encodeNulParts(inHeader, parseMessage(inHeader)), null);
  const inBase64 = msg('Content-Transfer-Encoding: base64\r\n\r\n', BINARY);
  assert.equal(encodeNulParts(inBase64, parseMessage(inBase64)), null);
  const inPreamble = msg('Content-Type: multipart/mixed; boundary="b"\r\n\r\npre\x00amble\r\n--b\r\n\r\nx\r\n--b--\r\n');
  assert.equal(encodeNulParts(inPreamble, parseMessage(inPreamble)), null);
});
