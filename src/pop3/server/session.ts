/**
 * One POP3 connection: socket -> LineReader -> dispatch (commands.ts, the state check done once)
 * -> handlers/*.ts -> responses. This file holds the I/O, the RFC 1939 state (AUTHORIZATION,
 * TRANSACTION, UPDATE) and the error mapping; handlers use the methods under "For the handlers".
 *
 * Invariants:
 * - Commands of one connection run one at a time, in order; input is read only while fewer than
 *   MAX_BUFFERED_INPUT octets wait, and a command whose output has not drained holds the next one
 *   back (pipelining with backpressure, never unbounded buffering).
 * - The account's POP3 lock ('pop3:' + id) is held exactly while the session is in TRANSACTION
 *   or UPDATE, and released on every way out (QUIT, drop, timeout, server close).
 * - Only QUIT in TRANSACTION changes the store's messages (UPDATE, RFC 1939 §6); a dropped
 *   connection removes nothing. RETR's \Seen goes through store.setFlags like an IMAP STORE.
 * - Nothing the client sent is echoed; responses are built by protocol/response.ts.
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { AuthMeta, ServerContext } from '../../context.js';
import type { SaslSession } from '../../sasl/types.js';
import { StoreError, type Account, type MailStore } from '../../store/types.js';
import { parseCommand, type CommandName } from '../protocol/command.js';
import {
  MAX_BUFFERED_INPUT,
  MAX_COMMAND_LINE,
  MAX_CONSECUTIVE_ERRORS,
  MAX_SASL_RESPONSE_LINE,
} from '../protocol/limits.js';
import { LineReader, type LineEvent } from '../protocol/line-reader.js';
import { err, ok } from '../protocol/response.js';
import { COMMANDS } from './commands.js';
import { Pop3Fatal, Pop3Refusal, Pop3SyntaxError } from './errors.js';
import { saslContinue } from './handlers/authorization.js';
import type { Maildrop, MaildropMessage } from './maildrop.js';
import type { ResolvedPop3Options } from './options.js';
import { CommandDeadline } from '../../net/command-deadline.js';

/** What a session needs from its server. */
export interface SessionDeps {
  ctx: ServerContext;
  options: ResolvedPop3Options;
  sasl: {
    mechanisms(plaintextAllowed: boolean): readonly string[];
    create(mechanism: string, meta: AuthMeta, plaintextAllowed: boolean): SaslSession | null;
  };
  loginDelay: LoginDelayTracker;
  /** Counts a known command, by name (facteur_commands_total); absent: none. */
  countCommand?: (name: string) => void;
  /** Called once, when the socket has closed. */
  onClosed(): void;
}

/** RFC 2449 §6.5 LOGIN-DELAY bookkeeping, one per server (no module-level state). */
export interface LoginDelayTracker {
  /** Whether the account may log in now. */
  allowed(accountId: number): boolean;
  /** Records a login that succeeded. */
  record(accountId: number): void;
}

export function createLoginDelayTracker(delaySeconds: number | null, now: () => number = Date.now): LoginDelayTracker {
  const last = new Map<number, number>();
  const windowMs = (delaySeconds ?? 0) * 1000;
  return {
    allowed(accountId) {
      if (windowMs === 0) return true;
      const previous = last.get(accountId);
      return previous === undefined || now() - previous >= windowMs;
    },
    record(accountId) {
      if (windowMs === 0) return;
      const t = now();
      last.set(accountId, t);
      // Forget logins older than the window so the map holds at most the recent ones.
      if (last.size > 1024) for (const [id, at] of last) if (t - at >= windowMs) last.delete(id);
    },
  };
}

export type Release = () => Promise<void>;

export interface SaslExchange {
  session: SaslSession;
  /** Set when the mechanism succeeded with additional data, sent as a last challenge (RFC 4422
   * §5, RFC 5034 §4): the client's next (empty) line completes the login. */
  successPending: Account | null;
}

/** RFC 1939 §3 states; the data of each lives in the state that owns it. */
export interface AuthorizationState {
  kind: 'authorization';
  /** The name from USER, until PASS. */
  user: string | null;
  /** A SASL exchange in progress: the next line is its response, not a command. */
  sasl: SaslExchange | null;
}
export interface TransactionState {
  kind: 'transaction';
  account: Account;
  maildrop: Maildrop;
  release: Release;
}
type SessionState = AuthorizationState | TransactionState | { kind: 'update' } | { kind: 'closed' };

const CLOSE_GRACE_MS = 5000;
/** Commands run back to back before the session yields to the event loop. */
const COMMANDS_BEFORE_YIELD = 32;

export class Pop3Session {
  readonly id: string;
  private readonly deps: SessionDeps;
  private readonly log: Logger;
  private readonly reader = new LineReader();
  private socket: Socket;
  private readonly rawSocket: Socket;
  private state: SessionState = { kind: 'authorization', user: null, sasl: null };
  private tlsActive = false;
  private readonly sameHost: boolean;
  private readonly ip: string;
  private running = false;
  private paused = false;
  private needDrain = false;
  private consecutiveErrors = 0;
  private authFailures = 0;
  private commands = 0;
  /** A command is being handled (the idle timer does not count server work). */
  private inCommand = false;
  /** Waiting for the client to read our output (that does count as the client's inactivity). */
  private awaitingClient = false;
  private sinceYield = 0;
  private closing = false;
  private finalized = false;
  private readonly startedAt = Date.now();
  private closeReason = 'client closed';
  private user: string | null = null;
  private readonly timers = new Set<NodeJS.Timeout>();
  private loginDeadline: NodeJS.Timeout | null = null;
  /** In TRANSACTION: a started command line must arrive in time (see trackCommand). */
  private readonly commandDeadline: CommandDeadline;

  constructor(socket: Socket, id: string, deps: SessionDeps) {
    this.id = id;
    this.deps = deps;
    this.socket = socket;
    this.rawSocket = socket;
    this.ip = normalizeIp(socket.remoteAddress ?? '');
    // DESIGN.md invariant 5: a client whose address is the server's own address is on this host.
    this.sameHost = this.ip !== '' && this.ip === normalizeIp(socket.localAddress ?? '');
    this.log = deps.ctx.log.child({ proto: 'pop3', cid: id });
    // POP3 has no literals: the rate only matters to IMAP.
    this.commandDeadline = new CommandDeadline({ commandMs: deps.options.timeouts.commandMs, minBytesPerSecond: 1, onExpire: this.onSlowCommand });
  }

  /** Starts the session: TLS handshake first for pop3s, then the greeting. */
  start(): void {
    this.rawSocket.on('close', this.onClose);
    this.rawSocket.on('error', this.onError);
    if (this.deps.options.implicitTls) {
      this.upgradeToTls(() => this.greet());
    } else {
      this.attach(this.rawSocket);
      this.greet();
    }
  }

  /** Whether a command is running now (server close waits for it). */
  get busy(): boolean {
    return this.running;
  }

  /** Ends the session from the server side (shutdown): no UPDATE, lock released. */
  shutdown(reason: string): void {
    this.closeReason = reason;
    this.endConnection(null);
  }

  destroy(reason: string): void {
    this.closeReason = reason;
    this.teardown();
    this.socket.destroy();
    this.rawSocket.destroy();
  }

  // ---- I/O ---------------------------------------------------------------------------------

  private attach(socket: Socket): void {
    this.socket = socket;
    socket.on('data', this.onData);
    socket.on('timeout', this.onTimeout);
    socket.setTimeout(this.idleTimeout());
  }

  private idleTimeout(): number {
    const t = this.deps.options.timeouts;
    return this.state.kind === 'transaction' ? t.idleMs : t.preAuthIdleMs;
  }

  /**
   * In AUTHORIZATION each command must arrive complete within preAuthIdleMs: bytes trickled
   * without ending a line reset the socket's inactivity timer but not this deadline, so an
   * unauthenticated slow sender cannot hold a connection slot for ever. In TRANSACTION the
   * inactivity timeout (idleMs, RFC 1939 §3) and the command deadline (trackCommand) apply.
   */
  private armLoginDeadline(): void {
    if (this.loginDeadline !== null) {
      clearTimeout(this.loginDeadline);
      this.timers.delete(this.loginDeadline);
      this.loginDeadline = null;
    }
    if (this.closing || this.state.kind !== 'authorization') return;
    const timer = setTimeout(this.onTimeout, this.deps.options.timeouts.preAuthIdleMs);
    timer.unref();
    this.timers.add(timer);
    this.loginDeadline = timer;
  }

  private detach(socket: Socket): void {
    socket.off('data', this.onData);
    socket.off('timeout', this.onTimeout);
    socket.setTimeout(0);
  }

  private greet(): void {
    const host = /^[\x21-\x7e]{1,253}$/.test(this.deps.ctx.hostname) ? `${this.deps.ctx.hostname} ` : '';
    // RFC 1939 §4: the greeting is a positive response. No APOP timestamp: APOP is not offered.
    this.write(ok(`${host}POP3 server ready`));
    this.armLoginDeadline();
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.closing) return;
    this.reader.push(chunk);
    if (this.reader.bufferedBytes >= MAX_BUFFERED_INPUT && !this.paused) {
      this.paused = true;
      this.socket.pause();
    }
    this.pump();
    this.trackCommand();
  };

  /**
   * In TRANSACTION, while no command runs and a line is partly received, it must arrive within
   * timeouts.commandMs: the inactivity timeout alone lets a client trickling a byte a minute keep
   * a command (and the account's one POP3 session, [IN-USE]) open for ever.
   */
  private trackCommand(): void {
    if (this.closing || this.running || this.state.kind !== 'transaction' || this.reader.bufferedBytes === 0) {
      this.commandDeadline.stop();
      return;
    }
    this.commandDeadline.track(0);
  }

  private readonly onSlowCommand = (): void => {
    this.log.info({ event: 'slow-command', state: this.state.kind }, 'command not received in time');
    this.endConnection(err('Command not received in time, closing connection'), 'slow command');
  };

  private readonly onTimeout = (): void => {
    if (this.inCommand && !this.awaitingClient) {
      // The server itself is busy (a password hash, a store write): the client is not idle.
      this.socket.setTimeout(this.idleTimeout());
      return;
    }
    // RFC 1939 §3: on autologout the server closes without UPDATE and without a response.
    this.log.info({ event: 'timeout', state: this.state.kind }, 'idle timeout');
    this.destroy('idle timeout');
  };

  private readonly onError = (error: Error): void => {
    this.closeReason = `socket error: ${(error as NodeJS.ErrnoException).code ?? error.message}`;
  };

  private readonly onClose = (): void => {
    this.teardown();
    if (this.finalized) return;
    this.finalized = true;
    this.log.info(
      {
        event: 'connection',
        ip: this.ip,
        tls: this.tlsActive,
        user: this.user,
        commands: this.commands,
        durationMs: Date.now() - this.startedAt,
        reason: this.closeReason,
      },
      'connection closed',
    );
    this.deps.onClosed();
  };

  private write(data: string | Buffer): void {
    if (this.socket.destroyed || !this.socket.writable) return;
    if (!this.socket.write(data)) this.needDrain = true;
  }

  private async drain(): Promise<void> {
    if (!this.needDrain) return;
    const socket = this.socket;
    this.awaitingClient = true;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        socket.off('drain', done);
        socket.off('close', done);
        resolve();
      };
      if (socket.destroyed || socket.writableLength === 0) return resolve();
      socket.on('drain', done);
      socket.on('close', done);
    });
    this.awaitingClient = false;
    this.needDrain = false;
  }

  /** Waits until everything written has left for the kernel (before handing the socket to TLS). */
  private async flushed(): Promise<void> {
    const socket = this.socket;
    if (socket.destroyed || socket.writableLength === 0) return;
    this.awaitingClient = true;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        socket.off('drain', done);
        socket.off('close', done);
        resolve();
      };
      socket.on('drain', done);
      socket.on('close', done);
    });
    this.awaitingClient = false;
    this.needDrain = false;
  }

  private pump(): void {
    if (this.running || this.closing) return;
    this.running = true;
    void this.run();
  }

  private async run(): Promise<void> {
    try {
      while (!this.closing) {
        const inSasl = this.state.kind === 'authorization' && this.state.sasl !== null;
        const event = this.reader.next(inSasl ? MAX_SASL_RESPONSE_LINE : MAX_COMMAND_LINE);
        if (event === null) break;
        this.commandDeadline.stop();
        this.inCommand = true;
        try {
          await this.handle(event);
          await this.drain();
        } finally {
          this.inCommand = false;
        }
        this.armLoginDeadline();
        // Commands whose work completes at once chain only microtasks; yielding now and then lets
        // other connections' I/O in, so a pipelining client cannot monopolise the process.
        if (++this.sinceYield >= COMMANDS_BEFORE_YIELD) {
          this.sinceYield = 0;
          await new Promise<void>((resolve) => setImmediate(resolve));
        }
      }
    } catch (error) {
      // Only a bug in the loop itself gets here (handlers map their errors).
      this.log.error({ err: error }, 'POP3 session loop failed');
      this.destroy('internal error');
    } finally {
      this.running = false;
    }
    this.trackCommand();
    if (this.paused && !this.closing && this.reader.bufferedBytes < MAX_BUFFERED_INPUT) {
      this.paused = false;
      this.socket.resume();
    }
  }

  private async handle(event: LineEvent): Promise<void> {
    if (event.kind === 'flood') {
      this.log.info({ event: 'flood' }, 'line without end over the limit');
      this.write(err('Line too long, closing connection'));
      this.endConnection(null, 'line flood');
      return;
    }
    if (event.kind === 'too-long') {
      // RFC 2449 §4: command lines are at most 255 octets.
      let wasSasl = false;
      if (this.state.kind === 'authorization' && this.state.sasl !== null) {
        // An exchange cannot go on after a lost response line: it is cancelled.
        this.state.sasl = null;
        wasSasl = true;
      }
      await this.outcome('too-long', Promise.reject(new Pop3SyntaxError(wasSasl ? 'Authentication response too long' : 'Command line too long')));
      return;
    }
    if (this.state.kind === 'authorization' && this.state.sasl !== null) {
      await this.outcome('AUTH', saslContinue(this, this.state.sasl, event.line));
      return;
    }
    const parsed = parseCommand(event.line);
    if (!parsed.ok) {
      await this.outcome(parsed.known ?? 'unknown', Promise.reject(new Pop3SyntaxError(parsed.message)));
      return;
    }
    const command = parsed.command;
    const spec = COMMANDS[command.name];
    const kind = this.state.kind;
    // The state check, once for every command (RFC 1939 §3: commands are valid in given states).
    if ((kind !== 'authorization' && kind !== 'transaction') || !spec.states.includes(kind)) {
      await this.outcome(command.name, Promise.reject(new Pop3SyntaxError(`${command.name} is not valid in this state`)));
      return;
    }
    this.deps.countCommand?.(command.name);
    await this.outcome(command.name, spec.run(this, command));
  }

  /** Maps a command's outcome to the wire and the log, once (DESIGN.md, Errors). */
  private async outcome(name: CommandName | 'unknown' | 'too-long', work: Promise<void>): Promise<void> {
    const started = Date.now();
    this.commands += 1;
    try {
      await work;
      this.consecutiveErrors = 0;
      this.log.debug({ cmd: name, outcome: 'ok', ms: Date.now() - started }, 'command');
    } catch (error) {
      const ms = Date.now() - started;
      if (error instanceof Pop3SyntaxError) {
        this.consecutiveErrors += 1;
        this.log.debug({ cmd: name, outcome: 'bad', ms, reason: error.text }, 'command');
        if (this.consecutiveErrors >= MAX_CONSECUTIVE_ERRORS) {
          this.write(err('Too many errors, closing connection'));
          this.endConnection(null, 'too many errors');
        } else {
          this.write(err(error.text));
        }
      } else if (error instanceof Pop3Refusal) {
        this.consecutiveErrors = 0;
        this.log.info({ cmd: name, outcome: 'refused', code: error.code, ms, reason: error.text }, 'command');
        this.write(err(error.text, error.code));
      } else if (error instanceof Pop3Fatal) {
        this.log.info({ cmd: name, outcome: 'fatal', ms, reason: error.text }, 'command');
        this.endConnection(error.text === null ? null : err(error.text, error.code), error.text ?? 'fatal');
      } else if (error instanceof StoreError && error.code !== 'io') {
        this.log.info({ cmd: name, outcome: 'refused', ms, storeCode: error.code, reason: error.message }, 'command');
        this.write(err('The request could not be completed'));
      } else {
        const ref = randomBytes(4).toString('hex');
        this.log.error({ cmd: name, outcome: 'error', ms, ref, err: error }, 'command failed');
        this.write(err(`Internal error, try again later (ref ${ref})`, 'SYS/TEMP'));
      }
    }
  }

  /** Stops reading, releases the lock, sends the last words (if any) and closes. */
  private endConnection(lastWords: string | null, reason?: string): void {
    if (reason !== undefined) this.closeReason = reason;
    if (this.closing) return;
    this.closing = true;
    this.reader.clear();
    this.releaseLock();
    if (lastWords !== null) this.write(lastWords);
    this.socket.end();
    // A client that never closes its side is cut after a grace period.
    const timer = setTimeout(() => this.destroy(this.closeReason), CLOSE_GRACE_MS);
    timer.unref();
    this.timers.add(timer);
  }

  private teardown(): void {
    this.commandDeadline.stop();
    this.closing = true;
    this.releaseLock();
    if (this.state.kind !== 'closed') this.state = { kind: 'closed' };
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  private releaseLock(): void {
    if (this.state.kind !== 'transaction') return;
    const { release } = this.state;
    this.state = { kind: 'update' };
    release().catch((error: unknown) => this.log.error({ err: error }, 'cannot release the POP3 lock'));
  }

  // ---- TLS -----------------------------------------------------------------------------------

  private upgradeToTls(then: () => void): void {
    const provider = this.deps.ctx.tls;
    if (provider === null) {
      this.destroy('no TLS configured');
      return;
    }
    const plain = this.socket;
    this.detach(plain);
    this.paused = false;
    // RFC 2595 §4 (and RFC 3207 §4.2's reasoning): anything the client sent after STLS before
    // the handshake is not trusted; it is dropped, not interpreted inside TLS.
    this.reader.clear();
    const options = provider.serverOptions();
    const secure = new TLSSocket(plain, {
      isServer: true,
      secureContext: provider.secureContext(),
      ...(options.SNICallback ? { SNICallback: options.SNICallback } : {}),
      ...(options.minVersion ? { minVersion: options.minVersion } : {}),
    });
    const handshake = setTimeout(() => {
      this.log.info({ event: 'tls-timeout' }, 'TLS handshake timed out');
      this.destroy('TLS handshake timeout');
    }, this.deps.options.timeouts.tlsHandshakeMs);
    this.timers.add(handshake);
    secure.on('error', (error: Error) => {
      this.log.info({ event: 'tls-error', reason: error.message }, 'TLS error');
      this.destroy('TLS error');
    });
    secure.on('close', this.onClose);
    secure.once('secure', () => {
      clearTimeout(handshake);
      this.timers.delete(handshake);
      if (this.closing) return;
      this.tlsActive = true;
      this.attach(secure);
      then();
    });
  }

  // ---- For the handlers (handlers/*.ts) -----------------------------------------------------

  get ctx(): ServerContext {
    return this.deps.ctx;
  }

  get store(): MailStore {
    return this.deps.ctx.store;
  }

  get options(): ResolvedPop3Options {
    return this.deps.options;
  }

  get sasl(): SessionDeps['sasl'] {
    return this.deps.sasl;
  }

  get loginDelay(): LoginDelayTracker {
    return this.deps.loginDelay;
  }

  get logger(): Logger {
    return this.log;
  }

  get currentState(): SessionState['kind'] {
    return this.state.kind;
  }

  get isClosing(): boolean {
    return this.closing;
  }

  /** USER/PASS and PLAIN/LOGIN are allowed: TLS, same host, or configured (invariant 5). */
  get plaintextAllowed(): boolean {
    return this.tlsActive || this.sameHost || this.deps.options.allowPlaintextAuth;
  }

  get authMeta(): AuthMeta {
    return { ip: this.ip, protocol: 'pop3', secure: this.tlsActive || this.sameHost };
  }

  mechanisms(): readonly string[] {
    return this.deps.sasl.mechanisms(this.plaintextAllowed);
  }

  canStartTls(): boolean {
    return !this.tlsActive && !this.deps.options.implicitTls && this.deps.ctx.tls !== null;
  }

  transaction(): TransactionState {
    if (this.state.kind !== 'transaction') throw new Error('not in TRANSACTION state');
    return this.state;
  }

  authorization(): AuthorizationState {
    if (this.state.kind !== 'authorization') throw new Error('not in AUTHORIZATION state');
    return this.state;
  }

  /** The message a command names: it exists and is not marked deleted (RFC 1939 §5). */
  message(n: number): MaildropMessage {
    const m = this.transaction().maildrop.byNumber(n);
    if (m === null) throw new Pop3Refusal('No such message');
    if (m.deleted) throw new Pop3Refusal(`Message ${m.number} is deleted`);
    return m;
  }

  /** Queues a response; the command loop waits for it to drain before the next command. */
  send(data: string | Buffer): void {
    this.write(data);
  }

  /** Waits while the client reads what was sent (backpressure for streamed content). */
  waitForDrain(): Promise<void> {
    return this.drain();
  }

  /** Ends the connection after these last words (RFC 1939 QUIT, fatal errors). */
  close(lastWords: string | null, reason: string): void {
    this.endConnection(lastWords, reason);
  }

  /** Counts a failed login on this connection; returns how many there were. */
  countAuthFailure(): number {
    this.authFailures += 1;
    return this.authFailures;
  }

  /** AUTHORIZATION -> TRANSACTION (RFC 1939 §4): the lock is held from now on. */
  enterTransaction(account: Account, maildrop: Maildrop, release: Release): void {
    this.authFailures = 0;
    this.state = { kind: 'transaction', account, maildrop, release };
    this.user = account.address;
    this.armLoginDeadline();
    this.socket.setTimeout(this.deps.options.timeouts.idleMs);
  }

  /** TRANSACTION -> UPDATE (RFC 1939 §6): the caller now owns the lock's release. */
  enterUpdate(): TransactionState {
    const st = this.transaction();
    this.state = { kind: 'update' };
    return st;
  }

  /** RFC 2595 §4 STLS: "+OK", then the handshake; the session starts over in AUTHORIZATION. */
  async startTls(): Promise<void> {
    // Anything pipelined behind STLS is dropped; nothing more is read in clear. The socket is
    // paused, not just unlistened, so the client's TLS hello that may arrive before the wrap stays
    // buffered for the TLS layer instead of being lost.
    const plain = this.socket;
    this.detach(plain);
    plain.pause();
    this.reader.clear();
    this.write(ok('Begin TLS negotiation'));
    // A USER given before is forgotten.
    this.state = { kind: 'authorization', user: null, sasl: null };
    await this.flushed();
    if (this.closing) return;
    // Commands sent after the handshake are read by the TLS socket's listener.
    this.upgradeToTls(() => undefined);
  }
}

/** "::ffff:127.0.0.1" and "127.0.0.1" are the same client. */
export function normalizeIp(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return mapped?.[1] ?? ip.toLowerCase();
}
