/**
 * The configuration documents mail clients fetch, rendered from the list of client endpoints
 * (client-settings.ts). Pure functions: typed values in, a document out; all escaping happens in
 * xml.ts.
 *
 * - Thunderbird autoconfig (clientConfig 1.1, the format of draft-ietf-mailmaint-autoconfig).
 * - Microsoft autodiscover POX (the "outlook" response schema 2006a) and the JSON v2 redirect.
 * - Apple configuration profile (.mobileconfig) with one com.apple.mail.managed payload.
 * - PACC (draft-ietf-mailmaint-pacc-02) JSON.
 * - MTA-STS policy (RFC 8461 §3.2).
 */
import { createHash } from 'node:crypto';
import type { ClientEndpoint } from './client-settings.js';
import { el, plistDocument, xmlDocument, type XmlNode } from './xml.js';

export interface AccountInfo {
  /** The account's domain (a local domain). */
  domain: string;
  /** The full address when the client gave one; the user name is the full address. */
  address: string | null;
}

/** Thunderbird's placeholder, replaced by the address the user typed. */
const EMAIL_PLACEHOLDER = '%EMAILADDRESS%';

function autoconfigServer(e: ClientEndpoint, username: string): XmlNode {
  const tag = e.protocol === 'smtp' ? 'outgoingServer' : 'incomingServer';
  return el(tag, { type: e.protocol }, [
    el('hostname', e.host),
    el('port', String(e.port)),
    el('socketType', e.security),
    el('username', username),
    // The password is sent as is, over TLS (SSL or STARTTLS above).
    el('authentication', 'password-cleartext'),
  ]);
}

/** Thunderbird autoconfig: GET /mail/config-v1.1.xml?emailaddress=… (and the .well-known path). */
export function renderAutoconfig(endpoints: readonly ClientEndpoint[], account: AccountInfo): string {
  const username = account.address ?? EMAIL_PLACEHOLDER;
  return xmlDocument(
    el('clientConfig', { version: '1.1' }, [
      el('emailProvider', { id: account.domain }, [
        el('domain', account.domain),
        el('displayName', `${account.domain} mail`),
        el('displayShortName', account.domain),
        ...endpoints.filter((e) => e.protocol !== 'smtp').map((e) => autoconfigServer(e, username)),
        ...endpoints.filter((e) => e.protocol === 'smtp').map((e) => autoconfigServer(e, username)),
      ]),
    ]),
  );
}

export const AUTODISCOVER_RESPONSE_NS = 'http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006';
export const AUTODISCOVER_OUTLOOK_NS = 'http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a';

/** Outlook's POX autodiscover answer: one Protocol element per endpoint, best first. */
export function renderAutodiscoverXml(endpoints: readonly ClientEndpoint[], account: AccountInfo): string {
  const protocols = endpoints
    .filter((e) => e.security !== 'plain')
    .map((e) =>
      el('Protocol', [
        el('Type', e.protocol === 'imap' ? 'IMAP' : e.protocol === 'pop3' ? 'POP3' : 'SMTP'),
        el('Server', e.host),
        el('Port', String(e.port)),
        ...(account.address ? [el('LoginName', account.address)] : []),
        el('DomainRequired', 'off'),
        el('SPA', 'off'),
        // "SSL" is TLS from the first byte; "TLS" is STARTTLS.
        el('SSL', 'on'),
        el('Encryption', e.security === 'SSL' ? 'SSL' : 'TLS'),
        el('AuthRequired', 'on'),
        ...(e.protocol === 'smtp' ? [el('UsePOPAuth', 'on'), el('SMTPLast', 'off')] : []),
      ]),
    );
  return xmlDocument(
    el('Autodiscover', { xmlns: AUTODISCOVER_RESPONSE_NS }, [
      el('Response', { xmlns: AUTODISCOVER_OUTLOOK_NS }, [
        ...(account.address ? [el('User', [el('DisplayName', account.address)])] : []),
        el('Account', [el('AccountType', 'email'), el('Action', 'settings'), ...protocols]),
      ]),
    ]),
  );
}

/**
 * The EMailAddress of a POX request body. Outlook sends a small fixed document; the body is
 * bounded by the server before this runs, and only this one element is read (no DTD, no
 * entities: nothing is expanded).
 */
export function autodiscoverRequestAddress(body: string): string | null {
  const m = /<(?:[A-Za-z0-9_]+:)?EMailAddress\s*>([^<]{1,320})<\/(?:[A-Za-z0-9_]+:)?EMailAddress\s*>/i.exec(body);
  if (!m) return null;
  return m[1]!
    .trim()
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&');
}

/** A stable UUID from a name: downloading the profile again replaces the installed one. */
function nameUuid(name: string): string {
  const h = createHash('sha256').update(name).digest();
  h[6] = (h[6]! & 0x0f) | 0x50; // version 5-like (name-based)
  h[8] = (h[8]! & 0x3f) | 0x80; // RFC 4122 variant
  const x = h.subarray(0, 16).toString('hex').toUpperCase();
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

/** Reverse-DNS identifier for the profile, from the server's host name. */
function reverseDomain(host: string): string {
  return host.toLowerCase().split('.').filter(Boolean).reverse().join('.');
}

/**
 * An unsigned Apple configuration profile with one mail account (com.apple.mail.managed).
 * Needs an incoming and an outgoing endpoint; the password is asked for on the device.
 */
export function renderMobileconfig(endpoints: readonly ClientEndpoint[], address: string, hostname: string): string | null {
  const incoming = endpoints.find((e) => e.protocol === 'imap') ?? endpoints.find((e) => e.protocol === 'pop3');
  const outgoing = endpoints.find((e) => e.protocol === 'smtp');
  if (!incoming || !outgoing) return null;
  const id = `${reverseDomain(hostname)}.mail.${address.toLowerCase()}`;
  return plistDocument({
    PayloadContent: [
      {
        EmailAccountDescription: address,
        EmailAccountName: address,
        EmailAccountType: incoming.protocol === 'imap' ? 'EmailTypeIMAP' : 'EmailTypePOP',
        EmailAddress: address,
        IncomingMailServerAuthentication: 'EmailAuthPassword',
        IncomingMailServerHostName: incoming.host,
        IncomingMailServerPortNumber: incoming.port,
        IncomingMailServerUseSSL: incoming.security !== 'plain',
        IncomingMailServerUsername: address,
        OutgoingMailServerAuthentication: 'EmailAuthPassword',
        OutgoingMailServerHostName: outgoing.host,
        OutgoingMailServerPortNumber: outgoing.port,
        OutgoingMailServerUseSSL: outgoing.security !== 'plain',
        OutgoingMailServerUsername: address,
        OutgoingPasswordSameAsIncomingPassword: true,
        PayloadDescription: `Mail account ${address}`,
        PayloadDisplayName: address,
        PayloadIdentifier: `${id}.account`,
        PayloadType: 'com.apple.mail.managed',
        PayloadUUID: nameUuid(`${id}.account`),
        PayloadVersion: 1,
      },
    ],
    PayloadDescription: `Mail settings for ${address}`,
    PayloadDisplayName: `Mail: ${address}`,
    PayloadIdentifier: id,
    PayloadRemovalDisallowed: false,
    PayloadType: 'Configuration',
    PayloadUUID: nameUuid(id),
    PayloadVersion: 1,
  });
}

/**
 * PACC configuration document (draft-ietf-mailmaint-pacc-02 §4): the host of each protocol the
 * server offers with implicit TLS; the draft has no port member, so the clients use the
 * standard ports (993, 995, 465) and plain/STARTTLS listeners are not listed.
 */
export function renderPacc(endpoints: readonly ClientEndpoint[], domain: string): string {
  const protocols: Record<string, { host: string }> = {};
  for (const e of endpoints) {
    if (e.security !== 'SSL' || protocols[e.protocol]) continue;
    protocols[e.protocol] = { host: e.host };
  }
  return `${JSON.stringify({ protocols, authentication: { password: true }, info: { provider: { name: domain, shortName: domain } } }, null, 2)}\n`;
}

export interface MtaStsPolicy {
  mode: 'testing' | 'enforce' | 'none';
  mx: readonly string[];
  maxAge: number;
}

/** RFC 8461 §3.2: "key: value" lines, CRLF-terminated, version first. */
export function renderMtaStsPolicy(p: MtaStsPolicy): string {
  const lines = ['version: STSv1', `mode: ${p.mode}`, ...p.mx.map((mx) => `mx: ${mx}`), `max_age: ${p.maxAge}`];
  return lines.map((l) => `${l}\r\n`).join('');
}
