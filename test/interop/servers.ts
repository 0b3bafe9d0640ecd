/**
 * The interop suite's fixture: real IMAP, POP3 and SMTP (port 25 policy) listeners on 127.0.0.1
 * port 0 over one fresh store and one account, plus helpers to run Debian's client programs
 * (mbsync, mutt, tmux) with a timeout. Clients connect from 127.0.0.1 to 127.0.0.1, the same host,
 * so plaintext LOGIN / USER-PASS is allowed without TLS (DESIGN.md invariant 5).
 *
 * `close()` stops the servers and runs the context cleanup, which fails the test when the store's
 * consistency check finds anything wrong.
 */
import { execFile, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import type { ListeningServer } from '../../src/context.js';
import { createImapServer } from '../../src/imap/server/server.js';
import { createPop3Server } from '../../src/pop3/server/server.js';
import { createSmtpServer } from '../../src/smtp/server/server.js';
import type { Account, Mailbox, MessageEntry } from '../../src/store/types.js';
import { loadTlsDirectory } from '../../src/net/tls.js';
import { makeTestContext, TEST_HOSTNAME, type TestContext } from '../helpers/context.js';

export const USER = 'carol@example.test';
export const PASSWORD = 'interop pass phrase 42';

export interface InteropServers {
  ctx: TestContext;
  account: Account;
  ports: { imap: number; pop3: number; smtp: number };
  /** The PEM certificate the listeners present (CN and SAN: TEST_HOSTNAME), for clients that
   * pin it (mbsync's CertificateFile). */
  certFile: string;
  /** Delivers one message over SMTP to the MX listener; resolves once it was answered 250. */
  sendMail(subject: string, body?: string, messageId?: string): Promise<void>;
  /** Every mailbox of the account with its entries and, for each entry, the message's subject
   * and Message-ID as stored. */
  snapshot(): Promise<Map<string, Array<MessageEntry & { subject: string; messageId: string }>>>;
  mailbox(name: string): Promise<Mailbox | null>;
  close(): Promise<void>;
}

export function installed(binary: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${binary}`]).status === 0;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program to completion (killed after timeoutMs); never rejects. */
export function run(cmd: string, args: string[], options: { env?: NodeJS.ProcessEnv; timeoutMs?: number; cwd?: string } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(
      cmd,
      args,
      { env: { ...process.env, ...options.env }, timeout: options.timeoutMs ?? 60_000, maxBuffer: 16 * 1024 * 1024, ...(options.cwd ? { cwd: options.cwd } : {}) },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) + (error?.killed ? '\n[killed: timeout]' : '') });
      },
    );
  });
}

function headerValue(raw: Buffer, name: string): string {
  const head = raw.subarray(0, Math.max(0, raw.indexOf('\r\n\r\n'))).toString('latin1');
  const m = new RegExp(`^${name}:[ \\t]*(.*(?:\\r\\n[ \\t].*)*)`, 'im').exec(head);
  return m?.[1]?.replace(/\r\n[ \t]+/g, ' ').trim() ?? '';
}

export async function startInteropServers(): Promise<InteropServers> {
  const ctx = await makeTestContext({ authOptions: { failureDelayMs: 0 } });
  const account = await ctx.addUser(USER, PASSWORD);
  // A certificate of this fixture's own, so a client can be given its file to trust. Clients
  // connect to "127.0.0.1" and some (mbsync) check the name even of a pinned certificate, so the
  // certificate names that address too (CN, and the SAN as an IP address and as text).
  const certDir = await mkdtemp(join(tmpdir(), 'facteur-interop-tls-'));
  const made = await run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '30',
    '-keyout', join(certDir, `${TEST_HOSTNAME}.key`), '-out', join(certDir, `${TEST_HOSTNAME}.crt`),
    '-subj', '/CN=127.0.0.1', '-addext', `subjectAltName=DNS:${TEST_HOSTNAME},DNS:127.0.0.1,IP:127.0.0.1`,
  ]);
  if (made.code !== 0) throw new Error(`openssl could not make the test certificate: ${made.stderr}`);
  ctx.tls = await loadTlsDirectory(certDir, TEST_HOSTNAME);
  const servers: ListeningServer[] = [
    createImapServer(ctx, { implicitTls: false }),
    createPop3Server(ctx, { implicitTls: false }),
    createSmtpServer(ctx, { mode: 'mx', resolver: null }),
  ];
  const [imap, pop3, smtp] = (await Promise.all(servers.map((s) => s.listen('127.0.0.1', 0)))) as [number, number, number];
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: smtp, secure: false, ignoreTLS: true, name: 'client.example.net' });
  let closed = false;

  const set: InteropServers = {
    ctx,
    account,
    ports: { imap, pop3, smtp },
    certFile: join(certDir, `${TEST_HOSTNAME}.crt`),
    async sendMail(subject, body = `Body of ${subject}\r\n`, messageId) {
      const info = await transport.sendMail({
        from: 'sender@remote.example',
        to: USER,
        subject,
        text: body,
        ...(messageId ? { messageId } : {}),
      });
      if (!/^250/.test(info.response)) throw new Error(`SMTP delivery of ${subject} answered ${info.response}`);
    },
    async snapshot() {
      const out = new Map<string, Array<MessageEntry & { subject: string; messageId: string }>>();
      for (const box of await ctx.store.listMailboxes(account.id)) {
        const entries = await ctx.store.listEntries(box.id);
        const rows = [];
        for (const e of entries) {
          const raw = await ctx.store.readBlob(e.blobHash);
          rows.push({ ...e, subject: headerValue(raw, 'Subject'), messageId: headerValue(raw, 'Message-ID') });
        }
        out.set(box.name, rows);
      }
      return out;
    },
    mailbox: (name) => ctx.store.getMailbox(account.id, name),
    async close() {
      if (closed) return;
      closed = true;
      transport.close();
      await Promise.all(servers.map((s) => s.close(500)));
      await rm(certDir, { recursive: true, force: true });
      await ctx.cleanup();
    },
  };
  return set;
}
