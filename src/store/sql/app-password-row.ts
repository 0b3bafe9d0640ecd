/** The app_passwords row as both SQL backends return it, and its mapping to AppPassword. */
import { asAccountId } from '../../lib/brand.js';
import type { AppPassword } from '../types.js';

export interface AppPasswordRow {
  id: number;
  account_id: number;
  name: string;
  hash: string;
  created_at: number;
  last_used_at: number | null;
  last_used_protocol: string | null;
  last_used_ip: string | null;
}

export function toAppPassword(r: AppPasswordRow): AppPassword {
  return {
    id: Number(r.id),
    accountId: asAccountId(Number(r.account_id)),
    name: r.name,
    hash: r.hash,
    createdAt: Number(r.created_at),
    lastUsed:
      r.last_used_at === null
        ? null
        : { at: Number(r.last_used_at), protocol: r.last_used_protocol ?? '', ip: r.last_used_ip ?? '' },
  };
}
