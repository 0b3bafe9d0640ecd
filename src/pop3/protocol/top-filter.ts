/**
 * RFC 1939 §7 TOP msg n: the header, the blank line after it, then the first n lines of the body.
 * A sans-IO filter over the raw message bytes: push chunks, get the part to send, and stop reading
 * once `done` (so a TOP of a large message reads only what it returns). Line ends are LF (a CR
 * before it is part of the line), so both CRLF and bare-LF messages are cut at the same place.
 */
const LF = 0x0a;
const CR = 0x0d;

export class TopFilter {
  private inHeader = true;
  /** Octets of the current line so far, not counting a CR (0: at a line start). */
  private lineLength = 0;
  private remaining: number;
  private finished: boolean;

  constructor(bodyLines: number) {
    this.remaining = bodyLines;
    this.finished = false;
  }

  get done(): boolean {
    return this.finished;
  }

  push(chunk: Buffer): Buffer {
    if (this.finished) return Buffer.alloc(0);
    let pos = 0;
    while (pos < chunk.length) {
      const lf = chunk.indexOf(LF, pos);
      if (lf < 0) {
        this.lineLength += countNonCr(chunk, pos, chunk.length);
        return chunk;
      }
      const length = this.lineLength + countNonCr(chunk, pos, lf);
      this.lineLength = 0;
      pos = lf + 1;
      if (this.inHeader) {
        // RFC 5322 §2.1: the header ends at the first empty line.
        if (length === 0) {
          this.inHeader = false;
          if (this.remaining === 0) return this.finish(chunk, pos);
        }
      } else {
        this.remaining -= 1;
        if (this.remaining === 0) return this.finish(chunk, pos);
      }
    }
    return chunk;
  }

  private finish(chunk: Buffer, end: number): Buffer {
    this.finished = true;
    return chunk.subarray(0, end);
  }
}

function countNonCr(chunk: Buffer, start: number, end: number): number {
  // Only "is this line empty" matters: a line of just CR is empty (CRLF line end).
  for (let i = start; i < end; i++) if (chunk[i] !== CR) return end - start;
  return 0;
}
