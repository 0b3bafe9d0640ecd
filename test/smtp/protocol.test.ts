import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { domainToASCII, domainToUnicode } from 'node:url';
import { MessageReceiver, InputBuffer } from '../../src/smtp/protocol/data.js';
import { parseCommand } from '../../src/smtp/protocol/command.js';
import { isDomain, isDotString, parseMailbox } from '../../src/smtp/protocol/address.js';
import { formatReply, reply } from '../../src/smtp/protocol/reply.js';

function receive(input: Buffer, splits: number[] = []): { message: Buffer; rest: Buffer | null; r: MessageReceiver } {
  const r = new MessageReceiver({ mode: 'dot', maxSize: 1 << 20, maxLineLength: 10_000 });
  const points = [0, ...splits, input.length];
  for (let k = 0; k + 1 < points.length; k++) {
    const chunk = input.subarray(points[k], points[k + 1]);
    const end = r.push(chunk);
    if (end !== -1) {
      const rest = Buffer.concat([chunk.subarray(end), input.subarray(points[k + 1])]);
      return { message: r.finish(), rest, r };
    }
  }
  return { message: r.finish(), rest: null, r };
}

const CASES: Array<[name: string, input: string, message: string | null, rest?: string]> = [
  ['empty message', '.\r\n', ''],
  ['simple', 'a\r\nb\r\n.\r\nNOOP\r\n', 'a\r\nb\r\n', 'NOOP\r\n'],
  ['dot-stuffed line', '..x\r\n..\r\n.\r\n', '.x\r\n.\r\n'],
  ['bare LF dot LF is content', 'a\n.\nb\r\n.\r\n', 'a\r\n.\r\nb\r\n', ''],
  ['LF dot CRLF is content', 'a\n.\r\nb\r\n.\r\n', 'a\r\n.\r\nb\r\n'],
  ['CRLF dot LF is content', 'a\r\n.\nb\r\n.\r\n', 'a\r\n\r\nb\r\n'],
  ['CR dot CR is content', 'a\r.\rb\r\n.\r\n', 'a\r\n.\r\nb\r\n'],
  ['CRLF dot CR is content', 'a\r\n.\rb\r\n.\r\n', 'a\r\n\r\nb\r\n'],
  ['no terminator', 'a\r\nb\r\n', null],
];

test('DATA receiver: only CRLF.CRLF ends the data, at every split position', () => {
  for (const [name, input, message, rest] of CASES) {
    const buf = Buffer.from(input, 'latin1');
    for (let i = 0; i <= buf.length; i++) {
      for (const j of [i, Math.min(buf.length, i + 1), Math.min(buf.length, i + 2)]) {
        const got = receive(buf, i === j ? [i] : [i, j]);
        if (message === null) {
          assert.equal(got.rest, null, `${name}: ended`);
        } else {
          assert.notEqual(got.rest, null, `${name}: did not end (split ${i},${j})`);
          assert.equal(got.message.toString('latin1'), message, `${name} (split ${i},${j})`);
          if (rest !== undefined) assert.equal(got.rest!.toString('latin1'), rest, `${name}: rest`);
        }
      }
    }
  }
});

test('DATA receiver: dot-stuffing then receiving gives back any CRLF message (property)', () => {
  const line = fc.stringMatching(/^[ -~]{0,20}$/);
  fc.assert(
    fc.property(fc.array(line, { maxLength: 12 }), fc.array(fc.nat(200), { maxLength: 4 }), (lines, cuts) => {
      const message = lines.map((l) => `${l}\r\n`).join('');
      const wire = Buffer.from(`${message.replace(/^\./gm, '..')}.\r\nQUIT\r\n`, 'latin1');
      const splits = [...new Set(cuts.map((c) => c % (wire.length + 1)))].sort((a, b) => a - b);
      const got = receive(wire, splits);
      assert.equal(got.message.toString('latin1'), message);
      assert.equal(got.rest!.toString('latin1'), 'QUIT\r\n');
    }),
    { seed: 5321, numRuns: 300 },
  );
});

test('DATA receiver: over-size and over-long lines are flagged and still read to the end', () => {
  const r = new MessageReceiver({ mode: 'dot', maxSize: 10, maxLineLength: 5 });
  assert.equal(r.push(Buffer.from('abcdefgh\r\n')), -1);
  assert.equal(r.lineTooLong, true);
  const end = r.push(Buffer.from('0123456789\r\n.\r\nNEXT'));
  assert.equal(end, '0123456789\r\n.\r\n'.length);
  assert.equal(r.tooBig, true);
});

test('BDAT receiver keeps dots, normalises bare line ends and completes a trailing CR', () => {
  const r = new MessageReceiver({ mode: 'raw', maxSize: 1000, maxLineLength: 1000 });
  r.push(Buffer.from('.a\n.\r\n'));
  r.push(Buffer.from('b\r'));
  assert.equal(r.finish().toString(), '.a\r\n.\r\nb\r\n');
});

test('input buffer: lines with CRLF or LF, over-long lines reported once and skipped', () => {
  const b = new InputBuffer();
  b.push(Buffer.from('NOOP\r\nRSET\nxxxxxxxxxxxx'));
  assert.equal(b.readLine(10)!.toString(), 'NOOP');
  assert.equal(b.readLine(10)!.toString(), 'RSET');
  assert.equal(b.readLine(10), 'too-long');
  b.push(Buffer.from('yyyy\r\nQUIT\r\n'));
  assert.equal(b.readLine(10)!.toString(), 'QUIT');
  assert.equal(b.readLine(10), null);
});

test('command parser: RFC 5321 paths, ESMTP parameters and refusals', () => {
  const ok = (line: string) => {
    const r = parseCommand(Buffer.from(line, 'utf8'));
    assert.ok(r.ok, `${line}: ${r.ok ? '' : r.reply.lines[0]}`);
    return r.command;
  };
  const bad = (line: string, code: number) => {
    const r = parseCommand(Buffer.from(line, 'utf8'));
    assert.ok(!r.ok, `${line} parsed`);
    assert.equal(r.reply.code, code, `${line}: ${r.reply.code}`);
  };
  assert.deepEqual(ok('mail from:<>'), { verb: 'MAIL', from: null, params: { size: null, body: null, smtputf8: false, ret: null, envid: null, auth: null, requireTls: false } });
  const m = ok('MAIL FROM:<"a b"@Example.COM> SIZE=100 BODY=8bitmime SMTPUTF8');
  assert.equal(m.verb, 'MAIL');
  if (m.verb === 'MAIL') {
    assert.equal(m.from!.address, '"a b"@example.com');
    assert.equal(m.params.size, 100);
    assert.equal(m.params.body, '8BITMIME');
  }
  const q = ok('RCPT TO:<"bob"@example.com>');
  if (q.verb === 'RCPT' && q.to !== 'postmaster') assert.equal(q.to.address, 'bob@example.com', 'unneeded quotes dropped');
  const route = ok('RCPT TO:<@a.example,@b.example:u@d.example>');
  if (route.verb === 'RCPT' && route.to !== 'postmaster') assert.equal(route.to.address, 'u@d.example');
  const lit = ok('RCPT TO:<u@[IPv6:2001:db8::1]>');
  if (lit.verb === 'RCPT' && lit.to !== 'postmaster') assert.equal(lit.to.literal, true);
  assert.deepEqual(ok('BDAT 100 LAST'), { verb: 'BDAT', size: 100, last: true });
  // RFC 3030: chunk-size = 1*DIGIT, leading zeros included.
  assert.deepEqual(ok('BDAT 0000000000000006 LAST'), { verb: 'BDAT', size: 6, last: true });
  assert.deepEqual(ok('BDAT 000'), { verb: 'BDAT', size: 0, last: false });
  assert.deepEqual(ok('AUTH plain AGJvYgBwdw=='), { verb: 'AUTH', mechanism: 'PLAIN', initialResponse: 'AGJvYgBwdw==' });
  bad('MAIL FROM:<a@b.c> SIZE=x', 501);
  bad('MAIL FROM:<a@b.c> XFOO', 555);
  bad('MAIL FROM:<a@b.c> SIZE=1 SIZE=2', 501);
  bad('RCPT TO:<>', 501);
  bad('RCPT TO:<a@b.c.>', 501);
  bad('RCPT TO:<a@b..c>', 501);
  bad('RCPT TO:<a\u0000@b.c>', 500);
  bad(`RCPT TO:<${'a'.repeat(65)}@b.c>`, 501);
  bad('EHLO', 501);
  bad('EHLO bad_host!', 501);
  bad('EHLO a..b', 501);
  assert.deepEqual(ok('EHLO DESKTOP_42.corp'), { verb: 'EHLO', domain: 'DESKTOP_42.corp' });
  bad('DATA x', 501);
  bad('FOO', 500);
  assert.ok(!parseCommand(Buffer.from([0x4e, 0x4f, 0x4f, 0x50, 0x20, 0xff])).ok, 'invalid UTF-8');
});

test('replies never carry CR, LF or other controls from their text', () => {
  assert.equal(formatReply(reply(250, '2.0.0', 'a\r\n250 forged')), '250 2.0.0 a??250 forged\r\n');
  assert.equal(formatReply(reply(250, null, 'host', 'PIPELINING')), '250-host\r\n250 PIPELINING\r\n');
});

test('command parser never throws and always answers a typed result (property)', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      const r = parseCommand(Buffer.from(bytes));
      if (!r.ok) assert.ok(r.reply.code >= 500 && r.reply.code < 600);
    }),
    { seed: 3030, numRuns: 2000 },
  );
  const verbs = fc.constantFrom('MAIL FROM:', 'RCPT TO:', 'EHLO ', 'BDAT ', 'AUTH ');
  fc.assert(
    fc.property(verbs, fc.string({ maxLength: 200 }), (verb, rest) => {
      const r = parseCommand(Buffer.from(verb + rest, 'utf8'));
      if (!r.ok) assert.ok(r.reply.code >= 500 && r.reply.code < 600);
    }),
    { seed: 2920, numRuns: 2000 },
  );
});

test('DATA receiver ends exactly at the first CRLF.CRLF and stores only CRLF line ends (property)', () => {
  const input = fc.array(fc.constantFrom('\r', '\n', '.', 'a', '\r\n', '\r\n.'), { maxLength: 40 }).map((parts) => parts.join(''));
  fc.assert(
    fc.property(input, fc.nat(60), (text, cut) => {
      const buf = Buffer.from(text, 'latin1');
      // Reference: the data is preceded by the DATA command's CRLF (RFC 5321 §4.1.1.4).
      const at = `\r\n${text}`.indexOf('\r\n.\r\n');
      const expectedEnd = at === -1 ? null : at + 5 - 2;
      const got = receive(buf, cut <= buf.length ? [cut] : []);
      if (expectedEnd === null) {
        assert.equal(got.rest, null, JSON.stringify(text));
      } else {
        assert.notEqual(got.rest, null, JSON.stringify(text));
        assert.equal(buf.length - got.rest!.length, expectedEnd, JSON.stringify(text));
        const out = got.message.toString('latin1');
        assert.ok(!/\r(?!\n)|(?<!\r)\n/.test(out), `bare line end stored: ${JSON.stringify(out)}`);
      }
    }),
    { seed: 51764, numRuns: 5000 },
  );
});

/** RFC 5321 §4.1.2 / RFC 6531 §3.3 by their grammar, one code point and one pattern at a time. */
const ATEXT_RE = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]$/;
const LET_DIG_RE = /^[A-Za-z0-9]$/;
const nonAscii = (ch: string) => ch.codePointAt(0)! > 0x7f;
function dotStringByGrammar(s: string, utf8: boolean): boolean {
  return s.length > 0 && s.split('.').every((atom) => atom.length > 0 && [...atom].every((ch) => ATEXT_RE.test(ch) || (utf8 && nonAscii(ch))));
}
/** RFC 5890: a name with non-ASCII labels is IDNA's own round trip (U-labels, no mapping). */
function idnByIdna(s: string): boolean {
  if (!/[^\x00-\x7f]/.test(s)) return true;
  const ascii = domainToASCII(s);
  return ascii !== '' && domainToUnicode(ascii) === s.normalize('NFC').toLowerCase();
}
function domainByGrammar(s: string): boolean {
  if (s.length === 0 || Buffer.byteLength(s) > 255 || !idnByIdna(s)) return false;
  return s.split('.').every((label) => {
    const chars = [...label];
    const edge = (ch: string | undefined) => ch !== undefined && (LET_DIG_RE.test(ch) || nonAscii(ch));
    return label.length > 0 && label.length <= 63 && edge(chars[0]) && edge(chars.at(-1)) && chars.every((ch) => edge(ch) || ch === '-');
  });
}

test('Dot-strings, domains and mailboxes are checked as their grammar says, whatever the characters (property)', () => {
  const pieces = ['a', 'Z', '9', '.', '-', '_', '!', '~', '"', '@', ' ', '\\', '(', '\u0000', '\u007f', 'é', 'ñ', '日本', '😀', '\ud83d', '\ude00', 'x'.repeat(63), 'y'.repeat(64)];
  const text = fc.array(fc.constantFrom(...pieces), { maxLength: 40 }).map((p) => p.join(''));
  fc.assert(
    fc.property(text, fc.boolean(), (s, utf8) => {
      assert.equal(isDotString(s, utf8), dotStringByGrammar(s, utf8), JSON.stringify(s));
      assert.equal(isDomain(s), domainByGrammar(s), JSON.stringify(s));
    }),
    { seed: 5321, numRuns: 3000 },
  );
  // The local part ends at its first character outside Dot-string, the domain at a space or '>':
  // neither is generated here, nor a quoted local part.
  const of = (exclude: string[]) => fc.array(fc.constantFrom(...pieces.filter((p) => !exclude.includes(p))), { maxLength: 40 }).map((p) => p.join(''));
  fc.assert(
    fc.property(of(['"', '@', ' ']), of([' ']), (local, domain) => {
      const r = parseMailbox(`${local}@${domain}>`, 0);
      const expected = dotStringByGrammar(local, true) && Buffer.byteLength(local) <= 64 && domainByGrammar(domain);
      assert.equal(r.ok, expected, JSON.stringify(`${local}@${domain}`));
      if (r.ok) {
        assert.equal(r.value.address, `${local}@${domain.toLowerCase()}`);
        assert.equal(r.value.utf8, /[^\x00-\x7f]/.test(local + domain));
      }
    }),
    { seed: 6531, numRuns: 3000 },
  );
});

test('MessageReceiver: memory follows the message size whatever its shape (bare LFs, bare CRs, stuffed dots)', () => {
  const MB = 1024 * 1024;
  for (const [mode, unit, stored] of [
    ['dot', 'a\n', 'a\r\n'],
    ['dot', '..\r\n', '.\r\n'],
    ['raw', 'a\r', 'a\r\n'],
  ] as const) {
    const r = new MessageReceiver({ mode, maxSize: 50 * MB, maxLineLength: 10_000 });
    const chunk = Buffer.from(unit.repeat((64 * 1024) / unit.length));
    const before = process.memoryUsage().heapUsed;
    let peak = 0;
    for (let i = 0; i < 128; i++) {
      assert.equal(r.push(chunk), -1);
      if (i % 16 === 15) peak = Math.max(peak, process.memoryUsage().heapUsed - before);
    }
    const message = r.finish();
    assert.equal(message.length, (128 * chunk.length * stored.length) / unit.length, `${mode} ${JSON.stringify(unit)}`);
    assert.equal(message.subarray(0, stored.length * 2).toString('latin1'), stored + stored);
    // 8 MB of input: a view per line ending held hundreds of MB of heap.
    assert.ok(peak < 40 * MB, `${mode} ${JSON.stringify(unit)}: heap grew by ${(peak / MB).toFixed(0)} MB`);
  }
});

test('a non-ASCII domain must be U-labels: line separators, C1 controls and what IDNA maps away are refused', () => {
  for (const d of ['bücher.example', '例え.テスト', 'xn--bcher-kva.example', 'Bücher.example']) assert.equal(isDomain(d), true, d);
  for (const d of ['a\u2028b.example', 'b.\u0085com', 'a\u00adb.example', 'a\u200bb.example', 'a\u202eb.example']) assert.equal(isDomain(d), false, JSON.stringify(d));
  assert.equal(parseCommand(Buffer.from('EHLO a\u2028b.\u0085com')).ok, false);
});
