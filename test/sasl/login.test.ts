import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { createLoginMachine } from '../../src/sasl/login.js';

const b = (s: string) => Buffer.from(s, 'utf8');

test('LOGIN asks for the user name then the password', () => {
  const m = createLoginMachine();
  assert.deepEqual(m.next(null), { kind: 'challenge', data: b('Username:') });
  assert.deepEqual(m.next(b('tim@example.test')), { kind: 'challenge', data: b('Password:') });
  assert.deepEqual(m.next(b('s3cret')), { kind: 'verify', username: 'tim@example.test', password: 's3cret' });
  assert.deepEqual(m.next(b('more')), { kind: 'malformed' }, 'nothing after the password');
});

test('LOGIN takes the user name from an initial response', () => {
  const m = createLoginMachine();
  assert.deepEqual(m.next(b('tim@example.test')), { kind: 'challenge', data: b('Password:') });
  assert.deepEqual(m.next(b('pw')), { kind: 'verify', username: 'tim@example.test', password: 'pw' });
});

test('LOGIN refuses empty, over-long or non-UTF-8 answers', () => {
  const cases: Array<[string, Array<Buffer | null>]> = [
    ['empty user name', [null, Buffer.alloc(0)]],
    ['missing response', [null, null]],
    ['empty password', [b('tim'), Buffer.alloc(0)]],
    ['over-long user name', [b('a'.repeat(321))]],
    ['over-long password', [b('tim'), b('p'.repeat(1025))]],
    ['invalid UTF-8', [b('tim'), Buffer.from([0xc3, 0x28])]],
  ];
  for (const [name, steps] of cases) {
    const m = createLoginMachine();
    const last = steps.map((s) => m.next(s)).at(-1);
    assert.deepEqual(last, { kind: 'malformed' }, name);
  }
});
