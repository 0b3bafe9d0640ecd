/**
 * Splits received bytes into POP3 lines, without I/O (sans-IO): the session pushes what the socket
 * gave and pulls one line at a time, with the length limit of the state it is in (command lines
 * and SASL responses have different bounds, and a limit change applies to bytes already
 * buffered). Invariants:
 * - at most `maxLine` octets of an incomplete line are ever held; the rest of an overlong line is
 *   dropped as it arrives and reported once, at its line end, so answers stay in order;
 * - a line ends at LF; a CR before it is removed (RFC 1939 §3 says CRLF; a bare LF is accepted
 *   because some clients send it and nothing is ambiguous about it).
 */
import { MAX_DISCARDED_LINE } from './limits.js';

export type LineEvent =
  | { kind: 'line'; line: Buffer }
  /** A line longer than the limit ended; its bytes were dropped. */
  | { kind: 'too-long' }
  /** More than MAX_DISCARDED_LINE octets without a line end: the peer is not speaking POP3. */
  | { kind: 'flood' };

export class LineReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Octets of the current overlong line dropped so far (0: not discarding). */
  private discarded = 0;

  /** Octets received and not yet returned as lines. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** Drops everything buffered (RFC 2595 §4: input received before a TLS handshake is not
   * carried into the TLS session). */
  clear(): void {
    this.chunks = [];
    this.buffered = 0;
    this.discarded = 0;
  }

  /**
   * The next complete line (without its line end), or null when more input is needed.
   * maxLine counts the line end (RFC 2449 §4 counts CRLF in its 255 octets).
   */
  next(maxLine: number): LineEvent | null {
    for (;;) {
      const data = this.flatten();
      if (data.length === 0) return null;
      const lf = data.indexOf(0x0a);
      if (this.discarded > 0) {
        if (lf < 0) {
          this.discarded += data.length;
          this.reset(Buffer.alloc(0));
          if (this.discarded > MAX_DISCARDED_LINE) return { kind: 'flood' };
          return null;
        }
        this.discarded = 0;
        this.reset(data.subarray(lf + 1));
        return { kind: 'too-long' };
      }
      if (lf < 0) {
        // A line that cannot fit even once its line end arrives is dropped from now on, so an
        // endless line never sits in memory. A trailing CR still needs its LF; otherwise CRLF.
        const needed = data.length + (data[data.length - 1] === 0x0d ? 1 : 2);
        if (needed > maxLine) {
          this.discarded = data.length;
          this.reset(Buffer.alloc(0));
          if (this.discarded > MAX_DISCARDED_LINE) return { kind: 'flood' };
          continue;
        }
        return null;
      }
      const hasCr = lf > 0 && data[lf - 1] === 0x0d;
      this.reset(data.subarray(lf + 1));
      // A bare-LF line is measured as if it ended with CRLF.
      if (lf + (hasCr ? 1 : 2) > maxLine) return { kind: 'too-long' };
      return { kind: 'line', line: Buffer.from(data.subarray(0, hasCr ? lf - 1 : lf)) };
    }
  }

  private flatten(): Buffer {
    if (this.chunks.length === 0) return Buffer.alloc(0);
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0] as Buffer;
  }

  private reset(rest: Buffer): void {
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
  }
}
