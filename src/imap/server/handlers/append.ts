/**
 * APPEND (RFC 9051 §6.3.12) with MULTIAPPEND (RFC 3502: all or nothing), binary literals
 * (RFC 3516), UTF8 literals (RFC 6855 §4), APPENDUID (RFC 4315) and APPENDLIMIT (RFC 7889).
 * The message is parsed once, here, and stored with its parse record.
 */
import { checkMessageKeywords } from '../keyword-limits.js';
import { encodeNulParts } from '../../../mail/nul-parts.js';
import { parseMessage } from '../../../mail/parse.js';
import type { AppendInput } from '../../../store/types.js';
import type { Request } from '../../protocol/parser.js';
import { formatSet } from '../../protocol/serialize.js';
import type { Done } from '../commands.js';
import { BadError, NoError } from '../errors.js';
import type { Session } from '../session.js';

export async function appendCommand(s: Session, _tag: string, req: Request): Promise<Done> {
  if (req.name !== 'APPEND') throw new Error('unreachable');
  const store = s.ctx.store;
  const mb = await store.getMailbox(s.account().id, req.mailbox);
  // RFC 9051 §6.3.12: TRYCREATE when the mailbox does not exist.
  if (mb === null) throw new NoError('TRYCREATE', 'No such mailbox');
  const inputs: AppendInput[] = [];
  for (const m of req.messages) {
    // RFC 6855 §4: the UTF8 APPEND data item only after ENABLE UTF8=ACCEPT.
    if (m.utf8 && !s.utf8) throw new BadError('UTF8 APPEND needs ENABLE UTF8=ACCEPT');
    if (m.data.length === 0) throw new NoError('CANNOT', 'Cannot store an empty message');
    if (m.data.length > s.host.options.appendLimit) throw new NoError('TOOBIG', 'Message is larger than APPENDLIMIT');
    checkMessageKeywords(m.flags);
    let raw = m.data;
    let parsed = parseMessage(raw);
    if (raw.includes(0)) {
      // Only a literal8 carries NUL (RFC 3516 §4.4). Such parts are stored re-encoded, since
      // BODY[] answers cannot carry NUL (mail/nul-parts.ts); NUL anywhere else is refused.
      const encoded = encodeNulParts(raw, parsed);
      if (encoded === null) throw new NoError('UNKNOWN-CTE', 'Cannot store NUL outside a part with an identity transfer encoding');
      raw = encoded;
      parsed = parseMessage(raw);
    }
    const input: AppendInput = { raw, parsed, flags: m.flags };
    if (m.date !== null) input.internalDate = m.date;
    inputs.push(input);
  }
  const results = inputs.length === 1 ? [await store.append(mb.id, inputs[0]!)] : await store.appendMany(mb.id, inputs);
  if (s.state.kind === 'selected' && s.state.view.mailbox.id === mb.id) s.markOwnNew(results.map((r) => r.uid));
  const first = results[0]!;
  // RFC 4315 §3: APPENDUID uidvalidity uid-set.
  return { code: [{ atom: 'APPENDUID' }, first.uidValidity, { atom: formatSet(results.map((r) => r.uid)) }], text: 'APPEND completed' };
}
