import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { normaliseLineEnds } from '../../src/queue/outbound-queue.js';
import { buildDsn } from '../../src/queue/dsn.js';

const SEED = 2511;

const bytes = fc.uint8Array({ maxLength: 400 }).map((a) => Buffer.from(a));
/** Text rich in the characters that matter: CR, LF, colons, non-ASCII. */
const nasty = fc.string({ unit: fc.constantFrom('a', 'Z', ' ', ':', ';', '\r', '\n', '\t', '\u0000', 'é', '-', '5', '.'), maxLength: 120 });

test('line-end normalisation leaves no bare CR or LF, keeps every other byte, and is idempotent', () => {
  fc.assert(
    fc.property(bytes, (input) => {
      const out = normaliseLineEnds(input);
      for (let i = 0; i < out.length; i++) {
        if (out[i] === 0x0a) assert.equal(out[i - 1], 0x0d, 'LF preceded by CR');
        if (out[i] === 0x0d) assert.equal(out[i + 1], 0x0a, 'CR followed by LF');
      }
      const strip = (b: Buffer) => [...b].filter((c) => c !== 0x0d && c !== 0x0a);
      assert.deepEqual(strip(out), strip(input));
      assert.ok(normaliseLineEnds(out).equals(out));
    }),
    { seed: SEED, numRuns: 500 },
  );
});

test('a report keeps its structure whatever the remote replied and the envelope held', () => {
  fc.assert(
    fc.property(nasty, nasty, nasty, bytes, (diagnostic, envid, orcpt, original) => {
      const report = buildDsn({
        reportingMta: 'mail.example.org',
        to: 'alice@example.org',
        envid,
        arrivalDate: 0,
        recipients: [{ address: 'bob@example.net', orcpt, action: 'failed', status: '5.0.0', remoteMta: 'mx.example.net', diagnostic, lastAttempt: 0, willRetryUntil: null }],
        original: normaliseLineEnds(original),
        ret: null,
        now: 0,
      }).toString('latin1');
      const head = report.slice(0, report.indexOf('\r\n\r\n'));
      const boundary = /boundary="([^"]+)"/.exec(head)?.[1];
      assert.ok(boundary);
      // The status part: every line is a field or a blank separator, and each field appears
      // where it should: nothing from the remote's text starts a line of its own.
      const statusPart = report.split(`--${boundary}`)[2]!;
      const lines = statusPart.split('\r\n').slice(1, -1);
      const names = lines.filter((l) => l !== '').map((l) => /^([A-Za-z-]+): /.exec(l)?.[1]);
      assert.ok(names.every((n) => n !== undefined), JSON.stringify(lines));
      const allowed = new Set(['Content-Type', 'Content-Description', 'Reporting-MTA', 'Original-Envelope-Id', 'Arrival-Date', 'Original-Recipient', 'Final-Recipient', 'Action', 'Status', 'Remote-MTA', 'Diagnostic-Code', 'Last-Attempt-Date']);
      for (const n of names) assert.ok(allowed.has(n!), n);
      assert.equal(names.filter((n) => n === 'Action').length, 1);
      assert.ok(report.endsWith(`--${boundary}--\r\n`));
    }),
    { seed: SEED, numRuns: 300 },
  );
});
