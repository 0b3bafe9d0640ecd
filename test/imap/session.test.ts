import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { MailStore } from '../../src/store/types.js';
import { startImap, TEST_PASSWORD, TEST_USER } from '../helpers/imap-transcript.js';

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
