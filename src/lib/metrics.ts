/**
 * A small metrics registry: counters and gauges with labels, rendered in the Prometheus text
 * exposition format (version 0.0.4) for the http listener's /metrics.
 *
 * Invariants:
 * - One registry per server (an instance, no module-level state); a metric is declared once
 *   with its help text, and declaring it again returns the same metric.
 * - Label sets are bounded per metric (MAX_SERIES): a label value taken from the network can
 *   never grow memory without bound; extra series are folded into one `_overflow` series.
 * - Names and label names are checked at declaration; label values and help text are escaped
 *   when rendered, so nothing a client sends can break the exposition format.
 */

export type Labels = Readonly<Record<string, string>>;

export interface Counter {
  inc(labels?: Labels, by?: number): void;
  /** The counter of one label set, found once: its inc is an addition (for counts taken on
   * every command of every session). */
  with(labels: Labels): BoundCounter;
}

export interface BoundCounter {
  inc(by?: number): void;
}

export interface Gauge {
  set(value: number, labels?: Labels): void;
  inc(labels?: Labels, by?: number): void;
  dec(labels?: Labels, by?: number): void;
}

export interface Metrics {
  counter(name: string, help: string): Counter;
  gauge(name: string, help: string): Gauge;
  /** Called before each render: lets a module set gauges from its current state (queue size). */
  onCollect(fn: () => void | Promise<void>): void;
  /** The exposition text. */
  render(): Promise<string>;
}

/** The media type Prometheus scrapers expect for the text format. */
export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Distinct label sets kept per metric: stops a label taken from client input from growing memory. */
export const MAX_SERIES = 1000;

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

interface Family {
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  series: Map<string, { labels: Labels; value: number }>;
}

function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function seriesKey(labels: Labels): string {
  return JSON.stringify(Object.keys(labels).sort().map((k) => [k, labels[k]]));
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

export function createMetrics(): Metrics {
  const families = new Map<string, Family>();
  const collectors: Array<() => void | Promise<void>> = [];

  function family(name: string, help: string, type: Family['type']): Family {
    if (!NAME.test(name)) throw new Error(`Cannot declare metric: "${name}" is not a valid metric name`);
    const existing = families.get(name);
    if (existing) {
      if (existing.type !== type) throw new Error(`Cannot declare metric ${name} as a ${type}: it is a ${existing.type}`);
      return existing;
    }
    const f: Family = { name, help, type, series: new Map() };
    families.set(name, f);
    return f;
  }

  function add(f: Family, labels: Labels, by: number, replace: boolean): void {
    const s = series(f, labels);
    s.value = replace ? by : s.value + by;
  }

  function series(f: Family, labels: Labels): { labels: Labels; value: number } {
    for (const k of Object.keys(labels)) {
      if (!LABEL_NAME.test(k)) throw new Error(`Cannot use label "${k}" on ${f.name}: not a valid label name`);
    }
    let key = seriesKey(labels);
    let s = f.series.get(key);
    if (!s) {
      if (f.series.size >= MAX_SERIES) {
        labels = { overflow: 'true' };
        key = seriesKey(labels);
        s = f.series.get(key);
      }
      if (!s) {
        s = { labels: { ...labels }, value: 0 };
        f.series.set(key, s);
      }
    }
    return s;
  }

  return {
    counter(name, help) {
      const f = family(name, help, 'counter');
      // A counter only goes up (Prometheus relies on it to detect restarts).
      const up = (by: number): void => {
        if (by < 0) throw new Error(`Cannot decrease counter ${name}`);
      };
      return {
        inc(labels = {}, by = 1) {
          up(by);
          add(f, labels, by, false);
        },
        with(labels) {
          // The series is made at the first inc, so that a bound counter never counted is not
          // rendered, as with inc.
          let s: { value: number } | null = null;
          return {
            inc(by = 1) {
              up(by);
              (s ??= series(f, labels)).value += by;
            },
          };
        },
      };
    },
    gauge(name, help) {
      const f = family(name, help, 'gauge');
      return {
        set: (value, labels = {}) => add(f, labels, value, true),
        inc: (labels = {}, by = 1) => add(f, labels, by, false),
        dec: (labels = {}, by = 1) => add(f, labels, -by, false),
      };
    },
    onCollect(fn) {
      collectors.push(fn);
    },
    async render() {
      for (const fn of collectors) {
        try {
          await fn();
        } catch {
          // A failing collector leaves its gauges at their last value; the scrape still answers.
        }
      }
      const lines: string[] = [];
      for (const f of [...families.values()].sort((a, b) => a.name.localeCompare(b.name))) {
        lines.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`);
        for (const s of f.series.values()) {
          const keys = Object.keys(s.labels).sort();
          const labelText = keys.length === 0 ? '' : `{${keys.map((k) => `${k}="${escapeLabelValue(s.labels[k]!)}"`).join(',')}}`;
          lines.push(`${f.name}${labelText} ${formatValue(s.value)}`);
        }
      }
      return lines.join('\n') + '\n';
    },
  };
}

/** The metric names the server's modules share, declared in one place with their help text. */
export const METRIC = {
  connections: ['facteur_connections_total', 'Connections accepted, by listener.'],
  authFailures: ['facteur_auth_failures_total', 'Failed authentications, by protocol and reason.'],
  authSuccesses: ['facteur_auth_successes_total', 'Successful authentications, by protocol.'],
  httpRequests: ['facteur_http_requests_total', 'HTTP requests answered, by endpoint and status code.'],
  openConnections: ['facteur_open_connections', 'Connections open now, by listener.'],
  commands: ['facteur_commands_total', 'Commands run, by protocol and command.'],
} as const;

/**
 * Counts a protocol's commands (facteur_commands_total) by name, a bound counter per name found
 * once: an increment is then a Map lookup and an addition, on every command of every session.
 * Names must come from a closed set (the commands a grammar recognised), never the raw input.
 * A no-op without metrics.
 */
export function commandCounter(metrics: Metrics | undefined, protocol: string): (command: string) => void {
  if (!metrics) return () => {};
  const counter = metrics.counter(...METRIC.commands);
  const bound = new Map<string, BoundCounter>();
  return (command) => {
    let c = bound.get(command);
    if (c === undefined) bound.set(command, (c = counter.with({ protocol, command })));
    c.inc();
  };
}
