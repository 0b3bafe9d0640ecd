/**
 * Automatic replies while an account's owner is away ("vacation", with the semantics of RFC 5230
 * and the rules of RFC 3834 for automatic responses).
 *
 * The settings are a server annotation of the account (RFC 5464), VACATION_ENTRY, holding JSON:
 * `facteur user vacation` writes it, and so can any IMAP client with SETMETADATA; a backup
 * carries it with the other annotations.
 *
 * Invariants:
 * - A reply goes only to a message stored in the INBOX (not Junk), from a sender that is not
 *   null and not a robot (RFC 3834 §2: Auto-Submitted other than "no", list fields, Precedence
 *   bulk/list/junk, MAILER-DAEMON and -request addresses), that names one of the account's
 *   addresses in To or Cc (RFC 5230 §4.5: not one received as Bcc or through a list).
 * - At most one reply per sender per `days` (RFC 5230 §4.1, at least 1): remembered per account
 *   and sender, in the shared counters with PostgreSQL (every node), else in this process's memory
 *   (bounded; a restart may reply once more).
 * - The reply has the null reverse-path and Auto-Submitted: auto-replied (RFC 3834 §3.1.7, §3.3),
 *   so it is never answered or bounced in turn; it is From the account's address, signed like
 *   the account's own mail.
 * - It is sent after the message was stored, and a failure to send it is logged: it never turns
 *   a delivery into a failure.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { AccountId } from '../lib/brand.js';
import { getHeaderValue } from '../mail/headers.js';
import type { ParsedMessage } from '../mail/types.js';
import { rfc5322Date } from '../smtp/server/trace.js';
import type { SharedCounters } from '../store/counters.js';
import type { MailStore } from '../store/types.js';

export const VACATION_ENTRY = '/private/vendor/facteur/vacation';

/** RFC 5230 §4.1: the default and the bounds of the interval between replies to one sender. */
export const VACATION_DAYS_DEFAULT = 7;
const DAYS_MAX = 365;
const DAY_MS = 86_400_000;
/** Settings are read again after this long (a change made elsewhere takes effect within it). */
const SETTINGS_TTL_MS = 5_000;
/** Senders remembered per process without shared counters. */
const MEMORY_MAX = 10_000;
const SUBJECT_MAX = 200;
const TEXT_MAX = 8 * 1024;

export interface VacationSettings {
  /** The reply's Subject; null: "Auto: " and the original subject. */
  subject: string | null;
  text: string;
  days: number;
  /** Replies only from / until these times (epoch ms), when set. */
  start: number | null;
  end: number | null;
}

/** The settings an annotation holds; null when absent or not valid (then no reply). */
export function parseVacation(value: Buffer): VacationSettings | null {
  let v: unknown;
  try {
    v = JSON.parse(value.toString('utf8'));
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  const time = (x: unknown): number | null | undefined => (x === null || x === undefined ? null : typeof x === 'number' && Number.isFinite(x) ? x : undefined);
  const start = time(o.start);
  const end = time(o.end);
  if (typeof o.text !== 'string' || o.text.length === 0 || start === undefined || end === undefined) return null;
  if (o.subject !== null && o.subject !== undefined && typeof o.subject !== 'string') return null;
  const days = o.days === undefined ? VACATION_DAYS_DEFAULT : o.days;
  if (typeof days !== 'number' || !Number.isInteger(days) || days < 1 || days > DAYS_MAX) return null;
  return { subject: typeof o.subject === 'string' && o.subject !== '' ? o.subject : null, text: o.text, days, start, end };
}

/** Checks and encodes settings for the annotation (the CLI's side). */
export function formatVacation(s: VacationSettings): Buffer {
  if (s.text.trim() === '') throw new Error('Cannot set a vacation reply without text');
  if (s.text.length > TEXT_MAX) throw new Error(`Cannot set a vacation reply of more than ${TEXT_MAX} characters`);
  if (s.subject !== null && (s.subject.length > SUBJECT_MAX || /[\r\n]/.test(s.subject))) throw new Error(`Cannot use that subject: one line of at most ${SUBJECT_MAX} characters`);
  if (!Number.isInteger(s.days) || s.days < 1 || s.days > DAYS_MAX) throw new Error(`Cannot reply every ${s.days} days: 1 to ${DAYS_MAX}`);
  if (s.start !== null && s.end !== null && s.end <= s.start) throw new Error('Cannot end a vacation before it starts');
  return Buffer.from(JSON.stringify(s), 'utf8');
}

/** Why a message gets no automatic reply (RFC 3834 §2, RFC 5230 §4.5), or null when it may. */
export function noReplyReason(input: { sender: string; header: Buffer; parsed: ParsedMessage; own: readonly string[] }): string | null {
  const sender = input.sender.toLowerCase();
  if (sender === '') return 'null sender';
  const local = sender.slice(0, sender.lastIndexOf('@'));
  if (/^(mailer-daemon|postmaster|listserv|majordomo|owner-.*|.*-request|.*-owner|.*-bounces?|no-?reply)$/.test(local)) return 'sender is a robot address';
  if (input.own.includes(sender)) return 'sender is the account itself';
  const h = (name: string) => getHeaderValue(input.header, name);
  const auto = h('auto-submitted');
  if (auto !== null && auto.trim().toLowerCase().split(/[\s;(]/)[0] !== 'no') return 'Auto-Submitted';
  if (['list-id', 'list-unsubscribe', 'list-post', 'list-help'].some((n) => h(n) !== null)) return 'mailing list';
  const precedence = h('precedence')?.trim().toLowerCase();
  if (precedence === 'bulk' || precedence === 'list' || precedence === 'junk') return `Precedence: ${precedence}`;
  if (/\b(oof|autoreply|all)\b/i.test(h('x-auto-response-suppress') ?? '')) return 'X-Auto-Response-Suppress';
  const named = [...input.parsed.to, ...input.parsed.cc].map((a) => a.address.toLowerCase());
  if (!named.some((a) => input.own.includes(a))) return 'not addressed to the account in To or Cc';
  return null;
}

/** The reply (RFC 3834 §3): From the account, To the sender, threaded under the original. */
export function buildVacationReply(input: { from: string; to: string; settings: VacationSettings; parsed: ParsedMessage; hostname: string; now: Date }): Buffer {
  const original = input.parsed.subject.replace(/[\r\n]+/g, ' ').trim();
  const subject = input.settings.subject ?? `Auto: ${original || '(no subject)'}`;
  const lines = [
    `From: <${input.from}>`,
    `To: <${input.to}>`,
    `Subject: ${encodeHeader(subject)}`,
    `Date: ${rfc5322Date(input.now)}`,
    `Message-ID: <${randomBytes(16).toString('hex')}@${input.hostname}>`,
  ];
  const id = input.parsed.messageId;
  if (id) {
    lines.push(`In-Reply-To: <${id}>`);
    lines.push(`References: ${[...input.parsed.references.slice(-10), id].map((r) => `<${r}>`).join(' ')}`);
  }
  lines.push('Auto-Submitted: auto-replied (vacation)', 'Precedence: bulk', 'MIME-Version: 1.0', 'Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: base64');
  const body = Buffer.from(input.settings.text.replace(/\r?\n/g, '\r\n'), 'utf8').toString('base64').replace(/.{76}/g, '$&\r\n');
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n${body}\r\n`, 'utf8');
}

/** RFC 2047 B-encoding for a subject outside printable ASCII. */
function encodeHeader(text: string): string {
  if (/^[\x20-\x7e]*$/.test(text)) return text;
  return `=?utf-8?B?${Buffer.from(text, 'utf8').toString('base64')}?=`;
}

export interface VacationResponder {
  /** After a message was stored for `accounts` in `mailbox` (undefined: INBOX). Never throws. */
  afterDelivery(input: { raw: Buffer; parsed: ParsedMessage; sender: string; accounts: readonly AccountId[]; mailbox: string | undefined }): Promise<void>;
}

export function createVacationResponder(options: {
  store: MailStore;
  /** Sends the reply from the null sender to `to` (the INBOX when local, else queued, signed). */
  send: (reply: Buffer, to: string) => Promise<void>;
  hostname: string;
  log: Pick<Logger, 'info' | 'error'>;
  counters?: SharedCounters | null;
  now?: () => number;
}): VacationResponder {
  const now = options.now ?? Date.now;
  const settingsCache = new Map<AccountId, { at: number; settings: VacationSettings | null }>();
  const replied = new Map<string, number>();

  const settingsOf = async (account: AccountId): Promise<VacationSettings | null> => {
    const cached = settingsCache.get(account);
    if (cached && now() - cached.at < SETTINGS_TTL_MS) return cached.settings;
    const entry = (await options.store.getMetadata(account, null)).find((e) => e.name === VACATION_ENTRY);
    const settings = entry ? parseVacation(entry.value) : null;
    if (settingsCache.size >= MEMORY_MAX) settingsCache.clear();
    settingsCache.set(account, { at: now(), settings });
    return settings;
  };

  /** Whether the sender was answered within `days`; records the answer when not. */
  const firstInPeriod = async (account: AccountId, sender: string, days: number): Promise<boolean> => {
    const key = `vacation:${account}:${sender}`;
    const ms = days * DAY_MS;
    if (options.counters) {
      if ((await options.counters.blockedFor(key)) > 0) return false;
      await options.counters.block(key, ms);
      return true;
    }
    const until = replied.get(key);
    if (until !== undefined && until > now()) return false;
    if (replied.size >= MEMORY_MAX) {
      for (const [k, t] of replied) if (t <= now()) replied.delete(k);
      if (replied.size >= MEMORY_MAX) replied.delete(replied.keys().next().value as string);
    }
    replied.set(key, now() + ms);
    return true;
  };

  return {
    async afterDelivery({ raw, parsed, sender, accounts, mailbox }) {
      if (mailbox !== undefined && mailbox !== 'INBOX') return;
      for (const account of new Set(accounts)) {
        try {
          const settings = await settingsOf(account);
          if (!settings) continue;
          const t = now();
          if ((settings.start !== null && t < settings.start) || (settings.end !== null && t >= settings.end)) continue;
          const own = (await options.store.sendableAddresses(account)).map((a) => a.toLowerCase());
          if (own.length === 0) continue;
          const end = raw.indexOf('\r\n\r\n');
          const why = noReplyReason({ sender, header: raw.subarray(0, end < 0 ? raw.length : end + 2), parsed, own });
          if (why !== null) {
            options.log.info({ account, sender, why }, 'no vacation reply');
            continue;
          }
          const to = sender.toLowerCase();
          if (!(await firstInPeriod(account, to, settings.days))) continue;
          await options.send(buildVacationReply({ from: own[0]!, to: sender, settings, parsed, hostname: options.hostname, now: new Date(t) }), sender);
          options.log.info({ account, to: sender }, 'vacation reply sent');
        } catch (err) {
          options.log.error({ err, account, sender }, 'vacation reply could not be sent');
        }
      }
    },
  };
}
