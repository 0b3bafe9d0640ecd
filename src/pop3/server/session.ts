/**
 * One POP3 connection: socket -> LineReader -> dispatch (one command table, the state check done
 * once) -> handlers -> responses. RFC 1939 states AUTHORIZATION, TRANSACTION, UPDATE.
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
import type { MailboxId, Uid } from '../../lib/brand.js';
import type { SaslSession } from '../../sasl/types.js';
import { StoreError, type Account, type MailStore } from '../../store/types.js';
import { decodeSaslResponse, parseCommand, type CommandName, type Pop3Command } from '../protocol/command.js';
import { DotStuffer } from '../protocol/dot-stuff.js';
import {
  MAX_AUTH_FAILURES_PER_CONNECTION,
  MAX_BUFFERED_INPUT,
  MAX_COMMAND_LINE,
  MAX_CONSECUTIVE_ERRORS,
  MAX_SASL_RESPONSE_LINE,
} from '../protocol/limits.js';
import { LineReader, type LineEvent } from '../protocol/line-reader.js';
import { challenge, err, multiline, ok, scanListing, uniqueIdListing } from '../protocol/response.js';
import { TopFilter } from '../protocol/top-filter.js';
import { Pop3Fatal, Pop3Refusal, Pop3SyntaxError } from './errors.js';
import { Maildrop, type MaildropMessage } from './maildrop.js';
import type { ResolvedPop3Options } from './options.js';

/** What a session needs from its server. */
export interface SessionDeps {
  ctx: ServerContext;
  options: ResolvedPop3Options;
  sasl: {
    mechanisms(plaintextAllowed: boolean): readonly string[];
    create(mechanism: string, meta: AuthMeta, plaintextAllowed: boolean): SaslSession | null;
  };
  loginDelay: LoginDelayTracker;
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

type Release = () => Promise<void>;

interface SaslExchange {
  session: SaslSession;
  /** Set when the mechanism succeeded with additional data, sent as a last challenge (RFC 4422
   * §5, RFC 5034 §4): the client's next (empty) line completes the login. */
  successPending: Account | null;
}

type SessionState =
  | { kind: 'authorization'; user: string | null; sasl: SaslExchange | null }
  | { kind: 'transaction'; account: Account; maildrop: Maildrop; release: Release }
  | { kind: 'update' }
  | { kind: 'closed' };

type StateKind = 'authorization' | 'transaction';

interface CommandSpec {
  states: readonly StateKind[];
  run(session: Pop3Session, command: Pop3Command): Promise<void>;
}

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

  constructor(socket: Socket, id: string, deps: SessionDeps) {
    this.id = id;
    this.deps = deps;
    this.socket = socket;
    this.rawSocket = socket;
    this.ip = normalizeIp(socket.remoteAddress ?? '');
    // DESIGN.md invariant 5: a client whose address is the server's own address is on this host.
    this.sameHost = this.ip !== '' && this.ip === normalizeIp(socket.localAddress ?? '');
    this.log = deps.ctx.log.child({ proto: 'pop3', cid: id });
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

  private detach(socket: Socket): void {
    socket.off('data', this.onData);
    socket.off('timeout', this.onTimeout);
    socket.setTimeout(0);
  }

  private greet(): void {
    const host = /^[\x21-\x7e]{1,253}$/.test(this.deps.ctx.hostname) ? `${this.deps.ctx.hostname} ` : '';
    // RFC 1939 §4: the greeting is a positive response. No APOP timestamp: APOP is not offered.
    this.write(ok(`${host}POP3 server ready`));
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.closing) return;
    this.reader.push(chunk);
    if (this.reader.bufferedBytes >= MAX_BUFFERED_INPUT && !this.paused) {
      this.paused = true;
      this.socket.pause();
    }
    this.pump();
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
        this.inCommand = true;
        try {
          await this.handle(event);
          await this.drain();
        } finally {
          this.inCommand = false;
        }
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
      await this.outcome('AUTH', this.saslContinue(this.state.sasl, event.line));
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

  // ---- Shared helpers for handlers -------------------------------------------------------------

  get store(): MailStore {
    return this.deps.ctx.store;
  }

  /** USER/PASS and PLAIN/LOGIN are allowed: TLS, same host, or configured (invariant 5). */
  get plaintextAllowed(): boolean {
    return this.tlsActive || this.sameHost || this.deps.options.allowPlaintextAuth;
  }

  private get authMeta(): AuthMeta {
    return { ip: this.ip, protocol: 'pop3', secure: this.tlsActive || this.sameHost };
  }

  private mechanisms(): readonly string[] {
    return this.deps.sasl.mechanisms(this.plaintextAllowed);
  }

  private transaction(): Extract<SessionState, { kind: 'transaction' }> {
    if (this.state.kind !== 'transaction') throw new Error('not in TRANSACTION state');
    return this.state;
  }

  private authorization(): Extract<SessionState, { kind: 'authorization' }> {
    if (this.state.kind !== 'authorization') throw new Error('not in AUTHORIZATION state');
    return this.state;
  }

  /** The message a command names: it exists and is not marked deleted (RFC 1939 §5). */
  private message(n: number): MaildropMessage {
    const m = this.transaction().maildrop.byNumber(n);
    if (m === null) throw new Pop3Refusal('No such message');
    if (m.deleted) throw new Pop3Refusal(`Message ${m.number} is deleted`);
    return m;
  }

  // ---- Commands: any state -------------------------------------------------------------------

  async capa(): Promise<void> {
    // RFC 2449 §5: CAPA is valid in AUTHORIZATION and TRANSACTION.
    const lines = ['TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING'];
    if (this.state.kind === 'authorization') {
      if (this.plaintextAllowed) lines.push('USER');
      const mechs = this.mechanisms();
      if (mechs.length > 0) lines.push(`SASL ${mechs.join(' ')}`);
      if (this.canStartTls()) lines.push('STLS');
    }
    const { loginDelaySeconds, expireDays } = this.deps.options;
    if (loginDelaySeconds !== null) lines.push(`LOGIN-DELAY ${loginDelaySeconds}`);
    // RFC 2449 §6.7: "NEVER" when messages are never expired.
    if (expireDays !== null) lines.push(`EXPIRE ${expireDays === 0 ? 'NEVER' : expireDays}`);
    lines.push('IMPLEMENTATION Facteur');
    this.write(multiline('Capability list follows', lines));
  }

  async quit(): Promise<void> {
    if (this.state.kind !== 'transaction') {
      // RFC 1939 §4: QUIT in AUTHORIZATION ends the session without UPDATE.
      this.endConnection(ok('Bye'), 'quit');
      return;
    }
    await this.update();
  }

  // ---- AUTHORIZATION -------------------------------------------------------------------------

  private canStartTls(): boolean {
    return !this.tlsActive && !this.deps.options.implicitTls && this.deps.ctx.tls !== null;
  }

  async stls(): Promise<void> {
    // RFC 2595 §4: STLS only in AUTHORIZATION, and not once TLS is active.
    if (!this.canStartTls()) throw new Pop3Refusal('TLS is already active or not available');
    // Anything pipelined behind STLS is dropped (RFC 2595 §4); nothing more is read in clear.
    // The socket is paused, not just unlistened, so the client's TLS hello that may arrive before
    // the wrap stays buffered for the TLS layer instead of being lost.
    const plain = this.socket;
    this.detach(plain);
    plain.pause();
    this.reader.clear();
    this.write(ok('Begin TLS negotiation'));
    // RFC 2595 §4: after TLS the session starts over; a USER given before is forgotten.
    this.state = { kind: 'authorization', user: null, sasl: null };
    await this.flushed();
    if (this.closing) return;
    // Commands sent after the handshake are read by the TLS socket's listener.
    this.upgradeToTls(() => undefined);
  }

  async userCommand(user: string): Promise<void> {
    const st = this.authorization();
    if (!this.plaintextAllowed) {
      // DESIGN.md invariant 5: no clear-text password from another host without TLS.
      throw new Pop3Refusal('Plaintext authentication is not allowed without TLS, use STLS first', 'AUTH');
    }
    st.user = user;
    this.write(ok('Send your password'));
  }

  async passCommand(password: string): Promise<void> {
    const st = this.authorization();
    if (!this.plaintextAllowed) throw new Pop3Refusal('Plaintext authentication is not allowed without TLS, use STLS first', 'AUTH');
    const user = st.user;
    // RFC 1939 §7: PASS only right after a successful USER.
    if (user === null) throw new Pop3SyntaxError('USER first');
    st.user = null;
    const result = await this.deps.ctx.auth.verifyPassword(user, password, this.authMeta);
    if (!result.ok) {
      this.authFailed(result.reason);
      return;
    }
    await this.login(result.account);
  }

  async auth(mechanism: string | null, initialResponse: string | null): Promise<void> {
    const mechs = this.mechanisms();
    if (mechanism === null) {
      // RFC 1734's "AUTH" without argument lists the mechanisms; kept for old clients.
      this.write(multiline('Methods supported', mechs));
      return;
    }
    if (!mechs.includes(mechanism)) throw new Pop3Refusal('Unsupported authentication mechanism');
    let initial: Buffer | null = null;
    if (initialResponse !== null) {
      initial = decodeSaslResponse(initialResponse, true);
      if (initial === null) throw new Pop3SyntaxError('Invalid base64 in initial response');
    }
    const session = this.deps.sasl.create(mechanism, this.authMeta, this.plaintextAllowed);
    if (session === null) throw new Pop3Refusal('Unsupported authentication mechanism');
    await this.saslStep({ session, successPending: null }, initial);
  }

  private async saslContinue(exchange: SaslExchange, line: Buffer): Promise<void> {
    const st = this.authorization();
    const text = line.toString('latin1');
    if (text === '*') {
      // RFC 5034 §4: "*" cancels the exchange; the server answers -ERR.
      st.sasl = null;
      throw new Pop3Refusal('Authentication cancelled');
    }
    if (exchange.successPending !== null) {
      // The client acknowledged the server's final data (RFC 4422 §5).
      st.sasl = null;
      if (text.length > 0) throw new Pop3SyntaxError('Expected an empty response');
      await this.login(exchange.successPending);
      return;
    }
    const response = decodeSaslResponse(text, false);
    if (response === null) {
      st.sasl = null;
      throw new Pop3SyntaxError('Invalid base64 in authentication response');
    }
    await this.saslStep(exchange, response);
  }

  private async saslStep(exchange: SaslExchange, response: Buffer | null): Promise<void> {
    const st = this.authorization();
    const step = await exchange.session.step(response);
    switch (step.kind) {
      case 'challenge':
        // RFC 5034 §4: "+" SP base64 challenge.
        st.sasl = exchange;
        this.write(challenge(step.data));
        return;
      case 'success':
        if (step.data !== undefined && step.data.length > 0) {
          // RFC 5034 §4 has no data on +OK: the final data goes as a challenge first.
          st.sasl = { session: exchange.session, successPending: step.account };
          this.write(challenge(step.data));
          return;
        }
        st.sasl = null;
        await this.login(step.account);
        return;
      case 'failure':
        st.sasl = null;
        if (step.reason === 'malformed') throw new Pop3SyntaxError('Malformed authentication response');
        this.authFailed(step.reason);
        return;
    }
  }

  /** A failed login: -ERR [AUTH] for credentials (RFC 3206 §4), [SYS/PERM] for a disabled
   * account (only said after the password verified, so it reveals nothing to a guesser); the
   * connection closes after a few failures. */
  private authFailed(reason: 'invalid' | 'throttled' | 'disabled'): never {
    this.authFailures += 1;
    const [text, code] =
      reason === 'throttled'
        ? (['Too many failed logins, try again later', 'AUTH'] as const)
        : reason === 'disabled'
          ? (['Account disabled, contact your administrator', 'SYS/PERM'] as const)
          : (['Authentication failed', 'AUTH'] as const);
    if (this.authFailures >= MAX_AUTH_FAILURES_PER_CONNECTION) throw new Pop3Fatal(`${text}, closing connection`, code);
    throw new Pop3Refusal(text, code);
  }

  /** Opens the maildrop for an authenticated account (RFC 1939 §4 -> TRANSACTION). */
  private async login(account: Account): Promise<void> {
    this.authFailures = 0;
    // RFC 2449 §8.1.2 LOGIN-DELAY: the account logged in too recently.
    if (!this.deps.loginDelay.allowed(account.id)) {
      throw new Pop3Refusal('Logged in too recently, wait before logging in again', 'LOGIN-DELAY');
    }
    // RFC 2449 §8.1.1 IN-USE: one POP3 session per account; IMAP is never blocked by it.
    const release = await this.store.tryLock(`pop3:${account.id}`);
    if (release === null) throw new Pop3Refusal('Another POP3 session is open for this account', 'IN-USE');
    if (this.closing) {
      await release();
      return;
    }
    let maildrop: Maildrop;
    try {
      const inbox = await this.store.getMailbox(account.id, 'INBOX');
      if (inbox === null) throw new Error(`account ${account.id} has no INBOX`);
      maildrop = new Maildrop(inbox.id, await this.store.listEntries(inbox.id));
    } catch (error) {
      // RFC 1939 §4: a lock acquired before a negative answer is released first.
      await release();
      throw error;
    }
    if (this.closing) {
      await release();
      return;
    }
    this.state = { kind: 'transaction', account, maildrop, release };
    this.deps.loginDelay.record(account.id);
    this.user = account.address;
    this.socket.setTimeout(this.deps.options.timeouts.idleMs);
    const { count, size } = maildrop.stat();
    this.write(ok(`Maildrop has ${count} messages (${size} octets)`));
  }

  // ---- TRANSACTION ---------------------------------------------------------------------------

  async stat(): Promise<void> {
    const { count, size } = this.transaction().maildrop.stat();
    // RFC 1939 §5: "+OK nn mm", deleted messages not counted.
    this.write(ok(`${count} ${size}`));
  }

  async list(n: number | null): Promise<void> {
    const { maildrop } = this.transaction();
    if (n !== null) {
      const m = this.message(n);
      this.write(ok(scanListing(m.number, m.size)));
      return;
    }
    const { count, size } = maildrop.stat();
    this.write(multiline(`${count} messages (${size} octets)`, maildrop.live().map((m) => scanListing(m.number, m.size))));
  }

  async uidl(n: number | null): Promise<void> {
    const { maildrop } = this.transaction();
    if (n !== null) {
      const m = this.message(n);
      this.write(ok(uniqueIdListing(m.number, m.uniqueId)));
      return;
    }
    this.write(multiline('Unique-id listing follows', maildrop.live().map((m) => uniqueIdListing(m.number, m.uniqueId))));
  }

  async dele(n: number): Promise<void> {
    const m = this.message(n);
    // RFC 1939 §5: DELE only marks; the message goes at QUIT.
    m.deleted = true;
    this.write(ok(`Message ${m.number} deleted`));
  }

  async rset(): Promise<void> {
    const { maildrop } = this.transaction();
    maildrop.unmarkAll();
    const { count, size } = maildrop.stat();
    this.write(ok(`Maildrop has ${count} messages (${size} octets)`));
  }

  async noop(): Promise<void> {
    this.write(ok());
  }

  async retr(n: number): Promise<void> {
    const { maildrop } = this.transaction();
    const m = this.message(n);
    const entry = await this.currentEntry(maildrop, m);
    if (this.deps.options.retrSetsSeen && !entry.flags.includes('\\Seen')) {
      // docs/pop3-imap.md: RETR sets \Seen through the same write as an IMAP STORE, so IMAP
      // sessions are told (FETCH FLAGS) like for any other flag change.
      await this.store.setFlags(maildrop.mailboxId, [m.uid], 'add', ['\\Seen']);
    }
    // RFC 1939 §7 RETR: "+OK" then the message, byte-stuffed, then ".".
    this.write(ok(`${m.size} octets`));
    await this.sendContent(m, null);
  }

  async top(n: number, lines: number): Promise<void> {
    const { maildrop } = this.transaction();
    const m = this.message(n);
    await this.currentEntry(maildrop, m);
    // RFC 1939 §7 TOP: header, blank line, first n body lines; \Seen is not set.
    this.write(ok('Top of message follows'));
    await this.sendContent(m, new TopFilter(lines));
  }

  /** The store's entry for a maildrop message; a refusal if another session removed it. */
  private async currentEntry(maildrop: Maildrop, m: MaildropMessage): Promise<{ flags: string[] }> {
    const [entry] = await this.store.getEntries(maildrop.mailboxId, [m.uid]);
    if (entry === undefined || entry.pid !== m.pid) {
      // docs/pop3-imap.md: expunged or moved away over IMAP during this session; the number
      // stays, only its content is gone.
      throw new Pop3Refusal(`Message ${m.number} was removed by another session`);
    }
    return entry;
  }

  /** Streams a message (or its top) with byte-stuffing and backpressure. After the +OK line
   * nothing can be taken back, so a read failure closes the connection (the client sees no ".").*/
  private async sendContent(m: MaildropMessage, top: TopFilter | null): Promise<void> {
    const stuffer = new DotStuffer();
    try {
      for await (const chunk of this.store.streamBlob(m.blobHash)) {
        if (this.socket.destroyed) return;
        const part = top === null ? chunk : top.push(chunk);
        if (part.length > 0) this.write(stuffer.push(part));
        await this.drain();
        if (top?.done) break;
      }
    } catch (error) {
      const ref = randomBytes(4).toString('hex');
      this.log.error({ ref, err: error, uid: m.uid }, 'cannot read message content');
      throw new Pop3Fatal(null);
    }
    this.write(stuffer.end());
  }

  /** RFC 1939 §6 UPDATE: apply the deletions by the account's policy, release, sign off. */
  private async update(): Promise<void> {
    const { account, maildrop, release } = this.transaction();
    this.state = { kind: 'update' };
    const uids = maildrop.toRemove();
    let removed = 0;
    let failure: unknown = null;
    try {
      if (uids.length > 0) removed = await this.applyDeletes(account, maildrop, uids);
    } catch (error) {
      failure = error;
    }
    // Released before answering, so a client that reconnects right after +OK finds it free.
    await release().catch((error: unknown) => this.log.error({ err: error }, 'cannot release the POP3 lock'));
    if (failure !== null) {
      const ref = randomBytes(4).toString('hex');
      this.log.error({ cmd: 'QUIT', ref, err: failure }, 'UPDATE failed');
      // RFC 1939 §6: "-ERR some deleted messages not removed".
      this.endConnection(err(`Some deleted messages were not removed (ref ${ref})`, 'SYS/TEMP'), 'quit (update failed)');
      return;
    }
    this.endConnection(ok(`Bye, ${removed} messages removed`), 'quit');
  }

  private async applyDeletes(account: Account, maildrop: Maildrop, uids: Uid[]): Promise<number> {
    const store = this.store;
    // The policy is read now: a change made while the session was open applies at its QUIT.
    const policy = (await store.getAccount(account.id))?.pop3DeletePolicy ?? account.pop3DeletePolicy;
    // Messages that IMAP already expunged or moved are not there to remove.
    const present = (await store.getEntries(maildrop.mailboxId, uids)).map((e) => e.uid);
    if (present.length === 0) return 0;
    switch (policy) {
      case 'expunge':
        // The same operation as IMAP EXPUNGE: IMAP sessions get EXPUNGE responses.
        return (await store.expunge(maildrop.mailboxId, present)).length;
      case 'trash': {
        const trash = await this.trashMailbox(account);
        return (await store.move(maildrop.mailboxId, present, trash)).expunged.length;
      }
      case 'hide':
        await store.hideFromPop3(maildrop.mailboxId, present);
        return present.length;
    }
  }

  private async trashMailbox(account: Account): Promise<MailboxId> {
    const boxes = await this.store.listMailboxes(account.id);
    const trash = boxes.find((b) => b.specialUse === '\\Trash') ?? boxes.find((b) => b.name === 'Trash');
    if (trash !== undefined) return trash.id;
    return (await this.store.createMailbox(account.id, 'Trash', '\\Trash')).id;
  }
}

const AUTHORIZATION: readonly StateKind[] = ['authorization'];
const TRANSACTION: readonly StateKind[] = ['transaction'];
const ANY: readonly StateKind[] = ['authorization', 'transaction'];

/** The command table: which states accept each command, and its handler. */
const COMMANDS: { readonly [K in CommandName]: CommandSpec } = {
  CAPA: { states: ANY, run: (s) => s.capa() },
  QUIT: { states: ANY, run: (s) => s.quit() },
  STLS: { states: AUTHORIZATION, run: (s) => s.stls() },
  USER: { states: AUTHORIZATION, run: (s, c) => s.userCommand(narrow(c, 'USER').user) },
  PASS: { states: AUTHORIZATION, run: (s, c) => s.passCommand(narrow(c, 'PASS').password) },
  AUTH: {
    states: AUTHORIZATION,
    run: (s, c) => {
      const a = narrow(c, 'AUTH');
      return s.auth(a.mechanism, a.initialResponse);
    },
  },
  STAT: { states: TRANSACTION, run: (s) => s.stat() },
  LIST: { states: TRANSACTION, run: (s, c) => s.list(narrow(c, 'LIST').msg) },
  UIDL: { states: TRANSACTION, run: (s, c) => s.uidl(narrow(c, 'UIDL').msg) },
  RETR: { states: TRANSACTION, run: (s, c) => s.retr(narrow(c, 'RETR').msg) },
  TOP: {
    states: TRANSACTION,
    run: (s, c) => {
      const t = narrow(c, 'TOP');
      return s.top(t.msg, t.lines);
    },
  },
  DELE: { states: TRANSACTION, run: (s, c) => s.dele(narrow(c, 'DELE').msg) },
  RSET: { states: TRANSACTION, run: (s) => s.rset() },
  NOOP: { states: TRANSACTION, run: (s) => s.noop() },
};

function narrow<N extends CommandName>(c: Pop3Command, name: N): Extract<Pop3Command, { name: N }> {
  if (c.name !== name) throw new Error(`command table mismatch: ${c.name} routed to ${name}`);
  return c as Extract<Pop3Command, { name: N }>;
}

/** "::ffff:127.0.0.1" and "127.0.0.1" are the same client. */
export function normalizeIp(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return mapped?.[1] ?? ip.toLowerCase();
}
