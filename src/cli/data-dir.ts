/**
 * The data directory: everything an installation keeps.
 *
 *   facteur.toml        configuration (documented; written by `facteur init`)
 *   facteur.db          the store (SQLite, WAL) unless `store` names PostgreSQL
 *   blobs/              large message bodies, content-addressed
 *   tls/HOST.crt|key    certificates, one pair per hostname (SNI)
 *   dkim/DOMAIN/        DKIM keys per domain and selector
 *   queue.db            the outbound queue
 */
import { access, constants, mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { defaultConfig, DEV_PORTS, loadConfig, PRODUCTION_PORTS, renderConfigFile, type Config } from '../config/config.js';
import { generateDkimKeys } from '../msgauth/dkim-keys.js';
import { createSelfSignedCertificate } from '../net/tls.js';
import { openStore, type OpenStoreOptions } from '../store/open.js';
import type { MailStore } from '../store/types.js';

export const CONFIG_FILE = 'facteur.toml';

export function dataDirFrom(flag: string | undefined): string {
  const dir = flag ?? process.env.FACTEUR_DATA;
  if (!dir) throw new Error('No data directory: pass --data DIR or set FACTEUR_DATA');
  return resolve(dir);
}

export async function exists(path: string): Promise<boolean> {
  return access(path).then(() => true, () => false);
}

/** Fails early, with the reason, when the directory cannot be written. */
export async function ensureWritable(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o750 });
    await access(dir, constants.W_OK | constants.X_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new Error(`Data directory ${dir} cannot be written (${code})`);
  }
}

export interface InitOptions {
  domain: string;
  hostname?: string;
  dev?: boolean;
}

/** Creates a data directory: config, self-signed certificate, database with the first domain. */
export async function initDataDir(dir: string, options: InitOptions): Promise<Config> {
  await ensureWritable(dir);
  const configPath = join(dir, CONFIG_FILE);
  if (await exists(configPath)) throw new Error(`${configPath} already exists: this data directory is initialised`);
  const domain = options.domain.toLowerCase();
  if (!/^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/.test(domain)) {
    throw new Error(`Invalid domain name: ${options.domain}`);
  }
  const hostname = (options.hostname ?? `mail.${domain}`).toLowerCase();
  const config = defaultConfig(hostname, options.dev ? DEV_PORTS : PRODUCTION_PORTS);
  if (options.dev) for (const name of Object.keys(config.listen) as Array<keyof typeof config.listen>) {
    config.listen[name] = `127.0.0.1:${DEV_PORTS[name]}`;
  }
  await createSelfSignedCertificate(join(dir, 'tls'), hostname);
  // A domain's first keys sign at once; `facteur dns` prints their records.
  await generateDkimKeys(dir, domain);
  const store = await openStore(storeLocation(dir, config.store));
  try {
    if (!(await store.isLocalDomain(domain))) await store.addDomain(domain);
  } finally {
    await store.close();
  }
  // The config file is written last: its presence means the directory is complete.
  await writeFile(configPath, renderConfigFile(config), { mode: 0o640 });
  return config;
}

/** "sqlite" means the embedded store in the data directory; anything else is a store URL. */
function storeLocation(dir: string, store: string): string {
  return store === 'sqlite' ? dir : store;
}

export async function openDataDir(dir: string, options: OpenStoreOptions = {}): Promise<{ config: Config; store: MailStore }> {
  const { config, location } = await dataDirStore(dir);
  const store = await openStore(location, options);
  return { config, store };
}

/** The configuration of a data directory and where its store is (FACTEUR_STORE applied). */
export async function dataDirStore(dir: string): Promise<{ config: Config; location: string }> {
  const configPath = join(dir, CONFIG_FILE);
  if (!(await exists(configPath))) throw new Error(`${dir} is not a Facteur data directory (no ${CONFIG_FILE}); run facteur init`);
  const config = await loadConfig(configPath);
  return { config, location: storeLocation(dir, config.store) };
}
