/**
 * MailboxView.entryChunks / entriesOf: the stored entries of the UIDs asked, in the order asked,
 * with what the view last told the client; a message the store no longer has is handed to onGone
 * (RFC 9051 §7.5.1 lets FETCH leave it out), a UID outside the view is skipped.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { asUid, type Uid } from '../../src/lib/brand.js';
import { parseMessage } from '../../src/mail/parse.js';
import { MailboxView } from '../../src/imap/server/view.js';
import { openTestStore } from '../helpers/store.js';
import { makeMessage } from '../helpers/messages.js';

test('view entries come in the order asked, gone messages reported, UIDs outside the view skipped, whatever the order and chunk size', async () => {
  const { store, cleanup } = await openTestStore();
  try {
    await store.addDomain('example.com');
    const account = await store.createAccount({ address: 'bob@example.com', passwordHash: 'x' });
    const inbox = (await store.getMailbox(account.id, 'INBOX'))!;
    const batch = [];
    for (let i = 0; i < 6; i++) {
      const raw = makeMessage({ from: 'ann@example.com', to: 'bob@example.com', subject: `m${i}`, body: `body ${i}\r\n`, messageId: `m${i}@example.com` });
      batch.push({ raw, parsed: parseMessage(raw) });
    }
    await store.appendMany(inbox.id, batch);
    const view = await MailboxView.open(store, (await store.getMailboxById(inbox.id))!, false, null);
    const uids = Array.from({ length: view.exists }, (_, i) => view.uidAt(i));
    assert.equal(uids.length, 6);
    // Another session expunges the 2nd and 5th; this view has not synced.
    await store.setFlags(inbox.id, [uids[1]!, uids[4]!], 'add', ['\\Deleted']);
    await store.expunge(inbox.id, [uids[1]!, uids[4]!], true);
    const outside = asUid(uids[5]! + 100);
    const orders: Uid[][] = [
      uids,
      [uids[5]!, uids[0]!, uids[4]!, uids[2]!, uids[1]!, uids[3]!],
      [uids[3]!, outside, uids[1]!, uids[0]!, uids[0]!],
    ];
    for (const asked of orders) {
      for (const chunk of [1, 2, 500]) {
        const gone: Uid[] = [];
        const got: Uid[] = [];
        for await (const { entries, indices } of view.entryChunks(store, asked, (u) => gone.push(u), chunk)) {
          assert.ok(entries.length > 0);
          assert.equal(indices.length, entries.length);
          entries.forEach((e, k) => {
            got.push(e.uid);
            assert.equal(e.flags, view.knownFlags(e.uid));
            assert.equal(indices[k]! + 1, view.seqOf(e.uid));
          });
        }
        const expected = asked.filter((u) => u !== uids[1] && u !== uids[4] && u !== outside);
        assert.deepEqual(got, expected, `order ${asked.join(',')} chunk ${chunk}`);
        assert.deepEqual(gone, asked.filter((u) => u === uids[1] || u === uids[4]));
        // The facts alone (FETCH in hand), and the entry made from them by index.
        const viaFacts: Uid[] = [];
        for await (const { facts, indices } of view.factChunks(store, asked, undefined, chunk)) {
          facts.forEach((f, k) => {
            viaFacts.push(f.uid);
            const e = view.entryAt(f, indices[k]!);
            assert.equal(e.flags, view.knownFlags(f.uid));
            assert.equal(e.modseq, view.modseqOf(f.uid));
            assert.equal(e.blobHash, f.blobHash);
          });
        }
        assert.deepEqual(viaFacts, expected);
        const flat: Uid[] = [];
        for await (const e of view.entriesOf(store, asked, undefined, chunk)) flat.push(e.uid);
        assert.deepEqual(flat, expected);
      }
    }
  } finally {
    await cleanup();
  }
});
