/**
 * mbox files as an import source: one file is one mailbox (INBOX unless named), a directory is a
 * tree of mbox files (Thunderbird's "Folder.sbd/" subdirectories included), each file a mailbox
 * named by its path. Files are read as streams, one message at a time (see mbox.ts).
 */
import { createReadStream } from 'node:fs';
import { opendir, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { MboxFormatError, splitMbox, type MboxOptions } from './mbox.js';
import { receivedDate, type ImportSource, type SkippedMessage, type SourceMailbox, type SourceMessage } from './source.js';

/** Index and summary files mail clients keep next to mbox files. */
const NOT_MBOX = /(\.msf|\.idx|\.dat|\.json|\.sqlite|\.lock|\.html)$/i;

async function mboxFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    const names: Array<{ name: string; dir: boolean }> = [];
    for await (const e of await opendir(d)) if (!e.name.startsWith('.')) names.push({ name: e.name, dir: e.isDirectory() });
    names.sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const n of names) {
      if (n.dir) await walk(join(d, n.name));
      else if (!NOT_MBOX.test(n.name)) out.push(join(d, n.name));
    }
  };
  await walk(dir);
  return out;
}

/** "Lists.sbd/rust.mbox" -> "Lists/rust"; "Inbox" -> "INBOX". */
export function mboxMailboxName(rel: string): string {
  const parts = rel.split(sep).map((p) => p.replace(/\.sbd$/i, '').replace(/\.mbox$/i, ''));
  const name = parts.filter((p) => p !== '').join('/');
  return name.toUpperCase() === 'INBOX' ? 'INBOX' : name;
}

export async function openMbox(path: string, options: MboxOptions & { mailbox?: string } = {}): Promise<ImportSource> {
  const st = await stat(path);
  const files = st.isDirectory() ? await mboxFiles(path) : [path];
  const warnings: string[] = [];
  const boxes = files.map((f) => ({ file: f, name: st.isDirectory() ? mboxMailboxName(relative(path, f)) : (options.mailbox ?? 'INBOX'), size: 0, mtime: 0 }));
  if (st.isDirectory() && options.mailbox !== undefined) for (const b of boxes) b.name = `${options.mailbox}/${b.name}`;
  for (const b of boxes) {
    const s = await stat(b.file);
    b.size = s.size;
    b.mtime = Math.floor(s.mtimeMs);
  }
  boxes.sort((a, b) => (a.name === 'INBOX' ? -1 : b.name === 'INBOX' ? 1 : a.name < b.name ? -1 : 1));

  return {
    description: `mbox ${path}`,
    warnings,
    async *mailboxes() {
      for (const b of boxes) {
        const mailbox: SourceMailbox = {
          name: b.name,
          expectedMessages: 0,
          expectedBytes: b.size,
          async *messages(): AsyncIterable<SourceMessage | SkippedMessage> {
            try {
              for await (const m of splitMbox(createReadStream(b.file, { highWaterMark: 256 * 1024 }), options)) {
                // INTERNALDATE must be the same at every run (a re-run recognises what it imported by
                // content and date): the From_ line's, else the message's own, else the file's.
                const internalDate = m.date ?? receivedDate(m.raw) ?? b.mtime;
                yield { kind: 'message', raw: m.raw, flags: m.flags, internalDate, origin: `${b.file}:${m.line}` };
              }
            } catch (err) {
              if (!(err instanceof MboxFormatError)) throw err;
              warnings.push(`${b.file}: skipped, ${err.message}`);
            }
          },
        };
        yield mailbox;
      }
    },
    async close() {},
  };
}
