/**
 * XML and property-list output built from typed values: every text and attribute value is
 * escaped here, so no request data is ever pasted into markup.
 */

export type XmlNode = { name: string; attrs?: Record<string, string>; children?: Array<XmlNode | string> } | string;

/** Characters not allowed in XML 1.0 (§2.2 Char): removed rather than emitted. */
const INVALID_XML = /[^\x09\x0A\x0D\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu;

export function escapeXml(s: string): string {
  return s
    .replace(INVALID_XML, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

export function el(name: string, attrsOrChildren?: Record<string, string> | Array<XmlNode | string> | string, children?: Array<XmlNode | string> | string): XmlNode {
  if (typeof attrsOrChildren === 'string' || Array.isArray(attrsOrChildren)) {
    return { name, children: typeof attrsOrChildren === 'string' ? [attrsOrChildren] : attrsOrChildren };
  }
  return { name, ...(attrsOrChildren ? { attrs: attrsOrChildren } : {}), children: typeof children === 'string' ? [children] : (children ?? []) };
}

function render(node: XmlNode, depth: number, out: string[]): void {
  const pad = '  '.repeat(depth);
  if (typeof node === 'string') {
    out.push(pad + escapeXml(node));
    return;
  }
  const attrs = Object.entries(node.attrs ?? {}).map(([k, v]) => ` ${k}="${escapeXml(v)}"`).join('');
  const kids = node.children ?? [];
  if (kids.length === 0) {
    out.push(`${pad}<${node.name}${attrs}/>`);
  } else if (kids.every((k) => typeof k === 'string')) {
    out.push(`${pad}<${node.name}${attrs}>${(kids as string[]).map(escapeXml).join('')}</${node.name}>`);
  } else {
    out.push(`${pad}<${node.name}${attrs}>`);
    for (const k of kids) render(k, depth + 1, out);
    out.push(`${pad}</${node.name}>`);
  }
}

export function xmlDocument(root: XmlNode, prolog = ''): string {
  const out = ['<?xml version="1.0" encoding="UTF-8"?>'];
  if (prolog) out.push(prolog);
  render(root, 0, out);
  return out.join('\n') + '\n';
}

/** A property-list value (Apple's XML plist, the body of a .mobileconfig). */
export type PlistValue = string | number | boolean | PlistValue[] | { [key: string]: PlistValue };

function plistNode(v: PlistValue): XmlNode {
  if (typeof v === 'string') return el('string', v);
  if (typeof v === 'boolean') return el(v ? 'true' : 'false');
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new Error(`Cannot write ${v} to a plist: only integers are used`);
    return el('integer', String(v));
  }
  if (Array.isArray(v)) return el('array', v.map(plistNode));
  const kids: XmlNode[] = [];
  for (const [k, val] of Object.entries(v)) kids.push(el('key', k), plistNode(val));
  return el('dict', kids);
}

export function plistDocument(root: PlistValue): string {
  return xmlDocument(
    el('plist', { version: '1.0' }, [plistNode(root)]),
    '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">',
  );
}
