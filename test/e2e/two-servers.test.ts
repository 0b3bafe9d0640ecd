/**
 * Send mail to the world, as an operator sets it up: two Facteur servers (`facteur init`,
 * `facteur user add`, `facteur serve`), one for example.test and one for example.org, with the
 * records `facteur dns` prints served by a DNS server on 127.0.0.1. Mail submitted to the first
 * (AUTH, STARTTLS) reaches the second's MX through the outbound queue, and arrives DKIM-signed,
 * with SPF and DMARC passing there.
 *
 * Only DNS and the port of remote MX hosts are stand-ins: both servers run on 127.0.0.1, so the
 * sender's `[outbound] port` (a testing option, 25 in production) names the receiver's smtp port.
 */
import { strict as assert } from 'node:assert';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ImapFlow } from 'imapflow';
import nodemailer from 'nodemailer';
import { emptyZone, type Zone } from '../dns/mock-resolver.js';
import { startDnsServer } from '../dns/udp-dns-server.js';
import { runCli, startServe, type ServeProcess } from '../helpers/cli.js';

const LISTEN = ['smtp', 'submission', 'imap'].flatMap((n) => ['--listen', `${n}=127.0.0.1:0`]);

async function cli(args: string[]): Promise<string> {
  const r = await runCli(args);
  assert.equal(r.code, 0, `facteur ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** The MX, A and TXT records of a `facteur dns` zone file, added to the zone. */
function addZoneFile(zone: Zone, text: string): void {
  for (const line of text.split('\n')) {
    if (line.startsWith(';') || line.trim() === '') continue;
    const [owner, , , type, ...rest] = line.split('\t');
    const name = owner!.replace(/\.$/, '').toLowerCase();
    const value = rest.join('\t');
    const add = <T>(map: Map<string, T[]>, v: T) => map.set(name, [...(map.get(name) ?? []), v]);
    if (type === 'MX') {
      const [priority, exchange] = value.split(' ');
      add(zone.mx, { priority: Number(priority), exchange: exchange!.replace(/\.$/, '') });
    } else if (type === 'A') add(zone.a, value);
    // RFC 1035 §3.3.14: a TXT value may be split in several strings, read as one.
    else if (type === 'TXT') add(zone.txt, [...value.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!).join(''));
  }
}

async function setUp(domain: string, extraConfig: (toml: string) => string = (t) => t) {
  const dir = join(await mkdtemp(join(tmpdir(), `facteur-${domain}-`)), 'data');
  await cli(['init', '--domain', domain, '--data', dir]);
  const conf = join(dir, 'facteur.toml');
  await writeFile(conf, extraConfig(await readFile(conf, 'utf8')));
  return dir;
}

test('mail submitted to one Facteur reaches a user of another through DNS, MX and the queue, with DKIM, SPF and DMARC passing', async (t) => {
  const zone = emptyZone();
  const dns = await startDnsServer(zone);
  t.after(() => dns.close());
  const servers: ServeProcess[] = [];
  t.after(() => Promise.all(servers.map((s) => s.stop())));

  // The receiver first: the sender must know the port its MX listens on.
  const orgDir = await setUp('example.org');
  await cli(['user', 'add', 'bob@example.org', '--password', 'pw-bob-123456', '--data', orgDir]);
  const org = await startServe(['serve', '--only', ...LISTEN, '--dns', `127.0.0.1:${dns.port}`, '--data', orgDir]);
  servers.push(org);

  const testDir = await setUp('example.test', (toml) => {
    assert.match(toml, /^port = 25$/m);
    return toml.replace(/^port = 25$/m, `port = ${org.ports.smtp}`);
  });
  await cli(['user', 'add', 'alice@example.test', '--password', 'pw-alice-123456', '--data', testDir]);
  const sender = await startServe(['serve', '--only', ...LISTEN, '--dns', `127.0.0.1:${dns.port}`, '--data', testDir]);
  servers.push(sender);

  for (const [domain, dir] of [['example.test', testDir], ['example.org', orgDir]] as const) {
    addZoneFile(zone, await cli(['dns', domain, '--ip', '127.0.0.1', '--data', dir]));
  }
  assert.ok(zone.mx.get('example.org') && zone.txt.get('_dmarc.example.test'), 'the zone has the MX and DMARC records');
  assert.ok([...zone.txt.keys()].some((k) => k.endsWith('._domainkey.example.test')), 'the zone has the DKIM keys');

  const transport = nodemailer.createTransport({
    host: '127.0.0.1',
    port: sender.ports.submission!,
    secure: false,
    requireTLS: true,
    tls: { rejectUnauthorized: false },
    auth: { user: 'alice@example.test', pass: 'pw-alice-123456' },
  });
  const info = await transport.sendMail({
    from: 'Alice <alice@example.test>',
    to: 'Bob <bob@example.org>',
    bcc: 'nobody@example.org',
    subject: 'Across the world',
    text: 'Hello Bob, this went through two servers.\n',
  });
  assert.match(info.response, /^250 /);

  const imap = new ImapFlow({
    host: '127.0.0.1',
    port: org.ports.imap!,
    secure: false,
    auth: { user: 'bob@example.org', pass: 'pw-bob-123456' },
    logger: false,
    tls: { rejectUnauthorized: false },
  });
  await imap.connect();
  t.after(() => imap.logout().catch(() => {}));
  let source: string | null = null;
  const deadline = Date.now() + 30_000;
  while (source === null) {
    const status = await imap.status('INBOX', { messages: true });
    if (status && (status.messages ?? 0) > 0) {
      const lock = await imap.getMailboxLock('INBOX');
      try {
        const m = await imap.fetchOne('1', { source: true });
        source = m ? m.source!.toString('latin1') : null;
      } finally {
        lock.release();
      }
    } else {
      assert.ok(Date.now() < deadline, `not delivered in time; sender log:\n${sender.stderr()}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  const head = source.slice(0, source.indexOf('\r\n\r\n') + 2);
  assert.match(head, /^Subject: Across the world\r$/m);
  assert.match(head, /^From: Alice <alice@example\.test>\r$/m);
  assert.match(head, /^Message-ID: </m);
  assert.match(head, /^DKIM-Signature: .*d=example\.test/m);
  assert.doesNotMatch(head, /^Bcc:|nobody@/im);
  const ar = /^Authentication-Results: mail\.example\.org;.*(?:\r\n[ \t].*)*/m.exec(head)?.[0] ?? '';
  assert.match(ar, /dkim=pass[^;]*header\.i=@example\.test/, head);
  assert.match(ar, /spf=pass[^;]*smtp\.mailfrom=alice@example\.test/, head);
  assert.match(ar, /dmarc=pass[^;]*header\.from=example\.test/, head);
  assert.match(source, /\r\n\r\nHello Bob, this went through two servers\.\r\n$/);
});
