/**
 * An SMTP/LMTP/submission server on 127.0.0.1 port 0 over a fresh test context, and readers for
 * what got stored.
 */
import { makeTestContext, type TestContext } from '../helpers/context.js';
import { createSmtpServer, type SmtpServerOptions } from '../../src/smtp/server/server.js';
import type { AccountId } from '../../src/lib/brand.js';
import type { ListeningServer } from '../../src/context.js';
import type { SmtpWorkersOptions } from '../../src/smtp/worker/pool.js';

export interface Harness {
  ctx: TestContext;
  port: number;
  server: ListeningServer;
  /** Raw messages stored in the account's mailbox, in UID order. */
  messages(account: AccountId, mailbox?: string): Promise<Buffer[]>;
  close(): Promise<void>;
}

export async function startServer(options: Partial<SmtpServerOptions> = {}, ctxIn?: TestContext): Promise<Harness> {
  const ctx = ctxIn ?? (await makeTestContext());
  const server = createSmtpServer(ctx, { mode: 'mx', ...options });
  const port = await server.listen('127.0.0.1', 0);
  return {
    ctx,
    port,
    server,
    async messages(account, mailbox = 'INBOX') {
      const mb = await ctx.store.getMailbox(account, mailbox);
      if (!mb) throw new Error(`no mailbox ${mailbox}`);
      const entries = await ctx.store.listEntries(mb.id);
      return Promise.all(entries.map((e) => ctx.store.readBlob(e.blobHash)));
    },
    async close() {
      await server.close(1000);
      await ctx.cleanup();
    },
  };
}

/** DATA encoding of a message: CRLF at the end, dot-stuffed (RFC 5321 §4.5.2), terminator. */
export function dotStuff(raw: Buffer | string): string {
  let text = typeof raw === 'string' ? raw : raw.toString('latin1');
  if (!text.endsWith('\r\n')) text += '\r\n';
  return `${text.replace(/^\./gm, '..')}.\r\n`;
}

/** Whether a process (an SMTP worker) is still running. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** MX worker options for tests: one worker, no message authentication, no TLS, no limits but
 * the given ones. */
export function mxWorkerOptions(extra: Partial<SmtpWorkersOptions> = {}): SmtpWorkersOptions {
  return {
    mode: 'mx',
    workers: 1,
    resolver: null,
    limits: { maxConnectionsPerIp: 100 },
    logLevel: 'silent',
    tlsDir: null,
    greetingDelayMs: 0,
    dmarcReject: 'junk',
    recipientProbes: null,
    proxyProtocol: null,
    ...extra,
  };
}
