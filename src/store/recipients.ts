/**
 * How an address reaches accounts (MailStore.resolveRecipient and resolveRecipientAccounts), for
 * every backend: the exact account, plus-addressing (user+tag@ reaches user@), aliases
 * (recursively, bounded by MAX_ALIAS_DEPTH, cycles cut), then the domain's catch-all, only for
 * an address nothing else knows. Deduplicated, in the order found. An alias target in a domain
 * that is not local is a forward (delivery/srs.ts): collected, not looked up.
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

/** What an address reaches: accounts, and remote addresses its aliases forward to. */
export interface ResolvedAddress<A> {
  accounts: A[];
  forwards: string[];
}

/** `start` must be normalised (normalizeAddress); `@domain` is looked up for the catch-all.
 * `isLocalDomain` is asked about each alias target's domain (once per domain). */
export async function resolveAddress<A extends { id: number }>(
  start: string,
  lookup: (address: string) => AddressLookup<A> | Promise<AddressLookup<A>>,
  isLocalDomain: (domain: string) => boolean | Promise<boolean>,
): Promise<ResolvedAddress<A>> {
  const out: A[] = [];
  const forwards: string[] = [];
  const found = new Set<number>();
  const visited = new Set<string>();
  const domains = new Map<string, boolean>();
  const isLocal = async (addr: string): Promise<boolean> => {
    const d = addr.slice(addr.lastIndexOf('@') + 1);
    let v = domains.get(d);
    if (v === undefined) domains.set(d, (v = await isLocalDomain(d)));
    return v;
  };
  // A target: looked up when local, else forwarded to (once).
  const follow = async (target: string, depth: number): Promise<void> => {
    if (await isLocal(target)) {
      await visit(target, depth);
    } else if (depth <= MAX_ALIAS_DEPTH && !forwards.includes(target)) {
      forwards.push(target);
    }
  };
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
    for (const t of targets) await follow(t, depth + 1);
    if (known) return true;
    const at = addr.lastIndexOf('@');
    const local = addr.slice(0, at);
    const plus = local.indexOf('+');
    // Plus-addressing: user+tag@domain reaches user@domain.
    if (plus > 0 && (await visit(local.slice(0, plus) + addr.slice(at), depth))) return true;
    // The domain's catch-all comes last, only for addresses nothing else knows.
    const catchAll = (await lookup(`@${addr.slice(at + 1)}`)).targets;
    for (const t of catchAll) await follow(t, depth + 1);
    return catchAll.length > 0;
  };
  await visit(start, 0);
  return { accounts: out, forwards };
}
