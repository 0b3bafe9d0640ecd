/**
 * `facteur user show|set|disable|enable`: what an account is allowed and how it behaves, the
 * settings the store keeps and enforces (quotas at RCPT, APPEND and COPY; the POP3 delete policy
 * at QUIT, docs/pop3-imap.md; a disabled account can neither log in nor receive).
 */
import { parseVacation, VACATION_ENTRY } from '../delivery/vacation.js';
import type { Account, AccountPatch, MailStore, Pop3DeletePolicy } from '../store/types.js';

const POLICIES: readonly Pop3DeletePolicy[] = ['expunge', 'trash', 'hide'];

export class AccountSettingsUsage extends Error {}

/** "500M", "2G", "1048576" or "none" (no limit); binary units. */
export function parseSize(text: string, what: string): number | null {
  const t = text.trim().toLowerCase();
  if (t === 'none' || t === 'unlimited') return null;
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$/.exec(t);
  if (!m) throw new AccountSettingsUsage(`${what}: "${text}" is not a size (bytes, or a number with K, M, G or T; or none)`);
  const bytes = Math.round(Number(m[1]) * 1024 ** ' kmgt'.indexOf(m[2] || ' '));
  if (!Number.isSafeInteger(bytes) || bytes < 1) throw new AccountSettingsUsage(`${what}: "${text}" is out of range`);
  return bytes;
}

function parseCount(text: string, what: string): number | null {
  const t = text.trim().toLowerCase();
  if (t === 'none' || t === 'unlimited') return null;
  if (!/^\d+$/.test(t) || Number(t) < 1 || !Number.isSafeInteger(Number(t))) throw new AccountSettingsUsage(`${what}: "${text}" is not a positive whole number (or none)`);
  return Number(t);
}

export function formatSize(bytes: number): string {
  for (const [unit, n] of [['T', 1024 ** 4], ['G', 1024 ** 3], ['M', 1024 ** 2], ['K', 1024]] as const) {
    if (bytes >= n) return `${(bytes / n).toFixed(bytes % n === 0 ? 0 : 1)}${unit}`;
  }
  return `${bytes}`;
}

async function accountOf(store: MailStore, address: string): Promise<Account> {
  const account = await store.getAccountByAddress(address);
  if (!account) throw new Error(`No such user: ${address}`);
  return account;
}

export async function accountSettingsCommand(
  store: MailStore,
  sub: 'show' | 'set' | 'disable' | 'enable',
  address: string,
  values: Record<string, unknown>,
  out: (line: string) => void,
): Promise<number> {
  const account = await accountOf(store, address);
  if (sub === 'disable' || sub === 'enable') {
    await store.updateAccount(account.id, { disabled: sub === 'disable' });
    out(sub === 'disable' ? `disabled ${account.address}: no login, no delivery (its mail is kept)` : `enabled ${account.address}`);
    return 0;
  }
  if (sub === 'set') {
    const patch: Partial<AccountPatch> = {};
    const storage = values['quota-storage'];
    const messages = values['quota-messages'];
    const policy = values['pop3-delete'];
    if (typeof storage === 'string') patch.quotaBytes = parseSize(storage, '--quota-storage');
    if (typeof messages === 'string') patch.quotaMessages = parseCount(messages, '--quota-messages');
    if (typeof policy === 'string') {
      if (!(POLICIES as readonly string[]).includes(policy)) throw new AccountSettingsUsage(`--pop3-delete: ${POLICIES.join(', ')}`);
      patch.pop3DeletePolicy = policy as Pop3DeletePolicy;
    }
    if (Object.keys(patch).length === 0) throw new AccountSettingsUsage('user set ADDRESS [--quota-storage SIZE|none] [--quota-messages N|none] [--pop3-delete expunge|trash|hide]');
    await store.updateAccount(account.id, patch);
    out(`updated ${account.address}`);
    return 0;
  }
  const usage = await store.quotaUsage(account.id);
  const limit = (used: string, max: string | null) => (max === null ? `${used} (no limit)` : `${used} of ${max}`);
  out(account.address);
  out(`  created         ${new Date(account.createdAt).toISOString()}`);
  out(`  state           ${account.disabled ? 'disabled' : 'enabled'}${account.totpSecret !== null ? ', second factor (TOTP) on' : ''}`);
  out(`  storage         ${limit(formatSize(usage.bytes), account.quotaBytes === null ? null : formatSize(account.quotaBytes))}`);
  out(`  messages        ${limit(String(usage.messages), account.quotaMessages === null ? null : String(account.quotaMessages))}`);
  out(`  POP3 delete     ${account.pop3DeletePolicy}`);
  const addresses = await store.sendableAddresses(account.id);
  if (addresses.length > 1) out(`  also reached at ${addresses.slice(1).join(', ')}`);
  out(`  app passwords   ${(await store.listAppPasswords(account.id)).length}`);
  const vacation = (await store.getMetadata(account.id, null)).find((e) => e.name === VACATION_ENTRY);
  out(`  vacation reply  ${vacation && parseVacation(vacation.value) ? 'on' : 'off'}`);
  return 0;
}
