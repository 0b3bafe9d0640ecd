/**
 * STARTTLS, LOGIN, AUTHENTICATE (RFC 9051 §6.2, RFC 4959 SASL-IR) and ENABLE (RFC 5161).
 * DESIGN.md invariant 5: no password in clear unless TLS, same host, or configured.
 */
import type { AuthResult } from '../../../context.js';
import { createSaslSession, isKnownMechanism, isPlaintextMechanism } from '../../../sasl/session.js';
import { decodeBase64, ParseError, type Request } from '../../protocol/parser.js';
import type { Done } from '../commands.js';
import { BadError, ByeError, NoError } from '../errors.js';
import type { Session } from '../session.js';

/** Failed LOGIN/AUTHENTICATE attempts on one connection before it is closed: the
 * authenticator throttles per IP and account; this also ends a connection that only guesses. */
export const MAX_AUTH_FAILURES_PER_CONNECTION = 5;

function failed(s: Session, reason: Exclude<AuthResult, { ok: true }>['reason']): Error {
  // 'busy' is no failure of the client's: nothing was checked.
  if (reason === 'busy') return refused(reason);
  s.authFailures++;
  if (s.authFailures >= MAX_AUTH_FAILURES_PER_CONNECTION) return new ByeError('Too many authentication failures');
  return refused(reason);
}

function refused(reason: Exclude<AuthResult, { ok: true }>['reason']): NoError {
  switch (reason) {
    case 'throttled':
      return new NoError('UNAVAILABLE', 'Too many failed attempts, try again later');
    case 'busy':
      // RFC 5530 §3 UNAVAILABLE: a temporary failure of the server, not of the credentials.
      return new NoError('UNAVAILABLE', 'Too many logins in progress, try again shortly');
    case 'disabled':
      return new NoError('CONTACTADMIN', 'Account disabled');
    default:
      return new NoError('AUTHENTICATIONFAILED', 'Authentication failed');
  }
}

export async function starttls(s: Session): Promise<Done> {
  if (s.tls) throw new BadError('TLS is already active');
  if (s.ctx.tls === null) throw new BadError('STARTTLS is not available');
  return { text: 'Begin TLS negotiation now', after: () => s.startTls() };
}

export async function login(s: Session, _tag: string, req: Request): Promise<Done> {
  if (req.name !== 'LOGIN') throw new Error('unreachable');
  // RFC 9051 §6.2.3: LOGINDISABLED was advertised; RFC 5530 PRIVACYREQUIRED.
  if (!s.plaintextOk) throw new NoError('PRIVACYREQUIRED', 'LOGIN is disabled without TLS; use STARTTLS');
  const result = await s.ctx.auth.verifyPassword(req.user, req.password, s.authMeta);
  if (!result.ok) throw failed(s, result.reason);
  s.login(result.account);
  return { code: s.capabilityCode(), text: 'Logged in' };
}

/** Reads one SASL response line: "*" cancels (RFC 9051 §6.2.2: BAD), else strict base64. */
async function readResponse(s: Session): Promise<Buffer> {
  const line = await s.readLine();
  if (line === null) throw new ByeError('Connection closed');
  const text = line.toString('latin1');
  if (text === '*') throw new BadError('Authentication cancelled');
  try {
    return decodeBase64(text);
  } catch (err) {
    if (err instanceof ParseError) throw new BadError('Invalid base64 in SASL response');
    throw err;
  }
}

export async function authenticate(s: Session, _tag: string, req: Request): Promise<Done> {
  if (req.name !== 'AUTHENTICATE') throw new Error('unreachable');
  if (!isKnownMechanism(req.mechanism)) throw new NoError('CANNOT', 'Unsupported authentication mechanism');
  if (isPlaintextMechanism(req.mechanism) && !s.plaintextOk) throw new NoError('PRIVACYREQUIRED', 'This mechanism needs TLS; use STARTTLS');
  const sasl = createSaslSession(req.mechanism, s.ctx.auth, s.authMeta, { allowPlaintext: s.plaintextOk });
  if (sasl === null) throw new NoError('CANNOT', 'Unsupported authentication mechanism');
  let step = await sasl.step(req.initial);
  for (;;) {
    if (step.kind === 'challenge') {
      // RFC 9051 §7.6: the challenge is base64 after "+ ".
      await s.continue(step.data.toString('base64'));
      step = await sasl.step(await readResponse(s));
      continue;
    }
    if (step.kind === 'failure') {
      if (step.reason === 'malformed') throw new BadError('Malformed SASL message');
      throw failed(s, step.reason);
    }
    if (step.data !== undefined && step.data.length > 0) {
      // Additional data with success (SCRAM server-final) goes in a last challenge, answered by
      // an empty response (RFC 4422 §3.6, RFC 9051 §6.2.2).
      await s.continue(step.data.toString('base64'));
      const empty = await readResponse(s);
      if (empty.length !== 0) throw new BadError('Expected an empty response');
    }
    s.login(step.account);
    return { code: s.capabilityCode(), text: 'Authenticated' };
  }
}

export async function enable(s: Session, _tag: string, req: Request): Promise<void> {
  if (req.name !== 'ENABLE') throw new Error('unreachable');
  const enabled: string[] = [];
  for (const cap of req.capabilities) {
    // RFC 5161 §3.1: unknown capabilities are ignored; only newly enabled ones are listed.
    if (cap === 'IMAP4REV2' && !s.rev2) {
      s.rev2 = true;
      enabled.push('IMAP4rev2');
    } else if (cap === 'UTF8=ACCEPT' && !s.utf8) {
      s.utf8 = true;
      enabled.push('UTF8=ACCEPT');
    } else if (cap === 'CONDSTORE' && !s.condstore) {
      s.condstore = true;
      enabled.push('CONDSTORE');
    } else if (cap === 'QRESYNC' && !s.qresync) {
      // RFC 7162 §3.2.3: QRESYNC implies CONDSTORE (not listed unless asked for).
      s.qresync = true;
      s.condstore = true;
      enabled.push('QRESYNC');
    }
  }
  await s.untagged([{ atom: 'ENABLED' }, ...enabled.map((c) => ({ atom: c }))]);
}

/** COMPRESS DEFLATE (RFC 4978): the OK goes out uncompressed, then both directions are. */
export async function compress(s: Session, _tag: string, req: Request): Promise<Done> {
  if (req.name !== 'COMPRESS') throw new Error('unreachable');
  if (req.mechanism !== 'DEFLATE') throw new BadError('Unknown compression mechanism');
  if (s.compressing) throw new NoError('COMPRESSIONACTIVE', 'DEFLATE is already active');
  return {
    text: 'DEFLATE active',
    after: async () => s.startCompression(),
  };
}
