/**
 * Local delivery: recipients to accounts, and one message to many mailboxes.
 *
 * Invariants:
 * - A message is parsed once (parseMessage) and written once (content-addressed), with an entry
 *   in each target account's mailbox, in one store transaction (store.deliver), which is durable
 *   when the promise resolves: the caller may acknowledge then and not before.
 * - An account reached by several recipients (aliases, plus-addressing) gets one copy.
 */
import type { AccountId } from '../lib/brand.js';
import { parseMessage } from '../mail/parse.js';
import type { DeliveryOutcome, MailStore } from '../store/types.js';

export type RecipientCheck =
  /** quotaChecked: a quota of one of the address's accounts was read, so the answer depends on
   * the message's size and the account's usage, not on the address alone. */
  | { kind: 'ok'; accounts: AccountId[]; quotaChecked: boolean }
  | { kind: 'unknown' }
  | { kind: 'disabled' }
  | { kind: 'over-quota' };

/** The answer to an RCPT (LocalDelivery.lookupRecipient). */
export type RecipientAnswer = RecipientCheck | { kind: 'not-local' };

export interface LocalDelivery {
  /** The answer to an RCPT: 'not-local' when the domain (lowercased, no trailing dot) is not
   * ours, else the accounts the address reaches, with quota and status checked. One call, so one
   * round trip for an SMTP worker process. */
  lookupRecipient(domain: string, address: string, messageSize: number | null): Promise<RecipientAnswer>;
  /** Stores the message once for the accounts (deduplicated) in `mailbox` (INBOX by default). */
  deliver(raw: Buffer, accounts: readonly AccountId[], mailbox?: string): Promise<Map<AccountId, DeliveryOutcome>>;
}

export function createLocalDelivery(store: MailStore): LocalDelivery {
  /** The accounts an address of a local domain reaches, with quota and status checked. */
  const checkRecipient = async (address: string, messageSize: number | null): Promise<RecipientCheck> => {
    // The accounts with their rows in one read (an RCPT is on every message's path).
    const accounts = await store.resolveRecipientAccounts(address.toLowerCase());
    if (accounts.length === 0) return { kind: 'unknown' };
    const accepted: AccountId[] = [];
    let full = 0;
    let disabled = 0;
    let quotaChecked = false;
    for (const account of accounts) {
      const id = account.id;
      if (account.disabled) {
        disabled++;
        continue;
      }
      if (account.quotaBytes !== null || account.quotaMessages !== null) {
        quotaChecked = true;
        const usage = await store.quotaUsage(id);
        const incoming = messageSize ?? 0;
        if (
          (account.quotaBytes !== null && usage.bytes + incoming > account.quotaBytes) ||
          (account.quotaMessages !== null && usage.messages + 1 > account.quotaMessages)
        ) {
          full++;
          continue;
        }
      }
      accepted.push(id);
    }
    if (accepted.length > 0) return { kind: 'ok', accounts: accepted, quotaChecked };
    if (full > 0) return { kind: 'over-quota' };
    if (disabled > 0) return { kind: 'disabled' };
    return { kind: 'unknown' };
  };

  return {
    async lookupRecipient(domain, address, messageSize) {
      if (!(await store.isLocalDomain(domain))) return { kind: 'not-local' };
      return checkRecipient(address, messageSize);
    },

    async deliver(raw, accounts, mailbox) {
      const unique = [...new Set(accounts)];
      const parsed = parseMessage(raw);
      const targets = unique.map((accountId) => (mailbox ? { accountId, mailbox } : { accountId }));
      const outcomes = await store.deliver(raw, parsed, targets);
      return new Map(outcomes.map((o) => [o.accountId, o]));
    },
  };
}
