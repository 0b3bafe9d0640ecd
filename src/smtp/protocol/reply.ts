/**
 * SMTP replies as typed values (RFC 5321 §4.2) with RFC 3463 enhanced status codes (RFC 2034).
 * Serialisation is the only place a reply becomes bytes: text is reduced to printable US-ASCII, so
 * no client-supplied value can inject CRLF or a second reply.
 */

export interface Reply {
  /** RFC 5321 §4.2: three digits, 2xx..5xx. */
  code: number;
  /** RFC 3463 class.subject.detail, or null (greeting, EHLO lines). */
  enhanced: string | null;
  /** One entry per line; at least one. */
  lines: readonly string[];
}

export function reply(code: number, enhanced: string | null, ...lines: string[]): Reply {
  return { code, enhanced, lines: lines.length > 0 ? lines : [''] };
}

export function isPositive(r: Reply): boolean {
  return r.code >= 200 && r.code < 400;
}

/** Printable US-ASCII only (RFC 5321 §4.2: textstring = 1*(%d09 / %d32-126)); anything else
 * becomes '?', so CR, LF and NUL from a client never reach the wire. */
function sanitise(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?');
}

/** RFC 5321 §4.2.1: multi-line replies use "code-" on every line but the last. */
export function formatReply(r: Reply): string {
  const out: string[] = [];
  const last = r.lines.length - 1;
  r.lines.forEach((line, i) => {
    const sep = i === last ? ' ' : '-';
    const prefix = r.enhanced !== null ? `${r.enhanced} ` : '';
    out.push(`${r.code}${sep}${prefix}${sanitise(line)}\r\n`);
  });
  return out.join('');
}

/** The catalogue of replies used by the server, in one voice. */
export const R = {
  ok: (text = 'Ok') => reply(250, '2.0.0', text),
  syntax: (text = 'Syntax error') => reply(500, '5.5.2', text),
  paramSyntax: (text = 'Syntax error in parameters') => reply(501, '5.5.4', text),
  notImplemented: (text = 'Command not implemented') => reply(502, '5.5.1', text),
  badSequence: (text = 'Bad sequence of commands') => reply(503, '5.5.1', text),
  paramNotImplemented: (text = 'Parameter not implemented') => reply(555, '5.5.4', text),
  lineTooLong: () => reply(500, '5.5.2', 'Line too long'),
  tooManyErrors: () => reply(421, '4.7.0', 'Too many errors, closing connection'),
  timeout: () => reply(421, '4.4.2', 'Timeout, closing connection'),
  dataTimeout: () => reply(421, '4.4.2', 'Timeout: message data too slow, closing connection'),
  shuttingDown: () => reply(421, '4.3.2', 'Service shutting down, closing connection'),
  tooManyConnections: () => reply(421, '4.7.0', 'Too many connections from your address'),
  tooBig: () => reply(552, '5.3.4', 'Message too big'),
  tooManyRecipients: () => reply(452, '4.5.3', 'Too many recipients'),
  relayDenied: () => reply(554, '5.7.1', 'Relay access denied'),
  unknownUser: () => reply(550, '5.1.1', 'No such user here'),
  overQuota: () => reply(452, '4.2.2', 'Mailbox full'),
  tempFailure: (id: string) => reply(451, '4.3.0', `Temporary failure, try again later (${id})`),
  tlsRequired: () => reply(530, '5.7.0', 'Must issue a STARTTLS command first'),
  authRequired: () => reply(530, '5.7.0', 'Authentication required'),
} as const;
