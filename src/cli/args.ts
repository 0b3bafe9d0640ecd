/** Command-line parsing shared by the `facteur` commands. */
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** A usage mistake: exit code 2 with the message. */
export class UsageError extends Error {}

export type Options = Record<string, string | boolean | string[] | undefined>;

/** Every command takes --data DIR besides its own options. */
export function parse(argv: string[], options: ParseArgsConfig['options']): { values: Options; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({ args: argv, options: { data: { type: 'string' }, ...options }, allowPositionals: true, strict: true });
    return { values: values as Options, positionals };
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** The password given on standard input (`--password-stdin`): all of it, less one final line
 * break, so `echo secret | facteur ...` and a file piped in both work; empty is an error. */
export async function readPasswordStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  const pw = Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
  if (pw === '') throw new Error('Empty password on standard input');
  return pw;
}
