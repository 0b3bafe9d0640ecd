/**
 * Test helper: reads the messages of an mbox file (as in Dovecot's imaptest scripts) with CRLF
 * line ends, and the INTERNALDATE of each from its "From " separator line.
 */
import { readFileSync } from 'node:fs';

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

export function readMbox(path: string): Array<{ raw: Buffer; internalDate: number }> {
  const text = readFileSync(path, 'latin1');
  const out: Array<{ raw: Buffer; internalDate: number }> = [];
  const parts = text.split(/^(From [^\n]*)\n/m);
  for (let i = 1; i + 1 < parts.length; i += 2) {
    const sep = parts[i]!;
    // "From user@domain  Fri Feb 22 17:06:23 2008 [+0200]"
    const m = /\w{3} (\w{3}) +(\d+) (\d\d):(\d\d):(\d\d) (\d{4})(?: ([+-])(\d\d)(\d\d))?/.exec(sep);
    let internalDate = 0;
    if (m !== null) {
      const zone = m[7] === undefined ? 0 : (m[7] === '-' ? -1 : 1) * (Number(m[8]) * 60 + Number(m[9]));
      internalDate = Date.UTC(Number(m[6]), MONTHS.indexOf(m[1]!), Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5])) - zone * 60_000;
    }
    // The separator's preceding blank line belongs to the mbox format, not to the message.
    const body = parts[i + 1]!.replace(/\n\n$/, '\n').replace(/\n/g, '\r\n');
    out.push({ raw: Buffer.from(body, 'latin1'), internalDate });
  }
  return out;
}
