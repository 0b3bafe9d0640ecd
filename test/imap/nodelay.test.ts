/**
 * A response that ends after a streamed literal (FETCH BODY[] of a message kept as a file) is not
 * held back by Nagle's algorithm: without TCP_NODELAY its last small write (the closing
 * parenthesis and the tagged OK) waited for the client's delayed ACK, 40 ms on Linux, on most
 * such FETCHes (measured on loopback: median 46 ms for a 300 KB message, 3.8 ms with it).
 * The bound below is under that floor by a wide margin and far above the FETCH's own time.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { connect as connectTcp, type Socket } from 'node:net';
import { connect as connectTls } from 'node:tls';
import { startImap, TEST_PASSWORD, TEST_USER } from '../helpers/imap-transcript.js';
import { testMessage } from '../helpers/store.js';

const FETCHES = 15;
const ROUNDS = 3;
/** Median FETCH time allowed (ms): the delayed ACK alone is 40. */
const MEDIAN_BOUND_MS = 30;

/** Reads the socket until a tagged line of `tag`; returns the bytes before it and the line. */
function reader(s: Socket): (tag: string) => Promise<{ before: Buffer; line: string }> {
  let buf = Buffer.alloc(0);
  let wake: (() => void) | null = null;
  let failed: Error | null = null;
  s.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    wake?.();
  });
  s.on('error', (err) => {
    failed = err;
    wake?.();
  });
  return async (tag) => {
    for (;;) {
      const at = buf.indexOf(`\r\n${tag} `);
      const start = buf.subarray(0, tag.length + 1).toString('latin1') === `${tag} ` ? 0 : at >= 0 ? at + 2 : -1;
      if (start >= 0) {
        const end = buf.indexOf('\r\n', start);
        if (end >= 0) {
          const out = { before: buf.subarray(0, start), line: buf.subarray(start, end).toString('latin1') };
          buf = buf.subarray(end + 2);
          return out;
        }
      }
      if (failed !== null) throw failed;
      await new Promise<void>((r) => (wake = r));
      wake = null;
    }
  };
}

for (const tls of [false, true]) {
  test(`FETCH BODY[] of a large message is not held by a delayed ACK (${tls ? 'implicit TLS' : 'plain'})`, async (t) => {
    const f = await startImap({ implicitTls: tls });
    try {
      const account = await f.ctx.store.getAccountByAddress(TEST_USER);
      const inbox = (await f.ctx.store.getMailbox(account!.id, 'INBOX'))!;
      // Past the inline bound (256 KiB): a file, streamed to the client.
      const line = `${'x'.repeat(76)}\r\n`;
      const message = testMessage({ subject: 'large', body: line.repeat(Math.ceil((300 * 1024) / line.length)) });
      await f.ctx.store.append(inbox.id, message);

      const s = tls ? connectTls({ port: f.port, host: '127.0.0.1', rejectUnauthorized: false }) : connectTcp(f.port, '127.0.0.1');
      s.setNoDelay(true);
      const until = reader(s);
      try {
        assert.match((await until('*')).line, /^\* OK/); // the greeting
        s.write(`a LOGIN "${TEST_USER}" "${TEST_PASSWORD}"\r\n`);
        assert.match((await until('a')).line, /^a OK/);
        s.write('b SELECT INBOX\r\n');
        assert.match((await until('b')).line, /^b OK/);
        // A delayed ACK holds most FETCHes every time; a machine busy with other work slows some
        // for a while. So up to ROUNDS rounds, and one whose median is under the bound is enough.
        const medians: string[] = [];
        for (let round = 0; round < ROUNDS; round++) {
          const times: number[] = [];
          for (let i = 0; i < FETCHES; i++) {
            const t0 = performance.now();
            s.write(`f${i} UID FETCH * (BODY.PEEK[])\r\n`);
            const r = await until(`f${i}`);
            times.push(performance.now() - t0);
            assert.match(r.line, new RegExp(`^f${i} OK`));
            assert.ok(r.before.includes(`BODY[] {${message.raw.length}}\r\n`), 'the whole message was sent');
          }
          times.sort((a, b) => a - b);
          const median = times[times.length >> 1]!;
          t.diagnostic(`round ${round + 1}: median ${median.toFixed(1)} ms, slowest ${times.at(-1)!.toFixed(1)} ms`);
          if (median < MEDIAN_BOUND_MS) return;
          medians.push(`${median.toFixed(1)} (all: ${times.map((x) => x.toFixed(1)).join(', ')})`);
        }
        assert.fail(`median over ${MEDIAN_BOUND_MS} ms in every round: ${medians.join('; ')}`);
      } finally {
        s.destroy();
      }
    } finally {
      await f.close();
    }
  });
}
