/**
 * The renderers behind the http listener: Prometheus text stays well-formed whatever the label
 * values, series are bounded, and XML/plist output escapes every value and drops characters XML
 * cannot carry.
 */
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { createMetrics, MAX_SERIES } from '../../src/lib/metrics.js';
import { el, escapeXml, plistDocument, xmlDocument } from '../../src/http/xml.js';
import { parsePlist, parseXml } from './helpers.js';

test('metrics render HELP and TYPE once per family, escape label values, and keep counters and gauges apart', async () => {
  const m = createMetrics();
  const c = m.counter('t_requests_total', 'Requests.\nSecond line \\ backslash');
  c.inc({ path: 'a"b\\c\nd' });
  c.inc({ path: 'a"b\\c\nd' }, 2);
  const g = m.gauge('t_open', 'Open now.');
  g.inc({ l: 'x' });
  g.inc({ l: 'x' });
  g.dec({ l: 'x' });
  m.onCollect(() => g.set(7, { l: 'collected' }));
  const text = await m.render();
  assert.equal(
    text,
    [
      '# HELP t_open Open now.',
      '# TYPE t_open gauge',
      't_open{l="x"} 1',
      't_open{l="collected"} 7',
      '# HELP t_requests_total Requests.\\nSecond line \\\\ backslash',
      '# TYPE t_requests_total counter',
      't_requests_total{path="a\\"b\\\\c\\nd"} 3',
      '',
    ].join('\n'),
  );
  assert.throws(() => c.inc({}, -1), /Cannot decrease counter/);
  assert.throws(() => m.gauge('t_requests_total', 'x'), /it is a counter/);
  assert.throws(() => m.counter('bad name', 'x'), /not a valid metric name/);
  assert.throws(() => c.inc({ 'bad-label': 'x' }), /not a valid label name/);
});

test('a metric keeps at most MAX_SERIES label sets; the rest are folded into one overflow series', async () => {
  const m = createMetrics();
  const c = m.counter('t_total', 'x');
  for (let i = 0; i < MAX_SERIES + 50; i++) c.inc({ id: String(i) });
  const lines = (await m.render()).split('\n').filter((l) => l.startsWith('t_total'));
  assert.equal(lines.length, MAX_SERIES + 1);
  assert.ok(lines.includes('t_total{overflow="true"} 50'));
});

test('a bound counter (with) counts into the series of its labels, is rendered only once counted, and folds into overflow like inc', async () => {
  const m = createMetrics();
  const c = m.counter('t_cmd_total', 'x');
  const fetch = c.with({ command: 'FETCH', protocol: 'imap' });
  const never = c.with({ command: 'NOOP', protocol: 'imap' });
  void never;
  fetch.inc();
  fetch.inc(4);
  c.inc({ protocol: 'imap', command: 'FETCH' });
  assert.deepEqual((await m.render()).split('\n').filter((l) => l.startsWith('t_cmd_total')), ['t_cmd_total{command="FETCH",protocol="imap"} 6']);
  assert.throws(() => fetch.inc(-1), /Cannot decrease counter/);
  assert.throws(() => c.with({ 'bad-label': 'x' }).inc(), /not a valid label name/);
  const full = m.counter('t_full_total', 'x');
  for (let i = 0; i < MAX_SERIES; i++) full.inc({ id: String(i) });
  const late = full.with({ id: 'late' });
  late.inc();
  late.inc();
  assert.ok((await m.render()).split('\n').includes('t_full_total{overflow="true"} 2'));
});

test('XML output escapes markup characters and drops characters XML 1.0 cannot carry', () => {
  assert.equal(escapeXml(`<a href="x">&'`), '&lt;a href=&quot;x&quot;&gt;&amp;&apos;');
  const doc = xmlDocument(el('root', { attr: '"><evil/>' }, [el('v', 'a\u0000b\u001bc</v><x>'), el('empty')]));
  const parsed = parseXml(doc);
  assert.equal(parsed.root['@attr'], '"><evil/>');
  assert.equal(parsed.root.v, 'abc</v><x>');
  assert.ok(!doc.includes('\u0000'));
});

test('plist output round-trips strings, integers, booleans, arrays and dictionaries', () => {
  const value = { S: 'x & <y>', N: 993, T: true, F: false, A: ['one', 2], D: { K: 'v' } };
  assert.deepEqual(parsePlist(plistDocument(value)), value);
  assert.throws(() => plistDocument({ R: 1.5 }), /only integers/);
});
