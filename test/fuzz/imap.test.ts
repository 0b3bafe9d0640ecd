/**
 * Fuzzing the IMAP receiver, argument parser, serializer and modified UTF-7 codec (see
 * fuzz-options.ts for seeds and longer runs). Properties: nothing but the documented error types
 * comes out, each input is handled within a time bound, the receiver holds a bounded amount of
 * memory whatever arrives, invalid input becomes a protocol refusal, and what the serializer
 * writes the parser reads back unchanged.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import {
  MAX_COMMAND_BYTES,
  MAX_LINE_BYTES,
  Receiver,
  type ReceiverEvent,
} from '../../src/imap/protocol/receiver.js';
import { MailboxNameError, parseCommand, parseCommandName, ParseError } from '../../src/imap/protocol/parser.js';
import { writeValue, type Output } from '../../src/imap/protocol/serialize.js';
import { decodeMutf7, encodeMutf7, Mutf7Error } from '../../src/imap/protocol/mutf7.js';
import { bounded, FUZZ } from './fuzz-options.js';

const TOKENS = [
  'a1 ', 'UID ', 'FETCH ', 'SEARCH ', 'STORE ', 'APPEND ', 'LIST ', 'SELECT ', 'LOGIN ', 'AUTHENTICATE ', 'CREATE ', 'RENAME ',
  'STATUS ', 'COPY ', 'MOVE ', 'ID ', 'ENABLE ', 'IDLE', 'SORT ', 'THREAD ', '(', ')', ' ', '"', '\\', '"x y"', '{3}\r\nabc',
  '{2+}\r\nxy', '~{1}\r\n\x00', '{4294967296}\r\n', '{99999999999}\r\n', '1:*', '*', '$', '2,4:5', '0', '4294967296', 'BODY[',
  'BODY.PEEK[', 'BINARY[', ']', '1.2', 'HEADER.FIELDS (From)', 'MIME', 'TEXT', '<0.5>', '<4294967296>', 'NOT ', 'OR ', 'ALL',
  'SINCE 1-Jan-2024', 'FLAGS', '+FLAGS ', '(\\Seen)', 'INBOX', '&AOk-', '&', '&Jjo', '../', 'a/b/c', 'RETURN (MIN)', 'CHARSET UTF-8 ',
  'NIL', 'UTF8 (', '\r\n', '\n', '\r', '\x00', '\xff', '%', '(((((((((', ')))))))))',
];

interface Run {
  events: ReceiverEvent[];
  /** Largest number of bytes the receiver held between pushes (after draining its events). */
  maxBuffered: number;
}

function receive(chunks: Uint8Array[], authenticated = false): Run {
  const r = new Receiver({ appendLimit: 8192 });
  r.setAuthenticated(authenticated);
  const events: ReceiverEvent[] = [];
  let maxBuffered = 0;
  for (const c of chunks) {
    r.push(Buffer.from(c));
    for (let e = r.next(); e !== null; e = r.next()) events.push(e);
    maxBuffered = Math.max(maxBuffered, r.buffered);
  }
  return { events, maxBuffered };
}

/** The parser may refuse input only with ParseError (syntax: BAD) or MailboxNameError (NO). */
function parseAll(events: ReceiverEvent[]): void {
  for (const e of events) {
    if (e.kind !== 'command') continue;
    for (const utf8 of [false, true]) {
      try {
        parseCommandName(e.command);
        parseCommand(e.command, { utf8 });
      } catch (err) {
        if (!(err instanceof ParseError) && !(err instanceof MailboxNameError)) throw err;
      }
    }
  }
}

/** Splits bytes at the given cut points (sorted, deduplicated, in range). */
function split(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => (bytes.length === 0 ? 0 : c % (bytes.length + 1))))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let from = 0;
  for (const p of points) {
    out.push(bytes.subarray(from, p));
    from = p;
  }
  out.push(bytes.subarray(from));
  return out;
}

const tokenSoup = fc
  .array(fc.constantFrom(...TOKENS), { maxLength: 60 })
  .map((tokens) => new Uint8Array(Buffer.from(`${tokens.join('')}\r\n`, 'latin1')));
const anyInput = fc.oneof(fc.uint8Array({ maxLength: 600 }), tokenSoup);

test('IMAP receiver: any bytes split anywhere give the same events, bounded buffering, and only parser errors', () => {
  fc.assert(
    fc.property(anyInput, fc.array(fc.nat(), { maxLength: 5 }), fc.boolean(), (bytes, cuts, authenticated) => {
      const whole = bounded('receiver', () => receive([bytes], authenticated));
      const pieces = bounded('receiver (split)', () => receive(split(bytes, cuts), authenticated));
      assert.deepEqual(pieces.events, whole.events);
      // An incomplete line is held only up to the line limit; past it the receiver gives up.
      assert.ok(whole.maxBuffered <= MAX_LINE_BYTES);
      for (const e of whole.events) {
        if (e.kind === 'command') assert.ok(e.command.size <= bytes.length);
        if (e.kind === 'reject') assert.ok(e.status === 'BAD' || e.status === 'NO');
      }
      bounded('parser', () => parseAll(whole.events));
    }),
    FUZZ,
  );
});

test('IMAP receiver: an endless line, a huge literal or too many literals end in a refusal with bounded memory', () => {
  const attack = fc.oneof(
    // A line without LF, sent in pieces.
    fc.integer({ min: MAX_LINE_BYTES + 1, max: MAX_LINE_BYTES * 3 }).map((n) => ({ kind: 'line' as const, n })),
    // A literal announced bigger than allowed (synchronising or not).
    fc.record({ kind: fc.constant('literal' as const), n: fc.integer({ min: 64 * 1024 + 1, max: 2 ** 40 }), plus: fc.boolean() }),
    // Many small literals in one command.
    fc.integer({ min: 65, max: 200 }).map((n) => ({ kind: 'many' as const, n })),
  );
  fc.assert(
    fc.property(attack, fc.integer({ min: 1, max: 9000 }), (a, chunkSize) => {
      let bytes: Buffer;
      if (a.kind === 'line') bytes = Buffer.alloc(a.n, 0x61);
      else if (a.kind === 'literal') bytes = Buffer.from(`a1 LOGIN {${a.n}${a.plus ? '+' : ''}}\r\n${'x'.repeat(100)}`);
      else bytes = Buffer.from(`a1 ID (${'"k" {1+}\r\nv '.repeat(a.n)})\r\n`);
      const chunks: Uint8Array[] = [];
      for (let i = 0; i < bytes.length; i += chunkSize) chunks.push(bytes.subarray(i, i + chunkSize));
      const run = bounded('receiver under attack', () => receive(chunks));
      const reject = run.events.find((e) => e.kind === 'reject');
      assert.ok(reject, `no refusal for ${a.kind}`);
      assert.ok(run.maxBuffered <= MAX_LINE_BYTES + chunkSize);
      for (const e of run.events) if (e.kind === 'command') assert.ok(e.command.size <= MAX_COMMAND_BYTES + MAX_LINE_BYTES);
    }),
    { ...FUZZ, numRuns: Math.max(20, Math.floor(FUZZ.numRuns / 4)) },
  );
});

function serialize(value: string, utf8: boolean): Buffer {
  const out: Output = [];
  writeValue(value, { utf8 }, out);
  return Buffer.concat(out.map((p) => (Buffer.isBuffer(p) ? p : Buffer.alloc(0))));
}

// Strings a client may send: any Unicode text but NUL (RFC 9051 §4.3: CHAR8 excludes NUL).
const imapString = fc.string({ unit: 'binary', maxLength: 1200 }).filter((s) => !s.includes('\0'));

test('IMAP serializer -> receiver -> parser: quoted strings and literals read back as written', () => {
  fc.assert(
    fc.property(imapString, imapString, fc.boolean(), (user, password, utf8) => {
      const line = Buffer.concat([Buffer.from('a1 LOGIN '), serialize(user, utf8), Buffer.from(' '), serialize(password, utf8), Buffer.from('\r\n')]);
      const { events } = receive([line]);
      const commands = events.filter((e) => e.kind === 'command');
      assert.equal(commands.length, 1);
      const parsed = parseCommand(commands[0]!.command, { utf8 });
      assert.deepEqual(parsed.request, { name: 'LOGIN', user, password });
    }),
    FUZZ,
  );
});

test('modified UTF-7: decode(encode(s)) is s, and encode(decode(x)) is x for every name decode accepts', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (name) => {
      const encoded = bounded('encodeMutf7', () => encodeMutf7(name));
      assert.match(encoded, /^[\x20-\x7e]*$/);
      assert.equal(decodeMutf7(encoded), name);
    }),
    FUZZ,
  );
  const mutf7ish = fc
    .array(fc.constantFrom('&', '-', 'A', 'AOk', 'Jjo', ',', '+', '/', 'ZeVnLIqe', '&-', 'a', ' ', '\x7f', '\x00', 'é', '2D'), { maxLength: 30 })
    .map((p) => p.join(''));
  fc.assert(
    fc.property(fc.oneof(mutf7ish, fc.string({ maxLength: 100 })), (text) => {
      let decoded: string;
      try {
        decoded = bounded('decodeMutf7', () => decodeMutf7(text));
      } catch (err) {
        if (err instanceof Mutf7Error) return;
        throw err;
      }
      // One name, one spelling: whatever decodes must be exactly what encode would produce.
      assert.equal(encodeMutf7(decoded), text);
    }),
    FUZZ,
  );
});
