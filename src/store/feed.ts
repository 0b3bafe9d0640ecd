/**
 * The in-process change feed: a backend publishes the events of a transaction after it commits,
 * and every subscriber of the account hears them synchronously, so a session in IDLE learns of a
 * delivery within the same turn of the event loop. A PostgreSQL backend replaces this with a
 * LISTEN/NOTIFY feed that has the same two sides.
 */
import type { AccountId } from '../lib/brand.js';
import type { ChangeEvent, ChangeFeed } from './types.js';

export interface LocalFeed {
  readonly feed: ChangeFeed;
  /** Delivers events to the subscribers of their accounts; call only after the commit. */
  publish(events: readonly ChangeEvent[]): void;
}

/**
 * One listener's failure must not keep the others from hearing the change, nor fail the write
 * that already committed: it is handed to onListenerError.
 */
export function createLocalFeed(onListenerError: (err: unknown) => void): LocalFeed {
  const listeners = new Map<AccountId, Set<(event: ChangeEvent) => void>>();
  return {
    feed: {
      subscribe(accountId, listener) {
        let set = listeners.get(accountId);
        if (set === undefined) {
          set = new Set();
          listeners.set(accountId, set);
        }
        // Wrapped so the same function may subscribe twice and be removed once per subscription.
        const wrapped = (event: ChangeEvent): void => listener(event);
        set.add(wrapped);
        return () => {
          const current = listeners.get(accountId);
          if (current === undefined) return;
          current.delete(wrapped);
          if (current.size === 0) listeners.delete(accountId);
        };
      },
    },
    publish(events) {
      for (const event of events) {
        const set = listeners.get(event.accountId);
        if (set === undefined) continue;
        for (const listener of [...set]) {
          try {
            listener(event);
          } catch (err) {
            onListenerError(err);
          }
        }
      }
    },
  };
}
