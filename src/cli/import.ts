/**
 * `facteur import`: move mail in from another server (docs/operations.md, "Moving in").
 * The summary goes to stdout; the progress bar to stderr, only when stderr is a terminal.
 * Exit code 0 when every message was imported, 1 when some were skipped (listed) or on failure.
 */
import { readFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import type { MailStore } from '../store/types.js';
import { importInto, type ImportProgress, type ImportSummary } from '../import/importer.js';
import { openImapSource } from '../import/imap-source.js';
import { DEFAULT_POP3_UIDL_FORMAT, openMaildir, type DovecotMode } from '../import/maildir.js';
import { openMbox } from '../import/mbox-source.js';
import { openPop3Source } from '../import/pop3-source.js';
import type { ImportSource } from '../import/source.js';
import type { Endpoint } from '../import/connection.js';
import { parse, readPasswordStdin, UsageError, type Options } from './args.js';
import { BATCH_STORE_OPTIONS, favourSmallHeap } from './batch-memory.js';
import { dataDirFrom, openDataDir } from './data-dir.js';

const USAGE = `import maildir ADDRESS PATH [--dovecot auto|yes|no] [--pop3-uidl-format F]
  | import mbox ADDRESS FILE|DIR [--mailbox NAME] [--unescape rd|none]
  | import imap ADDRESS imap[s]://USER@HOST[:PORT] [--password-file F | --password-stdin] [--starttls] [--insecure] [--pop3-uidl-format F|none]
  | import pop3 ADDRESS pop3[s]://USER@HOST[:PORT] [--password-file F | --password-stdin] [--starttls] [--insecure]
  | import domain DOMAIN --map FILE --from maildir ROOT [--dovecot auto|yes|no]`;

const OPTIONS = {
  dovecot: { type: 'string' },
  'pop3-uidl-format': { type: 'string' },
  mailbox: { type: 'string' },
  unescape: { type: 'string' },
  'password-file': { type: 'string' },
  'password-stdin': { type: 'boolean' },
  starttls: { type: 'boolean' },
  insecure: { type: 'boolean' },
  map: { type: 'string' },
  from: { type: 'string' },
} as const;

const out = (s: string): void => {
  process.stdout.write(`${s}\n`);
};

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

/** A one-line progress bar on stderr, redrawn at most five times a second; none off a terminal. */
function progressBar(): { update(p: ImportProgress): void; done(): void } {
  if (!process.stderr.isTTY) return { update() {}, done() {} };
  let last = 0;
  let shown = false;
  return {
    update(p) {
      const now = Date.now();
      if (now - last < 200) return;
      last = now;
      const width = 30;
      const frac = p.expectedMessages > 0 ? Math.min(1, (p.messages + p.skipped) / p.expectedMessages) : 0;
      const bar = p.expectedMessages > 0 ? `[${'#'.repeat(Math.round(frac * width)).padEnd(width, '.')}] ` : '';
      const total = p.expectedMessages > 0 ? `/${p.expectedMessages}` : '';
      const line = `${bar}${p.mailbox}: ${p.messages}${total} messages, ${formatBytes(p.bytes)}`;
      process.stderr.write(`\r${line.slice(0, (process.stderr.columns || 80) - 1).padEnd((process.stderr.columns || 80) - 1)}`);
      shown = true;
    },
    done() {
      if (shown) process.stderr.write('\n');
    },
  };
}

function printSummary(address: string, source: ImportSource, s: ImportSummary): void {
  out(`${address}: imported ${s.messages} message(s), ${formatBytes(s.bytes)}, from ${source.description}`);
  for (const m of s.mailboxes) {
    const how = m.identity === 'kept' ? 'UIDVALIDITY and UIDs kept' : m.identity === 'new' ? 'new UIDs' : 'appended with new UIDs';
    out(`  ${m.name}: ${m.imported} (${how})${m.note ? `: ${m.note}` : ''}`);
  }
  if (s.alreadyPresent > 0) out(`  skipped (already imported): ${s.alreadyPresent}`);
  if (s.skipped.length > 0) {
    out(`  skipped: ${s.skipped.length}`);
    const byReason = new Map<string, string[]>();
    for (const k of s.skipped) byReason.set(k.reason, [...(byReason.get(k.reason) ?? []), k.origin]);
    for (const [reason, origins] of byReason) {
      out(`    ${origins.length} x ${reason}: ${origins.slice(0, 5).join(', ')}${origins.length > 5 ? ', ...' : ''}`);
    }
  }
  for (const w of s.warnings) out(`  warning: ${w}`);
}

async function readSecret(values: Options): Promise<string> {
  if (typeof values['password-file'] === 'string') {
    const pw = (await readFile(values['password-file'], 'utf8')).replace(/\r?\n$/, '');
    if (pw === '') throw new Error(`${values['password-file']} is empty`);
    return pw;
  }
  if (values['password-stdin']) return readPasswordStdin();
  const env = process.env.FACTEUR_IMPORT_PASSWORD;
  if (env !== undefined && env !== '') return env;
  throw new UsageError('the old server password (or app password) is needed: --password-file F, --password-stdin or FACTEUR_IMPORT_PASSWORD');
}

/** imap://, imaps://, pop3://, pop3s:// URL to an endpoint and user name. */
export function parseServerUrl(url: string, protocol: 'imap' | 'pop3', values: Options): { endpoint: Endpoint; user: string; startTls: boolean } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UsageError(`${url}: expected ${protocol}s://USER@HOST[:PORT]`);
  }
  const scheme = u.protocol.replace(/:$/, '');
  if (scheme !== protocol && scheme !== `${protocol}s`) throw new UsageError(`${url}: expected ${protocol}:// or ${protocol}s://`);
  const user = decodeURIComponent(u.username);
  if (user === '' || u.hostname === '') throw new UsageError(`${url}: the user name and the host are needed (${protocol}s://USER@HOST)`);
  const tls = scheme.endsWith('s');
  const defaults = { imap: 143, imaps: 993, pop3: 110, pop3s: 995 } as const;
  const port = u.port === '' ? defaults[scheme as keyof typeof defaults] : Number(u.port);
  const startTls = values.starttls === true;
  if (tls && startTls) throw new UsageError('--starttls is for imap:// and pop3:// (imaps:// and pop3s:// are TLS from the start)');
  const host = u.hostname.replace(/^\[|\]$/g, '');
  if (!tls && !startTls && !/^(127\.|::1$|localhost$)/.test(host)) {
    process.stderr.write(`facteur import: warning: the password goes to ${host} in clear text (use ${protocol}s:// or --starttls)\n`);
  }
  return { endpoint: { host, port, tls, insecure: values.insecure === true }, user, startTls };
}

function dovecotMode(values: Options): DovecotMode {
  const v = (values.dovecot as string | undefined) ?? 'auto';
  if (v !== 'auto' && v !== 'yes' && v !== 'no') throw new UsageError('--dovecot takes auto, yes or no');
  return v;
}

async function runOne(store: MailStore, address: string, source: ImportSource): Promise<boolean> {
  const account = await store.getAccountByAddress(address);
  if (!account) throw new Error(`No such user: ${address} (create it first: facteur user add ${address} ...)`);
  const bar = progressBar();
  let summary: ImportSummary;
  try {
    summary = await importInto(store, account.id, source, { onProgress: (p) => bar.update(p) });
  } finally {
    bar.done();
    await source.close();
  }
  printSummary(account.address, source, summary);
  return summary.skipped.length === 0;
}

async function withStore<T>(values: Options, fn: (store: MailStore) => Promise<T>): Promise<T> {
  favourSmallHeap();
  const { store } = await openDataDir(dataDirFrom(values.data as string | undefined), BATCH_STORE_OPTIONS);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

export async function importCmd(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, OPTIONS);
  const [kind, target, from, extra] = positionals;
  if (!kind || !target || extra !== undefined) throw new UsageError(USAGE);
  const uidlOption = values['pop3-uidl-format'] as string | undefined;

  if (kind === 'maildir' && from) {
    const dovecot = dovecotMode(values);
    return withStore(values, async (store) => {
      const source = await openMaildir(from, { dovecot, pop3UidlFormat: uidlOption ?? DEFAULT_POP3_UIDL_FORMAT });
      return (await runOne(store, target, source)) ? 0 : 1;
    });
  }
  if (kind === 'mbox' && from) {
    const unescape = (values.unescape as string | undefined) ?? 'rd';
    if (unescape !== 'rd' && unescape !== 'none') throw new UsageError('--unescape takes rd or none');
    return withStore(values, async (store) => {
      const source = await openMbox(from, { unescape, ...(typeof values.mailbox === 'string' ? { mailbox: values.mailbox } : {}) });
      return (await runOne(store, target, source)) ? 0 : 1;
    });
  }
  if ((kind === 'imap' || kind === 'pop3') && from) {
    const { endpoint, user, startTls } = parseServerUrl(from, kind, values);
    const password = await readSecret(values);
    return withStore(values, async (store) => {
      if (!(await store.getAccountByAddress(target))) throw new Error(`No such user: ${target} (create it first: facteur user add ${target} ...)`);
      const source =
        kind === 'imap'
          ? await openImapSource({ endpoint, startTls, user, password, pop3UidlFormat: uidlOption === 'none' ? null : (uidlOption ?? DEFAULT_POP3_UIDL_FORMAT) })
          : await openPop3Source({ endpoint, startTls, user, password });
      return (await runOne(store, target, source)) ? 0 : 1;
    });
  }
  if (kind === 'domain') {
    const mapFile = values.map;
    const fromKind = values.from;
    if (typeof mapFile !== 'string' || fromKind !== 'maildir' || !from) throw new UsageError('import domain DOMAIN --map FILE --from maildir ROOT');
    const dovecot = dovecotMode(values);
    const domain = target.toLowerCase();
    const lines = (await readFile(mapFile, 'utf8')).split(/\r?\n/);
    const pairs: Array<{ address: string; path: string }> = [];
    for (const [i, raw] of lines.entries()) {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) continue;
      const m = /^(\S+@\S+)\s+(\S.*)$/.exec(line);
      if (!m) throw new UsageError(`${mapFile}:${i + 1}: expected "address path"`);
      if (!m[1]!.toLowerCase().endsWith(`@${domain}`)) throw new UsageError(`${mapFile}:${i + 1}: ${m[1]} is not in ${domain}`);
      pairs.push({ address: m[1]!, path: isAbsolute(m[2]!) ? m[2]! : join(from, m[2]!) });
    }
    return withStore(values, async (store) => {
      const missing: string[] = [];
      for (const p of pairs) if (!(await store.getAccountByAddress(p.address))) missing.push(p.address);
      if (missing.length > 0) throw new Error(`No such user(s): ${missing.join(', ')} (create them first: facteur user import FILE)`);
      let ok = true;
      for (const p of pairs) {
        try {
          const source = await openMaildir(p.path, { dovecot, pop3UidlFormat: uidlOption ?? DEFAULT_POP3_UIDL_FORMAT });
          if (!(await runOne(store, p.address, source))) ok = false;
        } catch (err) {
          ok = false;
          process.stderr.write(`facteur import: ${p.address}: ${(err as Error).message}\n`);
        }
      }
      return ok ? 0 : 1;
    });
  }
  throw new UsageError(USAGE);
}
