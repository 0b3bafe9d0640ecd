/**
 * The answers of the reads every RCPT makes (is this domain local, which accounts does this
 * address reach), kept between the writes that could change them. They change rarely (an
 * administrator's command) while each read costs a statement and a WAL read lock on the event
 * loop, twice per recipient.
 *
 * Invariants (kept by the owner, sqlite-store.ts):
 * - clear() right after the COMMIT of any batch holding a job that may write domains, accounts or
 *   aliases (every job not marked as writing mailbox contents only), before any later read.
 * - check(version) before every lookup, with the connection's PRAGMA data_version: it changes
 *   when another connection committed (another process: `facteur domain add` and the other CLI
 *   commands write from their own), and the whole cache is dropped then. A change it cannot see
 *   (this connection's own commits) is covered by the rule above.
 * - Bounded: MAX_LOOKUPS answers of each kind, the oldest dropped first, so a harvester's random
 *   addresses cannot grow it.
 */

/** Answers kept per kind (domains, addresses). */
export const MAX_LOOKUPS = 4096;

/** R: what an address resolves to (the owner's type; kept as given, never changed). */
export class LookupCache<R> {
  readonly #domains = new Map<string, boolean>();
  readonly #addresses = new Map<string, R>();
  #version: number | null = null;
  #generation = 0;

  /** Changes at every clear: an answer read across one is not kept (see setAddress). */
  get generation(): number {
    return this.#generation;
  }

  /** Drops everything when the database changed through another connection since the last call. */
  check(version: number): void {
    if (version === this.#version) return;
    this.clear();
    this.#version = version;
  }

  clear(): void {
    this.#generation++;
    this.#domains.clear();
    this.#addresses.clear();
  }

  domain(name: string): boolean | undefined {
    return this.#domains.get(name);
  }

  setDomain(name: string, local: boolean): void {
    remember(this.#domains, name, local);
  }

  /** What a normalised address reaches; the caller must not change it. */
  address(address: string): R | undefined {
    return this.#addresses.get(address);
  }

  /** `generation`: the cache's when the reads began; the answer is dropped if it was cleared
   * since (a resolution visits several addresses, with awaits between them). */
  setAddress(address: string, answer: R, generation: number): void {
    if (generation === this.#generation) remember(this.#addresses, address, answer);
  }
}

function remember<V>(map: Map<string, V>, key: string, value: V): void {
  if (map.size >= MAX_LOOKUPS) {
    // Insertion order: the first key is the oldest.
    const oldest = map.keys().next();
    if (oldest.done !== true) map.delete(oldest.value);
  }
  map.set(key, value);
}
