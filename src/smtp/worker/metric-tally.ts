/**
 * A worker's counter increments on their way to the owner (which serves /metrics).
 *
 * Posted one by one they cost a message each: every delivery's counter left in a batch of its
 * own, after the 250 (one write on the channel, and the owner woken to read it, per message:
 * a third of the channel's writes in the one-sender benchmark). Riding with the requests'
 * batches instead still cost a message per counter per batch once every SMTP command was
 * counted (about four per message, serialised by the worker and read by the owner). Here they
 * are summed per counter and label set and leave together once they have waited `maxDelayMs`
 * (one write a second at most), and at the worker's end. /metrics may therefore lag by up to
 * that delay; scrapes come every 15 s or more.
 */
import type { FromWorker } from './protocol.js';

type MetricMessage = Extract<FromWorker, { t: 'metric' }>;

export class MetricTally {
  readonly #sums = new Map<string, MetricMessage>();
  #timer: NodeJS.Timeout | null = null;
  readonly #maxDelayMs: number;
  readonly #due: () => void;

  /** `due` is called when increments have waited `maxDelayMs` with no batch to ride with. */
  constructor(maxDelayMs: number, due: () => void) {
    this.#maxDelayMs = maxDelayMs;
    this.#due = due;
  }

  add(name: string, help: string, labels: Record<string, string>, by: number): void {
    this.#add(MetricTally.key(name, labels), name, help, labels, by);
  }

  /** add for one counter and label set, its key made once (a count taken on every command). */
  bind(name: string, help: string, labels: Record<string, string>): (by: number) => void {
    const key = MetricTally.key(name, labels);
    const own = { ...labels };
    return (by) => this.#add(key, name, help, own, by);
  }

  static key(name: string, labels: Record<string, string>): string {
    // Label sets come from the same call sites, so their key order is stable.
    return `${name}\0${JSON.stringify(labels)}`;
  }

  #add(key: string, name: string, help: string, labels: Record<string, string>, by: number): void {
    const sum = this.#sums.get(key);
    if (sum !== undefined) sum.by += by;
    else this.#sums.set(key, { t: 'metric', name, help, labels: { ...labels }, by });
    if (this.#timer === null) {
      this.#timer = setTimeout(() => {
        this.#timer = null;
        this.#due();
      }, this.#maxDelayMs);
      this.#timer.unref();
    }
  }

  /** The sums so far, one message per counter and label set; the tally starts again empty. */
  take(): MetricMessage[] {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    const out = [...this.#sums.values()];
    this.#sums.clear();
    return out;
  }
}
