import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { startImap, type ImapTranscript } from '../helpers/imap-transcript.js';

/** One valid form of every command (LOGOUT, IDLE, STARTTLS, AUTHENTICATE tested elsewhere). */
const COMMANDS: Record<string, string> = {
  CAPABILITY: 'CAPABILITY',
  NOOP: 'NOOP',
  ID: 'ID NIL',
  LOGIN: 'LOGIN alice@example.test "correct horse"',
  ENABLE: 'ENABLE UTF8=ACCEPT',
  SELECT: 'SELECT INBOX',
  EXAMINE: 'EXAMINE INBOX',
  CREATE: 'CREATE Projects',
  DELETE: 'DELETE Projects',
  RENAME: 'RENAME Drafts Drafts2',
  SUBSCRIBE: 'SUBSCRIBE INBOX',
  UNSUBSCRIBE: 'UNSUBSCRIBE INBOX',
  LIST: 'LIST "" *',
  LSUB: 'LSUB "" *',
  NAMESPACE: 'NAMESPACE',
  STATUS: 'STATUS INBOX (MESSAGES)',
  GETQUOTA: 'GETQUOTA ""',
  GETQUOTAROOT: 'GETQUOTAROOT INBOX',
  APPEND: 'APPEND INBOX {12+}\r\nSubject: x\r\n',
  CHECK: 'CHECK',
  CLOSE: 'CLOSE',
  UNSELECT: 'UNSELECT',
  EXPUNGE: 'EXPUNGE',
  'UID EXPUNGE': 'UID EXPUNGE 1',
  SEARCH: 'SEARCH ALL',
  'UID SEARCH': 'UID SEARCH ALL',
  SORT: 'SORT (DATE) UTF-8 ALL',
  'UID SORT': 'UID SORT (REVERSE ARRIVAL) UTF-8 ALL',
  THREAD: 'THREAD REFERENCES UTF-8 ALL',
  'UID THREAD': 'UID THREAD ORDEREDSUBJECT UTF-8 ALL',
  FETCH: 'FETCH 1 FLAGS',
  'UID FETCH': 'UID FETCH 1 FLAGS',
  STORE: 'STORE 1 +FLAGS \\Flagged',
  'UID STORE': 'UID STORE 1 +FLAGS \\Flagged',
  COPY: 'COPY 1 Trash',
  'UID COPY': 'UID COPY 1 Trash',
  MOVE: 'MOVE 1 Trash',
  'UID MOVE': 'UID MOVE 1 Trash',
  STARTTLS: 'STARTTLS',
  AUTHENTICATE: 'AUTHENTICATE PLAIN',
  // Valid after login (tested in session.test.ts: it switches the connection to DEFLATE).
  COMPRESS: 'COMPRESS DEFLATE',
};

const ANY = ['CAPABILITY', 'NOOP', 'ID'];
const NOT_AUTH_ONLY = ['LOGIN', 'STARTTLS', 'AUTHENTICATE'];
const SELECTED_ONLY = ['CHECK', 'CLOSE', 'UNSELECT', 'EXPUNGE', 'UID EXPUNGE', 'SEARCH', 'UID SEARCH', 'SORT', 'UID SORT', 'THREAD', 'UID THREAD', 'FETCH', 'UID FETCH', 'STORE', 'UID STORE', 'COPY', 'UID COPY', 'MOVE', 'UID MOVE'];

async function refused(t: ImapTranscript, names: string[], text: RegExp): Promise<void> {
  let i = 0;
  for (const name of names) {
    const tag = `w${++i}`;
    const r = await t.command(tag, COMMANDS[name]!, 'BAD');
    assert.match(r.line, text, name);
  }
  await t.command('after', 'NOOP');
}

test('before login, every command but CAPABILITY, NOOP, ID, LOGOUT, STARTTLS, AUTHENTICATE and LOGIN is BAD', async () => {
  const f = await startImap();
  try {
    const t = await f.open();
    const names = Object.keys(COMMANDS).filter((n) => !ANY.includes(n) && !NOT_AUTH_ONLY.includes(n));
    await refused(t, names, /BAD Log in first/);
    for (const n of ANY) await t.command(`ok-${n}`, COMMANDS[n]!);
  } finally {
    await f.close();
  }
});

test('in the authenticated state, LOGIN/STARTTLS/AUTHENTICATE and the selected-state commands are BAD', async () => {
  const f = await startImap();
  try {
    const t = await f.login();
    await refused(t, NOT_AUTH_ONLY, /BAD Already logged in/);
    await refused(t, SELECTED_ONLY, /BAD No mailbox selected/);
  } finally {
    await f.close();
  }
});

test('in the selected state, LOGIN/STARTTLS/AUTHENTICATE and ENABLE are BAD', async () => {
  const f = await startImap();
  try {
    const t = await f.login();
    await t.command('s', 'SELECT INBOX');
    await refused(t, [...NOT_AUTH_ONLY, 'ENABLE'], /BAD (Already logged in|Command not allowed in this state)/);
  } finally {
    await f.close();
  }
});

test('every command succeeds in each state where it is valid', async () => {
  const f = await startImap();
  try {
    const t = await f.open();
    for (const n of ANY) await t.command(`n-${n}`, COMMANDS[n]!);
    await t.command('login', COMMANDS.LOGIN!);
    const auth = ['ENABLE', 'CREATE', 'RENAME', 'DELETE', 'SUBSCRIBE', 'UNSUBSCRIBE', 'LIST', 'LSUB', 'NAMESPACE', 'STATUS', 'GETQUOTA', 'GETQUOTAROOT', 'APPEND', 'EXAMINE', 'SELECT', ...ANY];
    for (const n of auth) await t.command(`a-${n.replace(' ', '-')}`, COMMANDS[n]!);
    // Selected (read-write, one message): every command, those that leave the state last.
    const selected = ['CHECK', 'SEARCH', 'UID SEARCH', 'SORT', 'UID SORT', 'THREAD', 'UID THREAD', 'FETCH', 'UID FETCH', 'STORE', 'UID STORE', 'COPY', 'UID COPY', 'CREATE', 'DELETE', 'LIST', 'LSUB', 'NAMESPACE', 'STATUS', 'GETQUOTA', 'GETQUOTAROOT', 'APPEND', ...ANY, 'MOVE', 'UID MOVE', 'EXPUNGE', 'UID EXPUNGE', 'UNSELECT'];
    for (const n of selected) await t.command(`s-${n.replace(' ', '-')}`, COMMANDS[n]!);
    await t.command('sel2', 'SELECT INBOX');
    await t.command('close', 'CLOSE');
    await t.command('still', 'NOOP');
  } finally {
    await f.close();
  }
});
