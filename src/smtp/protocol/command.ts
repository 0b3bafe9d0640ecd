/**
 * SMTP/LMTP command parser (RFC 5321 §4.1, ESMTP parameters RFC 5321 §4.1.2, SIZE RFC 1870,
 * 8BITMIME RFC 6152, SMTPUTF8 RFC 6531, DSN RFC 3461, CHUNKING RFC 3030, AUTH RFC 4954,
 * LHLO RFC 2033). Bytes in, a typed command or a typed syntax reply out; no I/O, no policy.
 *
 * Leniencies, on purpose: verbs are case-insensitive (RFC 5321 §2.4); one or more spaces are
 * accepted after "FROM:"/"TO:" (many clients send one); a trailing space is ignored.
 */
import { parsePath, isDomain, isAddressLiteralBody, type Mailbox } from './address.js';
import { R, reply, type Reply } from './reply.js';

export type BodyType = '7BIT' | '8BITMIME' | 'BINARYMIME';

export interface MailParams {
  size: number | null;
  body: BodyType | null;
  smtputf8: boolean;
  /** RFC 3461 §4.3 RET. */
  ret: 'FULL' | 'HDRS' | null;
  /** RFC 3461 §4.4 ENVID, decoded from xtext. */
  envid: string | null;
  /** RFC 4954 §5 AUTH=, decoded from xtext; "<>" when the client says the identity is unknown. */
  auth: string | null;
  /** RFC 8689 §2 REQUIRETLS: relay only over verified TLS to hosts that offer REQUIRETLS. */
  requireTls: boolean;
}

export interface RcptParams {
  /** RFC 3461 §4.1 NOTIFY. */
  notify: Array<'NEVER' | 'SUCCESS' | 'FAILURE' | 'DELAY'> | null;
  /** RFC 3461 §4.2 ORCPT: addr-type and the decoded address. */
  orcpt: { type: string; address: string } | null;
}

export type SmtpCommand =
  | { verb: 'EHLO' | 'HELO' | 'LHLO'; domain: string }
  | { verb: 'MAIL'; from: Mailbox | null; params: MailParams }
  /** 'postmaster': RFC 5321 §4.1.1.3 RCPT TO:<Postmaster> without a domain. */
  | { verb: 'RCPT'; to: Mailbox | 'postmaster'; params: RcptParams }
  | { verb: 'DATA' }
  | { verb: 'BDAT'; size: number; last: boolean }
  | { verb: 'RSET' | 'NOOP' | 'QUIT' | 'STARTTLS' | 'HELP' }
  | { verb: 'VRFY' | 'EXPN'; argument: string }
  | { verb: 'AUTH'; mechanism: string; initialResponse: string | null };

export type CommandResult = { ok: true; command: SmtpCommand } | { ok: false; reply: Reply };

const fail = (reply: Reply): CommandResult => ({ ok: false, reply });
const decoder = new TextDecoder('utf-8', { fatal: true });

/** RFC 3461 §4 xtext: "+" HEXCHAR HEXCHAR encodes one octet; other chars are %d33-42 / %d44-60 /
 * %d62-126. Returns null when malformed. */
export function decodeXtext(s: string): string | null {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    const c = ch.charCodeAt(0);
    if (ch === '+') {
      const hex = s.slice(i + 1, i + 3);
      if (!/^[0-9A-F]{2}$/.test(hex)) return null;
      out += String.fromCharCode(parseInt(hex, 16));
      i += 2;
    } else if (c < 33 || c > 126 || ch === '=') {
      return null;
    } else {
      out += ch;
    }
  }
  return out;
}

/** RFC 5321 §4.1.2: esmtp-param = esmtp-keyword ["=" esmtp-value]. */
function parseParams(s: string): Array<[string, string | null]> | null {
  const out: Array<[string, string | null]> = [];
  for (const word of s.split(' ')) {
    if (word === '') continue;
    const eq = word.indexOf('=');
    const key = eq === -1 ? word : word.slice(0, eq);
    const value = eq === -1 ? null : word.slice(eq + 1);
    if (!/^[A-Za-z0-9][A-Za-z0-9-]*$/.test(key)) return null;
    // esmtp-value = 1*(%d33-60 / %d62-126), UTF-8 allowed with SMTPUTF8 (RFC 6531 §3.3)
    if (value !== null && (value === '' || /[\x00-\x20=\x7f]/.test(value))) return null;
    out.push([key.toUpperCase(), value]);
  }
  return out;
}

function parseMailParams(list: Array<[string, string | null]>): MailParams | Reply {
  const p: MailParams = { size: null, body: null, smtputf8: false, ret: null, envid: null, auth: null, requireTls: false };
  const seen = new Set<string>();
  for (const [key, value] of list) {
    if (seen.has(key)) return R.paramSyntax(`Duplicate parameter ${key}`);
    seen.add(key);
    switch (key) {
      case 'SIZE':
        // RFC 1870 §6: size-value = 1*20DIGIT
        if (value === null || !/^\d{1,20}$/.test(value)) return R.paramSyntax('Bad SIZE value');
        p.size = Number(value);
        break;
      case 'BODY': {
        const v = value?.toUpperCase();
        if (v !== '7BIT' && v !== '8BITMIME' && v !== 'BINARYMIME') return R.paramSyntax('Bad BODY value');
        p.body = v;
        break;
      }
      case 'SMTPUTF8':
        // RFC 6531 §3.4: the parameter has no value
        if (value !== null) return R.paramSyntax('SMTPUTF8 takes no value');
        p.smtputf8 = true;
        break;
      case 'RET': {
        const v = value?.toUpperCase();
        if (v !== 'FULL' && v !== 'HDRS') return R.paramSyntax('Bad RET value');
        p.ret = v;
        break;
      }
      case 'ENVID': {
        const v = value === null ? null : decodeXtext(value);
        // RFC 3461 §4.4: at most 100 characters
        if (v === null || value!.length > 100) return R.paramSyntax('Bad ENVID value');
        p.envid = v;
        break;
      }
      case 'AUTH': {
        const v = value === null ? null : decodeXtext(value);
        if (v === null) return R.paramSyntax('Bad AUTH value');
        p.auth = v;
        break;
      }
      case 'REQUIRETLS':
        // RFC 8689 §2: the parameter has no value
        if (value !== null) return R.paramSyntax('REQUIRETLS takes no value');
        p.requireTls = true;
        break;
      default:
        return R.paramNotImplemented(`Unsupported parameter ${key}`);
    }
  }
  return p;
}

function parseRcptParams(list: Array<[string, string | null]>): RcptParams | Reply {
  const p: RcptParams = { notify: null, orcpt: null };
  const seen = new Set<string>();
  for (const [key, value] of list) {
    if (seen.has(key)) return R.paramSyntax(`Duplicate parameter ${key}`);
    seen.add(key);
    switch (key) {
      case 'NOTIFY': {
        if (value === null) return R.paramSyntax('Bad NOTIFY value');
        const items = value.toUpperCase().split(',');
        const valid = ['NEVER', 'SUCCESS', 'FAILURE', 'DELAY'];
        if (items.some((x) => !valid.includes(x)) || new Set(items).size !== items.length) {
          return R.paramSyntax('Bad NOTIFY value');
        }
        // RFC 3461 §4.1: NEVER excludes the others
        if (items.includes('NEVER') && items.length > 1) return R.paramSyntax('NOTIFY=NEVER excludes other values');
        p.notify = items as RcptParams['notify'];
        break;
      }
      case 'ORCPT': {
        // RFC 3461 §4.2: addr-type ";" xtext, at most 500 characters
        const semi = value?.indexOf(';') ?? -1;
        if (value === null || semi <= 0 || value.length > 500) return R.paramSyntax('Bad ORCPT value');
        const address = decodeXtext(value.slice(semi + 1));
        if (address === null || !/^[A-Za-z0-9-]+$/.test(value.slice(0, semi))) return R.paramSyntax('Bad ORCPT value');
        p.orcpt = { type: value.slice(0, semi).toLowerCase(), address };
        break;
      }
      default:
        return R.paramNotImplemented(`Unsupported parameter ${key}`);
    }
  }
  return p;
}

/** RFC 5321 §4.1.1.1: EHLO/HELO argument is a Domain or an address-literal. Leniency: an
 * underscore is accepted in labels (Windows host names have them and their clients send them);
 * nothing else outside the grammar is, so the argument is always safe to write in Received. */
function parseHeloArgument(arg: string): string | null {
  if (arg.startsWith('[') && arg.endsWith(']') && isAddressLiteralBody(arg.slice(1, -1))) return arg;
  if (isDomain(arg)) return arg;
  if (arg.length <= 255 && /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(arg)) return arg;
  return null;
}

/**
 * Parses one command line (without its line terminator). `line` may contain UTF-8 (RFC 6531);
 * invalid UTF-8, NUL and other control characters are syntax errors.
 */
export function parseCommand(line: Buffer): CommandResult {
  let text: string;
  try {
    text = decoder.decode(line);
  } catch {
    return fail(R.syntax('Invalid UTF-8 in command'));
  }
  // RFC 5321 §2.3.8 / §4.1.1: commands are printable text; NUL and controls are refused.
  if (/[\x00-\x08\x0a-\x1f\x7f]/.test(text)) return fail(R.syntax('Control character in command'));
  text = text.replace(/[ \t]+$/, '');
  const sp = text.indexOf(' ');
  const verb = (sp === -1 ? text : text.slice(0, sp)).toUpperCase();
  const rest = sp === -1 ? '' : text.slice(sp + 1);
  switch (verb) {
    case 'EHLO':
    case 'HELO':
    case 'LHLO': {
      const domain = parseHeloArgument(rest.trim());
      if (domain === null) return fail(R.paramSyntax(`${verb} requires a domain or address literal`));
      return { ok: true, command: { verb, domain } };
    }
    case 'MAIL': {
      const m = /^FROM:[ ]*/i.exec(rest);
      if (!m) return fail(R.paramSyntax('Syntax: MAIL FROM:<address>'));
      const path = parsePath(rest, m[0].length, true);
      if (!path.ok) return fail(reply501Address(path.error, '5.1.7'));
      const after = rest.slice(path.end);
      if (after !== '' && !after.startsWith(' ')) return fail(R.paramSyntax('Syntax: MAIL FROM:<address>'));
      const list = parseParams(after);
      if (list === null) return fail(R.paramSyntax());
      const params = parseMailParams(list);
      if ('code' in params) return fail(params);
      return { ok: true, command: { verb: 'MAIL', from: path.value, params } };
    }
    case 'RCPT': {
      const m = /^TO:[ ]*/i.exec(rest);
      if (!m) return fail(R.paramSyntax('Syntax: RCPT TO:<address>'));
      let to: Mailbox | 'postmaster';
      let end: number;
      const pm = /^<postmaster>/i.exec(rest.slice(m[0].length));
      if (pm) {
        to = 'postmaster';
        end = m[0].length + pm[0].length;
      } else {
        const path = parsePath(rest, m[0].length, false);
        if (!path.ok) return fail(reply501Address(path.error, '5.1.3'));
        to = path.value!;
        end = path.end;
      }
      const after = rest.slice(end);
      if (after !== '' && !after.startsWith(' ')) return fail(R.paramSyntax('Syntax: RCPT TO:<address>'));
      const list = parseParams(after);
      if (list === null) return fail(R.paramSyntax());
      const params = parseRcptParams(list);
      if ('code' in params) return fail(params);
      return { ok: true, command: { verb: 'RCPT', to, params } };
    }
    case 'BDAT': {
      // RFC 3030 §2: bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ] CR LF
      // chunk-size = 1*DIGIT: leading zeros allowed, at most 15 significant digits here.
      const m = /^0*(\d{1,15})( LAST)?$/i.exec(rest);
      if (!m) return fail(R.paramSyntax('Syntax: BDAT size [LAST]'));
      return { ok: true, command: { verb: 'BDAT', size: Number(m[1]), last: m[2] !== undefined } };
    }
    case 'DATA':
    case 'RSET':
    case 'QUIT':
    case 'STARTTLS':
      if (rest !== '') return fail(R.paramSyntax(`${verb} takes no argument`));
      return { ok: true, command: { verb } };
    case 'NOOP':
    case 'HELP':
      // RFC 5321 §4.1.1.9 / §4.1.1.8: an argument is allowed and ignored
      return { ok: true, command: { verb } };
    case 'VRFY':
    case 'EXPN':
      if (rest === '') return fail(R.paramSyntax(`${verb} requires an argument`));
      return { ok: true, command: { verb, argument: rest } };
    case 'AUTH': {
      // RFC 4954 §4: AUTH mechanism [initial-response]
      const m = /^([A-Za-z0-9_-]{1,20})(?: ([A-Za-z0-9+/]+={0,2}|=))?$/.exec(rest);
      if (!m) return fail(R.paramSyntax('Syntax: AUTH mechanism [initial-response]'));
      return { ok: true, command: { verb: 'AUTH', mechanism: m[1]!.toUpperCase(), initialResponse: m[2] ?? null } };
    }
    default:
      return fail(reply(500, '5.5.2', 'Command unrecognized'));
  }
}

function reply501Address(error: string, enhanced: string): Reply {
  return { code: 501, enhanced, lines: [error] };
}
