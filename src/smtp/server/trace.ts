/**
 * Trace fields added at delivery: Return-Path and Received (RFC 5321 §4.4, RFC 5322 §3.6.7),
 * with the protocol keywords of RFC 3848 / RFC 6531 §3.7.3. Every value placed in a field was
 * validated by the command parser (domains, address literals, mailboxes), and TLS names come
 * from node:tls; nothing else from the client is written.
 */
import { domainToASCII } from 'node:url';
import type { SessionInfo, Transaction } from './policy.js';

/** RFC 3848 "with" keyword: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA, LMTP..., UTF8 variants
 * (RFC 6531 §3.7.3). */
export function withProtocol(session: SessionInfo, smtputf8: boolean): string {
  if (session.mode === 'lmtp') return `LMTP${session.tls ? 'S' : ''}${session.account ? 'A' : ''}`;
  if (!session.esmtp) return 'SMTP';
  const suffix = `${session.tls ? 'S' : ''}${session.account ? 'A' : ''}`;
  return smtputf8 ? `UTF8SMTP${suffix}` : `ESMTP${suffix}`;
}

/** RFC 5322 §3.3 date-time, e.g. "Fri, 27 Nov 2026 10:00:00 +0000". */
export function rfc5322Date(d: Date): string {
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const p = (n: number) => String(n).padStart(2, '0');
  return `${days[d.getUTCDay()]}, ${d.getUTCDate()} ${months[d.getUTCMonth()]} ${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}

function ipLiteral(ip: string): string {
  const v4 = ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
  return v4.includes(':') ? `[IPv6:${v4}]` : `[${v4}]`;
}

/**
 * RFC 5321 §4.4 time-stamp line:
 *   Received: from HELO (IP-LITERAL) by HOSTNAME with PROTOCOL id ID (TLS) for <RCPT>; DATE
 * "for" only with a single recipient, so a message to several people does not reveal the others.
 */
export function receivedField(options: {
  session: SessionInfo;
  tx: Transaction;
  hostname: string;
  messageId: string;
  protocol: string;
  date: Date;
}): string {
  const { session, tx, hostname, messageId, protocol, date } = options;
  const lines: string[] = [];
  // A message without SMTPUTF8 gets an ASCII header: an IDN greeting goes in as A-labels.
  const helo = session.helo === null ? 'unknown' : tx.params.smtputf8 ? session.helo : asciiDomain(session.helo);
  lines.push(`Received: from ${helo} (${ipLiteral(session.remoteAddress)})`);
  let by = `\tby ${hostname} (Facteur) with ${protocol} id ${messageId}`;
  if (session.tls) by += `\r\n\t(version=${session.tls.version} cipher=${session.tls.cipher})`;
  lines.push(by);
  const only = tx.recipients.length === 1 ? tx.recipients[0] : undefined;
  lines.push(`${only ? `\tfor <${only.address}>` : '\t'}; ${rfc5322Date(date)}`);
  return `${lines.join('\r\n')}\r\n`;
}

/** A domain (or address literal) the parser accepted, with its U-labels as A-labels. */
function asciiDomain(d: string): string {
  return /^[\x00-\x7f]*$/.test(d) ? d : domainToASCII(d) || 'unknown';
}

/** RFC 5321 §4.4: the final delivery adds Return-Path with the reverse-path ("<>" when null). */
export function returnPathField(tx: Transaction): string {
  return `Return-Path: <${tx.from ? tx.from.address : ''}>\r\n`;
}
