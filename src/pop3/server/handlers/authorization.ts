/**
 * AUTHORIZATION state (RFC 1939 §4): STLS (RFC 2595), USER/PASS (RFC 1939 §7), AUTH (RFC 5034),
 * and the login that opens the maildrop. Every password check goes through the Authenticator,
 * which applies the failure limits (DESIGN.md invariant 4).
 */
import type { Account } from '../../../store/types.js';
import { decodeSaslResponse } from '../../protocol/command.js';
import { MAX_AUTH_FAILURES_PER_CONNECTION } from '../../protocol/limits.js';
import { challenge, multiline, ok } from '../../protocol/response.js';
import { Pop3Fatal, Pop3Refusal, Pop3SyntaxError } from '../errors.js';
import { Maildrop } from '../maildrop.js';
import type { Pop3Session, SaslExchange } from '../session.js';

/** No response code: RFC 3206's [AUTH] means "the credentials are wrong", which would make a
 * client ask for the password again instead of showing that TLS is needed. */
const PLAINTEXT_REFUSED = 'Plaintext authentication is not allowed without TLS, use STLS first';

export async function stls(s: Pop3Session): Promise<void> {
  // RFC 2595 §4: STLS only in AUTHORIZATION, and not once TLS is active.
  if (!s.canStartTls()) throw new Pop3Refusal('TLS is already active or not available');
  await s.startTls();
}

export async function user(s: Pop3Session, name: string): Promise<void> {
  const st = s.authorization();
  // DESIGN.md invariant 5: no clear-text password from another host without TLS.
  if (!s.plaintextAllowed) throw new Pop3Refusal(PLAINTEXT_REFUSED);
  // The name is not checked here: the answer must not tell which accounts exist.
  st.user = name;
  s.send(ok('Send your password'));
}

export async function pass(s: Pop3Session, password: string): Promise<void> {
  const st = s.authorization();
  if (!s.plaintextAllowed) throw new Pop3Refusal(PLAINTEXT_REFUSED);
  const name = st.user;
  // RFC 1939 §7: PASS only right after a successful USER.
  if (name === null) throw new Pop3SyntaxError('USER first');
  st.user = null;
  const result = await s.ctx.auth.verifyPassword(name, password, s.authMeta);
  if (!result.ok) authFailed(s, result.reason);
  await login(s, result.account);
}

export async function auth(s: Pop3Session, mechanism: string | null, initialResponse: string | null): Promise<void> {
  const mechs = s.mechanisms();
  if (mechanism === null) {
    // RFC 1734's "AUTH" without argument lists the mechanisms; kept for old clients.
    s.send(multiline('Methods supported', mechs));
    return;
  }
  if (!mechs.includes(mechanism)) throw new Pop3Refusal('Unsupported authentication mechanism');
  let initial: Buffer | null = null;
  if (initialResponse !== null) {
    // RFC 5034 §4: "=" is an empty initial response.
    initial = decodeSaslResponse(initialResponse, true);
    if (initial === null) throw new Pop3SyntaxError('Invalid base64 in initial response');
  }
  const session = s.sasl.create(mechanism, s.authMeta, s.plaintextAllowed);
  if (session === null) throw new Pop3Refusal('Unsupported authentication mechanism');
  await saslStep(s, { session, successPending: null }, initial);
}

/** A line received during an AUTH exchange: the client's response to the last challenge. */
export async function saslContinue(s: Pop3Session, exchange: SaslExchange, line: Buffer): Promise<void> {
  const st = s.authorization();
  const text = line.toString('latin1');
  if (text === '*') {
    // RFC 5034 §4: "*" cancels the exchange; the server answers -ERR.
    st.sasl = null;
    throw new Pop3Refusal('Authentication cancelled');
  }
  if (exchange.successPending !== null) {
    // The client acknowledged the server's final data (RFC 4422 §5).
    st.sasl = null;
    if (text.length > 0) throw new Pop3SyntaxError('Expected an empty response');
    await login(s, exchange.successPending);
    return;
  }
  const response = decodeSaslResponse(text, false);
  if (response === null) {
    st.sasl = null;
    throw new Pop3SyntaxError('Invalid base64 in authentication response');
  }
  await saslStep(s, exchange, response);
}

async function saslStep(s: Pop3Session, exchange: SaslExchange, response: Buffer | null): Promise<void> {
  const st = s.authorization();
  const step = await exchange.session.step(response);
  switch (step.kind) {
    case 'challenge':
      // RFC 5034 §4: "+" SP base64 challenge.
      st.sasl = exchange;
      s.send(challenge(step.data));
      return;
    case 'success':
      if (step.data !== undefined && step.data.length > 0) {
        // RFC 5034 §4 has no data on +OK: the final data goes as a challenge first.
        st.sasl = { session: exchange.session, successPending: step.account };
        s.send(challenge(step.data));
        return;
      }
      st.sasl = null;
      await login(s, step.account);
      return;
    case 'failure':
      st.sasl = null;
      if (step.reason === 'malformed') throw new Pop3SyntaxError('Malformed authentication response');
      authFailed(s, step.reason);
  }
}

/** A failed login: -ERR [AUTH] for credentials (RFC 3206 §4), [SYS/PERM] for a disabled account
 * (only said after the password verified, so it reveals nothing to a guesser); the connection
 * closes after a few failures. 'busy' (too many checks waiting) is [SYS/TEMP] and no failure. */
function authFailed(s: Pop3Session, reason: 'invalid' | 'throttled' | 'busy' | 'disabled'): never {
  if (reason === 'busy') throw new Pop3Refusal('Too many logins in progress, try again shortly', 'SYS/TEMP');
  const failures = s.countAuthFailure();
  const [text, code] =
    reason === 'throttled'
      ? (['Too many failed logins, try again later', 'AUTH'] as const)
      : reason === 'disabled'
        ? (['Account disabled, contact your administrator', 'SYS/PERM'] as const)
        : (['Authentication failed', 'AUTH'] as const);
  if (failures >= MAX_AUTH_FAILURES_PER_CONNECTION) throw new Pop3Fatal(`${text}, closing connection`, code);
  throw new Pop3Refusal(text, code);
}

/** Opens the maildrop for an authenticated account (RFC 1939 §4 -> TRANSACTION). */
async function login(s: Pop3Session, account: Account): Promise<void> {
  // RFC 2449 §8.1.2 LOGIN-DELAY: the account logged in too recently.
  if (!s.loginDelay.allowed(account.id)) {
    throw new Pop3Refusal('Logged in too recently, wait before logging in again', 'LOGIN-DELAY');
  }
  // RFC 2449 §8.1.1 IN-USE: one POP3 session per account; IMAP is never blocked by it.
  const release = await s.store.tryLock(`pop3:${account.id}`);
  if (release === null) throw new Pop3Refusal('Another POP3 session is open for this account', 'IN-USE');
  let maildrop: Maildrop;
  try {
    if (s.isClosing) throw new Pop3Fatal(null);
    const inbox = await s.store.getMailbox(account.id, 'INBOX');
    if (inbox === null) throw new Error(`account ${account.id} has no INBOX`);
    // docs/pop3-imap.md: the maildrop is INBOX as it is now, listed once.
    maildrop = new Maildrop(inbox.id, await s.store.listEntries(inbox.id));
    if (s.isClosing) throw new Pop3Fatal(null);
  } catch (error) {
    // RFC 1939 §4: a lock acquired before a negative answer is released first.
    await release();
    throw error;
  }
  s.enterTransaction(account, maildrop, release);
  s.loginDelay.record(account.id);
  const { count, size } = maildrop.stat();
  s.send(ok(`Maildrop has ${count} messages (${size} octets)`));
}
