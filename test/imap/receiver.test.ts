import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { MAX_LINE_BYTES, MAX_LITERAL_BYTES, Receiver, type ReceiverEvent } from '../../src/imap/protocol/receiver.js';

/** Feeds the chunks, pulling events after each one, the way the session does. */
function run(chunks: Buffer[], appendLimit = 1000): ReceiverEvent[] {
  const r = new Receiver({ appendLimit });
  r.setAuthenticated(true);
  const events: ReceiverEvent[] = [];
  for (const chunk of chunks) {
    r.push(chunk);
    for (let e = r.next(); e !== null; e = r.next()) events.push(e);
  }
  return events;
}

function summary(events: ReceiverEvent[]): unknown[] {
  return events.map((e) => {
    if (e.kind === 'command') {
      return { tag: e.command.tag, segments: e.command.segments.map((s) => s.toString('latin1')), literals: e.command.literals.map((l) => [l.data.toString('latin1'), l.binary]) };
    }
    return e;
  });
}

const INPUT = Buffer.from(
  'a1 NOOP\r\n' +
    'a2 LOGIN {4}\r\nuser {6+}\r\npa\r\nss\r\n' +
    'a3 APPEND INBOX (\\Seen) ~{5}\r\nab\x00cd UTF8 (~{3+}\r\nxyz)\r\n' +
    'a4 SELECT "x y"\n' +
    'a5 SEARCH {0}\r\n\r\n',
  'latin1',
);

test('the receiver yields the same commands and continuations whatever the split position', () => {
  const whole = summary(run([INPUT]));
  assert.equal(whole.filter((e) => (e as { tag?: string }).tag !== undefined).length, 5);
  assert.deepEqual(whole[1], { kind: 'continue' });
  assert.deepEqual(whole[2], { tag: 'a2', segments: ['a2 LOGIN ', ' ', ''], literals: [['user', false], ['pa\r\nss', false]] });
  for (let i = 1; i < INPUT.length; i++) {
    assert.deepEqual(summary(run([INPUT.subarray(0, i), INPUT.subarray(i)])), whole, `split at ${i}`);
  }
  // Byte by byte too.
  assert.deepEqual(summary(run([...INPUT].map((b) => Buffer.from([b])))), whole);
});

test('the receiver marks binary literals and strips literal markers', () => {
  const ev = run([Buffer.from('t APPEND x ~{2}\r\n\x00\x01\r\n', 'latin1')]);
  const cmd = ev.find((e) => e.kind === 'command');
  assert.ok(cmd !== undefined && cmd.kind === 'command');
  assert.deepEqual(cmd.command.literals[0], { data: Buffer.from([0, 1]), binary: true });
  assert.equal(cmd.command.segments[0]!.toString(), 't APPEND x ');
});

test('a line over the limit is a fatal BAD', () => {
  const ev = run([Buffer.alloc(MAX_LINE_BYTES + 10, 0x61)]);
  assert.equal(ev.length, 1);
  assert.deepEqual(ev[0], { kind: 'reject', tag: null, status: 'BAD', code: null, text: 'Line too long', fatal: true });
});

test('a synchronising literal over the limit is refused and reception goes on', () => {
  const ev = run([Buffer.from(`t1 LOGIN {${MAX_LITERAL_BYTES + 1}}\r\nt2 NOOP\r\n`)]);
  assert.equal(ev[0]!.kind, 'reject');
  assert.equal((ev[0] as { fatal: boolean }).fatal, false);
  assert.equal((ev[0] as { tag: string }).tag, 't1');
  assert.equal(ev[1]!.kind, 'command');
});

test('an APPEND literal over APPENDLIMIT is refused with NO [TOOBIG] before the continuation', () => {
  const ev = run([Buffer.from('t1 APPEND INBOX {1001}\r\nt2 NOOP\r\n')], 1000);
  assert.deepEqual(ev[0], { kind: 'reject', tag: 't1', status: 'NO', code: 'TOOBIG', text: 'Message is larger than APPENDLIMIT', fatal: false });
  assert.equal(ev[1]!.kind, 'command');
});

test('a non-synchronising literal over the limit is fatal (RFC 7888 §4)', () => {
  const ev = run([Buffer.from('t1 APPEND INBOX {1001+}\r\nxxxx')], 1000);
  assert.equal(ev.length, 1);
  assert.deepEqual(ev[0], { kind: 'reject', tag: 't1', status: 'BAD', code: 'TOOBIG', text: 'Message is larger than APPENDLIMIT', fatal: true });
});

test('a literal size of more than 2^32-1 is refused', () => {
  const ev = run([Buffer.from('t1 LOGIN {99999999999999999999}\r\n')]);
  assert.equal(ev[0]!.kind, 'reject');
});

test('before login an APPEND literal gets the small literal limit, not APPENDLIMIT', () => {
  const r = new Receiver({ appendLimit: 10 * MAX_LITERAL_BYTES });
  r.push(Buffer.from(`t1 APPEND INBOX {${MAX_LITERAL_BYTES + 1}}\r\n`));
  const ev = r.next();
  assert.equal(ev?.kind === 'reject' && ev.code, 'TOOBIG');
});

test('line mode yields one raw line, then commands again', () => {
  const r = new Receiver({ appendLimit: 10 });
  r.push(Buffer.from('t1 IDLE\r\nDONE {5}\r\nt2 NOOP\r\n'));
  const first = r.next();
  assert.equal(first?.kind, 'command');
  r.readLine();
  const line = r.next();
  assert.deepEqual(line, { kind: 'line', line: Buffer.from('DONE {5}') });
  const third = r.next();
  assert.equal(third?.kind === 'command' && third.command.tag, 't2');
});

test('discardBuffered drops pipelined bytes (STARTTLS injection)', () => {
  const r = new Receiver({ appendLimit: 10 });
  r.push(Buffer.from('t1 STARTTLS\r\nt2 LOGIN a b\r\n'));
  assert.equal(r.next()?.kind, 'command');
  r.discardBuffered();
  assert.equal(r.next(), null);
});

test('a received command holds memory of its own size, not a shared pool slab or the input chunk', () => {
  // A command kept while it runs (IDLE waits for hours) must not keep larger buffers alive: one
  // pooled 8 KiB slab or one growable input buffer per waiting connection adds up.
  const events = run([Buffer.from('a1 IDLE'), Buffer.from('\r\nb2 SEARCH {3+}\r\n'), Buffer.from('abc\r\n')]);
  const commands = events.flatMap((e) => (e.kind === 'command' ? [e.command] : []));
  assert.equal(commands.length, 2);
  for (const c of commands) {
    for (const part of [...c.segments, ...c.literals.map((l) => l.data)]) {
      // A segment before a literal is its line without the marker (`{3+}`).
      if (part.length > 0) assert.ok(part.buffer.byteLength <= part.length + 16, `"${part.toString('latin1')}" is a view of ${part.buffer.byteLength} bytes`);
    }
  }
});

test('once every byte received is consumed, the receiver holds no input buffer', () => {
  const r = new Receiver({ appendLimit: 1000 });
  r.push(Buffer.from('a1 NO'));
  r.push(Buffer.from('OP\r\na2 IDLE\r'));
  assert.equal(r.next()?.kind, 'command');
  assert.equal(r.buffered, 'a2 IDLE\r'.length);
  r.push(Buffer.from('\n'));
  assert.equal(r.next()?.kind, 'command');
  assert.equal(r.buffered, 0);
  assert.equal((r as unknown as { spare: Buffer | null }).spare, null);
});
