/**
 * The client side of SCRAM-SHA-256 (RFC 5802 §3), written independently of the server code so
 * that the tests check the server against the RFC's computation, not against itself.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';

export interface ScramClient {
  clientFirst: Buffer;
  /** Computes the client-final-message from the server-first-message. */
  final(serverFirst: Buffer): Buffer;
  /** The server-final-message the server must send for this exchange. */
  expectedServerFinal(): Buffer;
}

export function scramClient(
  username: string,
  password: string,
  options: { nonce?: string; gs2Header?: string } = {},
): ScramClient {
  const gs2Header = options.gs2Header ?? 'n,,';
  const nonce = options.nonce ?? randomBytes(18).toString('base64');
  const bare = `n=${username.replace(/=/g, '=3D').replace(/,/g, '=2C')},r=${nonce}`;
  let authMessage = '';
  let saltedPassword = Buffer.alloc(0);
  return {
    clientFirst: Buffer.from(gs2Header + bare),
    final(serverFirst) {
      const text = serverFirst.toString();
      const fields = new Map(text.split(',').map((f) => [f.slice(0, 1), f.slice(2)] as const));
      const salt = Buffer.from(fields.get('s') ?? '', 'base64');
      const iterations = Number(fields.get('i'));
      saltedPassword = pbkdf2Sync(password, salt, iterations, 32, 'sha256');
      const withoutProof = `c=${Buffer.from(gs2Header).toString('base64')},r=${fields.get('r')}`;
      authMessage = `${bare},${text},${withoutProof}`;
      const clientKey = createHmac('sha256', saltedPassword).update('Client Key').digest();
      const storedKey = createHash('sha256').update(clientKey).digest();
      const signature = createHmac('sha256', storedKey).update(authMessage).digest();
      const proof = Buffer.from(clientKey.map((b, i) => b ^ (signature[i] ?? 0)));
      return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`);
    },
    expectedServerFinal() {
      const serverKey = createHmac('sha256', saltedPassword).update('Server Key').digest();
      return Buffer.from(`v=${createHmac('sha256', serverKey).update(authMessage).digest('base64')}`);
    },
  };
}
