/**
 * The command table: one entry per command, with the states it is valid in (RFC 9051 §6) and
 * whether EXPUNGE responses may be sent with its response (RFC 9051 §7.5.1). The session checks
 * the state once, before parsing the arguments.
 */
import type { ImapValue } from '../protocol/ast.js';
import type { Request } from '../protocol/parser.js';
import { appendCommand } from './handlers/append.js';
import { authenticate, compress, enable, login, starttls } from './handlers/auth.js';
import { capability, id, logout, noop } from './handlers/any.js';
import { idle } from './handlers/idle.js';
import { getMetadata, setMetadata } from './handlers/metadata.js';
import { notify } from './handlers/notify.js';
import { create, del, getQuota, getQuotaRoot, list, lsub, namespace, rename, setQuota, status, subscribe } from './handlers/mailboxes.js';
import { copyOrMove, fetch, store } from './handlers/messages.js';
import { search, sort, thread } from './handlers/search.js';
import { check, close, expunge, select, unselect } from './handlers/select.js';
import type { Session } from './session.js';

export type StateKind = 'not-authenticated' | 'authenticated' | 'selected';

/** What a handler returns for its tagged OK. */
export interface Done {
  code?: ImapValue[] | null;
  text?: string;
  /** false: do not send pending updates before the tagged OK (the command changed the state). */
  sync?: boolean;
  /** Runs after the tagged OK was written (STARTTLS handshake). */
  after?: () => Promise<void>;
}

export type Handler = (s: Session, tag: string, req: Request) => Promise<Done | void>;

export interface CommandEntry {
  states: readonly StateKind[];
  run: Handler;
  expungeAllowed: (req: Request) => boolean;
}

const ANY: readonly StateKind[] = ['not-authenticated', 'authenticated', 'selected'];
const NOT_AUTH: readonly StateKind[] = ['not-authenticated'];
const AUTH: readonly StateKind[] = ['authenticated', 'selected'];
const SELECTED: readonly StateKind[] = ['selected'];

const always = (): boolean => true;
/** RFC 9051 §7.5.1: no EXPUNGE while responding to FETCH, STORE or SEARCH by sequence number;
 * the UID forms are allowed. */
const onlyUid = (req: Request): boolean => 'uid' in req && req.uid === true;

const table: Array<[string, readonly StateKind[], Handler, CommandEntry['expungeAllowed']?]> = [
  ['CAPABILITY', ANY, capability],
  ['NOOP', ANY, noop],
  ['LOGOUT', ANY, logout],
  ['ID', ANY, id],
  ['STARTTLS', NOT_AUTH, starttls],
  ['AUTHENTICATE', NOT_AUTH, authenticate],
  ['LOGIN', NOT_AUTH, login],
  // RFC 5161 §3.1 / RFC 9051 §6.3.1: ENABLE only in the authenticated state.
  ['ENABLE', ['authenticated'], enable],
  // RFC 4978: after authentication (compression before it buys nothing and exposes more).
  ['COMPRESS', AUTH, compress],
  ['SELECT', AUTH, select],
  ['EXAMINE', AUTH, select],
  ['CREATE', AUTH, create],
  ['DELETE', AUTH, del],
  ['RENAME', AUTH, rename],
  ['SUBSCRIBE', AUTH, subscribe],
  ['UNSUBSCRIBE', AUTH, subscribe],
  ['LIST', AUTH, list],
  ['LSUB', AUTH, lsub],
  ['NAMESPACE', AUTH, namespace],
  ['STATUS', AUTH, status],
  ['GETQUOTA', AUTH, getQuota],
  ['GETQUOTAROOT', AUTH, getQuotaRoot],
  ['SETQUOTA', AUTH, setQuota],
  ['APPEND', AUTH, appendCommand],
  // RFC 5464 §4.2-4.3.
  ['GETMETADATA', AUTH, getMetadata],
  ['SETMETADATA', AUTH, setMetadata],
  // RFC 5465 §8 command-auth.
  ['NOTIFY', AUTH, notify],
  ['IDLE', AUTH, idle],
  ['CHECK', SELECTED, check],
  ['CLOSE', SELECTED, close],
  ['UNSELECT', SELECTED, unselect],
  ['EXPUNGE', SELECTED, expunge],
  ['UID EXPUNGE', SELECTED, expunge],
  ['SEARCH', SELECTED, search, onlyUid],
  ['UID SEARCH', SELECTED, search, onlyUid],
  // RFC 5256: SORT and THREAD are searches; the same EXPUNGE rule applies.
  ['SORT', SELECTED, sort, onlyUid],
  ['UID SORT', SELECTED, sort, onlyUid],
  ['THREAD', SELECTED, thread, onlyUid],
  ['UID THREAD', SELECTED, thread, onlyUid],
  ['FETCH', SELECTED, fetch, onlyUid],
  ['UID FETCH', SELECTED, fetch, onlyUid],
  ['STORE', SELECTED, store, onlyUid],
  ['UID STORE', SELECTED, store, onlyUid],
  ['COPY', SELECTED, copyOrMove],
  ['UID COPY', SELECTED, copyOrMove],
  ['MOVE', SELECTED, copyOrMove],
  ['UID MOVE', SELECTED, copyOrMove],
];

export const COMMANDS: ReadonlyMap<string, CommandEntry> = new Map(
  table.map(([name, states, run, expungeAllowed]) => [name, { states, run, expungeAllowed: expungeAllowed ?? always }]),
);
