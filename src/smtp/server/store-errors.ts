/**
 * Expected refusals from the store mapped to SMTP replies (DESIGN.md, Errors: "expected refusal"
 * -> 4xx/5xx with an enhanced code). Anything else is not expected and is rethrown, to become
 * 451 4.3.0 with a correlation id.
 */
import { StoreError } from '../../store/types.js';
import { R, type Reply } from '../protocol/reply.js';

export function storeRefusal(err: unknown): Reply {
  if (err instanceof StoreError) {
    // RFC 3463: 4.2.2 mailbox full; 5.3.4 message too big for system
    if (err.code === 'over-quota') return R.overQuota();
    if (err.code === 'too-big') return R.tooBig();
  }
  throw err;
}
