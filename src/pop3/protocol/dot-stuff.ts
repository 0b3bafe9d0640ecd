/**
 * Message bytes -> the body of a POP3 multi-line response (RFC 1939 §3), chunk by chunk, no I/O:
 * - every line starting with "." gets one more "." (byte-stuffing);
 * - a bare LF becomes CRLF (stored messages may use LF line ends; the wire needs CRLF), a CRLF
 *   stays as it is;
 * - end() closes the last line if the message did not end with one, then adds ".\r\n".
 * The state carried between chunks is two booleans, so a message may be split anywhere.
 */
const LF = 0x0a;
const CR = 0x0d;
const DOT = 0x2e;
const CRLF_BYTES = Buffer.from('\r\n');
const DOT_BYTES = Buffer.from('.');
const TERMINATOR = Buffer.from('.\r\n');

export class DotStuffer {
  private atLineStart = true;
  private lastWasCr = false;

  push(chunk: Buffer): Buffer {
    const out: Buffer[] = [];
    let pos = 0;
    while (pos < chunk.length) {
      if (this.atLineStart && chunk[pos] === DOT) out.push(DOT_BYTES);
      const lf = chunk.indexOf(LF, pos);
      if (lf < 0) {
        out.push(chunk.subarray(pos));
        this.lastWasCr = chunk[chunk.length - 1] === CR;
        this.atLineStart = false;
        break;
      }
      const crBefore = lf > pos ? chunk[lf - 1] === CR : this.lastWasCr;
      if (crBefore) {
        out.push(chunk.subarray(pos, lf + 1));
      } else {
        out.push(chunk.subarray(pos, lf), CRLF_BYTES);
      }
      this.atLineStart = true;
      this.lastWasCr = false;
      pos = lf + 1;
    }
    return out.length === 1 ? (out[0] as Buffer) : Buffer.concat(out);
  }

  end(): Buffer {
    if (this.atLineStart) return TERMINATOR;
    // A message ending in a bare CR gets its LF; otherwise a CRLF closes the last line.
    return Buffer.concat([this.lastWasCr ? Buffer.from('\n') : CRLF_BYTES, TERMINATOR]);
  }
}
