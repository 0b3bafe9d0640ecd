/**
 * Ingest parsing benchmark: parseMessage on generated messages (no fixtures), reporting CPU time
 * per message and throughput. Run: node --import tsx bench/mail-parse/run.ts
 *
 * Measures CPU time of this process (process.cpuUsage), so other load on the machine does not
 * inflate the numbers much; each case runs until it has used at least 300 ms of CPU.
 */
import { parseMessage } from '../../src/mail/parse.js';
import { makeMessage } from '../../test/helpers/messages.js';

function measure(name: string, raw: Buffer): void {
  parseMessage(raw); // warm-up
  const before = process.cpuUsage();
  let runs = 0;
  let used = 0;
  while (used < 300_000) {
    parseMessage(raw);
    runs++;
    const d = process.cpuUsage(before);
    used = d.user + d.system;
  }
  const ms = used / 1000 / runs;
  const mbps = raw.length / 1024 / 1024 / (ms / 1000);
  console.log(`${name.padEnd(44)} ${String(raw.length).padStart(10)} B  ${ms.toFixed(3).padStart(9)} ms/msg  ${mbps.toFixed(0).padStart(6)} MiB/s`);
}

const crlf = (lines: string[]): Buffer => Buffer.from(lines.join('\r\n'));

measure('plain text, 2 KB', makeMessage({ from: 'a@example.com', to: 'b@example.org', subject: 'Hello', body: 'Hello world.\n'.repeat(150) }));
measure(
  'text + 30 KB PDF attachment',
  makeMessage({ from: 'Ann <a@example.com>', to: ['b@example.org', 'c@example.org'], subject: 'Réunion', body: 'Bonjour,\n'.repeat(200), attachments: [{ filename: 'x.pdf', content: Buffer.alloc(30_000, 1) }] }),
);
const line = 'QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n';
measure(
  '50 MB base64 attachment',
  Buffer.concat([
    crlf(['From: a@example.com', 'Content-Type: multipart/mixed; boundary=big', '', '--big', '', 'see attached', '--big', 'Content-Type: application/octet-stream', 'Content-Transfer-Encoding: base64', '', '']),
    Buffer.alloc(Math.ceil((50 * 1024 * 1024) / line.length) * line.length, line),
    crlf(['--big--', '']),
  ]),
);
const many = ['Content-Type: multipart/mixed; boundary=p', ''];
for (let i = 0; i < 10_000; i++) many.push('--p', 'Content-Type: text/plain; charset=utf-8', '', `part ${i}`);
many.push('--p--', '');
measure('10,000 parts', crlf(many));
measure('5 MB text/plain (1 MiB of text kept)', crlf(['Content-Type: text/plain; charset=utf-8', '', 'lorem ipsum dolor sit amet\n'.repeat(200_000)]));
measure('5,000 recipients in To', crlf([`To: ${Array.from({ length: 5000 }, (_, i) => `User ${i} <u${i}@example.com>`).join(',\r\n ')}`, '', 'x']));
