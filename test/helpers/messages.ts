/**
 * Builds well-formed test messages (CRLF line ends, RFC 5322 + MIME) for every area's tests.
 *
 *   makeMessage({ from: 'a@example.com', to: 'b@example.org', subject: 'Hi', body: 'Hello' })
 *
 * Non-ASCII subjects and display names become RFC 2047 encoded words; a non-ASCII body is sent as
 * 8bit UTF-8; attachments make a multipart/mixed with base64 parts. Nothing random unless
 * messageId is left out (then a fresh unique id is made).
 */
import { randomUUID } from 'node:crypto';
import libmime from 'libmime';

export interface TestAttachment {
  filename: string;
  content: Buffer | string;
  contentType?: string;
  /** Content-Disposition type; 'attachment' by default. */
  disposition?: 'attachment' | 'inline';
  contentId?: string;
}

export interface TestMessageOptions {
  from: string;
  to: string | string[];
  subject: string;
  body: string;
  cc?: string | string[];
  attachments?: TestAttachment[];
  /** A Date, or a raw Date header value. Default: Mon, 01 Jan 2024 10:00:00 +0000. */
  date?: Date | string;
  /** With or without angle brackets. Default: a fresh unique id. */
  messageId?: string;
  /** Extra header fields, written after the standard ones, in order. */
  headers?: Record<string, string> | Array<[string, string]>;
  /** text/html instead of text/plain for the body. */
  html?: boolean;
}

const ASCII = /^[\x00-\x7f]*$/;

function encodeText(value: string): string {
  return ASCII.test(value) ? value : libmime.encodeWords(value, 'B', 0, 'UTF-8');
}

function encodeAddressList(value: string | string[]): string {
  const list = Array.isArray(value) ? value : [value];
  return list
    .map((a) => {
      const m = /^\s*(.*?)\s*<([^>]*)>\s*$/.exec(a);
      if (m === null || m[1] === '') return a;
      const name = m[1]!.replace(/^"|"$/g, '');
      const shown = ASCII.test(name) ? `"${name.replace(/(["\\])/g, '\\$1')}"` : encodeText(name);
      return `${shown} <${m[2]}>`;
    })
    .join(', ');
}

function crlf(text: string): string {
  return text.replace(/\r\n|\r|\n/g, '\r\n');
}

function base64Lines(data: Buffer): string {
  const b64 = data.toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 76) lines.push(b64.slice(i, i + 76));
  return lines.join('\r\n');
}

/** The RFC 5322 §3.3 form of a Date, in UTC. */
export function formatDate(d: Date): string {
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${days[d.getUTCDay()]}, ${p(d.getUTCDate())} ${months[d.getUTCMonth()]} ${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}

export function makeMessage(opts: TestMessageOptions): Buffer {
  const date = opts.date === undefined ? 'Mon, 01 Jan 2024 10:00:00 +0000' : typeof opts.date === 'string' ? opts.date : formatDate(opts.date);
  const rawId = opts.messageId ?? `${randomUUID()}@test.invalid`;
  const messageId = rawId.startsWith('<') ? rawId : `<${rawId}>`;
  const head: string[] = [
    `From: ${encodeAddressList(opts.from)}`,
    `To: ${encodeAddressList(opts.to)}`,
  ];
  if (opts.cc !== undefined) head.push(`Cc: ${encodeAddressList(opts.cc)}`);
  head.push(`Subject: ${encodeText(opts.subject)}`, `Date: ${date}`, `Message-ID: ${messageId}`, 'MIME-Version: 1.0');
  const extra = opts.headers === undefined ? [] : Array.isArray(opts.headers) ? opts.headers : Object.entries(opts.headers);
  for (const [k, v] of extra) head.push(`${k}: ${v}`);

  const bodyType = `${opts.html === true ? 'text/html' : 'text/plain'}; charset=utf-8`;
  const bodyCte = ASCII.test(opts.body) ? '7bit' : '8bit';
  const bodyText = crlf(opts.body);

  const attachments = opts.attachments ?? [];
  if (attachments.length === 0) {
    head.push(`Content-Type: ${bodyType}`, `Content-Transfer-Encoding: ${bodyCte}`);
    return Buffer.from(`${head.join('\r\n')}\r\n\r\n${bodyText}`, 'utf8');
  }

  const boundary = `=_facteur_${randomUUID().replace(/-/g, '')}`;
  head.push(`Content-Type: multipart/mixed; boundary="${boundary}"`);
  const chunks: string[] = [
    `${head.join('\r\n')}\r\n\r\nThis is a multi-part message in MIME format.\r\n`,
    `--${boundary}\r\nContent-Type: ${bodyType}\r\nContent-Transfer-Encoding: ${bodyCte}\r\n\r\n${bodyText}\r\n`,
  ];
  for (const a of attachments) {
    const data = typeof a.content === 'string' ? Buffer.from(a.content, 'utf8') : a.content;
    const type = a.contentType ?? 'application/octet-stream';
    const nameParams = libmime.buildHeaderParam('filename', a.filename, 50);
    // RFC 2231 sections ("name*0*") are written as they come; plain values are quoted unless tokens.
    const param = (p: { key: string; value: string }): string =>
      p.key.endsWith('*') || /^[\w.-]+$/.test(p.value) ? `${p.key}=${p.value}` : `${p.key}="${p.value.replace(/(["\\])/g, '\\$1')}"`;
    const disp = [a.disposition ?? 'attachment', ...nameParams.map(param)].join(';\r\n ');
    const lines = [`--${boundary}`, `Content-Type: ${type}`, 'Content-Transfer-Encoding: base64', `Content-Disposition: ${disp}`];
    if (a.contentId !== undefined) lines.push(`Content-ID: <${a.contentId.replace(/^<|>$/g, '')}>`);
    chunks.push(`${lines.join('\r\n')}\r\n\r\n${base64Lines(data)}\r\n`);
  }
  chunks.push(`--${boundary}--\r\n`);
  return Buffer.from(chunks.join(''), 'utf8');
}
