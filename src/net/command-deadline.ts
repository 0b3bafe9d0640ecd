/**
 * A bound on how long one command may take to arrive once its first byte came: the defence
 * against slow senders after login (before login each protocol already requires every command
 * within its short pre-login timeout). An inactivity timeout alone does not stop a client that
 * trickles one byte just before each timeout: it keeps a command (and its buffers and its
 * connection slot) open for ever.
 *
 * A command line gets `commandMs`; each literal byte announced (IMAP `{n}`) adds 1/minBytesPerSecond
 * second, so a large APPEND over a slow link still arrives while a stalled one does not. The
 * timer is per session (no module state) and unref'd, so it never keeps the process alive.
 */

/** Time for one command line to arrive once started (also the floor for a command with literals). */
export const DEFAULT_COMMAND_TIMEOUT_MS = 60_000;
/** Floor upload rate for literal bytes: 8 KiB/s (a 50 MiB APPEND may take about 1 h 45 min). */
export const DEFAULT_MIN_UPLOAD_BYTES_PER_SECOND = 8192;

export interface CommandDeadlineOptions {
  commandMs: number;
  minBytesPerSecond: number;
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
    if (!(options.commandMs > 0) || !(options.minBytesPerSecond > 0)) {
      throw new Error(`Cannot use command deadline ${options.commandMs} ms at ${options.minBytesPerSecond} bytes/s: both must be > 0`);
    }
    this.options = options;
  }

  /** A command is partly received, with this many literal bytes announced so far: starts the
   * deadline at the first call, moves it when more literal bytes are announced. */
  track(literalBytes: number): void {
    const now = (this.options.now ?? Date.now)();
    if (this.timer === null) this.startedAt = now;
    const due = this.startedAt + this.options.commandMs + Math.ceil((literalBytes * 1000) / this.options.minBytesPerSecond);
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

  private clear(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}
