/**
 * The PROXY protocol parser (src/net/proxy-protocol.ts): table tests of valid and invalid v1 and
 * v2 headers, every input split at every byte, and a property test (fixed seed) that any encoded
 * header followed by any bytes parses back to itself and leaves those bytes untouched.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import {
  encodeProxyHeader,
  MAX_V1_BYTES,
  MAX_V2_PAYLOAD,
  parseProxyHeader,
  V2_SIGNATURE,
  type ProxyHeader,
  type ProxyParse,
} from '../../src/net/proxy-protocol.js';

const SEED = Number(process.env.FUZZ_SEED ?? 7);

const v4: ProxyHeader = {
  version: 2,
  command: 'proxy',
  family: 'IPv4',
  source: { address: '192.0.2.10', port: 51000 },
  destination: { address: '198.51.100.2', port: 25 },
};
const v6: ProxyHeader = {
  version: 2,
  command: 'proxy',
  family: 'IPv6',
  source: { address: '2001:db8::1:0:0:7', port: 443 },
  destination: { address: '2001:db8:ffff::2', port: 993 },
};

/** A v2 header with hand-set bytes 12..15 (version/command, family/transport, length). */
function v2Raw(vc: number, fam: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(16);
  V2_SIGNATURE.copy(head);
  head[12] = vc;
  head[13] = fam;
  head.writeUInt16BE(payload.length, 14);
  return Buffer.concat([head, payload]);
}

const v4Addresses = encodeProxyHeader(2, v4).subarray(16);

const VALID: Array<{ name: string; input: Buffer; header: ProxyHeader; consumed?: number }> = [
  {
    name: 'v1 TCP4',
    input: Buffer.from('PROXY TCP4 192.0.2.10 198.51.100.2 51000 25\r\n'),
    header: { ...v4, version: 1 },
  },
  {
    name: 'v1 TCP6, addresses canonicalised (RFC 5952)',
    input: Buffer.from('PROXY TCP6 2001:DB8:0:0:1:0:0:7 2001:db8:ffff:0:0:0:0:2 443 993\r\n'),
    header: { ...v6, version: 1 },
  },
  {
    name: 'v1 longest valid line',
    input: Buffer.from('PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n'),
    header: {
      version: 1,
      command: 'proxy',
      family: 'IPv6',
      source: { address: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', port: 65535 },
      destination: { address: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', port: 65535 },
    },
  },
  { name: 'v1 UNKNOWN is LOCAL', input: Buffer.from('PROXY UNKNOWN\r\n'), header: { version: 1, command: 'local' } },
  {
    name: 'v1 UNKNOWN ignores the rest of the line',
    input: Buffer.from('PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n'),
    header: { version: 1, command: 'local' },
  },
  { name: 'v2 TCP over IPv4', input: encodeProxyHeader(2, v4), header: v4 },
  { name: 'v2 TCP over IPv6', input: encodeProxyHeader(2, v6), header: v6 },
  {
    name: 'v2 with TLVs (ALPN, authority, NOOP padding), skipped',
    input: encodeProxyHeader(2, v4, [
      { type: 0x01, value: Buffer.from('imap') },
      { type: 0x02, value: Buffer.from('mail.example.test') },
      { type: 0x04, value: Buffer.alloc(0) },
    ]),
    header: v4,
  },
  { name: 'v2 LOCAL', input: encodeProxyHeader(2, { version: 2, command: 'local' }), header: { version: 2, command: 'local' } },
  {
    name: 'v2 LOCAL ignores a family and addresses it carries',
    input: v2Raw(0x20, 0x11, v4Addresses),
    header: { version: 2, command: 'local' },
  },
  { name: 'v2 PROXY with UNSPEC family is LOCAL', input: v2Raw(0x21, 0x00, Buffer.alloc(0)), header: { version: 2, command: 'local' } },
  {
    name: 'v2 IPv4-mapped IPv6 source kept as the balancer wrote it',
    input: encodeProxyHeader(2, { ...v6, source: { address: '::ffff:192.0.2.1', port: 1 } }),
    header: { ...v6, source: { address: '::ffff:192.0.2.1', port: 1 } },
  },
];

const INVALID: Array<{ name: string; input: Buffer; reason: RegExp }> = [
  { name: 'not a header at all (an SMTP client talking first)', input: Buffer.from('EHLO client\r\n'), reason: /no PROXY protocol header/ },
  { name: 'lower-case proxy', input: Buffer.from('proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n'), reason: /no PROXY/ },
  { name: 'v1 unknown protocol', input: Buffer.from('PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n'), reason: /unknown protocol/ },
  { name: 'v1 missing field', input: Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n'), reason: /expected/ },
  { name: 'v1 two spaces', input: Buffer.from('PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n'), reason: /expected/ },
  { name: 'v1 TCP4 with an IPv6 address', input: Buffer.from('PROXY TCP4 ::1 5.6.7.8 1 2\r\n'), reason: /invalid IPv4/ },
  { name: 'v1 TCP6 with an IPv4 address', input: Buffer.from('PROXY TCP6 1.2.3.4 ::1 1 2\r\n'), reason: /invalid IPv6/ },
  { name: 'v1 IPv4 with a leading zero', input: Buffer.from('PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n'), reason: /invalid IPv4/ },
  { name: 'v1 IPv6 zone index', input: Buffer.from('PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n'), reason: /invalid IPv6/ },
  { name: 'v1 port over 65535', input: Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n'), reason: /invalid port/ },
  { name: 'v1 port with a leading zero', input: Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 025 2\r\n'), reason: /invalid port/ },
  { name: 'v1 negative port', input: Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n'), reason: /invalid port/ },
  { name: 'v1 bare LF', input: Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n'), reason: /line feed without carriage return/ },
  { name: 'v1 CR not followed by LF', input: Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX'), reason: /carriage return without line feed/ },
  { name: 'v1 no CRLF within 107 bytes', input: Buffer.from(`PROXY UNKNOWN ${'x'.repeat(200)}\r\n`), reason: /no CRLF within 107/ },
  { name: 'v2 version 1 in the version nibble', input: v2Raw(0x11, 0x11, v4Addresses), reason: /version 1/ },
  { name: 'v2 unknown command', input: v2Raw(0x22, 0x11, v4Addresses), reason: /unknown command 2/ },
  { name: 'v2 UNIX family refused', input: v2Raw(0x21, 0x31, Buffer.alloc(216)), reason: /UNIX/ },
  { name: 'v2 unknown family', input: v2Raw(0x21, 0x41, v4Addresses), reason: /unknown address family 4/ },
  { name: 'v2 UDP over IPv4 refused', input: v2Raw(0x21, 0x12, v4Addresses), reason: /not a stream/ },
  { name: 'v2 length too short for IPv4 addresses', input: v2Raw(0x21, 0x11, v4Addresses.subarray(0, 8)), reason: /cannot hold the addresses/ },
  { name: 'v2 length too short for IPv6 addresses', input: v2Raw(0x21, 0x21, v4Addresses), reason: /cannot hold the addresses/ },
  {
    name: 'v2 TLV running past the end',
    input: v2Raw(0x21, 0x11, Buffer.concat([v4Addresses, Buffer.from([0x01, 0x00, 0x09, 0x61])])),
    reason: /runs past the end/,
  },
  { name: 'v2 truncated TLV header', input: v2Raw(0x21, 0x11, Buffer.concat([v4Addresses, Buffer.from([0x01, 0x00])])), reason: /truncated TLV/ },
  {
    name: 'v2 oversized (refused from its length field, before the bytes)',
    input: Buffer.concat([v2Raw(0x21, 0x11, Buffer.alloc(0)).subarray(0, 14), Buffer.from([0xff, 0xff])]),
    reason: /over the 2048-byte limit/,
  },
];

/** Feeds growing prefixes; returns the first non-incomplete answer and the prefix length. */
function feedByteByByte(input: Buffer): { result: ProxyParse; at: number } {
  for (let n = 1; n <= input.length; n++) {
    const result = parseProxyHeader(input.subarray(0, n));
    if (result.kind !== 'incomplete') return { result, at: n };
  }
  return { result: { kind: 'incomplete' }, at: input.length };
}

test('PROXY header: valid v1 and v2 headers parse to the client and destination endpoints', () => {
  for (const c of VALID) {
    const trailing = Buffer.from('A1 CAPABILITY\r\n');
    const r = parseProxyHeader(Buffer.concat([c.input, trailing]));
    assert.equal(r.kind, 'header', c.name);
    if (r.kind !== 'header') continue;
    assert.deepEqual(r.header, c.header, c.name);
    assert.equal(r.consumed, c.input.length, `${c.name}: consumed`);
  }
});

test('PROXY header: malformed, unsupported and oversized headers are refused with a reason', () => {
  for (const c of INVALID) {
    const r = parseProxyHeader(c.input);
    assert.equal(r.kind, 'error', c.name);
    if (r.kind === 'error') assert.match(r.reason, c.reason, c.name);
  }
});

test('PROXY header: every valid input split at every byte is incomplete until its last byte, then the same header', () => {
  for (const c of VALID) {
    for (let n = 0; n < c.input.length; n++) {
      assert.equal(parseProxyHeader(c.input.subarray(0, n)).kind, 'incomplete', `${c.name}: prefix of ${n} bytes`);
    }
    const { result, at } = feedByteByByte(c.input);
    assert.equal(at, c.input.length, c.name);
    assert.deepEqual(result, { kind: 'header', header: c.header, consumed: c.input.length }, c.name);
  }
});

test('PROXY header: an invalid input is refused at the same byte however it arrives, and never later than its full length', () => {
  for (const c of INVALID) {
    const { result, at } = feedByteByByte(c.input);
    assert.equal(result.kind, 'error', c.name);
    assert.ok(at <= c.input.length, c.name);
    // Feeding more of the same input after the refusal never turns it into a header.
    for (let n = at; n <= c.input.length; n++) assert.equal(parseProxyHeader(c.input.subarray(0, n)).kind, 'error', `${c.name} at ${n}`);
  }
});

test('PROXY header: a protocol client that talks first is refused at its first byte, not kept waiting', () => {
  for (const first of ['E', 'G', 'a', '\x16', '+']) {
    assert.equal(parseProxyHeader(Buffer.from(first, 'latin1')).kind, 'error', JSON.stringify(first));
  }
  // A v2 signature broken in its 6th byte is refused there.
  const broken = Buffer.from(V2_SIGNATURE);
  broken[5] = 0x41;
  assert.equal(feedByteByByte(broken).at, 6);
});

test('PROXY header: the bounds are the documented ones', () => {
  const longest = Buffer.from(`PROXY UNKNOWN ${'x'.repeat(MAX_V1_BYTES - 16)}\r\n`);
  assert.equal(longest.length, MAX_V1_BYTES);
  assert.equal(parseProxyHeader(longest).kind, 'header');
  const tooLong = Buffer.from(`PROXY UNKNOWN ${'x'.repeat(MAX_V1_BYTES - 15)}\r\n`);
  assert.equal(parseProxyHeader(tooLong).kind, 'error');
  const atLimit = encodeProxyHeader(2, v4, [{ type: 0xe0, value: Buffer.alloc(MAX_V2_PAYLOAD - 12 - 3) }]);
  assert.equal(parseProxyHeader(atLimit).kind, 'header');
  const overLimit = encodeProxyHeader(2, v4, [{ type: 0xe0, value: Buffer.alloc(MAX_V2_PAYLOAD - 12 - 2) }]);
  const r = parseProxyHeader(overLimit.subarray(0, 16));
  assert.equal(r.kind, 'error', 'refused from the 16 fixed bytes');
});

const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((b) => b.join('.'));
const ipv6 = fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 }).map((g) => {
  // Canonical form through the parser's own canonicalisation target: RFC 5952 via a v1 round trip.
  const r = parseProxyHeader(Buffer.from(`PROXY TCP6 ${g.map((x) => x.toString(16)).join(':')} ::1 1 1\r\n`));
  if (r.kind !== 'header' || r.header.command !== 'proxy') throw new Error('cannot canonicalise');
  return r.header.source.address;
});
const port = fc.nat(65535);
const header: fc.Arbitrary<ProxyHeader> = fc.oneof(
  fc.constantFrom(1 as const, 2 as const).map((version): ProxyHeader => ({ version, command: 'local' })),
  fc
    .tuple(fc.constantFrom(1 as const, 2 as const), fc.boolean(), port, port)
    .chain(([version, isV4, sp, dp]) =>
      fc.tuple(isV4 ? ipv4 : ipv6, isV4 ? ipv4 : ipv6).map(
        ([s, d]): ProxyHeader => ({
          version,
          command: 'proxy',
          family: isV4 ? 'IPv4' : 'IPv6',
          source: { address: s, port: sp },
          destination: { address: d, port: dp },
        }),
      ),
    ),
);
const tlv = fc.record({ type: fc.nat(255), value: fc.uint8Array({ maxLength: 40 }) });

test('PROXY header property: encode then parse gives the header back and leaves the following bytes alone', () => {
  fc.assert(
    fc.property(header, fc.array(tlv, { maxLength: 4 }), fc.uint8Array({ maxLength: 64 }), fc.nat(200), (h, tlvs, rest, cut) => {
      const encoded = encodeProxyHeader(h.version, h, h.version === 2 ? tlvs : []);
      const input = Buffer.concat([encoded, rest]);
      const r = parseProxyHeader(input);
      assert.deepEqual(r, { kind: 'header', header: h, consumed: encoded.length });
      // Any prefix shorter than the header is incomplete, never an error or a different header.
      const n = cut % encoded.length;
      assert.equal(parseProxyHeader(input.subarray(0, n)).kind, 'incomplete');
    }),
    { seed: SEED, numRuns: 1000 },
  );
});

test('PROXY header property: arbitrary bytes never throw and never yield more than was given', () => {
  const sig = fc.constantFrom(Buffer.alloc(0), V2_SIGNATURE, Buffer.from('PROXY '));
  fc.assert(
    fc.property(sig, fc.uint8Array({ maxLength: 300 }), (prefix, bytes) => {
      const input = Buffer.concat([prefix, bytes]);
      const r = parseProxyHeader(input);
      if (r.kind === 'header') assert.ok(r.consumed <= input.length);
    }),
    { seed: SEED, numRuns: 3000 },
  );
});
