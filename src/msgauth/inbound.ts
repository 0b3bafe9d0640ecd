/**
 * Message authentication of incoming mail: SPF for MAIL FROM and HELO (RFC 7208 §2.3, §2.4),
 * DKIM verification (RFC 6376), DMARC with alignment (RFC 7489), ARC verification (RFC 8617),
 * reported in one Authentication-Results field (RFC 8601) under this server's authserv-id.
 * A thin layer over mailauth; all DNS goes through the injected Resolver.
 *
 * Invariants: never throws for a DNS failure (that is a temperror result); fields the client
 * sent that claim our authserv-id are removed before delivery (RFC 8601 §5); at most
 * MAX_DKIM_SIGNATURES signatures are verified (RFC 6376 §6.1 lets a verifier limit them): each
 * costs a DNS query and, with its own l= or canonicalization, a pass over the whole body, so a
 * message carrying hundreds held the event loop for minutes.
 */
import { authenticate, spf } from 'mailauth';
import { mailauthResolver, type Resolver } from '../dns/resolver.js';
import { scanHeader } from '../mail/headers.js';

export type DmarcRejectAction = 'reject' | 'junk';

/** DKIM-Signature fields verified, the topmost (the latest added) first; the rest are ignored. */
export const MAX_DKIM_SIGNATURES = 8;

export interface InboundCheckInput {
  /** The message as received, before any field is added. */
  raw: Buffer;
  ip: string;
  /** EHLO/HELO argument (a domain or an address literal). */
  helo: string | null;
  /** MAIL FROM address, or null for the null reverse-path. */
  mailFrom: string | null;
}

export interface InboundVerdict {
  /** The Authentication-Results field, CRLF-terminated. */
  field: string;
  /** Its value (after "Authentication-Results:", without the CRLF): what an ARC set records. */
  authResults: string;
  spf: string;
  heloSpf: string | null;
  dkim: string[];
  dmarc: { result: string; policy: string; domain: string } | null;
  arc: string | null;
  /** What the policy does: deliver normally, deliver to Junk, or refuse (550 5.7.1). */
  action: 'accept' | 'junk' | 'reject';
}

export interface InboundAuthOptions {
  resolver: Resolver;
  /** authserv-id (RFC 8601 §2.5): this server's host name. */
  hostname: string;
  dmarcReject: DmarcRejectAction;
}

export interface InboundAuthenticator {
  check(input: InboundCheckInput): Promise<InboundVerdict>;
}

function stripIp(ip: string): string {
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}

export function createInboundAuthenticator(options: InboundAuthOptions): InboundAuthenticator {
  const resolver = mailauthResolver(options.resolver);
  const mta = options.hostname;
  return {
    async check(input) {
      const ip = stripIp(input.ip);
      const heloDomain = input.helo && !input.helo.startsWith('[') ? input.helo : null;
      const result = await authenticate(limitDkimSignatures(input.raw), {
        ip,
        helo: input.helo ?? undefined,
        // RFC 7208 §2.4: with a null reverse-path, SPF checks postmaster@HELO
        sender: input.mailFrom ?? (heloDomain ? `postmaster@${heloDomain}` : undefined),
        mta,
        resolver,
        disableBimi: true,
      });
      const parts: string[] = [];
      const dkim: string[] = [];
      for (const row of result.dkim?.results ?? []) {
        parts.push(safeResInfo(row.info));
        dkim.push(row.status.result);
      }
      const spfResult = result.spf ? result.spf.status.result : 'none';
      if (result.spf) parts.push(safeResInfo(result.spf.info));
      // RFC 7208 §2.3: the HELO identity is checked on its own (when MAIL FROM was not null,
      // the check above was for MAIL FROM).
      let heloSpf: string | null = null;
      if (heloDomain && input.mailFrom !== null) {
        const r = await spf({ sender: `postmaster@${heloDomain}`, ip, helo: heloDomain, mta, resolver });
        heloSpf = r.status.result;
        parts.push(`spf=${heloSpf} smtp.helo=${heloDomain}`);
      }
      let arc: string | null = null;
      if (result.arc) {
        arc = result.arc.status.result;
        if (result.arc.info) parts.push(safeResInfo(result.arc.info));
      }
      let dmarc: InboundVerdict['dmarc'] = null;
      let action: InboundVerdict['action'] = 'accept';
      if (result.dmarc) {
        dmarc = { result: result.dmarc.status.result, policy: result.dmarc.policy ?? 'none', domain: result.dmarc.domain };
        if (result.dmarc.info) parts.push(safeResInfo(result.dmarc.info));
        if (dmarc.result === 'fail') {
          if (dmarc.policy === 'reject') {
            // RFC 7489 §6.6.3 / RFC 8617 §7.2: a receiver may override the policy locally; a
            // valid ARC chain (forwarders, mailing lists) turns a refusal into Junk.
            action = options.dmarcReject === 'reject' && arc !== 'pass' ? 'reject' : 'junk';
          } else if (dmarc.policy === 'quarantine') {
            action = 'junk';
          }
        }
      }
      if (parts.length === 0) parts.push('none');
      const authResults = `${mta};\r\n ${parts.join(';\r\n ')}`;
      return { field: `Authentication-Results: ${authResults}\r\n`, authResults, spf: spfResult, heloSpf, dkim, dmarc, arc, action };
    },
  };
}

/**
 * A result from mailauth made safe to write in our Authentication-Results (RFC 8601 §2.2): its
 * comments quote what the client sent (MAIL FROM, signature tags), escaping ")" and "\" but not
 * "(", so a sender could open a nested comment and end ours early, making its own text read as
 * results under our name. Inside a comment every "(" is escaped, so comments do not nest and end
 * where mailauth ended them; an unterminated comment or quoted string is closed; control
 * characters (a line break would end the field) become spaces.
 */
export function safeResInfo(info: string): string {
  let out = '';
  let comment = false;
  let quoted = false;
  for (let i = 0; i < info.length; i++) {
    let c = info[i]!;
    if (c < ' ' || c === '\x7f') c = ' ';
    if (c === '\\' && i + 1 < info.length && info[i + 1]! >= ' ' && info[i + 1] !== '\x7f') {
      out += c + info[++i]!;
    } else if (c === '\\') {
      out += '\\\\';
    } else if (comment) {
      if (c === ')') comment = false;
      out += c === '(' ? '\\(' : c;
    } else if (quoted) {
      if (c === '"') quoted = false;
      out += c;
    } else {
      if (c === '"') quoted = true;
      else if (c === '(') comment = true;
      out += c;
    }
  }
  if (quoted) out += '"';
  if (comment) out += ')';
  return out;
}

/** The message as the verifier sees it: without the DKIM-Signature fields past the first
 * MAX_DKIM_SIGNATURES (the same bytes when there are not that many). */
export function limitDkimSignatures(raw: Buffer, max = MAX_DKIM_SIGNATURES): Buffer {
  const fields = scanHeader(raw).fields.filter((f) => f.name === 'dkim-signature');
  return fields.length <= max ? raw : withoutFields(raw, fields.slice(max));
}

/** `raw` without the given fields (in header order). */
function withoutFields(raw: Buffer, drop: ReadonlyArray<{ start: number; end: number }>): Buffer {
  const out: Buffer[] = [];
  let pos = 0;
  for (const d of drop) {
    out.push(raw.subarray(pos, d.start));
    pos = d.end;
  }
  out.push(raw.subarray(pos));
  return Buffer.concat(out);
}

/**
 * RFC 8601 §5: Authentication-Results fields that claim this server's authserv-id and came from
 * outside are forgeries; they are removed. Returns the message unchanged when there are none.
 */
export function removeOwnAuthResults(raw: Buffer, hostname: string): Buffer {
  const scan = scanHeader(raw);
  const id = hostname.toLowerCase();
  const drop: Array<{ start: number; end: number }> = [];
  for (const f of scan.fields) {
    if (f.name !== 'authentication-results') continue;
    const value = raw.toString('latin1', f.valueStart, f.end);
    // RFC 8601 §2.2: authres-header = "Authentication-Results:" [CFWS] authserv-id ...
    const m = /^(?:\s|\([^)]*\))*([^\s;()]+)/.exec(value);
    if (m && m[1]!.toLowerCase() === id) drop.push({ start: f.start, end: f.end });
  }
  return drop.length === 0 ? raw : withoutFields(raw, drop);
}
