/**
 * TLS material: certificates per hostname (SNI), TLS 1.2 minimum, reloaded when the files change.
 *
 * Certificates live in the data directory as `tls/<hostname>.crt` + `tls/<hostname>.key` (PEM).
 * The first one loaded (or the configured default hostname) answers clients without SNI.
 *
 * Reload without a timer: a handshake that finds the last check older than `checkIntervalMs`
 * starts a re-scan in the background (stat of each file; only changed pairs are re-read). That
 * handshake is served with the certificate it found; later ones get the new one. A pair that fails
 * to load (a key replaced before its certificate, a half-written file) keeps the old context, and
 * is retried at the next check. STARTTLS upgrades and SNI lookups go through `pick` and so see a
 * reloaded certificate; an implicit-TLS listener (tls.Server) fixes its default certificate at
 * creation, so it calls `followDefaultCertificate` to be given the new one.
 */
import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { createSecureContext, type SecureContext, type Server as TlsServer, type TlsOptions } from 'node:tls';
import { promisify } from 'node:util';
import type { TlsProvider } from '../context.js';

const run = promisify(execFile);

interface Loaded {
  hostname: string;
  cert: Buffer;
  key: Buffer;
  context: SecureContext;
  mtimeMs: number;
}

/** Modern settings: TLS 1.2+, server cipher order; Node's default cipher list is already AEAD-first. */
const BASE_OPTIONS: TlsOptions = {
  minVersion: 'TLSv1.2',
  honorCipherOrder: true,
};

export interface FileTlsProvider extends TlsProvider {
  /** Re-reads certificates whose files changed; returns the hostnames reloaded. */
  reload(): Promise<string[]>;
  hostnames(): string[];
}

export interface TlsDirectoryOptions {
  /** At most this often a handshake triggers a check of the files for changes (default 60 s;
   * 0: every handshake). */
  checkIntervalMs?: number;
  /** Reports a pair that failed to reload (the old one stays in use). */
  onReloadError?: (err: Error) => void;
  now?: () => number;
}

/** Loads every `*.crt`/`*.key` pair in dir. */
export async function loadTlsDirectory(dir: string, defaultHostname: string, options: TlsDirectoryOptions = {}): Promise<FileTlsProvider> {
  const byHost = new Map<string, Loaded>();
  const checkIntervalMs = options.checkIntervalMs ?? 60_000;
  const now = options.now ?? Date.now;
  let lastCheck = now();
  let checking: Promise<unknown> | null = null;

  async function loadPair(hostname: string): Promise<Loaded> {
    const certPath = join(dir, `${hostname}.crt`);
    const keyPath = join(dir, `${hostname}.key`);
    const [cert, key, st] = await Promise.all([readFile(certPath), readFile(keyPath), stat(certPath)]);
    let context: SecureContext;
    try {
      context = createSecureContext({ ...BASE_OPTIONS, cert, key });
    } catch (err) {
      throw new Error(`Cannot load certificate ${certPath}: ${(err as Error).message}`);
    }
    return { hostname, cert, key, context, mtimeMs: st.mtimeMs };
  }

  /** Loads changed pairs. tolerant: a pair that fails keeps its old context (reloads), instead
   * of failing the whole load (first start, where a broken pair is a configuration error). */
  async function scan(tolerant = false): Promise<string[]> {
    lastCheck = now();
    const names = (await readdir(dir)).filter((n) => n.endsWith('.crt')).map((n) => n.slice(0, -4));
    const changed: string[] = [];
    for (const host of names) {
      const st = await stat(join(dir, `${host}.crt`)).catch(() => null);
      const old = byHost.get(host.toLowerCase());
      if (st && old && old.mtimeMs === st.mtimeMs) continue;
      try {
        byHost.set(host.toLowerCase(), await loadPair(host));
      } catch (err) {
        if (!tolerant) throw err;
        options.onReloadError?.(err as Error);
        continue;
      }
      changed.push(host);
    }
    return changed;
  }

  function maybeReload(): void {
    if (checking !== null || now() - lastCheck < checkIntervalMs) return;
    checking = scan(true)
      .catch((err: Error) => options.onReloadError?.(err))
      .finally(() => {
        checking = null;
      });
  }

  await scan();
  if (byHost.size === 0) throw new Error(`No certificate in ${dir} (expected <hostname>.crt and <hostname>.key)`);

  function pick(servername?: string): Loaded {
    maybeReload();
    const name = servername?.toLowerCase();
    if (name) {
      const exact = byHost.get(name);
      if (exact) return exact;
      // A wildcard certificate file is named with a leading "_" for "*" (e.g. _.example.test.crt).
      const dot = name.indexOf('.');
      const wild = dot > 0 ? byHost.get(`_${name.slice(dot)}`) : undefined;
      if (wild) return wild;
    }
    const def = byHost.get(defaultHostname.toLowerCase()) ?? byHost.values().next().value;
    if (!def) throw new Error('No certificate loaded');
    return def;
  }

  return {
    serverOptions(): TlsOptions {
      const def = pick();
      return {
        ...BASE_OPTIONS,
        cert: def.cert,
        key: def.key,
        SNICallback: (servername, cb) => {
          try {
            cb(null, pick(servername).context);
          } catch (err) {
            cb(err as Error);
          }
        },
      };
    },
    secureContext: (servername) => pick(servername).context,
    reload: () => scan(true),
    hostnames: () => [...byHost.keys()],
  };
}

/**
 * Keeps a tls.Server's default certificate (what clients without SNI get) in step with the
 * provider: each new connection asks the provider for its current default context (which also
 * runs the periodic file check), and when that changed the server gets the new pair. Node's
 * handshake listener runs first, so that connection still gets the previous certificate; the next
 * ones get the new one.
 */
export function followDefaultCertificate(server: TlsServer, provider: TlsProvider): void {
  let current = provider.secureContext();
  server.on('connection', () => {
    const latest = provider.secureContext();
    if (latest === current) return;
    current = latest;
    server.setSecureContext(provider.serverOptions());
  });
}

/**
 * Creates a self-signed certificate for hostname (ECDSA P-256, SAN = hostname) with the system's
 * openssl, for first start and tests. Production installs replace the pair with a CA-issued one.
 */
export async function createSelfSignedCertificate(dir: string, hostname: string, days = 825): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (!/^[A-Za-z0-9.-]{1,253}$/.test(hostname)) throw new Error(`Invalid hostname for a certificate: ${hostname}`);
  try {
    await run('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', join(dir, `${hostname}.key`), '-out', join(dir, `${hostname}.crt`),
      '-days', String(days), '-subj', `/CN=${hostname}`, '-addext', `subjectAltName=DNS:${hostname}`,
    ]);
  } catch (err) {
    throw new Error(`Cannot create a self-signed certificate with openssl (is it installed?): ${(err as Error).message}`);
  }
}
