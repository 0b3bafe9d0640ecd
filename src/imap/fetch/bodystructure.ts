/**
 * The BODY and BODYSTRUCTURE fetch items (RFC 9051 §7.5.2) built from the MIME tree kept at
 * ingest; nothing here reads message bytes.
 *
 * Conventions (the RFC leaves them open; these match Cyrus and Gmail, and clients compare
 * case-insensitively):
 * - media type, subtype, transfer encoding, parameter names and disposition type are written in
 *   upper case (the parse record keeps them lowercased, so the original case is gone anyway);
 *   parameter values, ids, descriptions, languages and locations are passed on as stored;
 * - a part without Content-Transfer-Encoding shows "7BIT" (RFC 2045 §6.1 default);
 * - a text/* part without parameters shows ("CHARSET" "us-ascii"), the RFC 2045 §5.2 default, as
 *   Dovecot does; a part of another type without parameters shows NIL;
 * - a parameter value that is not ASCII is sent to a client that has not enabled UTF8=ACCEPT in
 *   RFC 2231 form (NAME* "utf-8''%C3%A9"), since a quoted string there must be 7-bit;
 * - message/global is described like message/rfc822 only to IMAP4rev2 clients
 *   (RFC 9051 §9 media-message); IMAP4rev1 (RFC 3501 §9) only knows message/rfc822.
 *
 * Invariants: pure; the result is a tree of ImapValue the serializer writes as is.
 */
import type { Envelope, MimePart, Params } from '../../mail/types.js';
import type { ImapValue } from '../protocol/ast.js';
import { envelopeValue } from './envelope.js';

export interface BodyStructureOptions {
  /** IMAP4rev2 selected: message/global gets the encapsulated-message form. */
  rev2?: boolean;
  /** UTF8=ACCEPT enabled (RFC 9755/6855): UTF-8 parameter values are sent as they are. */
  utf8?: boolean;
}

const EMPTY_ENVELOPE: Envelope = {
  date: null,
  subject: null,
  from: null,
  sender: null,
  replyTo: null,
  to: null,
  cc: null,
  bcc: null,
  inReplyTo: null,
  messageId: null,
};

/** A zero-length text/plain part: stands in where the grammar needs a body and there is none
 * (a multipart with no parts, an unparsable encapsulated message), as Dovecot does. */
function emptyTextPart(): ImapValue {
  return ['TEXT', 'PLAIN', ['CHARSET', 'us-ascii'], null, null, '7BIT', 0, 0];
}

// RFC 2231 §4 attribute-char: what may stay unescaped in an extended parameter value.
const ATTRIBUTE_CHAR = /[A-Za-z0-9!#$&+\-.^_`|~]/;

function rfc2231(value: string): string {
  let out = "utf-8''";
  for (const byte of Buffer.from(value, 'utf8')) {
    const ch = String.fromCharCode(byte);
    out += byte < 0x80 && ATTRIBUTE_CHAR.test(ch) ? ch : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

// 7-bit text: what any client may receive in a string (RFC 3501 §9: a quoted string is 7-bit; a
// UTF-8 string needs UTF8=ACCEPT, RFC 9051 §6.3.1).
const ASCII_ONLY = /^[\x00-\x7f]*$/;

/** body-fld-param (RFC 9051 §9): ("NAME" "value" ...) or NIL. */
function paramsValue(params: Params, utf8: boolean): ImapValue {
  if (params.length === 0) return null;
  const out: ImapValue[] = [];
  for (const [name, value] of params) {
    if (!utf8 && !ASCII_ONLY.test(value)) {
      out.push(`${name.toUpperCase()}*`, rfc2231(value));
    } else {
      out.push(name.toUpperCase(), value);
    }
  }
  return out;
}

function dispositionValue(part: MimePart, utf8: boolean): ImapValue {
  // RFC 9051 §9 body-fld-dsp = "(" string SP body-fld-param ")" / nil
  if (part.disposition === null) return null;
  return [part.disposition.type.toUpperCase(), paramsValue(part.disposition.params, utf8)];
}

function languageValue(part: MimePart): ImapValue {
  // RFC 9051 §9 body-fld-lang = nstring / "(" string *(SP string) ")"
  if (part.language === null || part.language.length === 0) return null;
  if (part.language.length === 1) return part.language[0] ?? null;
  return [...part.language];
}

function isEncapsulated(part: MimePart, rev2: boolean): boolean {
  if (part.type !== 'message') return false;
  // RFC 9051 §9 media-message: "MESSAGE" SP ("RFC822" / "GLOBAL"); RFC 3501 §9: "RFC822" only.
  return part.subtype === 'rfc822' || (rev2 && part.subtype === 'global');
}

/**
 * BODY (extensible = false) or BODYSTRUCTURE (extensible = true) of a part, RFC 9051 §7.5.2.
 * For a whole message pass ParsedMessage.root.
 */
export function bodyStructureValue(part: MimePart, extensible: boolean, opts: BodyStructureOptions = {}): ImapValue {
  const rev2 = opts.rev2 ?? false;
  const utf8 = opts.utf8 ?? false;

  if (part.type === 'multipart') {
    // RFC 9051 §9 body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart]
    const children: ImapValue[] =
      part.parts.length > 0 ? part.parts.map((p) => bodyStructureValue(p, extensible, opts)) : [emptyTextPart()];
    const out: ImapValue[] = [{ concat: children }, part.subtype.toUpperCase()];
    if (extensible) {
      // body-ext-mpart = body-fld-param [SP body-fld-dsp [SP body-fld-lang [SP body-fld-loc]]]
      out.push(paramsValue(part.params, utf8), dispositionValue(part, utf8), languageValue(part), part.location);
    }
    return out;
  }

  const isText = part.type === 'text';
  let params = paramsValue(part.params, utf8);
  if (params === null && isText) params = ['CHARSET', 'us-ascii']; // RFC 2045 §5.2 default
  // body-fields = body-fld-param SP body-fld-id SP body-fld-desc SP body-fld-enc SP body-fld-octets
  const out: ImapValue[] = [
    part.type.toUpperCase(),
    part.subtype.toUpperCase(),
    params,
    part.id,
    part.description,
    (part.encoding ?? '7bit').toUpperCase(), // RFC 2045 §6.1: absent means 7bit
    Math.max(0, part.bodyEnd - part.bodyStart),
  ];
  if (isEncapsulated(part, rev2)) {
    // body-type-msg = media-message SP body-fields SP envelope SP body SP body-fld-lines
    if (part.message !== null) {
      out.push(envelopeValue(part.message.envelope), bodyStructureValue(part.message.root, extensible, opts));
    } else {
      out.push(envelopeValue(EMPTY_ENVELOPE), emptyTextPart());
    }
    out.push(part.lines);
  } else if (isText) {
    // body-type-text = media-text SP body-fields SP body-fld-lines
    out.push(part.lines);
  }
  if (extensible) {
    // body-ext-1part = body-fld-md5 [SP body-fld-dsp [SP body-fld-lang [SP body-fld-loc]]]
    out.push(part.md5, dispositionValue(part, utf8), languageValue(part), part.location);
  }
  return out;
}
