import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { parseMessage } from '../../../src/mail/parse.js';
import type { ParsedMessage } from '../../../src/mail/types.js';
import { resolveSection, sectionBytes, readSectionBytes, type BlobReader } from '../../../src/imap/fetch/section.js';
import type { SectionSpec } from '../../../src/imap/protocol/ast.js';
import { buildMessage, type Spec } from '../mime-builder.js';

const word = fc.stringMatching(/^[a-z]{1,8}$/);
const line = fc.array(word, { minLength: 1, maxLength: 5 }).map((w) => w.join(' '));
const text = fc.array(line, { maxLength: 4 }).map((ls) => ls.map((l) => `${l}\r\n`).join(''));

/** Random MIME trees: leaves, multiparts (with or without preamble and epilogue) and
 * encapsulated messages, nested a few levels. Boundaries are made unique afterwards. */
const spec: fc.Arbitrary<Spec> = fc.letrec<{ part: Spec }>((tie) => ({
  part: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    text.map((body): Spec => ({ header: ['Content-Type: text/plain'], body })),
    fc
      .record({ parts: fc.array(tie('part'), { minLength: 1, maxLength: 3 }), preamble: fc.option(line, { nil: undefined }), epilogue: fc.option(line, { nil: undefined }) })
      .map((m): Spec => ({ header: [], multipart: { boundary: '', parts: m.parts, ...(m.preamble !== undefined ? { preamble: m.preamble } : {}), ...(m.epilogue !== undefined ? { epilogue: m.epilogue } : {}) } })),
    tie('part').map((inner): Spec => ({ header: ['Content-Type: message/rfc822'], message: { ...inner, header: ['Subject: inner', ...inner.header] } })),
  ),
})).part;

function withBoundaries(s: Spec, next: { n: number }): Spec {
  if (s.multipart) {
    const boundary = `b${next.n++}x`;
    return {
      ...s,
      header: [...s.header, `Content-Type: multipart/mixed; boundary="${boundary}"`],
      multipart: { ...s.multipart, boundary, parts: s.multipart.parts.map((p) => withBoundaries(p, next)) },
    };
  }
  if (s.message) return { ...s, message: withBoundaries(s.message, next) };
  return s;
}

function paths(depth: number): number[][] {
  const out: number[][] = [[]];
  let frontier: number[][] = [[]];
  for (let d = 0; d < depth; d++) {
    frontier = frontier.flatMap((p) => [1, 2, 3, 4].map((n) => [...p, n]));
    out.push(...frontier);
  }
  return out;
}

const reader = (raw: Buffer): BlobReader => ({
  readBlob: async (_h, start = 0, end = raw.length) => raw.subarray(start, end),
  async *streamBlob(_h, start = 0, end = raw.length) {
    yield raw.subarray(start, end);
  },
});

async function content(parsed: ParsedMessage, raw: Buffer, section: SectionSpec): Promise<string> {
  const blobs = reader(raw);
  return (await readSectionBytes(await sectionBytes(resolveSection(parsed, section), null, 'h', blobs), 'h', blobs)).toString('latin1');
}

test('every BODY[section] of a stored message is the same bytes whether the parser or the builder described it', async () => {
  const all = paths(3);
  await fc.assert(
    fc.asyncProperty(spec, async (s) => {
      const top = withBoundaries({ ...s, header: ['Subject: top', 'MIME-Version: 1.0', ...s.header] }, { n: 0 });
      const { raw, parsed: expected } = buildMessage(top);
      const parsed = parseMessage(raw);
      for (const part of all) {
        for (const text of [null, 'MIME', 'HEADER', 'TEXT'] as const) {
          if (text === 'MIME' && part.length === 0) continue;
          const section: SectionSpec = { part, text };
          assert.equal(await content(parsed, raw, section), await content(expected, raw, section), `BODY[${[...part, text ?? ''].join('.')}] of ${JSON.stringify(raw.toString('latin1'))}`);
        }
      }
    }),
    { seed: 5256, numRuns: 150 },
  );
});
