/**
 * STORE over a whole mailbox (RFC 9051 §6.4.6, RFC 7162 §3.1.3): one FETCH per message of the
 * set, none with .SILENT (MODSEQ only for the changed ones under CONDSTORE), one new modseq for
 * the command, and other sessions (IDLE, NOOP, QRESYNC) learn exactly the changed messages.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { parseMessage } from '../../src/mail/parse.js';
import { formatSet } from '../../src/imap/protocol/serialize.js';
import { startImap, TEST_USER, type ImapFixture } from '../helpers/imap-transcript.js';
import { makeMessage } from '../helpers/messages.js';

const N = 1200;

async function fill(f: ImapFixture): Promise<void> {
  const account = (await f.ctx.store.getAccountByAddress(TEST_USER))!;
  const inbox = (await f.ctx.store.getMailbox(account.id, 'INBOX'))!;
  for (let done = 0; done < N; done += 400) {
    const batch = [];
    for (let i = done; i < done + 400; i++) {
      const raw = makeMessage({ from: 'bob@example.test', to: TEST_USER, subject: `bulk ${i}`, body: `b ${i}`, messageId: `bulk${i}@x.test` });
      // Every fourth message already \Seen; every fifth has a keyword: several flag states.
      batch.push({ raw, parsed: parseMessage(raw), flags: [...(i % 4 === 0 ? ['\\Seen'] : []), ...(i % 5 === 0 ? ['$Work'] : [])] });
    }
    await f.ctx.store.appendMany(inbox.id, batch);
  }
}

test('STORE 1:* answers one FETCH per message with its flags; .SILENT none; another session learns only the changed ones', async () => {
  const f = await startImap();
  try {
    await fill(f);
    const a = await f.login();
    const b = await f.login();
    await a.command('a0', 'ENABLE IMAP4rev2');
    await a.command('a1', 'SELECT INBOX');
    await b.command('b0', 'ENABLE QRESYNC');
    const sel = await b.command('b1', 'SELECT INBOX');
    const highest = Number(/HIGHESTMODSEQ (\d+)/.exec(sel.untagged.join(' '))![1]);
    let r = await a.command('a2', 'STORE 1:* +FLAGS (\\Seen)');
    assert.equal(r.untagged.length, N);
    for (const [i, line] of r.untagged.entries()) {
      const seq = i + 1;
      const flags = (seq - 1) % 5 === 0 ? '(\\Seen $Work)' : '(\\Seen)';
      assert.equal(line, `* ${seq} FETCH (FLAGS ${flags})`);
    }
    r = await a.command('a3', 'UID STORE 1:* -FLAGS.SILENT (\\Seen)');
    assert.deepEqual(r.untagged, []);
    // B (QRESYNC: CONDSTORE on) hears the outcome of both: the messages whose flags differ from
    // what it was told (those \Seen before), each once, with the last modseq; the others are
    // back as B knew them (their new modseq is kept in B's view without a response).
    r = await b.command('b2', 'NOOP');
    const fetches = r.untagged.filter((l) => l.includes(' FETCH '));
    assert.deepEqual(
      fetches.map((l) => Number(/^\* (\d+) /.exec(l)![1])),
      Array.from({ length: N / 4 }, (_, k) => 4 * k + 1),
    );
    const modseqs = new Set(fetches.map((l) => /MODSEQ \((\d+)\)/.exec(l)![1]));
    assert.equal(modseqs.size, 1, 'every message changed by the last STORE has its one modseq');
    assert.ok(fetches.every((l) => !l.includes('\\Seen')));
    assert.ok(Number([...modseqs][0]) > highest);
    // .SILENT under CONDSTORE: MODSEQ only for the messages it changed (RFC 7162 §3.1.3).
    r = await b.command('b3', 'STORE 1:* +FLAGS.SILENT (\\Seen)');
    assert.equal(r.untagged.length, N);
    r = await b.command('b4', 'STORE 1:8 +FLAGS.SILENT (\\Seen)');
    assert.deepEqual(r.untagged, []);
    r = await b.command('b5', 'STORE 1:8 (UNCHANGEDSINCE 1) -FLAGS.SILENT (\\Seen)');
    assert.match(r.line, /^b5 OK \[MODIFIED 1:8\] /);
    assert.deepEqual(r.untagged, []);
    // A hears B's change of every message, then sees the state: all \Seen, the keywords kept.
    r = await a.command('a3b', 'NOOP');
    assert.equal(r.untagged.length, N);
    r = await a.command('a4', 'SEARCH UNSEEN');
    assert.deepEqual(r.untagged, ['* ESEARCH (TAG "a4")']);
    r = await a.command('a5', 'SEARCH KEYWORD $Work');
    const work = Array.from({ length: N / 5 }, (_, k) => 5 * k + 1);
    assert.deepEqual(r.untagged, [`* ESEARCH (TAG "a5") ALL ${formatSet(work)}`]);
  } finally {
    await f.close();
  }
});
