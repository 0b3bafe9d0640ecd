/**
 * The change feed across nodes, over PostgreSQL LISTEN/NOTIFY. A writing transaction NOTIFYs its
 * events on the store's channel before COMMIT (PostgreSQL delivers them only if it commits, in
 * commit order); every node keeps one listening connection and re-publishes what it hears to its
 * in-process subscribers (feed.ts). The writing node also publishes its own events right after
 * its COMMIT, so its own sessions hear them before the write resolves, as with SQLite; whichever
 * of the two copies arrives first is published and the other dropped (a bounded memory of the
 * events already published).
 *
 * A lost listening connection is re-opened with a growing delay; events sent while it was down
 * are not replayed (sessions still catch up at their next command, from changesSince).
 */
import type pg from 'pg';
import { asAccountId, asMailboxId, asModSeq } from '../lib/brand.js';
import { LruCache } from '../lib/lru.js';
import { createLocalFeed } from './feed.js';
import type { ChangeEvent, ChangeFeed } from './types.js';

/** Events remembered for de-duplication: far more than can be in flight between two nodes. */
const SEEN_EVENTS = 8192;
const MAX_RECONNECT_DELAY_MS = 5000;

const KINDS: ReadonlyArray<ChangeEvent['kind']> = ['append', 'flags', 'expunge', 'mailbox', 'metadata'];

/** Compact payload (NOTIFY payloads are limited to 8000 bytes): [account, mailbox|null, modseq,
 * kind] and, for a metadata event that carries them, the entry names (bounded by the store). */
export function encodeChangeEvent(e: ChangeEvent): string {
  const v: unknown[] = [e.accountId, e.mailboxId, e.modseq, KINDS.indexOf(e.kind)];
  if (e.entries !== undefined) v.push(e.entries);
  return JSON.stringify(v);
}

export function decodeChangeEvent(payload: string): ChangeEvent | null {
  try {
    const v = JSON.parse(payload) as unknown;
    if (!Array.isArray(v) || (v.length !== 4 && v.length !== 5)) return null;
    const [a, m, s, k, names] = v as unknown[];
    const kind = typeof k === 'number' ? KINDS[k] : undefined;
    if (typeof a !== 'number' || (m !== null && typeof m !== 'number') || typeof s !== 'number' || kind === undefined) return null;
    const event: ChangeEvent = { accountId: asAccountId(a), mailboxId: m === null ? null : asMailboxId(m), modseq: asModSeq(s), kind };
    if (names !== undefined) {
      if (!Array.isArray(names) || !names.every((n) => typeof n === 'string')) return null;
      event.entries = names as string[];
    }
    return event;
  } catch {
    return null;
  }
}

const eventKey = (e: ChangeEvent): string => `${e.accountId}:${e.mailboxId ?? '-'}:${e.modseq}:${e.kind}`;

export interface NotifyFeed {
  readonly feed: ChangeFeed;
  /** Publishes events this node committed (call right after COMMIT). */
  publishLocal(events: readonly ChangeEvent[]): void;
  /** Whether the listening connection is up (events of other nodes arrive). */
  readonly listening: boolean;
  /** Sees every event published (this node's and the others'), and each gap: the listening
   * connection lost, and again once it listens anew (events in between are not replayed). */
  observe(observer: FeedObserver): void;
  close(): Promise<void>;
}

export interface FeedObserver {
  events(events: readonly ChangeEvent[]): void;
  gap(): void;
}

export interface NotifyFeedOptions {
  /** Opens a new connection for listening (not from the pool: it stays open). */
  connect(): Promise<pg.Client>;
  channel: string;
  onListenerError(err: unknown): void;
  /** A listening connection failed (it is re-opened). */
  onConnectionError(err: unknown): void;
}

/** Resolves once the first LISTEN is in place, so no event committed after it is missed. */
export async function createNotifyFeed(options: NotifyFeedOptions): Promise<NotifyFeed> {
  const local = createLocalFeed(options.onListenerError);
  const seen = new LruCache<string, true>(SEEN_EVENTS);
  let client: pg.Client | null = null;
  let closed = false;
  let delay = 100;
  let timer: NodeJS.Timeout | null = null;
  const observers: FeedObserver[] = [];
  let reopened = false;

  const publish = (events: readonly ChangeEvent[]): void => {
    const fresh = events.filter((e) => {
      const k = eventKey(e);
      if (seen.get(k) !== undefined) return false;
      seen.set(k, true);
      return true;
    });
    if (fresh.length === 0) return;
    for (const o of observers) o.events(fresh);
    local.publish(fresh);
  };

  const listen = async (): Promise<void> => {
    const c = await options.connect();
    c.on('notification', (msg) => {
      if (msg.channel !== options.channel || msg.payload === undefined) return;
      const e = decodeChangeEvent(msg.payload);
      if (e !== null) publish([e]);
    });
    const lost = (err: unknown): void => {
      if (client !== c) return;
      client = null;
      for (const o of observers) o.gap();
      c.removeAllListeners('notification');
      c.end().catch(() => undefined);
      if (closed) return;
      options.onConnectionError(err);
      timer = setTimeout(reconnect, delay);
      delay = Math.min(delay * 2, MAX_RECONNECT_DELAY_MS);
    };
    c.on('error', lost);
    c.on('end', () => lost(new Error('listening connection closed')));
    await c.query(`LISTEN ${quoteIdent(options.channel)}`);
    client = c;
    delay = 100;
    // What was committed while no connection listened was not heard.
    if (reopened) for (const o of observers) o.gap();
    reopened = true;
  };

  const reconnect = (): void => {
    timer = null;
    if (closed) return;
    listen().catch((err: unknown) => {
      options.onConnectionError(err);
      if (!closed) {
        timer = setTimeout(reconnect, delay);
        delay = Math.min(delay * 2, MAX_RECONNECT_DELAY_MS);
      }
    });
  };

  await listen();
  return {
    feed: local.feed,
    publishLocal: publish,
    get listening() {
      return client !== null;
    },
    observe(observer) {
      observers.push(observer);
    },
    async close() {
      closed = true;
      if (timer !== null) clearTimeout(timer);
      const c = client;
      client = null;
      if (c !== null) await c.end().catch(() => undefined);
    },
  };
}

/** A double-quoted SQL identifier. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
