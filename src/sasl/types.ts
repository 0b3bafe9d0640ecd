/**
 * SASL (RFC 4422) as seen by the protocols: a session is stepped with each client response
 * (already base64-decoded by the protocol; the protocol handles "*" cancel and framing) and
 * answers with a challenge, success or failure. Mechanisms: PLAIN (RFC 4616), LOGIN
 * (draft-murchison-sasl-login), SCRAM-SHA-256 (RFC 5802, RFC 7677).
 */
import type { Account } from '../store/types.js';

export type SaslStep =
  | { kind: 'challenge'; data: Buffer }
  /** data: additional data with success (SCRAM server-final-message), sent per the protocol's
   * rules (IMAP/SMTP/POP3 may send it in the final OK when the client used SASL-IR semantics, or
   * as a last challenge). */
  | { kind: 'success'; account: Account; data?: Buffer }
  | { kind: 'failure'; reason: 'invalid' | 'throttled' | 'busy' | 'disabled' | 'malformed' };

export interface SaslSession {
  readonly mechanism: string;
  /** First call: the initial response (null when the client sent none). Then each response. */
  step(response: Buffer | null): Promise<SaslStep>;
}
