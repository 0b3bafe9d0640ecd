/** The POP3 command table: the states that accept each command, and its handler (RFC 1939 §3:
 * each command is valid in given states; the session checks that once, before running it). */
import type { CommandName, Pop3Command } from '../protocol/command.js';
import { auth, pass, stls, user } from './handlers/authorization.js';
import { capa } from './handlers/capa.js';
import { dele, list, noop, retr, rset, stat, top, uidl } from './handlers/transaction.js';
import { quit } from './handlers/update.js';
import type { Pop3Session } from './session.js';

export type StateKind = 'authorization' | 'transaction';

export interface CommandSpec {
  states: readonly StateKind[];
  run(session: Pop3Session, command: Pop3Command): Promise<void>;
}

const AUTHORIZATION: readonly StateKind[] = ['authorization'];
const TRANSACTION: readonly StateKind[] = ['transaction'];
const ANY: readonly StateKind[] = ['authorization', 'transaction'];

export const COMMANDS: { readonly [K in CommandName]: CommandSpec } = {
  CAPA: { states: ANY, run: (s) => capa(s) },
  QUIT: { states: ANY, run: (s) => quit(s) },
  STLS: { states: AUTHORIZATION, run: (s) => stls(s) },
  USER: { states: AUTHORIZATION, run: (s, c) => user(s, narrow(c, 'USER').user) },
  PASS: { states: AUTHORIZATION, run: (s, c) => pass(s, narrow(c, 'PASS').password) },
  AUTH: {
    states: AUTHORIZATION,
    run: (s, c) => {
      const a = narrow(c, 'AUTH');
      return auth(s, a.mechanism, a.initialResponse);
    },
  },
  STAT: { states: TRANSACTION, run: (s) => stat(s) },
  LIST: { states: TRANSACTION, run: (s, c) => list(s, narrow(c, 'LIST').msg) },
  UIDL: { states: TRANSACTION, run: (s, c) => uidl(s, narrow(c, 'UIDL').msg) },
  RETR: { states: TRANSACTION, run: (s, c) => retr(s, narrow(c, 'RETR').msg) },
  TOP: {
    states: TRANSACTION,
    run: (s, c) => {
      const t = narrow(c, 'TOP');
      return top(s, t.msg, t.lines);
    },
  },
  DELE: { states: TRANSACTION, run: (s, c) => dele(s, narrow(c, 'DELE').msg) },
  RSET: { states: TRANSACTION, run: (s) => rset(s) },
  NOOP: { states: TRANSACTION, run: (s) => noop(s) },
};

function narrow<N extends CommandName>(c: Pop3Command, name: N): Extract<Pop3Command, { name: N }> {
  if (c.name !== name) throw new Error(`command table mismatch: ${c.name} routed to ${name}`);
  return c as Extract<Pop3Command, { name: N }>;
}
