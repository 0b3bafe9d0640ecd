/** How both queue stores keep a recipient's RFC 3461 NOTIFY list in one text column: null for
 * the default, '' for NEVER, else the values joined by commas. */
import type { DsnNotify } from './types.js';

export function parseNotify(v: string | null): DsnNotify[] | null {
  if (v === null) return null;
  return v === '' ? [] : (v.split(',') as DsnNotify[]);
}

export const formatNotify = (v: readonly DsnNotify[] | null): string | null => (v === null ? null : v.join(','));
