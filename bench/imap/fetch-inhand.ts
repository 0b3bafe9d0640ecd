/**
 * FETCH answered in hand, in one process: a server on 127.0.0.1 with one mailbox of the
 * benchmark's messages, one client repeating a FETCH whose items are all kept (after a first
 * FETCH that keeps them), and the process's CPU time per command (process.cpuUsage: the
 * server's work and the client's, which only looks for the tagged line).
 *
 *   node --import tsx bench/imap/fetch-inhand.ts [messages=100] [commands=3000] [rounds=5]
 *     [items="UID FLAGS ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (From Subject)]"]
 *     [utf8=1]
 *
 * Prints the CPU microseconds per command of each round, then their median.
 */
import { connect, type Socket } from 'node:net';
import { parseMessage } from '../../src/mail/parse.js';
import { startImap, TEST_PASSWORD, TEST_USER } from '../../test/helpers/imap-transcript.js';
import { corpus } from './corpus.js';

const arg = (name: string, dflt: string): string => {
  const a = process.argv.find((x) => x.startsWith(`${name}=`));
  return a ? a.slice(name.length + 1) : dflt;
};
const MESSAGES = Number(arg('messages', '100'));
const COMMANDS = Number(arg('commands', '3000'));
const ROUNDS = Number(arg('rounds', '5'));
const ITEMS = arg('items', 'UID FLAGS ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (From Subject)]');
const UTF8 = arg('utf8', '0') === '1';

/** A client that sends one command and waits for its tagged line, looking at nothing else. */
class Client {
  private tail = '\r\n';
  private waiting: { tag: string; resolve: () => void } | null = null;
  bytes = 0;
  constructor(private readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.bytes += d.length;
      const w = this.waiting;
      if (w === null) return;
      // The tagged line is the last one: only the end of each chunk is looked at.
      this.tail = (this.tail + d.toString('latin1', Math.max(0, d.length - 2000))).slice(-2000);
      if (this.tail.includes(`\r\n${w.tag} `)) {
        this.waiting = null;
        this.tail = '\r\n';
        w.resolve();
      }
    });
  }
  command(tag: string, text: string): Promise<void> {
    return new Promise((resolve) => {
      this.waiting = { tag, resolve };
      this.socket.write(`${tag} ${text}\r\n`);
    });
  }
}

const f = await startImap();
try {
  const account = (await f.ctx.store.getAccountByAddress(TEST_USER))!;
  const inbox = (await f.ctx.store.getMailbox(account.id, 'INBOX'))!;
  const batch = [];
  for (const m of corpus(7, MESSAGES, TEST_USER)) batch.push({ raw: m.raw, parsed: parseMessage(m.raw), internalDate: m.time });
  await f.ctx.store.appendMany(inbox.id, batch);
  const socket = connect({ host: '127.0.0.1', port: f.port });
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  const c = new Client(socket);
  await new Promise((r) => setTimeout(r, 100));
  await c.command('l', `LOGIN "${TEST_USER}" "${TEST_PASSWORD}"`);
  if (UTF8) await c.command('e', 'ENABLE UTF8=ACCEPT');
  await c.command('s', 'SELECT INBOX');
  const command = `FETCH 1:${MESSAGES} (${ITEMS})`;
  for (let i = 0; i < 200; i++) await c.command(`w${i}`, command);
  const results: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const bytes = c.bytes;
    const before = process.cpuUsage();
    const started = process.hrtime.bigint();
    for (let i = 0; i < COMMANDS; i++) await c.command(`f${i}`, command);
    const cpu = process.cpuUsage(before);
    const wall = Number(process.hrtime.bigint() - started) / 1e3;
    const us = (cpu.user + cpu.system) / COMMANDS;
    results.push(us);
    console.log(`round ${r + 1}: ${us.toFixed(1)} us CPU/command, ${(wall / COMMANDS).toFixed(1)} us wall, ${Math.round((c.bytes - bytes) / COMMANDS)} bytes/command`);
  }
  const sorted = [...results].sort((a, b) => a - b);
  console.log(`median ${sorted[Math.floor(sorted.length / 2)]!.toFixed(1)} us CPU/command (${command})`);
  socket.destroy();
} finally {
  await f.close();
}
