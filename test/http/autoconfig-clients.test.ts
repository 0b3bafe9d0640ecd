/**
 * A real `facteur serve` with every listener on port 0: imapflow and nodemailer are configured
 * only from the autoconfig answer (host, port, socketType, username) and log in, which proves the
 * http listener advertises the ports the other listeners actually bound.
 */
import { strict as assert } from 'node:assert';
import { mkdtemp, readFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ImapFlow } from 'imapflow';
import nodemailer from 'nodemailer';
import { runCli, startServe } from '../helpers/cli.js';
import { httpRequest, parseXml } from './helpers.js';

const LISTENERS = ['smtp', 'submission', 'submissions', 'imap', 'imaps', 'pop3', 'pop3s', 'http', 'https'];

interface Server { hostname: string; port: number; socketType: string; username: string }

/** Sends each command on a TLS connection and collects the one-line replies (greeting first). */
function pop3Exchange(host: string, port: number, ca: Buffer, commands: string[]): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const sock = tlsConnect({ host, port, ca, servername: host });
    const replies: string[] = [];
    let buf = '';
    let sent = 0;
    sock.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      let i: number;
      while ((i = buf.indexOf('\r\n')) >= 0) {
        replies.push(buf.slice(0, i));
        buf = buf.slice(i + 2);
        if (sent < commands.length) sock.write(`${commands[sent++]}\r\n`);
      }
    });
    sock.on('error', reject);
    sock.on('close', () => resolve(replies));
  });
}

test('imapflow and nodemailer configured only from the autoconfig answer connect and log in to a running facteur', async (t) => {
  const dir = join(await mkdtemp(join(tmpdir(), 'facteur-autoconfig-')), 'data');
  // "localhost" as the host name: the advertised host resolves here and matches the certificate.
  assert.equal((await runCli(['init', '--domain', 'example.test', '--hostname', 'localhost', '--data', dir])).code, 0);
  const password = 'autoconfig-secret-1';
  assert.equal((await runCli(['user', 'add', 'ann@example.test', '--password', password, '--data', dir])).code, 0);
  const srv = await startServe(['serve', '--only', '--data', dir, ...LISTENERS.flatMap((n) => ['--listen', `${n}=127.0.0.1:0`])]);
  t.after(() => srv.stop());
  // The self-signed certificate of the data directory is the trust anchor: TLS is verified,
  // host name included.
  const ca = await readFile(join(dir, 'tls', 'localhost.crt'));

  const r = await httpRequest(srv.ports.http!, '/mail/config-v1.1.xml?emailaddress=ann%40example.test');
  assert.equal(r.status, 200);
  const provider = parseXml(r.body, ['incomingServer', 'outgoingServer']).clientConfig.emailProvider;
  const incoming = (provider.incomingServer as any[]).map((s) => ({ type: s['@type'], hostname: s.hostname, port: Number(s.port), socketType: s.socketType, username: s.username }));
  const outgoing = (provider.outgoingServer as any[]).map((s) => ({ hostname: s.hostname, port: Number(s.port), socketType: s.socketType, username: s.username }));
  // Every advertised port is one a listener is bound to, with the right security.
  assert.deepEqual(
    incoming.map((s) => [s.type, s.port, s.socketType]),
    [['imap', srv.ports.imaps, 'SSL'], ['imap', srv.ports.imap, 'STARTTLS'], ['pop3', srv.ports.pop3s, 'SSL'], ['pop3', srv.ports.pop3, 'STARTTLS']],
  );
  assert.deepEqual(outgoing.map((s) => [s.port, s.socketType]), [[srv.ports.submissions, 'SSL'], [srv.ports.submission, 'STARTTLS']]);

  const imapServers: Server[] = incoming.filter((s) => s.type === 'imap');
  for (const s of imapServers) {
    const client = new ImapFlow({
      host: s.hostname,
      port: s.port,
      secure: s.socketType === 'SSL',
      // STARTTLS is required, never optional, when the config says so.
      ...(s.socketType === 'STARTTLS' ? { doSTARTTLS: true } : {}),
      auth: { user: s.username, pass: password },
      tls: { ca, servername: s.hostname },
      logger: false,
    });
    await client.connect(); // rejects when the login fails
    const status = await client.status('INBOX', { messages: true });
    assert.ok(status);
    assert.equal(status.messages, 0);
    await client.logout();
  }

  for (const s of outgoing as Server[]) {
    const transport = nodemailer.createTransport({
      host: s.hostname,
      port: s.port,
      secure: s.socketType === 'SSL',
      requireTLS: s.socketType === 'STARTTLS',
      auth: { user: s.username, pass: password },
      tls: { ca, servername: s.hostname },
    });
    const sent = await transport.sendMail({ from: 'ann@example.test', to: 'ann@example.test', subject: `via ${s.socketType}`, text: 'configured by autoconfig' });
    assert.match(sent.response, /^250/);
    transport.close();
  }

  // Both messages arrived (local delivery), read over the first advertised IMAP server.
  const first = imapServers[0]!;
  const imap = new ImapFlow({ host: first.hostname, port: first.port, secure: true, auth: { user: first.username, pass: password }, tls: { ca }, logger: false });
  await imap.connect();
  const status = await imap.status('INBOX', { messages: true });
  assert.ok(status);
  assert.equal(status.messages, 2);
  await imap.logout();

  // POP3 over the advertised implicit-TLS endpoint (no POP3 client library: a raw exchange).
  const pop = incoming.find((s) => s.type === 'pop3' && s.socketType === 'SSL')!;
  const replies = await pop3Exchange(pop.hostname, pop.port, ca, [`USER ${pop.username}`, `PASS ${password}`, 'STAT', 'QUIT']);
  assert.deepEqual(replies.map((l) => l.slice(0, 3)), ['+OK', '+OK', '+OK', '+OK', '+OK']);
  assert.match(replies[3]!, /^\+OK 2 \d+/);

  // The https listener serves the same answer, with the data directory's certificate.
  const overTls = await new Promise<string>((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', servername: 'localhost', port: srv.ports.https!, path: '/mail/config-v1.1.xml?emailaddress=ann%40example.test', ca }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => { body += d.toString(); });
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(overTls, r.body);

  const metrics = await httpRequest(srv.ports.http!, '/metrics');
  assert.match(metrics.body, /^facteur_connections_total\{listener="submissions"\} 1$/m);
  assert.match(metrics.body, /^facteur_connections_total\{listener="pop3s"\} 1$/m);
  assert.match(metrics.body, /^facteur_commands_total\{command="STAT",protocol="pop3"\} 1$/m);
  assert.match(metrics.body, /^facteur_auth_successes_total\{protocol="pop3"\} 1$/m);
  assert.match(metrics.body, /^facteur_deliveries_total\{result="delivered",source="submission"\} 2$/m);
});
