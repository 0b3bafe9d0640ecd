import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { Receiver, type ReceiverEvent } from '../../src/imap/protocol/receiver.js';
import { MailboxNameError, parseCommand, ParseError } from '../../src/imap/protocol/parser.js';

const SEED = 20261127;

function events(chunks: Uint8Array[]): ReceiverEvent[] {
  const r = new Receiver({ appendLimit: 4096 });
  r.setAuthenticated(true);
  const out: ReceiverEvent[] = [];
  for (const c of chunks) {
    r.push(Buffer.from(c));
    for (let e = r.next(); e !== null; e = r.next()) out.push(e);
  }
  return out;
}

/** Only ParseError (syntax) or MailboxNameError (a name that cannot exist) may come out of the
 * parser, whatever the bytes. */
function parseAll(evs: ReceiverEvent[]): void {
  for (const e of evs) {
    if (e.kind !== 'command') continue;
    for (const utf8 of [false, true]) {
      try {
        parseCommand(e.command, { utf8 });
      } catch (err) {
        if (!(err instanceof ParseError) && !(err instanceof MailboxNameError)) throw err;
      }
    }
  }
}

const TOKENS = [
  'a1 ', 'UID ', 'FETCH ', 'SEARCH ', 'STORE ', 'APPEND ', 'LIST ', 'SELECT ', 'LOGIN ', 'ID ', 'CREATE ', 'STATUS ', 'COPY ', 'MOVE ',
  '(', ')', ' ', '"', '\\', '"x y"', '{3}\r\nabc', '{2+}\r\nxy', '~{1}\r\n\x00', '1:*', '*', '$', '2,4:5', 'BODY[', 'BODY.PEEK[', ']',
  '1.2', 'HEADER.FIELDS (From)', 'MIME', 'TEXT', '<0.5>', 'NOT ', 'OR ', 'ALL', 'UNSEEN ', 'SINCE 1-Jan-2024', 'FLAGS', '+FLAGS ', '(\\Seen)',
  'INBOX', '&AOk-', '&', 'RETURN (MIN)', 'CHARSET UTF-8 ', 'NIL', 'UTF8 (', '\r\n', '\n', '\x00', '\xff', '%', 'USE (\\Sent)',
];

test('the receiver gives the same events for random bytes split anywhere', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 400 }), fc.nat(), (bytes, cut) => {
      const at = bytes.length === 0 ? 0 : cut % bytes.length;
      const whole = events([bytes]);
      assert.deepEqual(events([bytes.subarray(0, at), bytes.subarray(at)]), whole);
      parseAll(whole);
    }),
    { seed: SEED, numRuns: 2000 },
  );
});

test('the parser throws nothing but its own errors on token soup, and the receiver is split-invariant on it', () => {
  fc.assert(
    fc.property(fc.array(fc.constantFrom(...TOKENS), { maxLength: 40 }), fc.nat(), (tokens, cut) => {
      const bytes = Buffer.from(`${tokens.join('')}\r\n`, 'latin1');
      const at = cut % bytes.length;
      const whole = events([bytes]);
      assert.deepEqual(events([bytes.subarray(0, at), bytes.subarray(at)]), whole);
      parseAll(whole);
    }),
    { seed: SEED, numRuns: 5000 },
  );
});
