/**
 * SASL sessions (RFC 4422) for the protocols: joins a mechanism's state machine to the
 * Authenticator. The protocol decodes base64, handles "*" cancel and framing, and maps a
 * failure to its reply (see DESIGN.md, Errors).
 *
 * Invariants:
 * - DESIGN.md invariant 5: PLAIN and LOGIN carry the password in clear, so they exist only
 *   when the connection is secure or local (or the configuration allows it): saslMechanisms()
 *   does not list them and createSaslSession() does not create them otherwise.
 * - A session ends at the first success or failure; any later step is 'malformed'.
 * - A session never touches a socket; it awaits only the Authenticator.
 */
import type { AuthMeta, AuthResult, Authenticator } from '../context.js';
import { createLoginMachine } from './login.js';
import { parsePlain } from './plain.js';
import { createScramServer, type ScramServerOptions } from './scram.js';
import type { SaslSession, SaslStep } from './types.js';

/** Every mechanism Facteur implements, strongest first. */
export const SASL_MECHANISMS = ['SCRAM-SHA-256', 'PLAIN', 'LOGIN'] as const;
export type SaslMechanism = (typeof SASL_MECHANISMS)[number];

/** Mechanisms that send the password itself (RFC 4616 §4, RFC 4954 §4: only over TLS). */
const PLAINTEXT_MECHANISMS: ReadonlySet<string> = new Set(['PLAIN', 'LOGIN']);

/** The mechanisms to advertise (IMAP CAPABILITY AUTH=, SMTP EHLO AUTH, POP3 SASL). */
export function saslMechanisms(secureOrLocal: boolean): string[] {
  return SASL_MECHANISMS.filter((m) => secureOrLocal || !PLAINTEXT_MECHANISMS.has(m));
}

/** Whether the name is one of ours (case-insensitive, RFC 4422 §3.1). */
export function isKnownMechanism(mechanism: string): boolean {
  return (SASL_MECHANISMS as readonly string[]).includes(mechanism.toUpperCase());
}

/** Whether the mechanism sends the password in clear; a protocol refusing it on a clear
 * connection answers "encryption required" (IMAP [PRIVACYREQUIRED], SMTP 538 5.7.11). */
export function isPlaintextMechanism(mechanism: string): boolean {
  return PLAINTEXT_MECHANISMS.has(mechanism.toUpperCase());
}

export interface SaslSessionOptions {
  /** Whether PLAIN and LOGIN may be used; default: meta.secure. */
  allowPlaintext?: boolean;
  /** SCRAM server nonce source (tests only). */
  scramNonce?: ScramServerOptions['nonce'];
}

function fromAuthResult(result: AuthResult): SaslStep {
  return result.ok ? { kind: 'success', account: result.account } : { kind: 'failure', reason: result.reason };
}

const MALFORMED: SaslStep = { kind: 'failure', reason: 'malformed' };
const EMPTY_CHALLENGE: SaslStep = { kind: 'challenge', data: Buffer.alloc(0) };

/**
 * A new session for the mechanism (case-insensitive), or null when the mechanism is unknown or
 * not allowed on this connection.
 */
export function createSaslSession(
  mechanism: string,
  auth: Authenticator,
  meta: AuthMeta,
  options: SaslSessionOptions = {},
): SaslSession | null {
  const name = mechanism.toUpperCase();
  const allowPlaintext = options.allowPlaintext ?? meta.secure;
  if (PLAINTEXT_MECHANISMS.has(name) && !allowPlaintext) return null;
  switch (name) {
    case 'PLAIN':
      return plainSession(auth, meta);
    case 'LOGIN':
      return loginSession(auth, meta);
    case 'SCRAM-SHA-256':
      return scramSession(auth, meta, options.scramNonce);
    default:
      return null;
  }
}

/** Runs each step after the previous one finished, and refuses steps after the end. */
function guarded(mechanism: string, run: (response: Buffer | null, first: boolean) => Promise<SaslStep>): SaslSession {
  let first = true;
  let done = false;
  return {
    mechanism,
    async step(response) {
      if (done) return MALFORMED;
      const isFirst = first;
      first = false;
      const result = await run(response, isFirst);
      if (result.kind !== 'challenge') done = true;
      return result;
    },
  };
}

function plainSession(auth: Authenticator, meta: AuthMeta): SaslSession {
  return guarded('PLAIN', async (response, first) => {
    // RFC 4422 §5: with no initial response the server sends an empty challenge, once.
    if (response === null) return first ? EMPTY_CHALLENGE : MALFORMED;
    const parsed = parsePlain(response);
    if (!parsed.ok) return { kind: 'failure', reason: parsed.reason };
    return fromAuthResult(await auth.verifyPassword(parsed.authcid, parsed.password, meta));
  });
}

function loginSession(auth: Authenticator, meta: AuthMeta): SaslSession {
  const machine = createLoginMachine();
  return guarded('LOGIN', async (response) => {
    const action = machine.next(response);
    switch (action.kind) {
      case 'challenge':
        return { kind: 'challenge', data: action.data };
      case 'malformed':
        return MALFORMED;
      case 'verify':
        return fromAuthResult(await auth.verifyPassword(action.username, action.password, meta));
    }
  });
}

function scramSession(auth: Authenticator, meta: AuthMeta, nonce?: ScramServerOptions['nonce']): SaslSession {
  const scram = createScramServer(nonce ? { nonce } : {});
  let user: { username: string; account: Awaited<ReturnType<Authenticator['scramCredentials']>>['account'] } | null = null;
  return guarded('SCRAM-SHA-256', async (response, first) => {
    if (user === null) {
      // RFC 5802 §5: SCRAM is client-first; without an initial response, ask for it (RFC 4422 §5).
      if (response === null) return first ? EMPTY_CHALLENGE : MALFORMED;
      const clientFirst = scram.receiveClientFirst(response);
      if (!clientFirst.ok) return { kind: 'failure', reason: clientFirst.reason };
      const { credentials, account } = await auth.scramCredentials(clientFirst.username);
      user = { username: clientFirst.username, account };
      return { kind: 'challenge', data: scram.serverFirst(credentials) };
    }
    if (response === null) return MALFORMED;
    const final = scram.receiveClientFinal(response);
    if (!final.ok && final.reason === 'malformed') return MALFORMED;
    const success = final.ok && final.proofValid;
    const result = await auth.recordScramOutcome(user.username, user.account, success, meta);
    if (!result.ok) return { kind: 'failure', reason: result.reason };
    if (!final.ok || !final.serverFinal) return { kind: 'failure', reason: 'invalid' };
    return { kind: 'success', account: result.account, data: final.serverFinal };
  });
}
