/**
 * HTTP test helpers: a request function that sets any header (Host included), a raw-socket
 * exchange for malformed input, and readers for the XML and plist answers.
 */
import { request } from 'node:http';
import { connect } from 'node:net';
import { XMLParser } from 'fast-xml-parser';

export interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

export function httpRequest(port: number, path: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: options.method ?? 'GET', headers: options.headers ?? {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Writes bytes on a fresh connection and collects everything until the server closes. */
export function rawExchange(port: number, data: string | Buffer, options: { endAfterWrite?: boolean } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    let out = '';
    sock.on('data', (d: Buffer) => { out += d.toString('latin1'); });
    sock.on('close', () => resolve(out));
    sock.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' || err.code === 'EPIPE' ? resolve(out) : reject(err)));
    sock.write(data);
    if (options.endAfterWrite) sock.end();
  });
}

/** Parses XML; repeated elements always come back as arrays when listed in `arrays`. */
export function parseXml(text: string, arrays: string[] = []): any {
  const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@', parseTagValue: false, isArray: (name) => arrays.includes(name) });
  return parser.parse(text);
}

type PlistValue = string | number | boolean | PlistValue[] | { [k: string]: PlistValue };

/** Reads an XML property list (keys and values are ordered siblings in a dict). */
export function parsePlist(text: string): PlistValue {
  const parser = new XMLParser({ preserveOrder: true, ignoreAttributes: true, parseTagValue: false, trimValues: false });
  const doc = parser.parse(text) as any[];
  const plist = doc.find((n) => 'plist' in n);
  const root = (plist.plist as any[]).find((n) => !('#text' in n));
  return readNode(root);
}

function textOf(children: any[]): string {
  return children.map((c) => c['#text'] ?? '').join('');
}

function readNode(node: any): PlistValue {
  const tag = Object.keys(node).find((k) => k !== ':@')!;
  const kids = node[tag] as any[];
  switch (tag) {
    case 'string': return textOf(kids);
    case 'integer': return Number(textOf(kids));
    case 'true': return true;
    case 'false': return false;
    case 'array': return kids.filter((k) => !('#text' in k)).map(readNode);
    case 'dict': {
      const out: Record<string, PlistValue> = {};
      const elems = kids.filter((k) => !('#text' in k));
      for (let i = 0; i + 1 < elems.length; i += 2) out[textOf(elems[i].key)] = readNode(elems[i + 1]);
      return out;
    }
    default: throw new Error(`unexpected plist element ${tag}`);
  }
}
