/**
 * Slow senders inside the SMTP message phase: a DATA body, or a BDAT transaction from its first
 * chunk to LAST, must keep a minimum average rate after a grace period, within an absolute cap.
 * Before this bound only the 3-minute inactivity timeout applied, so a client trickling a byte
 * every few minutes held a connection for hours. Small bounds are configured so the tests run in
 * seconds; the timing assertions leave room for a loaded machine.
 */
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { applyConfig, defaultConfig, renderConfigFile } from '../../src/config/config.js';
import { LISTENER_FACTORIES } from '../../src/listeners.js';
import { MESSAGE_TIMEOUT_MS_DEFAULT } from '../../src/smtp/protocol/limits.js';
import { captureLog, startServers, USER, type ServerSet } from './servers.js';
import { SmtpWire } from '../smtp/wire.js';
import { connect } from 'node:net';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** 600 ms of grace, then 1000 bytes/s on average. */
const LIMITS = { messageGraceMs: 600, minDataBytesPerSecond: 1000 };

async function openTransaction(c: SmtpWire, hello = 'EHLO'): Promise<void> {
  await c.cmd(`${hello} client.example.net`, 250);
  await c.cmd('MAIL FROM:<sender@elsewhere.test>', 250);
  await c.cmd(`RCPT TO:<${USER}>`, 250);
}

/** Writes piece after piece every intervalMs until the server answers or closes; returns the
 * reply and how long after the start it came. */
async function trickleUntilReply(c: SmtpWire, piece: string, intervalMs: number) {
  const started = Date.now();
  const timer = setInterval(() => {
    if (!c.ended) c.write(piece);
  }, intervalMs);
  try {
    const r = await c.read(10_000);
    return { r, took: Date.now() - started };
  } finally {
    clearInterval(timer);
  }
}

/** A message of exactly `size` bytes. */
function messageOf(size: number, subject: string): Buffer {
  const head = `Subject: ${subject}\r\n\r\n`;
  const lines: string[] = [];
  let left = size - head.length;
  while (left > 0) {
    const n = Math.min(78, left - 2);
    lines.push(`${'m'.repeat(Math.max(0, n))}\r\n`);
    left -= Math.max(0, n) + 2;
  }
  return Buffer.from(head + lines.join(''));
}

async function subjects(s: ServerSet): Promise<string[]> {
  return (await s.messages()).map((m) => /^Subject: (.*)$/m.exec(m.toString('latin1'))?.[1]?.trim() ?? '?');
}

test('SMTP DATA trickled below the floor rate gets 421 4.4.2 and is closed, nothing is delivered, and another client is served meanwhile', async () => {
  const { log, entries } = captureLog();
  const s = await startServers({ smtp: { limits: LIMITS } });
  s.ctx.log = log;
  try {
    const c = await s.smtp();
    await openTransaction(c);
    await c.cmd('DATA', 354);
    c.write('Subject: trickled\r\n\r\n');
    // 20 bytes every 200 ms (100 bytes/s): each resets the 3-minute inactivity timer, but the
    // average is a tenth of the floor, so the phase ends a little after its 600 ms of grace.
    const pending = trickleUntilReply(c, 'x'.repeat(18) + '\r\n', 200);
    // Meanwhile another client, on another connection, delivers a message.
    const other = await s.smtp();
    await openTransaction(other);
    await other.cmd('DATA', 354);
    await other.cmd('Subject: normal\r\n\r\nHello.\r\n.', 250);
    await other.cmd('QUIT', 221);
    const { r, took } = await pending;
    assert.equal(r.code, 421);
    assert.match(r.text, /^4\.4\.2 Timeout/);
    await c.closed();
    assert.ok(took >= 500 && took < 5000, `dropped after ${took} ms`);
    assert.deepEqual(await subjects(s), ['normal'], 'the trickled message is not delivered');
    const logged = entries.find((e) => e.event === 'slow-message');
    assert.ok(logged, 'the drop is logged');
    assert.equal(logged.mode, 'data');
    assert.equal(logged.level, 30);
    await s.stillServes();
  } finally {
    await s.close();
  }
});

test('SMTP: a message sent steadily above the floor rate, for five times the grace, is received whole (DATA and BDAT)', async () => {
  const s = await startServers({ smtp: { limits: LIMITS } });
  try {
    // 6000 bytes in 500-byte pieces every 250 ms (about 2000 bytes/s): about 3 s in all.
    const message = messageOf(6000, 'steady data');
    const c = await s.smtp();
    await openTransaction(c);
    await c.cmd('DATA', 354);
    const started = Date.now();
    for (let i = 0; i < message.length; i += 500) {
      c.write(message.subarray(i, i + 500));
      await sleep(250);
    }
    await c.cmd('.', 250);
    assert.ok(Date.now() - started > 2500, 'the upload took longer than the grace');

    // BDAT: six chunks of 1000 bytes, one every 300 ms, each answered before the next.
    const bdat = messageOf(6000, 'steady bdat');
    await c.cmd('MAIL FROM:<sender@elsewhere.test>', 250);
    await c.cmd(`RCPT TO:<${USER}>`, 250);
    for (let i = 0; i < 6; i++) {
      c.write(`BDAT 1000${i === 5 ? ' LAST' : ''}\r\n`);
      c.write(bdat.subarray(i * 1000, (i + 1) * 1000));
      assert.equal((await c.read()).code, 250);
      if (i < 5) await sleep(300);
    }
    await c.cmd('QUIT', 221);
    const got = await s.messages();
    assert.equal(got.length, 2);
    assert.ok(got.some((m) => m.subarray(m.length - message.length).equals(message)), 'the DATA message arrived whole');
    assert.ok(got.some((m) => m.subarray(m.length - bdat.length).equals(bdat)), 'the BDAT message arrived whole');
  } finally {
    await s.close();
  }
});

test('SMTP BDAT: a trickled chunk, a transaction of small chunks sent slowly, and a trickled refused chunk each get 421 4.4.2, nothing is delivered; once a chunk is refused the clock stops', async () => {
  const s = await startServers({ smtp: { limits: LIMITS } });
  try {
    // One large chunk, trickled.
    const a = await s.smtp();
    await openTransaction(a);
    a.write('BDAT 5000 LAST\r\nSubject: trickled chunk\r\n\r\n');
    const one = await trickleUntilReply(a, 'y'.repeat(20), 200);
    assert.equal(one.r.code, 421);
    assert.match(one.r.text, /^4\.4\.2 /);
    await a.closed();
    assert.ok(one.took >= 500 && one.took < 5000, `dropped after ${one.took} ms`);

    // Each chunk complete and prompt, but 50 bytes every 400 ms: the whole sequence is bounded.
    const b = await s.smtp();
    await openTransaction(b);
    const started = Date.now();
    let last = 0;
    for (let i = 0; i < 30; i++) {
      b.write(`BDAT 50\r\n${'z'.repeat(48)}\r\n`);
      last = (await b.read()).code;
      if (last !== 250) break;
      await sleep(400);
    }
    assert.equal(last, 421);
    await b.closed();
    const took = Date.now() - started;
    assert.ok(took >= 500 && took < 6000, `dropped after ${took} ms`);

    // Once a refused chunk is read, no message is being received (the transaction refuses its
    // other chunks until RSET): the deadline stops with it, the client is idle, not slow.
    const d = await s.smtp();
    await d.cmd('EHLO client.example.net', 250);
    await d.cmd('MAIL FROM:<sender@elsewhere.test>', 250);
    await d.cmd('RCPT TO:<nobody@example.test>', 550);
    d.write(`BDAT 10\r\n${'v'.repeat(10)}`);
    assert.equal((await d.read()).code, 554);
    await sleep(1200);
    await d.cmd('NOOP', 250);
    await d.cmd('QUIT', 221);

    // A chunk refused for want of MAIL is still read (RFC 3030 §2), so it is bounded too.
    const c = await s.smtp();
    await c.cmd('EHLO client.example.net', 250);
    c.write('BDAT 4000\r\n');
    const refused = await trickleUntilReply(c, 'w'.repeat(20), 200);
    assert.equal(refused.r.code, 421);
    await c.closed();

    assert.equal(await s.totalMessages(), 0);
    await s.stillServes();
  } finally {
    await s.close();
  }
});

test('SMTP: the message phase is capped in all, even at a rate above the floor', async () => {
  const s = await startServers({ smtp: { limits: { messageGraceMs: 10_000, minDataBytesPerSecond: 1000, messageTimeoutMs: 1500 } } });
  try {
    const c = await s.smtp();
    await openTransaction(c);
    await c.cmd('DATA', 354);
    c.write('Subject: endless\r\n\r\n');
    // About 2000 bytes/s, for ever: only the cap ends it.
    const { r, took } = await trickleUntilReply(c, 'q'.repeat(198) + '\r\n', 100);
    assert.equal(r.code, 421);
    await c.closed();
    assert.ok(took >= 1300 && took < 6000, `dropped after ${took} ms`);
    assert.equal(await s.totalMessages(), 0);
  } finally {
    await s.close();
  }
});

test('the message bounds come from facteur.toml: [security] command_timeout_ms and min_upload_bytes_per_second, [smtp] message_timeout_ms (default 2 h; 0 is refused)', async () => {
  const base = defaultConfig('mail.example.test');
  assert.equal(base.smtp.messageTimeoutMs, MESSAGE_TIMEOUT_MS_DEFAULT);
  assert.equal(MESSAGE_TIMEOUT_MS_DEFAULT, 7_200_000);
  // At the defaults a maximum-size message at the floor rate fits in the cap.
  assert.ok(base.security.commandTimeoutMs + (base.smtp.maxMessageSize / base.security.minUploadBytesPerSecond) * 1000 < MESSAGE_TIMEOUT_MS_DEFAULT);
  assert.match(renderConfigFile(base), /\n\[smtp\]\n(?:[^[][^\n]*\n)*message_timeout_ms = 7200000\n/);
  assert.throws(() => applyConfig(base, { smtp: { message_timeout_ms: 0 } }, 'facteur.toml'), /smtp\.message_timeout_ms/);
  const config = applyConfig(
    base,
    { security: { command_timeout_ms: 600, min_upload_bytes_per_second: 1000 }, smtp: { message_timeout_ms: 60_000 } },
    'facteur.toml',
  );
  // The LMTP listener built from that configuration, as `facteur serve` builds it.
  const s = await startServers();
  const lmtp = LISTENER_FACTORIES.lmtp!(s.ctx, config, { dataDir: s.ctx.dataDir, resolver: null as never });
  try {
    assert.ok(lmtp);
    const port = await lmtp.listen('127.0.0.1', 0);
    const socket = connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const c = new SmtpWire(socket);
    await c.expect(220);
    await openTransaction(c, 'LHLO');
    await c.cmd('DATA', 354);
    const { r, took } = await trickleUntilReply(c, 'x'.repeat(18) + '\r\n', 200);
    assert.equal(r.code, 421);
    assert.ok(took >= 500 && took < 5000, `dropped after ${took} ms`);
    c.close();
  } finally {
    await lmtp?.close(200);
    await s.close();
  }
});
