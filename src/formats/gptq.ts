/**
 * GPTQ checkpoints (config.json `quant_method: "gptq"`, as AutoGPTQ and GPTQModel save them and
 * transformers loads them): per linear layer
 * - `<m>.qweight` I32 (in·bits/32, out), the codes packed along the inputs;
 * - `<m>.qzeros` I32 (groups, out·bits/32), packed the same way along the outputs;
 * - `<m>.scales` F16 (groups, out); `<m>.g_idx` I32 (in): the group of each input (under
 *   `desc_act`, act-order, a permutation of the plain ⌊i / group_size⌋).
 * Packing: the values of an axis are taken in runs, each run one little-endian bit stream over its
 * words with value k at bits [bits·k, bits·k + bits). At 2, 4 and 8 bits a run is one word of
 * 32/bits values; at 3 bits it is 32 values over 3 words, values 10 and 21 straddling a word
 * boundary (AutoGPTQ's `qlinear_cuda_old.py` pack(): 10 values, 2 + 1 bits, 10, 1 + 2, 10), so
 * both axes must hold whole runs of 32 — the only shapes those tools write and load.
 * W[o, i] = (q[i, o] − z[g(i), o]) × scale[g(i), o]. AutoGPTQ's format (`checkpoint_format`
 * "gptq", the default) stores each zero point minus one, so z = stored + 1; GPTQModel's
 * "gptq_v2" stores z itself. A v1 stored value of 2^bits − 1 stands for a zero point of 0, which v1
 * cannot store without overflowing into its neighbour, is refused when the merge reaches it.
 * Repacked layouts (marlin, bitblas, …) are refused by name. The codes are decoded by
 * row-decoders.ts (on the CPU backend's threads where it has them) from the arrays read and
 * checked here once per weight.
 */
import type { SafetensorsBaseModel } from './base-model.js';
import type { ModelConfig } from './model-config.js';
import {
  configRefusal, int32s, lastScales, notAsWritten, quantizationRecord, recentSources, scaleDtype, wholeTensorCache, type IntWeight, type IntWeights, type RecentSources,
} from './int-weights.js';

/** The GPTQ weights of `base`, or undefined when config.json does not name GPTQ. */
export async function gptqWeights(base: SafetensorsBaseModel, config: ModelConfig | undefined): Promise<IntWeights | undefined> {
  const qc = quantizationRecord(config);
  if (qc?.quant_method !== 'gptq') return undefined;
  const format = qc.checkpoint_format ?? qc.format ?? 'gptq';
  if (format !== 'gptq' && format !== 'gptq_v2') throw configRefusal(base.name, 'gptq', `checkpoint_format "${String(format)}" (a repacked layout) is not read; only "gptq" and "gptq_v2"`);
  const bits = qc.bits;
  if (bits !== 2 && bits !== 3 && bits !== 4 && bits !== 8) throw configRefusal(base.name, 'gptq', `bits ${String(bits)} is not read (only 2, 3, 4 and 8)`);
  const groupSize = qc.group_size;
  if (typeof groupSize !== 'number' || !Number.isSafeInteger(groupSize) || (groupSize < 1 && groupSize !== -1)) throw configRefusal(base.name, 'gptq', `group_size ${String(groupSize)}`);
  const v1 = format === 'gptq';
  const whole = wholeTensorCache(base);
  const scalesOf = lastScales(base.name);
  const sources = recentSources();
  const weights: IntWeight[] = [];
  for (const key of base.tensors.keys()) {
    if (key.endsWith('.qweight')) weights.push(gptqWeight(base, key.slice(0, -'.qweight'.length), bits, groupSize, v1, whole, scalesOf, sources));
  }
  return { kind: 'gptq', weights, quantizationFiles: ['quantize_config.json'] };
}

/**
 * How `bits`-bit values lie along a packed axis: in runs of `values` values over `words` int32
 * words, value k of a run at bits [bits·k, bits·k + bits) of the run's words read as one
 * little-endian bit stream (3 bits: 32 values over 3 words, so values 10 and 21 straddle words).
 */
function runsOf(bits: number): { values: number; words: number } {
  return bits === 3 ? { values: 32, words: 3 } : { values: 32 / bits, words: 1 };
}

/** Where value j of a packed axis starts: its word along that axis and the bit within that word. */
function fieldAt(bits: number, j: number): { word: number; shift: number } {
  const runs = runsOf(bits);
  const bit = bits * (j % runs.values);
  return { word: Math.floor(j / runs.values) * runs.words + Math.floor(bit / 32), shift: bit % 32 };
}

/**
 * The `bits`-bit value at bit `shift` of word `lo`, its high bits from the start of word `hi` where
 * it straddles the two; `mask` is 2^bits − 1 (passed in: this runs once per zero point).
 */
function fieldValue(lo: number, hi: number, shift: number, bits: number, mask: number): number {
  const low = lo >>> shift;
  return (shift + bits > 32 ? low | (hi << (32 - shift)) : low) & mask;
}

function gptqWeight(base: SafetensorsBaseModel, stem: string, bits: number, groupSize: number, v1: boolean, whole: (key: string) => Promise<Uint8Array>,
  scalesOf: ReturnType<typeof lastScales>, sources: RecentSources,
): IntWeight {
  const key = `${stem}.weight`;
  const [qweightKey, qzerosKey, scalesKey, gIdxKey] = ['qweight', 'qzeros', 'scales', 'g_idx'].map((s) => `${stem}.${s}`);
  const why = (s: string) => notAsWritten(base.name, key, 'GPTQ', s);
  const qweight = base.tensors.get(qweightKey)!;
  const qzeros = base.tensors.get(qzerosKey);
  const scales = base.tensors.get(scalesKey);
  if (!qzeros || !scales) throw why(`${!qzeros ? qzerosKey : scalesKey} is missing`);
  const runs = runsOf(bits);
  const packedRows = runs.words === 1 ? `in/${runs.values}` : `in/${runs.values}·${runs.words}`;
  if (qweight.dtype !== 'I32' || qweight.shape.length !== 2 || qweight.shape[0] % runs.words !== 0) {
    throw why(`${qweightKey} is ${qweight.dtype} [${qweight.shape.join(', ')}]; expected I32 (${packedRows}, out)`);
  }
  const cols = (qweight.shape[0] / runs.words) * runs.values;
  const rows = qweight.shape[1];
  // AutoGPTQ and GPTQModel give qzeros out/32·3 words at 3 bits (and refuse to pack other widths):
  // the zero points of a last partial run of outputs are not in such a file.
  if (runs.words > 1 && rows % runs.values !== 0) throw why(`${qweightKey} has ${rows} outputs; 3-bit GPTQ packs the zero points of 32 outputs into 3 words, so AutoGPTQ and GPTQModel write only multiples of 32`);
  const dtype = scaleDtype(base.name, scalesKey, scales.dtype);
  if (scales.shape.length !== 2 || scales.shape[1] !== rows) throw why(`${scalesKey} has shape [${scales.shape.join(', ')}]; expected (groups, ${rows})`);
  const groups = scales.shape[0];
  const zeroWords = Math.ceil(rows / runs.values) * runs.words;
  if (qzeros.dtype !== 'I32' || qzeros.shape.length !== 2 || qzeros.shape[0] !== groups || qzeros.shape[1] !== zeroWords) {
    throw why(`${qzerosKey} is ${qzeros.dtype} [${qzeros.shape.join(', ')}]; expected I32 (${groups}, ${zeroWords})`);
  }
  const g = base.tensors.get(gIdxKey);
  const size = groupSize === -1 ? cols : groupSize;
  if (g) {
    if (g.dtype !== 'I32' || g.shape.length !== 1 || g.shape[0] !== cols) throw why(`${gIdxKey} is ${g.dtype} [${g.shape.join(', ')}]; expected I32 (${cols})`);
  } else if (Math.ceil(cols / size) !== groups) {
    throw why(`${scalesKey} has ${groups} groups for ${cols} inputs in groups of ${size}`);
  }
  const mask = 2 ** bits - 1;
  // Read as the merge reaches the weight (a model's zero points and group indices together are large).
  const groupIndex = async (): Promise<Int32Array> => {
    if (!g) return Int32Array.from({ length: cols }, (_, i) => Math.floor(i / size));
    const idx = int32s(await whole(gIdxKey));
    const bad = idx.findIndex((x) => x < 0 || x >= groups);
    if (bad >= 0) throw why(`${gIdxKey}[${bad}] is ${idx[bad]}, outside its ${groups} groups`);
    return idx;
  };
  /** The zero points of every output, rows × groups, checked in row order (as the merge reaches them). */
  const zerosOf = async (): Promise<Int32Array> => {
    const packed = int32s(await whole(qzerosKey));
    const zeros = new Int32Array(rows * groups);
    for (let o = 0; o < rows; o++) {
      const { word, shift } = fieldAt(bits, o);
      for (let gi = 0; gi < groups; gi++) {
        const at = gi * zeroWords + word;
        const stored = fieldValue(packed[at], shift + bits > 32 ? packed[at + 1] : 0, shift, bits, mask);
        if (v1 && stored === mask) throw why(`${qzerosKey} stores ${mask} for group ${gi} of output ${o}: a zero point of 0, which AutoGPTQ's format ("zero point minus one") cannot hold`);
        zeros[o * groups + gi] = v1 ? stored + 1 : stored;
      }
    }
    return zeros;
  };
  return {
    key, rows, cols, scaleKey: scalesKey,
    parts: [qweightKey, qzerosKey, scalesKey, ...(g ? [gIdxKey] : [])],
    rowSource: () => sources(key, async () => {
      const q = int32s(await whole(qweightKey));
      const scales = scalesOf(scalesKey, await whole(scalesKey), dtype);
      const groupOf = await groupIndex();
      const zeros = await zerosOf();
      return { name: key, decoder: 'gptq', cols, firstRow: 0, arrays: { q, zeros, scales, groupOf }, params: { bits, rows, groups } };
    }),
  };
}
