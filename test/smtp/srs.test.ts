import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { createSrs, MAX_AGE_DAYS } from '../../src/delivery/srs.js';
import { FUZZ } from '../fuzz/fuzz-options.js';

const DAY = 86_400_000;
const SECRET = Buffer.from('0123456789abcdef0123456789abcdef');

test('SRS0: a sender is rewritten into the alias domain and reversed to itself, whatever the case', () => {
  let t = Date.UTC(2026, 10, 28);
  const srs = createSrs({ secret: SECRET, now: () => t });
  const f = srs.forward('Jane.Doe=x@Example.org', 'lists.example.com');
  assert.match(f, /^SRS0=[a-z2-7]{5}=[a-z2-7]{2}=Example\.org=Jane\.Doe=x@lists\.example\.com$/);
  assert.deepEqual(srs.reverse(f), { kind: 'ok', address: 'Jane.Doe=x@Example.org' });
  assert.deepEqual(srs.reverse(f.toLowerCase()), { kind: 'ok', address: 'jane.doe=x@example.org' });
  assert.deepEqual(srs.reverse(f.toUpperCase()).kind, 'ok');
  // Still valid at the end of its life, refused after.
  t += MAX_AGE_DAYS * DAY;
  assert.equal(srs.reverse(f).kind, 'ok');
  t += DAY;
  const old = srs.reverse(f);
  assert.equal(old.kind, 'invalid');
  assert.match((old as { reason: string }).reason, /expired/);
  // Across the 1024-day wrap of the stamp.
  t = Date.UTC(2026, 10, 28) + (1023 - (Math.floor(Date.UTC(2026, 10, 28) / DAY) % 1024)) * DAY;
  const late = srs.forward('a@b.example', 'c.example');
  t += 3 * DAY;
  assert.equal(srs.reverse(late).kind, 'ok');
});

test('SRS: the null sender is kept; an address minted elsewhere or altered does not reverse', () => {
  const srs = createSrs({ secret: SECRET });
  assert.equal(srs.forward('', 'example.com'), '');
  assert.deepEqual(srs.reverse('bob@example.com'), { kind: 'not-srs' });
  const f = srs.forward('alice@example.org', 'example.com');
  const [, h, tt] = f.split('=') as [string, string, string];
  // Another destination in the same shape: the hash covers it.
  assert.equal(srs.reverse(`SRS0=${h}=${tt}=victim.example=alice@example.com`).kind, 'invalid');
  assert.equal(srs.reverse(`SRS0=${h}=${tt}=example.org=mallory@example.com`).kind, 'invalid');
  assert.equal(srs.reverse(f.replace(/=[a-z2-7]{2}=/, '=aa=')).kind, 'invalid', 'the stamp is covered too');
  const other = createSrs({ secret: Buffer.from('another secret of 32 bytes......') });
  assert.equal(other.reverse(f).kind, 'invalid');
  assert.equal(srs.reverse('SRS0=zz@example.com').kind, 'invalid');
  assert.equal(srs.reverse('SRS1=abc@example.com').kind, 'invalid');
  assert.throws(() => createSrs({ secret: Buffer.from('short') }), /shorter than 16/);
});

test('SRS1: a sender already rewritten by another forwarder points back at that forwarder', () => {
  const first = createSrs({ secret: Buffer.from('first forwarder secret..........') });
  const ours = createSrs({ secret: SECRET });
  const a = first.forward('alice@example.org', 'first.example');
  const b = ours.forward(a, 'example.com');
  assert.match(b, /^SRS1=[a-z2-7]{5}=first\.example==[a-z2-7]{5}=[a-z2-7]{2}=example\.org=alice@example\.com$/);
  // Our reverse gives the first forwarder's address, which reverses there to the original.
  const back = ours.reverse(b);
  assert.equal(back.kind, 'ok');
  assert.equal((back as { address: string }).address, a);
  assert.deepEqual(first.reverse(a), { kind: 'ok', address: 'alice@example.org' });
  // Forwarded once more (SRS1 in): the first forwarder is kept, the hash is the new one's.
  const third = createSrs({ secret: Buffer.from('third forwarder secret..........') });
  const c = third.forward(b, 'third.example');
  assert.match(c, /^SRS1=[a-z2-7]{5}=first\.example==/);
  assert.equal((third.reverse(c) as { address: string }).address, a);
  assert.equal(ours.reverse(c).kind, 'invalid', "another forwarder's SRS1 is not ours");
});

test('SRS properties: any address round-trips (case aside); no input makes reverse throw or mint another address', () => {
  const srs = createSrs({ secret: SECRET });
  const atext = fc.stringMatching(/^[A-Za-z0-9!#$%&'*+\/=?^_`{|}~.-]{1,40}$/);
  const domain = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{2,10}){1,3}$/);
  fc.assert(
    fc.property(atext, domain, domain, (local, origin, via) => {
      const sender = `${local}@${origin}`;
      const f = srs.forward(sender, via);
      assert.ok(f.endsWith(`@${via}`));
      const back = srs.reverse(f);
      if (/^srs[01][=+-]/i.test(local)) return; // a foreign SRS address: reverses to its forwarder
      assert.deepEqual(back, { kind: 'ok', address: sender });
      assert.deepEqual(srs.reverse(f.toLowerCase()), { kind: 'ok', address: sender.toLowerCase() });
    }),
    { seed: FUZZ.seed, numRuns: FUZZ.numRuns },
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 300 }), (s) => {
      const r = srs.reverse(s);
      // Anything that is not ours is refused or not SRS at all: 25 bits of hash are not found
      // by chance in a few hundred runs.
      assert.notEqual(r.kind, 'ok');
    }),
    { seed: FUZZ.seed, numRuns: FUZZ.numRuns },
  );
});
