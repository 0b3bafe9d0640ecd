/**
 * The two account methods the authenticator calls, over a Map: the authenticator's unit tests
 * (lockout, timing, credential upgrades) count and inspect the calls it makes. The end-to-end
 * SASL test runs against the real store.
 */
import { asAccountId } from '../../src/lib/brand.js';
import type { AuthStore } from '../../src/auth/authenticator.js';
import type { Account } from '../../src/store/types.js';

export interface MemoryAccounts extends AuthStore {
  add(address: string, passwordHash: string, patch?: Partial<Account>): Account;
  get(address: string): Account | undefined;
  lookups: number;
}

export function memoryAccounts(): MemoryAccounts {
  const byAddress = new Map<string, Account>();
  let nextId = 1;
  const self: MemoryAccounts = {
    lookups: 0,
    add(address, passwordHash, patch = {}) {
      const account: Account = {
        id: asAccountId(nextId++),
        address,
        domain: address.slice(address.indexOf('@') + 1),
        passwordHash,
        scram: null,
        quotaBytes: null,
        quotaMessages: null,
        pop3DeletePolicy: 'expunge',
        disabled: false,
        createdAt: Date.now(),
        ...patch,
      };
      byAddress.set(address, account);
      return account;
    },
    get(address) {
      return byAddress.get(address);
    },
    async getAccountByAddress(address) {
      self.lookups++;
      const a = byAddress.get(address);
      return a ? { ...a } : null;
    },
    async updateAccount(id, patch) {
      for (const [address, a] of byAddress) {
        if (a.id === id) byAddress.set(address, { ...a, ...patch });
      }
    },
  };
  return self;
}
