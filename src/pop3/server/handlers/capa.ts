/** RFC 2449 §5 CAPA, valid in AUTHORIZATION and TRANSACTION; the list depends on the state and on
 * whether the connection may use plaintext passwords. */
import { multiline } from '../../protocol/response.js';
import type { Pop3Session } from '../session.js';

export async function capa(s: Pop3Session): Promise<void> {
  const lines = ['TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING'];
  if (s.currentState === 'authorization') {
    // Invariant 5: no USER (and no PLAIN/LOGIN) where plaintext passwords are refused.
    if (s.plaintextAllowed) lines.push('USER');
    const mechs = s.mechanisms();
    // RFC 5034 §6: SASL lists the mechanisms.
    if (mechs.length > 0) lines.push(`SASL ${mechs.join(' ')}`);
    if (s.canStartTls()) lines.push('STLS');
  }
  const { loginDelaySeconds, expireDays } = s.options;
  if (loginDelaySeconds !== null) lines.push(`LOGIN-DELAY ${loginDelaySeconds}`);
  // RFC 2449 §6.7: "NEVER" when messages are never expired.
  if (expireDays !== null) lines.push(`EXPIRE ${expireDays === 0 ? 'NEVER' : expireDays}`);
  lines.push('IMPLEMENTATION Facteur');
  s.send(multiline('Capability list follows', lines));
}
