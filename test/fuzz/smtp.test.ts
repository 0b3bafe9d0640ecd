/**
 * Fuzzing the SMTP command parser, the input line buffer and the DATA/BDAT receiver (see
 * fuzz-options.ts for seeds and longer runs). The receiver properties are the SMTP smuggling
 * defence (CVE-2023-51764 and relatives): only CR LF "." CR LF ends a message, whatever bare CRs,
 * bare LFs and dots surround it, and the stored message has CR LF line ends only.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { parseCommand } from '../../src/smtp/protocol/command.js';
import { InputBuffer, MessageReceiver } from '../../src/smtp/protocol/data.js';
import { COMMAND_LINE_EXTENSION_ALLOWANCE, COMMAND_LINE_MAX } from '../../src/smtp/protocol/limits.js';
import { formatReply } from '../../src/smtp/protocol/reply.js';
import { bounded, FUZZ } from './fuzz-options.js';

const COMMAND_TOKENS = [
  'EHLO ', 'HELO ', 'LHLO ', 'MAIL FROM:', 'RCPT TO:', 'DATA', 'BDAT ', 'RSET', 'NOOP', 'QUIT', 'VRFY ', 'EXPN ', 'AUTH ', 'STARTTLS',
  'HELP', '<', '>', '<>', '@', ':', ',', '"', '\\', '[', ']', 'IPv6:', '127.0.0.1', '::1', 'example.test', 'u', '%', '!', '.', ' ',
  'SIZE=', 'BODY=8BITMIME', 'BODY=BINARYMIME', 'SMTPUTF8', 'RET=HDRS', 'ENVID=', 'NOTIFY=SUCCESS,FAILURE', 'ORCPT=rfc822;', 'AUTH=<>',
  '+2B', '+', '99999999999999999999', 'LAST', 'PLAIN', '=', 'é', '\t', '\x00', '\r', '\x7f', '\xff',
];

test('SMTP command parser: any line gives a command or a 5xx reply that stays on one printable line', () => {
  const line = fc.oneof(
    fc.uint8Array({ maxLength: 600 }).map((b) => Buffer.from(b)),
    fc.array(fc.constantFrom(...COMMAND_TOKENS), { maxLength: 40 }).map((t) => Buffer.from(t.join(''), 'utf8')),
  );
  fc.assert(
    fc.property(line, (bytes) => {
      const result = bounded('parseCommand', () => parseCommand(bytes));
      if (result.ok) return;
      // RFC 5321 §4.2.4 / §4.3.2: syntax errors are 500/501 (555 for unknown MAIL/RCPT
      // parameters, 504 for unimplemented ones, 502 for unknown commands).
      assert.ok([500, 501, 502, 504, 553, 555].includes(result.reply.code), `reply ${result.reply.code}`);
      const wire = formatReply(result.reply);
      // One reply, CRLF only at line ends: client text cannot inject a second reply.
      for (const l of wire.split('\r\n').slice(0, -1)) assert.match(l, /^\d{3}[ -][\x20-\x7e]*$/);
    }),
    FUZZ,
  );
});

test('SMTP input buffer: lines are bounded, an over-long line is reported once, split-invariant', () => {
  const max = COMMAND_LINE_MAX + COMMAND_LINE_EXTENSION_ALLOWANCE;
  const piece = fc.oneof(
    fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
    fc.integer({ min: 0, max: 5000 }).map((n) => Buffer.alloc(n, 0x61)),
    fc.constant(Buffer.from('\r\n')),
  );
  const drain = (chunks: Buffer[]) => {
    const ib = new InputBuffer();
    const out: Array<string | null> = [];
    for (const c of chunks) {
      ib.push(c);
      for (let l = ib.readLine(max); l !== null; l = ib.readLine(max)) out.push(l === 'too-long' ? null : l.toString('latin1'));
      // Memory: an incomplete line is never held beyond the limit.
      assert.ok(ib.length <= max + c.length);
    }
    return out;
  };
  fc.assert(
    fc.property(fc.array(piece, { maxLength: 10 }), fc.nat(), (pieces, cut) => {
      const all = Buffer.concat(pieces);
      const at = all.length === 0 ? 0 : cut % all.length;
      const whole = bounded('InputBuffer', () => drain([all]));
      for (const l of whole) if (l !== null) assert.ok(l.length < max);
      // Lines (not the too-long markers, whose count depends on where the discard resumes) agree.
      const split = drain([all.subarray(0, at), all.subarray(at)]);
      assert.deepEqual(split.filter((l) => l !== null), whole.filter((l) => l !== null));
    }),
    FUZZ,
  );
});

const DATA_TOKENS = ['\n.\n', '\r.\r', '\n.\r\n', '\r\n.\n', '\r.\r\n', '.', '..', 'a', 'MAIL FROM:<x@y>', '\r\n', '\r', '\n', '.\r', '\x00', 'é'];

/** Where the message ends according to RFC 5321 §4.1.1.4 alone: the first CR LF "." CR LF, the
 * first CR LF being the end of the DATA command line when the data starts with ".\r\n". */
function expectedEnd(data: Buffer): number {
  const i = Buffer.concat([Buffer.from('\r\n'), data]).indexOf('\r\n.\r\n');
  return i === -1 ? -1 : i + 3;
}

function receive(chunks: Buffer[], maxSize = 1 << 20): { end: number; raw: Buffer; receiver: MessageReceiver } {
  const receiver = new MessageReceiver({ mode: 'dot', maxSize, maxLineLength: 1000 });
  let offset = 0;
  for (const c of chunks) {
    const end = receiver.push(c);
    if (end !== -1) return { end: offset + end, raw: receiver.finish(), receiver };
    offset += c.length;
  }
  return { end: -1, raw: receiver.finish(), receiver };
}

test('SMTP DATA receiver: only CRLF.CRLF ends the message (smuggling), output has CRLF only, split-invariant', () => {
  const data = fc.array(fc.constantFrom(...DATA_TOKENS), { maxLength: 60 }).map((t) => Buffer.from(t.join(''), 'utf8'));
  fc.assert(
    fc.property(data, fc.array(fc.nat(), { maxLength: 4 }), (bytes, cuts) => {
      const whole = bounded('MessageReceiver', () => receive([bytes]));
      assert.equal(whole.end, expectedEnd(bytes));
      const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
      const chunks: Buffer[] = [];
      let from = 0;
      for (const p of points) {
        chunks.push(bytes.subarray(from, p));
        from = p;
      }
      chunks.push(bytes.subarray(from));
      const split = receive(chunks);
      assert.equal(split.end, whole.end);
      if (whole.end !== -1) assert.deepEqual(split.raw, whole.raw);
      // Stored line ends are CR LF only: no bare CR or bare LF survives to be re-interpreted by a
      // later hop. (An unfinished message is never stored, so only finished ones are checked.)
      if (whole.end !== -1) assert.doesNotMatch(whole.raw.toString('latin1'), /\r(?!\n)|(?<!\r)\n/);
      // Bounded output: at most one CR added per input byte.
      assert.ok(whole.raw.length <= 2 * bytes.length);
    }),
    FUZZ,
  );
});

test('SMTP DATA receiver: a smuggled second message is content of the first', () => {
  const variants = ['\n.\n', '\r.\r', '\n.\r\n', '\r\n.\n', '\r.\r\n'];
  fc.assert(
    fc.property(fc.constantFrom(...variants), fc.string({ maxLength: 50 }), (sep, filler) => {
      const body = `Subject: a\r\n\r\n${filler.replace(/[\r\n.]/g, 'x')}${sep}MAIL FROM:<evil@x>\r\nRCPT TO:<v@y>\r\nDATA\r\nSubject: smuggled\r\n\r\n.\r\n`;
      const { end, raw } = receive([Buffer.from(body, 'utf8')]);
      // The only terminator is the last one: the "second message" is inside the first.
      assert.equal(end, Buffer.byteLength(body));
      assert.ok(raw.includes('Subject: smuggled'));
    }),
    FUZZ,
  );
});

test('SMTP DATA receiver: size and line limits stop collecting but still find the end', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 5000 }), fc.integer({ min: 0, max: 20_000 }), fc.integer({ min: 1, max: 4096 }), (maxSize, n, chunk) => {
      const bytes = Buffer.concat([Buffer.alloc(n, 0x61), Buffer.from('\r\n.\r\nQUIT\r\n')]);
      const chunks: Buffer[] = [];
      for (let i = 0; i < bytes.length; i += chunk) chunks.push(bytes.subarray(i, i + chunk));
      const { end, raw, receiver } = receive(chunks, maxSize);
      assert.equal(end, n + 5);
      if (n + 2 > maxSize) {
        assert.equal(receiver.tooBig, true);
        assert.equal(raw.length, 0);
      }
      if (n > 1000) assert.equal(receiver.lineTooLong, true);
    }),
    FUZZ,
  );
});
