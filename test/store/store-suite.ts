/**
 * The store conformance suite: every MailStore backend must pass it. A backend's test file calls
 * registerStoreSuite with a factory that opens a fresh, empty store.
 */
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { AccountId, MailboxId, ModSeq, Uid } from '../../src/lib/brand.js';
import { asAccountId, asMailboxId, asModSeq, asUid, asUidValidity } from '../../src/lib/brand.js';
import { StoreError } from '../../src/store/types.js';
import type { Account, ChangeEvent, EntryRestore, MailStore, Mailbox, MessageEntry, RecipientRoute, ViewEntries } from '../../src/store/types.js';
import { testMessage } from '../helpers/store.js';
import { parseMessage } from '../../src/mail/parse.js';
import { storeSortView } from '../../src/imap/search/sort.js';
import { threadForest, threadResponseText } from '../../src/imap/search/thread.js';

export interface OpenedStore {
  store: MailStore;
  cleanup(): Promise<void>;
}

interface World {
  store: MailStore;
  bob: Account;
  alice: Account;
  inbox: Mailbox;
}

const uids = (...n: number[]): Uid[] => n.map(asUid);
/** A route with the accounts by address, for comparisons. */
const brief = (r: RecipientRoute): { accounts: string[]; forwards: string[] } => ({ accounts: r.accounts.map((a) => a.address), forwards: r.forwards });

async function rejectsWith(p: Promise<unknown>, code: StoreError['code']): Promise<void> {
  await assert.rejects(p, (err: unknown) => err instanceof StoreError && err.code === code);
}

/** listViewEntries (from the view cache) says what listEntries and the mailbox row say. */
export async function assertViewCurrent(store: MailStore, mailboxId: MailboxId, what = ''): Promise<ViewEntries> {
  const v = await store.listViewEntries(mailboxId);
  const entries = await store.listEntries(mailboxId);
  const mb = await store.getMailboxById(mailboxId);
  assert.ok(mb);
  assert.deepEqual([...v.uids], entries.map((e) => e.uid), `UIDs ${what}`);
  assert.deepEqual([...v.modseqs], entries.map((e) => e.modseq), `modseqs ${what}`);
  assert.deepEqual([...v.flagIds].map((f) => v.flagSets[f]), entries.map((e) => e.flags), `flags ${what}`);
  const used = new Set(v.flagIds);
  v.flagSets.forEach((f, i) => assert.equal(f !== null, used.has(i), `flag list ${i} is null exactly when unused ${what}`));
  assert.deepEqual([v.uidValidity, v.uidNext, v.highestModSeq], [mb.uidValidity, mb.uidNext, mb.highestModSeq], `head ${what}`);
  return v;
}

export function registerStoreSuite(backend: string, open: () => Promise<OpenedStore>): void {
  /** Runs a test on a fresh store; cleanup checks consistency, so every test also checks it. */
  async function withStore(fn: (w: World) => Promise<void>): Promise<void> {
    const opened = await open();
    try {
      const { store } = opened;
      await store.addDomain('example.com');
      const bob = await store.createAccount({ address: 'bob@example.com', passwordHash: 'hash-b' });
      const alice = await store.createAccount({ address: 'alice@example.com', passwordHash: 'hash-a' });
      const inbox = await store.getMailbox(bob.id, 'INBOX');
      assert.ok(inbox);
      await fn({ store, bob, alice, inbox });
    } finally {
      await opened.cleanup();
    }
  }

  async function mailbox(store: MailStore, account: AccountId, name: string): Promise<Mailbox> {
    const m = await store.getMailbox(account, name);
    assert.ok(m, `mailbox ${name} exists`);
    return m;
  }

  describe(`store (${backend}): domains and accounts`, () => {
    test('createAccount lowercases the address and creates the default mailboxes, subscribed', () =>
      withStore(async ({ store }) => {
        const a = await store.createAccount({ address: 'Carol.Smith@EXAMPLE.com', passwordHash: 'h', scram: 'v' });
        assert.equal(a.address, 'carol.smith@example.com');
        assert.equal(a.domain, 'example.com');
        assert.equal(a.passwordHash, 'h');
        assert.equal(a.scram, 'v');
        assert.equal(a.pop3DeletePolicy, 'expunge');
        const boxes = await store.listMailboxes(a.id);
        assert.deepEqual(
          boxes.map((b) => [b.name, b.specialUse, b.subscribed]),
          [
            ['INBOX', null, true],
            ['Archive', '\\Archive', true],
            ['Drafts', '\\Drafts', true],
            ['Junk', '\\Junk', true],
            ['Sent', '\\Sent', true],
            ['Trash', '\\Trash', true],
          ],
        );
        assert.equal(new Set(boxes.map((b) => b.uidValidity)).size, boxes.length);
        assert.equal((await store.getAccountByAddress('CAROL.smith@example.COM'))?.id, a.id);
        assert.equal((await store.getAccount(a.id))?.address, a.address);
      }));

    test('createAccount refuses an existing address and a domain that is not local', () =>
      withStore(async ({ store }) => {
        await rejectsWith(store.createAccount({ address: 'BOB@example.com', passwordHash: 'h' }), 'exists');
        await rejectsWith(store.createAccount({ address: 'x@elsewhere.org', passwordHash: 'h' }), 'not-found');
        await rejectsWith(store.createAccount({ address: 'no-at-sign', passwordHash: 'h' }), 'invalid');
      }));

    test('updateAccount changes only the given fields', () =>
      withStore(async ({ store, bob }) => {
        await store.updateAccount(bob.id, { quotaBytes: 1000, disabled: true, pop3DeletePolicy: 'hide' });
        const b = await store.getAccount(bob.id);
        assert.equal(b?.quotaBytes, 1000);
        assert.equal(b?.quotaMessages, null);
        assert.equal(b?.disabled, true);
        assert.equal(b?.pop3DeletePolicy, 'hide');
        assert.equal(b?.passwordHash, 'hash-b');
        await rejectsWith(store.updateAccount(asAccountId(9999), { disabled: false }), 'not-found');
      }));

    test('removeDomain refuses while accounts exist, unless forced', () =>
      withStore(async ({ store }) => {
        await store.addDomain('Other.ORG');
        assert.equal(await store.isLocalDomain('other.org'), true);
        await rejectsWith(store.addDomain('other.org'), 'exists');
        await store.createAccount({ address: 'z@other.org', passwordHash: 'h' });
        await store.addAlias('@other.org', 'z@other.org');
        await rejectsWith(store.removeDomain('other.org'), 'conflict');
        await store.removeDomain('other.org', true);
        assert.equal(await store.isLocalDomain('other.org'), false);
        assert.equal(await store.getAccountByAddress('z@other.org'), null);
        assert.deepEqual(await store.listAliases('other.org'), []);
        assert.deepEqual((await store.listDomains()).map((d) => d.name), ['example.com']);
      }));

    test('deleteAccount removes its mailboxes and messages and frees shared blobs correctly', () =>
      withStore(async ({ store, bob, alice }) => {
        const m = testMessage({ subject: 'shared' });
        const out = await store.deliver(m.raw, m.parsed, [{ accountId: bob.id }, { accountId: alice.id }]);
        assert.ok(out.every((o) => o.ok));
        await store.deleteAccount(bob.id);
        assert.equal(await store.getAccount(bob.id), null);
        assert.deepEqual(await store.listMailboxes(bob.id), []);
        const aliceInbox = await mailbox(store, alice.id, 'INBOX');
        const [entry] = await store.listEntries(aliceInbox.id);
        assert.ok(entry);
        assert.deepEqual(await store.readBlob(entry.blobHash), m.raw);
      }));
  });

  describe(`store (${backend}): app passwords and TOTP`, () => {
    test('app passwords: added with defaults, listed by name, found by hash, revoked by name', () =>
      withStore(async ({ store, bob, alice }) => {
        const before = Date.now();
        const phone = await store.addAppPassword(bob.id, { name: ' Phone ', hash: 'h-phone' });
        assert.equal(phone.name, 'Phone');
        assert.equal(phone.accountId, bob.id);
        assert.equal(phone.lastUsed, null);
        assert.ok(phone.createdAt >= before && phone.createdAt <= Date.now());
        await store.addAppPassword(bob.id, { name: 'Laptop', hash: 'h-laptop' });
        // Names are per account: alice may use the same one.
        await store.addAppPassword(alice.id, { name: 'Phone', hash: 'h-alice' });
        await rejectsWith(store.addAppPassword(bob.id, { name: 'Phone', hash: 'other' }), 'exists');
        await rejectsWith(store.addAppPassword(bob.id, { name: '', hash: 'x' }), 'invalid');
        await rejectsWith(store.addAppPassword(bob.id, { name: 'a\nb', hash: 'x' }), 'invalid');
        await rejectsWith(store.addAppPassword(bob.id, { name: 'x'.repeat(65), hash: 'x' }), 'invalid');
        await rejectsWith(store.addAppPassword(asAccountId(9999), { name: 'Phone', hash: 'x' }), 'not-found');
        assert.deepEqual((await store.listAppPasswords(bob.id)).map((p) => p.name), ['Laptop', 'Phone']);
        assert.equal((await store.findAppPassword(bob.id, 'h-phone'))?.id, phone.id);
        // A hash of another account's app password does not log in to this one.
        assert.equal(await store.findAppPassword(bob.id, 'h-alice'), null);
        await store.removeAppPassword(bob.id, 'Phone');
        await rejectsWith(store.removeAppPassword(bob.id, 'Phone'), 'not-found');
        assert.equal(await store.findAppPassword(bob.id, 'h-phone'), null);
        assert.deepEqual((await store.listAppPasswords(bob.id)).map((p) => p.name), ['Laptop']);
        assert.deepEqual((await store.listAppPasswords(alice.id)).map((p) => p.name), ['Phone']);
      }));

    test('app passwords: a use is recorded, a restore keeps created and last-use values, deleteAccount removes them', () =>
      withStore(async ({ store, bob }) => {
        const p = await store.addAppPassword(bob.id, { name: 'Phone', hash: 'h1' });
        await store.recordAppPasswordUse(p.id, { at: 1_700_000_000_000, protocol: 'imap', ip: '192.0.2.7' });
        const [listed] = await store.listAppPasswords(bob.id);
        assert.deepEqual(listed?.lastUsed, { at: 1_700_000_000_000, protocol: 'imap', ip: '192.0.2.7' });
        const restored = await store.addAppPassword(bob.id, {
          name: 'Old tablet',
          hash: 'h2',
          createdAt: 1_600_000_000_000,
          lastUsed: { at: 1_650_000_000_000, protocol: 'pop3', ip: '2001:db8::1' },
        });
        assert.equal(restored.createdAt, 1_600_000_000_000);
        assert.deepEqual((await store.findAppPassword(bob.id, 'h2'))?.lastUsed, { at: 1_650_000_000_000, protocol: 'pop3', ip: '2001:db8::1' });
        await store.removeAppPassword(bob.id, 'Phone');
        // Recording a use of a revoked one is harmless.
        await store.recordAppPasswordUse(p.id, { at: 1, protocol: 'smtp', ip: '192.0.2.8' });
        await store.deleteAccount(bob.id);
        assert.deepEqual(await store.listAppPasswords(bob.id), []);
        assert.equal(await store.findAppPassword(bob.id, 'h2'), null);
      }));

    test('TOTP: secret set and cleared through updateAccount; acceptTotpStep accepts only later steps', () =>
      withStore(async ({ store, bob, alice }) => {
        assert.equal(bob.totpSecret, null);
        assert.equal(bob.totpLastStep, null);
        // Without a secret no step is accepted.
        assert.equal(await store.acceptTotpStep(bob.id, 5), false);
        await store.updateAccount(bob.id, { totpSecret: 'JBSWY3DPEHPK3PXPJBSWY3DP', totpLastStep: 100 });
        assert.equal((await store.getAccount(bob.id))?.totpSecret, 'JBSWY3DPEHPK3PXPJBSWY3DP');
        assert.equal(await store.acceptTotpStep(bob.id, 100), false);
        assert.equal(await store.acceptTotpStep(bob.id, 99), false);
        assert.equal(await store.acceptTotpStep(bob.id, 101), true);
        assert.equal(await store.acceptTotpStep(bob.id, 101), false);
        assert.equal((await store.getAccountByAddress('bob@example.com'))?.totpLastStep, 101);
        // Steps past 2^32 (year 6053 at 30 s) still round-trip.
        assert.equal(await store.acceptTotpStep(bob.id, 2 ** 40), true);
        assert.equal((await store.getAccount(bob.id))?.totpLastStep, 2 ** 40);
        // Two racing acceptances of one step: exactly one wins.
        const race = await Promise.all([store.acceptTotpStep(bob.id, 2 ** 40 + 1), store.acceptTotpStep(bob.id, 2 ** 40 + 1)]);
        assert.deepEqual(race.sort(), [false, true]);
        assert.equal((await store.getAccount(alice.id))?.totpSecret, null);
        await rejectsWith(store.updateAccount(bob.id, { totpSecret: 'not base32!' }), 'invalid');
        await rejectsWith(store.updateAccount(bob.id, { totpLastStep: -1 }), 'invalid');
        await rejectsWith(store.acceptTotpStep(bob.id, 1.5), 'invalid');
        await store.updateAccount(bob.id, { totpSecret: null, totpLastStep: null });
        const b = await store.getAccount(bob.id);
        assert.equal(b?.totpSecret, null);
        assert.equal(b?.totpLastStep, null);
        assert.equal(await store.acceptTotpStep(bob.id, 2 ** 41), false);
      }));
  });

  describe(`store (${backend}): recipients`, () => {
    test('resolveRecipient finds accounts case-insensitively and with plus-addressing', () =>
      withStore(async ({ store, bob }) => {
        assert.deepEqual(await store.resolveRecipient('BOB@Example.Com'), [bob.id]);
        assert.deepEqual(await store.resolveRecipient('bob+lists@example.com'), [bob.id]);
        assert.deepEqual(await store.resolveRecipient('nobody@example.com'), []);
        assert.deepEqual(await store.resolveRecipient('bob@elsewhere.org'), []);
        assert.deepEqual(await store.resolveRecipient('not an address'), []);
      }));

    test('aliases expand recursively, deduplicated, cycles cut, depth bounded', () =>
      withStore(async ({ store, bob, alice }) => {
        await store.addAlias('team@example.com', 'bob@example.com');
        await store.addAlias('team@example.com', 'alice@example.com');
        await store.addAlias('team@example.com', 'leads@example.com');
        await store.addAlias('leads@example.com', 'bob@example.com');
        await store.addAlias('loop1@example.com', 'loop2@example.com');
        await store.addAlias('loop2@example.com', 'loop1@example.com');
        await store.addAlias('loop2@example.com', 'alice@example.com');
        await rejectsWith(store.addAlias('team@example.com', 'bob@example.com'), 'exists');
        const team = await store.resolveRecipient('Team@example.com');
        assert.deepEqual([...team].sort(), [bob.id, alice.id].sort());
        assert.equal(team.length, 2);
        assert.deepEqual(await store.resolveRecipient('loop1@example.com'), [alice.id]);
        assert.deepEqual(await store.resolveRecipient('team+x@example.com'), await store.resolveRecipient('team@example.com'));
        // A chain of 12 aliases: past depth 10 the account is not reached.
        for (let i = 0; i < 12; i++) await store.addAlias(`c${i}@example.com`, `c${i + 1}@example.com`);
        await store.addAlias('c12@example.com', 'bob@example.com');
        assert.deepEqual(await store.resolveRecipient('c12@example.com'), [bob.id]);
        assert.deepEqual(await store.resolveRecipient('c3@example.com'), [bob.id]);
        assert.deepEqual(await store.resolveRecipient('c0@example.com'), []);
        await store.removeAlias('team@example.com');
        assert.deepEqual(await store.resolveRecipient('team@example.com'), []);
        await rejectsWith(store.removeAlias('team@example.com'), 'not-found');
      }));

    test('resolveRecipientAccounts gives the accounts resolveRecipient names, with their rows as read now', () =>
      withStore(async ({ store, bob, alice }) => {
        await store.addAlias('team@example.com', 'alice@example.com');
        await store.addAlias('team@example.com', 'bob@example.com');
        for (const address of ['team@example.com', 'BOB+x@example.com', 'nobody@example.com', 'not an address']) {
          const accounts = await store.resolveRecipientAccounts(address);
          assert.deepEqual(accounts.map((a) => a.id), await store.resolveRecipient(address));
          for (const a of accounts) assert.deepEqual(a, await store.getAccount(a.id));
        }
        await store.updateAccount(alice.id, { disabled: true, quotaBytes: 10 });
        const [first] = await store.resolveRecipientAccounts('alice@example.com');
        assert.equal(first?.disabled, true);
        assert.equal(first?.quotaBytes, 10);
        assert.deepEqual((await store.resolveRecipientAccounts('bob@example.com')).map((a) => a.address), [bob.address]);
      }));

    test('recipient and domain answers follow every change made after they were asked, deliveries between', () =>
      withStore(async ({ store, bob, alice }) => {
        const m = testMessage();
        const ask = async () => ({
          domain: await store.isLocalDomain('new.example'),
          carol: await store.resolveRecipient('carol@new.example'),
          team: await store.resolveRecipient('team@example.com'),
          alice: (await store.resolveRecipientAccounts('alice@example.com')).map((a) => [a.disabled, a.quotaBytes]),
        });
        // Each answer is asked before the change (and around deliveries, which change none of them).
        assert.deepEqual(await ask(), { domain: false, carol: [], team: [], alice: [[false, null]] });
        await store.deliver(m.raw, m.parsed, [{ accountId: alice.id }]);
        await store.addDomain('new.example');
        assert.equal(await store.isLocalDomain('new.example'), true);
        const carol = await store.createAccount({ address: 'carol@new.example', passwordHash: 'h' });
        assert.deepEqual(await store.resolveRecipient('carol@new.example'), [carol.id]);
        await store.addAlias('team@example.com', 'bob@example.com');
        assert.deepEqual(await store.resolveRecipient('team@example.com'), [bob.id]);
        await store.deliver(m.raw, m.parsed, [{ accountId: bob.id }]);
        await store.addAlias('team@example.com', 'carol@new.example');
        assert.deepEqual([...(await store.resolveRecipient('team@example.com'))].sort(), [bob.id, carol.id].sort());
        await store.updateAccount(alice.id, { disabled: true, quotaBytes: 10 });
        assert.deepEqual((await ask()).alice, [[true, 10]]);
        await store.deleteAccount(carol.id);
        assert.deepEqual(await store.resolveRecipient('carol@new.example'), []);
        assert.deepEqual(await store.resolveRecipient('team@example.com'), [bob.id]);
        await store.removeAlias('team@example.com');
        await store.removeDomain('new.example');
        assert.deepEqual(await ask(), { domain: false, carol: [], team: [], alice: [[true, 10]] });
        // An answer changed by its caller changes nothing for the next one.
        const [a] = await store.resolveRecipientAccounts('alice@example.com');
        a!.disabled = false;
        assert.equal((await store.resolveRecipientAccounts('alice@example.com'))[0]?.disabled, true);
      }));

    test('an alias target outside the local domains is a forward: collected once, never looked up', () =>
      withStore(async ({ store, bob, alice }) => {
        await store.addAlias('me@example.com', 'Bob@Example.com');
        await store.addAlias('me@example.com', 'bob.elsewhere@gmail.example');
        await store.addAlias('team@example.com', 'me@example.com');
        await store.addAlias('team@example.com', 'bob.elsewhere@gmail.example');
        await store.addAlias('team@example.com', 'ext@other.example');
        assert.deepEqual(await store.resolveRecipientRoute('me@example.com').then(brief), { accounts: [bob.address], forwards: ['bob.elsewhere@gmail.example'] });
        assert.deepEqual(await store.resolveRecipientRoute('TEAM@example.com').then(brief), {
          accounts: [bob.address],
          forwards: ['bob.elsewhere@gmail.example', 'ext@other.example'],
        });
        // Forward only: no account, still an address the server knows.
        await store.addAlias('away@example.com', 'far@gmail.example');
        assert.deepEqual(await store.resolveRecipientRoute('away@example.com').then(brief), { accounts: [], forwards: ['far@gmail.example'] });
        assert.deepEqual(await store.resolveRecipient('away@example.com'), []);
        // A remote domain's catch-all, plus-addressing or accounts are never consulted: an alias
        // source in a domain that becomes local later is not followed either until it is.
        assert.deepEqual(await store.resolveRecipientRoute('alice@example.com').then(brief), { accounts: [alice.address], forwards: [] });
        assert.deepEqual(await store.resolveRecipientRoute('nobody@example.com').then(brief), { accounts: [], forwards: [] });
        // A domain's catch-all may forward the whole domain.
        await store.addAlias('@example.com', 'inbox@archive.example');
        assert.deepEqual(await store.resolveRecipientRoute('random@example.com').then(brief), { accounts: [], forwards: ['inbox@archive.example'] });
        // The target's domain becomes local: it is looked up instead (no account there: nothing).
        await store.addDomain('gmail.example');
        assert.deepEqual(await store.resolveRecipientRoute('me@example.com').then(brief), { accounts: [bob.address], forwards: [] });
      }));

    test('the catch-all applies only to addresses nothing else knows', () =>
      withStore(async ({ store, bob, alice }) => {
        await store.addAlias('@example.com', 'alice@example.com');
        await store.addAlias('sales@example.com', 'bob@example.com');
        assert.deepEqual(await store.resolveRecipient('random@example.com'), [alice.id]);
        assert.deepEqual(await store.resolveRecipient('bob@example.com'), [bob.id]);
        assert.deepEqual(await store.resolveRecipient('sales@example.com'), [bob.id]);
        assert.deepEqual(await store.resolveRecipient('bob+tag@example.com'), [bob.id]);
        assert.deepEqual(
          (await store.listAliases('example.com')).map((a) => `${a.source}>${a.target}`),
          ['@example.com>alice@example.com', 'sales@example.com>bob@example.com'],
        );
        await rejectsWith(store.addAlias('x@unknown.org', 'bob@example.com'), 'not-found');
      }));

    test('sendableAddresses lists the own address and aliases leading to the account', () =>
      withStore(async ({ store, bob }) => {
        await store.addAlias('info@example.com', 'bob@example.com');
        await store.addAlias('contact@example.com', 'info@example.com');
        await store.addAlias('other@example.com', 'alice@example.com');
        assert.deepEqual(await store.sendableAddresses(bob.id), ['bob@example.com', 'contact@example.com', 'info@example.com']);
      }));
  });

  describe(`store (${backend}): mailboxes`, () => {
    test('createMailbox creates missing parents and refuses an existing name', () =>
      withStore(async ({ store, bob }) => {
        const m = await store.createMailbox(bob.id, 'Projects/2024/Q1');
        assert.equal(m.name, 'Projects/2024/Q1');
        assert.equal(m.uidNext, 1);
        assert.ok(await store.getMailbox(bob.id, 'Projects'));
        assert.ok(await store.getMailbox(bob.id, 'Projects/2024'));
        await rejectsWith(store.createMailbox(bob.id, 'Projects/2024'), 'exists');
        await rejectsWith(store.createMailbox(bob.id, 'inbox'), 'exists');
        await rejectsWith(store.createMailbox(bob.id, 'a//b'), 'invalid');
        assert.equal((await store.getMailbox(bob.id, 'iNbOx'))?.name, 'INBOX');
        const withUse = await store.createMailbox(bob.id, 'Everything', '\\All');
        assert.equal(withUse.specialUse, '\\All');
      }));

    test('a recreated mailbox never gets an earlier UIDVALIDITY', () =>
      withStore(async ({ store, bob }) => {
        const seen = new Set<number>();
        let last = 0;
        for (let i = 0; i < 5; i++) {
          const m = await store.createMailbox(bob.id, 'Again');
          assert.ok(m.uidValidity > last, 'UIDVALIDITY grows');
          assert.ok(!seen.has(m.uidValidity));
          seen.add(m.uidValidity);
          last = m.uidValidity;
          await store.deleteMailbox(bob.id, 'Again');
        }
      }));

    test('renameMailbox moves children and subscriptions, keeps UIDVALIDITY and messages', () =>
      withStore(async ({ store, bob }) => {
        const a = await store.createMailbox(bob.id, 'A/B/C');
        await store.createMailbox(bob.id, 'AB');
        await store.setSubscribed(bob.id, 'A/B', true);
        const r = await store.append(a.id, testMessage());
        await store.renameMailbox(bob.id, 'A/B', 'X/Y');
        assert.equal(await store.getMailbox(bob.id, 'A/B'), null);
        assert.equal(await store.getMailbox(bob.id, 'A/B/C'), null);
        const moved = await mailbox(store, bob.id, 'X/Y/C');
        assert.equal(moved.id, a.id);
        assert.equal(moved.uidValidity, r.uidValidity);
        assert.ok(await store.getMailbox(bob.id, 'X'));
        assert.ok(await store.getMailbox(bob.id, 'A'));
        assert.ok(await store.getMailbox(bob.id, 'AB'), 'a sibling with the same prefix is not renamed');
        assert.equal((await store.listEntries(moved.id)).length, 1);
        const subs = await store.listSubscriptions(bob.id);
        assert.ok(subs.includes('X/Y') && !subs.includes('A/B'));
        await rejectsWith(store.renameMailbox(bob.id, 'X', 'AB'), 'exists');
        await rejectsWith(store.renameMailbox(bob.id, 'Nope', 'Z'), 'not-found');
        await rejectsWith(store.renameMailbox(bob.id, 'X', 'X/Z'), 'invalid');
      }));

    test('renaming INBOX moves its messages to a new mailbox and leaves INBOX empty (RFC 9051 §6.3.9)', () =>
      withStore(async ({ store, bob, inbox }) => {
        await store.createMailbox(bob.id, 'INBOX/Sub');
        const first = await store.append(inbox.id, testMessage({ subject: 'one' }));
        await store.append(inbox.id, testMessage({ subject: 'two' }));
        await store.renameMailbox(bob.id, 'INBOX', 'Old Mail');
        const inboxAfter = await mailbox(store, bob.id, 'INBOX');
        assert.equal(inboxAfter.id, inbox.id);
        assert.equal(inboxAfter.uidValidity, inbox.uidValidity);
        assert.deepEqual(await store.listEntries(inbox.id), []);
        assert.ok(await store.getMailbox(bob.id, 'INBOX/Sub'), 'inferiors of INBOX stay');
        const old = await mailbox(store, bob.id, 'Old Mail');
        assert.notEqual(old.uidValidity, inbox.uidValidity);
        const moved = await store.listEntries(old.id);
        assert.equal(moved.length, 2);
        assert.equal(moved[0]?.emailId, first.emailId);
        assert.equal(moved[0]?.pid, first.emailId, 'a move keeps the pid');
        const changes = await store.changesSince(inbox.id, first.modseq, asUid(3));
        assert.deepEqual(changes.expunged, uids(1, 2));
        assert.deepEqual(await store.mailboxCounts(inbox.id), { messages: 0, unseen: 0, deleted: 0, size: 0 });
      }));

    test('deleteMailbox removes its messages, keeps subscriptions, refuses INBOX', () =>
      withStore(async ({ store, bob }) => {
        const m = await store.createMailbox(bob.id, 'Tmp');
        await store.setSubscribed(bob.id, 'Tmp', true);
        await store.append(m.id, testMessage({ subject: 'gone soon' }));
        await store.deleteMailbox(bob.id, 'Tmp');
        assert.equal(await store.getMailbox(bob.id, 'Tmp'), null);
        assert.equal(await store.getMailboxById(m.id), null);
        assert.ok((await store.listSubscriptions(bob.id)).includes('Tmp'), 'RFC 9051 §6.3.7');
        assert.deepEqual(await store.quotaUsage(bob.id), { bytes: 0, messages: 0 });
        await rejectsWith(store.deleteMailbox(bob.id, 'INBOX'), 'invalid');
        await rejectsWith(store.deleteMailbox(bob.id, 'Tmp'), 'not-found');
        await store.setSubscribed(bob.id, 'Tmp', false);
        assert.ok(!(await store.listSubscriptions(bob.id)).includes('Tmp'));
      }));
  });

  describe(`store (${backend}): metadata (RFC 5464)`, () => {
    const LIMITS = { maxEntries: 3, maxTotalBytes: 100 };
    const v = (s: string): Buffer => Buffer.from(s);
    const names = async (store: MailStore, account: AccountId, id: Mailbox['id'] | null): Promise<Array<[string, string]>> =>
      (await store.getMetadata(account, id)).map((e) => [e.name, e.value.toString()]);

    test('setMetadata stores lowercased names per mailbox and for the server, NIL removes', () =>
      withStore(async ({ store, bob, alice, inbox }) => {
        await store.setMetadata(bob.id, inbox.id, [{ name: '/Private/Comment', value: v('mine') }, { name: '/shared/comment', value: v('ours') }], LIMITS);
        await store.setMetadata(bob.id, null, [{ name: '/shared/comment', value: v('server') }], LIMITS);
        assert.deepEqual(await names(store, bob.id, inbox.id), [['/private/comment', 'mine'], ['/shared/comment', 'ours']]);
        assert.deepEqual(await names(store, bob.id, null), [['/shared/comment', 'server']]);
        assert.deepEqual(await names(store, alice.id, null), [], 'server entries are per account');
        // Binary values are kept byte for byte.
        await store.setMetadata(bob.id, inbox.id, [{ name: '/private/comment', value: Buffer.from([0, 255, 13, 10]) }], LIMITS);
        assert.deepEqual((await store.getMetadata(bob.id, inbox.id))[0]?.value, Buffer.from([0, 255, 13, 10]));
        await store.setMetadata(bob.id, inbox.id, [{ name: '/PRIVATE/comment', value: null }, { name: '/private/none', value: null }], LIMITS);
        assert.deepEqual(await names(store, bob.id, inbox.id), [['/shared/comment', 'ours']]);
        assert.equal(await store.metadataUsage(bob.id), 'ours'.length + 'server'.length);
      }));

    test('setMetadata refuses another account\'s mailbox and a missing one', () =>
      withStore(async ({ store, bob, alice, inbox }) => {
        await rejectsWith(store.setMetadata(alice.id, inbox.id, [{ name: '/private/x', value: v('1') }], LIMITS), 'not-found');
        await rejectsWith(store.getMetadata(alice.id, inbox.id), 'not-found');
        const m = await store.createMailbox(bob.id, 'Gone');
        await store.deleteMailbox(bob.id, 'Gone');
        await rejectsWith(store.setMetadata(bob.id, m.id, [{ name: '/private/x', value: v('1') }], LIMITS), 'not-found');
      }));

    test('limits: entries per target and account bytes, all or nothing; shrinking is allowed', () =>
      withStore(async ({ store, bob, inbox }) => {
        await store.setMetadata(bob.id, inbox.id, [1, 2, 3].map((i) => ({ name: `/private/e${i}`, value: v('x') })), LIMITS);
        await rejectsWith(store.setMetadata(bob.id, inbox.id, [{ name: '/private/e4', value: v('x') }], LIMITS), 'over-quota');
        // Replacing an entry and removing one to add another stay within the count.
        await store.setMetadata(bob.id, inbox.id, [{ name: '/private/e1', value: v('y') }], LIMITS);
        await store.setMetadata(bob.id, inbox.id, [{ name: '/private/e1', value: null }, { name: '/private/e4', value: v('z') }], LIMITS);
        // Another target has its own count but shares the account bytes.
        await store.setMetadata(bob.id, null, [{ name: '/private/big', value: v('b'.repeat(90)) }], LIMITS);
        await rejectsWith(
          store.setMetadata(bob.id, null, [{ name: '/private/small', value: v('s') }, { name: '/private/more', value: v('m'.repeat(20)) }], LIMITS),
          'over-quota',
        );
        assert.deepEqual((await names(store, bob.id, null)).map((e) => e[0]), ['/private/big'], 'nothing of the refused change was written');
        assert.equal(await store.metadataUsage(bob.id), 93);
        // Over a lowered limit, shrinking still works.
        await store.setMetadata(bob.id, null, [{ name: '/private/big', value: v('b') }], { maxEntries: 1, maxTotalBytes: 1 });
        assert.equal(await store.metadataUsage(bob.id), 4);
      }));

    test('entries follow RENAME, are copied when INBOX is renamed, go with DELETE and deleteAccount', () =>
      withStore(async ({ store, bob, inbox }) => {
        const m = await store.createMailbox(bob.id, 'Old');
        await store.setMetadata(bob.id, m.id, [{ name: '/shared/comment', value: v('c') }], LIMITS);
        await store.renameMailbox(bob.id, 'Old', 'New');
        assert.deepEqual(await names(store, bob.id, (await mailbox(store, bob.id, 'New')).id), [['/shared/comment', 'c']]);
        await store.setMetadata(bob.id, inbox.id, [{ name: '/private/comment', value: v('i') }], LIMITS);
        await store.renameMailbox(bob.id, 'INBOX', 'Before');
        assert.deepEqual(await names(store, bob.id, inbox.id), [['/private/comment', 'i']], 'INBOX keeps its entries');
        assert.deepEqual(await names(store, bob.id, (await mailbox(store, bob.id, 'Before')).id), [['/private/comment', 'i']]);
        await store.deleteMailbox(bob.id, 'New');
        const again = await store.createMailbox(bob.id, 'New');
        assert.deepEqual(await names(store, bob.id, again.id), [], 'a recreated mailbox does not inherit');
        await store.setMetadata(bob.id, null, [{ name: '/private/x', value: v('x') }], LIMITS);
        await store.deleteAccount(bob.id);
        const carol = await store.createAccount({ address: 'carol@example.com', passwordHash: 'h' });
        assert.equal(await store.metadataUsage(bob.id), 0);
        assert.deepEqual(await names(store, carol.id, null), []);
      }));

    test('setMetadata publishes one metadata event with the changed names; no change, no event', () =>
      withStore(async ({ store, bob, inbox }) => {
        const events: ChangeEvent[] = [];
        const unsubscribe = store.feed.subscribe(bob.id, (e) => events.push(e));
        try {
          await store.setMetadata(bob.id, inbox.id, [{ name: '/Shared/Comment', value: v('a') }, { name: '/private/comment', value: null }], LIMITS);
          await store.setMetadata(bob.id, null, [{ name: '/private/comment', value: null }], LIMITS);
          await store.setMetadata(bob.id, null, [{ name: '/shared/comment', value: v('s') }], LIMITS);
          assert.deepEqual(
            events.map((e) => [e.kind, e.mailboxId, e.entries]),
            [
              ['metadata', inbox.id, ['/shared/comment']],
              ['metadata', null, ['/shared/comment']],
            ],
          );
          assert.ok(events[1]!.modseq > events[0]!.modseq);
        } finally {
          unsubscribe();
        }
      }));
  });

  describe(`store (${backend}): messages`, () => {
    test('listViewEntries follows every change, and a view handed out never changes under its holder', () =>
      withStore(async ({ store, bob, inbox }) => {
        const empty = await assertViewCurrent(store, inbox.id, 'empty');
        assert.equal(empty.uids.length, 0);
        for (let i = 0; i < 6; i++) await store.append(inbox.id, testMessage({ subject: `m${i}` }, { flags: i % 2 === 0 ? ['\\Seen'] : [] }));
        const first = await assertViewCurrent(store, inbox.id, 'after appends');
        const firstCopy = { uids: [...first.uids], modseqs: [...first.modseqs], flags: [...first.flagIds].map((f) => first.flagSets[f]) };
        // STORE on all (the cache takes the result), then keywords, then a no-op change.
        await store.setFlags(inbox.id, [...first.uids] as Uid[], 'add', ['\\Flagged']);
        await assertViewCurrent(store, inbox.id, 'after STORE +FLAGS');
        await store.setFlags(inbox.id, uids(2, 3), 'set', ['$Work', 'todo']);
        await store.setFlags(inbox.id, uids(2), 'add', ['$Work']);
        const kw = await assertViewCurrent(store, inbox.id, 'after keywords');
        assert.ok(kw.flagSets.some((f) => f?.includes('$Work')));
        await store.setFlags(inbox.id, uids(2, 3), 'remove', ['$Work', 'todo']);
        const noKw = await assertViewCurrent(store, inbox.id, 'after keywords removed');
        assert.ok(!noKw.flagSets.some((f) => f?.includes('$Work')), 'a keyword no message has is not handed out');
        // Expunge, copy, move in and out.
        await store.expunge(inbox.id, uids(1, 4));
        await assertViewCurrent(store, inbox.id, 'after expunge');
        const archive = await mailbox(store, bob.id, 'Archive');
        await assertViewCurrent(store, archive.id, 'archive, empty');
        await store.copy(inbox.id, uids(2, 3), archive.id);
        await store.move(inbox.id, uids(5), archive.id);
        await assertViewCurrent(store, inbox.id, 'after move out');
        await assertViewCurrent(store, archive.id, 'after copy and move in');
        // Changes made while no one asks are caught up at the next ask, many at once.
        for (let i = 0; i < 3; i++) await store.append(inbox.id, testMessage({ subject: `late${i}` }));
        await store.setFlags(inbox.id, uids(2, 7), 'add', ['\\Deleted']);
        await store.expunge(inbox.id);
        await assertViewCurrent(store, inbox.id, 'after a batch of changes');
        // What was handed out first is as it was.
        assert.deepEqual({ uids: [...first.uids], modseqs: [...first.modseqs], flags: [...first.flagIds].map((f) => first.flagSets[f]) }, firstCopy);
        // Renaming INBOX moves its messages to the new mailbox and leaves INBOX empty.
        await store.renameMailbox(bob.id, 'INBOX', 'Old');
        await assertViewCurrent(store, inbox.id, 'INBOX after its rename');
        await assertViewCurrent(store, (await mailbox(store, bob.id, 'Old')).id, 'the renamed INBOX');
        await store.deleteMailbox(bob.id, 'Archive');
        await rejectsWith(store.listViewEntries(archive.id), 'not-found');
        await rejectsWith(store.listViewEntries(asMailboxId(999_999)), 'not-found');
      }));

    test('listViewEntries sees entries restored below UIDNEXT with old modseqs (no modseq says they are new)', () =>
      withStore(async ({ store, bob }) => {
        const mb = await store.restoreMailbox(bob.id, { name: 'Restored', uidValidity: asUidValidity(777_000), uidNext: asUid(50), highestModSeq: asModSeq(500) });
        await assertViewCurrent(store, mb.id, 'restored, empty');
        await store.restoreEntries(mb.id, [3, 9].map((u) => ({ uid: asUid(u), ...testMessage({ subject: `r${u}` }), flags: ['\\Seen'], internalDate: 1, modseq: asModSeq(10 + u) })));
        await assertViewCurrent(store, mb.id, 'after restoreEntries');
      }));

    test('append assigns growing UIDs and modseqs, ids, flags and counts', () =>
      withStore(async ({ store, inbox }) => {
        const a = await store.append(inbox.id, testMessage({ subject: 'a' }, { flags: ['\\seen', '$Label', '$label', '\\Recent'], internalDate: 1_700_000_000_000 }));
        const b = await store.append(inbox.id, testMessage({ subject: 'b' }, { flags: ['\\Deleted'] }));
        assert.equal(a.uid, 1);
        assert.equal(b.uid, 2);
        assert.ok(b.modseq > a.modseq);
        assert.equal(a.uidValidity, inbox.uidValidity);
        assert.match(a.emailId, /^M[a-z2-7]{16}$/);
        const entries = await store.listEntries(inbox.id);
        assert.deepEqual(entries.map((e) => e.flags), [['\\Seen', '$Label'], ['\\Deleted']]);
        assert.equal(entries[0]?.internalDate, 1_700_000_000_000);
        assert.equal(entries[0]?.pid, a.emailId);
        assert.match(entries[0]?.threadId ?? '', /^T[a-z2-7]{16}$/);
        const counts = await store.mailboxCounts(inbox.id);
        assert.equal(counts.messages, 2);
        assert.equal(counts.unseen, 1);
        assert.equal(counts.deleted, 1);
        assert.equal(counts.size, entries.reduce((n, e) => n + e.size, 0));
        const mb = await store.getMailboxById(inbox.id);
        assert.equal(mb?.uidNext, 3);
        assert.equal(mb?.highestModSeq, b.modseq);
        assert.deepEqual((await store.getEntries(inbox.id, uids(2, 7))).map((e) => e.uid), [2]);
        await rejectsWith(store.append(inbox.id, testMessage({}, { flags: ['\\Bogus'] })), 'invalid');
      }));

    test('getParsed returns the parse record stored at ingest, readBlob byte ranges', () =>
      withStore(async ({ store, inbox }) => {
        const m = testMessage({ subject: 'Ranges', body: 'x'.repeat(200_000) });
        await store.append(inbox.id, m);
        const [e] = await store.listEntries(inbox.id);
        assert.ok(e);
        assert.deepEqual(await store.getParsed(e.blobHash), m.parsed);
        assert.deepEqual(await store.readBlob(e.blobHash), m.raw);
        assert.deepEqual(await store.readBlob(e.blobHash, 10, 20), m.raw.subarray(10, 20));
        assert.deepEqual(await store.readBlob(e.blobHash, 5, 5), Buffer.alloc(0));
        assert.deepEqual(await store.readBlob(e.blobHash, m.raw.length - 3, m.raw.length + 100), m.raw.subarray(-3));
        // Ranges outside the blob or reversed are empty, never bytes before start.
        assert.deepEqual(await store.readBlob(e.blobHash, m.raw.length + 10, m.raw.length + 20), Buffer.alloc(0));
        assert.deepEqual(await store.readBlob(e.blobHash, 20, 10), Buffer.alloc(0));
        assert.deepEqual(await store.readBlob(e.blobHash, -5, 4), m.raw.subarray(0, 4));
        const ranged: Buffer[] = [];
        for await (const c of store.streamBlob(e.blobHash, 3, 9)) ranged.push(c);
        assert.deepEqual(Buffer.concat(ranged), m.raw.subarray(3, 9));
        const chunks: Buffer[] = [];
        for await (const c of store.streamBlob(e.blobHash, 7)) chunks.push(c);
        assert.ok(chunks.length > 1, 'streamed in chunks');
        assert.ok(chunks.every((c) => c.length <= 64 * 1024));
        assert.deepEqual(Buffer.concat(chunks), m.raw.subarray(7));
        await rejectsWith(store.readBlob('0'.repeat(64)), 'not-found');
      }));

    test('bytes and parse records read before an expunge are not served once the blob is removed; cached ranges match the stored bytes', () =>
      withStore(async ({ store, inbox }) => {
        const m = testMessage({ subject: 'Cached', body: 'y'.repeat(3000) });
        const kept = testMessage({ subject: 'Kept', body: 'z'.repeat(100) });
        await store.append(inbox.id, m);
        await store.append(inbox.id, kept);
        const [e] = await store.listEntries(inbox.id);
        assert.ok(e);
        // A header-sized read from the start, then reads inside and beyond it.
        assert.deepEqual(await store.readBlob(e.blobHash, 0, 100), m.raw.subarray(0, 100));
        assert.deepEqual(await store.readBlob(e.blobHash, 10, 20), m.raw.subarray(10, 20));
        assert.deepEqual(await store.readBlob(e.blobHash, 90, 200), m.raw.subarray(90, 200));
        assert.deepEqual(await store.readBlob(e.blobHash), m.raw);
        assert.deepEqual(await store.readBlob(e.blobHash, 0, 100), m.raw.subarray(0, 100));
        assert.deepEqual(await store.readBlob(e.blobHash, m.raw.length - 5, m.raw.length + 50), m.raw.subarray(-5));
        assert.deepEqual(await store.readBlob(e.blobHash, m.raw.length + 1), Buffer.alloc(0));
        assert.deepEqual(await store.getParsed(e.blobHash), m.parsed);
        await store.expunge(inbox.id, uids(1));
        // Removed at once (PostgreSQL) or by the sweep that collectGarbage runs now (SQLite).
        await store.collectGarbage();
        await rejectsWith(store.readBlob(e.blobHash, 0, 100), 'not-found');
        await rejectsWith(store.readBlob(e.blobHash), 'not-found');
        await rejectsWith(store.getParsed(e.blobHash), 'not-found');
        // The same bytes delivered again are a new blob with the same hash, read as before.
        await store.append(inbox.id, m);
        assert.deepEqual(await store.readBlob(e.blobHash, 0, 100), m.raw.subarray(0, 100));
        assert.deepEqual(await store.getParsed(e.blobHash), m.parsed);
      }));

    test('changesSince with nothing changed since the given modseq reports nothing, and a change after it', () =>
      withStore(async ({ store, inbox }) => {
        await store.append(inbox.id, testMessage({ subject: 'a' }));
        const mb = (await store.getMailboxById(inbox.id))!;
        const quiet = await store.changesSince(inbox.id, mb.highestModSeq, mb.uidNext);
        assert.deepEqual(quiet, { highestModSeq: mb.highestModSeq, added: [], changed: [], expunged: [] });
        await store.setFlags(inbox.id, uids(1), 'add', ['\\Seen']);
        const moved = await store.changesSince(inbox.id, mb.highestModSeq, mb.uidNext);
        assert.ok(moved.highestModSeq > mb.highestModSeq);
        assert.deepEqual(moved.changed.map((c) => [c.uid, c.flags]), [[1, ['\\Seen']]]);
        await store.expunge(inbox.id, uids(1));
        const gone = await store.changesSince(inbox.id, moved.highestModSeq, mb.uidNext);
        assert.deepEqual(gone.expunged, uids(1));
        // Entries restored with modseqs below HIGHESTMODSEQ leave it as it was, but not UIDNEXT:
        // they are still reported as added.
        const now = (await store.getMailboxById(inbox.id))!;
        await store.restoreEntries(inbox.id, [{ uid: asUid(7), ...testMessage({ subject: 'restored' }), flags: [], internalDate: 1, modseq: asModSeq(1) }]);
        const after = (await store.getMailboxById(inbox.id))!;
        assert.equal(after.highestModSeq, now.highestModSeq);
        const restored = await store.changesSince(inbox.id, now.highestModSeq, now.uidNext);
        assert.deepEqual(restored.added.map((e) => e.uid), uids(7));
      }));

    test('setFlags bumps only changed entries; UNCHANGEDSINCE refuses entries modified since (RFC 7162)', () =>
      withStore(async ({ store, inbox }) => {
        for (let i = 0; i < 3; i++) await store.append(inbox.id, testMessage({ subject: `m${i}` }));
        const before = await store.listEntries(inbox.id);
        await store.setFlags(inbox.id, uids(1), 'add', ['\\Seen']);
        const r = await store.setFlags(inbox.id, uids(1, 2, 3), 'add', ['\\Seen', 'Work']);
        assert.deepEqual(r.updated.map((e) => e.uid), uids(1, 2, 3));
        const again = await store.setFlags(inbox.id, uids(1, 2, 3), 'add', ['\\SEEN', 'work']);
        assert.deepEqual(again.updated, [], 'no change, no new modseq');
        const after = await store.listEntries(inbox.id);
        assert.deepEqual(after.map((e) => e.modseq), r.updated.map((e) => e.modseq));
        assert.deepEqual(after[0]?.flags, ['\\Seen', 'Work']);
        const removed = await store.setFlags(inbox.id, uids(2), 'remove', ['work']);
        assert.deepEqual(removed.updated[0]?.flags, ['\\Seen']);
        const set = await store.setFlags(inbox.id, uids(3), 'set', ['\\Flagged']);
        assert.deepEqual(set.updated[0]?.flags, ['\\Flagged']);
        // UNCHANGEDSINCE at a modseq older than entry 2's last change: 2 is MODIFIED.
        const cut = asModSeq(removed.updated[0]!.modseq - 1);
        const cond = await store.setFlags(inbox.id, uids(1, 2), 'add', ['\\Answered'], cut);
        assert.deepEqual(cond.modified, uids(2));
        assert.deepEqual(cond.updated.map((e) => e.uid), uids(1));
        assert.ok(before.every((e, i) => e.modseq < after[i]!.modseq));
        const counts = await store.mailboxCounts(inbox.id);
        assert.equal(counts.unseen, 1);
        const mb = await store.getMailboxById(inbox.id);
        assert.equal(mb?.highestModSeq, cond.updated[0]?.modseq);
      }));

    test('setFlags on a UID set with holes changes only the named entries, not those in the holes, and reports refused and absent ones', () =>
      withStore(async ({ store, inbox }) => {
        for (let i = 0; i < 8; i++) await store.append(inbox.id, testMessage({ subject: `h${i}` }));
        await store.expunge(inbox.id, uids(6));
        const flagged = await store.setFlags(inbox.id, uids(2), 'add', ['\\Flagged']);
        const cut = asModSeq(flagged.updated[0]!.modseq - 1);
        // 3 and 5 are in the holes; 6 is gone; 2 changed after the UNCHANGEDSINCE.
        const r = await store.setFlags(inbox.id, uids(1, 2, 4, 6, 7), 'add', ['\\Seen', 'Tag'], cut);
        assert.deepEqual(r.updated.map((e) => e.uid), uids(1, 4, 7));
        assert.deepEqual(r.modified, uids(2));
        assert.deepEqual(r.gone, uids(6));
        const flags = new Map((await store.listEntries(inbox.id)).map((e) => [e.uid, e.flags]));
        assert.deepEqual(flags.get(asUid(3)), []);
        assert.deepEqual(flags.get(asUid(5)), []);
        assert.deepEqual(flags.get(asUid(2)), ['\\Flagged']);
        assert.deepEqual(flags.get(asUid(4)), ['\\Seen', 'Tag']);
        // A whole range: every entry in it.
        const all = await store.setFlags(inbox.id, uids(3, 4, 5), 'remove', ['Tag']);
        assert.deepEqual(all.updated.map((e) => e.uid), uids(4));
        assert.equal((await store.mailboxCounts(inbox.id)).unseen, 4);
      }));

    test('setFlags over mixed flag states writes only the changed ones, one modseq, counters exact; reports UIDs not there', () =>
      withStore(async ({ store, inbox }) => {
        // 40 messages in 20 distinct states (keyword kN on pairs, \Seen on every third).
        const batch = Array.from({ length: 40 }, (_, i) =>
          testMessage({ subject: `s${i}` }, { flags: [`k${i >> 1}`, ...(i % 3 === 0 ? ['\\Seen'] : [])] }),
        );
        await store.appendMany(inbox.id, batch);
        const all = uids(...Array.from({ length: 40 }, (_, i) => i + 1));
        const before = await store.listEntries(inbox.id);
        // System flag over many states (bit operations): only the unseen ones change.
        const seen = await store.setFlags(inbox.id, [...all, asUid(77)], 'add', ['\\Seen']);
        const unseenBefore = before.filter((e) => !e.flags.includes('\\Seen')).map((e) => e.uid);
        assert.deepEqual(seen.updated.map((e) => e.uid), unseenBefore);
        assert.equal(new Set(seen.updated.map((e) => e.modseq)).size, 1, 'one modseq for the whole STORE');
        assert.deepEqual(seen.gone, uids(77));
        assert.equal((await store.mailboxCounts(inbox.id)).unseen, 0);
        // A keyword over more than 16 states: row by row, same outcome.
        const kw = await store.setFlags(inbox.id, all, 'add', ['Big']);
        assert.equal(kw.updated.length, 40);
        assert.deepEqual(kw.gone, []);
        const now = await store.listEntries(inbox.id);
        assert.ok(now.every((e) => e.flags.includes('Big') && e.flags.includes(`k${(e.uid - 1) >> 1}`) && e.modseq === kw.updated[0]!.modseq));
        // Replacement on a few states, with UNCHANGEDSINCE refusing those changed after it.
        await store.setFlags(inbox.id, uids(1, 2), 'add', ['\\Flagged']);
        const cut = kw.updated[0]!.modseq;
        const set = await store.setFlags(inbox.id, uids(1, 2, 3, 4), 'set', ['\\Deleted', 'X'], cut);
        assert.deepEqual(set.modified, uids(1, 2));
        assert.deepEqual(set.updated.map((e) => [e.uid, e.flags]), [
          [3, ['\\Deleted', 'X']],
          [4, ['\\Deleted', 'X']],
        ]);
        assert.equal((await store.mailboxCounts(inbox.id)).deleted, 2);
        // Nothing there at all: nothing written, every UID reported.
        const none = await store.setFlags(inbox.id, uids(90, 91), 'add', ['\\Seen']);
        assert.deepEqual([none.updated, none.gone], [[], uids(90, 91)]);
        // A STORE that changes nothing takes no modseq (a store may take one to lock and give it
        // back): the next change of this account, which changes nothing else, has the next one.
        const high = (await store.getMailboxById(inbox.id))!.highestModSeq;
        const same = await store.setFlags(inbox.id, uids(3, 4, 90), 'add', ['X']);
        assert.deepEqual([same.updated, same.modified, same.gone, same.priorModSeq], [[], [], uids(90), high]);
        const next = await store.setFlags(inbox.id, uids(5), 'add', ['X']);
        assert.deepEqual(next.updated.map((e) => [e.uid, e.modseq]), [[5, high + 1]]);
        assert.equal((await store.getMailboxById(inbox.id))!.highestModSeq, high + 1);
        assert.deepEqual(await store.checkConsistency(), []);
      }));

    test('setFlags stores keywords holding quotes, semicolons and non-ASCII as they are', () =>
      withStore(async ({ store, inbox }) => {
        // Atoms may hold ' ; - and any non-ASCII (flags.ts KEYWORD_RE); a store that writes them
        // as SQL text must quote them.
        await store.appendMany(inbox.id, [testMessage({ subject: 'a' }), testMessage({ subject: 'b' }, { flags: ["o'k"] })]);
        const odd = ["it's", "x';DROP", '$déjà-vu', "''"];
        const r = await store.setFlags(inbox.id, uids(1, 2), 'add', odd);
        assert.deepEqual(r.updated.map((e) => [e.uid, [...e.flags].sort()]), [
          [1, [...odd].sort()],
          [2, [...odd, "o'k"].sort()],
        ]);
        assert.deepEqual((await store.listEntries(inbox.id)).map((e) => [...e.flags].sort()), [[...odd].sort(), [...odd, "o'k"].sort()]);
        assert.deepEqual(await store.checkConsistency(), []);
      }));

    test('setFlags changing several flag states at once (or one) gives each row its own new state, in every shape of UID set, with and without UNCHANGEDSINCE refusing some', () =>
      withStore(async ({ store, inbox }) => {
        // 30 messages in six states; the STOREs below change two to six of them at once, or one.
        const states: string[][] = [[], ['\\Seen'], ['$Label1'], ['\\Seen', '$Label1'], ['\\Deleted', '$Label2'], ['\\Flagged', '$Label1', '$Label2']];
        await store.appendMany(inbox.id, Array.from({ length: 30 }, (_, i) => testMessage({ subject: `m${i}` }, { flags: states[i % 6]! })));
        const range = (lo: number, hi: number): number[] => Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);
        const shapes: Array<[string, number[]]> = [
          ['a whole range', range(1, 30)],
          ['every other UID', range(1, 15).map((i) => 2 * i - 1)],
          ['a few far ranges', [2, 3, 4, 5, 6, 7, 17, 18, 19, 20, 300]],
          ['many runs', [...range(1, 30), ...range(1, 20).map((i) => 100 * i + 400)]],
          ['a set of over a thousand UIDs', [...range(1, 30), ...range(0, 1099).map((i) => 1000 + 5 * i)]],
        ];
        // [mode, flags, how many states change]; the last changes one state only.
        const changes: Array<['add' | 'remove' | 'set', string[], 'several' | 'one']> = [
          ['add', ['\\Seen', '$Label3'], 'several'],
          ['remove', ['$Label1', '\\Deleted'], 'several'],
          ['set', ['\\Answered', '$Label2'], 'several'],
          ['remove', ['\\Deleted'], 'one'],
        ];
        const sorted = (flags: readonly string[]): string[] => [...flags].sort();
        for (const [shape, set] of shapes) {
          for (const [mode, flags, stateCount] of changes) {
            for (const refuse of [false, true]) {
              const what = `${shape}, ${mode} ${flags.join(' ')}${refuse ? ', UNCHANGEDSINCE' : ''}`;
              // Back to the six states, then (with UNCHANGEDSINCE) two entries changed after it and
              // back: refused rows in the same state as rows that change.
              for (const [k, state] of states.entries()) {
                await store.setFlags(inbox.id, uids(...range(1, 30).filter((u) => (u - 1) % 6 === k)), 'set', state);
              }
              const cut = (await store.getMailboxById(inbox.id))!.highestModSeq;
              if (refuse) {
                await store.setFlags(inbox.id, uids(3, 10), 'add', ['$Late']);
                await store.setFlags(inbox.id, uids(3, 10), 'remove', ['$Late']);
              }
              const before = new Map((await store.listEntries(inbox.id)).map((e) => [e.uid as number, e]));
              const r = await store.setFlags(inbox.id, uids(...set), mode, flags, refuse ? cut : undefined);
              const after = await store.listEntries(inbox.id);
              const mb = (await store.getMailboxById(inbox.id))!;
              // The model: RFC 9051 §6.4.6 on each named entry; RFC 7162 §3.1.3 refuses those
              // changed after UNCHANGEDSINCE; an entry whose flags stay keeps its modseq.
              const expectUpdated: Array<[number, string[]]> = [];
              const expectModified: number[] = [];
              const expectFlags = new Map<number, string[]>();
              for (const [uid, e] of before) {
                let next = e.flags;
                if (set.includes(uid)) {
                  if (refuse && e.modseq > cut) expectModified.push(uid);
                  else if (mode === 'set') next = flags;
                  else if (mode === 'add') next = [...new Set([...e.flags, ...flags])];
                  else next = e.flags.filter((f) => !flags.includes(f));
                }
                expectFlags.set(uid, sorted(next));
                if (sorted(next).join(' ') !== sorted(e.flags).join(' ')) expectUpdated.push([uid, sorted(next)]);
              }
              const changing = new Set(expectUpdated.map(([uid]) => sorted(before.get(uid)!.flags).join(' '))).size;
              assert.ok(stateCount === 'one' ? changing === 1 : changing >= 2, `${stateCount} state(s) change: ${what}`);
              assert.deepEqual(r.updated.map((u) => [u.uid, sorted(u.flags)]), expectUpdated, `updated: ${what}`);
              assert.ok(r.updated.every((u) => u.modseq === mb.highestModSeq), `one new modseq: ${what}`);
              assert.deepEqual(r.modified, expectModified, `modified: ${what}`);
              assert.deepEqual(r.gone, set.filter((u) => !before.has(u)), `gone: ${what}`);
              assert.equal(r.priorModSeq, refuse ? cut + 2 : cut, `priorModSeq: ${what}`);
              for (const e of after) {
                assert.deepEqual(sorted(e.flags), expectFlags.get(e.uid), `flags of ${e.uid}: ${what}`);
                const changed = expectUpdated.some(([uid]) => uid === e.uid);
                assert.equal(e.modseq, changed ? mb.highestModSeq : before.get(e.uid)!.modseq, `modseq of ${e.uid}: ${what}`);
              }
              const counts = await store.mailboxCounts(inbox.id);
              assert.equal(counts.unseen, after.filter((e) => !e.flags.includes('\\Seen')).length, `unseen: ${what}`);
              assert.equal(counts.deleted, after.filter((e) => e.flags.includes('\\Deleted')).length, `deleted: ${what}`);
              await assertViewCurrent(store, inbox.id, what);
            }
          }
        }
        assert.deepEqual(await store.checkConsistency(), []);
      }));

    test('copy and move with { whole } copy nothing when a UID of the set is not in the source', () =>
      withStore(async ({ store, bob, inbox }) => {
        const dst = await mailbox(store, bob.id, 'Archive');
        await store.append(inbox.id, testMessage({ subject: 'a' }));
        await store.append(inbox.id, testMessage({ subject: 'b' }));
        const c = await store.copy(inbox.id, uids(1, 2, 5), dst.id, { whole: true });
        assert.deepEqual([c.pairs, c.gone], [[], uids(5)]);
        const m = await store.move(inbox.id, uids(2, 6), dst.id, { whole: true });
        assert.deepEqual([m.pairs, m.expunged, m.gone], [[], [], uids(6)]);
        assert.equal((await store.listEntries(dst.id)).length, 0);
        assert.equal((await store.listEntries(inbox.id)).length, 2);
        // Without it, what is there is copied and the rest reported.
        const part = await store.copy(inbox.id, uids(1, 5), dst.id);
        assert.deepEqual([part.pairs, part.gone], [[[1, 1]], uids(5)]);
      }));

    test('copy gives new UIDs and pids, keeps emailId; move keeps pid and expunges the source', () =>
      withStore(async ({ store, bob, inbox }) => {
        const dst = await mailbox(store, bob.id, 'Archive');
        const a = await store.append(inbox.id, testMessage({ subject: 'a' }, { flags: ['\\Seen'] }));
        await store.append(inbox.id, testMessage({ subject: 'b' }));
        await store.append(inbox.id, testMessage({ subject: 'c' }));
        const c = await store.copy(inbox.id, uids(3, 1, 99), dst.id);
        assert.equal(c.uidValidity, dst.uidValidity);
        assert.deepEqual(c.pairs, [[1, 1], [3, 2]]);
        const copies = await store.listEntries(dst.id);
        assert.equal(copies[0]?.emailId, a.emailId);
        assert.notEqual(copies[0]?.pid, a.emailId);
        assert.ok(copies[0]?.pid.startsWith(a.emailId));
        assert.deepEqual(copies[0]?.flags, ['\\Seen']);
        assert.equal((await store.listEntries(inbox.id)).length, 3);
        assert.deepEqual(await store.quotaUsage(bob.id), {
          bytes: (await store.mailboxCounts(inbox.id)).size + (await store.mailboxCounts(dst.id)).size,
          messages: 5,
        });
        const m = await store.move(inbox.id, uids(1, 2), dst.id);
        assert.deepEqual(m.pairs, [[1, 3], [2, 4]]);
        assert.deepEqual(m.expunged, uids(1, 2));
        const moved = await store.getEntries(dst.id, uids(3));
        assert.equal(moved[0]?.pid, a.emailId, 'MOVE keeps the pid (POP3 UIDL stays)');
        assert.deepEqual((await store.listEntries(inbox.id)).map((e) => e.uid), uids(3));
        assert.equal((await store.quotaUsage(bob.id)).messages, 5);
        // Move back to INBOX: new UID, same pid.
        const back = await store.move(dst.id, uids(3), inbox.id);
        assert.deepEqual(back.pairs, [[3, 4]]);
        assert.equal((await store.getEntries(inbox.id, uids(4)))[0]?.pid, a.emailId);
        const empty = await store.copy(inbox.id, uids(42), dst.id);
        assert.deepEqual(empty.pairs, []);
      }));

    test('expunge of a UID set with holes removes only the named \\Deleted entries, not those in the holes', () =>
      withStore(async ({ store, inbox }) => {
        for (let i = 0; i < 7; i++) await store.append(inbox.id, testMessage({ subject: `m${i}` }));
        await store.setFlags(inbox.id, uids(1, 2, 3, 4, 5, 6), 'add', ['\\Deleted']);
        assert.deepEqual(await store.expunge(inbox.id, uids(5, 1, 3, 7), true), uids(1, 3, 5));
        assert.deepEqual((await store.listEntries(inbox.id)).map((e) => e.uid), uids(2, 4, 6, 7));
        assert.deepEqual(await store.expunge(inbox.id, uids(2, 6), true), uids(2, 6));
        assert.deepEqual((await store.listEntries(inbox.id)).map((e) => e.uid), uids(4, 7));
      }));

    test('expunge removes only \\Deleted entries when asked and logs them for changesSince', () =>
      withStore(async ({ store, inbox }) => {
        for (let i = 0; i < 4; i++) await store.append(inbox.id, testMessage({ subject: `m${i}` }));
        const base = (await store.getMailboxById(inbox.id))!.highestModSeq;
        await store.setFlags(inbox.id, uids(1, 3), 'add', ['\\Deleted']);
        assert.deepEqual(await store.expunge(inbox.id, uids(2, 3), true), uids(3));
        assert.deepEqual(await store.expunge(inbox.id), uids(1));
        assert.deepEqual(await store.expunge(inbox.id), []);
        assert.deepEqual(await store.expunge(inbox.id, uids(4)), uids(4));
        assert.deepEqual((await store.listEntries(inbox.id)).map((e) => e.uid), uids(2));
        const ch = await store.changesSince(inbox.id, base, asUid(5));
        assert.deepEqual(ch.expunged, uids(1, 3, 4));
        assert.deepEqual(ch.changed, []);
        assert.deepEqual(ch.added, []);
        assert.deepEqual(await store.mailboxCounts(inbox.id), {
          messages: 1,
          unseen: 1,
          deleted: 0,
          size: (await store.listEntries(inbox.id))[0]!.size,
        });
        // An EXPUNGE that removes nothing takes no modseq: the next change of this account (which
        // changes nothing else) has the one after the mailbox's HIGHESTMODSEQ.
        const high = (await store.getMailboxById(inbox.id))!.highestModSeq;
        assert.deepEqual(await store.expunge(inbox.id, uids(2, 9), true), []);
        assert.deepEqual(await store.expunge(inbox.id, []), []);
        const next = await store.setFlags(inbox.id, uids(2), 'add', ['\\Deleted']);
        assert.deepEqual(next.updated.map((e) => e.modseq), [high + 1]);
      }));

    test('getEntryFacts returns what never changes of the entries, in UID order, and never an entry this store expunged', () =>
      withStore(async ({ store, inbox }) => {
        for (const subject of ['one', 'two', 'three']) await store.append(inbox.id, testMessage({ subject }));
        const entries = await store.getEntries(inbox.id, uids(1, 2, 3));
        const facts = (e: MessageEntry) => {
          const { flags, modseq, pop3Hidden, ...rest } = e;
          void flags, void modseq, void pop3Hidden;
          return rest;
        };
        // Read twice: the second answer may come from the cache (kept by the first).
        for (let i = 0; i < 2; i++) {
          assert.deepEqual(await store.getEntryFacts(inbox.id, uids(3, 1, 2, 9), true), entries.map(facts));
        }
        // Flag changes do not touch facts.
        await store.setFlags(inbox.id, uids(1, 2, 3), 'add', ['\\Seen', 'custom']);
        assert.deepEqual(await store.getEntryFacts(inbox.id, uids(1, 2, 3), true), entries.map(facts));
        await store.expunge(inbox.id, uids(2));
        assert.deepEqual(await store.getEntryFacts(inbox.id, uids(1, 2, 3), true), [entries[0]!, entries[2]!].map(facts));
        // Not kept: read, and still right.
        assert.deepEqual(await store.getEntryFacts(inbox.id, uids(3), false), [facts(entries[2]!)]);
        assert.deepEqual(await store.getEntryFacts(inbox.id, [], true), []);
      }));

    test('changesSince separates added, changed and expunged exactly', () =>
      withStore(async ({ store, inbox }) => {
        for (let i = 0; i < 3; i++) await store.append(inbox.id, testMessage({ subject: `m${i}` }));
        const view = await store.getMailboxById(inbox.id);
        assert.ok(view);
        const since: ModSeq = view.highestModSeq;
        await store.setFlags(inbox.id, uids(2), 'add', ['\\Flagged']);
        await store.expunge(inbox.id, uids(3));
        await store.append(inbox.id, testMessage({ subject: 'new' }));
        await store.append(inbox.id, testMessage({ subject: 'new and gone' }));
        await store.expunge(inbox.id, uids(5));
        const ch = await store.changesSince(inbox.id, since, view.uidNext);
        assert.deepEqual(ch.added.map((e) => e.uid), uids(4));
        assert.deepEqual(ch.changed.map((e) => e.uid), uids(2));
        assert.deepEqual(ch.expunged, uids(3), 'a UID the caller never saw is not reported');
        assert.equal(ch.highestModSeq, (await store.getMailboxById(inbox.id))?.highestModSeq);
        const none = await store.changesSince(inbox.id, ch.highestModSeq, asUid(5));
        assert.deepEqual([none.added, none.changed, none.expunged], [[], [], []]);
      }));

    test('threads join by Message-ID, In-Reply-To and References within the account', () =>
      withStore(async ({ store, inbox }) => {
        const root = await store.append(inbox.id, testMessage({ messageId: 'root@x' }));
        // A reply to a message not yet stored, then that message: they share a thread.
        await store.append(inbox.id, testMessage({ messageId: 'r2@x', headers: { 'In-Reply-To': '<late@x>' } }));
        await store.append(inbox.id, testMessage({ messageId: 'late@x' }));
        await store.append(inbox.id, testMessage({ messageId: 'r1@x', headers: { References: '<root@x>', 'In-Reply-To': '<root@x>' } }));
        await store.append(inbox.id, testMessage({ messageId: 'r3@x', headers: { References: '<root@x> <r1@x>' } }));
        await store.append(inbox.id, testMessage({ messageId: 'other@x' }));
        const e = await store.listEntries(inbox.id);
        const t = e.map((x) => x.threadId);
        assert.equal(t[0], t[3]);
        assert.equal(t[0], t[4]);
        assert.equal(t[1], t[2]);
        assert.notEqual(t[0], t[1]);
        assert.notEqual(t[5], t[0]);
        assert.equal(e[0]?.emailId, root.emailId);
      }));
  });

  describe(`store (${backend}): delivery, blobs, quota`, () => {
    test('deliver stores the blob once for every recipient and frees it with the last reference', () =>
      withStore(async ({ store, bob, alice }) => {
        await store.addDomain('example.net');
        const carol = await store.createAccount({ address: 'carol@example.net', passwordHash: 'h' });
        const m = testMessage({ subject: 'To three', body: 'dedup me' });
        const out = await store.deliver(m.raw, m.parsed, [
          { accountId: bob.id },
          { accountId: alice.id, mailbox: 'Archive', flags: ['\\Seen'] },
          { accountId: carol.id, mailbox: 'Does/Not/Exist' },
          { accountId: bob.id, mailbox: 'Archive' },
        ]);
        assert.equal(out.length, 3, 'one outcome per distinct account');
        assert.ok(out.every((o) => o.ok));
        const archive = await mailbox(store, alice.id, 'Archive');
        assert.equal(out[1]?.ok && out[1].mailboxId, archive.id);
        const carolInbox = await mailbox(store, carol.id, 'INBOX');
        assert.equal(out[2]?.ok && out[2].mailboxId, carolInbox.id, 'unknown mailbox falls back to INBOX');
        const bobInbox = await mailbox(store, bob.id, 'INBOX');
        const all = [
          ...(await store.listEntries(bobInbox.id)),
          ...(await store.listEntries(archive.id)),
          ...(await store.listEntries(carolInbox.id)),
        ];
        assert.equal(all.length, 3);
        assert.equal(new Set(all.map((e) => e.blobHash)).size, 1, 'content stored once');
        assert.equal(new Set(all.map((e) => e.emailId)).size, 3, 'emailId is per account');
        assert.deepEqual(all[1]?.flags, ['\\Seen']);
        const hash = all[0]!.blobHash;
        await store.expunge(bobInbox.id, uids(1));
        await store.expunge(archive.id, uids(1));
        assert.deepEqual(await store.readBlob(hash), m.raw, 'still referenced by carol');
        assert.equal((await store.searchText(carolInbox.id, { field: 'body', value: 'dedup' })).size, 1);
        await store.expunge(carolInbox.id, uids(1));
        // Removed at once (PostgreSQL) or by the sweep that collectGarbage runs now (SQLite).
        await store.collectGarbage();
        await rejectsWith(store.readBlob(hash), 'not-found');
        await rejectsWith(store.getParsed(hash), 'not-found');
      }));

    test('append, setFlags and expunge on a mailbox that is not there throw not-found and write nothing', () =>
      withStore(async ({ store, inbox }) => {
        await store.append(inbox.id, testMessage({ subject: 'kept' }));
        const high = (await store.getMailboxById(inbox.id))!.highestModSeq;
        const missing = asMailboxId(999_999);
        await rejectsWith(store.append(missing, testMessage({ subject: 'lost' })), 'not-found');
        await rejectsWith(store.setFlags(missing, uids(1), 'add', ['\\Seen']), 'not-found');
        await rejectsWith(store.setFlags(missing, [], 'add', ['\\Seen']), 'not-found');
        await rejectsWith(store.expunge(missing), 'not-found');
        await rejectsWith(store.expunge(missing, uids(1)), 'not-found');
        // No modseq taken by the failed writes: the next change has the one after HIGHESTMODSEQ.
        const next = await store.setFlags(inbox.id, uids(1), 'add', ['\\Seen']);
        assert.deepEqual(next.updated.map((e) => e.modseq), [high + 1]);
        assert.deepEqual(await store.checkConsistency(), []);
      }));

    test('deliver reports over-quota and no-account per target without failing the others', () =>
      withStore(async ({ store, bob, alice }) => {
        const m = testMessage({ body: 'q'.repeat(500) });
        await store.updateAccount(alice.id, { quotaBytes: m.raw.length * 2 - 1 });
        const first = await store.deliver(m.raw, m.parsed, [{ accountId: alice.id }]);
        assert.equal(first[0]?.ok, true);
        const out = await store.deliver(m.raw, m.parsed, [
          { accountId: alice.id },
          { accountId: asAccountId(424242) },
          { accountId: bob.id },
        ]);
        assert.deepEqual(
          out.map((o) => (o.ok ? 'ok' : o.reason)),
          ['over-quota', 'no-account', 'ok'],
        );
        assert.deepEqual(await store.quotaUsage(alice.id), { bytes: m.raw.length, messages: 1 });
        await store.updateAccount(bob.id, { quotaMessages: 1 });
        const none = await store.deliver(m.raw, m.parsed, [{ accountId: bob.id }]);
        assert.deepEqual(none.map((o) => o.ok), [false]);
      }));

    test('append and copy over quota throw over-quota; appendMany is all or nothing', () =>
      withStore(async ({ store, bob, inbox }) => {
        await store.updateAccount(bob.id, { quotaMessages: 2 });
        await store.append(inbox.id, testMessage({ subject: '1' }));
        await rejectsWith(
          store.appendMany(inbox.id, [testMessage({ subject: '2' }), testMessage({ subject: '3' })]),
          'over-quota',
        );
        assert.equal((await store.listEntries(inbox.id)).length, 1);
        assert.equal((await store.getMailboxById(inbox.id))?.uidNext, 2, 'nothing of the refused batch remains');
        const two = await store.appendMany(inbox.id, [testMessage({ subject: '2' })]);
        assert.deepEqual(two.map((r) => r.uid), uids(2));
        await rejectsWith(store.append(inbox.id, testMessage({ subject: '3' })), 'over-quota');
        const trash = await mailbox(store, bob.id, 'Trash');
        await rejectsWith(store.copy(inbox.id, uids(1), trash.id), 'over-quota');
        const moved = await store.move(inbox.id, uids(1), trash.id);
        assert.deepEqual(moved.pairs, [[1, 1]], 'a move adds no usage');
      }));

    test('50 concurrent deliveries all commit, with distinct UIDs and one event each', () =>
      withStore(async ({ store, bob, alice, inbox }) => {
        const events: ChangeEvent[] = [];
        const unsubscribe = store.feed.subscribe(bob.id, (e) => events.push(e));
        const msgs = Array.from({ length: 50 }, (_, i) => testMessage({ subject: `concurrent ${i}` }));
        const outs = await Promise.all(msgs.map((m) => store.deliver(m.raw, m.parsed, [{ accountId: bob.id }, { accountId: alice.id }])));
        unsubscribe();
        const bobUids = outs.map((o) => (o[0]?.ok ? o[0].uid : -1));
        assert.deepEqual([...bobUids].sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i + 1));
        assert.equal(events.filter((e) => e.kind === 'append' && e.mailboxId === inbox.id).length, 50);
        assert.equal(new Set(events.map((e) => e.modseq)).size, 50, 'each write takes its own modseq');
        assert.equal((await store.listEntries(inbox.id)).length, 50);
        const subjects = await Promise.all((await store.listEntries(inbox.id)).map(async (e) => (await store.getParsed(e.blobHash)).subject));
        assert.equal(new Set(subjects).size, 50);
      }));

    test('a failing write in a batch does not fail the writes committed with it', () =>
      withStore(async ({ store, inbox, bob }) => {
        const results = await Promise.allSettled([
          store.append(inbox.id, testMessage({ subject: 'ok 1' })),
          store.createMailbox(bob.id, 'INBOX'),
          store.append(inbox.id, testMessage({ subject: 'ok 2' })),
          store.setFlags(inbox.id, uids(1), 'add', ['bad keyword']),
        ]);
        assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled', 'rejected']);
        assert.equal((await store.listEntries(inbox.id)).length, 2);
      }));

    test('feed subscribers hear each change after commit, before the write resolves', () =>
      withStore(async ({ store, bob, alice, inbox }) => {
        const heard: ChangeEvent[] = [];
        const unsubscribe = store.feed.subscribe(bob.id, (e) => heard.push(e));
        const aliceHeard: ChangeEvent[] = [];
        store.feed.subscribe(alice.id, (e) => aliceHeard.push(e));
        const r = await store.append(inbox.id, testMessage());
        assert.deepEqual(heard, [{ accountId: bob.id, mailboxId: inbox.id, modseq: r.modseq, kind: 'append' }]);
        await store.setFlags(inbox.id, uids(1), 'add', ['\\Seen']);
        await store.expunge(inbox.id, uids(1));
        await store.createMailbox(bob.id, 'New');
        assert.deepEqual(heard.map((e) => e.kind), ['append', 'flags', 'expunge', 'mailbox']);
        assert.equal(heard[3]?.mailboxId, null);
        unsubscribe();
        await store.append(inbox.id, testMessage());
        assert.equal(heard.length, 4);
        assert.equal(aliceHeard.length, 0, 'other accounts hear nothing');
        // A throwing listener does not fail the write nor keep others from hearing.
        store.feed.subscribe(bob.id, () => {
          throw new Error('listener bug');
        });
        const later: ChangeEvent[] = [];
        store.feed.subscribe(bob.id, (e) => later.push(e));
        await store.append(inbox.id, testMessage());
        assert.equal(later.length, 1);
      }));

    test('hideFromPop3 marks entries without changing their modseq', () =>
      withStore(async ({ store, inbox }) => {
        const r = await store.append(inbox.id, testMessage());
        await store.hideFromPop3(inbox.id, uids(1));
        const [e] = await store.listEntries(inbox.id);
        assert.equal(e?.pop3Hidden, true);
        assert.equal(e?.modseq, r.modseq);
        // Several at once (an absent UID among them), none, and no such mailbox.
        await store.append(inbox.id, testMessage());
        await store.append(inbox.id, testMessage());
        await store.hideFromPop3(inbox.id, uids(3, 2, 99));
        await store.hideFromPop3(inbox.id, []);
        assert.deepEqual((await store.listEntries(inbox.id)).map((x) => [x.uid, x.pop3Hidden]), [[1, true], [2, true], [3, true]]);
        await assert.rejects(store.hideFromPop3(asMailboxId(987654), uids(1)), (err: unknown) => err instanceof StoreError && err.code === 'not-found');
      }));

    test('tryLock is exclusive until released', () =>
      withStore(async ({ store }) => {
        const release = await store.tryLock('pop3:1');
        assert.ok(release);
        assert.equal(await store.tryLock('pop3:1'), null);
        assert.ok(await store.tryLock('pop3:2'));
        await release();
        const again = await store.tryLock('pop3:1');
        assert.ok(again);
        await release(); // a stale release does not free the new holder's lock
        assert.equal(await store.tryLock('pop3:1'), null);
      }));
  });

  describe(`store (${backend}): text search`, () => {
    test('searchText matches substrings case-insensitively per field, within the mailbox', () =>
      withStore(async ({ store, bob, inbox }) => {
        await store.append(inbox.id, testMessage({
          from: 'Jörg Müller <joerg@example.de>',
          to: 'Bobby <bobby@example.com>',
          cc: 'carl@example.org',
          subject: 'Quarterly REPORT for Zürich',
          body: 'The numbers look Excellent this year.\r\n',
          headers: [
            ['X-Ticket', 'ABC-12345'],
            ['Received', 'from mx.sender.example (mx.sender.example [192.0.2.7])\r\n\tby mail.example.com; Mon, 1 Jan 2024 10:00:00 +0000'],
          ],
        }));
        await store.append(inbox.id, testMessage({ subject: 'lunch', body: 'pizza?\r\n' }));
        const other = await mailbox(store, bob.id, 'Archive');
        await store.append(other.id, testMessage({ subject: 'Quarterly elsewhere' }));
        const s = (field: 'body' | 'text' | 'subject' | 'from' | 'to' | 'cc' | 'bcc', value: string): Promise<Set<Uid>> =>
          store.searchText(inbox.id, { field, value });
        assert.deepEqual(await s('subject', 'report'), new Set(uids(1)));
        assert.deepEqual(await s('subject', 'ZÜRICH'), new Set(uids(1)));
        assert.deepEqual(await s('subject', 'arterly rep'), new Set(uids(1)));
        assert.deepEqual(await s('subject', 'quarterly'), new Set(uids(1)), 'only this mailbox');
        assert.deepEqual(await s('body', 'excellent'), new Set(uids(1)));
        assert.deepEqual(await s('body', 'report'), new Set());
        assert.deepEqual(await s('from', 'müller'), new Set(uids(1)));
        assert.deepEqual(await s('from', 'joerg@example'), new Set(uids(1)));
        assert.deepEqual(await s('to', 'BOBBY@'), new Set(uids(1)));
        assert.deepEqual(await s('cc', 'carl'), new Set(uids(1)));
        assert.deepEqual(await s('text', 'pizza'), new Set(uids(2)));
        assert.deepEqual(await s('text', 'abc-123'), new Set(uids(1)));
        assert.deepEqual(await s('subject', 'zz'), new Set());
        assert.deepEqual(await s('subject', 'LU'), new Set(uids(2)), 'short needles scan');
        assert.deepEqual(await s('body', 'a'), new Set(uids(1, 2)));
        assert.deepEqual(await s('subject', ''), new Set(uids(1, 2)));
        assert.deepEqual(await s('body', 'with "quotes'), new Set());
        const h = (header: string, value: string): Promise<Set<Uid>> => store.searchText(inbox.id, { field: 'header', header, value });
        assert.deepEqual(await h('x-ticket', 'abc-12'), new Set(uids(1)));
        assert.deepEqual(await h('x-ticket', ''), new Set(uids(1)), 'empty value: has the field');
        assert.deepEqual(await h('x-ticket', '45'), new Set(uids(1)));
        assert.deepEqual(await h('subject', 'abc'), new Set(), 'another field does not match');
        assert.deepEqual(await h('received', '192.0.2.7])\tby MAIL'), new Set(uids(1)), 'unfolded value of an unindexed field');
        assert.deepEqual(await h('received', 'nowhere'), new Set());
        assert.deepEqual(await s('text', 'bobby@example.com'), new Set(uids(1)));
        assert.deepEqual(await s('text', 'rt for Zür'), new Set(uids(1)));
        assert.deepEqual(await s('subject', 'for Zürich quarterly'), new Set(), 'all trigrams present but not the substring');
      }));
  });

  describe(`store (${backend}): restore with kept identity`, () => {
    const restored = (uid: number, subject: string, extra: Partial<EntryRestore> = {}): EntryRestore => ({
      uid: asUid(uid),
      ...testMessage({ subject, messageId: `<${subject.replace(/\W/g, '')}@example.org>` }),
      flags: [],
      internalDate: Date.UTC(2020, 0, uid),
      ...extra,
    });

    test('restoreMailbox takes over the empty default INBOX and creates others with their identity', () =>
      withStore(async ({ store, bob, inbox }) => {
        const events: ChangeEvent[] = [];
        store.feed.subscribe(bob.id, (e) => events.push(e));
        const uv = asUidValidity(inbox.uidValidity + 1000);
        const mb = await store.restoreMailbox(bob.id, { name: 'INBOX', uidValidity: uv, uidNext: asUid(57), highestModSeq: asModSeq(900) });
        assert.equal(mb.id, inbox.id, 'the same mailbox row');
        assert.equal(mb.uidValidity, uv);
        assert.equal(mb.uidNext, 57);
        assert.equal(mb.highestModSeq, 900);
        assert.equal(mb.subscribed, true);
        const sub = await store.restoreMailbox(bob.id, {
          name: 'Lists/Rust',
          uidValidity: asUidValidity(uv + 1),
          uidNext: asUid(1),
          specialUse: '\\Archive',
          subscribed: true,
        });
        assert.equal(sub.specialUse, '\\Archive');
        assert.ok(await store.getMailbox(bob.id, 'Lists'), 'parents are created');
        assert.deepEqual(await store.listSubscriptions(bob.id), ['Archive', 'Drafts', 'INBOX', 'Junk', 'Lists/Rust', 'Sent', 'Trash']);
        // The global counter passed the restored values: a new mailbox gets a higher one.
        const fresh = await store.createMailbox(bob.id, 'Later');
        assert.ok(fresh.uidValidity > uv + 1);
        // Default mailbox never used: taken over, its special use kept when none is given.
        const drafts = await store.restoreMailbox(bob.id, { name: 'Drafts', uidValidity: asUidValidity(uv + 5), uidNext: asUid(3), subscribed: false });
        assert.equal(drafts.specialUse, '\\Drafts');
        assert.equal(drafts.subscribed, false);
        // A new modseq above the restored HIGHESTMODSEQ for what happens next.
        const r = await store.append(inbox.id, testMessage({ subject: 'after' }));
        assert.equal(r.uid, 57);
        assert.equal(r.uidValidity, uv);
        assert.ok(r.modseq > 900);
        await new Promise((res) => setTimeout(res, 20));
        assert.ok(events.some((e) => e.kind === 'mailbox'));
      }));

    test('restoreMailbox refuses a mailbox that held messages, a taken UIDVALIDITY and bad input', () =>
      withStore(async ({ store, bob, alice, inbox }) => {
        await store.append(inbox.id, testMessage());
        await store.expunge(inbox.id, [asUid(1)]);
        // Empty again, but it held a message: clients may know its UIDs.
        await rejectsWith(store.restoreMailbox(bob.id, { name: 'INBOX', uidValidity: asUidValidity(4242), uidNext: asUid(1) }), 'conflict');
        const aliceInbox = await mailbox(store, alice.id, 'INBOX');
        await store.append(aliceInbox.id, testMessage());
        await rejectsWith(store.restoreMailbox(bob.id, { name: 'Other', uidValidity: aliceInbox.uidValidity, uidNext: asUid(1) }), 'conflict');
        await rejectsWith(store.restoreMailbox(bob.id, { name: 'Other', uidValidity: asUidValidity(0), uidNext: asUid(1) }), 'invalid');
        await rejectsWith(store.restoreMailbox(bob.id, { name: 'Other', uidValidity: asUidValidity(2 ** 32), uidNext: asUid(1) }), 'invalid');
        await rejectsWith(store.restoreMailbox(bob.id, { name: 'Other', uidValidity: asUidValidity(7), uidNext: asUid(0) }), 'invalid');
        await rejectsWith(store.restoreMailbox(bob.id, { name: 'Other', uidValidity: asUidValidity(7), uidNext: asUid(1), highestModSeq: asModSeq(-1) }), 'invalid');
        await rejectsWith(store.restoreMailbox(asAccountId(9999), { name: 'Other', uidValidity: asUidValidity(7), uidNext: asUid(1) }), 'not-found');
        assert.equal(await store.getMailbox(bob.id, 'Other'), null, 'nothing created');
      }));

    test('restoreMailbox takes a UIDVALIDITY from a mailbox that never held a message, which gets a new, larger one', () =>
      withStore(async ({ store, bob, alice }) => {
        const aliceDrafts = await mailbox(store, alice.id, 'Drafts');
        const mb = await store.restoreMailbox(bob.id, { name: 'Imported', uidValidity: aliceDrafts.uidValidity, uidNext: asUid(9) });
        assert.equal(mb.uidValidity, aliceDrafts.uidValidity);
        const renumbered = await mailbox(store, alice.id, 'Drafts');
        assert.ok(renumbered.uidValidity > aliceDrafts.uidValidity, `${renumbered.uidValidity} > ${aliceDrafts.uidValidity}`);
        const all = [...(await store.listMailboxes(alice.id)), ...(await store.listMailboxes(bob.id))].map((m) => m.uidValidity);
        assert.equal(new Set(all).size, all.length, 'UIDVALIDITYs stay unique');
        assert.deepEqual(await store.checkConsistency(), []);
      }));

    test('restoreEntries keeps UIDs, modseqs, flags, dates and ids; counters, usage, search and blobs follow', () =>
      withStore(async ({ store, bob, inbox }) => {
        const uv = asUidValidity(inbox.uidValidity + 77);
        const mb = await store.restoreMailbox(bob.id, { name: 'INBOX', uidValidity: uv, uidNext: asUid(40), highestModSeq: asModSeq(500) });
        await store.updateAccount(bob.id, { quotaMessages: 1 });
        const events: ChangeEvent[] = [];
        store.feed.subscribe(bob.id, (e) => events.push(e));
        const big = testMessage({ subject: 'big one', body: 'z'.repeat(300_000) });
        const input: EntryRestore[] = [
          restored(3, 'first kept', { flags: ['\\Seen', '$Label1'], modseq: asModSeq(120), pid: 'UIDL-0003', emailId: 'Mkept1', threadId: 'Tkept', saveDate: 1_600_000_000_000 }),
          restored(7, 'second kept', { flags: ['\\Deleted'], modseq: asModSeq(480), pid: 'Mkept1.9', emailId: 'Mkept1', threadId: 'Tkept', pop3Hidden: true }),
          { ...restored(9, 'big one'), ...big, uid: asUid(9), flags: ['\\Flagged'] },
          restored(12, 'fresh ids'),
        ];
        await store.restoreEntries(mb.id, input);
        const entries = await store.listEntries(mb.id);
        assert.deepEqual(entries.map((e) => e.uid), [3, 7, 9, 12]);
        const [e3, e7, e9, e12] = entries as [MessageEntry, MessageEntry, MessageEntry, MessageEntry];
        assert.deepEqual([e3.modseq, e3.pid, e3.emailId, e3.threadId, e3.saveDate, e3.pop3Hidden], [120, 'UIDL-0003', 'Mkept1', 'Tkept', 1_600_000_000_000, false]);
        assert.deepEqual(new Set(e3.flags), new Set(['\\Seen', '$Label1']));
        assert.equal(e3.internalDate, Date.UTC(2020, 0, 3));
        assert.deepEqual([e7.modseq, e7.pid, e7.pop3Hidden, e7.flags], [480, 'Mkept1.9', true, ['\\Deleted']]);
        // Without modseq: one new modseq above every kept one and the account's.
        assert.ok(e9.modseq > 500 && e9.modseq === e12.modseq);
        assert.equal(e12.pid, e12.emailId, 'a new pid is the new email id, as for an APPEND');
        assert.notEqual(e12.emailId, e3.emailId);
        const now = (await store.getMailboxById(mb.id))!;
        assert.equal(now.uidNext, 40, 'the floor stays when above the last UID');
        assert.equal(now.uidValidity, uv);
        assert.equal(now.highestModSeq, e9.modseq);
        const sizes = input.map((e) => e.raw.length).reduce((a, b) => a + b, 0);
        assert.deepEqual(await store.mailboxCounts(mb.id), { messages: 4, unseen: 3, deleted: 1, size: sizes });
        assert.deepEqual(await store.quotaUsage(bob.id), { bytes: sizes, messages: 4 }, 'counted, not enforced');
        assert.deepEqual(await store.readBlob(e9.blobHash), big.raw);
        assert.equal((await store.getParsed(e3.blobHash)).subject, 'first kept');
        assert.deepEqual([...(await store.searchText(mb.id, { field: 'subject', value: 'second' }))], [7]);
        // QRESYNC-style catch-up from the source's point of view.
        const ch = await store.changesSince(mb.id, asModSeq(200), asUid(8));
        assert.deepEqual(ch.changed.map((e) => e.uid), [7]);
        assert.deepEqual(ch.added.map((e) => e.uid), [9, 12]);
        await new Promise((res) => setTimeout(res, 20));
        assert.ok(events.some((e) => e.kind === 'append' && e.mailboxId === mb.id));
        await store.updateAccount(bob.id, { quotaMessages: null });
        // A reply delivered later joins the kept thread.
        const reply = testMessage({ subject: 'Re: first kept', headers: { 'In-Reply-To': '<firstkept@example.org>' } });
        const [out] = await store.deliver(reply.raw, reply.parsed, [{ accountId: bob.id }]);
        assert.ok(out?.ok);
        assert.equal(out.uid, 40, 'the next UID is the restored UIDNEXT');
        assert.equal((await store.getEntries(mb.id, [out.uid]))[0]?.threadId, 'Tkept');
        // COPY gives emailId.N pids: never one a restored entry has.
        const archive = await mailbox(store, bob.id, 'Archive');
        for (let i = 0; i < 10; i++) await store.copy(mb.id, [asUid(3)], archive.id);
        const pids = [...(await store.listEntries(archive.id)), ...(await store.listEntries(mb.id))].map((e) => e.pid);
        assert.equal(new Set(pids).size, pids.length);
        // A later batch continues after the last UID held; expunge works on restored entries.
        await store.restoreEntries(mb.id, [restored(41, 'next batch')]);
        assert.deepEqual(await store.expunge(mb.id), [7]);
        assert.equal((await store.getMailboxById(mb.id))!.uidNext, 42);
      }));

    test('restoreEntries with the reply first: the thread named by the source is kept for both', () =>
      withStore(async ({ store, bob, inbox }) => {
        await store.restoreEntries(inbox.id, [restored(1, 'one', { threadId: 'Tsource' })]);
        const reply = testMessage({ subject: 'Re: one', headers: { 'In-Reply-To': '<one@example.org>' } });
        await store.restoreEntries(inbox.id, [{ uid: asUid(2), ...reply, flags: [], internalDate: 1 }]);
        const [a, b] = await store.listEntries(inbox.id);
        assert.equal(a?.threadId, 'Tsource');
        assert.equal(b?.threadId, 'Tsource');
      }));

    test('restoreEntries refuses UIDs not above those held, bad input and UIDL clashes, writing nothing', () =>
      withStore(async ({ store, bob, alice, inbox }) => {
        await store.restoreEntries(inbox.id, [restored(5, 'five', { pid: 'P5' })]);
        const before = await store.listEntries(inbox.id);
        await rejectsWith(store.restoreEntries(inbox.id, [restored(5, 'again')]), 'invalid');
        await rejectsWith(store.restoreEntries(inbox.id, [restored(4, 'below')]), 'invalid');
        await rejectsWith(store.restoreEntries(inbox.id, [restored(8, 'a'), restored(7, 'b')]), 'invalid');
        await rejectsWith(store.restoreEntries(inbox.id, [restored(8, 'a'), restored(8, 'b')]), 'invalid');
        await rejectsWith(store.restoreEntries(inbox.id, [restored(9, 'a', { internalDate: 1.5 })]), 'invalid');
        await rejectsWith(store.restoreEntries(inbox.id, [restored(9, 'a', { modseq: asModSeq(0) })]), 'invalid');
        await rejectsWith(store.restoreEntries(inbox.id, [restored(9, 'a', { emailId: 'bad id!' })]), 'invalid');
        await rejectsWith(store.restoreEntries(inbox.id, [restored(9, 'a', { pid: 'has space' })]), 'invalid');
        await rejectsWith(store.restoreEntries(inbox.id, [restored(9, 'a', { flags: ['\\Bogus'] })]), 'invalid');
        await rejectsWith(store.restoreEntries(asMailboxId(99999), [restored(9, 'a')]), 'not-found');
        // UIDL clashes: with an entry of another mailbox of the account, and within the batch.
        const sent = await mailbox(store, bob.id, 'Sent');
        await rejectsWith(store.restoreEntries(sent.id, [restored(1, 'clash', { pid: 'P5' })]), 'conflict');
        await rejectsWith(store.restoreEntries(sent.id, [restored(1, 'a', { pid: 'Q' }), restored(2, 'b', { pid: 'Q' })]), 'conflict');
        // Another account may have the same UIDL.
        const aliceInbox = await mailbox(store, alice.id, 'INBOX');
        await store.restoreEntries(aliceInbox.id, [restored(1, 'other account', { pid: 'P5' })]);
        assert.deepEqual(await store.listEntries(inbox.id), before);
        assert.deepEqual(await store.listEntries(sent.id), []);
        assert.deepEqual(await store.mailboxCounts(sent.id), { messages: 0, unseen: 0, deleted: 0, size: 0 });
        assert.equal((await store.getMailboxById(sent.id))!.uidNext, 1);
        // An expunged UID is held too.
        await store.expunge(inbox.id, [asUid(5)]);
        await rejectsWith(store.restoreEntries(inbox.id, [restored(5, 'back')]), 'invalid');
        await store.restoreEntries(inbox.id, []);
      }));

    test('findEntries finds a mailbox\'s entries by UIDL or by blob hash; highestUid is the last UID held', () =>
      withStore(async ({ store, bob, alice, inbox }) => {
        assert.equal(await store.highestUid(inbox.id), 0);
        assert.deepEqual(await store.findEntries(inbox.id, 'pid', ['P1']), []);
        const same = testMessage({ subject: 'twice' });
        await store.restoreEntries(inbox.id, [
          restored(2, 'one', { pid: 'P1' }),
          { uid: asUid(5), ...same, flags: [], internalDate: 5, pid: 'P2' },
          { uid: asUid(9), ...same, flags: [], internalDate: 9 },
        ]);
        // The same UIDL and content in another account and another mailbox are not found.
        await store.restoreEntries((await mailbox(store, alice.id, 'INBOX')).id, [{ uid: asUid(1), ...same, flags: [], internalDate: 1, pid: 'P1' }]);
        await store.restoreEntries((await mailbox(store, bob.id, 'Sent')).id, [{ uid: asUid(1), ...same, flags: [], internalDate: 1, pid: 'P3' }]);
        const byPid = await store.findEntries(inbox.id, 'pid', ['P2', 'P1', 'P3', 'nothing', "x' OR '1'='1"]);
        assert.deepEqual(byPid.map((e) => [e.uid, e.pid]), [[2, 'P1'], [5, 'P2']]);
        const hash = byPid[1]!.blobHash;
        const byBlob = await store.findEntries(inbox.id, 'blobHash', [hash, 'f'.repeat(64)]);
        assert.deepEqual(byBlob.map((e) => [e.uid, e.internalDate]), [[5, 5], [9, 9]]);
        assert.deepEqual(await store.findEntries(inbox.id, 'blobHash', []), []);
        assert.equal(await store.highestUid(inbox.id), 9);
        // UIDNEXT stays above an expunged last UID; the highest UID held does not.
        await store.expunge(inbox.id, [asUid(9)]);
        assert.equal(await store.highestUid(inbox.id), 5);
        assert.equal((await store.getMailboxById(inbox.id))!.uidNext, 10);
        assert.equal(await store.highestUid(asMailboxId(99999)), 0);
      }));
  });

  describe(`store (${backend}): random operation sequences`, () => {
    type Op =
      | { kind: 'append'; box: number; seen: boolean }
      | { kind: 'copy' | 'move'; from: number; to: number; pick: number[] }
      | { kind: 'flags'; box: number; pick: number[]; mode: 'add' | 'remove' | 'set'; flags: string[] }
      | { kind: 'expunge'; box: number; pick: number[] | null };
    const box = fc.integer({ min: 0, max: 2 });
    const pick = fc.array(fc.nat({ max: 30 }), { maxLength: 6 });
    const op: fc.Arbitrary<Op> = fc.oneof(
      { arbitrary: fc.record({ kind: fc.constant('append' as const), box, seen: fc.boolean() }), weight: 4 },
      fc.record({ kind: fc.constantFrom('copy' as const, 'move' as const), from: box, to: box, pick }),
      fc.record({
        kind: fc.constant('flags' as const),
        box,
        pick,
        mode: fc.constantFrom('add' as const, 'remove' as const, 'set' as const),
        flags: fc.subarray(['\\Seen', '\\Deleted', '\\Flagged', '$Work', 'todo']),
      }),
      fc.record({ kind: fc.constant('expunge' as const), box, pick: fc.option(pick, { nil: null }) }),
    );

    test('UIDs only grow, pids and flags follow the model, every invariant holds (property)', async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 25 }), async (ops) => {
          await withStore(async ({ store, bob }) => {
            const boxes = [
              await mailbox(store, bob.id, 'INBOX'),
              await mailbox(store, bob.id, 'Archive'),
              await mailbox(store, bob.id, 'Trash'),
            ];
            // The model: per mailbox, uid -> { pid, subject, flags }; and each mailbox's UIDNEXT.
            type M = { pid: string; subject: string; flags: Set<string> };
            const model = boxes.map(() => new Map<number, M>());
            const uidNext = boxes.map(() => 1);
            let lastModSeq = 0;
            let n = 0;
            const at = (b: number, picks: number[]): Uid[] => {
              const uidsNow = [...model[b]!.keys()].sort((x, y) => x - y);
              return picks.map((p) => asUid(uidsNow.length === 0 ? p + 1 : (uidsNow[p % uidsNow.length] ?? 1)));
            };
            for (const o of ops) {
              if (o.kind === 'append') {
                const subject = `msg ${n++}`;
                const r = await store.append(boxes[o.box]!.id, testMessage({ subject }, { flags: o.seen ? ['\\Seen'] : [] }));
                assert.equal(r.uid, uidNext[o.box]);
                uidNext[o.box] = r.uid + 1;
                model[o.box]!.set(r.uid, { pid: r.emailId, subject, flags: new Set(o.seen ? ['\\Seen'] : []) });
              } else if (o.kind === 'copy' || o.kind === 'move') {
                const src = at(o.from, o.pick);
                const r = o.kind === 'copy'
                  ? await store.copy(boxes[o.from]!.id, src, boxes[o.to]!.id)
                  : await store.move(boxes[o.from]!.id, src, boxes[o.to]!.id);
                const expectedSrc = [...new Set(src)].filter((u) => model[o.from]!.has(u)).sort((x, y) => x - y);
                assert.deepEqual(r.pairs.map((p) => p[0]), expectedSrc);
                for (const [s, d] of r.pairs) {
                  assert.equal(d, uidNext[o.to], 'destination UIDs are consecutive from UIDNEXT');
                  uidNext[o.to] = d + 1;
                  const m = model[o.from]!.get(s)!;
                  model[o.to]!.set(d, { ...m, flags: new Set(m.flags), pid: o.kind === 'move' ? m.pid : '(copy)' });
                  if (o.kind === 'move') model[o.from]!.delete(s);
                }
              } else if (o.kind === 'flags') {
                const target = at(o.box, o.pick);
                await store.setFlags(boxes[o.box]!.id, target, o.mode, o.flags);
                for (const u of target) {
                  const m = model[o.box]!.get(u);
                  if (m === undefined) continue;
                  if (o.mode === 'set') m.flags = new Set(o.flags);
                  else for (const f of o.flags) o.mode === 'add' ? m.flags.add(f) : m.flags.delete(f);
                }
              } else if (o.kind === 'expunge') {
                const target = o.pick === null ? undefined : at(o.box, o.pick);
                const removed = await store.expunge(boxes[o.box]!.id, target);
                const expected = [...model[o.box]!.entries()]
                  .filter(([u, m]) => (target === undefined ? m.flags.has('\\Deleted') : target.includes(asUid(u))))
                  .map(([u]) => u)
                  .sort((x, y) => x - y);
                assert.deepEqual(removed, expected);
                for (const u of removed) model[o.box]!.delete(u);
              }
              for (const [b, mb] of boxes.entries()) {
                const entries = await store.listEntries(mb.id);
                assert.deepEqual(entries.map((e) => e.uid), [...model[b]!.keys()].sort((x, y) => x - y));
                for (const e of entries) {
                  const m = model[b]!.get(e.uid)!;
                  assert.deepEqual(new Set(e.flags), m.flags);
                  if (m.pid !== '(copy)') assert.equal(e.pid, m.pid);
                }
                await assertViewCurrent(store, mb.id, `after ${o.kind}`);
                const now = await store.getMailboxById(mb.id);
                assert.equal(now?.uidNext, uidNext[b]);
                assert.ok(entries.every((e) => e.modseq <= (now?.highestModSeq ?? 0)));
              }
              const highest = Math.max(...(await Promise.all(boxes.map(async (mb) => (await store.getMailboxById(mb.id))!.highestModSeq))));
              assert.ok(highest >= lastModSeq, 'HIGHESTMODSEQ never goes back');
              lastModSeq = highest;
            }
            // Every pid is unique within the account, subjects are those of the model.
            const all = (await Promise.all(boxes.map((mb) => store.listEntries(mb.id)))).flat();
            assert.equal(new Set(all.map((e) => e.pid)).size, all.length);
            for (const [b, mb] of boxes.entries()) {
              for (const e of await store.listEntries(mb.id)) {
                assert.equal((await store.getParsed(e.blobHash)).subject, model[b]!.get(e.uid)!.subject);
              }
            }
          });
        }),
        { seed: 42, numRuns: 25 },
      );
    });
  });

  describe(`store (${backend}): THREAD keys`, () => {
    test('THREAD numbers are equal exactly when the names are, across mailboxes and accounts, and a name keeps its number after its messages are gone', () =>
      withStore(async ({ store, alice, inbox }) => {
        const msg = (id: string, subject: string, refs: string[] = []) =>
          testMessage({ messageId: id, subject, headers: refs.length > 0 ? [['References', refs.map((r) => `<${r}>`).join(' ')]] : [] });
        const keysOf = async (mailboxId: MailboxId) => {
          const k = await store.listThreadKeys(mailboxId);
          const at = (uid: number): number => k.uids.indexOf(uid);
          return {
            id: (uid: number) => k.messageIds[at(uid)]!,
            subject: (uid: number) => k.subjects[at(uid)]!,
            refs: (uid: number) => Array.from(k.refs.subarray(k.refStart[at(uid)]!, k.refStart[at(uid) + 1]!)),
          };
        };
        await store.appendMany(inbox.id, [msg('a@x', 'plan'), msg('b@x', 'Re: plan', ['a@x']), msg('A@x', 'other')]);
        const aliceInbox = await mailbox(store, alice.id, 'INBOX');
        await store.append(aliceInbox.id, msg('c@x', 'PLAN', ['a@x', 'b@x']));
        const bobKeys = await keysOf(inbox.id);
        const aliceKeys = await keysOf(aliceInbox.id);
        const [a, b, upperA] = [bobKeys.id(1), bobKeys.id(2), bobKeys.id(3)];
        // Distinct strings, distinct numbers (Message-IDs compare case-sensitively, RFC 5256 §4).
        assert.equal(new Set([a, b, upperA, aliceKeys.id(1)]).size, 4);
        assert.ok([a, b, upperA].every((n) => n > 0));
        assert.deepEqual(bobKeys.refs(2), [a]);
        assert.deepEqual(aliceKeys.refs(1), [a, b], 'the same names in another account have the same numbers');
        // The base subjects, casemapped, are one name.
        assert.equal(bobKeys.subject(1), bobKeys.subject(2));
        assert.equal(bobKeys.subject(1), aliceKeys.subject(1));
        assert.notEqual(bobKeys.subject(1), bobKeys.subject(3));
        // The messages naming a@x go (and their blobs): a new message with that Message-ID gets
        // the number alice's message still refers to.
        await store.expunge(inbox.id, [asUid(1), asUid(2)]);
        await store.collectGarbage();
        await store.append(inbox.id, msg('a@x', 'plan again'));
        const again = await keysOf(inbox.id);
        assert.equal(again.id(4), a);
        assert.deepEqual((await keysOf(aliceInbox.id)).refs(1), [a, b]);
      }));
  });
}

/**
 * listViewEntries with a store whose view cache holds little or nothing (viewCacheMessages 0:
 * every call reads the whole mailbox; small: mailboxes push each other out): the whole read
 * (keywords included) and the re-reads give the same answers as the cached path.
 */
export async function checkViewReads(store: MailStore): Promise<void> {
  await store.addDomain('example.com');
  const bob = await store.createAccount({ address: 'bob@example.com', passwordHash: 'h' });
  const boxes = [(await store.getMailbox(bob.id, 'INBOX'))!, (await store.getMailbox(bob.id, 'Archive'))!];
  for (const [b, mb] of boxes.entries()) {
    for (let i = 0; i < 12; i++) {
      await store.append(mb.id, testMessage({ subject: `m${b}-${i}` }, { flags: i % 3 === 0 ? ['\\Seen', '$Work', 'todo'] : i % 3 === 1 ? ['\\Flagged'] : [] }));
    }
    await assertViewCurrent(store, mb.id, `box ${b} after appends`);
  }
  for (const [b, mb] of boxes.entries()) {
    await store.setFlags(mb.id, uids(1, 2, 3, 4), 'add', ['$Other']);
    await store.expunge(mb.id, uids(2, 5));
    await assertViewCurrent(store, boxes[1 - b]!.id, `box ${1 - b} after the other's changes`);
    await assertViewCurrent(store, mb.id, `box ${b} after its changes`);
  }
}

/**
 * The upgrade to numbered THREAD names (schema version 10), for each backend's test: three
 * messages, and the sort_keys.thread_text ("flags subject id,refs") a version 9 database would
 * hold for them if the 53-bit hashes of <p@x> and <q@x> were equal. Threaded right: (1)(2 3);
 * with the collision, message 3 goes under message 1.
 */
export const HASH_COLLISION = {
  inputs: () =>
    [
      'Message-ID: <p@x>\r\nSubject: alpha\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n1\r\n',
      'Message-ID: <q@x>\r\nSubject: beta\r\nDate: Mon, 1 Jan 2024 11:00:00 +0000\r\n\r\n2\r\n',
      'Message-ID: <r@x>\r\nReferences: <q@x>\r\nSubject: Re: beta\r\nDate: Mon, 1 Jan 2024 12:00:00 +0000\r\n\r\n3\r\n',
    ].map((text) => {
      const raw = Buffer.from(text);
      return { raw, parsed: parseMessage(raw) };
    }),
  texts: ['0 a 5', '0 b 5', '1 b 7,5'],
  threads: '(1)(2 3)',
};

/** THREAD REFERENCES of a whole mailbox as the response writes it, by sequence number. */
export async function threadsOf(store: MailStore, mailboxId: MailboxId): Promise<string> {
  const uids = (await store.listEntries(mailboxId)).map((e) => e.uid);
  const forest = await threadForest(Int32Array.from(uids.keys()), 'REFERENCES', storeSortView(store, mailboxId, uids));
  return threadResponseText(forest, (i) => i + 1);
}
