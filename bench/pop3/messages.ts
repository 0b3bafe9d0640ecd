/**
 * The benchmark's messages: deterministic, so Facteur and Dovecot hold the same bytes. Sizes cycle
 * through 2, 4, 8, 16 and 64 KiB (mean about 19 KiB), CRLF line ends, a few body lines starting
 * with a dot so both servers byte-stuff.
 */
const SIZES = [2048, 4096, 8192, 16384, 65536];

export function benchMessage(user: string, i: number): Buffer {
  const target = SIZES[i % SIZES.length] as number;
  const header =
    `From: Sender ${i} <sender${i}@example.org>\r\n` +
    `To: ${user}\r\n` +
    `Subject: Benchmark message ${i}\r\n` +
    `Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n` +
    `Message-ID: <bench-${i}-${user}>\r\n` +
    `MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n`;
  const lines: string[] = [];
  let size = header.length;
  for (let n = 0; size < target; n++) {
    const line = (n % 25 === 0 ? '.' : '') + `line ${n} of message ${i} `.padEnd(74, 'abcdefghij');
    lines.push(line);
    size += line.length + 2;
  }
  return Buffer.from(header + lines.join('\r\n') + '\r\n');
}

export const benchUser = (k: number): string => `bench${k}@example.com`;
export const BENCH_PASSWORD = 'bench password 123';
