/**
 * One SMTP, submission or LMTP connection.
 *
 * Invariants:
 * - Input is bounded everywhere: command lines (limits.ts), AUTH lines, DATA lines and size, BDAT
 *   chunk sizes, recipients, errors, idle time; pipelined input is held up to INPUT_BUFFER_MAX, then
 *   reading pauses. Replies are written in batches (RFC 2920 §3.1 lets the server buffer replies
 *   while more input is pending) and reading also pauses while the client does not read them.
 * - Commands run one at a time, in order; the state check happens once, in `dispatch`.
 * - Input buffered behind STARTTLS is discarded before the TLS handshake (RFC 3207 §4.2,
 *   CVE-2011-0411), and all session knowledge is forgotten after it.
 * - A command must arrive complete within commandTimeoutMs of the server being ready for it:
 *   bytes trickled without ending a line do not extend that (a slow sender holding a connection
 *   slot forever by sending one byte a minute is dropped with 421, RFC 5321 §4.5.3.2.7).
 * - The message phase (DATA body; BDAT from the first chunk to LAST, commands between chunks
 *   included) keeps a minimum average rate after a grace, within an absolute cap
 *   (net/command-deadline.ts, limits.ts MESSAGE_TIMEOUT_MS_DEFAULT); past it the client gets
 *   421 4.4.2 and is closed, and nothing of the partial message is delivered.
 * - The session decides grammar, sequence, limits and TLS; the policy decides recipients and
 *   delivery. A policy exception becomes 451 4.3.0 with a correlation id, never an internal
 *   message.
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { AuthMeta, ServerContext } from '../../context.js';
import type { Account } from '../../store/types.js';
import type { SaslSession } from '../../sasl/types.js';
import type { Mailbox } from '../protocol/address.js';
import { parseCommand, type MailParams, type RcptParams, type SmtpCommand } from '../protocol/command.js';
import { InputBuffer, MessageReceiver } from '../protocol/data.js';
import { AUTH_LINE_MAX, COMMAND_LINE_EXTENSION_ALLOWANCE, COMMAND_LINE_MAX, INPUT_BUFFER_MAX } from '../protocol/limits.js';
import { CommandDeadline } from '../../net/command-deadline.js';
import { R, formatReply, reply, type Reply } from '../protocol/reply.js';
import type { SessionInfo, SmtpMode, SmtpPolicy, Transaction } from './policy.js';
import { withProtocol } from './trace.js';
import type { RandomHex } from '../../lib/random-hex.js';

/** SASL for submission: which mechanisms to offer, and a session per AUTH command. */
export interface SaslProvider {
  /** The mechanisms to offer; clear-password ones only when `allowPlaintext`. */
  mechanisms(allowPlaintext: boolean): string[];
  create(mechanism: string, meta: AuthMeta, allowPlaintext: boolean): SaslSession | null;
}

export interface SessionLimits {
  maxMessageSize: number;
  maxRecipients: number;
  maxDataLineLength: number;
  maxErrors: number;
  commandTimeoutMs: number;
  /** Inactivity inside DATA/BDAT. */
  dataTimeoutMs: number;
  /** The message phase: time allowed before minDataBytesPerSecond applies... */
  messageGraceMs: number;
  /** ...then at least this many bytes per second on average... */
  minDataBytesPerSecond: number;
  /** ...and never longer than this in all. */
  messageTimeoutMs: number;
}

export interface SessionConfig {
  ctx: ServerContext;
  mode: SmtpMode;
  policy: SmtpPolicy;
  limits: SessionLimits;
  implicitTls: boolean;
  greetingDelayMs: number;
  sasl: SaslProvider | null;
  allowPlaintextAuth: boolean;
  /** Random ids (the session's), shared by the listener's sessions. */
  randomHex: RandomHex;
  /** Counts a command the grammar recognised, by verb (facteur_commands_total). */
  countCommand?: (verb: string) => void;
  onClose(): void;
}

type Mode = 'command' | 'data' | 'bdat' | 'auth' | 'closed';

interface BdatState {
  remaining: number;
  last: boolean;
  /** Set when this chunk (or an earlier one of the transaction) was refused: consume, then say so. */
  error: Reply | null;
}

interface AuthState {
  sasl: SaslSession;
  /** SCRAM final data was sent as a challenge; the next (empty) line completes the exchange. */
  pendingSuccess: Account | null;
}

const EMPTY = Buffer.alloc(0);

export class SmtpSession {
  readonly id: string;
  private socket: Socket;
  private readonly cfg: SessionConfig;
  private readonly input = new InputBuffer();
  private out: string[] = [];
  private mode: Mode = 'command';
  private running = false;
  /** Input arrived while run() was ending: its last step may have looked before it came. */
  private arrivedWhileRunning = false;
  private greeted = false;
  /** Between STARTTLS and the end of the handshake: input waits, nothing is processed. */
  private handshaking = false;
  private closing = false;
  private errors = 0;
  private messageCount = 0;
  private helo: string | null = null;
  private esmtp = false;
  private tls: { version: string; cipher: string } | null = null;
  private account: Account | null = null;
  private tx: Transaction | null = null;
  private receiver: MessageReceiver | null = null;
  private usedBdat = false;
  private bdat: BdatState | null = null;
  private auth: AuthState | null = null;
  private writePaused = false;
  /** Deadline for the next complete command line (see the invariants). */
  private commandDeadline: NodeJS.Timeout | null = null;
  /** Destroys the socket if the client has not closed it within 5 s of close(). */
  private destroyTimer: NodeJS.Timeout | null = null;
  /** Deadline of the message phase (see the invariants); runs from DATA's 354 or the first BDAT. */
  private readonly messageDeadline: CommandDeadline;
  /** Message bytes received in the running message phase. */
  private messageBytes = 0;
  private readonly remoteAddress: string;
  private readonly remotePort: number;
  private readonly localAddress: string;

  constructor(socket: Socket, cfg: SessionConfig) {
    this.socket = socket;
    this.cfg = cfg;
    this.id = cfg.randomHex(6);
    this.remoteAddress = socket.remoteAddress ?? 'unknown';
    this.remotePort = socket.remotePort ?? 0;
    this.localAddress = socket.localAddress ?? 'unknown';
    this.messageDeadline = new CommandDeadline({
      commandMs: cfg.limits.messageGraceMs,
      minBytesPerSecond: cfg.limits.minDataBytesPerSecond,
      maxMs: cfg.limits.messageTimeoutMs,
      onExpire: this.onSlowMessage,
    });
    this.attach(socket);
    if (socket instanceof TLSSocket) this.tls = tlsInfo(socket);
  }

  private get log() {
    return this.cfg.ctx.log;
  }

  /** Whether the channel is protected: TLS, or a client on this host (DESIGN.md invariant 5). */
  private get secure(): boolean {
    return this.tls !== null || this.remoteAddress === this.localAddress;
  }

  info(): SessionInfo {
    return {
      id: this.id,
      mode: this.cfg.mode,
      remoteAddress: this.remoteAddress,
      remotePort: this.remotePort,
      localAddress: this.localAddress,
      helo: this.helo,
      esmtp: this.esmtp,
      tls: this.tls,
      account: this.account,
    };
  }

  start(): void {
    if (this.cfg.greetingDelayMs > 0) {
      // Port 25 policy like postscreen's greet delay: a client that talks first is not an SMTP
      // client waiting for the greeting (RFC 5321 §3.1 requires it to wait).
      setTimeout(() => this.greet(), this.cfg.greetingDelayMs).unref();
    } else {
      this.greet();
    }
  }

  private greet(): void {
    if (this.mode === 'closed') return;
    this.greeted = true;
    this.armCommandDeadline();
    const kind = this.cfg.mode === 'lmtp' ? 'LMTP' : 'ESMTP';
    // RFC 5321 §4.3.1: 220 <domain> greeting
    this.send(reply(220, null, `${this.cfg.ctx.hostname} ${kind} Facteur`));
    this.flush();
    this.pump();
  }

  private attach(socket: Socket): void {
    socket.on('data', this.onData);
    socket.on('error', this.onError);
    socket.on('close', this.onSocketClose);
    socket.on('timeout', this.onTimeout);
    socket.on('drain', this.onDrain);
    socket.setTimeout(this.cfg.limits.commandTimeoutMs);
    socket.setNoDelay(true);
  }

  private detach(socket: Socket): void {
    socket.off('data', this.onData);
    socket.off('close', this.onSocketClose);
    socket.off('timeout', this.onTimeout);
    socket.off('drain', this.onDrain);
    // the error listener stays: a late error on the raw socket under TLS must not crash
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.mode === 'closed') return;
    if (!this.greeted) {
      this.send(reply(554, '5.5.1', 'Protocol error: talked before the greeting'));
      this.close();
      return;
    }
    this.input.push(chunk);
    if (this.running) this.arrivedWhileRunning = true;
    if (this.input.length > INPUT_BUFFER_MAX && (this.mode === 'command' || this.mode === 'auth')) this.socket.pause();
    this.pump();
  };

  private readonly onError = (err: Error): void => {
    this.log.debug({ session: this.id, err: err.message }, 'smtp connection error');
  };

  /** Waiting for a command (or an AUTH line): the next complete line must arrive in time. In
   * DATA/BDAT the socket's inactivity timeout (dataTimeoutMs) and the message deadline apply
   * instead. */
  private armCommandDeadline(): void {
    if (this.mode !== 'command' && this.mode !== 'auth') {
      if (this.commandDeadline) clearTimeout(this.commandDeadline);
      this.commandDeadline = null;
      return;
    }
    // Armed after every command: the one timer is moved, not replaced (refresh() reschedules it
    // even after it fired).
    if (this.commandDeadline) {
      this.commandDeadline.refresh();
      return;
    }
    this.commandDeadline = setTimeout(this.onTimeout, this.cfg.limits.commandTimeoutMs);
    this.commandDeadline.unref();
  }

  private readonly onSocketClose = (): void => {
    if (this.commandDeadline) clearTimeout(this.commandDeadline);
    this.commandDeadline = null;
    // Closed in time: the session need not stay referenced by its destroy timer.
    if (this.destroyTimer) clearTimeout(this.destroyTimer);
    this.destroyTimer = null;
    this.messageDeadline.stop();
    if (this.mode !== 'closed') this.mode = 'closed';
    this.cfg.onClose();
  };

  private readonly onTimeout = (): void => {
    if (this.mode === 'closed') return;
    // RFC 5321 §4.5.3.2.7: the server may close after its timeout, with 421.
    this.send(R.timeout());
    this.close();
  };

  /** The message phase starts (DATA accepted, or a BDAT outside a running phase). */
  private startMessagePhase(): void {
    if (this.messageDeadline.running) return;
    this.messageBytes = 0;
    this.messageDeadline.track(0);
  }

  /** Message bytes consumed: the deadline moves by one second per minDataBytesPerSecond. */
  private messageProgress(bytes: number): void {
    this.messageBytes += bytes;
    if (this.messageDeadline.running) this.messageDeadline.track(this.messageBytes);
  }

  private readonly onSlowMessage = (): void => {
    if (this.mode === 'closed') return;
    this.log.info(
      { session: this.id, event: 'slow-message', mode: this.mode, bytes: this.messageBytes, ms: this.messageDeadline.elapsed() },
      'message data not received in time',
    );
    // RFC 5321 §4.5.3.2: the server may close after its timeout, with 421 (4.4.2: connection
    // dropped, RFC 3463). Nothing of the partial message is kept.
    this.resetTransaction();
    this.send(R.dataTimeout());
    this.close();
  };

  private readonly onDrain = (): void => {
    if (this.writePaused) {
      this.writePaused = false;
      this.socket.resume();
    }
  };

  private send(r: Reply): void {
    this.out.push(formatReply(r));
  }

  private flush(): void {
    if (this.out.length === 0 || this.mode === 'closed' || this.socket.destroyed) {
      this.out = [];
      return;
    }
    const data = this.out.join('');
    this.out = [];
    if (!this.socket.write(data)) {
      // The client does not read its replies: stop reading its commands until it does.
      this.writePaused = true;
      this.socket.pause();
    }
  }

  close(): void {
    if (this.mode === 'closed') return;
    this.flush();
    this.mode = 'closed';
    this.socket.end();
    // A client that never reads cannot hold the socket open.
    this.destroyTimer = setTimeout(() => this.socket.destroy(), 5000);
    this.destroyTimer.unref();
  }

  /** Graceful shutdown: idle sessions are told 421 now, busy ones after their command. */
  shutdown(): void {
    this.closing = true;
    if (!this.running) {
      this.send(R.shuttingDown());
      this.close();
    }
  }

  destroy(): void {
    this.mode = 'closed';
    this.socket.destroy();
  }

  private pump(): void {
    if (this.running || this.mode === 'closed' || !this.greeted || this.handshaking) return;
    this.running = true;
    this.arrivedWhileRunning = false;
    void this.run().finally(() => {
      this.running = false;
      // Bytes delivered between run()'s last look at the input and its end (a chunk emitted in
      // the same tick as the greeting, such as bytes that followed a PROXY header) would
      // otherwise wait for the next chunk.
      if (this.arrivedWhileRunning) this.pump();
    });
  }

  private async run(): Promise<void> {
    try {
      while (this.mode !== 'closed' && (await this.step())) {
        this.armCommandDeadline();
        if (this.closing && this.mode === 'command') {
          this.send(R.shuttingDown());
          this.close();
        }
      }
    } catch (err) {
      const id = randomBytes(4).toString('hex');
      this.log.error({ session: this.id, id, err }, 'smtp session failure');
      this.send(R.tempFailure(id));
      this.close();
    }
    this.flush();
    if (this.mode !== 'closed' && this.input.length <= INPUT_BUFFER_MAX && !this.writePaused) this.socket.resume();
  }

  /** Processes one unit of buffered input; false when more input is needed. */
  private async step(): Promise<boolean> {
    switch (this.mode) {
      case 'command':
      case 'auth': {
        const max = this.mode === 'auth' ? AUTH_LINE_MAX : COMMAND_LINE_MAX + COMMAND_LINE_EXTENSION_ALLOWANCE;
        const line = this.input.readLine(max);
        if (line === null) return false;
        if (line === 'too-long') {
          // RFC 5321 §4.5.3.1.4 / §4.2.2: 500 line too long
          if (this.mode === 'auth') this.auth = null;
          this.mode = 'command';
          this.error(R.lineTooLong());
          return true;
        }
        if (this.mode === 'auth') await this.authContinue(line);
        else await this.command(line);
        return true;
      }
      case 'data': {
        const chunk = this.input.takeAll();
        if (chunk.length === 0) return false;
        const end = this.receiver!.push(chunk);
        this.messageProgress(end === -1 ? chunk.length : end);
        if (end === -1) {
          // RFC 1870 §6 lets the server read to the end before its 552, but not without bound:
          // past twice the limit the client is not going to stop, so it is cut off.
          if (this.receiver!.size > 2 * this.cfg.limits.maxMessageSize) {
            this.send(R.tooBig());
            this.close();
          }
          return false;
        }
        this.input.unshift(chunk.subarray(end));
        this.socket.setTimeout(this.cfg.limits.commandTimeoutMs);
        await this.endOfData();
        return true;
      }
      case 'bdat': {
        const b = this.bdat!;
        if (b.remaining > 0) {
          const chunk = this.input.take(b.remaining);
          if (chunk.length === 0) return false;
          b.remaining -= chunk.length;
          this.messageProgress(chunk.length);
          if (b.error === null) this.receiver!.push(chunk);
          if (b.remaining > 0) return false;
        }
        this.socket.setTimeout(this.cfg.limits.commandTimeoutMs);
        await this.endOfChunk();
        return true;
      }
      case 'closed':
        return false;
    }
  }

  /** Sends an error reply to a command and enforces the error limit. */
  private error(r: Reply): void {
    this.send(r);
    if (++this.errors >= this.cfg.limits.maxErrors) {
      this.send(R.tooManyErrors());
      this.close();
    }
  }

  private answer(r: Reply): void {
    if (r.code >= 400) this.error(r);
    else this.send(r);
  }

  private async command(line: Buffer): Promise<void> {
    const parsed = parseCommand(line);
    if (!parsed.ok) {
      this.error(parsed.reply);
      return;
    }
    this.cfg.countCommand?.(parsed.command.verb);
    try {
      await this.dispatch(parsed.command);
    } catch (err) {
      // A bug or a store failure: the client gets a short text and an id, the log the rest.
      const id = randomBytes(4).toString('hex');
      this.log.error({ session: this.id, id, err }, 'smtp command failed');
      this.mode = 'command';
      this.auth = null;
      this.error(R.tempFailure(id));
    }
  }

  private resetTransaction(): void {
    this.messageDeadline.stop();
    this.tx = null;
    this.receiver = null;
    this.usedBdat = false;
    this.bdat = null;
  }

  private async dispatch(cmd: SmtpCommand): Promise<void> {
    const lmtp = this.cfg.mode === 'lmtp';
    switch (cmd.verb) {
      case 'EHLO':
      case 'HELO':
      case 'LHLO': {
        // RFC 2033 §4.1: LMTP has LHLO and no HELO/EHLO; SMTP has no LHLO.
        if (lmtp !== (cmd.verb === 'LHLO')) return this.error(reply(500, '5.5.1', `${cmd.verb} not accepted here`));
        this.resetTransaction();
        this.helo = cmd.domain;
        this.esmtp = cmd.verb !== 'HELO';
        if (cmd.verb === 'HELO') return this.send(reply(250, null, this.cfg.ctx.hostname));
        return this.send(reply(250, null, this.cfg.ctx.hostname, ...this.extensions()));
      }
      case 'MAIL':
        return this.mail(cmd.from, cmd.params);
      case 'RCPT':
        return cmd.to === 'postmaster' ? this.rcpt(postmastersOf(this.cfg.ctx.hostname), cmd.params) : this.rcpt([cmd.to], cmd.params);
      case 'DATA': {
        const ok = this.checkDataReady();
        if (ok !== null) return this.error(ok);
        if (this.usedBdat) return this.error(R.badSequence('DATA cannot follow BDAT'));
        this.receiver = new MessageReceiver({
          mode: 'dot',
          maxSize: this.cfg.limits.maxMessageSize,
          maxLineLength: this.cfg.limits.maxDataLineLength,
        });
        this.mode = 'data';
        this.socket.setTimeout(this.cfg.limits.dataTimeoutMs);
        this.startMessagePhase();
        // RFC 5321 §4.1.1.4: 354, then the data up to CRLF.CRLF
        return this.send(reply(354, null, 'End data with <CR><LF>.<CR><LF>'));
      }
      case 'BDAT': {
        // RFC 3030 §2: the chunk's octets follow the command at once; they are read even when
        // the command is refused, so the client stays in sync.
        let error = this.checkDataReady();
        if (error === null && this.receiver !== null && !this.usedBdat) error = R.badSequence();
        if (error === null && this.bdat?.error) error = this.bdat.error;
        if ((this.receiver?.size ?? 0) + cmd.size > this.cfg.limits.maxMessageSize) {
          if (cmd.size > this.cfg.limits.maxMessageSize) {
            // One chunk over the whole limit: reading it (RFC 3030 §2) would only waste the
            // bandwidth, so refuse and close.
            this.send(R.tooBig());
            return this.close();
          }
          error ??= R.tooBig();
        }
        if (error === null && this.receiver === null) {
          this.receiver = new MessageReceiver({
            mode: 'raw',
            maxSize: this.cfg.limits.maxMessageSize,
            maxLineLength: this.cfg.limits.maxDataLineLength,
          });
        }
        this.usedBdat = true;
        this.bdat = { remaining: cmd.size, last: cmd.last, error };
        this.mode = 'bdat';
        this.socket.setTimeout(this.cfg.limits.dataTimeoutMs);
        // Also for a refused chunk: its octets must still be read (RFC 3030 §2), and slowly
        // trickled they would otherwise hold the connection.
        this.startMessagePhase();
        return;
      }
      case 'RSET':
        this.resetTransaction();
        return this.send(R.ok());
      case 'NOOP':
        return this.send(R.ok());
      case 'QUIT':
        // RFC 5321 §4.1.1.10
        this.send(reply(221, '2.0.0', 'Bye'));
        return this.close();
      case 'HELP':
        return this.send(reply(214, '2.0.0', 'See RFC 5321'));
      case 'VRFY':
        // RFC 5321 §3.5.3: 252 when the server will not verify
        return this.send(reply(252, '2.5.0', 'Cannot VRFY user, but will accept message and attempt delivery'));
      case 'EXPN':
        return this.error(R.notImplemented('EXPN not available'));
      case 'STARTTLS':
        return this.startTls();
      case 'AUTH':
        return this.authStart(cmd.mechanism, cmd.initialResponse);
    }
  }

  private extensions(): string[] {
    const ext = [
      'PIPELINING', // RFC 2920
      `SIZE ${this.cfg.limits.maxMessageSize}`, // RFC 1870
      '8BITMIME', // RFC 6152
      'SMTPUTF8', // RFC 6531
      'ENHANCEDSTATUSCODES', // RFC 2034
      'DSN', // RFC 3461
      'CHUNKING', // RFC 3030
    ];
    if (this.cfg.ctx.tls && !this.tls) ext.push('STARTTLS'); // RFC 3207
    // RFC 8689 §2, §4.1: offered once the session is TLS (LMTP hands mail to the final store).
    if (this.tls && this.cfg.mode !== 'lmtp') ext.push('REQUIRETLS');
    // No AUTH at all on a clear channel from another host (like Postfix's smtpd_tls_auth_only):
    // not even SCRAM, since the mail that follows would travel in clear (RFC 8314 §3).
    if (this.cfg.mode === 'submission' && this.cfg.sasl && !this.account && this.authAllowed()) {
      const mechs = this.cfg.sasl.mechanisms(true);
      if (mechs.length > 0) ext.push(`AUTH ${mechs.join(' ')}`); // RFC 4954
    }
    return ext;
  }

  private authAllowed(): boolean {
    return this.secure || this.cfg.allowPlaintextAuth;
  }

  private checkDataReady(): Reply | null {
    if (!this.tx) return R.badSequence('Need MAIL command');
    // RFC 5321 §3.3: DATA without any accepted recipient is refused with 554 (or 503).
    if (this.tx.recipients.length === 0) return reply(554, '5.5.1', 'No valid recipients');
    return null;
  }

  private async mail(from: Mailbox | null, params: MailParams): Promise<void> {
    if (!this.helo) return this.error(R.badSequence('Send EHLO first'));
    if (this.tx) return this.error(R.badSequence('Nested MAIL command'));
    if (this.cfg.mode === 'submission') {
      if (!this.account) return this.error(R.authRequired());
    }
    if (!this.esmtp && (params.size !== null || params.body !== null || params.smtputf8 || params.ret || params.envid || params.auth || params.requireTls)) {
      return this.error(R.paramNotImplemented('Parameters need EHLO'));
    }
    if (params.requireTls) {
      if (this.cfg.mode === 'lmtp') return this.error(R.paramNotImplemented('REQUIRETLS not offered'));
      // RFC 8689 §4.1: only on a TLS session (5.7.10, RFC 5248: encryption needed).
      if (!this.tls) return this.error(reply(530, '5.7.10', 'REQUIRETLS needs a TLS session'));
    }
    // RFC 1870 §6: a declared size over the limit is refused at once
    if (params.size !== null && params.size > this.cfg.limits.maxMessageSize) return this.error(R.tooBig());
    // CHUNKING without BINARYMIME (RFC 3030 §3): binary bodies are not advertised
    if (params.body === 'BINARYMIME') return this.error(R.paramNotImplemented('BINARYMIME not supported'));
    // RFC 6531 §3.4: a non-ASCII mailbox needs the SMTPUTF8 parameter
    if (from?.utf8 && !params.smtputf8) return this.error(reply(553, '5.6.7', 'Non-ASCII address needs SMTPUTF8'));
    const policyReply = await this.cfg.policy.onMailFrom(this.info(), from, params);
    if (policyReply && policyReply.code >= 400) return this.error(policyReply);
    this.tx = { from, params, recipients: [] };
    this.send(policyReply ?? reply(250, '2.1.0', 'Sender ok'));
  }

  /** RCPT of the first of `candidates` that is not refused as a relay (several only for
   * RCPT TO:<Postmaster>, see postmastersOf). */
  private async rcpt(candidates: readonly Mailbox[], params: RcptParams): Promise<void> {
    const tx = this.tx;
    if (!tx) return this.error(R.badSequence('Need MAIL command'));
    if (this.receiver) return this.error(R.badSequence('RCPT after message data'));
    // RFC 5321 §4.5.3.1.8: 452 for too many recipients
    if (tx.recipients.length >= this.cfg.limits.maxRecipients) return this.error(R.tooManyRecipients());
    const first = candidates[0]!;
    if (first.utf8 && !tx.params.smtputf8) return this.error(reply(553, '5.6.7', 'Non-ASCII address needs SMTPUTF8'));
    let decision = await this.cfg.policy.onRcptTo(this.info(), tx, first, params);
    for (let i = 1; i < candidates.length && !decision.ok && decision.notLocal === true; i++) {
      decision = await this.cfg.policy.onRcptTo(this.info(), tx, candidates[i]!, params);
    }
    if (!decision.ok) return this.error(decision.reply);
    tx.recipients.push(decision.recipient);
    this.send(decision.reply ?? reply(250, '2.1.5', 'Recipient ok'));
  }

  private async endOfData(): Promise<void> {
    this.mode = 'command';
    await this.finishMessage();
  }

  private async endOfChunk(): Promise<void> {
    const b = this.bdat!;
    this.mode = 'command';
    if (b.error) {
      // RFC 3030 §2: once a chunk of a transaction is refused, the rest of it is refused too
      // (until RSET); outside a transaction there is nothing to remember.
      const tx = this.tx;
      this.bdat = tx ? { remaining: 0, last: false, error: b.error } : null;
      if (b.last) this.resetTransaction();
      // No message is being received any more; a further BDAT starts a new phase, and each
      // refused chunk counts towards the error limit.
      this.messageDeadline.stop();
      return b.last && tx ? this.refuseMessage(b.error, tx) : this.error(b.error);
    }
    if (!b.last) {
      if (this.receiver!.tooBig) {
        this.messageDeadline.stop();
        this.bdat = { remaining: 0, last: false, error: R.tooBig() };
        return this.error(R.tooBig());
      }
      return this.send(reply(250, '2.0.0', `${this.receiver!.size} octets received`));
    }
    this.bdat = null;
    await this.finishMessage();
  }

  private async finishMessage(): Promise<void> {
    // The bytes are all in: delivery time is the server's, not the client's.
    this.messageDeadline.stop();
    const receiver = this.receiver!;
    const tx = this.tx!;
    const raw = receiver.finish();
    const refusal = this.checkMessage(receiver, raw, tx);
    if (refusal) {
      this.resetTransaction();
      return this.refuseMessage(refusal, tx);
    }
    this.messageCount++;
    let outcome;
    try {
      outcome = await this.cfg.policy.onData(this.info(), tx, {
        raw,
        protocol: withProtocol(this.info(), tx.params.smtputf8),
        receivedAt: new Date(),
      });
    } catch (err) {
      const id = randomBytes(4).toString('hex');
      this.log.error({ session: this.id, id, err }, 'delivery failed');
      const r = R.tempFailure(id);
      outcome = { perRecipient: tx.recipients.map(() => r), summary: r };
    }
    this.resetTransaction();
    if (this.cfg.mode === 'lmtp') {
      // RFC 2033 §4.2: one reply per accepted recipient, in RCPT order
      for (const r of outcome.perRecipient) this.send(r);
    } else {
      this.answer(outcome.summary);
    }
  }

  /** A message refused as a whole at its end: LMTP still answers once per accepted recipient
   * (RFC 2033 §4.2: a client counts the replies, and one short would be read from the next
   * command's), counted as one error. */
  private refuseMessage(refusal: Reply, tx: Transaction): void {
    if (this.cfg.mode === 'lmtp') for (let i = 1; i < tx.recipients.length; i++) this.send(refusal);
    this.error(refusal);
  }

  /** Refusals decided by the bytes alone, after the end of data. */
  private checkMessage(receiver: MessageReceiver, raw: Buffer, tx: Transaction): Reply | null {
    // RFC 1870 §6: 552 when the message exceeds the size limit
    if (receiver.tooBig) return R.tooBig();
    // An end-of-data reply (RFC 5321 §4.3.2 lists 554 there, not 500): the message is refused.
    if (receiver.lineTooLong) return reply(554, '5.6.0', `Message has a line over ${this.cfg.limits.maxDataLineLength} octets`);
    if (raw.length === 0) return reply(554, '5.6.0', 'Empty message');
    // RFC 5322 §2.1 / RFC 5321 §2.3.1: NUL is not text, in no body type we accept
    if (raw.indexOf(0) !== -1) return reply(554, '5.6.0', 'Message contains NUL octets');
    if (!tx.params.smtputf8) {
      const headerEnd = raw.indexOf('\r\n\r\n');
      const header = raw.subarray(0, headerEnd === -1 ? raw.length : headerEnd);
      // RFC 6532 §3 / RFC 6531 §3.7.4: UTF-8 header fields need SMTPUTF8
      for (const b of header) if (b >= 0x80) return reply(550, '5.6.7', 'Non-ASCII header needs SMTPUTF8');
    }
    return null;
  }

  private startTls(): void {
    const provider = this.cfg.ctx.tls;
    if (this.tls) return this.error(R.badSequence('Already using TLS'));
    // RFC 3207 §4: 454 when TLS is not available
    if (!provider) return this.error(reply(454, '4.7.0', 'TLS not available'));
    this.send(reply(220, '2.0.0', 'Ready to start TLS'));
    this.flush();
    // RFC 3207 §4.2 / CVE-2011-0411: nothing sent before the handshake survives it.
    this.input.clear();
    const plain = this.socket;
    this.detach(plain);
    const secure = new TLSSocket(plain, { ...provider.serverOptions(), isServer: true });
    this.socket = secure;
    this.attach(secure);
    this.mode = 'command';
    // RFC 3207 §4.2: forget everything learnt before TLS; the client must EHLO again.
    this.helo = null;
    this.esmtp = false;
    this.account = null;
    this.resetTransaction();
    this.handshaking = true;
    secure.once('secure', () => {
      this.tls = tlsInfo(secure);
      this.handshaking = false;
      this.pump();
    });
  }

  private async authStart(mechanism: string, initial: string | null): Promise<void> {
    const sasl = this.cfg.sasl;
    if (this.cfg.mode !== 'submission' || !sasl) return this.error(R.notImplemented('AUTH not available'));
    if (!this.helo || !this.esmtp) return this.error(R.badSequence('Send EHLO first'));
    // RFC 4954 §4: AUTH is refused once authenticated and during a transaction
    if (this.account) return this.error(R.badSequence('Already authenticated'));
    if (this.tx) return this.error(R.badSequence('AUTH not allowed during a mail transaction'));
    if (!sasl.mechanisms(true).includes(mechanism)) return this.error(reply(504, '5.5.4', 'Unrecognized authentication type'));
    // RFC 4954 §6 / DESIGN.md invariant 5: authentication only over TLS or from this host
    if (!this.authAllowed()) return this.error(reply(538, '5.7.11', 'Encryption required for requested authentication mechanism'));
    const session = sasl.create(mechanism, { ip: this.remoteAddress, protocol: 'submission', secure: this.secure }, this.authAllowed());
    if (!session) return this.error(reply(504, '5.5.4', 'Unrecognized authentication type'));
    this.auth = { sasl: session, pendingSuccess: null };
    // RFC 4954 §4: "=" is an empty initial response
    const first = initial === null ? null : initial === '=' ? EMPTY : decodeBase64(initial);
    if (first === undefined) {
      this.auth = null;
      return this.error(reply(501, '5.5.2', 'Invalid base64'));
    }
    await this.authStep(first);
  }

  private async authContinue(line: Buffer): Promise<void> {
    const state = this.auth!;
    const text = line.toString('latin1');
    // RFC 4954 §4: "*" cancels
    if (text === '*') {
      this.auth = null;
      this.mode = 'command';
      return this.error(reply(501, '5.0.0', 'Authentication cancelled'));
    }
    if (state.pendingSuccess) {
      const account = state.pendingSuccess;
      this.mode = 'command';
      this.auth = null;
      if (text !== '') return this.error(reply(501, '5.5.2', 'Expected an empty response'));
      return this.authSucceeded(account);
    }
    const data = decodeBase64(text);
    if (data === undefined) {
      this.auth = null;
      this.mode = 'command';
      return this.error(reply(501, '5.5.2', 'Invalid base64'));
    }
    await this.authStep(data);
  }

  private async authStep(response: Buffer | null): Promise<void> {
    const state = this.auth!;
    const step = await state.sasl.step(response);
    switch (step.kind) {
      case 'challenge':
        this.mode = 'auth';
        return this.send(reply(334, null, step.data.toString('base64')));
      case 'success':
        if (step.data && step.data.length > 0) {
          // RFC 4954 §4: additional data with success goes in a last 334 challenge
          state.pendingSuccess = step.account;
          this.mode = 'auth';
          return this.send(reply(334, null, step.data.toString('base64')));
        }
        this.mode = 'command';
        this.auth = null;
        return this.authSucceeded(step.account);
      case 'failure':
        this.mode = 'command';
        this.auth = null;
        if (step.reason === 'throttled') return this.error(reply(454, '4.7.0', 'Too many failures, try again later'));
        // RFC 4954 §6: 454 4.7.0 temporary authentication failure; nothing failed, so it does
        // not count towards the connection's errors either.
        if (step.reason === 'busy') return this.send(reply(454, '4.7.0', 'Too many logins in progress, try again shortly'));
        if (step.reason === 'malformed') return this.error(reply(501, '5.5.2', 'Malformed authentication data'));
        // RFC 4954 §6: 535 5.7.8 for invalid credentials (and, not to tell which, disabled ones)
        return this.error(reply(535, '5.7.8', 'Authentication credentials invalid'));
    }
  }

  private authSucceeded(account: Account): void {
    this.account = account;
    this.log.info({ session: this.id, account: account.address }, 'smtp authenticated');
    this.send(reply(235, '2.7.0', 'Authentication successful'));
  }
}

function tlsInfo(socket: TLSSocket): { version: string; cipher: string } {
  const cipher = socket.getCipher();
  return { version: socket.getProtocol() ?? 'unknown', cipher: cipher.standardName ?? cipher.name };
}

function decodeBase64(s: string): Buffer | undefined {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 !== 0) return undefined;
  return Buffer.from(s, 'base64');
}

/**
 * RFC 5321 §4.1.1.3 and §4.5.1: RCPT TO:<Postmaster> without a domain must be accepted, for this
 * host's postmaster: postmaster@ the host name when it is a local domain, else @ the first of its
 * parent domains that is (mail.example.org: example.org).
 */
function postmastersOf(hostname: string): Mailbox[] {
  const labels = hostname.toLowerCase().replace(/\.$/, '').split('.');
  const out: Mailbox[] = [];
  for (let i = 0; i === 0 || i <= labels.length - 2; i++) {
    const domain = labels.slice(i).join('.');
    out.push({ local: 'postmaster', domain, literal: false, utf8: false, address: `postmaster@${domain}` });
  }
  return out;
}

