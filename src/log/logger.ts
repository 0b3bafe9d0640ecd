/**
 * Logging: JSON lines through pino. One line per connection and per command outcome, each with
 * the connection id (`cid`) from the session's child logger.
 */
import { pino, type Logger, type LevelWithSilent } from 'pino';
import { randomBytes } from 'node:crypto';

export type { Logger };

export interface LogOptions {
  level?: LevelWithSilent;
  /** File descriptor or path; stdout by default. */
  destination?: number | string;
}

export function createLogger(options: LogOptions = {}): Logger {
  const dest = pino.destination({ dest: options.destination ?? 1, sync: false });
  return pino({ level: options.level ?? 'info', base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, dest);
}

export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/** A short random id for a connection or an error report (the correlation id a client sees). */
export function newId(): string {
  return randomBytes(6).toString('base64url');
}
