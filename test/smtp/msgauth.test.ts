import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { generateKeyPairSync } from 'node:crypto';
import { authenticate, dkimSign } from 'mailauth';
import { safeResInfo } from '../../src/msgauth/inbound.js';
import { makeMessage } from '../helpers/messages.js';
import { openTransaction } from './wire.js';
import { dotStuff, startServer, type Harness } from './harness.js';
import { createMockResolver, type DnsTable } from './mock-dns.js';

const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const PRIVATE_PEM = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const PUBLIC_B64 = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');

function table(dmarcPolicy: 'none' | 'quarantine' | 'reject', spf = 'v=spf1 ip4:127.0.0.1 -all'): DnsTable {
  return {
    txt: {
      'sender.example': spf,
      'mx.sender.example': 'v=spf1 ip4:127.0.0.1 -all',
      'sel1._domainkey.sender.example': `v=DKIM1; k=rsa; p=${PUBLIC_B64}`,
      '_dmarc.sender.example': `v=DMARC1; p=${dmarcPolicy}`,
    },
  };
}

async function signed(raw: Buffer): Promise<Buffer> {
  const key = { signingDomain: 'sender.example', selector: 'sel1', privateKey: PRIVATE_PEM };
  // mailauth 4 signs with the keys in signatureData (the top-level fields alone sign nothing).
  // signTime is given: without it mailauth reads the clock twice (for the signed copy of the
  // header and for the emitted one), and when a second boundary falls between the two the t=
  // values differ and the signature is bad (seen once in CI).
  const res = await dkimSign(raw, { ...key, canonicalization: 'relaxed/relaxed', signTime: new Date(), signatureData: [key] });
  assert.equal(res.errors.length, 0);
  assert.match(res.signatures, /^DKIM-Signature: /);
  return Buffer.concat([Buffer.from(res.signatures), raw]);
}

function message(subject: string, from = 'alice@sender.example'): Buffer {
  return makeMessage({ from, to: 'bob@example.com', subject, body: 'Hello Bob\r\nsee you\r\n' });
}

async function send(h: Harness, raw: Buffer, mailFrom = 'alice@sender.example', helo = 'mx.sender.example') {
  const c = await openTransaction(h.port, mailFrom, []);
  await c.cmd(`EHLO ${helo}`, 250);
  await c.cmd(`MAIL FROM:<${mailFrom}>`, 250);
  await c.cmd('RCPT TO:<bob@example.com>', 250);
  await c.cmd('DATA', 354);
  c.write(dotStuff(raw));
  const r = await c.read();
  c.close();
  return r;
}

test('DKIM, SPF (MAIL FROM and HELO) and DMARC pass are recorded in Authentication-Results', async () => {
  const resolver = createMockResolver(table('reject'));
  const h = await startServer({ resolver });
  try {
    const bob = await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const sent = await signed(message('signed'));
    const r = await send(h, sent);
    assert.equal(r.code, 250, r.text);
    const [m] = await h.messages(bob.id);
    const text = m!.toString();
    assert.ok(text.includes('dkim=pass'), `not dkim=pass; sent: ${JSON.stringify(sent.toString())}\nstored: ${JSON.stringify(text)}`);
    const ar = /Authentication-Results: mail\.example\.test;\r\n((?:[ \t].*\r\n)+)/.exec(text);
    assert.ok(ar, text.slice(0, 800));
    assert.match(ar[1]!, /dkim=pass header\.i=@sender\.example header\.s=sel1/);
    assert.match(ar[1]!, /spf=pass .*smtp\.mailfrom=alice@sender\.example/);
    assert.match(ar[1]!, /spf=pass smtp\.helo=mx\.sender\.example/);
    assert.match(ar[1]!, /dmarc=pass .*header\.from=sender\.example/);
    assert.ok(text.indexOf('Return-Path:') < text.indexOf('Authentication-Results:'));
    assert.ok(resolver.queries.includes('TXT sel1._domainkey.sender.example'), 'DNS went through the injected resolver');
  } finally {
    await h.close();
  }
});

test('a message altered after signing fails DKIM', async () => {
  const h = await startServer({ resolver: createMockResolver(table('none')) });
  try {
    const bob = await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const good = await signed(message('tampered'));
    const bad = Buffer.from(good.toString().replace('Hello Bob', 'Hello Eve'));
    const r = await send(h, bad);
    assert.equal(r.code, 250);
    const [m] = await h.messages(bob.id);
    // mailauth reports a body hash mismatch as "neutral" with the reason (not "pass" in any case)
    assert.match(m!.toString(), /dkim=(fail|neutral) \(body hash did not verify\)/);
    assert.match(m!.toString(), /dmarc=pass/, 'SPF still aligns');
  } finally {
    await h.close();
  }
});

test('DMARC p=reject failure is refused with 550 5.7.1 when configured to reject', async () => {
  const h = await startServer({ resolver: createMockResolver(table('reject', 'v=spf1 ip4:192.0.2.1 -all')), dmarcReject: 'reject' });
  try {
    const bob = await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const r = await send(h, message('spoofed'));
    assert.equal(r.code, 550);
    assert.match(r.text, /^5\.7\.1 /);
    assert.equal((await h.messages(bob.id)).length, 0);
    assert.equal((await h.messages(bob.id, 'Junk')).length, 0);
  } finally {
    await h.close();
  }
});

test('DMARC p=reject failure goes to Junk by default', async () => {
  const h = await startServer({ resolver: createMockResolver(table('reject', 'v=spf1 ip4:192.0.2.1 -all')) });
  try {
    const bob = await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const r = await send(h, message('spoofed'));
    assert.equal(r.code, 250);
    assert.equal((await h.messages(bob.id)).length, 0);
    const junk = await h.messages(bob.id, 'Junk');
    assert.equal(junk.length, 1);
    assert.match(junk[0]!.toString(), /spf=fail/);
    assert.match(junk[0]!.toString(), /dmarc=fail/);
  } finally {
    await h.close();
  }
});

test('DMARC p=quarantine failure goes to Junk; p=none failure to INBOX', async () => {
  const q = await startServer({ resolver: createMockResolver(table('quarantine', 'v=spf1 -all')) });
  try {
    const bob = await q.ctx.addUser('bob@example.com', 'pw-bob-123456');
    assert.equal((await send(q, message('q'))).code, 250);
    assert.equal((await q.messages(bob.id, 'Junk')).length, 1);
  } finally {
    await q.close();
  }
  const n = await startServer({ resolver: createMockResolver(table('none', 'v=spf1 -all')) });
  try {
    const bob = await n.ctx.addUser('bob@example.com', 'pw-bob-123456');
    assert.equal((await send(n, message('n'))).code, 250);
    assert.equal((await n.messages(bob.id)).length, 1);
  } finally {
    await n.close();
  }
});

test('DKIM aligned signature passes DMARC even when SPF fails (forwarded mail)', async () => {
  const h = await startServer({ resolver: createMockResolver(table('reject', 'v=spf1 ip4:192.0.2.1 -all')), dmarcReject: 'reject' });
  try {
    const bob = await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const r = await send(h, await signed(message('forwarded')), 'list@forwarder.example', 'forwarder.example');
    assert.equal(r.code, 250, r.text);
    const [m] = await h.messages(bob.id);
    assert.match(m!.toString(), /dmarc=pass/);
  } finally {
    await h.close();
  }
});

test('a DNS failure is a temporary result, not a crash', async () => {
  const resolver = createMockResolver({});
  resolver.resolveTxt = async (name) => {
    throw Object.assign(new Error('SERVFAIL'), { code: 'ESERVFAIL', hostname: name });
  };
  const h = await startServer({ resolver });
  try {
    const bob = await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const r = await send(h, message('servfail'));
    assert.equal(r.code, 250, r.text);
    const [m] = await h.messages(bob.id);
    assert.match(m!.toString(), /spf=temperror/);
  } finally {
    await h.close();
  }
});

test('a valid ARC chain from a forwarder turns a DMARC p=reject refusal into Junk', async () => {
  const arcKeys = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const dns = table('reject', 'v=spf1 ip4:192.0.2.1 -all');
  dns.txt!['arc1._domainkey.list.example'] = `v=DKIM1; k=rsa; p=${arcKeys.publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`;
  const resolver = createMockResolver(dns);
  // The mailing list changed the body (a footer): the author's DKIM signature breaks; the list
  // records what it saw and seals (RFC 8617).
  const original = await signed(message('via list'));
  const modified = Buffer.from(`${original.toString()}-- \r\nlist footer\r\n`);
  const forwarded = await authenticate(modified, {
    ip: '192.0.2.1',
    helo: 'mx.sender.example',
    sender: 'alice@sender.example',
    mta: 'mx.list.example',
    resolver: async (name: string, rrtype: string) => {
      if (rrtype === 'TXT') return resolver.resolveTxt(name);
      throw Object.assign(new Error('ENOTFOUND'), { code: 'ENOTFOUND' });
    },
    seal: { signingDomain: 'list.example', selector: 'arc1', signTime: new Date(), privateKey: arcKeys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() },
    disableBimi: true,
  });
  const sealedMessage = Buffer.concat([Buffer.from(forwarded.headers), modified]);
  assert.match(sealedMessage.toString(), /^ARC-Seal: i=1;/m);

  const h = await startServer({ resolver, dmarcReject: 'reject' });
  try {
    const bob = await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const r = await send(h, sealedMessage, 'alice@sender.example', 'mx.list.example');
    assert.equal(r.code, 250, r.text);
    const junk = await h.messages(bob.id, 'Junk');
    assert.equal(junk.length, 1);
    const ar = /Authentication-Results: mail\.example\.test;\r\n((?:[ \t].*\r\n)+)/.exec(junk[0]!.toString());
    assert.match(ar![1]!, /arc=pass/);
    assert.match(ar![1]!, /dmarc=fail/);
  } finally {
    await h.close();
  }
});

/** The field's text without its comments, read as RFC 5322 §3.2.2 reads them (nesting, quoted
 * pairs, quoted strings), as a consumer of the field would. */
function withoutComments(value: string): string {
  let out = '';
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === '\\') {
      if (depth === 0) out += c + (value[i + 1] ?? '');
      i++;
    } else if (depth > 0) {
      if (c === '(') depth++;
      else if (c === ')') depth--;
    } else if (quoted) {
      if (c === '"') quoted = false;
      out += c;
    } else if (c === '(') {
      depth++;
    } else {
      if (c === '"') quoted = true;
      out += c;
    }
  }
  return out;
}

test('a MAIL FROM built to end the SPF comment early cannot add results under our name', async () => {
  const resolver = createMockResolver({ txt: { 'evil.example': 'v=spf1 +all' } });
  const h = await startServer({ resolver });
  try {
    const bob = await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const r = await send(h, message('forged', 'a@evil.example'), '"a); dkim=pass header.d=paypal.com (b)"@evil.example', 'a.example');
    assert.equal(r.code, 250, r.text);
    const text = (await h.messages(bob.id))[0]!.toString();
    const ar = /Authentication-Results: mail\.example\.test;\r\n((?:[ \t].*\r\n)+)/.exec(text);
    assert.ok(ar, text.slice(0, 800));
    // Without comments, and quoted values (the address, quoted as a whole) emptied: what is
    // left are the results and their properties.
    const bare = withoutComments(ar[1]!.replace(/\r\n/g, '')).replace(/"(?:[^"\\]|\\.)*"/g, '""');
    assert.match(bare, /spf=pass +smtp\.mailfrom="" smtp\.helo=a\.example;/);
    assert.doesNotMatch(bare, /paypal/, bare);
    assert.doesNotMatch(bare, /dkim=pass/, bare);
  } finally {
    await h.close();
  }
});

test('safeResInfo: comments do not nest, unterminated ones are closed, control characters go', () => {
  assert.equal(safeResInfo('spf=pass (x: domain of "a\\); dkim=pass (b\\)"@e designates 1 as permitted sender) smtp.mailfrom=e'),
    'spf=pass (x: domain of "a\\); dkim=pass \\(b\\)"@e designates 1 as permitted sender) smtp.mailfrom=e');
  assert.equal(safeResInfo('dkim=fail (bad (sig'), 'dkim=fail (bad \\(sig)');
  assert.equal(safeResInfo('dkim=none header.d="x(y'), 'dkim=none header.d="x(y"');
  assert.equal(safeResInfo('spf=none (a\r\nb) smtp.mailfrom=x\\'), 'spf=none (a  b) smtp.mailfrom=x\\\\');
  assert.equal(safeResInfo('dmarc=pass (p=NONE) header.from=example.org'), 'dmarc=pass (p=NONE) header.from=example.org');
});

test('at most 8 DKIM signatures are verified (each its own DNS query and body pass): the topmost, so a real signature above many forged ones still passes', async () => {
  const resolver = createMockResolver(table('reject'));
  const h = await startServer({ resolver });
  try {
    const bob = await h.ctx.addUser('bob@example.com', 'pw-bob-123456');
    const body = message('many signatures');
    const forged = Array.from({ length: 40 }, (_, i) =>
      `DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=evil.example; s=s${i}; l=${i}; h=from; bh=AAAA; b=AAAA\r\n`).join('');
    const r = await send(h, await signed(Buffer.concat([Buffer.from(forged), body])));
    assert.equal(r.code, 250, r.text);
    const text = (await h.messages(bob.id))[0]!.toString();
    const ar = /Authentication-Results: mail\.example\.test;\r\n((?:[ \t].*\r\n)+)/.exec(text)![1]!;
    // One result per signature verified: 8, the first the real one.
    const results = ar.match(/\bdkim=\w+/g) ?? [];
    assert.equal(results.length, 8, ar);
    assert.match(ar, /^ dkim=pass header\.i=@sender\.example/);
    assert.match(ar, /dmarc=pass/);
    // The stored message keeps every field it came with.
    assert.equal(text.split('DKIM-Signature: ').length - 1, 41);
  } finally {
    await h.close();
  }
});
