/**
 * TLS policy: TLS 1.2 or newer only (STARTTLS, STLS and implicit TLS), one certificate per host
 * name chosen by SNI, certificates reloaded when their files change, and no password in clear from
 * another host (DESIGN.md invariant 5; RFC 8314 §4.1, RFC 9051 §6.2.3 LOGINDISABLED, RFC 2595 §4,
 * RFC 4954 §4).
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { createImapServer } from '../../src/imap/server/server.js';
import { createSmtpServer } from '../../src/smtp/server/server.js';
import { createSelfSignedCertificate, loadTlsDirectory } from '../../src/net/tls.js';
import { PASSWORD, startServers, USER, type ServerSet } from './servers.js';

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

/** Reads from a plain socket until `pattern` appears in what was received. */
async function readUntil(socket: Socket, pattern: RegExp, timeoutMs = 5000): Promise<string> {
  let got = '';
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timeout; got ${JSON.stringify(got)}`)), timeoutMs);
    const onData = (d: Buffer) => {
      got += d.toString('latin1');
      if (pattern.test(got)) {
        clearTimeout(t);
        socket.off('data', onData);
        resolve(got);
      }
    };
    socket.on('data', onData);
  });
}

type Upgrade = 'imap' | 'pop3' | 'smtp';

/** A plain connection taken to the point where the server starts its TLS handshake. */
async function upgradeReady(s: ServerSet, proto: Upgrade): Promise<Socket> {
  const port = proto === 'imap' ? s.ports.imap : proto === 'pop3' ? s.ports.pop3 : s.ports.submission;
  const socket = connect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  if (proto === 'imap') {
    await readUntil(socket, /\r\n/);
    socket.write('a1 STARTTLS\r\n');
    await readUntil(socket, /^a1 OK/m);
  } else if (proto === 'pop3') {
    await readUntil(socket, /\r\n/);
    socket.write('STLS\r\n');
    await readUntil(socket, /^\+OK/m);
  } else {
    await readUntil(socket, /^220 /m);
    socket.write('EHLO client.example.net\r\n');
    await readUntil(socket, /^250 /m);
    socket.write('STARTTLS\r\n');
    await readUntil(socket, /^220 /m);
  }
  return socket;
}

async function handshake(options: ConnectionOptions): Promise<TLSSocket> {
  const secure = tlsConnect({ rejectUnauthorized: false, ...options });
  await new Promise<void>((resolve, reject) => {
    secure.once('secureConnect', () => resolve());
    secure.once('error', reject);
  });
  return secure;
}

// What a TLS 1.1 (or older) client offers; OpenSSL 3 needs security level 0 to even try.
const OLD_CLIENT: ConnectionOptions = { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' };

test('a TLS 1.1 client is refused by STARTTLS (IMAP, SMTP), STLS (POP3) and implicit TLS; TLS 1.2 is accepted', async () => {
  const s = await startServers();
  const imaps = createImapServer(s.ctx, { implicitTls: true });
  const imapsPort = await imaps.listen('127.0.0.1', 0);
  try {
    for (const proto of ['imap', 'pop3', 'smtp'] as const) {
      await assert.rejects(handshake({ socket: await upgradeReady(s, proto), ...OLD_CLIENT }), /version|protocol/i, proto);
      const ok = await handshake({ socket: await upgradeReady(s, proto), maxVersion: 'TLSv1.2' });
      assert.equal(ok.getProtocol(), 'TLSv1.2', proto);
      ok.destroy();
    }
    await assert.rejects(handshake({ host: '127.0.0.1', port: imapsPort, ...OLD_CLIENT }), /version|protocol/i);
    const ok = await handshake({ host: '127.0.0.1', port: imapsPort, maxVersion: 'TLSv1.2' });
    assert.equal(ok.getProtocol(), 'TLSv1.2');
    ok.destroy();
    await s.stillServes();
  } finally {
    await imaps.close(100);
    await s.close();
  }
});

const fingerprint = (socket: TLSSocket) => createHash('sha256').update(socket.getPeerCertificate().raw).digest('hex');

test('certificates are chosen by SNI and reloaded when their files change, on STARTTLS and implicit TLS', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'facteur-sni-'));
  await createSelfSignedCertificate(dir, 'mail.example.test');
  await createSelfSignedCertificate(dir, 'other.example.test');
  const tls = await loadTlsDirectory(dir, 'mail.example.test', { checkIntervalMs: 0 });
  const s = await startServers({ tls });
  const imaps = createImapServer(s.ctx, { implicitTls: true });
  const imapsPort = await imaps.listen('127.0.0.1', 0);
  const submissions = createSmtpServer(s.ctx, { mode: 'submission', implicitTls: true });
  const submissionsPort = await submissions.listen('127.0.0.1', 0);
  try {
    const implicitDefault = await handshake({ host: '127.0.0.1', port: submissionsPort });
    assert.equal(implicitDefault.getPeerCertificate().subject?.CN, 'mail.example.test');
    implicitDefault.destroy();
    const subject = (socket: TLSSocket) => socket.getPeerCertificate().subject?.CN;
    for (const proto of ['imap', 'pop3', 'smtp'] as const) {
      for (const name of ['mail.example.test', 'other.example.test']) {
        const secure = await handshake({ socket: await upgradeReady(s, proto), servername: name });
        assert.equal(subject(secure), name, `${proto} with SNI ${name}`);
        secure.destroy();
      }
      // No SNI: the default host name's certificate.
      const plain = await handshake({ socket: await upgradeReady(s, proto) });
      assert.equal(subject(plain), 'mail.example.test');
      plain.destroy();
    }
    const implicitOther = await handshake({ host: '127.0.0.1', port: imapsPort, servername: 'other.example.test' });
    assert.equal(subject(implicitOther), 'other.example.test');
    const before = fingerprint(implicitOther);
    implicitOther.destroy();

    // Replace both pairs on disk (a renewal); no restart, no call to reload().
    await new Promise((r) => setTimeout(r, 20));
    await createSelfSignedCertificate(dir, 'other.example.test');
    await createSelfSignedCertificate(dir, 'mail.example.test');
    // The first handshake after the change triggers the check; give it a moment, then retry.
    let after = before;
    for (let i = 0; i < 50 && after === before; i++) {
      const probe = await handshake({ host: '127.0.0.1', port: imapsPort, servername: 'other.example.test' });
      after = fingerprint(probe);
      probe.destroy();
      if (after === before) await new Promise((r) => setTimeout(r, 50));
    }
    assert.notEqual(after, before, 'implicit TLS with SNI serves the renewed certificate');
    const disk = createHash('sha256');
    const { X509Certificate } = await import('node:crypto');
    const { readFile } = await import('node:fs/promises');
    disk.update(new X509Certificate(await readFile(join(dir, 'other.example.test.crt'))).raw);
    assert.equal(after, disk.digest('hex'));
    // STARTTLS picks the renewed default certificate too.
    const mailDisk = createHash('sha256').update(new X509Certificate(await readFile(join(dir, 'mail.example.test.crt'))).raw).digest('hex');
    let starttls = '';
    for (let i = 0; i < 50 && starttls !== mailDisk; i++) {
      const secure = await handshake({ socket: await upgradeReady(s, 'smtp') });
      starttls = fingerprint(secure);
      secure.destroy();
      if (starttls !== mailDisk) await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(starttls, mailDisk);
    // Implicit TLS without SNI (the listener's default certificate), on IMAP and SMTP.
    for (const port of [imapsPort, submissionsPort]) {
      let fp = '';
      for (let i = 0; i < 50 && fp !== mailDisk; i++) {
        const secure = await handshake({ host: '127.0.0.1', port });
        fp = fingerprint(secure);
        secure.destroy();
        if (fp !== mailDisk) await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(fp, mailDisk, `implicit TLS on port ${port} without SNI serves the renewed default certificate`);
    }
  } finally {
    await submissions.close(100);
    await imaps.close(100);
    await s.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('no password in clear from another host: LOGINDISABLED, no USER in CAPA, no AUTH in EHLO before STARTTLS', async () => {
  const s = await startServers();
  try {
    const remote = '127.0.0.2';
    // IMAP (RFC 9051 §6.2.3, RFC 5530 PRIVACYREQUIRED)
    const t = await s.imap(remote);
    const caps = await t.command('a1', 'CAPABILITY');
    assert.match(caps.untagged.join(' '), /LOGINDISABLED/);
    assert.doesNotMatch(caps.untagged.join(' '), /AUTH=PLAIN/);
    t.send(`a2 LOGIN "${USER}" "${PASSWORD}"`);
    assert.match(await t.readLine(), /^a2 NO \[PRIVACYREQUIRED\]/);
    t.send(`a3 AUTHENTICATE PLAIN ${b64(`\0${USER}\0${PASSWORD}`)}`);
    assert.match(await t.readLine(), /^a3 (NO|BAD) /);
    await t.command('a4', 'STARTTLS');
    await t.startTls();
    const tlsCaps = await t.command('a5', 'CAPABILITY');
    assert.doesNotMatch(tlsCaps.untagged.join(' '), /LOGINDISABLED/);
    await t.command('a6', `LOGIN "${USER}" "${PASSWORD}"`);
    // POP3 (RFC 2595 §4, RFC 2449 §6.1: USER is not listed when it would be refused)
    const p = await s.pop3(remote);
    const capa = await p.multi('CAPA');
    assert.ok(!capa.lines.some((l) => /^USER\b/.test(l)), capa.lines.join('|'));
    assert.ok(!capa.lines.some((l) => /^SASL.*PLAIN/.test(l)), capa.lines.join('|'));
    assert.match(await p.command(`USER ${USER}`), /^-ERR/);
    assert.match(await p.command(`AUTH PLAIN ${b64(`\0${USER}\0${PASSWORD}`)}`), /^-ERR/);
    await p.startTls();
    const capaTls = await p.multi('CAPA');
    assert.ok(capaTls.lines.some((l) => /^USER\b/.test(l)));
    assert.match(await p.login(USER, PASSWORD), /^\+OK/);
    // SMTP submission (RFC 4954 §4: 538 encryption required)
    const c = await s.submission(remote);
    const ehlo = await c.cmd('EHLO client.example.net', 250);
    assert.ok(!ehlo.lines.some((l) => /AUTH/.test(l)), ehlo.text);
    await c.cmd(`AUTH PLAIN ${b64(`\0${USER}\0${PASSWORD}`)}`, 538);
    await c.cmd('STARTTLS', 220);
    await c.upgrade();
    const ehloTls = await c.cmd('EHLO client.example.net', 250);
    assert.ok(ehloTls.lines.some((l) => /^\d{3}[ -]AUTH .*PLAIN/.test(l) || /^AUTH .*PLAIN/.test(l)), ehloTls.text);
    await c.cmd(`AUTH PLAIN ${b64(`\0${USER}\0${PASSWORD}`)}`, 235);
    // The same host (127.0.0.1 to 127.0.0.1) may log in in clear (DESIGN.md invariant 5).
    const local = await s.imap();
    await local.command('b1', `LOGIN "${USER}" "${PASSWORD}"`);
  } finally {
    await s.close();
  }
});
