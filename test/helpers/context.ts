/**
 * A ServerContext for tests: a fresh store (temp data directory), an authenticator, a silent
 * logger (FACTEUR_TEST_LOG=debug shows logs) and a self-signed certificate for the test hostname.
 * `cleanup()` checks the store's invariants (the test fails on any problem) and removes everything.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type LevelWithSilent } from 'pino';
import { createAuthenticator } from '../../src/auth/authenticator.js';
import { createCredentials } from '../../src/auth/password.js';
import type { ServerContext } from '../../src/context.js';
import { createSelfSignedCertificate, loadTlsDirectory, type FileTlsProvider } from '../../src/net/tls.js';
import type { Account } from '../../src/store/types.js';
import { openTestStore } from './store.js';

export const TEST_HOSTNAME = 'mail.example.test';

export interface TestContext extends ServerContext {
  dataDir: string;
  tls: FileTlsProvider;
  addUser(address: string, password: string): Promise<Account>;
  cleanup(): Promise<void>;
}

let tlsDir: Promise<string> | null = null;

/** One certificate per test process: openssl runs once. */
export function testTlsDir(): Promise<string> {
  tlsDir ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), 'facteur-tls-'));
    await createSelfSignedCertificate(dir, TEST_HOSTNAME);
    return dir;
  })();
  return tlsDir;
}

export async function makeTestContext(options: { authOptions?: Parameters<typeof createAuthenticator>[1] } = {}): Promise<TestContext> {
  const { store, dir, cleanup } = await openTestStore();
  const tls = await loadTlsDirectory(await testTlsDir(), TEST_HOSTNAME);
  const log = pino({ level: (process.env.FACTEUR_TEST_LOG ?? 'silent') as LevelWithSilent });
  const auth = createAuthenticator(store, options.authOptions);
  return {
    hostname: TEST_HOSTNAME,
    store,
    log,
    auth,
    tls,
    dataDir: dir,
    async addUser(address, password) {
      const domain = address.slice(address.lastIndexOf('@') + 1).toLowerCase();
      if (!(await store.isLocalDomain(domain))) await store.addDomain(domain);
      return store.createAccount({ address, ...(await createCredentials(password)) });
    },
    cleanup,
  };
}
