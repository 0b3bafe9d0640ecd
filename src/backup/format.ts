/**
 * The backup file: one stream, written and read in constant memory.
 *
 *   file    = [gzip of] MAGIC frame* end-frame
 *   MAGIC   = "FACTEUR-BACKUP\n"
 *   frame   = kind (1 byte) length (4 bytes, big-endian) payload
 *   kind    'J' a record: UTF-8 JSON object { type, v, ... } (v: the record's format version)
 *           'D' bytes announced by the last 'blob' or 'queued' record (at most 1 MiB per frame)
 *           'E' the end: JSON { records, sha256 } where sha256 covers every byte before this frame
 *
 * A file that is cut short has no end frame, a damaged one fails the checksum (or gzip's own
 * CRC): both are refused before anything is written (restore reads the file twice). New kinds of
 * record (another table) are new `type`s; a reader refuses a type or version it does not know
 * unless the record says `optional: true`.
 *
 * Format versions (the header's `format`): 1 has the mail store only; 2 adds 'metadata' records
 * (RFC 5464 annotations) and 'queued' records (the outbound queue). A reader of format 2 reads
 * format 1 files as they are: they simply have none of these records.
 */
import { createHash } from 'node:crypto';
import type { Hash } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import type { WriteStream } from 'node:fs';
import { open } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { createGunzip, createGzip } from 'node:zlib';

export const MAGIC = Buffer.from('FACTEUR-BACKUP\n');
export const FORMAT_VERSION = 2;
/** The oldest format this program still restores. */
export const OLDEST_FORMAT = 1;
export const DATA_CHUNK = 1024 * 1024;
/** The largest JSON record a reader accepts (an expunge batch, an account with its settings). */
const MAX_RECORD = 16 * 1024 * 1024;

export interface BackupRecord {
  type: string;
  v: number;
  optional?: boolean;
  [key: string]: unknown;
}

export type Frame = { kind: 'J'; record: BackupRecord } | { kind: 'D'; data: Buffer };

export class BackupFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BackupFormatError';
  }
}

export interface BackupWriter {
  record(r: BackupRecord): Promise<void>;
  data(chunk: Buffer): Promise<void>;
  /** Writes the end frame, flushes and fsyncs the file. */
  finish(): Promise<{ records: number; bytes: number }>;
  /** Gives up: closes the file (the caller removes it). */
  abort(): Promise<void>;
}

export async function createBackupWriter(path: string, options: { gzip?: boolean } = {}): Promise<BackupWriter> {
  const file: WriteStream = createWriteStream(path, { flags: 'wx', mode: 0o600 });
  await once(file, 'open');
  const gzip = options.gzip !== false ? createGzip({ level: 6 }) : null;
  if (gzip !== null) gzip.pipe(file);
  const sink: Writable = gzip ?? file;
  const hash: Hash = createHash('sha256');
  let records = 0;
  let bytes = 0;
  const write = async (buf: Buffer): Promise<void> => {
    hash.update(buf);
    bytes += buf.length;
    if (!sink.write(buf)) await once(sink, 'drain');
  };
  const frame = async (kind: string, payload: Buffer): Promise<void> => {
    const head = Buffer.alloc(5);
    head.write(kind, 0, 'latin1');
    head.writeUInt32BE(payload.length, 1);
    await write(head);
    await write(payload);
  };
  await write(MAGIC);
  return {
    async record(r) {
      records += 1;
      await frame('J', Buffer.from(JSON.stringify(r)));
    },
    async data(chunk) {
      for (let off = 0; off < chunk.length; off += DATA_CHUNK) await frame('D', chunk.subarray(off, off + DATA_CHUNK));
    },
    async finish() {
      const end = Buffer.from(JSON.stringify({ records, sha256: hash.digest('hex') }));
      const head = Buffer.alloc(5);
      head.write('E', 0, 'latin1');
      head.writeUInt32BE(end.length, 1);
      sink.write(head);
      sink.end(end);
      await once(file, 'finish');
      const fh = await open(path, 'r+');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      return { records, bytes };
    },
    async abort() {
      sink.destroy();
      file.destroy();
      await once(file, 'close').catch(() => undefined);
    },
  };
}

/** The decompressed bytes of a backup file (gzip detected by its magic number). */
async function* fileBytes(path: string): AsyncGenerator<Buffer> {
  const fh = await open(path, 'r');
  const first = Buffer.alloc(2);
  try {
    await fh.read(first, 0, 2, 0);
  } finally {
    await fh.close();
  }
  const raw = createReadStream(path, { highWaterMark: 256 * 1024 });
  const source = first[0] === 0x1f && first[1] === 0x8b ? raw.pipe(createGunzip()) : raw;
  if (source !== raw) raw.on('error', (err) => source.destroy(err));
  try {
    for await (const chunk of source) yield chunk as Buffer;
  } catch (err) {
    throw new BackupFormatError(`Cannot read the backup: ${(err as Error).message} (damaged or cut short)`);
  }
}

/**
 * Reads the frames of a backup in order. The end frame's checksum and count are verified when
 * it is reached; a stream that ends before it, or goes on after it, is refused.
 */
export async function* readBackup(path: string): AsyncGenerator<Frame> {
  const hash = createHash('sha256');
  let buf: Buffer = Buffer.alloc(0);
  let magicSeen = false;
  let records = 0;
  let ended = false;
  for await (const chunk of fileBytes(path)) {
    if (ended) throw new BackupFormatError('Cannot read the backup: data after its end');
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    if (!magicSeen) {
      if (buf.length < MAGIC.length) continue;
      if (!buf.subarray(0, MAGIC.length).equals(MAGIC)) throw new BackupFormatError('Cannot read the backup: not a Facteur backup');
      hash.update(buf.subarray(0, MAGIC.length));
      buf = buf.subarray(MAGIC.length);
      magicSeen = true;
    }
    while (buf.length >= 5) {
      const kind = String.fromCharCode(buf[0] ?? 0);
      const len = buf.readUInt32BE(1);
      if ((kind === 'D' && len > DATA_CHUNK) || ((kind === 'J' || kind === 'E') && len > MAX_RECORD) || !'JDE'.includes(kind)) {
        throw new BackupFormatError(`Cannot read the backup: bad frame (${JSON.stringify(kind)}, ${len} bytes)`);
      }
      if (buf.length < 5 + len) break;
      const payload = buf.subarray(5, 5 + len);
      if (kind === 'E') {
        let end: { records?: unknown; sha256?: unknown };
        try {
          end = JSON.parse(payload.toString('utf8')) as typeof end;
        } catch {
          throw new BackupFormatError('Cannot read the backup: its end record is damaged');
        }
        if (end.sha256 !== hash.digest('hex') || end.records !== records) {
          throw new BackupFormatError('Cannot read the backup: checksum mismatch (the file is damaged)');
        }
        ended = true;
        buf = buf.subarray(5 + len);
        if (buf.length > 0) throw new BackupFormatError('Cannot read the backup: data after its end');
        break;
      }
      hash.update(buf.subarray(0, 5 + len));
      if (kind === 'J') {
        let record: BackupRecord;
        try {
          record = JSON.parse(payload.toString('utf8')) as BackupRecord;
        } catch {
          throw new BackupFormatError('Cannot read the backup: a record is damaged');
        }
        if (typeof record !== 'object' || record === null || typeof record.type !== 'string' || typeof record.v !== 'number') {
          throw new BackupFormatError('Cannot read the backup: a record has no type or version');
        }
        records += 1;
        yield { kind: 'J', record };
      } else {
        // Copied: the caller may keep it while buf is reused.
        yield { kind: 'D', data: Buffer.from(payload) };
      }
      buf = buf.subarray(5 + len);
    }
  }
  if (!magicSeen) throw new BackupFormatError('Cannot read the backup: not a Facteur backup (too short)');
  if (!ended) throw new BackupFormatError('Cannot read the backup: it is cut short (no end record)');
}

/** Reads a whole backup and checks its structure and checksum, writing nothing. */
export async function verifyBackup(path: string): Promise<{ records: number }> {
  let records = 0;
  for await (const f of readBackup(path)) if (f.kind === 'J') records += 1;
  return { records };
}
