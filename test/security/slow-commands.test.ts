/**
 * Slow senders after login: once a command's first byte has arrived, the whole command must
 * arrive within the command timeout (IMAP literals get more time, in proportion to their size at
 * a floor rate). Before this bound, a logged-in client trickling one byte just before each
 * inactivity timeout kept a command open for ever. Small bounds are configured so the tests run
 * in seconds; the timing assertions leave room for a loaded machine.
 */
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { applyConfig, defaultConfig, renderConfigFile } from '../../src/config/config.js';
import { DEFAULT_COMMAND_TIMEOUT_MS } from '../../src/net/command-deadline.js';
import { PASSWORD, startServers, USER } from './servers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sends bytes every intervalMs until stopped. */
function trickle(send: () => void, intervalMs: number): () => void {
  const timer = setInterval(send, intervalMs);
  return () => clearInterval(timer);
}

test('IMAP after login: a command line trickled past commandTimeoutMs gets * BYE and the connection closes; steady commands are served', async () => {
  const s = await startServers({ imap: { commandTimeoutMs: 600, minUploadBytesPerSecond: 1000 } });
  try {
    const t = await s.imapLogin();
    // Complete commands, even with pauses longer than the bound between them, are fine.
    for (let i = 0; i < 3; i++) {
      await t.command(`n${i}`, 'NOOP');
      await sleep(300);
    }
    const started = Date.now();
    const stop = trickle(() => {
      if (!t.isClosed) t.sendRaw('x');
    }, 100);
    try {
      t.sendRaw('a1 NOOP');
      await t.expect(/^\* BYE /, 5000);
      await t.expectClosed();
    } finally {
      stop();
    }
    const took = Date.now() - started;
    assert.ok(took >= 550 && took < 4000, `dropped after ${took} ms`);
    await s.stillServes();
  } finally {
    await s.close();
  }
});

test('IMAP after login: a literal gets time in proportion to the bytes sent (not announced); a steady APPEND longer than the line bound succeeds, a stalled one is dropped', async () => {
  const s = await startServers({ imap: { commandTimeoutMs: 600, minUploadBytesPerSecond: 1000 } });
  try {
    const head = 'Subject: slow upload\r\n\r\n';
    const message = Buffer.from(`${head}${'y'.repeat(2000 - head.length - 2)}\r\n`);
    // 600 ms + 2000 bytes at 1000 bytes/s = 2.6 s allowed; sent in about 1.2 s (twice the line bound).
    const t = await s.imapLogin();
    t.send(`a1 APPEND INBOX {${message.length}}`);
    await t.expect(/^\+ /);
    const started = Date.now();
    for (let i = 0; i < 4; i++) {
      t.sendRaw(message.subarray(i * 500, (i + 1) * 500));
      await sleep(300);
    }
    t.send('');
    await t.expectTagged('a1', 'OK');
    assert.ok(Date.now() - started > 1000);
    assert.equal((await s.messages()).length, 1);

    // The same literal stalled after 100 bytes: 600 ms + 0.1 s; announcing 2,000 bytes bought
    // no time (counted, they would have given it 2.6 s).
    const u = await s.imapLogin();
    let begun = Date.now();
    u.send(`b1 APPEND INBOX {${message.length}}`);
    await u.expect(/^\+ /);
    u.sendRaw(message.subarray(0, 100));
    await u.expect(/^\* BYE /, 8000);
    await u.expectClosed();
    let took = Date.now() - begun;
    assert.ok(took >= 650 && took < 2400, `dropped after ${took} ms`);
    // Stalled after 1,500 bytes: those bought 1.5 s more.
    const v = await s.imapLogin();
    begun = Date.now();
    v.send(`c1 APPEND INBOX {${message.length}}`);
    await v.expect(/^\+ /);
    v.sendRaw(message.subarray(0, 1500));
    await v.expect(/^\* BYE /, 8000);
    await v.expectClosed();
    took = Date.now() - begun;
    assert.ok(took >= 1950 && took < 6000, `dropped after ${took} ms`);
    assert.equal((await s.messages()).length, 1, 'the stalled APPENDs stored nothing');
    await s.stillServes();
  } finally {
    await s.close();
  }
});

test('POP3 after login: a command line trickled past timeouts.commandMs gets -ERR and the connection closes; the account is free again', async () => {
  const s = await startServers({ pop3: { timeouts: { commandMs: 600 } } });
  try {
    const p = await s.pop3();
    assert.match(await p.login(USER, PASSWORD), /^\+OK/);
    for (let i = 0; i < 3; i++) {
      assert.match(await p.command('NOOP'), /^\+OK/);
      await sleep(300);
    }
    const started = Date.now();
    const stop = trickle(() => {
      if (!p.isClosed) p.write('x');
    }, 100);
    try {
      p.write('STA');
      assert.match(await p.line(5000), /^-ERR Command not received in time/);
      await p.closed(5000);
    } finally {
      stop();
    }
    const took = Date.now() - started;
    assert.ok(took >= 550 && took < 4000, `dropped after ${took} ms`);
    // The maildrop lock was released: the next session logs in (not [IN-USE]).
    await s.stillServes();
  } finally {
    await s.close();
  }
});

test('the bounds are in [security] of facteur.toml with documented defaults (60 s, 8192 bytes/s); 0 is refused', () => {
  const base = defaultConfig('mail.example.test');
  assert.equal(base.security.commandTimeoutMs, DEFAULT_COMMAND_TIMEOUT_MS);
  assert.equal(DEFAULT_COMMAND_TIMEOUT_MS, 60_000);
  assert.equal(base.security.minUploadBytesPerSecond, 8192);
  const text = renderConfigFile(base);
  assert.match(text, /\n# After login \(IMAP, POP3\), a command must arrive complete[^\n]*\n(#[^\n]*\n)*command_timeout_ms = 60000\nmin_upload_bytes_per_second = 8192\n/);
  const c = applyConfig(base, { security: { command_timeout_ms: 500, min_upload_bytes_per_second: 1000 } }, 'facteur.toml');
  assert.equal(c.security.commandTimeoutMs, 500);
  assert.equal(c.security.minUploadBytesPerSecond, 1000);
  assert.throws(() => applyConfig(defaultConfig('h'), { security: { command_timeout_ms: 0 } }, 'facteur.toml'), /command_timeout_ms/);
});
