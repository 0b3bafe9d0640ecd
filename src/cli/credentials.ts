/**
 * `facteur user app-password add|list|revoke` and `facteur user totp enable|disable`: the
 * per-device passwords and the second factor of an account (docs/security.md, Credentials).
 *
 * Invariants: an app password is printed once, at creation, and never stored in clear; TOTP is
 * enabled only after a code from the user's app matched the secret (so nobody is locked out by a
 * mistyped secret), and that code's step is recorded as used.
 */
import { createInterface } from 'node:readline';
import { generateAppPassword, hashAppPassword } from '../auth/app-password.js';
import { base32Decode, generateTotpSecret, otpauthUri, verifyTotp } from '../auth/totp.js';
import type { Account, AppPassword, MailStore } from '../store/types.js';

export interface CredentialsIo {
  out(line: string): void;
  err(line: string): void;
}

/** A usage problem: the caller prints the usage line given. */
export class CredentialsUsage extends Error {}

const APP_PASSWORD_USAGE = 'user app-password add ADDRESS NAME | list ADDRESS | revoke ADDRESS NAME';
const TOTP_USAGE = 'user totp enable ADDRESS [--secret BASE32 --confirm CODE] | disable ADDRESS';

async function requireAccount(store: MailStore, address: string): Promise<Account> {
  const account = await store.getAccountByAddress(address);
  if (!account) throw new Error(`No such user: ${address}`);
  return account;
}

/** UTC to the minute, as the list shows it. */
function when(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

export function formatAppPassword(p: AppPassword): string {
  const used = p.lastUsed === null ? 'never used' : `last used ${when(p.lastUsed.at)} ${p.lastUsed.protocol} ${p.lastUsed.ip}`;
  return `${p.name}\tcreated ${when(p.createdAt)}\t${used}`;
}

export async function appPasswordCommand(store: MailStore, args: readonly string[], io: CredentialsIo): Promise<number> {
  const [sub, address, name, extra] = args;
  if (!address || extra !== undefined) throw new CredentialsUsage(APP_PASSWORD_USAGE);
  if (sub === 'add' && name) {
    const account = await requireAccount(store, address);
    const secret = generateAppPassword();
    const created = await store.addAppPassword(account.id, { name, hash: hashAppPassword(secret)! });
    io.out(`app password "${created.name}" for ${account.address} (shown only now; use it as the password in the mail client):`);
    io.out(secret);
    return 0;
  }
  if (sub === 'list' && name === undefined) {
    const account = await requireAccount(store, address);
    for (const p of await store.listAppPasswords(account.id)) io.out(formatAppPassword(p));
    return 0;
  }
  if (sub === 'revoke' && name) {
    const account = await requireAccount(store, address);
    await store.removeAppPassword(account.id, name);
    io.out(`revoked app password "${name.trim()}" of ${account.address}`);
    return 0;
  }
  throw new CredentialsUsage(APP_PASSWORD_USAGE);
}

/** One line from standard input (the code typed or piped), or null at end of input. */
async function readCode(prompt: string, io: CredentialsIo): Promise<string | null> {
  io.err(prompt);
  const lines = createInterface({ input: process.stdin, terminal: false });
  try {
    for await (const line of lines) return line.trim();
    return null;
  } finally {
    lines.close();
  }
}

export async function totpCommand(
  store: MailStore,
  args: readonly string[],
  options: { secret?: string; confirm?: string; issuer: string; now?: () => number },
  io: CredentialsIo,
): Promise<number> {
  const [sub, address, extra] = args;
  if (!address || extra !== undefined) throw new CredentialsUsage(TOTP_USAGE);
  const now = options.now ?? Date.now;
  if (sub === 'disable') {
    if (options.secret !== undefined || options.confirm !== undefined) throw new CredentialsUsage(TOTP_USAGE);
    const account = await requireAccount(store, address);
    await store.updateAccount(account.id, { totpSecret: null, totpLastStep: null });
    io.out(`TOTP disabled for ${account.address}: its main password works again on IMAP, POP3 and SMTP`);
    return 0;
  }
  if (sub !== 'enable') throw new CredentialsUsage(TOTP_USAGE);
  // A generated secret is printed here, so a code for it cannot have been given in advance.
  if (options.confirm !== undefined && options.secret === undefined) {
    throw new CredentialsUsage(`--confirm needs --secret (the secret a previous "totp enable" printed): ${TOTP_USAGE}`);
  }
  const account = await requireAccount(store, address);
  if (account.totpSecret !== null) throw new Error(`TOTP is already enabled for ${account.address}: facteur user totp disable ${account.address} first`);
  let secret: string;
  if (options.secret !== undefined) {
    secret = options.secret.replace(/[\s=]/g, '').toUpperCase();
    const key = base32Decode(secret);
    if (key === null || key.length < 10) throw new Error('--secret: not a base32 secret of at least 80 bits (16 characters)');
  } else {
    secret = generateTotpSecret();
    io.out(`secret: ${secret}`);
    io.out(`uri: ${otpauthUri(secret, account.address, options.issuer)}`);
    io.out('Add it to an authenticator app (paste the secret, or make a QR code of the URI), then type the code it shows.');
  }
  const code = options.confirm ?? (await readCode('code: ', io));
  if (code === null || code === '') {
    io.err(`TOTP not enabled: no code. To confirm later: facteur user totp enable ${account.address} --secret ${secret} --confirm CODE`);
    return 1;
  }
  const check = verifyTotp(secret, code, { now: now(), lastStep: null });
  if (!check.ok) throw new Error('TOTP not enabled: the code does not match the secret (check the device clock, or type the next code)');
  // The confirming code's step is recorded as used: it cannot log in to the web afterwards.
  await store.updateAccount(account.id, { totpSecret: secret, totpLastStep: check.step });
  io.out(`TOTP enabled for ${account.address}: IMAP, POP3 and SMTP now accept only its app passwords`);
  if ((await store.listAppPasswords(account.id)).length === 0) {
    io.out(`it has none yet: facteur user app-password add ${account.address} NAME`);
  }
  return 0;
}
