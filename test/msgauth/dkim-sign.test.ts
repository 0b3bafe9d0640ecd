import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { mkdtemp, rm, readdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { authenticate } from 'mailauth';
import { createDkimSigning, signMessage } from '../../src/msgauth/dkim-sign.js';
import { dkimDnsRecord, dkimRecordName, generateDkimKeys, loadDkimKeys, activeDkimKeys, type DkimKey } from '../../src/msgauth/dkim-keys.js';

const MESSAGE = Buffer.from(
  'From: Alice <alice@example.org>\r\n' +
    'To: bob@example.net\r\n' +
    'Subject: Hello\r\n' +
    'Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n' +
    'Message-ID: <1@example.org>\r\n' +
    'MIME-Version: 1.0\r\n' +
    'Content-Type: text/plain; charset=utf-8\r\n' +
    '\r\n' +
    'Hello Bob,\r\n\r\nsee you.\r\n',
);

/** A DNS stand-in publishing the given keys' TXT records, and a permissive SPF. */
function resolverFor(keys: readonly DkimKey[]) {
  const txt = new Map<string, string[][]>();
  for (const k of keys) txt.set(dkimRecordName(k), [[dkimDnsRecord(k)]]);
  txt.set('example.org', [['v=spf1 ip4:192.0.2.1 -all']]);
  txt.set('_dmarc.example.org', [['v=DMARC1; p=reject']]);
  return async (name: string, rrtype: string): Promise<any> => {
    if (rrtype === 'TXT' && txt.has(name)) return txt.get(name);
    const err = new Error(`no ${rrtype} for ${name}`) as Error & { code: string };
    err.code = 'ENOTFOUND';
    throw err;
  };
}

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'facteur-dkim-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('generated keys are written per domain and algorithm, private, and reloaded', async () => {
  await withDir(async (dir) => {
    const keys = await generateDkimKeys(dir, 'Example.org', { rsaBits: 1024, now: new Date('2026-11-27T00:00:00Z') });
    assert.deepEqual(keys.map((k) => [k.selector, k.algorithm, k.domain]), [
      ['f20261127r', 'rsa', 'example.org'],
      ['f20261127e', 'ed25519', 'example.org'],
    ]);
    const files = (await readdir(join(dir, 'dkim', 'example.org'))).sort();
    assert.deepEqual(files, ['f20261127e.ed25519.key', 'f20261127r.rsa.key']);
    const st = await stat(join(dir, 'dkim', 'example.org', 'f20261127r.rsa.key'));
    assert.equal(st.mode & 0o077, 0, 'key readable only by its owner');
    const loaded = await loadDkimKeys(dir, 'example.org');
    assert.equal(loaded.length, 2);
    assert.match(dkimDnsRecord(keys[0]!), /^v=DKIM1; k=rsa; p=[A-Za-z0-9+/]+=*$/);
    // RFC 8463 §4.2: the Ed25519 p= is the raw 32-byte key, 44 base64 characters.
    assert.match(dkimDnsRecord(keys[1]!), /^v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=$/);
  });
});

test('a rotation adds new selectors and keeps the old keys; the new ones sign after the activation delay', async () => {
  await withDir(async (dir) => {
    const now = new Date('2026-11-27T00:00:00Z');
    await generateDkimKeys(dir, 'example.org', { rsaBits: 1024, now });
    await new Promise((r) => setTimeout(r, 20));
    const second = await generateDkimKeys(dir, 'example.org', { rsaBits: 1024, now });
    assert.deepEqual(second.map((k) => k.selector), ['f20261127r2', 'f20261127e2']);
    const all = await loadDkimKeys(dir, 'example.org');
    assert.equal(all.length, 4);
    const newest = Math.max(...all.map((k) => k.createdAt));
    const hour = 3600_000;
    // Right after the rotation the old keys still sign; 48 hours later the new ones do.
    assert.deepEqual(activeDkimKeys(all, newest + hour).map((k) => k.selector).sort(), ['f20261127e', 'f20261127r']);
    assert.deepEqual(activeDkimKeys(all, newest + 49 * hour).map((k) => k.selector).sort(), ['f20261127e2', 'f20261127r2']);
    assert.deepEqual(activeDkimKeys(all, newest, 0).map((k) => k.selector).sort(), ['f20261127e2', 'f20261127r2']);
    // A domain's first keys sign at once.
    assert.deepEqual(activeDkimKeys(all.filter((k) => k.selector.endsWith('2')), newest).length, 2);
    const signing = createDkimSigning(dir, { now: () => newest + 49 * hour });
    const signed = (await signing.sign(MESSAGE, 'example.org')).toString();
    assert.match(signed, /s=f20261127r2;/);
    assert.match(signed, /s=f20261127e2;/);
  });
});

test('a message signed with RSA and Ed25519 verifies with both signatures, From oversigned', async () => {
  await withDir(async (dir) => {
    const keys = await generateDkimKeys(dir, 'example.org', { rsaBits: 1024 });
    const signed = await createDkimSigning(dir).sign(MESSAGE, 'example.org');
    const text = signed.toString('latin1');
    assert.equal((text.match(/^DKIM-Signature:/gim) ?? []).length, 2);
    assert.ok(signed.subarray(signed.length - MESSAGE.length).equals(MESSAGE), 'original bytes follow the signatures');

    const result = await dkimVerify(signed, { resolver: resolverFor(keys) });
    assert.equal(result.results.length, 2);
    for (const r of result.results) {
      assert.equal(r.status?.result, 'pass', JSON.stringify(r.status));
      assert.equal(r.signingDomain, 'example.org');
    }
    const selectors = result.results.map((r) => r.selector).sort();
    assert.deepEqual(selectors, keys.map((k) => k.selector).sort());
    assert.match(text, /a=rsa-sha256;/);
    assert.match(text, /a=ed25519-sha256;/);
    // h= names From twice for one From field (RFC 6376 §5.4.2).
    const hTags = [...text.matchAll(/\bh=([^;]+);/g)].map((m) => m[1]!.replace(/\s+/g, '').toLowerCase().split(':'));
    assert.equal(hTags.length, 2);
    for (const h of hTags) {
      assert.equal(h.filter((k) => k === 'from').length, 2, `h=${h.join(':')}`);
      for (const name of ['subject', 'date', 'to', 'message-id', 'content-type']) assert.ok(h.includes(name), name);
      assert.ok(!h.includes('received') && !h.includes('return-path'));
    }

    // The whole chain as a receiver sees it: DKIM pass aligned with From gives DMARC pass.
    const auth = await authenticate(signed, {
      ip: '192.0.2.1',
      helo: 'mail.example.org',
      sender: 'alice@example.org',
      mta: 'mx.example.net',
      resolver: resolverFor(keys),
      disableArc: true,
      disableBimi: true,
    });
    assert.equal(auth.dmarc && auth.dmarc.status?.result, 'pass');
  });
});

test('a From field added above the signed one breaks the signature (oversigning)', async () => {
  await withDir(async (dir) => {
    const keys = await generateDkimKeys(dir, 'example.org', { rsaBits: 1024 });
    const signed = await signMessage(MESSAGE, keys);
    const text = signed.toString('latin1');
    const cut = text.indexOf('From: Alice');
    const forged = Buffer.from(text.slice(0, cut) + 'From: Mallory <m@example.org>\r\n' + text.slice(cut), 'latin1');
    const result = await dkimVerify(forged, { resolver: resolverFor(keys) });
    for (const r of result.results) assert.notEqual(r.status?.result, 'pass');
  });
});

test('a changed body fails verification', async () => {
  await withDir(async (dir) => {
    const keys = await generateDkimKeys(dir, 'example.org', { rsaBits: 1024 });
    const signed = await signMessage(MESSAGE, keys);
    const tampered = Buffer.from(signed.toString('latin1').replace('see you.', 'send money.'), 'latin1');
    const bad = await dkimVerify(tampered, { resolver: resolverFor(keys) });
    assert.equal(bad.results.length, 2);
    // mailauth reports a body hash mismatch as neutral with this comment (RFC 6376 §6.1.3).
    for (const r of bad.results) {
      assert.notEqual(r.status?.result, 'pass');
      assert.match(String(r.status?.comment), /body hash did not verify/);
    }
  });
});

test('a domain without keys, or a message without From, is left unsigned', async () => {
  await withDir(async (dir) => {
    const signing = createDkimSigning(dir);
    assert.ok((await signing.sign(MESSAGE, 'example.org')).equals(MESSAGE));
    const keys = await generateDkimKeys(dir, 'example.org', { rsaBits: 1024 });
    const noFrom = Buffer.from('To: b@example.net\r\nSubject: x\r\n\r\nbody\r\n');
    assert.ok((await signMessage(noFrom, keys)).equals(noFrom));
    await assert.rejects(loadDkimKeys(dir, '../etc'), /not a host name/);
  });
});
