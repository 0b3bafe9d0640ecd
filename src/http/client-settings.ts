/**
 * What a mail client must be told: for each configured client listener, the protocol, host,
 * port and transport security. Every configuration format served by the http listener
 * (autoconfig, autodiscover, mobileconfig, PACC) and the SRV records of `facteur dns` are
 * rendered from this one list, so they can never disagree with each other or with the listeners.
 *
 * Invariants:
 * - Only listeners that run are advertised; their port is the bound one when the app knows it
 *   (port 0 in tests), else the configured one.
 * - Implicit TLS comes before STARTTLS for each protocol (RFC 8314 §3.3: prefer implicit TLS).
 * - The user name is always the full address (Facteur accounts are addresses).
 */
import { parseHostPort, type ListenerName } from '../config/config.js';

export type ClientProtocol = 'imap' | 'pop3' | 'smtp';
/** SSL: TLS from the first byte (RFC 8314); STARTTLS: upgrade on the plain port; plain: no TLS
 * (only when the server has no certificate at all). */
export type Security = 'SSL' | 'STARTTLS' | 'plain';

export interface ClientEndpoint {
  protocol: ClientProtocol;
  listener: ListenerName;
  host: string;
  port: number;
  security: Security;
}

/** Client listeners in order of preference (RFC 8314 §3.3, §5.1). */
export const CLIENT_LISTENERS: ReadonlyArray<{ listener: ListenerName; protocol: ClientProtocol; implicitTls: boolean }> = [
  { listener: 'imaps', protocol: 'imap', implicitTls: true },
  { listener: 'imap', protocol: 'imap', implicitTls: false },
  { listener: 'pop3s', protocol: 'pop3', implicitTls: true },
  { listener: 'pop3', protocol: 'pop3', implicitTls: false },
  { listener: 'submissions', protocol: 'smtp', implicitTls: true },
  { listener: 'submission', protocol: 'smtp', implicitTls: false },
];

export interface EndpointInput {
  hostname: string;
  /** The configured listeners (NAME -> host:port). */
  listen: Partial<Record<ListenerName, string>>;
  /** Ports the running listeners are bound to; when given, a listener absent here is not running. */
  bound?: Partial<Record<ListenerName, number>>;
  /** Whether the server has a certificate (STARTTLS offered, implicit-TLS listeners running). */
  hasTls: boolean;
}

export function clientEndpoints(input: EndpointInput): ClientEndpoint[] {
  const out: ClientEndpoint[] = [];
  for (const { listener, protocol, implicitTls } of CLIENT_LISTENERS) {
    const addr = input.listen[listener];
    if (!addr) continue;
    if (implicitTls && !input.hasTls) continue;
    let port: number;
    if (input.bound) {
      const b = input.bound[listener];
      if (b === undefined) continue;
      port = b;
    } else {
      port = parseHostPort(addr, `listen.${listener}`).port;
    }
    out.push({ protocol, listener, host: input.hostname, port, security: implicitTls ? 'SSL' : input.hasTls ? 'STARTTLS' : 'plain' });
  }
  return out;
}

/** Addresses are bounded (RFC 5321 §4.5.3.1.3) and must have one "@" and a host-name domain. */
const ADDRESS = /^[^\s@<>"\\\x00-\x1f\x7f]{1,64}@([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+)$/i;

/** Splits an e-mail address taken from a request; null when it is not a plain address. */
export function parseAddress(s: string): { address: string; domain: string } | null {
  if (s.length > 254) return null;
  const m = ADDRESS.exec(s.trim());
  if (!m) return null;
  return { address: s.trim(), domain: m[1]!.toLowerCase() };
}
