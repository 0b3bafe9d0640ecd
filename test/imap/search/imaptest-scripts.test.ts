/**
 * Runs the SEARCH commands of Dovecot's imaptest scripts through the parser and evaluateSearch
 * over a real store holding the script's mailbox, and compares with the results the scripts
 * expect (Dovecot's).
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { openTestStore } from '../../helpers/store.js';
import { parseMessage } from '../../../src/mail/parse.js';
import { parseCommand } from '../../../src/imap/protocol/parser.js';
import { evaluateSearch, searchViewOf } from '../../../src/imap/search/search.js';
import { readMbox } from '../mbox.js';

const IMAPTEST = '/work/shared/imaptest-tests';

function cases(script: string): Array<{ command: string; expected: number[] }> {
  const lines = readFileSync(`${IMAPTEST}/${script}`, 'latin1').split('\n');
  const out: Array<{ command: string; expected: number[] }> = [];
  for (let i = 0; i + 1 < lines.length; i++) {
    const m = /^ok (search .*)$/.exec(lines[i]!);
    const r = /^\* search ?(.*)$/i.exec(lines[i + 1]!);
    if (m === null || r === null || m[1]!.includes('$')) continue;
    out.push({ command: m[1]!, expected: r[1]!.trim() === '' ? [] : r[1]!.trim().split(/\s+/).map(Number) });
  }
  return out;
}

/** Known differences, reported to their owners; the test still runs and shows them. */
const TODO: Record<string, string> = {};

for (const script of ['search-addresses', 'search-body', 'search-header', 'search-date']) {
  test(`imaptest ${script}: every SEARCH result matches Dovecot's`, TODO[script] !== undefined ? { todo: TODO[script] } : {}, async () => {
    const { store, cleanup } = await openTestStore();
    try {
      await store.addDomain('example.com');
      const account = await store.createAccount({ address: 'bob@example.com', passwordHash: 'x' });
      const inbox = (await store.getMailbox(account.id, 'INBOX'))!;
      for (const m of readMbox(`${IMAPTEST}/${script}.mbox`)) await store.append(inbox.id, { raw: m.raw, parsed: parseMessage(m.raw), internalDate: m.internalDate });
      const entries = await store.listEntries(inbox.id);
      const list = cases(script);
      assert.ok(list.length > 5);
      const wrong: string[] = [];
      for (const c of list) {
        const line = Buffer.from(`a ${c.command}`, 'latin1');
        const parsed = parseCommand({ tag: 'a', segments: [line], literals: [], size: line.length }, { utf8: false });
        if (parsed.request.name !== 'SEARCH') throw new Error(`not a SEARCH: ${c.command}`);
        const got = await evaluateSearch(parsed.request.key, searchViewOf(entries, { store, mailboxId: inbox.id, timezoneOffset: () => 0 }));
        const seqs = got.map((i) => i + 1);
        if (seqs.join(' ') !== c.expected.join(' ')) wrong.push(`${c.command}: got (${seqs.join(' ')}), Dovecot (${c.expected.join(' ')})`);
      }
      assert.deepEqual(wrong, []);
    } finally {
      await cleanup();
    }
  });
}
