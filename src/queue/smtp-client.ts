/**
 * One outbound SMTP session on nodemailer's client, as promises, with the TLS policy of the
 * delivery: opportunistic STARTTLS (RFC 3207, RFC 7435), or validated TLS required (MTA-STS
 * enforce, REQUIRETLS, a smarthost that asks for it).
 */
import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';

/**
 * Bounds on what a remote server can make us hold or wait for (DESIGN.md invariant 4 applies to
 * the servers we connect to as much as to clients).
 */
export const CLIENT_LIMITS = {
  /** Bytes of replies buffered without a line end: RFC 5321 §4.5.3.1.5 allows 512 per line;
   * a server that sends endless text without CRLF is cut off here. */
  maxPartialReply: 64 * 1024,
  /** Bytes of replies per session: dozens of transactions need a few KiB. */
  maxReplyBytes: 1024 * 1024,
  /** Wall-clock bound on one operation (connect+EHLO+STARTTLS, AUTH, or one transaction): a
   * server trickling a byte now and then defeats the inactivity timeout, not this. The sum of
   * RFC 5321 §4.5.3.2 client timeouts is about 25 minutes. */
  operationMs: 30 * 60_000,
} as const;

/** One recipient's DSN requests: NOTIFY ([] for NEVER; null: none given) and ORCPT as kept
 * ("type;address", decoded). */
export interface RcptDsn {
  notify: readonly string[] | null;
  orcpt: string | null;
}

/** RFC 3461 §4: xtext, for ORCPT's address (anything outside 33-126, "+" and "=" as +HH). */
export function xtext(value: string): string {
  let out = '';
  for (const b of Buffer.from(value, 'utf8')) out += b < 33 || b > 126 || b === 0x2b || b === 0x3d ? `+${b.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(b);
  return out;
}

function rcptDsnParams(d: RcptDsn | undefined): string {
  if (!d) return '';
  let out = '';
  if (d.notify !== null) out += ` NOTIFY=${d.notify.length === 0 ? 'NEVER' : d.notify.join(',')}`;
  const semi = d.orcpt?.indexOf(';') ?? -1;
  if (d.orcpt && semi > 0) out += ` ORCPT=${d.orcpt.slice(0, semi)};${xtext(d.orcpt.slice(semi + 1))}`;
  return out;
}

export type TlsMode =
  /** STARTTLS whenever offered, certificate not checked (RFC 7435: better than plain text). */
  | 'opportunistic'
  /** STARTTLS must succeed with a certificate valid for the server name (RFC 8461 §4.2). */
  | 'verified'
  /** TLS from the first byte (a smarthost on 465). */
  | 'implicit'
  /** No STARTTLS: the retry after an opportunistic handshake failed (RFC 7435 §3). */
  | 'plain';

export interface SessionOptions {
  /** Address to connect to. */
  address: string;
  port: number;
  /** Host name for SNI and certificate checks. */
  servername: string;
  /** Our name in EHLO. */
  ehloName: string;
  localAddress?: string;
  tls: TlsMode;
  /** Extra TLS options (a CA to trust in tests). */
  tlsOptions?: ConnectionOptions;
  auth?: { user: string; pass: string };
  connectTimeoutMs?: number;
  socketTimeoutMs?: number;
  /** Overrides of CLIENT_LIMITS (tests). */
  limits?: { maxReplyBytes?: number; operationMs?: number };
}

export interface RecipientRefusal {
  address: string;
  code: number | null;
  reply: string;
}

export interface SendResult {
  accepted: string[];
  refused: RecipientRefusal[];
  /** The remote's reply to the end of DATA. */
  reply: string;
}

/** A failure of the session or of a whole transaction. */
export class SmtpFailure extends Error {
  /** The remote's reply code, when it answered; null for network and TLS errors. */
  readonly code: number | null;
  readonly reply: string | null;
  readonly stage: string;
  readonly tlsFailure: boolean;
  /** Whether the connection can carry another transaction. */
  readonly usable: boolean;
  readonly refused: RecipientRefusal[];
  constructor(message: string, f: { code: number | null; reply: string | null; stage: string; tlsFailure?: boolean; usable?: boolean; refused?: RecipientRefusal[] }) {
    super(message);
    this.name = 'SmtpFailure';
    this.code = f.code;
    this.reply = f.reply;
    this.stage = f.stage;
    this.tlsFailure = f.tlsFailure ?? false;
    this.usable = f.usable ?? false;
    this.refused = f.refused ?? [];
  }
}

interface ClientInternals {
  _ehloLines?: string[];
  _sendCommand(str: string, logStr?: string): void;
}

type NodemailerError = SMTPConnection.SMTPError & { rejectedErrors?: Array<SMTPConnection.SMTPError & { recipient?: string }> };

function refusalOf(e: SMTPConnection.SMTPError & { recipient?: string }): RecipientRefusal {
  return { address: e.recipient ?? '', code: typeof e.responseCode === 'number' ? e.responseCode : null, reply: e.response ?? e.message };
}

function toFailure(err: NodemailerError, usable: boolean): SmtpFailure {
  const code = typeof err.responseCode === 'number' ? err.responseCode : null;
  const tls = err.code === 'ETLS' || /certificate|self[- ]signed|TLS|SSL/i.test(err.message);
  return new SmtpFailure(err.message, {
    code,
    reply: err.response ?? null,
    stage: err.command ?? 'CONN',
    tlsFailure: tls && code === null,
    usable: usable && code !== null && code !== 421,
    refused: (err.rejectedErrors ?? []).map(refusalOf),
  });
}

export interface SmtpSession {
  readonly secure: boolean;
  /** Extension keywords from EHLO (after STARTTLS), uppercase. */
  readonly extensions: readonly string[];
  readonly open: boolean;
  /** `dsn`: RET and ENVID for the MAIL command; `rcptDsn`: each recipient's NOTIFY and ORCPT
   * (RFC 3461 §4.1-4.2), on its RCPT command when the server offers DSN. */
  send(
    envelope: { from: string; to: string[]; size: number; eightBit: boolean; requireTls: boolean; dsn?: SMTPConnection.DSNOptions; rcptDsn?: ReadonlyMap<string, RcptDsn> },
    body: Buffer,
  ): Promise<SendResult>;
  /** RSET after a failed transaction, so the connection can carry the next one. */
  reset(): Promise<void>;
  /** Sends QUIT; resolves once the socket is closed (at most a few seconds later), so a
   * connection limit counts connections that are still closing. */
  quit(): Promise<void>;
}

export async function openSession(o: SessionOptions): Promise<SmtpSession> {
  // RFC 6066 §3: SNI carries host names only; an address literal has none.
  const servername = isIP(o.servername) ? undefined : o.servername;
  const conn = new SMTPConnection({
    host: o.address,
    port: o.port,
    secure: o.tls === 'implicit',
    requireTLS: o.tls === 'verified',
    ignoreTLS: o.tls === 'plain',
    opportunisticTLS: o.tls === 'opportunistic',
    name: o.ehloName,
    localAddress: o.localAddress,
    connectionTimeout: o.connectTimeoutMs ?? 30_000,
    greetingTimeout: o.connectTimeoutMs ?? 30_000,
    // RFC 5321 §4.5.3.2: the client waits minutes for replies (5 for MAIL/RCPT, 10 for DATA end).
    socketTimeout: o.socketTimeoutMs ?? 5 * 60_000,
    tls: {
      ...(servername ? { servername } : {}),
      rejectUnauthorized: o.tls !== 'opportunistic',
      minVersion: 'TLSv1.2',
      ...o.tlsOptions,
    },
    logger: false,
  });
  let closed = false;
  let failPending: ((err: NodemailerError) => void) | null = null;
  let lastError: NodemailerError | null = null;
  conn.on('error', (err: NodemailerError) => {
    lastError = err;
    closed = true;
    failPending?.(err);
  });
  conn.on('end', () => {
    closed = true;
    failPending?.(lastError ?? Object.assign(new Error('Connection closed unexpectedly'), { code: 'ECONNECTION' }));
  });

  // Every byte from the server passes here (nodemailer reads through this method, also after
  // STARTTLS): the reply budget is enforced before nodemailer buffers anything.
  const client = conn as unknown as { _onData(chunk: Buffer): void; _remainder?: string };
  const parse = client._onData.bind(conn);
  let replyBytes = 0;
  client._onData = (chunk: Buffer) => {
    replyBytes += chunk.length;
    const partial = (client._remainder?.length ?? 0) + chunk.length;
    if (replyBytes > (o.limits?.maxReplyBytes ?? CLIENT_LIMITS.maxReplyBytes) || partial > CLIENT_LIMITS.maxPartialReply) {
      abort(`Server replies over the limit (${replyBytes} bytes, ${partial} without a line end)`);
      return;
    }
    parse(chunk);
  };
  const abort = (message: string) => {
    const err = Object.assign(new Error(message), { code: 'ELIMIT' }) as NodemailerError;
    lastError = err;
    closed = true;
    failPending?.(err);
    conn.close();
  };

  const run = <T>(start: (done: (err: NodemailerError | null | undefined, value?: T) => void) => void): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      let settled = false;
      const deadline = setTimeout(() => abort('Operation timed out'), o.limits?.operationMs ?? CLIENT_LIMITS.operationMs);
      const finish = (err: NodemailerError | null | undefined, value?: T) => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        failPending = null;
        if (err) reject(err);
        else resolve(value as T);
      };
      failPending = (err) => finish(err);
      if (closed) {
        finish(lastError ?? Object.assign(new Error('Connection closed'), { code: 'ECONNECTION' }));
        return;
      }
      start(finish);
    });

  try {
    await run<void>((done) => conn.connect((err) => done(err)));
    // nodemailer leaves Nagle's algorithm on, and writes a message in several writes: the last
    // (the end of data) then waited for the server's delayed ACK, 40 ms a message (measured on
    // loopback against Facteur's MX: 3 KB messages 53 ms each, 9 ms without). Set on the socket
    // under TLS too: the option is the TCP connection's.
    (conn as unknown as { _socket?: { setNoDelay?: (on: boolean) => unknown } })._socket?.setNoDelay?.(true);
    if (o.auth) await run<void>((done) => conn.login({ user: o.auth!.user, pass: o.auth!.pass }, (err) => done(err)));
  } catch (err) {
    conn.close();
    throw toFailure(err as NodemailerError, false);
  }

  const internals = conn as unknown as ClientInternals;
  const baseSend = internals._sendCommand.bind(conn);
  const extensions = (internals._ehloLines ?? []).map((l) => l.split(' ')[0]!.toUpperCase());

  return {
    get secure() {
      return conn.secure;
    },
    extensions,
    get open() {
      return !closed;
    },
    async send(envelope, body) {
      // nodemailer has no parameter for REQUIRETLS (RFC 8689 §4.2.1: on MAIL FROM) and one
      // NOTIFY and ORCPT for all recipients, so this connection's command writer adds them to
      // the MAIL line and to each RCPT line of this transaction.
      const rcptDsn = extensions.includes('DSN') ? envelope.rcptDsn : undefined;
      internals._sendCommand =
        envelope.requireTls || (rcptDsn && rcptDsn.size > 0)
          ? (str: string, logStr?: string) => {
              if (envelope.requireTls && /^MAIL FROM:/i.test(str)) return baseSend(`${str} REQUIRETLS`, logStr);
              const rcpt = rcptDsn && /^RCPT TO:<([^>]*)>$/i.exec(str);
              const params = rcpt ? rcptDsnParams(rcptDsn.get(rcpt[1]!)) : '';
              return baseSend(params ? `${str}${params}` : str, logStr && params ? `${logStr}${params}` : logStr);
            }
          : baseSend;
      try {
        const info = await run<SMTPConnection.SentMessageInfo>((done) =>
          conn.send(
            { from: envelope.from, to: envelope.to, size: envelope.size, use8BitMime: envelope.eightBit, dsn: envelope.dsn },
            body,
            (err, value) => done(err, value),
          ),
        );
        return {
          accepted: info.accepted,
          refused: (info.rejectedErrors ?? []).map((e) => refusalOf(e as SMTPConnection.SMTPError & { recipient?: string })),
          reply: info.response,
        };
      } catch (err) {
        throw toFailure(err as NodemailerError, !closed);
      }
    },
    async reset() {
      await run<void>((done) => conn.reset((err) => done(err)));
    },
    quit() {
      const socket = (conn as unknown as { _socket?: { destroyed: boolean; once(e: 'close', f: () => void): void; destroy(): void } })._socket;
      const gone = new Promise<void>((resolve) => {
        if (!socket || socket.destroyed) return resolve();
        const cap = setTimeout(() => {
          socket.destroy();
          resolve();
        }, 3000);
        socket.once('close', () => {
          clearTimeout(cap);
          resolve();
        });
      });
      if (!closed) conn.quit();
      else conn.close();
      closed = true;
      return gone;
    },
  };
}
