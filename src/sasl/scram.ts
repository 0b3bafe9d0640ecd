/**
 * SCRAM-SHA-256 server side (RFC 5802, RFC 7677) as a pure state machine: parse the
 * client-first-message, answer the server-first-message for the credentials the caller looked
 * up, then check the client-final-message's proof and produce the server-final-message.
 *
 * Invariants:
 * - Only the gs2 headers "n,," / "y,," (optionally with "a=<the user itself>") are accepted:
 *   Facteur does not advertise SCRAM-SHA-256-PLUS, so "p=" (channel binding) is refused
 *   (RFC 5802 §6), and "y" is fine since the server indeed lacks channel binding.
 * - Every message is bounded (SCRAM_MAX_MESSAGE_BYTES) and parsed strictly; anything outside the
 *   RFC 5802 §7 grammar is 'malformed'.
 * - The proof is checked in constant time; the server-final-message is only produced for a
 *   valid proof.
 * - The nonce comes from crypto.randomBytes (injectable only for the RFC 7677 test vector).
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { ScramCredentials } from '../context.js';
import { saslprep } from './saslprep.js';
import { decodeUtf8, sameIdentity } from './text.js';

/** Real messages are under 300 bytes; 4 KiB leaves room for extensions and long names. */
export const SCRAM_MAX_MESSAGE_BYTES = 4096;
/** Bound on the client nonce (RFC 5802 leaves it open; clients send 18-32 random bytes). */
export const SCRAM_MAX_NONCE_CHARS = 256;
export const SCRAM_MAX_NAME_BYTES = 320;

export type ScramFailure = { ok: false; reason: 'malformed' | 'invalid' };

export interface ScramClientFirst {
  ok: true;
  /** Decoded (=2C, =3D) and SASLprep'd user name. */
  username: string;
}

export interface ScramFinal {
  ok: true;
  proofValid: boolean;
  /** server-final-message "v=..." (RFC 5802 §7), present when the proof is valid. */
  serverFinal: Buffer | null;
}

export interface ScramServer {
  receiveClientFirst(message: Buffer): ScramClientFirst | ScramFailure;
  /** The server-first-message for the user's (real or fake) credentials. */
  serverFirst(credentials: ScramCredentials): Buffer;
  receiveClientFinal(message: Buffer): ScramFinal | ScramFailure;
}

export interface ScramServerOptions {
  /** Server nonce part (printable, no ","); default 18 random bytes in base64. */
  nonce?: () => string;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** RFC 5802 §7: printable = %x21-2B / %x2D-7E (any printable ASCII but ","). */
const NONCE = /^[\x21-\x2B\x2D-\x7E]+$/;
/** RFC 5802 §7: attr-val = ALPHA "=" value. */
const ATTR_VAL = /^[A-Za-z]=/;

function hmac(key: Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

/** RFC 5802 §5.1: saslname: "," and "=" are sent as "=2C" and "=3D"; any other "=" is invalid. */
function decodeSaslname(value: string): string | null {
  if (value === '' || /=(?!2C|3D)/.test(value)) return null;
  return value.replace(/=2C/g, ',').replace(/=3D/g, '=');
}

const malformed: ScramFailure = { ok: false, reason: 'malformed' };
const invalid: ScramFailure = { ok: false, reason: 'invalid' };

export function createScramServer(options: ScramServerOptions = {}): ScramServer {
  const makeNonce = options.nonce ?? (() => randomBytes(18).toString('base64'));
  let state:
    | { kind: 'initial' }
    | { kind: 'client-first'; gs2Header: string; clientFirstBare: string; clientNonce: string }
    | {
        kind: 'server-first';
        gs2Header: string;
        clientFirstBare: string;
        serverFirst: string;
        nonce: string;
        credentials: ScramCredentials;
      }
    | { kind: 'done' } = { kind: 'initial' };

  function fail(reason: ScramFailure): ScramFailure {
    state = { kind: 'done' };
    return reason;
  }

  return {
    receiveClientFirst(message) {
      if (state.kind !== 'initial') return fail(malformed);
      if (message.length > SCRAM_MAX_MESSAGE_BYTES) return fail(malformed);
      const text = decodeUtf8(message);
      if (text === null) return fail(malformed);
      // RFC 5802 §7: gs2-header = gs2-cbind-flag "," [ authzid ] ","
      const firstComma = text.indexOf(',');
      const secondComma = firstComma < 0 ? -1 : text.indexOf(',', firstComma + 1);
      if (secondComma < 0) return fail(malformed);
      const cbindFlag = text.slice(0, firstComma);
      const authzidField = text.slice(firstComma + 1, secondComma);
      // RFC 5802 §6: we do not offer -PLUS, so a client asking for channel binding ("p=") fails;
      // "y" means the client could bind but believes the server cannot, which is true.
      if (cbindFlag.startsWith('p=')) return fail(invalid);
      if (cbindFlag !== 'n' && cbindFlag !== 'y') return fail(malformed);
      let authzid = '';
      if (authzidField !== '') {
        if (!authzidField.startsWith('a=')) return fail(malformed);
        const decoded = decodeSaslname(authzidField.slice(2));
        if (decoded === null) return fail(malformed);
        authzid = decoded;
      }
      const gs2Header = text.slice(0, secondComma + 1);
      const clientFirstBare = text.slice(secondComma + 1);
      const attrs = clientFirstBare.split(',');
      // RFC 5802 §5.1: "m" is reserved for a mandatory extension we do not know: fail.
      if (attrs[0]?.startsWith('m=')) return fail(invalid);
      const [userAttr, nonceAttr, ...extensions] = attrs;
      if (!userAttr?.startsWith('n=') || !nonceAttr?.startsWith('r=')) return fail(malformed);
      if (!extensions.every((e) => ATTR_VAL.test(e) && e.length > 2)) return fail(malformed);
      const rawName = decodeSaslname(userAttr.slice(2));
      const clientNonce = nonceAttr.slice(2);
      if (rawName === null || Buffer.byteLength(rawName) > SCRAM_MAX_NAME_BYTES) return fail(malformed);
      if (clientNonce.length > SCRAM_MAX_NONCE_CHARS || !NONCE.test(clientNonce)) return fail(malformed);
      // RFC 5802 §5.1: the user name is prepared with SASLprep; a prohibited character fails.
      const username = saslprep(rawName);
      if (username === null || username === '') return fail(invalid);
      // No proxy authorization: the authzid, when given, must be the user itself.
      if (!sameIdentity(authzid, username)) return fail(invalid);
      state = { kind: 'client-first', gs2Header, clientFirstBare, clientNonce };
      return { ok: true, username };
    },

    serverFirst(credentials) {
      if (state.kind !== 'client-first') throw new Error('SCRAM server-first requested out of order');
      const serverNonce = makeNonce();
      if (!NONCE.test(serverNonce)) throw new Error('SCRAM server nonce holds a character outside printable');
      const nonce = state.clientNonce + serverNonce;
      // RFC 5802 §7: server-first-message = nonce "," salt "," iteration-count
      const serverFirst = `r=${nonce},s=${credentials.salt.toString('base64')},i=${credentials.iterations}`;
      state = {
        kind: 'server-first',
        gs2Header: state.gs2Header,
        clientFirstBare: state.clientFirstBare,
        serverFirst,
        nonce,
        credentials,
      };
      return Buffer.from(serverFirst);
    },

    receiveClientFinal(message) {
      if (state.kind !== 'server-first') return fail(malformed);
      const { gs2Header, clientFirstBare, serverFirst, nonce, credentials } = state;
      if (message.length > SCRAM_MAX_MESSAGE_BYTES) return fail(malformed);
      const text = decodeUtf8(message);
      if (text === null) return fail(malformed);
      // RFC 5802 §7: client-final-message = client-final-message-without-proof "," proof, and
      // client-final-message-without-proof = channel-binding "," nonce ["," extensions].
      const proofAt = text.lastIndexOf(',p=');
      if (proofAt < 0) return fail(malformed);
      const withoutProof = text.slice(0, proofAt);
      const proofB64 = text.slice(proofAt + 3);
      const [cbAttr, nonceAttr, ...extensions] = withoutProof.split(',');
      if (!cbAttr?.startsWith('c=') || !nonceAttr?.startsWith('r=')) return fail(malformed);
      if (!extensions.every((e) => ATTR_VAL.test(e) && e.length > 2)) return fail(malformed);
      const cbB64 = cbAttr.slice(2);
      if (!BASE64.test(cbB64) || !BASE64.test(proofB64) || proofB64 === '') return fail(malformed);
      // RFC 5802 §7: without channel binding, c= carries the gs2 header exactly as sent.
      if (!Buffer.from(cbB64, 'base64').equals(Buffer.from(gs2Header))) return fail(invalid);
      // RFC 5802 §5.1: the nonce must be the one the server sent (client part + server part).
      if (nonceAttr.slice(2) !== nonce) return fail(invalid);
      const proof = Buffer.from(proofB64, 'base64');
      if (proof.length !== credentials.storedKey.length) return fail(malformed);
      // RFC 5802 §3: AuthMessage = client-first-message-bare "," server-first-message ","
      // client-final-message-without-proof.
      const authMessage = `${clientFirstBare},${serverFirst},${withoutProof}`;
      const clientSignature = hmac(credentials.storedKey, authMessage);
      // RFC 5802 §3: ClientKey = ClientProof XOR ClientSignature; valid when H(ClientKey) = StoredKey.
      const clientKey = Buffer.alloc(proof.length);
      for (let i = 0; i < proof.length; i++) clientKey[i] = (proof[i] ?? 0) ^ (clientSignature[i] ?? 0);
      const computed = createHash('sha256').update(clientKey).digest();
      const proofValid = computed.length === credentials.storedKey.length && timingSafeEqual(computed, credentials.storedKey);
      state = { kind: 'done' };
      if (!proofValid) return { ok: true, proofValid: false, serverFinal: null };
      // RFC 5802 §3: ServerSignature = HMAC(ServerKey, AuthMessage); server-final "v=" base64.
      const serverSignature = hmac(credentials.serverKey, authMessage);
      return { ok: true, proofValid: true, serverFinal: Buffer.from(`v=${serverSignature.toString('base64')}`) };
    },
  };
}
