/**
 * How an address reaches accounts (MailStore.resolveRecipient and resolveRecipientAccounts), for
 * every backend: the exact account, plus-addressing (user+tag@ reaches user@), aliases
 * (recursively, bounded by MAX_ALIAS_DEPTH, cycles cut), then the domain's catch-all, only for
 * an address nothing else knows. Deduplicated, in the order found.
 *
 * A backend answers one lookup per address visited: the account with exactly that address and
 * the alias targets whose source it is, in one statement (one read lock on SQLite, one round
 * trip on PostgreSQL), so the common RCPT (an account, no alias) costs one statement.
 */

/** Alias chains longer than this are cut (and a cycle ends at its first repeat). */
export const MAX_ALIAS_DEPTH = 10;

export interface AddressLookup<A> {
  /** The account whose address this is, if any. */
  account: A | undefined;
  /** Targets of the aliases whose source this is, in a stable order. */
  targets: readonly string[];
}

/** `start` must be normalised (normalizeAddress); `@domain` is looked up for the catch-all. */
export async function resolveAddress<A extends { id: number }>(
  start: string,
  lookup: (address: string) => AddressLookup<A> | Promise<AddressLookup<A>>,
): Promise<A[]> {
  const out: A[] = [];
  const found = new Set<number>();
  const visited = new Set<string>();
  // Returns whether the address is known (an account or an alias), which stops the fallbacks.
  const visit = async (addr: string, depth: number): Promise<boolean> => {
    if (depth > MAX_ALIAS_DEPTH || visited.has(addr)) return false;
    visited.add(addr);
    const { account, targets } = await lookup(addr);
    let known = false;
    if (account !== undefined) {
      known = true;
      if (!found.has(Number(account.id))) {
        found.add(Number(account.id));
        out.push(account);
      }
    }
    if (targets.length > 0) known = true;
    for (const t of targets) await visit(t, depth + 1);
    if (known) return true;
    const at = addr.lastIndexOf('@');
    const local = addr.slice(0, at);
    const plus = local.indexOf('+');
    // Plus-addressing: user+tag@domain reaches user@domain.
    if (plus > 0 && (await visit(local.slice(0, plus) + addr.slice(at), depth))) return true;
    // The domain's catch-all comes last, only for addresses nothing else knows.
    const catchAll = (await lookup(`@${addr.slice(at + 1)}`)).targets;
    for (const t of catchAll) await visit(t, depth + 1);
    return catchAll.length > 0;
  };
  await visit(start, 0);
  return out;
}
