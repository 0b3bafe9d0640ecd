/**
 * The hooks through which a session asks what to do. The protocol engine (session.ts) checks
 * grammar, state, limits and TLS; it never decides who gets a message. A policy does: inbound
 * (policy-inbound.ts: MX and LMTP) and submission (policy-submission.ts).
 */
import type { DeliveryReport } from '../../delivery/local.js';
import type { AccountId } from '../../lib/brand.js';
import type { Account } from '../../store/types.js';
import type { Mailbox } from '../protocol/address.js';
import type { MailParams, RcptParams } from '../protocol/command.js';
import type { Reply } from '../protocol/reply.js';

export type SmtpMode = 'mx' | 'submission' | 'lmtp';

/** What a policy may know of the session. */
export interface SessionInfo {
  /** Correlation id, also the Received "id" and in every log line. */
  readonly id: string;
  readonly mode: SmtpMode;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  /** EHLO/HELO/LHLO argument (grammatical: a domain or an address literal). */
  readonly helo: string | null;
  readonly esmtp: boolean;
  readonly tls: { version: string; cipher: string } | null;
  readonly account: Account | null;
}

/** A recipient the policy accepted: local accounts it reaches and/or a remote address. */
export interface AcceptedRecipient {
  mailbox: Mailbox;
  /** As the client wrote it (canonical form), for "for <...>" and logs. */
  address: string;
  params: RcptParams;
  /** Local accounts (deduplicated) this recipient reaches; empty for a remote recipient. */
  accounts: AccountId[];
  /** Remote addresses this local recipient's aliases forward to (delivery/local.ts). */
  forwards?: readonly string[];
  /** True when the recipient is not local (submission only: handed to the outbound hook). */
  remote: boolean;
}

export interface Transaction {
  from: Mailbox | null;
  params: MailParams;
  recipients: AcceptedRecipient[];
}

export interface IncomingMessage {
  /** The message as received (dot-unstuffed, line endings normalised to CRLF). */
  raw: Buffer;
  /** 'ESMTP', 'ESMTPS', 'ESMTPSA', 'LMTP', ... (RFC 3848) for the Received header. */
  protocol: string;
  receivedAt: Date;
}

export interface DataOutcome {
  /** One reply per recipient, in order (LMTP, RFC 2033 §4.2). */
  perRecipient: Reply[];
  /** The single reply SMTP gives after the data (RFC 5321 §4.1.1.4). */
  summary: Reply;
}

/** notLocal: refused because the domain is not one of ours (a relay), not for the address. */
export type RcptDecision = { ok: true; recipient: AcceptedRecipient; reply?: Reply } | { ok: false; reply: Reply; notLocal?: boolean };

export interface SmtpPolicy {
  /** After MAIL FROM passed grammar, SIZE and state checks. null accepts with 250. */
  onMailFrom(session: SessionInfo, from: Mailbox | null, params: MailParams): Promise<Reply | null>;
  onRcptTo(session: SessionInfo, tx: Transaction, to: Mailbox, params: RcptParams): Promise<RcptDecision>;
  /** After the end of data; the message is complete and within limits. */
  onData(session: SessionInfo, tx: Transaction, message: IncomingMessage): Promise<DataOutcome>;
  /** When the server closes, after its sessions: saves what the policy keeps (greylisting). */
  close?(): Promise<void>;
}

/** The transaction's DSN requests for `recipients` (delivery/local.ts). */
export function deliveryReport(
  tx: Transaction,
  recipients: readonly AcceptedRecipient[],
  receivedAt: Date,
  acknowledged: boolean,
  /** false: NOTIFY=SUCCESS is not honoured (a sender not verified, see policy-inbound.ts). */
  success = true,
): DeliveryReport {
  return {
    sender: tx.from?.address ?? '',
    envid: tx.params.envid,
    ret: tx.params.ret,
    requireTls: tx.params.requireTls,
    arrivalDate: receivedAt.getTime(),
    acknowledged,
    recipients: recipients.map((r) => ({
      address: r.address,
      notify: success || r.params.notify === null ? r.params.notify : r.params.notify.filter((n) => n !== 'SUCCESS'),
      orcpt: r.params.orcpt ? `${r.params.orcpt.type};${r.params.orcpt.address}` : null,
      accounts: r.accounts,
    })),
  };
}
