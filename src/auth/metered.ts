/**
 * An Authenticator that counts outcomes in the metrics registry and otherwise does exactly what
 * the one it wraps does. The composition root wraps the real authenticator with it, so every
 * protocol's logins are counted without any protocol knowing about metrics.
 */
import type { AuthMeta, AuthResult, Authenticator } from '../context.js';
import { METRIC, type Metrics } from '../lib/metrics.js';

export function meteredAuthenticator(inner: Authenticator, metrics: Metrics): Authenticator {
  const failures = metrics.counter(...METRIC.authFailures);
  const successes = metrics.counter(...METRIC.authSuccesses);
  const count = (result: AuthResult, meta: AuthMeta): AuthResult => {
    if (result.ok) successes.inc({ protocol: meta.protocol });
    else failures.inc({ protocol: meta.protocol, reason: result.reason });
    return result;
  };
  return {
    async verifyPassword(username, password, meta) {
      return count(await inner.verifyPassword(username, password, meta), meta);
    },
    scramCredentials: (username) => inner.scramCredentials(username),
    async recordScramOutcome(username, account, success, meta) {
      return count(await inner.recordScramOutcome(username, account, success, meta), meta);
    },
    async verifyTotp(account, code, meta) {
      return count(await inner.verifyTotp(account, code, meta), meta);
    },
  };
}
