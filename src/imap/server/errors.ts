/**
 * The three ways a command can fail, mapped once at the command boundary (session.ts), per
 * DESIGN.md "Errors": syntax -> tagged BAD; expected refusal -> tagged NO [CODE]; fatal ->
 * untagged BYE and close. Anything else is a bug: NO [SERVERBUG] with a correlation id.
 */
import type { StoreErrorCode } from '../../store/types.js';
import type { ImapValue } from '../protocol/ast.js';

/** The client's fault: tagged BAD (RFC 9051 §7.1.3). */
export class BadError extends Error {
  readonly code: ImapValue[] | null;
  constructor(message: string, code: ImapValue[] | null = null) {
    super(message);
    this.name = 'BadError';
    this.code = code;
  }
}

/** An expected refusal: tagged NO with a response code (RFC 5530). */
export class NoError extends Error {
  readonly code: ImapValue[] | null;
  constructor(code: string | ImapValue[] | null, message: string) {
    super(message);
    this.name = 'NoError';
    this.code = code === null ? null : typeof code === 'string' ? [{ atom: code }] : code;
  }
}

/** Ends the connection: untagged BYE, then close (RFC 9051 §7.1.5). */
export class ByeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ByeError';
  }
}

/** RFC 5530 response codes for the store's expected refusals. */
export const STORE_ERROR_CODES: Record<StoreErrorCode, { code: string; text: string }> = {
  exists: { code: 'ALREADYEXISTS', text: 'Mailbox already exists' },
  'not-found': { code: 'NONEXISTENT', text: 'No such mailbox or message' },
  conflict: { code: 'INUSE', text: 'Cannot do that now' },
  invalid: { code: 'CANNOT', text: 'Cannot do that' },
  'over-quota': { code: 'OVERQUOTA', text: 'Quota exceeded' },
  'too-big': { code: 'TOOBIG', text: 'Message too big' },
  io: { code: 'UNAVAILABLE', text: 'Storage temporarily unavailable' },
};
