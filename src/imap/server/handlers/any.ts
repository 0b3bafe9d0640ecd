/** Commands valid in every state: CAPABILITY, NOOP, LOGOUT (RFC 9051 §6.1), ID (RFC 2971). */
import type { Request } from '../../protocol/parser.js';
import type { Done } from '../commands.js';
import type { Session } from '../session.js';

export async function capability(s: Session): Promise<void> {
  await s.untagged([{ atom: 'CAPABILITY' }, ...s.capabilities().map((c) => ({ atom: c }))]);
}

/** RFC 9051 §6.1.2: does nothing; the pending updates are sent by the session before the OK. */
export async function noop(): Promise<void> {}

export async function logout(s: Session): Promise<Done> {
  // RFC 9051 §6.1.3: BYE first, then the tagged OK, then close.
  await s.status('*', 'BYE', null, 'Logging out');
  s.unselect();
  s.state = { kind: 'logout' };
  return { sync: false };
}

/** RFC 2971: the client's identification is logged (bounded by the parser); ours is fixed. */
export async function id(s: Session, _tag: string, req: Request): Promise<void> {
  if (req.name !== 'ID') return;
  if (req.params !== null) s.log.debug({ clientId: Object.fromEntries(req.params) }, 'client id');
  await s.untagged([{ atom: 'ID' }, ['name', 'Facteur', 'vendor', 'Facteur']]);
}
