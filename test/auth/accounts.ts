/**
 * A fresh real store (SQLite, temp directory) for authentication tests, with a shortcut to add
 * accounts by password hash. The store's invariants are checked when the test ends.
 */
import type { TestContext } from 'node:test';
import type { Account, MailStore } from '../../src/store/types.js';
import { openTestStore } from '../helpers/store.js';

export interface AuthTestStore {
  store: MailStore;
  add(address: string, passwordHash: string, patch?: { scram?: string | null; disabled?: boolean }): Promise<Account>;
  get(address: string): Promise<Account | null>;
}

export async function openAuthStore(t: TestContext): Promise<AuthTestStore> {
  const { store, cleanup } = await openTestStore();
  t.after(cleanup);
  return {
    store,
    async add(address, passwordHash, patch = {}) {
      const domain = address.slice(address.lastIndexOf('@') + 1);
      if (!(await store.isLocalDomain(domain))) await store.addDomain(domain);
      const account = await store.createAccount({ address, passwordHash, scram: patch.scram ?? null });
      if (patch.disabled) await store.updateAccount(account.id, { disabled: true });
      return (await store.getAccount(account.id)) ?? account;
    },
    get: (address) => store.getAccountByAddress(address),
  };
}
