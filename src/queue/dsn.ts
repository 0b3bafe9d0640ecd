/**
 * Delivery status notifications (RFC 3464 multipart/report; RFC 3461 for RET/ENVID/ORCPT).
 *
 * Text that came from a remote server (its reply) or from the original envelope is bounded
 * and stripped of control characters before it is written into a header field, so a hostile
 * reply cannot inject fields or break the report's structure.
 */
import { randomBytes } from 'node:crypto';

export interface DsnRecipient {
  address: string;
  orcpt: string | null;
  action: 'failed' | 'delayed' | 'delivered' | 'relayed';
  /** RFC 3463 status, e.g. 5.1.1. */
  status: string;
  remoteMta: string | null;
  /** The remote's reply, as "550 5.1.1 no such user". */
  diagnostic: string | null;
  lastAttempt: number | null;
  willRetryUntil: number | null;
}

export interface DsnInput {
  reportingMta: string;
  /** The original sender, who receives the report. */
  to: string;
  envid: string | null;
  arrivalDate: number;
  recipients: readonly DsnRecipient[];
  original: Buffer;
  /** RFC 3461 §4.3: HDRS returns only the header. */
  ret: 'FULL' | 'HDRS' | null;
  now: number;
  /** Above this size the original's body is left out (headers only). */
  maxReturnedBytes?: number;
}

const MAX_FIELD_TEXT = 512;

/** One line of printable ASCII: remote text is never trusted inside a header field. */
export function cleanText(s: string, max = MAX_FIELD_TEXT): string {
  const flat = s.replace(/[\r\n\t]+/g, ' ').replace(/[^\x20-\x7e]/g, '?').trim();
  return flat.length > max ? flat.slice(0, max) + '...' : flat;
}

function rfc5322Date(ms: number): string {
  return new Date(ms).toUTCString().replace('GMT', '+0000');
}

function headerBlock(message: Buffer): Buffer {
  const end = message.indexOf('\r\n\r\n');
  return end < 0 ? message : message.subarray(0, end + 2);
}

/** RFC 3463 status from a reply: its enhanced code when present, else derived from the basic code. */
export function statusFromReply(reply: string, fallback: string): string {
  const m = /^[245]\d\d[ -]([245])\.(\d{1,3})\.(\d{1,3})\b/.exec(reply);
  if (m) return `${m[1]}.${m[2]}.${m[3]}`;
  const basic = /^([245])\d\d\b/.exec(reply);
  if (basic) return `${basic[1]}.0.0`;
  return fallback;
}

/** Builds the report message (CRLF line ends). */
export function buildDsn(input: DsnInput): Buffer {
  const boundary = `=_dsn_${randomBytes(12).toString('hex')}`;
  const failed = input.recipients.filter((r) => r.action === 'failed');
  const delayed = input.recipients.filter((r) => r.action === 'delayed');
  const subject =
    failed.length > 0 ? 'Undelivered Mail Returned to Sender' : delayed.length > 0 ? 'Delivery Delayed: still trying' : 'Delivery Status Notification';
  const CRLF = '\r\n';
  const lines: string[] = [];
  lines.push(`From: Mail Delivery System <MAILER-DAEMON@${input.reportingMta}>`);
  lines.push(`To: <${cleanText(input.to, 320)}>`);
  lines.push(`Subject: ${subject}`);
  lines.push(`Date: ${rfc5322Date(input.now)}`);
  lines.push(`Message-ID: <${randomBytes(16).toString('hex')}@${input.reportingMta}>`);
  // RFC 3834 §5: a report is an automatic response; nothing should answer it automatically.
  lines.push('Auto-Submitted: auto-replied');
  lines.push('MIME-Version: 1.0');
  lines.push(`Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`);
  lines.push('');
  lines.push('This is a delivery status notification (RFC 3464).');
  lines.push('');

  // Part 1: for people.
  lines.push(`--${boundary}`);
  lines.push('Content-Type: text/plain; charset=us-ascii');
  lines.push('Content-Description: Notification');
  lines.push('');
  lines.push(`This is the mail system at ${input.reportingMta}.`);
  lines.push('');
  if (failed.length > 0) {
    lines.push('Your message could not be delivered to the following recipients:');
  } else if (delayed.length > 0) {
    lines.push('Your message has not been delivered yet to the following recipients.');
    lines.push('Delivery will be retried; you do not need to send it again.');
  } else if (input.recipients.every((r) => r.action === 'relayed')) {
    lines.push('Your message was handed to a server that sends no delivery notifications;');
    lines.push('no further report will come:');
  } else {
    lines.push('Delivery status of your message:');
  }
  lines.push('');
  for (const r of input.recipients) {
    lines.push(`  <${cleanText(r.address, 320)}>: ${r.diagnostic ? cleanText(r.diagnostic) : r.status}`);
  }
  lines.push('');

  // Part 2: RFC 3464 §2.2 per-message fields, then §2.3 per-recipient field groups.
  lines.push(`--${boundary}`);
  lines.push('Content-Type: message/delivery-status');
  lines.push('Content-Description: Delivery report');
  lines.push('');
  lines.push(`Reporting-MTA: dns; ${input.reportingMta}`);
  if (input.envid) lines.push(`Original-Envelope-Id: ${cleanText(input.envid, 100)}`);
  lines.push(`Arrival-Date: ${rfc5322Date(input.arrivalDate)}`);
  for (const r of input.recipients) {
    lines.push('');
    if (r.orcpt) lines.push(`Original-Recipient: ${cleanText(r.orcpt, 320)}`);
    lines.push(`Final-Recipient: rfc822; ${cleanText(r.address, 320)}`);
    lines.push(`Action: ${r.action}`);
    lines.push(`Status: ${r.status}`);
    if (r.remoteMta) lines.push(`Remote-MTA: dns; ${cleanText(r.remoteMta, 255)}`);
    if (r.diagnostic) lines.push(`Diagnostic-Code: smtp; ${cleanText(r.diagnostic)}`);
    if (r.lastAttempt !== null) lines.push(`Last-Attempt-Date: ${rfc5322Date(r.lastAttempt)}`);
    if (r.willRetryUntil !== null) lines.push(`Will-Retry-Until: ${rfc5322Date(r.willRetryUntil)}`);
  }
  lines.push('');

  // Part 3: the original, whole or its header (RFC 3462 text/rfc822-headers).
  const maxBytes = input.maxReturnedBytes ?? 1024 * 1024;
  const full = input.ret !== 'HDRS' && input.original.length <= maxBytes;
  lines.push(`--${boundary}`);
  lines.push(full ? 'Content-Type: message/rfc822' : 'Content-Type: text/rfc822-headers');
  const what = failed.length > 0 || delayed.length > 0 ? 'Undelivered message' : 'Message';
  lines.push(`Content-Description: ${what}${full ? '' : ' header'}`);
  lines.push('');
  const head = Buffer.from(lines.join(CRLF) + CRLF, 'latin1');
  const original = full ? input.original : headerBlock(input.original);
  const tail = Buffer.from((original.subarray(-2).equals(Buffer.from(CRLF)) ? '' : CRLF) + `--${boundary}--` + CRLF, 'latin1');
  return Buffer.concat([head, original, tail]);
}
