/**
 * Header work on mail submitted by our own users (RFC 6409 §8), over the raw bytes: the author
 * fields the submission policy checks, and the fix-ups made before the message is routed.
 *
 * Invariants:
 * - Pure: bytes in, bytes out; the clock and the id generator are parameters.
 * - Only whole header fields are removed or added; every other byte of the message is kept as it
 *   is (no refolding, no reordering), so what the user wrote is what leaves.
 * - Added fields go at the end of the header, before the blank line; a message whose first line
 *   is not a field has no header (see scanHeader), so the added fields and a blank line go first.
 */
import { randomBytes } from 'node:crypto';
import { decodeAddressList } from './address.js';
import { fieldValue, scanHeader } from './headers.js';

export interface HeaderAuthors {
  /** Number of From fields (RFC 5322 §3.6: exactly one). */
  fromFields: number;
  /** Addresses of every From field, as written ('' for an entry without an address). */
  from: string[];
  /** Number of Sender fields (RFC 5322 §3.6: at most one). */
  senderFields: number;
  /** Addresses of every Sender field. */
  sender: string[];
}

/** The author fields of a message (RFC 5322 §3.6.2): From and Sender, with their addresses. */
export function headerAuthors(raw: Buffer): HeaderAuthors {
  const out: HeaderAuthors = { fromFields: 0, from: [], senderFields: 0, sender: [] };
  for (const f of scanHeader(raw).fields) {
    if (f.name !== 'from' && f.name !== 'sender') continue;
    const addresses = decodeAddressList(fieldValue(raw, f)).map((a) => a.address);
    if (f.name === 'from') {
      out.fromFields++;
      out.from.push(...addresses);
    } else {
      out.senderFields++;
      out.sender.push(...addresses);
    }
  }
  return out;
}

export interface PrepareOptions {
  /** Right-hand side of an added Message-ID (this server's host name). */
  hostname: string;
  /** Value of an added Date field. */
  now: Date;
  /** Left-hand side of an added Message-ID; random by default. */
  idLeft?: () => string;
}

/**
 * Header fields a submission server removes: Bcc (RFC 5322 §3.6.3: its recipients must not be
 * revealed to the others) and Resent-Bcc (§3.6.6: the same for a resent message).
 */
const REMOVED = new Set(['bcc', 'resent-bcc']);

/**
 * The message as it leaves the submission server: Bcc fields removed, with their continuation
 * lines; Date (RFC 6409 §8.2) and Message-ID (§8.3) added when missing (RFC 5322 §3.6: Date is
 * required, Message-ID should be present).
 */
export function prepareSubmission(raw: Buffer, options: PrepareOptions): Buffer {
  const scan = scanHeader(raw);
  const chunks: Buffer[] = [];
  let pos = 0;
  let hasDate = false;
  let hasMessageId = false;
  for (const f of scan.fields) {
    if (f.name === 'date') hasDate = true;
    else if (f.name === 'message-id') hasMessageId = true;
    else if (REMOVED.has(f.name)) {
      chunks.push(raw.subarray(pos, f.start));
      pos = f.end;
    }
  }
  const added: string[] = [];
  if (!hasDate) added.push(`Date: ${rfc5322DateTime(options.now)}\r\n`);
  if (!hasMessageId) added.push(`Message-ID: <${(options.idLeft ?? randomIdLeft)()}@${options.hostname}>\r\n`);
  if (added.length === 0) {
    if (pos === 0) return raw;
    chunks.push(raw.subarray(pos));
    return Buffer.concat(chunks);
  }
  if (scan.noHeader) return Buffer.concat([Buffer.from(`${added.join('')}\r\n`, 'latin1'), raw]);
  chunks.push(raw.subarray(pos, scan.headerEnd));
  const head = Buffer.concat(chunks);
  // A header that runs to the end of a message without a final line end: end its last line.
  if (head.length > 0 && head[head.length - 1] !== 0x0a) added.unshift('\r\n');
  return Buffer.concat([head, Buffer.from(added.join(''), 'latin1'), raw.subarray(scan.headerEnd)]);
}

function randomIdLeft(): string {
  return randomBytes(12).toString('hex');
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** RFC 5322 §3.3 date-time in UTC, e.g. "Fri, 27 Nov 2026 10:00:00 +0000". */
export function rfc5322DateTime(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${DAYS[d.getUTCDay()]}, ${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}
