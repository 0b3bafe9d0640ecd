/**
 * A bound on how long one command may take to arrive once its first byte came: the defence
 * against slow senders after login (before login each protocol already requires every command
 * within its short pre-login timeout). An inactivity timeout alone does not stop a client that
 * trickles one byte just before each timeout: it keeps a command (and its buffers and its
 * connection slot) open for ever.
 *
 * A command line gets `commandMs`; each literal byte received (IMAP `{n}`) adds 1/minBytesPerSecond
 * second, so a large APPEND over a slow link still arrives while a stalled one does not: the
 * deadline is a minimum average rate after a grace of `commandMs` (announcing a 50 MB literal and
 * sending nothing buys no time; its budget reservation is given back when the session ends). The
 * timer is per session (no module state) and unref'd, so it never keeps the process alive.
 *
 * The same clock bounds an SMTP message (DATA body, or every chunk of a BDAT transaction), with
 * `maxMs` capping the whole phase however fast the bytes come.
 */

/** Time for one command line to arrive once started (also the floor for a command with literals). */
export const DEFAULT_COMMAND_TIMEOUT_MS = 60_000;
/** Floor upload rate for literal bytes: 8 KiB/s (a 50 MiB APPEND may take about 1 h 45 min). */
export const DEFAULT_MIN_UPLOAD_BYTES_PER_SECOND = 8192;

export interface CommandDeadlineOptions {
  commandMs: number;
  minBytesPerSecond: number;
  /** Absolute bound from the first track() call, whatever the byte count; default none. */
  maxMs?: number;
  /** Called once when a started command did not arrive in time. */
  onExpire: () => void;
  now?: () => number;
}

export class CommandDeadline {
  private timer: NodeJS.Timeout | null = null;
  private startedAt = 0;
  private dueAt = 0;
  private readonly options: CommandDeadlineOptions;

  constructor(options: CommandDeadlineOptions) {
    if (!(options.commandMs > 0) || !(options.minBytesPerSecond > 0) || (options.maxMs !== undefined && !(options.maxMs > 0))) {
      throw new Error(
        `Cannot use command deadline ${options.commandMs} ms at ${options.minBytesPerSecond} bytes/s (at most ${options.maxMs ?? 'unbounded'} ms): each must be > 0`,
      );
    }
    this.options = options;
  }

  /** A command is partly received, with this many literal bytes (SMTP: message bytes) received
   * so far: starts the deadline at the first call, moves it when the count grows. */
  track(literalBytes: number): void {
    const now = (this.options.now ?? Date.now)();
    if (this.timer === null) this.startedAt = now;
    const byRate = this.startedAt + this.options.commandMs + Math.ceil((literalBytes * 1000) / this.options.minBytesPerSecond);
    const due = this.options.maxMs === undefined ? byRate : Math.min(byRate, this.startedAt + this.options.maxMs);
    if (this.timer !== null && due === this.dueAt) return;
    this.clear();
    this.dueAt = due;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.options.onExpire();
    }, Math.max(0, due - now));
    this.timer.unref();
  }

  /** The command arrived whole, or the connection ends. */
  stop(): void {
    this.clear();
  }

  get running(): boolean {
    return this.timer !== null;
  }

  /** Milliseconds since the first track() of the running deadline (for logs). */
  elapsed(): number {
    return (this.options.now ?? Date.now)() - this.startedAt;
  }

  private clear(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}
