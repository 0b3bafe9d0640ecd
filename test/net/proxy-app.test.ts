/**
 * Every TCP listener of the application (src/listeners.ts) honours its listener's PROXY protocol
 * setting from the configuration: with `proxy_protocol`, a trusted balancer's connection that
 * starts with a header is served (in clear, or in TLS after the header on implicit-TLS ports),
 * and a source outside `proxy_trusted` is closed without a byte.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startApp } from '../../src/app.js';
import { defaultConfig, LISTENER_NAMES, type ListenerName } from '../../src/config/config.js';
import { encodeProxyHeader } from '../../src/net/proxy-protocol.js';
import { createSelfSignedCertificate } from '../../src/net/tls.js';
import { openTestStore } from '../helpers/store.js';

const HOST = 'mail.example.test';
const IMPLICIT_TLS: ReadonlySet<ListenerName> = new Set(['submissions', 'imaps', 'pop3s', 'https']);
/** What each listener says first (HTTP: the answer to a health check). */
const FIRST: Record<ListenerName, RegExp> = {
  smtp: /^220 /, submission: /^220 /, submissions: /^220 /, lmtp: /^220 /,
  imap: /^\* OK/, imaps: /^\* OK/, pop3: /^\+OK/, pop3s: /^\+OK/,
  http: /^HTTP\/1\.1 200 /, https: /^HTTP\/1\.1 200 /,
};

const header = encodeProxyHeader(2, {
  version: 2,
  command: 'proxy',
  family: 'IPv4',
  source: { address: '192.0.2.44', port: 50000 },
  destination: { address: '198.51.100.1', port: 1 },
});

function firstBytes(stream: Socket | TLSSocket, name: ListenerName): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const t = setTimeout(() => reject(new Error(`${name}: no answer; got ${JSON.stringify(got)}`)), 10_000);
    stream.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (got.includes('\r\n')) {
        clearTimeout(t);
        resolve(got);
        stream.destroy();
      }
    });
    stream.on('error', () => undefined);
    if (name === 'http' || name === 'https') stream.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  });
}

async function open(port: number, localAddress = '127.0.0.1'): Promise<Socket> {
  const s = connect({ host: '127.0.0.1', port, localAddress });
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
  return s;
}

async function viaBalancer(port: number, tls: boolean): Promise<Socket | TLSSocket> {
  const raw = await open(port);
  if (!tls) {
    raw.write(header);
    return raw;
  }
  await new Promise<void>((resolve) => raw.write(header, () => resolve()));
  const carrier = new Duplex({
    write(chunk: Buffer, _e, cb) {
      raw.write(chunk, cb);
    },
    read() {},
  });
  raw.on('data', (d: Buffer) => carrier.push(d));
  raw.on('end', () => carrier.push(null));
  raw.on('error', () => undefined);
  const secure = tlsConnect({ socket: carrier, servername: HOST, rejectUnauthorized: false });
  await new Promise<void>((resolve, reject) => {
    secure.once('secureConnect', resolve);
    secure.once('error', reject);
  });
  secure.on('close', () => raw.destroy());
  return secure;
}

test('every listener of the app takes proxy_protocol from the configuration: served behind a trusted balancer, closed to others', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'facteur-proxy-app-'));
  await createSelfSignedCertificate(join(dataDir, 'tls'), HOST);
  const { store, cleanup } = await openTestStore();
  const config = defaultConfig(HOST);
  config.log.level = 'silent';
  for (const name of LISTENER_NAMES) {
    config.listen[name] = '127.0.0.1:0';
    config.proxyProtocol[name] = { trusted: ['127.0.0.1/32'] };
  }
  const app = await startApp({ dataDir, storeLocation: dataDir, config, store, log: pino({ level: 'silent' }) });
  try {
    assert.deepEqual(app.servers.map((s) => s.name).sort(), [...LISTENER_NAMES].sort());
    for (const { name, port } of app.servers) {
      const answer = await firstBytes(await viaBalancer(port, IMPLICIT_TLS.has(name)), name);
      assert.match(answer, FIRST[name], name);
      // 127.0.0.2 is not a trusted balancer: closed at once, nothing said.
      const stranger = await open(port, '127.0.0.2');
      stranger.write(header);
      const said = await new Promise<string>((resolve) => {
        let got = '';
        stranger.on('data', (d: Buffer) => (got += d.toString('latin1')));
        stranger.on('error', () => undefined);
        stranger.on('close', () => resolve(got));
      });
      assert.equal(said, '', name);
    }
  } finally {
    await app.close(200);
    await cleanup();
    await rm(dataDir, { recursive: true, force: true });
  }
});
