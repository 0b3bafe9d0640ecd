import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { connect } from 'node:net';
import { Writable } from 'node:stream';
import { constants as zlibConstants, createDeflateRaw, createInflateRaw, deflateRawSync } from 'node:zlib';
import { pino } from 'pino';
import { Receiver } from '../../src/imap/protocol/receiver.js';
import { MAX_PIPELINED_BYTES } from '../../src/imap/server/session.js';
import type { MailStore } from '../../src/store/types.js';
import { startImap, TEST_PASSWORD, TEST_USER } from '../helpers/imap-transcript.js';
import { testMessage } from '../helpers/store.js';

test('an unexpected failure is NO [SERVERBUG] with a reference that is logged with the stack; the session goes on', async () => {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  const f = await startImap({}, (ctx) => {
    // A store whose listMailboxes fails like a broken database would.
    const store = new Proxy(ctx.store, {
      get(target, prop, receiver) {
        if (prop === 'listMailboxes') return () => Promise.reject(new Error('disk on fire'));
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    }) as MailStore;
    return { ...ctx, store, log: pino({ level: 'debug' }, sink) };
  });
  try {
    const t = await f.login();
    const r = await t.command('a1', 'LIST "" *', 'NO');
    const m = /^a1 NO \[SERVERBUG\] Internal error, reference (\S+)$/.exec(r.line);
    assert.ok(m, r.line);
    assert.doesNotMatch(r.line, /disk on fire/);
    const logged = lines.find((l) => l.errorId === m[1]);
    assert.ok(logged, 'the error is logged with its reference');
    assert.match(String((logged.err as { stack?: string }).stack), /disk on fire/);
    assert.ok(lines.some((l) => l.msg === 'command' && l.cmd === 'LIST' && l.code === 'SERVERBUG'));
    await t.command('a2', 'NOOP');
    t.close();
    await new Promise((r2) => setTimeout(r2, 100));
    assert.ok(lines.some((l) => l.msg === 'connection closed' && typeof l.cid === 'string'), 'one line per connection');
  } finally {
    await f.close();
  }
});

test('pipelined commands are answered one at a time, in order', async () => {
  const f = await startImap();
  try {
    const t = await f.login();
    t.sendRaw('p1 SELECT INBOX\r\np2 APPEND INBOX {12+}\r\nSubject: x\r\n\r\np3 FETCH 1 UID\r\np4 NOOP\r\n');
    await t.expectTagged('p1', 'OK');
    await t.expectTagged('p2', 'OK');
    const f3 = await t.expectTagged('p3', 'OK');
    assert.deepEqual(f3.untagged, ['* 1 FETCH (UID 1)']);
    await t.expectTagged('p4', 'OK');
  } finally {
    await f.close();
  }
});

test('an authenticated session idle past idleTimeoutMs is logged out with BYE', async () => {
  const f = await startImap({ idleTimeoutMs: 300 });
  try {
    const t = await f.login();
    await t.expect(/^\* BYE Autologout/, 3000);
    await t.expectClosed();
  } finally {
    await f.close();
  }
});

test('a session waiting in IDLE past idleTimeoutMs is logged out too: IDLE waits for the client, it is not server work', async () => {
  const f = await startImap({ idleTimeoutMs: 300 });
  try {
    const t = await f.login();
    await t.command('s', 'SELECT INBOX');
    t.send('i IDLE');
    await t.expect(/^\+ /);
    await t.expect(/^\* BYE Autologout/, 3000);
    await t.expectClosed();
  } finally {
    await f.close();
  }
});

test('AUTHENTICATE LOGIN asks for the user name and the password', async () => {
  const f = await startImap();
  try {
    const t = await f.open();
    t.send('a1 AUTHENTICATE LOGIN');
    await t.expect(/^\+ /);
    t.send(Buffer.from(TEST_USER).toString('base64'));
    await t.expect(/^\+ /);
    t.send(Buffer.from(TEST_PASSWORD).toString('base64'));
    await t.expectTagged('a1', 'OK');
  } finally {
    await f.close();
  }
});

test('COMPRESS DEFLATE: the OK is plain, then commands and responses are raw DEFLATE; a second COMPRESS is NO', async () => {
  const f = await startImap();
  try {
    const socket = connect({ host: '127.0.0.1', port: f.port });
    let plain = '';
    const onPlain = (d: Buffer): void => {
      plain += d.toString('latin1');
    };
    socket.on('data', onPlain);
    const waitFor = async (get: () => string, re: RegExp): Promise<void> => {
      const deadline = Date.now() + 5000;
      while (!re.test(get())) {
        if (Date.now() > deadline) throw new Error(`timeout waiting for ${re}: ${JSON.stringify(get())}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    await waitFor(() => plain, /^\* OK .*\r\n/);
    socket.write(`a LOGIN ${TEST_USER} "${TEST_PASSWORD}"\r\nb COMPRESS DEFLATE\r\n`);
    await waitFor(() => plain, /b OK DEFLATE active\r\n/);
    socket.off('data', onPlain);
    const inflate = createInflateRaw();
    const deflate = createDeflateRaw();
    let text = '';
    socket.on('data', (d: Buffer) => inflate.write(d));
    inflate.on('data', (d: Buffer) => {
      text += d.toString('latin1');
    });
    deflate.on('data', (d: Buffer) => socket.write(d));
    const send = (line: string): void => {
      deflate.write(`${line}\r\n`);
      deflate.flush(zlibConstants.Z_SYNC_FLUSH);
    };
    send('c SELECT INBOX');
    await waitFor(() => text, /c OK \[READ-WRITE\]/);
    send('d COMPRESS DEFLATE');
    await waitFor(() => text, /d NO \[COMPRESSIONACTIVE\]/);
    send('e LOGOUT');
    await waitFor(() => text, /\* BYE Logging out\r\ne OK/);
    socket.destroy();
  } finally {
    await f.close();
  }
});

test('COMPRESS DEFLATE: a decompression bomb of pipelined commands is held to the pipelining bound, not inflated into memory', async () => {
  // Compressed input inflates about 1,000 to 1: what the session holds must stay near its
  // pipelining bound (MAX_PIPELINED_BYTES), however much the client sends without reading.
  let peak = 0;
  const push = Receiver.prototype.push;
  Receiver.prototype.push = function (this: Receiver, chunk: Buffer) {
    push.call(this, chunk);
    peak = Math.max(peak, this.buffered);
  };
  const f = await startImap();
  try {
    // A large message FETCHed by a client that reads nothing: the session soon waits for the
    // socket, and what the client sends meanwhile waits for the session.
    const account = (await f.ctx.store.getAccountByAddress(TEST_USER))!;
    const inbox = (await f.ctx.store.getMailbox(account.id, 'INBOX'))!;
    await f.ctx.store.append(inbox.id, testMessage({ subject: 'big', body: `${'x'.repeat(76)}\r\n`.repeat(40_000) }));
    const t = await f.login();
    await t.command('s', 'SELECT INBOX');
    await t.command('c', 'COMPRESS DEFLATE');
    const commands = 'f FETCH 1 BODY.PEEK[]\r\n'.repeat(20) + 'a NOOP\r\n'.repeat(8 * 1024 * 1024);
    const bomb = deflateRawSync(Buffer.from(commands), { level: 9 });
    assert.ok(bomb.length < 200 * 1024, `the bomb is small: ${bomb.length}`);
    t.pause(); // no response is read
    t.sendRaw(bomb);
    await new Promise((r) => setTimeout(r, 2000));
    assert.ok(peak > MAX_PIPELINED_BYTES / 2, `the session was reading: ${peak}`);
    assert.ok(peak < MAX_PIPELINED_BYTES + 4 * 1024 * 1024, `held ${peak} bytes`);
    t.close();
  } finally {
    Receiver.prototype.push = push;
    await f.close();
  }
});
