/**
 * Backend-neutral part of the annotation store (RFC 5464): both backends read the current rows of
 * the target and of the account inside their write transaction, then apply the plan computed here,
 * so the limits are decided the same way on SQLite and PostgreSQL.
 */
import type { MetadataChange, MetadataLimits } from './types.js';
import { StoreError } from './types.js';

/** Event entry names carried by a change event at most, and their total length: a PostgreSQL
 * NOTIFY payload is limited to 8000 bytes. Past either, the event carries none (any may have
 * changed). */
const EVENT_MAX_NAMES = 32;
const EVENT_MAX_NAME_BYTES = 2048;

export interface MetadataPlan {
  /** Rows to write (lowercased name, value). */
  upserts: Array<{ name: string; value: Buffer }>;
  /** Lowercased names to delete (existing ones only). */
  deletes: string[];
  /** Names for the change event, or undefined when too many to carry. */
  eventNames: string[] | undefined;
}

/**
 * The plan for a SETMETADATA: `current` maps the target's lowercased names to their value sizes,
 * `accountBytes` is the account's total before the change. Later changes of the same name win.
 * Throws StoreError 'over-quota' when the target would hold more than maxEntries entries or the
 * account more than maxTotalBytes.
 */
export function planMetadata(
  current: ReadonlyMap<string, number>,
  accountBytes: number,
  changes: readonly MetadataChange[],
  limits: MetadataLimits,
): MetadataPlan {
  const last = new Map<string, Buffer | null>();
  for (const ch of changes) last.set(ch.name.toLowerCase(), ch.value);
  const upserts: MetadataPlan['upserts'] = [];
  const deletes: string[] = [];
  const changed: string[] = [];
  let entries = current.size;
  let bytes = accountBytes;
  for (const [name, value] of last) {
    const before = current.get(name);
    if (value === null) {
      if (before === undefined) continue;
      deletes.push(name);
      entries--;
      bytes -= before;
    } else {
      upserts.push({ name, value });
      if (before === undefined) entries++;
      bytes += value.length - (before ?? 0);
    }
    changed.push(name);
  }
  // Only growth is refused: removing or shrinking entries is always allowed, even when a limit
  // was lowered below what is already stored.
  if (entries > limits.maxEntries && entries > current.size) throw new StoreError('over-quota', `Cannot set metadata: more than ${limits.maxEntries} entries`);
  if (bytes > limits.maxTotalBytes && bytes > accountBytes) {
    throw new StoreError('over-quota', `Cannot set metadata: more than ${limits.maxTotalBytes} bytes`);
  }
  const nameBytes = changed.reduce((n, s) => n + Buffer.byteLength(s), 0);
  const eventNames = changed.length <= EVENT_MAX_NAMES && nameBytes <= EVENT_MAX_NAME_BYTES ? changed : undefined;
  return { upserts, deletes, eventNames };
}
