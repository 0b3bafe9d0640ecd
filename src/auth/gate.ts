/**
 * Concurrency gates for the authenticator.
 *
 * Why: failure limits are checked before a password is hashed, so without a gate a client that
 * opens a hundred connections at once gets a hundred guesses before the first failure is even
 * counted. A per-key gate makes attempts on one account (or from one IP) take turns, so each one
 * sees the failures of the previous ones. A global gate keeps scrypt from occupying every libuv
 * thread, which the store's file writes and fsyncs also need.
 *
 * Invariants: at most `max` holders per key; at most `maxQueue` waiters per key, past which
 * `acquire` answers null at once (the caller refuses the attempt); a key's entry exists only
 * while it has holders or waiters, so memory follows the number of attempts in progress.
 */

export type Release = () => void;

export interface Gate {
  /** Resolves with a release function when admitted; null when the queue is full. */
  acquire(key: string): Promise<Release> | null;
  /** Holders plus waiters for the key (tests, metrics). */
  pending(key: string): number;
}

export function createGate(options: { max: number; maxQueue: number }): Gate {
  const { max, maxQueue } = options;
  const slots = new Map<string, { active: number; waiting: Array<() => void> }>();

  function releaser(key: string): Release {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const slot = slots.get(key);
      if (!slot) return;
      const next = slot.waiting.shift();
      if (next) {
        next(); // the slot passes directly to the next waiter; active stays the same
        return;
      }
      slot.active--;
      if (slot.active === 0) slots.delete(key);
    };
  }

  return {
    acquire(key) {
      let slot = slots.get(key);
      if (!slot) {
        slot = { active: 0, waiting: [] };
        slots.set(key, slot);
      }
      if (slot.active < max) {
        slot.active++;
        return Promise.resolve(releaser(key));
      }
      if (slot.waiting.length >= maxQueue) return null;
      const { waiting } = slot;
      return new Promise<Release>((resolve) => waiting.push(() => resolve(releaser(key))));
    },
    pending(key) {
      const slot = slots.get(key);
      return slot ? slot.active + slot.waiting.length : 0;
    },
  };
}
