/**
 * The ENVELOPE fetch item (RFC 9051 §7.5.2) built from the envelope kept at ingest.
 *
 * Invariants: pure (no I/O); strings are passed on as stored (raw header values, encoded words
 * kept), and the serializer decides how each one is written (quoted, literal, NIL).
 */
import type { Envelope, EnvelopeAddress } from '../../mail/types.js';
import type { ImapValue } from '../protocol/ast.js';

/** RFC 9051 §7.5.2: an address list is NIL when the header is absent or names no address. */
function addressList(list: EnvelopeAddress[] | null): ImapValue {
  if (list === null || list.length === 0) return null;
  // Group start {mailbox: name, host: null} and end (all NIL) pass through as given
  // (RFC 3501 §7.4.2 group syntax).
  return list.map((a): ImapValue => [a.name, a.adl, a.mailbox, a.host]);
}

function orFrom(list: EnvelopeAddress[] | null, from: EnvelopeAddress[] | null): EnvelopeAddress[] | null {
  // RFC 3501 §7.4.2: "If the Sender or Reply-To lines are absent in the [RFC-2822] header, or are
  // present but empty, the server sets the corresponding member of the envelope to be the same
  // value as the from member". Done here too so a record parsed without the default still answers
  // correctly.
  return list !== null && list.length > 0 ? list : from;
}

/** (date subject from sender reply-to to cc bcc in-reply-to message-id), RFC 9051 §7.5.2. */
export function envelopeValue(env: Envelope): ImapValue {
  return [
    env.date,
    env.subject,
    addressList(env.from),
    addressList(orFrom(env.sender, env.from)),
    addressList(orFrom(env.replyTo, env.from)),
    addressList(env.to),
    addressList(env.cc),
    addressList(env.bcc),
    env.inReplyTo,
    env.messageId,
  ];
}
