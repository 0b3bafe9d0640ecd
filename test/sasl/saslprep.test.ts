import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { saslprep } from '../../src/sasl/saslprep.js';

test('SASLprep gives the RFC 4013 §3 example results', () => {
  assert.equal(saslprep('I\u00ADX'), 'IX'); // soft hyphen mapped to nothing
  assert.equal(saslprep('user'), 'user');
  assert.equal(saslprep('USER'), 'USER'); // no case folding
  assert.equal(saslprep('\u00AA'), 'a'); // NFKC
  assert.equal(saslprep('\u2168'), 'IX'); // NFKC
  assert.equal(saslprep('\u0007'), null); // prohibited control character
  assert.equal(saslprep('\u0627\u0031'), null); // bidi: must end with an R/AL character
});

test('SASLprep maps non-ASCII spaces to SPACE and refuses prohibited characters', () => {
  assert.equal(saslprep('a\u00A0b\u3000c'), 'a b c');
  assert.equal(saslprep('p\u200Bw'), 'p w'); // ZERO WIDTH SPACE is a C.1.2 space
  assert.equal(saslprep('\u0627\u0628'), '\u0627\u0628'); // right-to-left only: fine
  assert.equal(saslprep('\u0627a\u0628'), null); // R/AL mixed with L
  for (const bad of ['a\u0000b', 'a\u007Fb', 'a\u0085b', '\uE000', '\uFDD0', '\uD800', '\u2FF0', '\u200E', '\u{E0001}', '\u0378']) {
    assert.equal(saslprep(bad), null, JSON.stringify(bad));
  }
});

test('printable ASCII passes through unchanged', () => {
  let all = '';
  for (let c = 0x20; c <= 0x7e; c++) all += String.fromCharCode(c);
  assert.equal(saslprep(all), all);
});
