/**
 * Fuzzing the SASL message decoders (PLAIN, LOGIN, SCRAM-SHA-256 client messages) and the POP3
 * command parser and line reader (see fuzz-options.ts for seeds and longer runs). Properties: no
 * exception, a bounded time per input, a typed refusal ('malformed' / 'invalid', -ERR) for
 * invalid input, and bounded buffering in the line reader.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { parsePlain, PLAIN_MAX_MESSAGE_BYTES } from '../../src/sasl/plain.js';
import { createLoginMachine } from '../../src/sasl/login.js';
import { createScramServer, SCRAM_MAX_NAME_BYTES } from '../../src/sasl/scram.js';
import { parseCommand, decodeSaslResponse } from '../../src/pop3/protocol/command.js';
import { LineReader } from '../../src/pop3/protocol/line-reader.js';
import { MAX_COMMAND_LINE, MAX_DISCARDED_LINE } from '../../src/pop3/protocol/limits.js';
import { bounded, FUZZ } from './fuzz-options.js';

const bytes = (max: number) => fc.uint8Array({ maxLength: max }).map((b) => Buffer.from(b));
const saslTokens = (tokens: string[]) =>
  fc.array(fc.constantFrom(...tokens), { maxLength: 30 }).map((t) => Buffer.from(t.join(''), 'utf8'));

test('SASL PLAIN: any message parses to credentials or malformed/invalid, within the size bound', () => {
  const msg = fc.oneof(bytes(3000), saslTokens(['\0', 'user', '@', 'example.test', 'pw', 'é', '\xff', 'x'.repeat(400)]));
  fc.assert(
    fc.property(msg, (m) => {
      const r = bounded('parsePlain', () => parsePlain(m));
      if (!r.ok) return assert.ok(r.reason === 'malformed' || r.reason === 'invalid');
      assert.ok(m.length <= PLAIN_MAX_MESSAGE_BYTES);
      assert.ok(r.authcid.length > 0 && r.password.length > 0);
    }),
    FUZZ,
  );
});

test('SASL LOGIN: any sequence of responses ends in verify or malformed, never more than two questions', () => {
  fc.assert(
    fc.property(fc.array(fc.option(bytes(1500), { nil: null }), { minLength: 1, maxLength: 6 }), (responses) => {
      const machine = createLoginMachine();
      let challenges = 0;
      let finished = false;
      for (const r of responses) {
        const action = bounded('login', () => machine.next(r));
        if (finished) {
          // After the end, anything more is malformed.
          assert.equal(action.kind, 'malformed');
          continue;
        }
        if (action.kind === 'challenge') challenges++;
        else finished = true;
      }
      assert.ok(challenges <= 2);
    }),
    FUZZ,
  );
});

test('SASL SCRAM-SHA-256: any client-first and client-final message is accepted, malformed or invalid, never a throw', () => {
  const firstTokens = saslTokens(['n,', 'y,', 'p=tls-unique,', 'a=', ',', 'n=', 'r=', 'm=', 'x=', 'user', '=2C', '=3D', '=', 'é', '\0', '\u00ad', 'abc']);
  const finalTokens = saslTokens(['c=', 'biws', 'r=', 'p=', ',', '=', 'abc', 'AAAA', 'x=y', '\0', 'é']);
  const credentials = { salt: randomBytes(16), iterations: 4096, storedKey: randomBytes(32), serverKey: randomBytes(32) };
  fc.assert(
    fc.property(fc.oneof(bytes(5000), firstTokens), fc.oneof(bytes(600), finalTokens), (first, final) => {
      const server = createScramServer({ nonce: () => 'srvnonce' });
      const r1 = bounded('scram first', () => server.receiveClientFirst(first));
      if (!r1.ok) return assert.ok(r1.reason === 'malformed' || r1.reason === 'invalid');
      assert.ok(Buffer.byteLength(r1.username) <= SCRAM_MAX_NAME_BYTES * 3);
      server.serverFirst(credentials);
      const r2 = bounded('scram final', () => server.receiveClientFinal(final));
      if (!r2.ok) return assert.ok(r2.reason === 'malformed' || r2.reason === 'invalid');
      // Random bytes never carry a valid proof.
      assert.equal(r2.proofValid, false);
    }),
    FUZZ,
  );
});

test('POP3 command parser: any line is a command or -ERR material; base64 responses decode or are refused', () => {
  const tokens = ['USER ', 'PASS ', 'QUIT', 'STAT', 'LIST ', 'RETR ', 'DELE ', 'TOP ', 'UIDL ', 'CAPA', 'STLS', 'AUTH ', 'PLAIN ', '=',
    '1', '0', '-1', '99999999999', ' ', '  ', 'abc', 'dGVzdA==', '\t', '\x00', '\r', '\xff', 'é', 'x'.repeat(50)];
  fc.assert(
    fc.property(fc.oneof(bytes(400), saslTokens(tokens)), (line) => {
      const r = bounded('pop3 parseCommand', () => parseCommand(line));
      if (!r.ok) {
        assert.equal(typeof r.message, 'string');
        return;
      }
      // Parsed commands carry no control characters (they can reach logs and replies).
      assert.doesNotMatch(JSON.stringify(r.command), /\\u00[01][0-9a-f]|\\[rn]/);
      const text = line.toString('latin1');
      const decoded = decodeSaslResponse(text, true);
      if (decoded !== null) assert.ok(decoded.length <= text.length);
    }),
    FUZZ,
  );
});

test('POP3 line reader: at most one line limit buffered, floods detected, split-invariant', () => {
  const piece = fc.oneof(bytes(300), fc.integer({ min: 0, max: 70_000 }).map((n) => Buffer.alloc(n, 0x61)), fc.constant(Buffer.from('\r\n')));
  const drain = (chunks: Buffer[]) => {
    const reader = new LineReader();
    const out: string[] = [];
    for (const c of chunks) {
      reader.push(c);
      for (let e = reader.next(MAX_COMMAND_LINE); e !== null; e = reader.next(MAX_COMMAND_LINE)) {
        out.push(e.kind === 'line' ? `line:${e.line.toString('latin1')}` : e.kind);
        if (e.kind === 'flood') return out;
      }
      assert.ok(reader.bufferedBytes <= MAX_COMMAND_LINE);
    }
    return out;
  };
  fc.assert(
    fc.property(fc.array(piece, { maxLength: 8 }), fc.nat(), (pieces, cut) => {
      const all = Buffer.concat(pieces);
      const at = all.length === 0 ? 0 : cut % all.length;
      const whole = bounded('LineReader', () => drain([all]));
      for (const e of whole) if (e.startsWith('line:')) assert.ok(e.length - 5 <= MAX_COMMAND_LINE);
      const split = drain([all.subarray(0, at), all.subarray(at)]);
      // A flood is a line of more than MAX_DISCARDED_LINE bytes: where it is noticed may depend on
      // the split, the lines before it may not.
      const lines = (x: string[]) => x.slice(0, x.indexOf('flood') === -1 ? x.length : x.indexOf('flood')).filter((e) => e.startsWith('line:'));
      if (!whole.includes('flood') && !split.includes('flood')) assert.deepEqual(split, whole);
      else assert.ok(all.length > MAX_DISCARDED_LINE && lines(split).length <= lines(whole).length + 1);
    }),
    FUZZ,
  );
});
