/**
 * The receiving half of the raw transcript clients (SMTP, POP3): gathers what a socket sends and
 * wakes whoever waits for more; `ended` once it closed, ended or failed.
 */
import type { Socket } from 'node:net';

export abstract class SocketFeed {
  ended = false;
  private waiters: Array<() => void> = [];

  protected constructor(socket: Socket) {
    this.listen(socket);
  }

  /** Called with each chunk the socket delivers. */
  protected abstract received(chunk: Buffer): void;

  /** Starts gathering from another socket (after STARTTLS/STLS). */
  protected listen(socket: Socket): void {
    socket.on('data', (chunk: Buffer) => {
      this.received(chunk);
      this.wake();
    });
    const end = (): void => {
      this.ended = true;
      this.wake();
    };
    socket.on('end', end);
    socket.on('close', end);
    socket.on('error', end);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Resolves true at the next chunk or end, false after timeoutMs without either. */
  protected wait(timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), Math.max(0, timeoutMs));
      this.waiters.push(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }
}
