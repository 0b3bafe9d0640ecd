/**
 * A live POP3 server as an import source (RFC 1939): the maildrop becomes INBOX, each message
 * keeping the UIDL the old server gave it, so a client that "leaves mail on the server" finds
 * the same unique-ids after the move and downloads nothing again.
 *
 * Invariants: nothing is deleted on the old server (no DELE is ever sent, so QUIT's UPDATE
 * state removes nothing); one message is held at a time; a server without UIDL (RFC 1939 §7,
 * optional) is refused, since the import could not keep ids then.
 */
import { LineSocket, type Endpoint } from './connection.js';
import { receivedDate, type ImportSource, type SkipTest, type SkippedMessage, type SourceMessage } from './source.js';

export class Pop3Error extends Error {}

/** Bytes one RETR may send before the import gives up on that message. */
export const MAX_POP3_MESSAGE = 256 * 1024 * 1024;

class Pop3Client {
  constructor(private readonly conn: LineSocket) {}

  async status(): Promise<string> {
    const line = (await this.conn.line()).toString('utf8');
    if (line.startsWith('+OK')) return line.slice(3).trim();
    throw new Pop3Error(line.startsWith('-ERR') ? line.slice(4).trim() || 'refused' : `Unexpected POP3 answer: ${line.slice(0, 100)}`);
  }

  async command(cmd: string, shown = cmd): Promise<string> {
    if (/[\r\n]/.test(cmd)) throw new Pop3Error('A CR or LF cannot be sent in a POP3 command');
    this.conn.write(`${cmd}\r\n`);
    try {
      return await this.status();
    } catch (err) {
      throw new Pop3Error(`${shown}: ${(err as Error).message}`);
    }
  }

  /** A multi-line answer's lines, dot-unstuffed (RFC 1939 §3), up to the "." line. */
  async *multiline(limit: number): AsyncGenerator<Buffer> {
    let total = 0;
    for (;;) {
      const line = await this.conn.line();
      if (line.length === 1 && line[0] === 46) return;
      total += line.length + 2;
      if (total > limit) {
        this.conn.close();
        throw new Pop3Error(`A multi-line answer is over ${limit} bytes; giving up`);
      }
      yield line[0] === 46 ? line.subarray(1) : line;
    }
  }
}

export interface Pop3SourceOptions {
  endpoint: Endpoint;
  startTls: boolean;
  user: string;
  password: string;
}

export async function openPop3Source(options: Pop3SourceOptions): Promise<ImportSource> {
  const conn = await LineSocket.open(options.endpoint);
  const client = new Pop3Client(conn);
  try {
    await client.status();
    if (options.startTls) {
      await client.command('STLS');
      await conn.startTls(options.endpoint);
    }
    await client.command(`USER ${options.user}`);
    await client.command(`PASS ${options.password}`, 'PASS');
  } catch (err) {
    conn.close();
    throw err;
  }
  const warnings: string[] = [];

  async function listing(): Promise<Array<{ n: number; uidl: string; size: number }>> {
    try {
      await client.command('UIDL');
    } catch (err) {
      throw new Pop3Error(`The server has no UIDL, so the import cannot keep the message ids: ${(err as Error).message}`);
    }
    const uidls = new Map<number, string>();
    for await (const line of client.multiline(64 * 1024 * 1024)) {
      const m = /^(\d+) ([\x21-\x7e]{1,70})$/.exec(line.toString('latin1'));
      if (m) uidls.set(Number(m[1]), m[2]!);
    }
    await client.command('LIST');
    const out: Array<{ n: number; uidl: string; size: number }> = [];
    for await (const line of client.multiline(64 * 1024 * 1024)) {
      const m = /^(\d+) (\d+)/.exec(line.toString('latin1'));
      if (!m) continue;
      const uidl = uidls.get(Number(m[1]));
      if (uidl !== undefined) out.push({ n: Number(m[1]), uidl, size: Number(m[2]) });
    }
    return out;
  }

  return {
    description: `pop3${options.endpoint.tls ? 's' : ''}://${options.user}@${options.endpoint.host}:${options.endpoint.port}`,
    warnings,
    async *mailboxes() {
      const list = await listing();
      yield {
        name: 'INBOX',
        expectedMessages: list.length,
        expectedBytes: list.reduce((a, b) => a + b.size, 0),
        async *messages(skip?: SkipTest): AsyncIterable<SourceMessage | SkippedMessage> {
          for (const { n, uidl, size } of list) {
            if (await skip?.({ pop3Uidl: uidl })) continue;
            const origin = `INBOX: message ${n} (UIDL ${uidl})`;
            if (size > MAX_POP3_MESSAGE) {
              yield { kind: 'skipped', origin, reason: `larger than ${MAX_POP3_MESSAGE} bytes` };
              continue;
            }
            try {
              await client.command(`RETR ${n}`);
            } catch (err) {
              yield { kind: 'skipped', origin, reason: (err as Error).message };
              continue;
            }
            const lines: Buffer[] = [];
            for await (const line of client.multiline(MAX_POP3_MESSAGE + 1024 * 1024)) lines.push(line, Buffer.from('\r\n'));
            const raw = Buffer.concat(lines);
            yield { kind: 'message', raw, flags: [], internalDate: receivedDate(raw) ?? Date.now(), pop3Uidl: uidl, origin };
          }
        },
      };
    },
    async close() {
      // QUIT with no DELE sent: the UPDATE state removes nothing (RFC 1939 §6).
      try {
        await client.command('QUIT');
      } catch {
        // closing anyway
      }
      conn.close();
    },
  };
}
