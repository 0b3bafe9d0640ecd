import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import fc from 'fast-check';
import { scramCredentialsFor } from '../../src/auth/password.js';
import { createLoginMachine } from '../../src/sasl/login.js';
import { parsePlain } from '../../src/sasl/plain.js';
import { saslprep } from '../../src/sasl/saslprep.js';
import { createScramServer } from '../../src/sasl/scram.js';
import { scramClient } from './scram-client.js';

const SEED = 4422;
const bytes = fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.from(a));
/** Bytes that look like SCRAM messages: attribute fragments glued together. */
const scramish = fc
  .array(fc.constantFrom('n', 'y', 'p=x', ',', 'a=', 'n=', 'r=', 'c=', 'p=', 'm=', 's=', 'i=', '=2C', '=3D', '=', 'biws', 'abc', '\u00AD', '\0', 'x'), {
    maxLength: 30,
  })
  .map((parts) => Buffer.from(parts.join('')));

test('the mechanism parsers answer every input with a typed result and never throw', () => {
  fc.assert(
    fc.property(fc.oneof(bytes, scramish), fc.oneof(bytes, scramish), (first, second) => {
      const plain = parsePlain(first);
      assert.ok(plain.ok || plain.reason === 'malformed' || plain.reason === 'invalid');
      const login = createLoginMachine();
      for (const r of [null, first, second, first]) assert.ok(['challenge', 'verify', 'malformed'].includes(login.next(r).kind));
      const scram = createScramServer();
      const cf = scram.receiveClientFirst(first);
      if (cf.ok) {
        scram.serverFirst(scramCredentialsFor('x', { salt: Buffer.alloc(16, 1), iterations: 4096 }));
        const fin = scram.receiveClientFinal(second);
        assert.ok(fin.ok ? !fin.proofValid : fin.reason === 'malformed' || fin.reason === 'invalid');
      } else {
        assert.ok(cf.reason === 'malformed' || cf.reason === 'invalid');
      }
    }),
    { seed: SEED, numRuns: 1000 },
  );
});

const identity = fc
  .string({
    minLength: 1,
    maxLength: 40,
    unit: fc.oneof(fc.constantFrom('\u0007', '\u00AD', '\u00A0', '\u0627', 'a'), fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 })),
  })
  .filter((s) => !s.includes('\0'));

test('PLAIN returns exactly the identity and password it was given', () => {
  fc.assert(
    fc.property(identity, identity, fc.boolean(), (authcid, password, withAuthzid) => {
      const message = Buffer.from(`${withAuthzid ? authcid : ''}\0${authcid}\0${password}`);
      const r = parsePlain(message);
      if (withAuthzid && saslprep(authcid) === null) {
        assert.deepEqual(r, { ok: false, reason: 'invalid' });
      } else {
        assert.deepEqual(r, { ok: true, authzid: withAuthzid ? authcid : '', authcid, password });
      }
    }),
    { seed: SEED, numRuns: 500 },
  );
});

test('SCRAM-SHA-256 succeeds for any printable user name and password, and only with that password', () => {
  const printable = fc.string({ minLength: 1, maxLength: 24, unit: fc.constantFrom(...'abcXYZ019 ,=+/@.!~'.split('')) });
  fc.assert(
    fc.property(printable, printable, printable, (user, password, other) => {
      const creds = scramCredentialsFor(password, { iterations: 4096 });
      const server = createScramServer();
      const client = scramClient(user, password);
      const first = server.receiveClientFirst(client.clientFirst);
      assert.deepEqual(first, { ok: true, username: user });
      const fin = server.receiveClientFinal(client.final(server.serverFirst(creds)));
      assert.ok(fin.ok && fin.proofValid);
      assert.deepEqual(fin.serverFinal, client.expectedServerFinal());
      if (other !== password) {
        const s2 = createScramServer();
        const c2 = scramClient(user, other);
        s2.receiveClientFirst(c2.clientFirst);
        const f2 = s2.receiveClientFinal(c2.final(s2.serverFirst(creds)));
        assert.ok(f2.ok && !f2.proofValid);
      }
    }),
    { seed: SEED, numRuns: 60 },
  );
});
