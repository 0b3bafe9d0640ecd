/**
 * Test helper: builds a raw MIME message and its parse record together, from a description, so
 * that offsets are known by construction (an oracle independent of the ingest parser).
 * Lines end with CRLF; a leaf body is written exactly as given.
 */
import type { Envelope, MimePart, ParsedMessage, Params } from '../../src/mail/types.js';

export interface Spec {
  /** Raw header lines, without line ends. */
  header: string[];
  type?: string;
  subtype?: string;
  params?: Params;
  encoding?: string | null;
  id?: string | null;
  disposition?: MimePart['disposition'];
  /** A leaf's body, written as is. */
  body?: string;
  multipart?: { boundary: string; preamble?: string; parts: Spec[]; epilogue?: string };
  /** The message inside a message/rfc822 part. */
  message?: Spec;
  envelope?: Partial<Envelope>;
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

function countLines(buf: Buffer): number {
  if (buf.length === 0) return 0;
  let n = 0;
  for (const b of buf) if (b === 0x0a) n++;
  return buf[buf.length - 1] === 0x0a ? n : n + 1;
}

export function buildMessage(spec: Spec, extra: Partial<ParsedMessage> = {}): { raw: Buffer; parsed: ParsedMessage } {
  const chunks: Buffer[] = [];
  let pos = 0;
  const write = (s: string): void => {
    const b = Buffer.from(s, 'utf8');
    chunks.push(b);
    pos += b.length;
  };
  const emit = (s: Spec): MimePart => {
    const headerStart = pos;
    for (const line of s.header) write(`${line}\r\n`);
    write('\r\n');
    const bodyStart = pos;
    const type = s.type ?? (s.multipart ? 'multipart' : s.message ? 'message' : 'text');
    const subtype = s.subtype ?? (s.multipart ? 'mixed' : s.message ? 'rfc822' : 'plain');
    const parts: MimePart[] = [];
    let message: MimePart['message'] = null;
    if (s.multipart) {
      const m = s.multipart;
      if (m.preamble !== undefined) write(`${m.preamble}\r\n`);
      for (const p of m.parts) {
        write(`--${m.boundary}\r\n`);
        parts.push(emit(p));
        write('\r\n');
      }
      write(`--${m.boundary}--`);
      if (m.epilogue !== undefined) write(`\r\n${m.epilogue}`);
    } else if (s.message) {
      const root = emit(s.message);
      message = { envelope: { ...EMPTY_ENVELOPE, ...s.message.envelope }, root };
    } else {
      write(s.body ?? '');
    }
    const bodyEnd = pos;
    const body = Buffer.concat(chunks).subarray(bodyStart, bodyEnd);
    return {
      headerStart,
      bodyStart,
      bodyEnd,
      type,
      subtype,
      params: s.params ?? (type === 'text' ? [['charset', 'us-ascii']] : []),
      id: s.id ?? null,
      description: null,
      encoding: s.encoding ?? null,
      md5: null,
      disposition: s.disposition ?? null,
      language: null,
      location: null,
      lines: countLines(body),
      parts,
      message,
    };
  };
  const root = emit(spec);
  const raw = Buffer.concat(chunks);
  const parsed: ParsedMessage = {
    version: 1,
    size: raw.length,
    root,
    envelope: { ...EMPTY_ENVELOPE, ...spec.envelope },
    subject: '',
    from: [],
    to: [],
    cc: [],
    messageId: null,
    inReplyTo: [],
    references: [],
    date: null,
    text: '',
    preview: '',
    hasAttachment: false,
    warnings: [],
    ...extra,
  };
  return { raw, parsed };
}
