import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { LineReader, type LineEvent } from '../../src/pop3/protocol/line-reader.js';
import { parseCommand, decodeSaslResponse } from '../../src/pop3/protocol/command.js';
import { ok, err, multiline, challenge, toUniqueId, isValidUniqueId } from '../../src/pop3/protocol/response.js';
import { DotStuffer } from '../../src/pop3/protocol/dot-stuff.js';
import { TopFilter } from '../../src/pop3/protocol/top-filter.js';
import { MAX_COMMAND_LINE, MAX_DISCARDED_LINE } from '../../src/pop3/protocol/limits.js';

const SEED = 0x5eed;

function drain(reader: LineReader, max = MAX_COMMAND_LINE): LineEvent[] {
  const out: LineEvent[] = [];
  for (let e = reader.next(max); e !== null; e = reader.next(max)) out.push(e);
  return out;
}

function show(events: LineEvent[]): string[] {
  return events.map((e) => (e.kind === 'line' ? `line:${e.line.toString('latin1')}` : e.kind));
}

test('line reader yields the same lines however the input is split', () => {
  const input = Buffer.from(`USER a\r\nPASS b c\r\nNOOP\n\r\n${'X'.repeat(300)}\r\nQUIT\r\n`);
  const whole = new LineReader();
  whole.push(input);
  const expected = show(drain(whole));
  assert.deepEqual(expected, ['line:USER a', 'line:PASS b c', 'line:NOOP', 'line:', 'too-long', 'line:QUIT']);
  for (let i = 0; i <= input.length; i++) {
    for (const j of [i, Math.min(input.length, i + 1), Math.min(input.length, i + 7)]) {
      const r = new LineReader();
      const got: LineEvent[] = [];
      for (const part of [input.subarray(0, i), input.subarray(i, j), input.subarray(j)]) {
        r.push(part);
        got.push(...drain(r));
      }
      assert.deepEqual(show(got), expected, `split at ${i}/${j}`);
    }
  }
});

test('line reader accepts a 255-octet line with its CRLF and refuses 256 (RFC 2449 §4)', () => {
  const fits = 'N'.repeat(MAX_COMMAND_LINE - 2);
  const r = new LineReader();
  r.push(Buffer.from(`${fits}\r\n${fits}X\r\n${fits}\n${fits}X\n`));
  assert.deepEqual(show(drain(r)), [`line:${fits}`, 'too-long', `line:${fits}`, 'too-long']);
});

test('line reader holds no more than the limit of an overlong line and reports a flood', () => {
  const r = new LineReader();
  for (let i = 0; i < 10; i++) {
    r.push(Buffer.alloc(1000, 0x41));
    assert.deepEqual(drain(r), []);
    assert.ok(r.bufferedBytes <= MAX_COMMAND_LINE, `buffered ${r.bufferedBytes}`);
  }
  r.push(Buffer.alloc(MAX_DISCARDED_LINE, 0x41));
  assert.deepEqual(show(drain(r)), ['flood']);
});

test('line reader applies the limit given at pull time to bytes already buffered', () => {
  const r = new LineReader();
  const long = 'A'.repeat(1000);
  r.push(Buffer.from(`${long}\r\n${long}\r\n`));
  assert.deepEqual(show([r.next(8192) as LineEvent]), [`line:${long}`]);
  assert.deepEqual(show([r.next(255) as LineEvent]), ['too-long']);
});

test('line reader clear() drops pipelined input', () => {
  const r = new LineReader();
  r.push(Buffer.from('STLS\r\nUSER evil\r\n'));
  assert.deepEqual(show([r.next(255) as LineEvent]), ['line:STLS']);
  r.clear();
  assert.equal(r.next(255), null);
  assert.equal(r.bufferedBytes, 0);
});

const parse = (s: string) => parseCommand(Buffer.from(s, 'utf8'));

test('command parser accepts the RFC 1939, 2449, 2595 and 5034 commands', () => {
  const table: Array<[string, unknown]> = [
    ['USER alice@example.org', { name: 'USER', user: 'alice@example.org' }],
    ['user Bob', { name: 'USER', user: 'Bob' }],
    ['PASS secret with  spaces ', { name: 'PASS', password: 'secret with  spaces ' }],
    ['QUIT', { name: 'QUIT' }],
    ['stat', { name: 'STAT' }],
    ['LIST', { name: 'LIST', msg: null }],
    ['LIST 2', { name: 'LIST', msg: 2 }],
    ['RETR 1', { name: 'RETR', msg: 1 }],
    ['DELE 10', { name: 'DELE', msg: 10 }],
    ['NOOP', { name: 'NOOP' }],
    ['RSET', { name: 'RSET' }],
    ['TOP 1 0', { name: 'TOP', msg: 1, lines: 0 }],
    ['TOP 3 25', { name: 'TOP', msg: 3, lines: 25 }],
    ['UIDL', { name: 'UIDL', msg: null }],
    ['UIDL 4', { name: 'UIDL', msg: 4 }],
    ['CAPA', { name: 'CAPA' }],
    ['STLS', { name: 'STLS' }],
    ['AUTH', { name: 'AUTH', mechanism: null, initialResponse: null }],
    ['AUTH plain', { name: 'AUTH', mechanism: 'PLAIN', initialResponse: null }],
    ['AUTH PLAIN AGEAYg==', { name: 'AUTH', mechanism: 'PLAIN', initialResponse: 'AGEAYg==' }],
    ['AUTH SCRAM-SHA-256 =', { name: 'AUTH', mechanism: 'SCRAM-SHA-256', initialResponse: '=' }],
  ];
  for (const [line, command] of table) {
    assert.deepEqual(parse(line), { ok: true, command }, line);
  }
});

test('command parser refuses malformed commands without echoing them', () => {
  const table: Array<[string, string | null]> = [
    ['APOP user 0123456789abcdef', null],
    ['XYZZY', null],
    ['', null],
    ['RETR', 'RETR'],
    ['RETR one', 'RETR'],
    ['RETR -1', 'RETR'],
    ['RETR +1', 'RETR'],
    ['RETR 1 2', 'RETR'],
    ['RETR 12345678901', 'RETR'],
    ['TOP 1', 'TOP'],
    ['TOP 1 -1', 'TOP'],
    ['LIST 1 2', 'LIST'],
    ['STAT now', 'STAT'],
    ['USER', 'USER'],
    ['PASS', 'PASS'],
    ['AUTH PL@IN', 'AUTH'],
    ['AUTH PLAIN not_base64!', 'AUTH'],
    ['NOOP\x00', null],
    ['USER a\x1bb', null],
    [`DELE ${'1'.repeat(41)}`, 'DELE'],
  ];
  for (const [line, known] of table) {
    const r = parse(line);
    assert.equal(r.ok, false, line);
    if (!r.ok) {
      assert.equal(r.known, known, line);
      assert.ok(!r.message.includes(line) || line.length < 5, `message echoes input: ${line}`);
    }
  }
});

test('SASL responses decode per RFC 5034 §4', () => {
  assert.deepEqual(decodeSaslResponse('=', true), Buffer.alloc(0));
  assert.deepEqual(decodeSaslResponse('', false), Buffer.alloc(0));
  assert.deepEqual(decodeSaslResponse('AGEAYg==', false), Buffer.from('\0a\0b'));
  assert.equal(decodeSaslResponse('AGEAYg=', false), null);
  assert.equal(decodeSaslResponse('*', false), null);
});

test('responses are built from checked texts with RFC 2449 response codes', () => {
  assert.equal(ok(), '+OK\r\n');
  assert.equal(ok('2 320'), '+OK 2 320\r\n');
  assert.equal(err('Mailbox locked', 'IN-USE'), '-ERR [IN-USE] Mailbox locked\r\n');
  assert.equal(err('No such message'), '-ERR No such message\r\n');
  assert.throws(() => ok('a\r\n+OK forged'));
  assert.throws(() => err('é'));
  assert.equal(multiline('Capability list follows', ['TOP', '.hidden']), '+OK Capability list follows\r\nTOP\r\n..hidden\r\n.\r\n');
  assert.equal(challenge(Buffer.alloc(0)), '+ \r\n');
  assert.equal(challenge(Buffer.from('hi')), '+ aGk=\r\n');
});

test('unique-ids are 1-70 printable characters (RFC 1939 §7), stored ids pass through unchanged', () => {
  assert.equal(toUniqueId('M3f9a2b7c'), 'M3f9a2b7c');
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (pid) => {
      const u = toUniqueId(pid);
      assert.ok(isValidUniqueId(u));
      assert.equal(toUniqueId(pid), u);
      if (isValidUniqueId(pid)) assert.equal(u, pid);
    }),
    { seed: SEED, numRuns: 500 },
  );
  assert.notEqual(toUniqueId(''), toUniqueId(' '));
  assert.ok(isValidUniqueId(toUniqueId('x'.repeat(71))));
});

/** A straightforward reference for the dot-stuffing transform, to check the streaming one. */
function referenceStuff(raw: Buffer): string {
  let text = raw.toString('latin1').replace(/\r?\n/g, '\r\n');
  if (text.length > 0 && !text.endsWith('\r\n')) text += text.endsWith('\r') ? '\n' : '\r\n';
  const lines = text.length === 0 ? [] : text.slice(0, -2).split('\r\n');
  return lines.map((l) => (l.startsWith('.') ? '.' + l : l) + '\r\n').join('') + '.\r\n';
}

function stuffInParts(raw: Buffer, cuts: number[]): string {
  const s = new DotStuffer();
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of [...cuts, raw.length]) {
    out.push(s.push(raw.subarray(prev, c)));
    prev = c;
  }
  out.push(s.end());
  return Buffer.concat(out).toString('latin1');
}

test('dot-stuffing doubles leading dots, turns bare LF into CRLF and terminates (RFC 1939 §3)', () => {
  const raw = Buffer.from('Subject: x\n\n.\n..two\r\n.three\r\nlast. line\nno end');
  const expected = 'Subject: x\r\n\r\n..\r\n...two\r\n..three\r\nlast. line\r\nno end\r\n.\r\n';
  assert.equal(referenceStuff(raw), expected);
  for (let i = 0; i <= raw.length; i++) {
    for (let j = i; j <= raw.length; j++) assert.equal(stuffInParts(raw, [i, j]), expected, `cuts ${i},${j}`);
  }
  assert.equal(stuffInParts(Buffer.alloc(0), []), '.\r\n');
  assert.equal(stuffInParts(Buffer.from('a\r\n'), []), 'a\r\n.\r\n');
  assert.equal(stuffInParts(Buffer.from('a\r'), []), 'a\r\n.\r\n');
});

test('dot-stuffing matches the reference for any bytes split anywhere (property)', () => {
  const bytes = fc.array(fc.constantFrom(0x2e, 0x0a, 0x0d, 0x41, 0x20), { maxLength: 60 });
  fc.assert(
    fc.property(bytes, fc.array(fc.nat(60), { maxLength: 4 }), (arr, cutsRaw) => {
      const raw = Buffer.from(arr);
      const cuts = cutsRaw.map((c) => Math.min(c, raw.length)).sort((a, b) => a - b);
      const ref = referenceStuff(raw);
      // The reference treats CR-CR-LF as two line ends only if regex does; compare for inputs
      // where a CR is only ever followed by LF (the stored-message cases) and check structure
      // otherwise.
      const got = stuffInParts(raw, cuts);
      assert.ok(got.endsWith('\r\n.\r\n') || got === '.\r\n');
      assert.equal(got, stuffInParts(raw, []));
      if (!/\r(?!\n)/.test(raw.toString('latin1'))) assert.equal(got, ref);
    }),
    { seed: SEED, numRuns: 2000 },
  );
});

function topInParts(raw: Buffer, n: number, cut: number): { out: string; doneAt: number | null } {
  const f = new TopFilter(n);
  const parts = [raw.subarray(0, cut), raw.subarray(cut)];
  let out = '';
  let doneAt: number | null = null;
  parts.forEach((p, i) => {
    if (f.done) return;
    out += f.push(p).toString('latin1');
    if (f.done && doneAt === null) doneAt = i;
  });
  return { out, doneAt };
}

test('TOP returns the header, the blank line and n body lines, however the message is split', () => {
  const raw = Buffer.from('From: a\r\nSubject: b\r\n\r\nl1\r\nl2\nl3\r\nl4');
  const cases: Array<[number, string]> = [
    [0, 'From: a\r\nSubject: b\r\n\r\n'],
    [1, 'From: a\r\nSubject: b\r\n\r\nl1\r\n'],
    [3, 'From: a\r\nSubject: b\r\n\r\nl1\r\nl2\nl3\r\n'],
    [4, 'From: a\r\nSubject: b\r\n\r\nl1\r\nl2\nl3\r\nl4'],
    [99, 'From: a\r\nSubject: b\r\n\r\nl1\r\nl2\nl3\r\nl4'],
  ];
  for (const [n, expected] of cases) {
    for (let cut = 0; cut <= raw.length; cut++) {
      assert.equal(topInParts(raw, n, cut).out, expected, `n=${n} cut=${cut}`);
    }
  }
  const headerOnly = Buffer.from('From: a\nSubject: b\n');
  assert.equal(topInParts(headerOnly, 0, 5).out, 'From: a\nSubject: b\n');
});

test('TOP stops consuming input once the requested lines are out', () => {
  const f = new TopFilter(1);
  assert.equal(f.push(Buffer.from('A: b\r\n\r\nfirst\r\nsecond\r\n')).toString(), 'A: b\r\n\r\nfirst\r\n');
  assert.equal(f.done, true);
  assert.equal(f.push(Buffer.from('more')).length, 0);
});

test('command parser never throws and refuses every line with a control character (property)', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      const line = Buffer.from(bytes);
      const r = parseCommand(line);
      if (line.some((b) => b < 0x20 || b === 0x7f)) assert.equal(r.ok, false);
      if (r.ok) assert.ok(typeof r.command.name === 'string');
      else assert.match(r.message, /^[\x20-\x7e]+$/);
    }),
    { seed: SEED, numRuns: 3000 },
  );
});

test('line reader gives the same events for any input split anywhere (property)', () => {
  const bytes = fc.array(fc.constantFrom(0x41, 0x20, 0x0d, 0x0a, 0x2e), { maxLength: 600 });
  fc.assert(
    fc.property(bytes, fc.array(fc.nat(600), { maxLength: 6 }), fc.constantFrom(8, 16, 255), (arr, cutsRaw, max) => {
      const input = Buffer.from(arr);
      const whole = new LineReader();
      whole.push(input);
      const expected = show(drain(whole, max));
      const cuts = cutsRaw.map((c) => Math.min(c, input.length)).sort((a, b) => a - b);
      const r = new LineReader();
      const got: LineEvent[] = [];
      let prev = 0;
      for (const c of [...cuts, input.length]) {
        r.push(input.subarray(prev, c));
        got.push(...drain(r, max));
        prev = c;
      }
      assert.deepEqual(show(got), expected);
      // Never more than one line's worth of an incomplete line is held.
      assert.ok(r.bufferedBytes <= max, `held ${r.bufferedBytes}`);
    }),
    { seed: SEED, numRuns: 2000 },
  );
});
