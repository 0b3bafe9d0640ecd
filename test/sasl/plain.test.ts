import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { parsePlain } from '../../src/sasl/plain.js';

const b = (s: string) => Buffer.from(s, 'utf8');

test('PLAIN parses the RFC 4616 §4 examples', () => {
  assert.deepEqual(parsePlain(b('\0tim\0tanstaaftanstaaf')), {
    ok: true,
    authzid: '',
    authcid: 'tim',
    password: 'tanstaaftanstaaf',
  });
  // Kurt asking to act as Ursel: Facteur has no proxy authorization, so this fails.
  assert.deepEqual(parsePlain(b('Ursel\0Kurt\0xipj3plmq')), { ok: false, reason: 'invalid' });
});

test('PLAIN accepts an authzid equal to the authcid, case-insensitively', () => {
  const r = parsePlain(b('Tim@Example.test\0tim@example.test\0pw'));
  assert.equal(r.ok, true);
});

test('PLAIN keeps UTF-8 names and passwords', () => {
  const r = parsePlain(b('\0j\u00FCrgen@example.test\0p\u00E4ss'));
  assert.deepEqual(r, { ok: true, authzid: '', authcid: 'j\u00FCrgen@example.test', password: 'p\u00E4ss' });
});

test('PLAIN refuses messages outside the RFC 4616 grammar as malformed', () => {
  const cases: Array<[string, Buffer]> = [
    ['empty', Buffer.alloc(0)],
    ['no NUL', b('timpassword')],
    ['one NUL', b('tim\0password')],
    ['three NULs', b('\0tim\0pass\0word')],
    ['empty authcid', b('\0\0password')],
    ['empty password', b('\0tim\0')],
    ['invalid UTF-8', Buffer.from([0, 0x74, 0x69, 0x6d, 0, 0xff, 0xfe])],
    ['over-long name', b('\0' + 'a'.repeat(321) + '\0pw')],
    ['over-long password', b('\0tim\0' + 'p'.repeat(1025))],
    ['over-long message', Buffer.alloc(5000, 0x61)],
  ];
  for (const [name, input] of cases) assert.deepEqual(parsePlain(input), { ok: false, reason: 'malformed' }, name);
});
