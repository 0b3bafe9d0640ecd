/**
 * What the POP3 server asks of the store: nothing per message for STAT/LIST/UIDL, only the first
 * lines of a message for TOP, and no UPDATE when the server shuts down.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import type { MailStore } from '../../src/store/types.js';
import { startPop3 } from './pop3-client.js';

interface Recorder {
  calls: string[];
  streamedBytes: number;
  wrap(store: MailStore): MailStore;
}

function recorder(): Recorder {
  const r: Recorder = {
    calls: [],
    streamedBytes: 0,
    wrap(store) {
      return new Proxy(store, {
        get(target, prop, receiver) {
          const value = Reflect.get(target, prop, receiver) as unknown;
          if (typeof value !== 'function') return value;
          const name = String(prop);
          if (name === 'streamBlob') {
            return (...args: Parameters<MailStore['streamBlob']>) => {
              r.calls.push(name);
              const inner = target.streamBlob(...args);
              return (async function* () {
                for await (const chunk of inner) {
                  r.streamedBytes += chunk.length;
                  yield chunk;
                }
              })();
            };
          }
          return (...args: unknown[]) => {
            r.calls.push(name);
            return (value as (...a: unknown[]) => unknown).apply(target, args);
          };
        },
      });
    },
  };
  return r;
}

test('POP3 STAT, LIST and UIDL answer from the list made at login, without store I/O', async () => {
  const rec = recorder();
  const f = await startPop3({}, {}, rec.wrap);
  try {
    for (let i = 0; i < 50; i++) await f.deliver({ subject: `m${i}` });
    const c = await f.session();
    const atLogin = [...rec.calls];
    assert.ok(atLogin.includes('listEntries'));
    rec.calls.length = 0;
    assert.match(await c.command('STAT'), /^\+OK 50 \d+$/);
    assert.equal((await c.multi('LIST')).lines.length, 50);
    assert.equal((await c.multi('UIDL')).lines.length, 50);
    for (let i = 1; i <= 50; i++) assert.match(await c.command(`LIST ${i}`), /^\+OK/);
    for (let i = 1; i <= 50; i++) assert.match(await c.command(`UIDL ${i}`), /^\+OK/);
    assert.equal(await c.command('DELE 3'), '+OK Message 3 deleted');
    assert.match(await c.command('RSET'), /^\+OK/);
    assert.deepEqual(rec.calls, []);
  } finally {
    await f.close();
  }
});

test('POP3 TOP reads only the header and the first lines of a large message', async () => {
  const rec = recorder();
  const f = await startPop3({}, {}, rec.wrap);
  try {
    const body = `${'z'.repeat(998)}\r\n`.repeat(8000);
    const entry = await f.deliver({ subject: 'eight megabytes', body });
    assert.ok(entry.size > 8_000_000);
    const c = await f.session();
    const top = await c.multi('TOP 1 2');
    assert.equal(top.status, '+OK Top of message follows');
    assert.equal(top.lines.filter((l) => l.startsWith('zzz')).length, 2);
    assert.ok(rec.streamedBytes < 1_000_000, `TOP read ${rec.streamedBytes} octets of ${entry.size}`);
    // RETR of the same message reads all of it.
    rec.streamedBytes = 0;
    assert.equal((await c.multi('RETR 1')).lines.length, 8000 + top.lines.length - 2);
    assert.equal(rec.streamedBytes, entry.size);
  } finally {
    await f.close();
  }
});

test('POP3 server close ends sessions without UPDATE and releases their locks', async () => {
  const f = await startPop3();
  await f.deliver();
  const c = await f.session();
  assert.equal(await c.command('DELE 1'), '+OK Message 1 deleted');
  await f.server.close(1000);
  await c.closed();
  assert.equal((await f.entries()).length, 1);
  const release = await f.ctx.store.tryLock(`pop3:${f.account.id}`);
  assert.ok(release, 'the POP3 lock is still held after close');
  await release();
  await f.close();
});

/** A store whose named operations fail while `failing` holds them (an outage, a bug). */
function faulty(names: Set<string>) {
  return (store: MailStore): MailStore =>
    new Proxy(store, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (typeof value !== 'function') return value;
        const name = String(prop);
        if (name === 'streamBlob') {
          return (...args: Parameters<MailStore['streamBlob']>) => {
            const inner = target.streamBlob(...args);
            return (async function* () {
              let first = true;
              for await (const chunk of inner) {
                if (!first && names.has('streamBlob')) throw new Error('disk read error (test)');
                first = false;
                yield chunk;
              }
            })();
          };
        }
        return (...args: unknown[]) => {
          if (names.has(name)) return Promise.reject(new Error(`database is down (test: ${name})`));
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
}

test('POP3 maps a store failure to -ERR [SYS/TEMP] with a correlation id and keeps the session', async () => {
  const failing = new Set<string>();
  const f = await startPop3({}, {}, faulty(failing));
  try {
    await f.deliver({ subject: 'x' });
    const c = await f.session();
    failing.add('getEntries');
    const reply = await c.command('RETR 1');
    assert.match(reply, /^-ERR \[SYS\/TEMP\] Internal error, try again later \(ref [0-9a-f]{8}\)$/);
    assert.ok(!reply.includes('database'), 'internal message leaked');
    failing.clear();
    assert.match((await c.multi('RETR 1')).status, /^\+OK/);
  } finally {
    await f.close();
  }
});

test('POP3 closes the connection when message content cannot be read after +OK', async () => {
  const failing = new Set<string>(['streamBlob']);
  const f = await startPop3({}, {}, faulty(failing));
  try {
    await f.deliver({ subject: 'large', body: `${'q'.repeat(998)}\r\n`.repeat(600) });
    const c = await f.session();
    c.send('RETR 1');
    assert.match(await c.line(), /^\+OK/);
    await c.closed();
    assert.ok(!c.pending().includes('\r\n.\r\n'), 'the response was terminated as if complete');
  } finally {
    await f.close();
  }
});

test('POP3 QUIT reports -ERR [SYS/TEMP] when UPDATE fails, and removes nothing', async () => {
  const failing = new Set<string>();
  const f = await startPop3({}, {}, faulty(failing));
  try {
    await f.deliver();
    const c = await f.session();
    assert.equal(await c.command('DELE 1'), '+OK Message 1 deleted');
    failing.add('expunge');
    assert.match(await c.command('QUIT'), /^-ERR \[SYS\/TEMP\] Some deleted messages were not removed \(ref [0-9a-f]{8}\)$/);
    await c.closed();
    assert.equal((await f.entries()).length, 1);
    failing.clear();
    const d = await f.session();
    assert.match(await d.command('STAT'), /^\+OK 1 /);
  } finally {
    await f.close();
  }
});

test('POP3 RETR of a message expunged between its entry check and the read answers -ERR, not a cut response', async () => {
  let expungeAfterCheck: (() => Promise<unknown>) | null = null;
  const f = await startPop3({}, {}, (store) =>
    new Proxy(store, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (prop !== 'getEntries' || typeof value !== 'function') return typeof value === 'function' ? value.bind(target) : value;
        return async (...args: Parameters<MailStore['getEntries']>) => {
          const entries = await target.getEntries(...args);
          // IMAP expunges the message right after POP3 checked that it exists.
          const race = expungeAfterCheck;
          expungeAfterCheck = null;
          if (race) await race();
          return entries;
        };
      },
    }),
  );
  try {
    const m = await f.deliver({ subject: 'raced' });
    await f.deliver({ subject: 'other' });
    const c = await f.session();
    // The blob goes at once too (the SQLite store's sweep, else a few seconds later).
    expungeAfterCheck = async () => {
      await f.ctx.store.expunge(f.inbox, [m.uid]);
      await f.ctx.store.collectGarbage();
    };
    assert.equal(await c.command('RETR 1'), '-ERR Message 1 was removed by another session');
    assert.match((await c.multi('RETR 2')).status, /^\+OK/);
  } finally {
    await f.close();
  }
});
