/**
 * The header reader against JSON.parse, the reference for what a JSON document means: on random
 * headers (odd names, unknown fields of any JSON, metadata) both read the same entries, and on
 * random mutations of them the reader either agrees or refuses with a MergeError, never crashes.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isMergeError } from '../src/errors.js';
import { parseSafetensorsHeader, WrittenNumber } from '../src/formats/safetensors-header.js';
import { MAX_HEADER_NESTING, MAX_TENSORS } from '../src/limits.js';

const encode = (s: string) => new TextEncoder().encode(s);

/** What JSON.parse says the header holds, in the reader's terms (null when JSON.parse refuses it). */
function reference(text: string): { entries: [string, unknown][]; metadata: unknown } | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return null;
  const entries: [string, unknown][] = [];
  for (const [name, value] of Object.entries(parsed)) {
    if (name === '__metadata__') continue;
    const known = typeof value === 'object' && value !== null && !Array.isArray(value)
      ? Object.fromEntries(Object.entries(value).filter(([k]) => ['dtype', 'shape', 'data_offsets'].includes(k)))
      : null;
    entries.push([name, known]);
  }
  return { entries, metadata: (parsed as Record<string, unknown>).__metadata__ };
}

const entry = fc.record(
  {
    dtype: fc.oneof(fc.constantFrom('F32', 'F16', 'BF16', 'I8'), fc.jsonValue({ maxDepth: 1 })),
    shape: fc.oneof(fc.array(fc.nat(1000), { maxLength: 4 }), fc.jsonValue({ maxDepth: 1 })),
    data_offsets: fc.oneof(fc.tuple(fc.nat(), fc.nat()), fc.jsonValue({ maxDepth: 1 })),
    extra: fc.jsonValue({ maxDepth: 4 }),
  },
  { requiredKeys: [] },
);
const header = fc.record({
  tensors: fc.uniqueArray(fc.tuple(fc.string({ unit: 'grapheme', maxLength: 12 }), entry), { selector: ([name]) => name, maxLength: 6 }),
  metadata: fc.option(fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ unit: 'binary', maxLength: 10 }), { maxKeys: 3 }), { nil: undefined }),
  indent: fc.constantFrom(0, 1),
});

function headerText(h: { tensors: [string, unknown][]; metadata?: Record<string, string>; indent: number }): string {
  const fields: [string, unknown][] = h.metadata ? [['__metadata__', h.metadata]] : [];
  for (const [name, e] of h.tensors) if (name !== '__metadata__') fields.push([name, e]);
  return JSON.stringify(Object.fromEntries(fields), null, h.indent);
}

/** Numbers the reader keeps as written (not plain integers of up to 15 digits) as JSON.parse reads them. */
function asParsed(v: unknown): unknown {
  if (v instanceof WrittenNumber) return v.value;
  if (Array.isArray(v)) return v.map(asParsed);
  if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, asParsed(x)]));
  return v;
}

function readerView(bytes: Uint8Array): { entries: [string, unknown][]; metadata: unknown } {
  const parsed = parseSafetensorsHeader('h.safetensors', bytes);
  return {
    entries: parsed.entries.map((e) => [e.name, e.notAnObject ? null : asParsed(e.fields)]),
    metadata: parsed.metadata,
  };
}

describe('safetensors header reader', () => {
  it('reads what JSON.parse reads, on random headers', () => {
    fc.assert(
      fc.property(header, (h) => {
        const text = headerText(h);
        const want = reference(text)!;
        const got = readerView(encode(text));
        expect(got.entries).toEqual(want.entries);
        expect(got.metadata).toEqual(want.metadata);
      }),
      { seed: 11, numRuns: 300 },
    );
  });

  it('reads integers of every length as JSON.parse does, with fractions, exponents and signs', () => {
    // Plain integers of up to 15 digits take a path of their own; 15 to 17 digits and 2^53 are its edges.
    const texts = ['0', '7', '999999999999999', '1000000000000000', '9007199254740991', '9007199254740993', '123456789012345678901',
      '-0', '-12', '1.5', '10e3', '1E+2', '0.000001', '2e-7', '100000000000000.5'];
    const gen = fc.oneof(fc.constantFrom(...texts), fc.bigInt({ min: 0n, max: 10n ** 22n }).map(String));
    fc.assert(
      fc.property(fc.array(gen, { minLength: 1, maxLength: 4 }), (numbers) => {
        const text = `{"t":{"dtype":"F32","shape":[${numbers.join(',')}],"data_offsets":[${numbers[0]},${numbers[numbers.length - 1]}]}}`;
        expect(readerView(encode(text)).entries).toEqual(reference(text)!.entries);
      }),
      { seed: 13, numRuns: 300 },
    );
  });

  it('agrees with JSON.parse or refuses cleanly, on random mutations', () => {
    fc.assert(
      fc.property(header, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), fc.nat(), (h, edits, cut) => {
        const bytes = encode(headerText(h));
        for (const [at, value] of edits) if (bytes.length > 0) bytes[at % bytes.length] = value;
        const mutated = cut % 4 === 0 ? bytes.subarray(0, cut % (bytes.length + 1)) : bytes;
        let got: ReturnType<typeof readerView> | undefined;
        try {
          got = readerView(mutated);
        } catch (e) {
          expect(isMergeError(e), String(e)).toBe(true);
          return;
        }
        const want = reference(new TextDecoder('utf-8', { fatal: false }).decode(mutated));
        expect(want, 'the reader accepted what JSON.parse refuses').not.toBeNull();
        expect(got.entries).toEqual(want!.entries);
      }),
      { seed: 12, numRuns: 600 },
    );
  });

  it('refuses duplicate keys, deep nesting and too many tensors, without building them', () => {
    const code = (text: string) => {
      try {
        parseSafetensorsHeader('h', encode(text));
        return 'accepted';
      } catch (e) {
        return isMergeError(e) ? `${e.code}: ${e.message}` : String(e);
      }
    };
    expect(code('{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"a":{}}')).toMatch(/INVALID_HEADER: h: tensor "a" appears twice/);
    expect(code('{"a":{"dtype":"F32","dtype":"F16"}}')).toMatch(/field "dtype" appears twice/);
    const deep = `{"a":{"x":${'['.repeat(MAX_HEADER_NESTING)}${']'.repeat(MAX_HEADER_NESTING)}}}`;
    expect(code(deep)).toMatch(/LIMIT_EXCEEDED: h: header nests deeper than 64 levels/);
    const shallow = `{"a":{"x":${'['.repeat(MAX_HEADER_NESTING - 4)}${']'.repeat(MAX_HEADER_NESTING - 4)}}}`;
    expect(code(shallow)).toBe('accepted');
    // At the limit: the header's object, the entry's and 62 arrays are 64 levels, taken; 63 arrays are 65.
    const levels = (arrays: number) => `{"a":{"x":${'['.repeat(arrays)}${']'.repeat(arrays)}}}`;
    expect(code(levels(62))).toBe('accepted');
    expect(code(levels(63))).toMatch(/LIMIT_EXCEEDED: h: header nests deeper than 64 levels/);
    const many = `{${Array.from({ length: MAX_TENSORS + 1 }, (_, i) => `"t${i}":{}`).join(',')}}`;
    expect(code(many)).toMatch(/LIMIT_EXCEEDED: h: more than 160000 tensors in one file \(the limit MAX_TENSORS\)/);
    expect(code(`{"a":{"shape":[${Array(40).fill(1).join(',')}]}}`)).toMatch(/INVALID_SHAPE: .*more than 32 dimensions/);
    expect(code(`{"${'n'.repeat(5000)}":{}}`)).toMatch(/LIMIT_EXCEEDED: .*5000 bytes, above the limit of 4096/);
    expect(code('{"a":{}} x')).toMatch(/not valid JSON/);
    expect(code('{"a":{"shape":[01]}}')).toMatch(/not valid JSON/);
  });
});
