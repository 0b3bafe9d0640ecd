/**
 * The POP3 error trio, mapped to the wire once, in the session's dispatch (DESIGN.md, Errors):
 * - Pop3SyntaxError: the client's fault -> "-ERR text", logged at debug, counts toward
 *   MAX_CONSECUTIVE_ERRORS;
 * - Pop3Refusal: an expected refusal -> "-ERR [CODE] text", logged at info;
 * - Pop3Fatal: the connection cannot go on -> optional "-ERR text", then close, logged at info;
 * - anything else is a bug or an outage -> "-ERR [SYS/TEMP]" with a correlation id, logged at
 *   error with the stack. Internal messages never reach the client.
 */
import type { RespCode } from '../protocol/response.js';

export class Pop3SyntaxError extends Error {
  constructor(readonly text: string) {
    super(text);
    this.name = 'Pop3SyntaxError';
  }
}

export class Pop3Refusal extends Error {
  constructor(
    readonly text: string,
    readonly code: RespCode | null = null,
  ) {
    super(text);
    this.name = 'Pop3Refusal';
  }
}

export class Pop3Fatal extends Error {
  constructor(
    readonly text: string | null,
    readonly code: RespCode | null = null,
  ) {
    super(text ?? 'connection closed');
    this.name = 'Pop3Fatal';
  }
}
