/**
 * The outbound client's messages are not held by Nagle's algorithm. nodemailer writes a message
 * in several writes and leaves the option on, so the end of data waited for the server's delayed
 * ACK: 40 ms a message on Linux (measured against Facteur's MX on loopback: 3 KB messages 53 ms
 * each, 9 ms with TCP_NODELAY). The server here answers at once from memory, so a transaction
 * costs a few milliseconds and the bound below sits far under the delayed ACK's floor.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { openSession } from '../../src/queue/smtp-client.js';

const MESSAGES = 15;
/** Median transaction time allowed (ms): the delayed ACK alone is 40. */
const MEDIAN_BOUND_MS = 30;

/** A minimal SMTP server that accepts every message: replies only, nothing stored. */
function sink(): Promise<{ port: number; close(): Promise<void>; received(): number }> {
  let received = 0;
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buf = '';
    let inData = false;
    socket.write('220 sink.test ESMTP\r\n');
    socket.on('data', (chunk: Buffer) => {
      buf += chunk.toString('latin1');
      for (;;) {
        if (inData) {
          const end = buf.indexOf('\r\n.\r\n');
          if (end < 0) return;
          buf = buf.slice(end + 5);
          inData = false;
          received++;
          socket.write('250 2.0.0 Queued\r\n');
          continue;
        }
        const nl = buf.indexOf('\r\n');
        if (nl < 0) return;
        const line = buf.slice(0, nl).toUpperCase();
        buf = buf.slice(nl + 2);
        if (line.startsWith('EHLO')) socket.write('250-sink.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n');
        else if (line === 'DATA') {
          inData = true;
          // The terminator may follow "\r\n" at once: keep the line end the body starts after.
          buf = `\r\n${buf}`;
          socket.write('354 Go ahead\r\n');
        } else if (line === 'QUIT') socket.end('221 Bye\r\n');
        else socket.write('250 OK\r\n');
      }
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () =>
      resolve({
        port: (server.address() as AddressInfo).port,
        received: () => received,
        close: async () => {
          for (const s of sockets) s.destroy();
          await new Promise<void>((r) => server.close(() => r()));
        },
      }),
    );
  });
}

test('outbound SMTP: a message is not held by a delayed ACK at the end of its data', async (t) => {
  const server = await sink();
  const session = await openSession({ address: '127.0.0.1', port: server.port, servername: 'sink.test', ehloName: 'out.example.org', tls: 'plain' });
  try {
    const line = `${'z'.repeat(76)}\r\n`;
    const body = Buffer.from(`From: a@example.org\r\nTo: b@example.net\r\nSubject: timing\r\n\r\n${line.repeat(40)}`);
    const times: number[] = [];
    for (let i = 0; i < MESSAGES; i++) {
      const t0 = performance.now();
      const r = await session.send({ from: 'a@example.org', to: ['b@example.net'], size: body.length, eightBit: false, requireTls: false }, body);
      times.push(performance.now() - t0);
      assert.deepEqual(r.accepted, ['b@example.net']);
    }
    assert.equal(server.received(), MESSAGES);
    times.sort((a, b) => a - b);
    const median = times[times.length >> 1]!;
    t.diagnostic(`median ${median.toFixed(1)} ms, slowest ${times.at(-1)!.toFixed(1)} ms`);
    assert.ok(median < MEDIAN_BOUND_MS, `median ${median.toFixed(1)} ms (all: ${times.map((t) => t.toFixed(1)).join(', ')})`);
  } finally {
    await session.quit();
    await server.close();
  }
});
