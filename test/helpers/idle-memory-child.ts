/**
 * Child process for test/imap/idle-memory.test.ts: an IMAP server on 127.0.0.1 port 0 with the
 * fixture user and `messages` messages in its INBOX, alone in its process so that its heap is
 * the server's only. Prints "port <n>", then answers the parent's IPC messages: "measure" with
 * the heap figures after full collections, "stop" by closing everything and exiting.
 *
 *   node --expose-gc --import tsx test/helpers/idle-memory-child.ts <messages>
 */
import { startImap, TEST_USER } from './imap-transcript.js';
import { testMessage } from './store.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with --expose-gc');
const messages = Number(process.argv[2] ?? '100');
const f = await startImap({ maxConnections: 5000, maxConnectionsPerIp: 5000, maxConnectionsPerAccount: 5000 });
const account = (await f.ctx.store.getAccountByAddress(TEST_USER))!;
const inbox = (await f.ctx.store.getMailbox(account.id, 'INBOX'))!;
await f.ctx.store.appendMany(
  inbox.id,
  Array.from({ length: messages }, (_, i) => testMessage({ subject: `message ${i}` })),
);

process.on('message', (msg: string) => {
  if (msg === 'measure') {
    // Twice: the first collection may leave garbage that only a finalizer released.
    gc();
    gc();
    const m = process.memoryUsage();
    process.send!({ heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers });
  } else if (msg === 'stop') {
    void f.close().then(() => process.exit(0));
  }
});
process.stdout.write(`port ${f.port}\n`);
