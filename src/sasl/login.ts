/**
 * LOGIN (draft-murchison-sasl-login-00): the server asks "Username:" then "Password:", the client
 * answers each. A client may send the user name as the initial response (SMTP `AUTH LOGIN <b64>`),
 * which skips the first question. Pure state machine; the protocol base64-encodes challenges.
 */
import { decodeUtf8 } from './text.js';

export const LOGIN_MAX_NAME_BYTES = 320;
export const LOGIN_MAX_PASSWORD_BYTES = 1024;

export type LoginAction =
  | { kind: 'challenge'; data: Buffer }
  | { kind: 'verify'; username: string; password: string }
  | { kind: 'malformed' };

export interface LoginMachine {
  /** First call: the initial response or null; then each response. */
  next(response: Buffer | null): LoginAction;
}

const USERNAME_PROMPT = Buffer.from('Username:');
const PASSWORD_PROMPT = Buffer.from('Password:');

export function createLoginMachine(): LoginMachine {
  let state: { kind: 'start' } | { kind: 'username' } | { kind: 'password'; username: string } | { kind: 'done' } = {
    kind: 'start',
  };

  function takeUsername(response: Buffer): LoginAction {
    const username = response.length <= LOGIN_MAX_NAME_BYTES ? decodeUtf8(response) : null;
    if (username === null || username === '') {
      state = { kind: 'done' };
      return { kind: 'malformed' };
    }
    state = { kind: 'password', username };
    return { kind: 'challenge', data: PASSWORD_PROMPT };
  }

  return {
    next(response) {
      switch (state.kind) {
        case 'start':
          if (response === null || response.length === 0) {
            state = { kind: 'username' };
            return { kind: 'challenge', data: USERNAME_PROMPT };
          }
          return takeUsername(response);
        case 'username':
          if (response === null) break;
          return takeUsername(response);
        case 'password': {
          if (response === null || response.length > LOGIN_MAX_PASSWORD_BYTES) break;
          const password = decodeUtf8(response);
          if (password === null || password === '') break;
          const { username } = state;
          state = { kind: 'done' };
          return { kind: 'verify', username, password };
        }
        case 'done':
          break;
      }
      state = { kind: 'done' };
      return { kind: 'malformed' };
    },
  };
}
