/**
 * The benchmark's mailbox, generated from a seed so that Facteur and Dovecot hold the same bytes:
 * messages of 1 to 6 KB, about half of them replies in threads (In-Reply-To and References up to
 * the thread's root, "Re: " subjects), 400 senders, dates spread over two years and not in
 * arrival order, common words in every message and rare words in few.
 */
import { prng } from '../../test/helpers/prng.js';

const COMMON = (
  'the of and to in is for on that with as this was are be by at from have it not or we an will ' +
  'project meeting report budget review schedule team update client release plan draft invoice ' +
  'customer order shipment contract proposal agenda minutes deadline feedback question answer ' +
  'server network storage backup database deploy staging production ticket issue patch version'
).split(' ');
/** One message in RARE_EVERY holds one of these, so each is in about one message in 10,000. */
export const RARE = ['quetzalcoatlus', 'xanthophyllic', 'zymurgical', 'bdelloidea', 'hemidemisemiquaver'];
const RARE_EVERY = 2000;
const FIRST = ['Alice', 'Bruno', 'Chloe', 'David', 'Emma', 'Farid', 'Gina', 'Hugo', 'Ines', 'Jules', 'Karin', 'Louis', 'Mona', 'Nils', 'Olga', 'Paul', 'Rosa', 'Sami', 'Tara', 'Victor'];
const LAST = ['Martin', 'Bernard', 'Dubois', 'Thomas', 'Robert', 'Richard', 'Petit', 'Durand', 'Leroy', 'Moreau', 'Simon', 'Laurent', 'Lefebvre', 'Michel', 'Garcia', 'David', 'Bertrand', 'Roux', 'Vincent', 'Fournier'];
const DOMAINS = ['example.org', 'example.net', 'mail.example', 'corp.example'];
/** The sender that SEARCH FROM looks for: one of the 400, about 1 message in 400. */
export const FREQUENT_SENDER = 'gina.durand';

export interface BenchMessage {
  raw: Buffer;
  /** epoch ms, the Date header's time: INTERNALDATE in both servers. */
  time: number;
}

const DAY = 86_400_000;
const START = Date.UTC(2024, 0, 1);

function rfc5322Date(t: number): string {
  // Date.toUTCString gives "Mon, 01 Jan 2024 10:00:00 GMT"; RFC 5322 §3.3 prefers a numeric zone.
  return new Date(t).toUTCString().replace('GMT', '+0000');
}

/**
 * `count` messages for `to`, the same for the same (seed, count, to). A generator: 100,000
 * messages (about 350 MB) are never held at once.
 */
export function* corpus(seed: number, count: number, to: string): Generator<BenchMessage> {
  const rnd = prng(seed);
  const pick = <T>(a: readonly T[]): T => a[Math.floor(rnd() * a.length)] as T;
  // Per message: its Message-ID, its thread's References chain (root first) and subject.
  const ids: string[] = [];
  const chains: string[][] = [];
  const subjects: string[] = [];
  for (let i = 0; i < count; i++) {
    const sender = Math.floor(rnd() * 400);
    const first = FIRST[sender % FIRST.length]!;
    const last = LAST[Math.floor(sender / FIRST.length) % LAST.length]!;
    const from = `${first} ${last} <${first.toLowerCase()}.${last.toLowerCase()}@${DOMAINS[sender % DOMAINS.length]}>`;
    const id = `<${i}.${seed}.${(rnd() * 1e9).toFixed(0)}@bench.example>`;
    ids.push(id);
    // Half are replies, mostly to recent messages (threads stay alive for a while).
    let chain: string[] = [];
    let subject: string;
    if (i > 0 && rnd() < 0.5) {
      const parent = Math.max(0, i - 1 - Math.floor(rnd() * Math.min(i, 200)));
      chain = [...chains[parent]!.slice(-10), ids[parent]!];
      subject = `Re: ${subjects[parent]!.replace(/^Re: /, '')}`;
    } else {
      subject = `${pick(COMMON)} ${pick(COMMON)} ${pick(COMMON)} ${i}`;
    }
    chains.push(chain);
    subjects.push(subject);
    // Mostly increasing with arrival, with a few days of jitter so DATE order is not UID order.
    const time = START + Math.floor((i / Math.max(1, count)) * 730 * DAY + (rnd() - 0.5) * 4 * DAY);
    let header =
      `From: ${from}\r\nTo: ${to}\r\nSubject: ${subject}\r\nDate: ${rfc5322Date(time)}\r\nMessage-ID: ${id}\r\n`;
    if (chain.length > 0) header += `In-Reply-To: ${chain[chain.length - 1]}\r\nReferences: ${chain.join(' ')}\r\n`;
    header += 'MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n';
    const target = 1024 + Math.floor(rnd() * 5 * 1024);
    let rare = rnd() < 1 / RARE_EVERY ? pick(RARE) : null;
    const lines: string[] = [];
    let size = header.length;
    let line = '';
    while (size + line.length < target) {
      let word = pick(COMMON);
      if (rare !== null && rnd() < 0.05) {
        word = rare;
        rare = null;
      }
      if (line.length + word.length + 1 > 72) {
        lines.push(line);
        size += line.length + 2;
        line = '';
      }
      line = line.length === 0 ? word : `${line} ${word}`;
    }
    if (rare !== null) line = line.length === 0 ? rare : `${line} ${rare}`;
    if (line.length > 0) lines.push(line);
    // Keep memory bounded: only recent messages can be replied to.
    if (i >= 200) {
      chains[i - 200] = [];
    }
    yield { raw: Buffer.from(header + lines.join('\r\n') + '\r\n'), time };
  }
}

/** The corpus as an mbox (LF line ends, imaptest reads it as the source of its APPENDs). */
export function mbox(seed: number, count: number, to: string): string {
  const out: string[] = [];
  for (const m of corpus(seed, count, to)) {
    out.push(`From bench@example.org ${new Date(m.time).toUTCString().replace(/^(\w+), (\d+) (\w+) (\d+) (\S+) GMT$/, '$1 $3 $2 $5 $4')}\n`);
    out.push(m.raw.toString('latin1').replace(/\r\n/g, '\n'));
  }
  return out.join('');
}
