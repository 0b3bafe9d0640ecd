/**
 * What `facteur queue list|show|retry|hold|release|drop` does, on a QueueStore. Safe while the
 * server runs: each change is one transaction, and the worker rereads state at each attempt
 * (a dropped message is skipped, a held one is not claimed, a retried one is due at once).
 */
import { join } from 'node:path';
import type { QueueStore, QueuedMessageInfo } from './types.js';

export function queueDbPath(dataDir: string): string {
  return join(dataDir, 'queue.db');
}

export interface QueueListEntry {
  id: string;
  sender: string;
  createdAt: number;
  size: number;
  held: boolean;
  queued: number;
  delivered: number;
  failed: number;
  /** Earliest next attempt of a queued recipient, or null. */
  nextAttempt: number | null;
  lastError: string | null;
}

function summarise(m: QueuedMessageInfo): QueueListEntry {
  const queued = m.recipients.filter((r) => r.state === 'queued');
  const withError = [...m.recipients].filter((r) => r.lastError).sort((a, b) => b.updatedAt - a.updatedAt)[0];
  return {
    id: m.id,
    sender: m.sender,
    createdAt: m.createdAt,
    size: m.size,
    held: m.held,
    queued: queued.length,
    delivered: m.recipients.filter((r) => r.state === 'delivered').length,
    failed: m.recipients.filter((r) => r.state === 'failed').length,
    nextAttempt: queued.length > 0 ? Math.min(...queued.map((r) => r.nextAttempt)) : null,
    lastError: withError?.lastError ?? null,
  };
}

export async function listQueue(store: QueueStore): Promise<QueueListEntry[]> {
  return (await store.listMessages()).map(summarise);
}

export interface QueueShowResult {
  message: QueuedMessageInfo;
  /** The message's header section (for Subject, From, Message-ID). */
  header: string;
}

export async function showQueued(store: QueueStore, id: string): Promise<QueueShowResult | null> {
  const message = await store.getMessage(id);
  if (!message) return null;
  const body = (await store.readBody(id)) ?? Buffer.alloc(0);
  const end = body.indexOf('\r\n\r\n');
  return { message, header: body.subarray(0, end < 0 ? Math.min(body.length, 8192) : end).toString('utf8') };
}

/** The message's TLS requirement as `queue show` prints it, or null for the default (STARTTLS
 * when offered, the recipient domain's MTA-STS policy applied). */
export function describeTls(m: QueuedMessageInfo): string | null {
  if (m.requireTls) return 'TLS: REQUIRETLS (RFC 8689): only over verified TLS, to hosts that offer REQUIRETLS';
  if (m.tlsOptional) return "TLS: TLS-Required: No (RFC 8689): the recipient domains' MTA-STS policies are set aside; STARTTLS still used when offered";
  return null;
}

/** Ids the command applies to: one id, or every message for 'all'. */
async function targets(store: QueueStore, id: string): Promise<string[]> {
  if (id === 'all') return (await store.listMessages()).map((m) => m.id);
  return [id];
}

/** Makes the queued recipients due now. Returns how many recipients. */
export async function retryQueued(store: QueueStore, id: string, now = Date.now()): Promise<number> {
  let n = 0;
  for (const t of await targets(store, id)) n += await store.retryNow(t, now);
  return n;
}

/** Held messages are not attempted until released. Returns how many messages changed. */
export async function holdQueued(store: QueueStore, id: string): Promise<number> {
  let n = 0;
  for (const t of await targets(store, id)) if (await store.setHeld(t, true)) n++;
  return n;
}

export async function releaseQueued(store: QueueStore, id: string): Promise<number> {
  let n = 0;
  for (const t of await targets(store, id)) if (await store.setHeld(t, false)) n++;
  return n;
}

/** Removes messages without any report to the sender. Returns how many. */
export async function dropQueued(store: QueueStore, id: string): Promise<number> {
  let n = 0;
  for (const t of await targets(store, id)) if (await store.drop(t)) n++;
  return n;
}

/** A text table for the CLI (one line per message). */
export function formatQueueList(entries: readonly QueueListEntry[], now = Date.now()): string {
  if (entries.length === 0) return 'Queue is empty\n';
  const lines = entries.map((e) => {
    const next = e.nextAttempt === null ? '-' : e.nextAttempt <= now ? 'now' : `in ${Math.ceil((e.nextAttempt - now) / 60_000)}m`;
    const state = e.held ? 'held' : `${e.queued} queued`;
    const err = e.lastError ? `  ${e.lastError.slice(0, 120)}` : '';
    return `${e.id}  ${new Date(e.createdAt).toISOString()}  ${e.size}B  <${e.sender}>  ${state}, ${e.delivered} delivered, ${e.failed} failed, next ${next}${err}`;
  });
  return lines.join('\n') + '\n';
}
