import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { connectSmtp } from './wire.js';
import { dotStuff, startServer } from './harness.js';

test('LMTP: LHLO is required, EHLO is refused', async () => {
  const h = await startServer({ mode: 'lmtp' });
  try {
    const c = await connectSmtp(h.port);
    const g = await c.expect(220);
    assert.match(g.text, /LMTP/);
    await c.cmd('EHLO client.example.net', 500);
    const r = await c.cmd('LHLO client.example.net', 250);
    assert.ok(r.lines.includes('PIPELINING'));
    c.close();
  } finally {
    await h.close();
  }
});

test('LMTP: one reply per recipient after DATA, a recipient over quota gets its own 452', async () => {
  const h = await startServer({ mode: 'lmtp' });
  try {
    const bob = await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const carol = await h.ctx.addUser('carol@example.com', 'pw-carol-123456');
    const c = await connectSmtp(h.port);
    await c.expect(220);
    await c.cmd('LHLO mta.example.net', 250);
    await c.cmd('MAIL FROM:<s@example.net>', 250);
    await c.cmd('RCPT TO:<bob@example.com>', 250);
    await c.cmd('RCPT TO:<carol@example.com>', 250);
    await c.cmd('RCPT TO:<nobody@example.com>', 550);
    // Carol's quota fills between RCPT and DATA: only her delivery fails.
    await h.ctx.store.updateAccount(carol.id, { quotaMessages: 0 });
    await c.cmd('DATA', 354);
    c.write(dotStuff('Subject: lmtp\r\n\r\nbody\r\n'));
    const r1 = await c.expect(250);
    assert.match(r1.text, /^2\.0\.0 /);
    const r2 = await c.expect(452);
    assert.match(r2.text, /^4\.2\.2 /);
    assert.equal((await h.messages(bob.id)).length, 1);
    assert.equal((await h.messages(carol.id)).length, 0);
    const m = (await h.messages(bob.id))[0]!.toString();
    assert.match(m, /with LMTP id/);
    c.close();
  } finally {
    await h.close();
  }
});

test('LMTP: BDAT LAST also answers per recipient', async () => {
  const h = await startServer({ mode: 'lmtp' });
  try {
    const bob = await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const carol = await h.ctx.addUser('carol@example.com', 'pw-carol-123456');
    const c = await connectSmtp(h.port);
    await c.expect(220);
    await c.cmd('LHLO mta.example.net', 250);
    await c.cmd('MAIL FROM:<s@example.net>', 250);
    await c.cmd('RCPT TO:<bob@example.com>', 250);
    await c.cmd('RCPT TO:<carol@example.com>', 250);
    const body = Buffer.from('Subject: chunked\r\n\r\nbody\r\n');
    c.write(Buffer.concat([Buffer.from(`BDAT ${body.length} LAST\r\n`), body]));
    await c.expect(250);
    await c.expect(250);
    assert.equal((await h.messages(bob.id)).length, 1);
    assert.equal((await h.messages(carol.id)).length, 1);
    c.close();
  } finally {
    await h.close();
  }
});

test('LMTP: a message refused on its content (NUL, empty; DATA or BDAT LAST) gets one reply per recipient, and the session stays in step', async () => {
  const h = await startServer({ mode: 'lmtp' });
  try {
    const bob = await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    await h.ctx.addUser('alice@example.com', 'pw-alice-123456');
    const c = await connectSmtp(h.port);
    await c.expect(220);
    await c.cmd('LHLO mta.example.net', 250);
    const transaction = async (): Promise<void> => {
      await c.cmd('MAIL FROM:<s@example.net>', 250);
      await c.cmd('RCPT TO:<bob@example.com>', 250);
      await c.cmd('RCPT TO:<alice@example.com>', 250);
    };
    await transaction();
    await c.cmd('DATA', 354);
    c.write(dotStuff('Subject: t\r\n\r\nbody with NUL \0 here\r\n'));
    assert.match((await c.expect(554)).text, /^5\.6\.0 .*NUL/);
    assert.match((await c.expect(554)).text, /^5\.6\.0 .*NUL/);
    // The next command's reply is its own, not taken for alice's.
    await c.cmd('NOOP', 250);
    await transaction();
    const body = 'Subject: t\r\n\r\n\0\r\n';
    c.write(`BDAT ${body.length} LAST\r\n${body}`);
    await c.expect(554);
    await c.expect(554);
    await c.cmd('NOOP', 250);
    // After two refused messages (one error each) the session still delivers.
    await transaction();
    await c.cmd('DATA', 354);
    c.write(dotStuff('Subject: fine\r\n\r\nbody\r\n'));
    await c.expect(250);
    await c.expect(250);
    assert.equal((await h.messages(bob.id)).length, 1);
    c.close();
  } finally {
    await h.close();
  }
});
