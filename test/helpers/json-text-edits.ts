/**
 * Edits of JSON text where strict readers look: a string's bytes (UTF-8 or not) and a number's
 * written form, in a JSON file or a safetensors header; and what the reference readers make of
 * such text (Python's json and safetensors' serde_json: strict UTF-8, integer fields as plain
 * integers). Shared by both fuzzers' mutations and truths.
 */
import fc from 'fast-check';

/**
 * An edit of JSON text where it is a string or a number (a JSON file, a safetensors header), so
 * that the strict readers see them: bytes that are not UTF-8 written over a string's content, or a
 * number written in another form (`8.0`, `8e0`, `-0`, ones JSON forbids).
 */
export type TextEdit = { kind: 'utf8'; bytes: readonly number[] } | { kind: 'number'; form: NumberForm };
export type NumberForm = 'fraction' | 'exponent' | 'negative' | 'leading-zero' | 'plus' | 'trailing-dot' | 'huge' | 'tenths';

export const textEdit: fc.Arbitrary<TextEdit> = fc.oneof(
  // A lone continuation byte, a lead byte without its continuation, overlong forms, an encoded
  // surrogate, past U+10FFFF, bytes never in UTF-8, a Latin-1 é; and valid multi-byte text.
  fc.record({ kind: fc.constant('utf8' as const), bytes: fc.constantFrom([0x80], [0xbf], [0xc3], [0xc0, 0xaf], [0xe0, 0x80, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xf8], [0xfe], [0xff], [0xe9], [0xc3, 0xa9], [0xe2, 0x82, 0xac]) }),
  fc.record({ kind: fc.constant('number' as const), form: fc.constantFrom<NumberForm>('fraction', 'exponent', 'negative', 'leading-zero', 'plus', 'trailing-dot', 'huge', 'tenths') }),
);

/** Where strings' contents and numbers are in JSON text: [start, end) byte ranges of each. */
function jsonTokens(text: Uint8Array): { strings: [number, number][]; numbers: [number, number][] } {
  const strings: [number, number][] = [], numbers: [number, number][] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === 0x22) {
      let j = i + 1;
      while (j < text.length && text[j] !== 0x22) j += text[j] === 0x5c ? 2 : 1;
      if (j > i + 1) strings.push([i + 1, Math.min(j, text.length)]);
      i = j;
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      let j = i + 1;
      while (j < text.length && /[0-9.eE+-]/.test(String.fromCharCode(text[j]))) j++;
      numbers.push([i, j]);
      i = j - 1;
    }
  }
  return { strings, numbers };
}

/** A number's text written in another form. */
function numberForm(number: string, form: NumberForm): string {
  switch (form) {
    case 'fraction': return `${number}.0`;
    case 'exponent': return `${number}e0`;
    case 'negative': return number.startsWith('-') ? number.slice(1) : `-${number}`;
    case 'leading-zero': return `0${number}`;
    case 'plus': return `+${number}`;
    case 'trailing-dot': return `${number}.`;
    case 'huge': return '1e400';
    default: return `${number}0e-1`;
  }
}

/**
 * `bytes` with one string or number of its JSON text edited (the `at`-th, counted round): a JSON
 * file's whole text, or a safetensors file's header, whose length prefix follows (padded to 8 with
 * spaces, as writers pad it). Anything without such text is left as it is.
 */
export function editedText(bytes: Uint8Array, safetensors: boolean, at: number, edit: TextEdit): Uint8Array {
  let start = 0, end = bytes.length;
  if (safetensors) {
    if (bytes.length < 8) return bytes;
    const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
    if (n > BigInt(bytes.length - 8)) return bytes;
    [start, end] = [8, 8 + Number(n)];
  }
  const text = bytes.subarray(start, end);
  const { strings, numbers } = jsonTokens(text);
  let edited: Uint8Array;
  if (edit.kind === 'utf8') {
    const fits = strings.filter(([a, b]) => b - a >= edit.bytes.length);
    if (!fits.length) return bytes;
    const [a, b] = fits[at % fits.length];
    edited = text.slice();
    edited.set(edit.bytes, a + (Math.floor(at / fits.length) % (b - a - edit.bytes.length + 1)));
  } else {
    if (!numbers.length) return bytes;
    const [a, b] = numbers[at % numbers.length];
    const number = new TextDecoder().decode(text.subarray(a, b));
    const written = new TextEncoder().encode(numberForm(number, edit.form));
    edited = new Uint8Array(text.length - (b - a) + written.length);
    edited.set(text.subarray(0, a));
    edited.set(written, a);
    edited.set(text.subarray(b), a + written.length);
  }
  if (!safetensors) return edited;
  const padded = Math.ceil(edited.length / 8) * 8;
  const out = new Uint8Array(8 + padded + bytes.length - end);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.fill(0x20, 8, 8 + padded);
  out.set(edited, 8);
  out.set(bytes.subarray(end), 8 + padded);
  return out;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
export const wellFormedUtf8 = (bytes: Uint8Array) => {
  try {
    strictUtf8.decode(bytes);
    return true;
  } catch {
    return false;
  }
};

/**
 * Why the safetensors reference reader refuses a header the plain reader here would take: bytes
 * that are not UTF-8, a shape or data_offsets number not written as a plain integer (`8.0`, `8e0`,
 * `-0`; serde_json into usize), or data_offsets that do not tile the data section (its
 * `validate`: sorted by offsets, each tensor begins where the one before ends; the plain reader
 * only checks each span's size, which a tensor of 0 bytes meets wherever it points). Null when none.
 */
export function safetensorsHeaderProblem(bytes: Uint8Array): string | null {
  if (bytes.length < 8) return null;
  const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(bytes.length - 8)) return null;
  const header = bytes.subarray(8, 8 + Number(n));
  if (!wellFormedUtf8(header)) return 'a header that is not UTF-8';
  for (const m of new TextDecoder().decode(header).matchAll(/"(shape|data_offsets)"\s*:\s*\[([^\]]*)\]/g)) {
    const bad = m[2].split(',').map((x) => x.trim()).find((x) => x !== '' && !/^(?:0|[1-9][0-9]*)$/.test(x));
    if (bad !== undefined) return `${m[1]} holds ${bad}, not a plain integer`;
  }
  return offsetsProblem(header);
}

/** Whether the header's data_offsets tile the data section from 0 (the data's end is checked elsewhere). */
function offsetsProblem(header: Uint8Array): string | null {
  let entries: unknown;
  try {
    entries = JSON.parse(new TextDecoder().decode(header));
  } catch {
    return null; // not JSON: the plain reader refuses it too
  }
  if (typeof entries !== 'object' || entries === null) return null;
  const spans: [number, number][] = [];
  for (const [name, entry] of Object.entries(entries)) {
    const offsets = name === '__metadata__' ? undefined : (entry as { data_offsets?: unknown })?.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((x) => typeof x === 'number')) continue;
    spans.push(offsets as [number, number]);
  }
  spans.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  let end = 0;
  for (const [from, to] of spans) {
    if (to < from) return `data_offsets [${from}, ${to}] end before they begin`;
    if (from !== end) return `data_offsets [${from}, ${to}] do not begin where the tensor before ends (${end})`;
    end = to;
  }
  return null;
}
