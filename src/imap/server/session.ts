/**
 * One IMAP connection: socket -> receiver -> dispatch (command table, state checked once) ->
 * handler -> store -> responses.
 *
 * Invariants:
 * - Commands of one connection run one at a time, in order (pipelined commands wait in the
 *   receiver; the socket is paused when too much is waiting).
 * - The state is a tagged union; the data of a state (account, selected view) lives in it.
 * - Errors are mapped once, here, at the command boundary (errors.ts).
 * - Untagged updates (EXISTS, EXPUNGE, FETCH FLAGS) are sent only while a command is in progress,
 *   and EXPUNGE never during FETCH, STORE or SEARCH by sequence number (RFC 9051 §7.5.1), unless
 *   the client asked for NOTIFY (RFC 5465 §3.1: it then listens all the time): its events are also
 *   sent between commands, never in the middle of a command's responses.
 * - Responses are written one at a time, whole (a chain of writes): a notification written between
 *   commands cannot interleave with a continuation or a response literal.
 * - Nothing is written to the socket inside a store transaction: store calls resolve after the
 *   commit (and its publication); responses are written afterwards.
 */
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { constants as zlibConstants, createDeflateRaw, createInflateRaw, type DeflateRaw, type InflateRaw } from 'node:zlib';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { AccountId, MailboxId, Uid } from '../../lib/brand.js';
import { newId } from '../../log/logger.js';
import type { AuthMeta, ServerContext } from '../../context.js';
import { saslMechanisms } from '../../sasl/session.js';
import type { Account, ChangeEvent } from '../../store/types.js';
import { StoreError } from '../../store/types.js';
import type { FetchAtt, ImapValue } from '../protocol/ast.js';
import { encodeMutf7 } from '../protocol/mutf7.js';
import { MailboxNameError, parseCommand, parseCommandName, ParseError, type Request } from '../protocol/parser.js';
import { Receiver, type RawCommand, type ReceiverEvent, type RejectCode } from '../protocol/receiver.js';
import { continuation, statusResponse, untagged, type Output, type Status } from '../protocol/serialize.js';
import { COMMANDS, type Done, type StateKind } from './commands.js';
import { BadError, ByeError, NoError, STORE_ERROR_CODES } from './errors.js';
import type { ImapServerOptions } from './options.js';
import { METADATA_LIMITS } from './handlers/metadata.js';
import { CommandDeadline, DEFAULT_COMMAND_TIMEOUT_MS, DEFAULT_MIN_UPLOAD_BYTES_PER_SECOND } from '../../net/command-deadline.js';
import { MailboxView } from './view.js';
import { Notifier } from './notify.js';
import { statusValues } from './handlers/mailboxes.js';
import { visibleMetadata } from './handlers/metadata.js';
import { fetchValues } from '../fetch/fetch.js';
import type { FetchItemCache } from '../fetch/item-cache.js';

/** Bytes waiting in the receiver while a command runs before the socket is paused: stops a
 * client from pipelining without bound while a slow command runs. */
export const MAX_PIPELINED_BYTES = 256 * 1024;
/** With COMPRESS, compressed input goes to the inflater in pieces of this size (startCompression). */
const INFLATE_PIECE = 2048;
/** Time allowed before login for each command to arrive complete (not just inactivity: bytes
 * trickled without ending a command do not extend it): short, so idle or slowly-trickling
 * unauthenticated sockets do not pile up. After login a started command has commandTimeoutMs plus
 * time for its literals (see trackCommand), so a slow link can still upload a big APPEND.
 * Option preAuthTimeoutMs. */
export const PREAUTH_TIMEOUT_MS = 60_000;
/** Size of the socket writes a batched response sequence is gathered into (Session.batched). */
const BATCH_BYTES = 64 * 1024;
const DONE: Promise<void> = Promise.resolve();

export type SessionState =
  | { kind: 'not-authenticated' }
  | { kind: 'authenticated'; account: Account }
  | { kind: 'selected'; account: Account; view: MailboxView }
  | { kind: 'logout' };

/** What the server shares with its sessions. */
export interface SessionHost {
  ctx: ServerContext;
  options: Required<Pick<ImapServerOptions, 'appendLimit' | 'idleTimeoutMs' | 'maxConnectionsPerAccount'>> & ImapServerOptions;
  /** \Recent bookkeeping (RFC 3501 §2.3.2): per mailbox, the highest UID some session has
   * already been given as recent. Kept in memory by this listener, so after a restart (or on
   * another node) messages are recent once more, which RFC 3501 allows ("SHOULD be considered
   * recent" when the server cannot tell). */
  recent: RecentTracker;
  /** FETCH items kept written out by message content, shared by the listener's sessions. */
  fetchItems: FetchItemCache;
  /** Bytes of APPEND literals all sessions may hold in memory at once, and one account's share
   * of them (null before login: no APPEND then). */
  appendBudget: { reserve(bytes: number, account: AccountId | null): boolean; release(bytes: number, account: AccountId | null): void };
  /** Counts an authenticated session of the account; false when over the limit. */
  claimAccount(id: AccountId): boolean;
  releaseAccount(id: AccountId): void;
  /** Counts a command the server knows, by name (facteur_commands_total); absent: none. */
  countCommand?: (name: string) => void;
}

export interface RecentTracker {
  /** UIDs above this have not been recent in any session yet. */
  floor(mailboxId: MailboxId): number;
  /** Takes the UIDs up to `upTo` as this session's recent ones; returns the floor before. */
  claim(mailboxId: MailboxId, upTo: number): number;
}

export class Session {
  readonly id = newId();
  log: Logger;
  readonly ctx: ServerContext;
  readonly host: SessionHost;
  state: SessionState = { kind: 'not-authenticated' };
  private loginDeadline: NodeJS.Timeout | null = null;
  /** Failed authentication attempts on this connection. */
  authFailures = 0;
  /** ENABLEd extensions (RFC 5161). */
  rev2 = false;
  utf8 = false;
  /** RFC 7162 §3.1: CONDSTORE enabled (by ENABLE or any CONDSTORE enabling command). */
  condstore = false;
  /** RFC 7162 §3.2.3: QRESYNC enabled (only by ENABLE; implies CONDSTORE). */
  qresync = false;
  /** TLS is active (implicit or after STARTTLS). */
  tls: boolean;
  readonly remoteAddress: string;
  private readonly local: boolean;
  private socket: Socket;
  /** The compressor once COMPRESS DEFLATE is active; responses are written into it. */
  private deflate: DeflateRaw | null = null;
  /** With COMPRESS: the inflater, whose output is the session's input (paused in its place). */
  private inflate: InflateRaw | null = null;
  private readonly receiver: Receiver;
  private waiter: ((ev: ReceiverEvent | null) => void) | null = null;
  private closed = false;
  private shuttingDown = false;
  private inCommand = false;
  private unsubscribe: (() => void) | null = null;
  private claimed: AccountId | null = null;
  /** Set by feed events for the selected mailbox; IDLE waits on it. */
  private changeWaiter: (() => void) | null = null;
  private changed = false;
  private commands = 0;
  /** The NOTIFY registration (RFC 5465), null before NOTIFY SET and after NOTIFY NONE. */
  notifier: Notifier | null = null;
  /** The notifications being written between commands; a command waits for it to finish. */
  private flushing: Promise<void> | null = null;
  private writeChain: Promise<void> = Promise.resolve();
  /** Writes and flushes chained and not finished (see write). */
  private chained = 0;
  /** UIDs this session itself added to the selected mailbox (APPEND, COPY) and not yet announced:
   * RFC 5465 §5.2 says no MessageNew FETCH for them. Only kept while NOTIFY asks for one. */
  private ownNew: Set<Uid> | null = null;
  /** After login: a started command must arrive in time (slow senders; see attach()). */
  private readonly commandDeadline: CommandDeadline;

  constructor(host: SessionHost, socket: Socket, tls: boolean) {
    this.host = host;
    this.ctx = host.ctx;
    this.socket = socket;
    this.tls = tls;
    this.remoteAddress = normalizeIp(socket.remoteAddress ?? '');
    // DESIGN.md invariant 5: a client on the same host may send a password in clear.
    this.local = this.remoteAddress !== '' && this.remoteAddress === normalizeIp(socket.localAddress ?? '');
    this.log = host.ctx.log.child({ cid: this.id, proto: 'imap', ip: this.remoteAddress });
    // The account is the one logged in when the literal is reserved, and still when it is given
    // back (a session never changes account).
    const budget = { reserve: (bytes: number) => host.appendBudget.reserve(bytes, this.claimed), release: (bytes: number) => host.appendBudget.release(bytes, this.claimed) };
    this.receiver = new Receiver({ appendLimit: host.options.appendLimit, budget, metadataMaxSize: METADATA_LIMITS.maxValueBytes });
    this.commandDeadline = new CommandDeadline({
      commandMs: host.options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS,
      minBytesPerSecond: host.options.minUploadBytesPerSecond ?? DEFAULT_MIN_UPLOAD_BYTES_PER_SECOND,
      onExpire: this.onSlowCommand,
    });
    this.attach(socket);
  }

  // --- Capabilities and helpers for handlers -------------------------------------------------------

  /** Passwords in clear are acceptable: TLS, same host, or configured (DESIGN.md invariant 5). */
  get plaintextOk(): boolean {
    return this.tls || this.local || this.host.options.allowPlaintextAuth === true;
  }

  get authMeta(): AuthMeta {
    return { ip: this.remoteAddress, protocol: 'imap', secure: this.plaintextOk };
  }

  /** Exactly what is implemented (RFC 9051 §6.1.1). */
  capabilities(): string[] {
    const caps = ['IMAP4rev1', 'IMAP4rev2'];
    if (this.state.kind === 'not-authenticated') {
      if (!this.tls && this.ctx.tls !== null) caps.push('STARTTLS');
      // RFC 9051 §6.2.3: LOGINDISABLED when LOGIN would be refused.
      if (!this.plaintextOk) caps.push('LOGINDISABLED');
      for (const m of saslMechanisms(this.plaintextOk)) caps.push(`AUTH=${m}`);
    }
    caps.push(
      'SASL-IR',
      'LITERAL+',
      'ENABLE',
      'IDLE',
      'NAMESPACE',
      'ID',
      'UNSELECT',
      'UIDPLUS',
      'MOVE',
      'CHILDREN',
      'LIST-EXTENDED',
      'LIST-STATUS',
      'SPECIAL-USE',
      'CREATE-SPECIAL-USE',
      'ESEARCH',
      'SEARCHRES',
      'MULTIAPPEND',
      'BINARY',
      'UTF8=ACCEPT',
      `APPENDLIMIT=${this.host.options.appendLimit}`,
      'STATUS=SIZE',
      'SAVEDATE',
      'WITHIN',
      'PREVIEW',
      'SORT',
      'SORT=DISPLAY',
      'ESORT',
      'THREAD=ORDEREDSUBJECT',
      'THREAD=REFERENCES',
      'QUOTA',
      'OBJECTID',
      'COMPRESS=DEFLATE',
      'QUOTA=RES-STORAGE',
      'QUOTA=RES-MESSAGE',
      'CONDSTORE',
      'QRESYNC',
      'NOTIFY',
      'METADATA',
      'METADATA-SERVER',
    );
    return caps;
  }

  capabilityCode(): ImapValue[] {
    return [{ atom: 'CAPABILITY' }, ...this.capabilities().map((c) => ({ atom: c }))];
  }

  /** A mailbox name as the client reads it: UTF-8, or modified UTF-7 (RFC 3501 §5.1.3). */
  mailboxOut(name: string): string {
    return this.utf8 || this.rev2 ? name : encodeMutf7(name);
  }

  /** RFC 9051 §9 QUOTED-CHAR allows UTF-8; for IMAP4rev1 only after ENABLE UTF8=ACCEPT. */
  get serializeOptions(): { utf8: boolean } {
    return { utf8: this.utf8 || this.rev2 };
  }

  account(): Account {
    if (this.state.kind !== 'authenticated' && this.state.kind !== 'selected') throw new Error('no account in this state');
    return this.state.account;
  }

  view(): MailboxView {
    if (this.state.kind !== 'selected') throw new Error('no mailbox selected');
    return this.state.view;
  }

  /**
   * A CONDSTORE enabling command (FETCH MODSEQ/CHANGEDSINCE, STORE UNCHANGEDSINCE, SEARCH MODSEQ)
   * turns CONDSTORE on; the first one issued with a mailbox selected also reports its
   * HIGHESTMODSEQ, since the SELECT happened before the client could learn it (RFC 7162 §3.1).
   */
  async enableCondstore(): Promise<void> {
    if (this.condstore) return;
    this.condstore = true;
    if (this.state.kind === 'selected') {
      await this.status('*', 'OK', [{ atom: 'HIGHESTMODSEQ' }, this.state.view.highestModSeq], 'Highest');
    }
  }

  // --- Writing ----------------------------------------------------------------------------------------

  /** Responses written while batching (see batched), not yet handed to the socket. */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private batching = 0;
  private socketFlushScheduled = false;

  /**
   * Writes one response after those already being written (see the invariants). The bytes are
   * gathered and handed to the socket once the current turn of the event loop is over (or at
   * BATCH_BYTES, or before a literal stream): the responses of a command, its tagged status and
   * whatever else was written in the same turn go out in one write instead of one each. Whoever
   * ends or switches the socket (BYE, LOGOUT, STARTTLS, COMPRESS) calls flush() first.
   */
  write(out: Output): Promise<void> {
    if (this.chained === 0 && this.gatherNow(out)) return DONE;
    return this.chain(() => this.writeNow(out));
  }

  /** Runs `step` after every write and flush already chained. */
  private chain(step: () => Promise<void>): Promise<void> {
    this.chained++;
    const run = this.writeChain.then(step).finally(() => {
      this.chained--;
    });
    this.writeChain = run.catch(() => undefined);
    return run;
  }

  /**
   * What writeNow does for responses in hand (no stream) that stay under BATCH_BYTES, done at
   * once when nothing is chained: every earlier response is then gathered or written already, so
   * the order holds. FETCH writes a response per message; the chain's promises and turns cost
   * more than gathering the bytes. False when the write must take the chain.
   */
  private gatherNow(out: Output): boolean {
    if (this.closed) return true;
    let bytes = 0;
    for (const part of out) {
      if (!Buffer.isBuffer(part)) return false;
      bytes += part.length;
    }
    if (this.pendingBytes + bytes >= BATCH_BYTES) return false;
    for (const part of out) this.gather(part as Buffer);
    if (this.batching === 0) this.scheduleSocketFlush();
    return true;
  }

  /** Adds a response's bytes to those handed to the socket together (flushPending). */
  private gather(part: Buffer): void {
    this.pending.push(part);
    this.pendingBytes += part.length;
  }

  private async writeNow(out: Output): Promise<void> {
    // Buffers are gathered as they are (flushPending joins them once): no join per response.
    for (const part of out) {
      if (this.closed) return;
      if (Buffer.isBuffer(part)) {
        this.gather(part);
        if (this.pendingBytes >= BATCH_BYTES) await this.flushPending();
      } else {
        await this.flushPending();
        const sink = this.deflate ?? this.socket;
        let sent = 0;
        for await (const chunk of part.stream) {
          if (this.closed) return;
          sent += chunk.length;
          if (!sink.write(chunk)) await this.drain(sink);
        }
        // The literal size was announced: a short stream would desynchronise the client.
        if (sent !== part.size) throw new ByeError('Internal error while sending a message');
        if (this.batching === 0) await this.flushDeflate();
      }
    }
    if (this.batching === 0) this.scheduleSocketFlush();
  }

  /** Hands what is gathered to the socket at the end of this turn of the event loop. */
  private scheduleSocketFlush(): void {
    if (this.socketFlushScheduled || this.pending.length === 0) return;
    this.socketFlushScheduled = true;
    setImmediate(() => {
      this.socketFlushScheduled = false;
      this.flush().catch(() => undefined);
    });
  }

  /** Hands every response written so far to the socket (or the compressor), now. */
  flush(): Promise<void> {
    return this.chain(() => this.flushPending());
  }

  /**
   * Runs fn with the responses it writes gathered into writes of about BATCH_BYTES: a FETCH or
   * STORE over 100,000 messages is then a few hundred socket writes rather than 100,000, each
   * still waiting for the socket to drain, so the reply is never held whole in memory.
   */
  async batched<T>(fn: () => Promise<T>): Promise<T> {
    this.batching += 1;
    try {
      return await fn();
    } finally {
      this.batching -= 1;
      // Through the write chain: after every response already queued.
      if (this.batching === 0) await this.write([]);
    }
  }

  private async flushPending(): Promise<void> {
    if (this.pending.length === 0) return;
    const data = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    if (this.closed) return;
    const sink = this.deflate ?? this.socket;
    if (!sink.write(data)) await this.drain(sink);
    await this.flushDeflate();
  }

  /** RFC 4978 §4: each response (each batch of them) is flushed so the client can decompress
   * it now. */
  private async flushDeflate(): Promise<void> {
    const deflate = this.deflate;
    if (deflate !== null && !this.closed) await new Promise<void>((resolve) => deflate.flush(zlibConstants.Z_SYNC_FLUSH, () => resolve()));
  }

  /** Waits until the sink drains or the connection ends. Never rejects: a socket error here (a
   * peer that reset the connection while a response was pending) ends the wait like a close; with
   * events.once the error rejected the write, and through `void this.bye()` (idle timeout,
   * shutdown) that was an unhandled rejection that stopped the whole process. */
  private drain(sink: Writable): Promise<void> {
    if (this.closed) return Promise.resolve();
    const socket = this.socket;
    return new Promise<void>((resolve) => {
      const done = (): void => {
        sink.off('drain', done);
        sink.off('error', done);
        socket.off('close', done);
        socket.off('error', done);
        resolve();
      };
      sink.on('drain', done);
      sink.on('error', done);
      socket.on('close', done);
      socket.on('error', done);
    });
  }

  untagged(values: readonly ImapValue[]): Promise<void> {
    return this.write(untagged(values, this.serializeOptions));
  }

  status(tag: string, status: Status, code: readonly ImapValue[] | null, text: string): Promise<void> {
    return this.write(statusResponse(tag, status, code, text, this.serializeOptions));
  }

  continue(text: string): Promise<void> {
    return this.write([continuation(text)]);
  }

  // --- Reading ----------------------------------------------------------------------------------------

  private attach(socket: Socket): void {
    socket.on('data', this.onData);
    socket.on('close', this.onClose);
    socket.on('error', this.onError);
    socket.on('timeout', this.onTimeout);
    socket.setTimeout(this.state.kind === 'not-authenticated' ? this.preAuthTimeoutMs : this.host.options.idleTimeoutMs);
  }

  private get preAuthTimeoutMs(): number {
    return this.host.options.preAuthTimeoutMs ?? PREAUTH_TIMEOUT_MS;
  }

  /** Before login: (re)starts the deadline for the next complete command (see PREAUTH_TIMEOUT_MS). */
  private armLoginDeadline(): void {
    if (this.loginDeadline !== null) clearTimeout(this.loginDeadline);
    this.loginDeadline = null;
    if (this.closed || this.state.kind !== 'not-authenticated') return;
    this.loginDeadline = setTimeout(this.onLoginDeadline, this.preAuthTimeoutMs);
    this.loginDeadline.unref();
  }

  /** The pre-login deadline bounds the client, not the server: while a command of this session
   * is being worked on (a LOGIN waiting for its turn at the password hash on a busy server) and
   * not waiting for the client's input (an AUTHENTICATE exchange), it starts again. */
  private readonly onLoginDeadline = (): void => {
    this.loginDeadline = null;
    if (this.serverBusy) this.armLoginDeadline();
    else this.onTimeout();
  };

  private detach(socket: Socket): void {
    socket.off('data', this.onData);
    socket.off('close', this.onClose);
    socket.off('error', this.onError);
    socket.off('timeout', this.onTimeout);
  }

  private readonly onData = (chunk: Buffer): void => {
    this.receiver.push(chunk);
    this.pump();
    if (this.waiter === null && this.receiver.buffered > MAX_PIPELINED_BYTES) (this.inflate ?? this.socket).pause();
    this.trackCommand();
  };

  /**
   * After login, while the session waits for input and a command is partly received, the command
   * must arrive within commandTimeoutMs plus time for its literals (net/command-deadline.ts): the
   * socket's inactivity timeout alone lets a client trickling a byte a minute hold a command open
   * for ever. Time spent running commands does not count (the deadline runs only while waiting).
   */
  private trackCommand(): void {
    if (this.closed || this.waiter === null || this.state.kind === 'not-authenticated') return;
    const partial = this.receiver.partial;
    if (partial === null) this.commandDeadline.stop();
    else this.commandDeadline.track(partial.literalBytesReceived);
  }

  private readonly onSlowCommand = (): void => {
    this.log.info({ event: 'slow-command', state: this.state.kind }, 'command not received in time');
    void this.bye('Command not received in time');
  };

  private readonly onClose = (): void => {
    this.closed = true;
    this.wake(null);
    this.notifyChange();
  };

  private readonly onError = (err: Error): void => {
    this.log.debug({ err: err.message }, 'socket error');
  };

  private readonly onTimeout = (): void => {
    // Inactivity of the client only: a command being worked on (not waiting for the client's
    // input) is the server's time: the inactivity timer starts again.
    if (this.serverBusy) {
      this.socket.setTimeout(this.state.kind === 'not-authenticated' ? this.preAuthTimeoutMs : this.host.options.idleTimeoutMs);
      return;
    }
    // RFC 9051 §5.4: autologout after at least 30 minutes of inactivity (shorter before login).
    void this.bye('Autologout; idle for too long');
  };

  /** A command is running and not waiting for input from the client. */
  private get serverBusy(): boolean {
    return this.inCommand && this.waiter === null;
  }

  private pump(): void {
    if (this.waiter === null) return;
    const ev = this.receiver.next();
    if (ev !== null) this.wake(ev);
  }

  private wake(ev: ReceiverEvent | null): void {
    // A literal's "+" does not end the command; anything else does.
    if (ev?.kind !== 'continue') this.commandDeadline.stop();
    const w = this.waiter;
    this.waiter = null;
    if (w) w(ev);
  }

  /** The next receiver event; null once the connection is closed. */
  nextEvent(): Promise<ReceiverEvent | null> {
    if (this.closed) return Promise.resolve(null);
    const ev = this.receiver.next();
    if (ev !== null) {
      if (ev.kind !== 'continue') this.commandDeadline.stop();
      return Promise.resolve(ev);
    }
    const input = this.inflate ?? this.socket;
    if (input.isPaused()) input.resume();
    const next = new Promise<ReceiverEvent | null>((resolve) => {
      this.waiter = resolve;
    });
    this.trackCommand();
    return next;
  }

  /** Reads one raw line (AUTHENTICATE responses, IDLE's DONE); null when the connection closed. */
  readLine(): Promise<Buffer | null> {
    this.receiver.readLine();
    // Not an async function: IDLE keeps this promise while it waits, and a suspended async
    // function keeps its frame too.
    return this.nextEvent().then(lineOf);
  }

  // --- Change feed ------------------------------------------------------------------------------------

  subscribe(accountId: AccountId): void {
    this.unsubscribe?.();
    this.unsubscribe = this.ctx.store.feed.subscribe(accountId, this.onChange);
  }

  private readonly onChange = (event: ChangeEvent): void => {
    const selectedId = this.state.kind === 'selected' ? this.state.view.mailbox.id : null;
    if (this.notifier !== null && this.notifier.push(event, selectedId)) {
      // RFC 5465 §3.1: sent now (between commands) or at the end of the running command.
      this.notifyChange();
      if (!this.inCommand) this.scheduleFlush();
      return;
    }
    if (selectedId === null || event.mailboxId !== selectedId) return;
    this.notifyChange();
  };

  /** Records UIDs this session added to its selected mailbox (see ownNew). */
  markOwnNew(uids: readonly Uid[]): void {
    if (this.notifier?.selected?.fetchAtts == null) return;
    this.ownNew ??= new Set();
    for (const u of uids) this.ownNew.add(u);
  }

  /** Runs a store write of this session's own, whose mailbox-list and annotation changes are not
   * notified back to it (RFC 5465 §5). */
  ownChange<T>(run: () => Promise<T>): Promise<T> {
    return this.notifier === null ? run() : this.notifier.own(run);
  }

  /** During IDLE, whether changes of the selected mailbox are pushed: always without NOTIFY;
   * with it, only when it asked for them (RFC 5465 §4: IDLE sends exactly NOTIFY's events). */
  get idlePushesSelected(): boolean {
    return this.notifier === null || this.notifier.pushesSelected;
  }

  /** Starts writing pending notifications between commands, unless it is already running. */
  private scheduleFlush(): void {
    if (this.flushing !== null || this.closed) return;
    this.flushing = (async () => {
      while (!this.inCommand && !this.closed && this.notifier?.hasPending === true) await this.flushNotifications(false);
    })()
      .catch((err: unknown) => {
        if (err instanceof ByeError) void this.bye(err.message);
        else this.log.error({ err }, 'notification failed');
      })
      .finally(() => {
        this.flushing = null;
      });
  }

  /**
   * Sends what NOTIFY asked for and is pending: the selected mailbox's changes (when it asked for
   * them; `inIdle` or SELECTED allow EXPUNGE, SELECTED-DELAYED holds it for a command, §6.1),
   * then LIST, STATUS and METADATA responses for the rest. After an overflow: the untagged
   * NOTIFICATIONOVERFLOW, and NOTIFY is off (§5.8).
   */
  async flushNotifications(inIdle: boolean): Promise<void> {
    const n = this.notifier;
    if (n === null || this.closed) return;
    if (n.overflowed) {
      this.notifier = null;
      await this.status('*', 'OK', [{ atom: 'NOTIFICATIONOVERFLOW' }], 'Too many changes to report; notifications are off');
      return;
    }
    const selectedChanged = n.takeSelected();
    if (this.state.kind === 'selected' && selectedChanged && n.selected !== null) await this.syncView(inIdle || !n.selected.delayed);
    const selectedId = this.state.kind === 'selected' ? this.state.view.mailbox.id : null;
    const responses = await n.drain(
      {
        store: this.ctx.store,
        accountId: this.account().id,
        condstore: this.condstore,
        mailboxOut: (name) => this.mailboxOut(name),
        status: (mb, items) => statusValues(this, mb, items, false),
        metadataNames: async (id) => (await visibleMetadata(this, id)).map((e) => e.name),
      },
      selectedId,
    );
    for (const r of responses) await this.untagged(r);
  }

  private notifyChange(): void {
    this.changed = true;
    const w = this.changeWaiter;
    this.changeWaiter = null;
    if (w) w();
  }

  /** Resolves at the next change of the selected mailbox (or at once if one is pending). */
  waitForChange(): Promise<void> {
    if (this.changed || this.closed || this.shuttingDown) {
      this.changed = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.changeWaiter = () => {
        this.changed = false;
        resolve();
      };
    });
  }

  /** Forgets a change seen but not waited for: the sync that follows covers it. */
  clearChange(): void {
    this.changed = false;
  }

  /** Drops a pending waitForChange (its race was lost), so it cannot swallow a later change. */
  cancelChangeWait(): void {
    this.changeWaiter = null;
  }

  get isShuttingDown(): boolean {
    return this.shuttingDown || this.closed;
  }

  /** Sends the view's pending updates (EXISTS, EXPUNGE when allowed, FETCH FLAGS). */
  async syncView(allowExpunge: boolean): Promise<void> {
    if (this.state.kind !== 'selected') return;
    this.changed = false;
    const view = this.state.view;
    const known = view.uids.length > 0 ? view.uids[view.uids.length - 1]! : 0;
    // RFC 5465 §5.1: when NOTIFY names the selected mailbox without FlagChange, flag changes of
    // others are not reported.
    const flags = this.notifier?.selected?.events.has('FlagChange') ?? true;
    let updates: ImapValue[][];
    try {
      updates = await view.sync(this.ctx.store, allowExpunge, this.host.recent, { modseq: this.condstore, vanished: this.qresync, flags });
    } catch (err) {
      if (err instanceof StoreError && err.code === 'not-found') throw this.selectedGone();
      throw err;
    }
    // Most syncs find nothing to say: no batch, no promise for it (every command syncs).
    if (updates.length > 0) {
      await this.batched(async () => {
        for (const u of updates) await this.untagged(u);
      });
    }
    this.notifier?.clearSelected();
    if (this.notifier !== null) await this.fetchNew(view, known);
  }

  /** RFC 5465 §5.2: after EXISTS, a FETCH of the attributes MessageNew asked for, for each new
   * message. Body sections are read as PEEK: a notification never sets \Seen. */
  private async fetchNew(view: MailboxView, known: number): Promise<void> {
    const spec = this.notifier?.selected;
    if (spec === undefined || spec === null || spec.fetchAtts === null || !spec.events.has('MessageNew')) return;
    const own = this.ownNew;
    const fresh: Uid[] = [];
    for (let i = view.exists - 1; i >= 0 && view.uidAt(i) > known; i--) if (own?.has(view.uidAt(i)) !== true) fresh.push(view.uidAt(i));
    fresh.reverse();
    this.ownNew = null;
    if (fresh.length === 0) return;
    let atts: FetchAtt[] = spec.fetchAtts.map((a) => (a.kind === 'BODY[]' || a.kind === 'BINARY[]' ? { ...a, peek: true } : a));
    if (!atts.some((a) => a.kind === 'UID')) atts = [{ kind: 'UID' }, ...atts];
    if (this.condstore && !atts.some((a) => a.kind === 'MODSEQ')) atts.push({ kind: 'MODSEQ' });
    const opts = { rev2: this.rev2, utf8Accept: this.utf8 || this.rev2, cache: this.host.fetchItems };
    for await (const entry of view.entriesOf(this.ctx.store, fresh)) {
      const uid = entry.uid;
      let values: ImapValue[];
      try {
        values = await fetchValues(atts, { entry, store: this.ctx.store, recent: view.isRecent(uid) }, opts);
      } catch (err) {
        // Expunged meanwhile, or undecodable: the EXISTS was sent; the client can FETCH itself.
        this.log.debug({ err: (err as Error).message, uid }, 'notification fetch skipped');
        continue;
      }
      await this.untagged([view.seqOf(uid), { atom: 'FETCH' }, values]);
    }
  }

  /** The selected mailbox was deleted by another session: its sequence numbers mean nothing any
   * more and cannot be expunged one by one, so the session ends (as Dovecot does). */
  private selectedGone(): ByeError {
    return new ByeError('Selected mailbox was deleted, have to disconnect');
  }

  // --- State changes -------------------------------------------------------------------------------------

  /** After a successful LOGIN or AUTHENTICATE. Throws NoError when over the connection limit. */
  login(account: Account): void {
    if (!this.host.claimAccount(account.id)) throw new NoError('LIMIT', 'Too many connections for this account');
    this.claimed = account.id;
    this.state = { kind: 'authenticated', account };
    this.receiver.setAuthenticated(true);
    this.subscribe(account.id);
    this.armLoginDeadline();
    this.socket.setTimeout(this.host.options.idleTimeoutMs);
    // Added to this session's own logger rather than a child of it: one logger per connection.
    this.log.setBindings({ account: account.address });
  }

  select(view: MailboxView): void {
    this.state = { kind: 'selected', account: this.account(), view };
    this.changed = false;
    this.ownNew = null;
  }

  unselect(): void {
    if (this.state.kind === 'selected') this.state = { kind: 'authenticated', account: this.state.account };
  }

  get compressing(): boolean {
    return this.deflate !== null;
  }

  /**
   * COMPRESS=DEFLATE (RFC 4978): from now on both directions are raw DEFLATE streams. Bytes the
   * client already sent after its command are compressed ones and go through the inflater too.
   *
   * Input is bounded as without compression: the session pauses the inflater's output (not the
   * socket) when enough is pipelined; the inflater then holds its input, and the socket is paused
   * while the inflater's input is full. Compressed bytes go in by INFLATE_PIECE, so that what one
   * piece inflates to (DEFLATE reaches about 1,000 to 1) is all that can wait beyond the bound.
   */
  startCompression(): void {
    const raw = this.socket;
    const pending = this.receiver.takeBuffered();
    const inflate = createInflateRaw();
    const deflate = createDeflateRaw();
    const feed = (chunk: Buffer): void => {
      let room = true;
      for (let i = 0; i < chunk.length; i += INFLATE_PIECE) room = inflate.write(chunk.subarray(i, i + INFLATE_PIECE));
      if (!room) raw.pause();
    };
    raw.off('data', this.onData);
    raw.on('data', feed);
    inflate.on('drain', () => raw.resume());
    inflate.on('data', this.onData);
    this.inflate = inflate;
    // Corrupt compressed input cannot be resynchronised: the connection ends.
    inflate.on('error', () => this.destroy());
    deflate.on('error', () => this.destroy());
    deflate.on('data', (chunk: Buffer) => {
      if (!raw.write(chunk)) deflate.pause();
    });
    raw.on('drain', () => deflate.resume());
    this.deflate = deflate;
    if (pending.length > 0) feed(pending);
  }

  /** STARTTLS (RFC 9051 §6.2.1): drop what was pipelined in clear, then handshake. */
  async startTls(): Promise<void> {
    const tlsProvider = this.ctx.tls;
    if (tlsProvider === null) throw new Error('no TLS provider');
    // RFC 3501 §6.2.1 / CVE-2011-0411: bytes sent in clear after STARTTLS must not be executed.
    this.receiver.discardBuffered();
    const raw = this.socket;
    raw.pause();
    this.detach(raw);
    const secure = new TLSSocket(raw, { isServer: true, ...tlsProvider.serverOptions() });
    this.socket = secure;
    this.attach(secure);
    try {
      await Promise.race([
        once(secure, 'secure'),
        once(secure, 'close').then(() => {
          throw new Error('closed during TLS handshake');
        }),
      ]);
    } catch (err) {
      throw new ByeError(`TLS handshake failed: ${(err as Error).message}`);
    }
    this.tls = true;
    secure.resume();
  }

  // --- Main loop ----------------------------------------------------------------------------------------

  async run(greeting = true): Promise<void> {
    const started = Date.now();
    try {
      if (greeting) await this.status('*', 'OK', this.capabilityCode(), `${this.ctx.hostname} IMAP ready`);
      this.armLoginDeadline();
      while (!this.closed && this.state.kind !== 'logout' && !this.shuttingDown) {
        const ev = await this.nextEvent();
        // A literal's "+" does not restart the deadline; a complete (or refused) command does.
        if (ev !== null && ev.kind !== 'continue') this.armLoginDeadline();
        if (ev === null) break;
        if (ev.kind === 'continue') {
          await this.continue('Ready for literal');
          continue;
        }
        if (ev.kind === 'line') continue; // cannot happen outside line mode
        if (ev.kind === 'reject') {
          if (ev.tag !== null) await this.status(ev.tag, ev.status, rejectCode(ev.code, ev.limit), ev.text);
          else await this.status('*', 'BAD', null, ev.text);
          if (ev.fatal) {
            await this.bye(ev.text);
            break;
          }
          continue;
        }
        this.inCommand = true;
        try {
          // Notifications being written between commands finish first (RFC 5465 §3.1).
          if (this.flushing !== null) await this.flushing;
          await this.execute(ev.command);
        } finally {
          this.receiver.release(ev.command);
          this.inCommand = false;
        }
        if (this.notifier?.hasPending === true) this.scheduleFlush();
      }
      if (this.shuttingDown && !this.closed) await this.bye('Server shutting down');
    } catch (err) {
      this.log.error({ err }, 'session failed');
    } finally {
      // LOGOUT's BYE and OK, or a refusal before a fatal close, may still be gathered.
      if (!this.closed) await this.flush().catch(() => undefined);
      this.cleanup();
      this.log.info({ commands: this.commands, ms: Date.now() - started }, 'connection closed');
    }
  }

  /** Closes the session: BYE now if no command is running, else after it (up to close()). */
  shutdown(): void {
    this.shuttingDown = true;
    this.notifyChange();
    if (!this.inCommand) void this.bye('Server shutting down');
  }

  destroy(): void {
    this.socket.destroy();
  }

  async bye(text: string): Promise<void> {
    if (this.closed) return;
    try {
      await this.status('*', 'BYE', null, text);
      await this.flush();
    } catch (err) {
      // The connection is ending anyway; callers use `void this.bye()`, so nothing may escape.
      this.log.debug({ err: (err as Error).message }, 'BYE not sent');
    } finally {
      this.closed = true;
      this.socket.end();
      // A client that does not read cannot keep the socket: destroy after a short while.
      setTimeout(() => this.socket.destroy(), 2000).unref();
      this.wake(null);
    }
  }

  private cleanup(): void {
    this.commandDeadline.stop();
    if (this.loginDeadline !== null) clearTimeout(this.loginDeadline);
    this.loginDeadline = null;
    this.receiver.dispose();
    this.unsubscribe?.();
    this.unsubscribe = null;
    if (this.claimed !== null) this.host.releaseAccount(this.claimed);
    this.claimed = null;
    if (!this.closed) {
      this.closed = true;
      this.socket.end();
      setTimeout(() => this.socket.destroy(), 2000).unref();
    }
  }

  private async selectedMailboxGone(): Promise<boolean> {
    if (this.state.kind !== 'selected') return false;
    return (await this.ctx.store.getMailboxById(this.state.view.mailbox.id)) === null;
  }

  private async execute(raw: RawCommand): Promise<void> {
    const started = Date.now();
    this.commands++;
    let tag = raw.tag ?? '*';
    let name = '';
    let outcome: Status = 'OK';
    let code: string | undefined;
    try {
      let head: { tag: string; name: string };
      try {
        head = parseCommandName(raw);
      } catch (err) {
        if (err instanceof ParseError) throw new BadError(raw.tag === null ? 'Missing or invalid tag' : err.message);
        throw err;
      }
      tag = head.tag;
      name = head.name;
      const entry = COMMANDS.get(name);
      if (entry === undefined) throw new BadError('Unknown command');
      this.host.countCommand?.(name);
      if (!entry.states.includes(this.state.kind as StateKind)) throw new BadError(stateMessage(this.state.kind, entry.states));
      let request: Request;
      try {
        request = parseCommand(raw, { utf8: this.utf8 || this.rev2 }).request;
      } catch (err) {
        if (err instanceof ParseError) throw new BadError(err.message);
        if (err instanceof MailboxNameError) throw new NoError('CANNOT', 'Invalid mailbox name');
        throw err;
      }
      const done: Done | void = await entry.run(this, tag, request);
      if (this.closed) return;
      if (this.state.kind === 'selected' && (done?.sync ?? true)) {
        await this.syncView(entry.expungeAllowed(request));
      }
      if ((done?.sync ?? true) && this.state.kind !== 'not-authenticated' && this.notifier !== null) await this.flushNotifications(false);
      await this.status(tag, 'OK', done?.code ?? null, done?.text ?? `${name} completed`);
      if (done?.after) {
        // What follows may switch the socket (STARTTLS, COMPRESS): the OK goes out first as it is.
        await this.flush();
        await done.after();
      }
    } catch (err) {
      if (this.closed && !(err instanceof ByeError)) return;
      if (err instanceof BadError) {
        outcome = 'BAD';
        await this.status(tag, 'BAD', err.code, err.message);
      } else if (err instanceof NoError) {
        outcome = 'NO';
        code = err.code && err.code[0] && typeof err.code[0] === 'object' && 'atom' in err.code[0] ? err.code[0].atom : undefined;
        await this.status(tag, 'NO', err.code, err.message);
      } else if (err instanceof StoreError && err.code === 'not-found' && (await this.selectedMailboxGone())) {
        outcome = 'BYE';
        await this.bye(this.selectedGone().message);
      } else if (err instanceof StoreError) {
        outcome = 'NO';
        const mapped = STORE_ERROR_CODES[err.code];
        code = mapped.code;
        await this.status(tag, 'NO', [{ atom: mapped.code }], mapped.text);
      } else if (err instanceof ByeError) {
        outcome = 'BYE';
        await this.bye(err.message);
      } else {
        outcome = 'NO';
        code = 'SERVERBUG';
        const id = newId();
        this.log.error({ err, errorId: id, cmd: name }, 'command failed');
        // DESIGN.md Errors: the client gets a short text and a correlation id, never internals.
        await this.status(tag, 'NO', [{ atom: 'SERVERBUG' }], `Internal error, reference ${id}`);
      }
    } finally {
      const fields = { tag, cmd: name, status: outcome, code, ms: Date.now() - started };
      if (outcome === 'OK' || outcome === 'BAD') this.log.debug(fields, 'command');
      else if (code === 'SERVERBUG') this.log.error(fields, 'command');
      else this.log.info(fields, 'command');
    }
  }
}

/** What readLine resolves to for a receiver event in line mode. */
function lineOf(ev: ReceiverEvent | null): Buffer | null {
  if (ev === null) return null;
  if (ev.kind === 'line') return ev.line;
  if (ev.kind === 'reject' && ev.fatal) throw new ByeError(ev.text);
  throw new BadError('Unexpected input');
}

/** The response code of a refusal by the receiver. */
function rejectCode(code: RejectCode | null, limit: number | undefined): ImapValue[] | null {
  if (code === null) return null;
  // RFC 5464 §4.3: [METADATA MAXSIZE n].
  if (code === 'METADATA MAXSIZE') return [{ atom: 'METADATA' }, { atom: 'MAXSIZE' }, limit ?? 0];
  return [{ atom: code }];
}

function stateMessage(state: SessionState['kind'], allowed: readonly StateKind[]): string {
  if (state === 'not-authenticated') return 'Log in first';
  if (allowed.includes('selected') && !allowed.includes('authenticated')) return 'No mailbox selected';
  if (allowed.length === 1 && allowed[0] === 'not-authenticated') return 'Already logged in';
  return 'Command not allowed in this state';
}

function normalizeIp(ip: string): string {
  return ip.startsWith('::ffff:') ? ip.slice(7) : ip;
}
