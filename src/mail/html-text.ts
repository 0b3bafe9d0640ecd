/**
 * HTML reduced to text for search and preview: tags dropped, script/style content dropped, block
 * elements turned into line breaks, character references decoded (HTML5 named subset + numeric).
 *
 * Invariants: never throws; a single left-to-right pass (no backtracking regular expressions over
 * the document), so hostile markup costs linear time.
 */
import { trimWsp } from './headers.js';

const BLOCK: ReadonlySet<string> = new Set([
  'address', 'article', 'aside', 'blockquote', 'br', 'dd', 'div', 'dl', 'dt', 'footer', 'form',
  'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'header', 'hr', 'li', 'main', 'nav', 'ol', 'p', 'pre',
  'section', 'table', 'tbody', 'thead', 'tfoot', 'tr', 'ul',
]);
const CELL: ReadonlySet<string> = new Set(['td', 'th']);
/** Elements whose content is not text for a reader. */
const SKIP_CONTENT: ReadonlySet<string> = new Set(['script', 'style', 'title', 'template']);

// A Map, not an object: "&constructor;" must not find Object.prototype members.
const NAMED: ReadonlyMap<string, string> = new Map(Object.entries({
  amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ', copy: '©', reg: '®', trade: '™',
  hellip: '…', mdash: '—', ndash: '–', lsquo: '‘', rsquo: '’', ldquo: '“', rdquo: '”',
  sbquo: '‚', bdquo: '„', laquo: '«', raquo: '»', bull: '•', middot: '·', euro: '€', pound: '£',
  yen: '¥', cent: '¢', sect: '§', deg: '°', plusmn: '±', times: '×', divide: '÷', para: '¶',
  shy: '', iexcl: '¡', iquest: '¿', szlig: 'ß', zwnj: '', zwj: '', ensp: ' ', emsp: ' ',
  thinsp: ' ', auml: 'ä', ouml: 'ö', uuml: 'ü', Auml: 'Ä', Ouml: 'Ö', Uuml: 'Ü', euml: 'ë',
  iuml: 'ï', eacute: 'é', egrave: 'è', ecirc: 'ê', Eacute: 'É', Egrave: 'È', Ecirc: 'Ê',
  aacute: 'á', agrave: 'à', acirc: 'â', Aacute: 'Á', Agrave: 'À', Acirc: 'Â', atilde: 'ã',
  aring: 'å', Aring: 'Å', aelig: 'æ', AElig: 'Æ', ccedil: 'ç', Ccedil: 'Ç', ntilde: 'ñ',
  Ntilde: 'Ñ', oacute: 'ó', ograve: 'ò', ocirc: 'ô', otilde: 'õ', oslash: 'ø', Oslash: 'Ø',
  Oacute: 'Ó', uacute: 'ú', ugrave: 'ù', ucirc: 'û', Uacute: 'Ú', iacute: 'í', igrave: 'ì',
  icirc: 'î', Iacute: 'Í', yacute: 'ý', yuml: 'ÿ', oelig: 'œ', OElig: 'Œ', scaron: 'š',
  Scaron: 'Š', zcaron: 'ž', Zcaron: 'Ž', larr: '←', rarr: '→', uarr: '↑', darr: '↓',
}));

const ENTITY = /&(#[xX][0-9a-fA-F]{1,6}|#[0-9]{1,7}|[A-Za-z][A-Za-z0-9]{1,31});?/g;

export function decodeEntities(s: string): string {
  if (!s.includes('&')) return s;
  return s.replace(ENTITY, (whole, body: string) => {
    if (body.startsWith('#')) {
      const code = body[1] === 'x' || body[1] === 'X' ? parseInt(body.slice(2), 16) : parseInt(body.slice(1), 10);
      // A reference to NUL, a surrogate or past Unicode is U+FFFD (HTML5 §13.2.5.80).
      if (!(code > 0 && code <= 0x10ffff) || (code >= 0xd800 && code <= 0xdfff)) return '\ufffd';
      return String.fromCodePoint(code);
    }
    return NAMED.get(body) ?? whole;
  });
}

function isNameChar(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

export function htmlToText(html: string): string {
  const out: string[] = [];
  const n = html.length;
  // Elements whose closing tag was searched for and is absent: not searched again (linear time).
  const unclosed = new Set<string>();
  let i = 0;
  const text = (s: string): void => {
    // Whitespace in HTML source collapses to one space (CSS white-space: normal).
    if (s !== '') out.push(decodeEntities(s.replace(/[ \t\r\n\f]+/g, ' ')));
  };
  while (i < n) {
    const lt = html.indexOf('<', i);
    if (lt < 0) {
      text(html.slice(i));
      break;
    }
    text(html.slice(i, lt));
    if (html.startsWith('<!--', lt)) {
      const e = html.indexOf('-->', lt + 4);
      i = e < 0 ? n : e + 3;
      continue;
    }
    const next = html.charCodeAt(lt + 1);
    if (next === 0x21 || next === 0x3f) {
      // <!DOCTYPE ...>, <![CDATA[...]]> declarations and <?...?> processing instructions.
      const gt = html.indexOf('>', lt);
      i = gt < 0 ? n : gt + 1;
      continue;
    }
    const closing = next === 0x2f;
    let j = closing ? lt + 2 : lt + 1;
    const nameStart = j;
    while (j < n && isNameChar(html.charCodeAt(j))) j++;
    if (j === nameStart) {
      // Not a tag ("a < b"): the "<" is text.
      out.push('<');
      i = lt + 1;
      continue;
    }
    const name = html.slice(nameStart, j).toLowerCase();
    const gt = html.indexOf('>', j);
    if (gt < 0) break;
    i = gt + 1;
    if (BLOCK.has(name)) out.push('\n');
    else if (CELL.has(name)) out.push('\t');
    if (!closing && SKIP_CONTENT.has(name) && !unclosed.has(name) && html.charCodeAt(gt - 1) !== 0x2f) {
      const end = new RegExp(`</${name}\\s*>`, 'gi');
      end.lastIndex = i;
      const m = end.exec(html);
      if (m !== null) i = m.index + m[0].length;
      else unclosed.add(name);
    }
  }
  // Trim each line; empty lines (from nested blocks) carry nothing for search or preview.
  const kept: string[] = [];
  for (const line of out.join('').split('\n')) {
    const t = trimWsp(line);
    if (t !== '') kept.push(t);
  }
  return kept.join('\n');
}
