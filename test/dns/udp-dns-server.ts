/**
 * A DNS server on 127.0.0.1 (UDP, port 0) answering from an in-memory Zone, so the `facteur check`
 * command can be run as an operator runs it (`--dns HOST:PORT`) without contacting real DNS.
 * Unknown names answer NXDOMAIN, known names without the asked type an empty NOERROR.
 */
import { createSocket } from 'node:dgram';
import { ipToBigInt } from '../../src/dns/records.js';
import type { Zone } from './mock-resolver.js';

const TYPE = { A: 1, CNAME: 5, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33 } as const;

function encodeName(name: string): Buffer {
  const labels = name.replace(/\.$/, '').split('.').filter(Boolean);
  return Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'ascii')])), Buffer.from([0])]);
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function answers(zone: Zone, name: string, qtype: number): Buffer[] | null {
  const exists = [zone.mx, zone.a, zone.aaaa, zone.txt, zone.cname, zone.srv, zone.ptr].some((m) => m.has(name));
  if (!exists) return null;
  const out: Buffer[] = [];
  const cname = zone.cname.get(name);
  if (qtype === TYPE.CNAME && cname) out.push(encodeName(cname));
  if (qtype === TYPE.A) for (const ip of zone.a.get(name) ?? []) out.push(Buffer.from(ip.split('.').map(Number)));
  if (qtype === TYPE.AAAA) {
    for (const ip of zone.aaaa.get(name) ?? []) out.push(Buffer.from(ipToBigInt(ip).toString(16).padStart(32, '0'), 'hex'));
  }
  if (qtype === TYPE.TXT) {
    for (const v of zone.txt.get(name) ?? []) {
      const parts = v.match(/.{1,255}/gs) ?? [''];
      out.push(Buffer.concat(parts.map((p) => Buffer.concat([Buffer.from([Buffer.byteLength(p)]), Buffer.from(p)]))));
    }
  }
  if (qtype === TYPE.MX) for (const mx of zone.mx.get(name) ?? []) out.push(Buffer.concat([u16(mx.priority), encodeName(mx.exchange)]));
  if (qtype === TYPE.PTR) for (const p of zone.ptr.get(name) ?? []) out.push(encodeName(p));
  if (qtype === TYPE.SRV) {
    for (const s of zone.srv.get(name) ?? []) out.push(Buffer.concat([u16(s.priority), u16(s.weight), u16(s.port), encodeName(s.name)]));
  }
  return out;
}

export async function startDnsServer(zone: Zone): Promise<{ port: number; close(): Promise<void> }> {
  const sock = createSocket('udp4');
  sock.on('message', (msg, rinfo) => {
    if (msg.length < 12) return;
    let off = 12;
    const labels: string[] = [];
    while (off < msg.length && msg[off]! !== 0) {
      const len = msg[off]!;
      labels.push(msg.subarray(off + 1, off + 1 + len).toString('ascii'));
      off += 1 + len;
    }
    off += 1;
    const qtype = msg.readUInt16BE(off);
    const question = msg.subarray(12, off + 4);
    const name = labels.join('.').toLowerCase();
    const rdatas = answers(zone, name, qtype);
    const flags = 0x8000 | 0x0400 | (msg.readUInt16BE(2) & 0x0100) | 0x0080 | (rdatas === null ? 3 : 0);
    const records = (rdatas ?? []).map((rd) => Buffer.concat([u16(0xc00c), u16(qtype), u16(1), Buffer.from([0, 0, 14, 16]), u16(rd.length), rd]));
    const header = Buffer.concat([msg.subarray(0, 2), u16(flags), u16(1), u16(records.length), u16(0), u16(0)]);
    sock.send(Buffer.concat([header, question, ...records]), rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
  return {
    port: sock.address().port,
    close: () => new Promise<void>((resolve) => sock.close(() => resolve())),
  };
}
