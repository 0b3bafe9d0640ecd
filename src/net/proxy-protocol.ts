/**
 * The PROXY protocol header (HAProxy's "proxy-protocol.txt", versions 1 and 2), sans I/O: bytes
 * in, a typed header out. A TCP load balancer sends it first on each connection it opens to a
 * node, so the node learns the client's address and port instead of seeing the balancer's.
 *
 * Invariants:
 * - The parser reads at most MAX_V1_BYTES (version 1) or 16 + MAX_V2_PAYLOAD bytes (version 2);
 *   anything longer is refused as soon as its length is known, before it is buffered.
 * - A prefix that can no longer become a header is refused at once (a client that speaks the
 *   service's own protocol is not kept waiting for a header it will never send).
 * - Given the same bytes, the answer does not depend on how they were split: the caller feeds the
 *   bytes received so far and gets 'incomplete' until the header is whole (tests split every
 *   input at every byte).
 * - Only TCP over IPv4 or IPv6 gives addresses. LOCAL (v2), UNKNOWN (v1) and the v2 UNSPEC
 *   family mean "the balancer's own connection" (health checks): the caller keeps the real
 *   endpoints (spec §2.1 and §2.2). UNIX sockets and datagram transports are refused: they are
 *   not the TCP clients these services serve.
 * - Version 2 TLVs are walked to check that each one fits in the header, and skipped: none of
 *   them changes what the server does.
 */
import { isIPv4, isIPv6, SocketAddress } from 'node:net';

/** Spec §2.1: "a 108-byte buffer is always enough to store all the line and a trailing zero";
 * the longest valid line (TCP6 with two full addresses) is 104 bytes with its CRLF. */
export const MAX_V1_BYTES = 107;
/** Spec §2.2 allows 65535 bytes after the 16-byte header; balancers send the 12 or 36 bytes of
 * addresses plus a few TLVs (ALPN, SNI, unique id, TLS details). 2 KiB holds them all and keeps
 * a confused or hostile peer from making each connection buffer 64 KiB. */
export const MAX_V2_PAYLOAD = 2048;

/** Spec §2.2: the 12-byte signature of a version 2 header. */
export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');

export interface ProxyEndpoint {
  /** Canonical text form (IPv6 compressed, lower case, RFC 5952). */
  address: string;
  port: number;
}

export type ProxyHeader =
  | { version: 1 | 2; command: 'proxy'; family: 'IPv4' | 'IPv6'; source: ProxyEndpoint; destination: ProxyEndpoint }
  /** Keep the real connection's addresses (v2 LOCAL, v1 UNKNOWN, v2 UNSPEC family). */
  | { version: 1 | 2; command: 'local' };

export type ProxyParse =
  | { kind: 'incomplete' }
  /** consumed: bytes of the header; what follows belongs to the service's protocol. */
  | { kind: 'header'; header: ProxyHeader; consumed: number }
  | { kind: 'error'; reason: string };

const INCOMPLETE: ProxyParse = { kind: 'incomplete' };
const fail = (reason: string): ProxyParse => ({ kind: 'error', reason });

/** Whether the first bytes match the start of `sig` (as far as they go). */
function startsLike(buf: Uint8Array, sig: Uint8Array): boolean {
  const n = Math.min(buf.length, sig.length);
  for (let i = 0; i < n; i++) if (buf[i] !== sig[i]) return false;
  return true;
}

/** Parses the header at the start of buf (all the bytes received so far). */
export function parseProxyHeader(buf: Uint8Array): ProxyParse {
  if (buf.length === 0) return INCOMPLETE;
  if (startsLike(buf, V2_SIGNATURE)) return buf.length < V2_SIGNATURE.length ? INCOMPLETE : parseV2(buf);
  if (startsLike(buf, V1_PREFIX)) return parseV1(buf);
  return fail('no PROXY protocol header');
}

// ---------------------------------------------------------------------------------------------
// Version 1: "PROXY TCP4 192.0.2.1 198.51.100.2 51000 25\r\n"

function parseV1(buf: Uint8Array): ProxyParse {
  const limit = Math.min(buf.length, MAX_V1_BYTES);
  let end = -1;
  for (let i = 0; i < limit; i++) {
    if (buf[i] === 0x0a) return fail('v1 header: line feed without carriage return');
    if (buf[i] === 0x0d) {
      if (i + 2 > MAX_V1_BYTES) break;
      if (i + 1 >= buf.length) return INCOMPLETE;
      if (buf[i + 1] !== 0x0a) return fail('v1 header: carriage return without line feed');
      end = i;
      break;
    }
  }
  if (end < 0) return buf.length >= MAX_V1_BYTES ? fail(`v1 header: no CRLF within ${MAX_V1_BYTES} bytes`) : INCOMPLETE;
  const line = Buffer.from(buf.subarray(0, end)).toString('latin1');
  const consumed = end + 2;
  const parts = line.split(' ');
  const protocol = parts[1];
  // Spec §2.1: with UNKNOWN "the receiver must ignore anything presented before the CRLF".
  if (protocol === 'UNKNOWN') return { kind: 'header', header: { version: 1, command: 'local' }, consumed };
  if (protocol !== 'TCP4' && protocol !== 'TCP6') return fail(`v1 header: unknown protocol ${JSON.stringify(protocol ?? '')}`);
  // Exactly one space between fields (spec §2.1): split(' ') then gives exactly six fields.
  if (parts.length !== 6) return fail('v1 header: expected "PROXY TCP4|TCP6 SRC DST SPORT DPORT"');
  const [, , src = '', dst = '', sport = '', dport = ''] = parts;
  const family = protocol === 'TCP4' ? 'IPv4' : 'IPv6';
  const valid = family === 'IPv4' ? isIPv4 : isIPv6;
  // A zone index (fe80::1%eth0) names an interface of the balancer, not a client address.
  if (!valid(src) || !valid(dst) || src.includes('%') || dst.includes('%')) return fail(`v1 header: invalid ${family} address`);
  const sourcePort = v1Port(sport);
  const destinationPort = v1Port(dport);
  if (sourcePort === null || destinationPort === null) return fail('v1 header: invalid port');
  return {
    kind: 'header',
    header: {
      version: 1,
      command: 'proxy',
      family,
      source: { address: canonical(src, family), port: sourcePort },
      destination: { address: canonical(dst, family), port: destinationPort },
    },
    consumed,
  };
}

/** Decimal 0..65535 without leading zeros (spec §2.1: "a number between 0 and 65535"). */
function v1Port(s: string): number | null {
  if (!/^(0|[1-9][0-9]{0,4})$/.test(s)) return null;
  const n = Number(s);
  return n <= 65535 ? n : null;
}

function canonical(address: string, family: 'IPv4' | 'IPv6'): string {
  return family === 'IPv4' ? address : new SocketAddress({ address, family: 'ipv6' }).address;
}

// ---------------------------------------------------------------------------------------------
// Version 2: signature, version/command, family/transport, length, addresses, TLVs.

const CMD_LOCAL = 0x0;
const CMD_PROXY = 0x1;
const FAMILY_UNSPEC = 0x0;
const FAMILY_INET = 0x1;
const FAMILY_INET6 = 0x2;
const FAMILY_UNIX = 0x3;
const TRANSPORT_STREAM = 0x1;
/** Address block sizes of spec §2.2: IPv4 4+4+2+2, IPv6 16+16+2+2. */
const INET_BYTES = 12;
const INET6_BYTES = 36;

function parseV2(buf: Uint8Array): ProxyParse {
  if (buf.length < 16) {
    // Refuse a wrong version or command as soon as its byte is there.
    if (buf.length > 12) return checkVersionCommand(buf[12] ?? 0) ?? INCOMPLETE;
    return INCOMPLETE;
  }
  const vc = buf[12] ?? 0;
  const bad = checkVersionCommand(vc);
  if (bad) return bad;
  const familyByte = buf[13] ?? 0;
  const length = ((buf[14] ?? 0) << 8) | (buf[15] ?? 0);
  if (length > MAX_V2_PAYLOAD) return fail(`v2 header: ${length} bytes of addresses and TLVs, over the ${MAX_V2_PAYLOAD}-byte limit`);
  if (buf.length < 16 + length) return INCOMPLETE;
  const consumed = 16 + length;
  const payload = buf.subarray(16, consumed);
  // Spec §2.2: with LOCAL "the receiver must accept this connection as valid and must use the
  // real connection endpoints and discard the protocol block including the family".
  if ((vc & 0x0f) === CMD_LOCAL) return { kind: 'header', header: { version: 2, command: 'local' }, consumed };
  const family = familyByte >> 4;
  const transport = familyByte & 0x0f;
  // Spec §2.2: UNSPEC "the receiver should ... use the real endpoints", like LOCAL.
  if (family === FAMILY_UNSPEC) return { kind: 'header', header: { version: 2, command: 'local' }, consumed };
  if (family === FAMILY_UNIX) return fail('v2 header: UNIX socket clients are refused (TCP only)');
  if (family !== FAMILY_INET && family !== FAMILY_INET6) return fail(`v2 header: unknown address family ${family}`);
  if (transport !== TRANSPORT_STREAM) return fail(`v2 header: transport ${transport} is not a stream (TCP only)`);
  const addrBytes = family === FAMILY_INET ? INET_BYTES : INET6_BYTES;
  if (length < addrBytes) return fail(`v2 header: ${length} bytes cannot hold the addresses (${addrBytes})`);
  const tlvError = checkTlvs(payload.subarray(addrBytes));
  if (tlvError) return fail(tlvError);
  const half = (addrBytes - 4) / 2;
  const view = Buffer.from(payload.buffer, payload.byteOffset, payload.length);
  const text = family === FAMILY_INET ? ipv4Text : ipv6Text;
  return {
    kind: 'header',
    header: {
      version: 2,
      command: 'proxy',
      family: family === FAMILY_INET ? 'IPv4' : 'IPv6',
      source: { address: text(view.subarray(0, half)), port: view.readUInt16BE(2 * half) },
      destination: { address: text(view.subarray(half, 2 * half)), port: view.readUInt16BE(2 * half + 2) },
    },
    consumed,
  };
}

function checkVersionCommand(vc: number): ProxyParse | null {
  if (vc >> 4 !== 0x2) return fail(`v2 header: version ${vc >> 4} (expected 2)`);
  const cmd = vc & 0x0f;
  if (cmd !== CMD_LOCAL && cmd !== CMD_PROXY) return fail(`v2 header: unknown command ${cmd}`);
  return null;
}

/** Spec §2.2.1: each TLV is a type byte, a 16-bit length and that many bytes. */
function checkTlvs(tlvs: Uint8Array): string | null {
  let i = 0;
  while (i < tlvs.length) {
    if (i + 3 > tlvs.length) return 'v2 header: truncated TLV';
    const len = ((tlvs[i + 1] ?? 0) << 8) | (tlvs[i + 2] ?? 0);
    i += 3 + len;
    if (i > tlvs.length) return 'v2 header: a TLV runs past the end of the header';
  }
  return null;
}

function ipv4Text(b: Buffer): string {
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
}

function ipv6Text(b: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return new SocketAddress({ address: groups.join(':'), family: 'ipv6' }).address;
}

/** Builds a header (tests, benchmarks, and any client that must speak through a balancer). */
export function encodeProxyHeader(
  version: 1 | 2,
  header: ProxyHeader,
  tlvs: ReadonlyArray<{ type: number; value: Uint8Array }> = [],
): Buffer {
  if (version === 1) {
    if (header.command === 'local') return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
    const proto = header.family === 'IPv4' ? 'TCP4' : 'TCP6';
    return Buffer.from(
      `PROXY ${proto} ${header.source.address} ${header.destination.address} ${header.source.port} ${header.destination.port}\r\n`,
      'latin1',
    );
  }
  const tlvBytes = Buffer.concat(
    tlvs.map((t) => {
      const head = Buffer.alloc(3);
      head[0] = t.type;
      head.writeUInt16BE(t.value.length, 1);
      return Buffer.concat([head, t.value]);
    }),
  );
  let addresses = Buffer.alloc(0);
  let familyByte = 0;
  if (header.command === 'proxy') {
    const bytes = header.family === 'IPv4' ? ipv4Bytes : ipv6Bytes;
    const ports = Buffer.alloc(4);
    ports.writeUInt16BE(header.source.port, 0);
    ports.writeUInt16BE(header.destination.port, 2);
    addresses = Buffer.concat([bytes(header.source.address), bytes(header.destination.address), ports]);
    familyByte = ((header.family === 'IPv4' ? FAMILY_INET : FAMILY_INET6) << 4) | TRANSPORT_STREAM;
  }
  const head = Buffer.alloc(16);
  V2_SIGNATURE.copy(head, 0);
  head[12] = 0x20 | (header.command === 'proxy' ? CMD_PROXY : CMD_LOCAL);
  head[13] = familyByte;
  head.writeUInt16BE(addresses.length + tlvBytes.length, 14);
  return Buffer.concat([head, addresses, tlvBytes]);
}

function ipv4Bytes(address: string): Buffer {
  return Buffer.from(address.split('.').map(Number));
}

function ipv6Bytes(address: string): Buffer {
  // An embedded IPv4 tail (::ffff:192.0.2.1) becomes two groups; "::" expands to the missing
  // zero groups.
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(address);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    address = `${address.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = address.split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}
