/** A configuration file written and read back as `facteur` reads it. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, type Config } from '../../src/config/config.js';

/** Loads a facteur.toml made of `body` under a fixed hostname. */
export async function loadConfigText(body: string): Promise<Config> {
  const dir = await mkdtemp(join(tmpdir(), 'facteur-config-'));
  try {
    await writeFile(join(dir, 'facteur.toml'), `hostname = "mail.example.test"\n${body}`);
    return await loadConfig(join(dir, 'facteur.toml'));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
