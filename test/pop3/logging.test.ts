/**
 * POP3 logging: one line per command outcome and one per connection, all with the connection id;
 * never a password or an AUTH response.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { createPop3Server } from '../../src/pop3/server/server.js';
import { makeTestContext } from '../helpers/context.js';
import { RawPop3 } from './pop3-client.js';

test('POP3 logs one line per command outcome and one per connection, with its id, and no secrets', async () => {
  const ctx = await makeTestContext({ authOptions: { failureDelayMs: 0 } });
  const lines: Array<Record<string, unknown>> = [];
  const raw: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) {
        raw.push(l);
        lines.push(JSON.parse(l) as Record<string, unknown>);
      }
      done();
    },
  });
  const server = createPop3Server({ ...ctx, log: pino({ level: 'debug' }, sink) }, { implicitTls: false });
  const port = await server.listen('127.0.0.1', 0);
  const secret = 'very secret password 42';
  try {
    await ctx.addUser('carol@example.com', secret);
    const c = await RawPop3.connect(port);
    assert.equal(await c.command('USER carol@example.com'), '+OK Send your password');
    assert.equal(await c.command('PASS wrong secret 99'), '-ERR [AUTH] Authentication failed');
    assert.equal(await c.command(`AUTH PLAIN ${Buffer.from(`\0carol@example.com\0${secret}`).toString('base64')}`), '+OK Maildrop has 0 messages (0 octets)');
    assert.equal(await c.command('BOGUS'), '-ERR Unknown command');
    assert.equal(await c.command('QUIT'), '+OK Bye, 0 messages removed');
    await c.closed();
    await new Promise((r) => setTimeout(r, 100));
  } finally {
    await server.close(500);
    await ctx.cleanup();
  }
  const commands = lines.filter((l) => l.msg === 'command');
  assert.deepEqual(
    commands.map((l) => [l.cmd, l.outcome]),
    [['USER', 'ok'], ['PASS', 'refused'], ['AUTH', 'ok'], ['unknown', 'bad'], ['QUIT', 'ok']],
  );
  const connection = lines.filter((l) => l.event === 'connection');
  assert.equal(connection.length, 1);
  const cid = connection[0]?.cid;
  assert.ok(typeof cid === 'string' && cid.length > 0);
  for (const l of commands) assert.equal(l.cid, cid);
  assert.equal(connection[0]?.user, 'carol@example.com');
  assert.equal(connection[0]?.commands, 5);
  const all = raw.join('\n');
  assert.ok(!all.includes(secret) && !all.includes('wrong secret 99'), 'a password reached the log');
  assert.ok(!all.includes(Buffer.from(`\0carol@example.com\0${secret}`).toString('base64')), 'an AUTH response reached the log');
});
