/**
 * Importance matrices as llama.cpp writes them (`llama-imatrix`), read into the per-column weights
 * `llama-quantize --imatrix` hands its quantizers (`quant_weights`):
 * - GGUF (what llama-imatrix writes now): per matrix a tensor `<name>.in_sum2` of ne = [ne0, n]
 *   (n = 1, or the expert count of a stacked expert tensor) and `<name>.counts` of ne = [1, n];
 *   weight = in_sum2 / counts per expert, and 1 where an expert's count is 0 (it never saw input).
 * - The legacy `.dat`: i32 entry count, then per entry i32 name length, the name, i32 ncall, i32
 *   nval and nval f32 sums; weight = sum / ncall (ncall 0 only beside sums of 0, a negative one
 *   refused: llama-quantize would take other sums undivided); then nothing, the chunk count, or
 *   it and the dataset's name, anything else refused (an entry count too short, a file cut short).
 *   A stacked expert tensor's entry holds ne0 values per expert under the one ncall.
 * The file is untrusted: every count and length is checked against what is left before it is
 * used, and every refusal is one line naming the file as the importance matrix (the GGUF reader's
 * own included), the names it quotes with their line breaks escaped.
 */
import { isMergeError, MergeError } from '../../errors.js';
import type { ByteSource } from '../../io/types.js';
import { printable } from '../../shown-text.js';
import { openGguf, type GgufFile, type GgufTensor } from './gguf-reader.js';

/** Per tensor name, the weights llama-quantize passes for it: ne0 values per expert, expert e's at e·ne0. */
export interface ImportanceMatrix {
  /** The file, for messages. */
  readonly file: string;
  /** Tensor name → its weights (ne0 per expert). */
  readonly entries: ReadonlyMap<string, Float32Array>;
}

/** Largest importance file read (a legacy file is read whole). */
export const MAX_IMATRIX_BYTES = 2 * 1024 * 1024 * 1024;

const GGUF_MAGIC = 0x46554747;
const SUMS = '.in_sum2';
const COUNTS = '.counts';
/** The metadata keys llama-quantize looks up before it reads a GGUF imatrix's tensors. */
const IMATRIX_KEYS = ['imatrix.datasets', 'imatrix.chunk_count', 'imatrix.chunk_size'];
/** Longest legacy entry name read; a GGML tensor name is at most 63 bytes, so a longer length is no name llama-imatrix wrote. */
const MAX_LEGACY_NAME = 1024;

/** Reads an importance matrix (GGUF or legacy `.dat`), refusing anything llama-quantize would not load or would load as something else. */
export async function readImportanceMatrix(source: ByteSource): Promise<ImportanceMatrix> {
  try {
    return await readMatrix(source);
  } catch (e) {
    throw asImportanceRefusal(e, source.name);
  }
}

async function readMatrix(source: ByteSource): Promise<ImportanceMatrix> {
  const file = source.name;
  const refuse = (why: string): never => {
    throw new MergeError('UNSUPPORTED_FORMAT', `${REFUSAL_START}${file}: ${why}`);
  };
  if (source.size > MAX_IMATRIX_BYTES) refuse(`${source.size} bytes, more than the ${MAX_IMATRIX_BYTES} read`);
  if (source.size < 4) refuse('too short to be an importance matrix (GGUF or llama-imatrix .dat)');
  const magic = new DataView((await source.read(0, 4)).slice().buffer).getUint32(0, true);
  const entries = magic === GGUF_MAGIC ? await readGgufEntries(source, refuse) : readLegacyEntries(await source.read(0, source.size), refuse);
  for (const [name, values] of entries) {
    // llama-quantize stops on these too ("imatrix contains non-finite value").
    if (!values.every(Number.isFinite)) refuse(`entry "${name}" holds a value that is not finite`);
  }
  return { file, entries };
}

const REFUSAL_START = 'importance matrix ';

/**
 * A refusal of the GGUF reader or of the file's reads (`x.gguf: unknown GGUF version 0`) as one of
 * the importance matrix (`importance matrix x.gguf: …`): it names the file alone, which beside a
 * GGUF base and GGUF adapters does not say that the --imatrix input is the broken one. Its code
 * (and so the exit code) is kept; a cancel, this file's own refusals and errors that are no
 * MergeError are passed on as they are.
 */
function asImportanceRefusal(e: unknown, file: string): unknown {
  if (!isMergeError(e) || e.code === 'ABORTED' || e.message.startsWith(REFUSAL_START)) return e;
  // The message holds the name as MergeError made it printable.
  const named = [file, printable(file)].some((f) => e.message.startsWith(`${f}: `));
  return new MergeError(e.code, `${REFUSAL_START}${named ? e.message : `${file}: ${e.message}`}`, { cause: e, lines: true });
}

async function readGgufEntries(source: ByteSource, refuse: (why: string) => never): Promise<Map<string, Float32Array>> {
  const gguf = await openGguf(source);
  const type = gguf.value('general.type')?.value;
  if (type !== undefined && type !== 'imatrix') refuse(`its general.type is "${String(type)}", not "imatrix" (is it a model?)`);
  const pairs = new Map<string, { sums?: GgufTensor; counts?: GgufTensor }>();
  for (const t of gguf.tensors) {
    const suffix = t.name.endsWith(SUMS) ? SUMS : t.name.endsWith(COUNTS) ? COUNTS : undefined;
    if (!suffix) continue; // llama.cpp's loader skips other tensors too
    const name = t.name.slice(0, -suffix.length);
    const pair = pairs.get(name) ?? {};
    if (suffix === SUMS) pair.sums = t;
    else pair.counts = t;
    pairs.set(name, pair);
  }
  if (pairs.size === 0) refuse('no <tensor>.in_sum2 and <tensor>.counts tensors (is it a model rather than llama-imatrix output?)');
  // llama-quantize stops on a GGUF imatrix without these ("missing imatrix metadata").
  const missing = IMATRIX_KEYS.filter((key) => gguf.value(key) === undefined);
  if (missing.length > 0) refuse(`its metadata has no ${missing.join(', ')}, which llama-imatrix writes and llama-quantize requires ("missing imatrix metadata"); make it again with llama-imatrix`);
  const entries = new Map<string, Float32Array>();
  for (const [name, { sums, counts }] of pairs) {
    if (!sums || !counts) refuse(`"${name}" has ${sums ? SUMS : COUNTS} but no ${sums ? COUNTS : SUMS}`);
    for (const t of [sums, counts]) if (t.type.name !== 'F32') refuse(`${t.name} is ${t.type.name}, not F32`);
    const [ne0, n = 1, ...rest] = sums.ne;
    if (rest.some((d) => d !== 1)) refuse(`${sums.name} has ${sums.ne.length} dimensions, not 2`);
    if (counts.ne[0] !== 1 || counts.ne.slice(2).some((d) => d !== 1) || (counts.ne[1] ?? 1) !== n) {
      refuse(`${counts.name} has ne [${counts.ne.join(', ')}], not [1, ${n}] to match ${sums.name}`);
    }
    const sum = await floats(gguf, sums);
    const count = await floats(gguf, counts);
    const out = new Float32Array(ne0 * n);
    for (let e = 0; e < n; e++) {
      const c = count[e];
      // llama-imatrix writes whole counts; a fractional or negative one is no file it wrote.
      if (!(c >= 0) || !Number.isInteger(c)) refuse(`${counts.name} holds ${c}, not a count`);
      for (let i = 0; i < ne0; i++) out[e * ne0 + i] = c > 0 ? sum[e * ne0 + i] / c : 1;
    }
    entries.set(name, out);
  }
  return entries;
}

async function floats(gguf: GgufFile, t: GgufTensor): Promise<Float32Array> {
  const bytes = (await gguf.readPart(t, 0, t.byteLength)).slice();
  const view = new DataView(bytes.buffer);
  const out = new Float32Array(t.byteLength / 4);
  for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(4 * i, true);
  return out;
}

function readLegacyEntries(bytes: Uint8Array, refuse: (why: string) => never): Map<string, Float32Array> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const i32 = (what: string): number => {
    if (at + 4 > bytes.length) refuse(`ends inside ${what} (byte ${at})`);
    at += 4;
    return view.getInt32(at - 4, true);
  };
  const n = i32('the entry count');
  // Each entry takes at least 16 bytes: a count beyond that is a file cut short or no imatrix.
  if (n < 1 || n > (bytes.length - 4) / 16) refuse(`an entry count of ${n} for ${bytes.length} bytes (not a GGUF, nor a llama-imatrix .dat)`);
  const entries = new Map<string, Float32Array>();
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  for (let i = 0; i < n; i++) {
    const len = i32(`entry ${i + 1}'s name length`);
    if (len < 1 || len > MAX_LEGACY_NAME || at + len > bytes.length) refuse(`entry ${i + 1} has a name length of ${len}`);
    let name: string;
    try {
      name = utf8.decode(bytes.subarray(at, at + len));
    } catch {
      return refuse(`entry ${i + 1}'s name is not UTF-8`);
    }
    at += len;
    if (entries.has(name)) refuse(`entry "${name}" appears twice`);
    const ncall = i32(`entry "${name}"`);
    const nval = i32(`entry "${name}"`);
    if (nval < 1 || nval > (bytes.length - at) / 4) refuse(`entry "${name}" claims ${nval} values, more than the file holds`);
    // llama-imatrix writes the call count as 0 or more, and 0 only beside sums of 0 (a tensor that
    // saw no input): llama-quantize would take the sums of another count undivided, as weights
    // ncall times too large (or negative).
    if (ncall < 0) refuse(`entry "${name}" has a call count of ${ncall}; llama-imatrix writes 0 or more, so the file is damaged`);
    const values = new Float32Array(nval);
    // C divides the f32 sum by the int count converted to float.
    const divisor = Math.fround(ncall);
    for (let j = 0; j < nval; j++, at += 4) {
      const v = view.getFloat32(at, true);
      if (ncall === 0 && v !== 0) refuse(`entry "${name}" has a call count of 0 but sums that are not 0; llama-imatrix writes sums of 0 where a tensor saw no input, so the file is damaged`);
      values[j] = ncall > 0 ? v / divisor : v;
    }
    entries.set(name, values);
  }
  checkLegacyTrailer(bytes, view, at, n, refuse);
  return entries;
}

/**
 * What follows a `.dat`'s entries: nothing, the chunk count (i32), or the chunk count and the
 * dataset's name (i32 length and its bytes) to the file's end, as llama-imatrix's versions wrote
 * them (none of it is used). Anything else is refused: another entry (the entry count is short,
 * and llama-quantize would leave that tensor's weights out, unsaid) or a file cut short.
 */
function checkLegacyTrailer(bytes: Uint8Array, view: DataView, at: number, n: number, refuse: (why: string) => never): void {
  const rest = bytes.length - at;
  if (rest === 0 || rest === 4) return;
  const i32At = (offset: number) => (offset + 4 <= bytes.length ? view.getInt32(offset, true) : undefined);
  const datasetLength = i32At(at + 4);
  if (datasetLength !== undefined && datasetLength >= 0 && at + 8 + datasetLength === bytes.length) return;
  // An entry where the trailer should be: i32 name length, a UTF-8 name, i32 ncall, i32 nval and its values.
  const len = i32At(at);
  if (len !== undefined && len >= 1 && len <= MAX_LEGACY_NAME && at + 4 + len + 8 <= bytes.length) {
    let name: string | undefined;
    try {
      name = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(at + 4, at + 4 + len));
    } catch {
      name = undefined;
    }
    const nval = i32At(at + 4 + len + 4);
    if (name !== undefined && nval !== undefined && nval >= 1 && at + 4 + len + 8 + 4 * nval <= bytes.length) {
      refuse(`its entry count is ${n}, but entry ${n + 1} "${name}" follows: the count is wrong (llama-quantize would read the first ${n} and leave the rest out)`);
    }
  }
  refuse(`after its ${n} entr${n === 1 ? 'y' : 'ies'}, ${rest} bytes that are not llama-imatrix's trailer (the chunk count and the dataset's name): the file is cut short or damaged`);
}
