/**
 * POP3 command lines -> typed commands (RFC 1939 §3, RFC 2449 §3, RFC 5034 §4, RFC 2595 §4), no
 * I/O. Keywords are case-insensitive; arguments are separated by a single space (extra spaces are
 * tolerated except inside PASS, whose argument is the rest of the line: RFC 1939 §7 lets a server
 * treat spaces in it as part of the password). Message numbers are plain decimal numerals; their
 * range is checked by the session, which knows the maildrop.
 */
import { MAX_ARGUMENT_LENGTH } from './limits.js';

export type Pop3Command =
  | { name: 'USER'; user: string }
  | { name: 'PASS'; password: string }
  | { name: 'QUIT' }
  | { name: 'STAT' }
  | { name: 'LIST'; msg: number | null }
  | { name: 'RETR'; msg: number }
  | { name: 'DELE'; msg: number }
  | { name: 'NOOP' }
  | { name: 'RSET' }
  | { name: 'TOP'; msg: number; lines: number }
  | { name: 'UIDL'; msg: number | null }
  | { name: 'CAPA' }
  | { name: 'STLS' }
  /** mechanism null: the RFC 1734 form "AUTH" alone, which lists the mechanisms. initialResponse:
   * base64 text as sent ("=" for an empty one, RFC 5034 §4), decoded by the session. */
  | { name: 'AUTH'; mechanism: string | null; initialResponse: string | null };

export type CommandName = Pop3Command['name'];

export type ParseResult =
  | { ok: true; command: Pop3Command }
  /** known: the keyword was recognised (only its arguments are wrong). */
  | { ok: false; known: CommandName | null; message: string };

const KEYWORDS: ReadonlySet<string> = new Set<CommandName>([
  'USER', 'PASS', 'QUIT', 'STAT', 'LIST', 'RETR', 'DELE', 'NOOP', 'RSET', 'TOP', 'UIDL', 'CAPA', 'STLS', 'AUTH',
]);

/** Message numbers and line counts: decimal digits, at most 10 of them (RFC 1939 §3 caps arguments
 * at 40 characters; no maildrop holds 10^10 messages, and this keeps numbers exact). */
const NUMBER = /^[0-9]{1,10}$/;
/** RFC 5034 §4 / RFC 4422 §3.1: mechanism names are 1-20 of A-Z 0-9 - _. */
const MECHANISM = /^[A-Za-z0-9_-]{1,20}$/;
const BASE64_OR_EMPTY = /^(=|[A-Za-z0-9+/]+={0,2})$/;

function fail(known: CommandName | null, message: string): ParseResult {
  return { ok: false, known, message };
}

/** Parses one command line (without its CRLF). */
export function parseCommand(line: Buffer): ParseResult {
  // Commands are ASCII (RFC 1939 §3); control characters other than the separators are refused
  // so nothing a client sends can end up in a log line or a response as a control sequence.
  for (const byte of line) {
    if (byte < 0x20 || byte === 0x7f) return fail(null, 'Invalid character in command line');
  }
  const text = line.toString('utf8');
  const space = text.indexOf(' ');
  const keyword = (space < 0 ? text : text.slice(0, space)).toUpperCase();
  const rest = space < 0 ? '' : text.slice(space + 1);
  if (!KEYWORDS.has(keyword)) return fail(null, 'Unknown command');
  const name = keyword as CommandName;

  if (name === 'PASS') {
    // RFC 1939 §7: the whole rest of the line is the password.
    if (rest.length === 0) return fail(name, 'PASS needs a password');
    return { ok: true, command: { name, password: rest } };
  }

  const args = rest.split(' ').filter((a) => a.length > 0);
  // RFC 1939 §3: arguments are at most 40 characters. Not applied to USER (an address is often
  // longer, and the 255-octet line bound still holds) nor to AUTH's base64 initial response.
  for (const arg of args) {
    if (arg.length > MAX_ARGUMENT_LENGTH && name !== 'AUTH' && name !== 'USER') return fail(name, 'Argument too long');
  }
  const count = (min: number, max: number): boolean => args.length >= min && args.length <= max;
  const num = (i: number): number | null => {
    const a = args[i];
    return a !== undefined && NUMBER.test(a) ? Number(a) : null;
  };

  switch (name) {
    case 'QUIT':
    case 'STAT':
    case 'NOOP':
    case 'RSET':
    case 'CAPA':
    case 'STLS':
      if (!count(0, 0)) return fail(name, `${name} takes no argument`);
      return { ok: true, command: { name } };
    case 'USER': {
      const user = args[0];
      if (user === undefined || !count(1, 1)) return fail(name, 'USER needs one argument');
      return { ok: true, command: { name, user } };
    }
    case 'LIST':
    case 'UIDL': {
      if (!count(0, 1)) return fail(name, `${name} takes at most one argument`);
      if (args.length === 0) return { ok: true, command: { name, msg: null } };
      const msg = num(0);
      if (msg === null) return fail(name, 'Invalid message number');
      return { ok: true, command: { name, msg } };
    }
    case 'RETR':
    case 'DELE': {
      const msg = num(0);
      if (!count(1, 1) || msg === null) return fail(name, `${name} needs a message number`);
      return { ok: true, command: { name, msg } };
    }
    case 'TOP': {
      const msg = num(0);
      const lines = num(1);
      // RFC 1939 §7: TOP msg n, n a non-negative number.
      if (!count(2, 2) || msg === null || lines === null) return fail(name, 'TOP needs a message number and a line count');
      return { ok: true, command: { name, msg, lines } };
    }
    case 'AUTH': {
      if (args.length === 0) return { ok: true, command: { name, mechanism: null, initialResponse: null } };
      const mechanism = args[0] as string;
      if (!count(1, 2) || !MECHANISM.test(mechanism)) return fail(name, 'Invalid AUTH arguments');
      const initial = args[1] ?? null;
      if (initial !== null && !BASE64_OR_EMPTY.test(initial)) return fail(name, 'Invalid initial response');
      return { ok: true, command: { name, mechanism: mechanism.toUpperCase(), initialResponse: initial } };
    }
  }
}

/** Decodes a base64 SASL response line (RFC 5034 §4). "=" as an initial response means an empty
 * one; an empty continuation line is an empty response. null when it is not valid base64. */
export function decodeSaslResponse(text: string, initial: boolean): Buffer | null {
  if (initial && text === '=') return Buffer.alloc(0);
  if (text.length === 0) return Buffer.alloc(0);
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(text)) return null;
  return Buffer.from(text, 'base64');
}
