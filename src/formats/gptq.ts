/**
 * GPTQ checkpoints (config.json `quant_method: "gptq"`, as AutoGPTQ and GPTQModel save them and
 * transformers loads them): per linear layer
 * - `<m>.qweight` I32 (in/p, out), p = 32 / bits values per word packed along the inputs: input i
 *   of output o is bits·(i mod p) of word (⌊i/p⌋, o);
 * - `<m>.qzeros` I32 (groups, out/p), packed the same way along the outputs;
 * - `<m>.scales` F16 (groups, out); `<m>.g_idx` I32 (in): the group of each input (under
 *   `desc_act`, act-order, a permutation of the plain ⌊i / group_size⌋).
 * W[o, i] = (q[i, o] − z[g(i), o]) × scale[g(i), o]. AutoGPTQ's format (`checkpoint_format`
 * "gptq", the default) stores each zero point minus one, so z = stored + 1; GPTQModel's
 * "gptq_v2" stores z itself. A v1 stored value of 2^bits − 1 stands for a zero point of 0, which v1
 * cannot store without overflowing into its neighbour, is refused when the merge reaches it. 3-bit packing (which
 * straddles words) and repacked layouts (marlin, bitblas, …) are refused by name.
 */
import { decodeToF32 } from '../dtype.js';
import type { SafetensorsBaseModel } from './base-model.js';
import type { ModelConfig } from './model-config.js';
import { checkedScales, configRefusal, int32s, notAsWritten, quantizationRecord, scaleDtype, wholeTensorCache, type IntWeight, type IntWeights } from './int-weights.js';

/** The GPTQ weights of `base`, or undefined when config.json does not name GPTQ. */
export async function gptqWeights(base: SafetensorsBaseModel, config: ModelConfig | undefined): Promise<IntWeights | undefined> {
  const qc = quantizationRecord(config);
  if (qc?.quant_method !== 'gptq') return undefined;
  const format = qc.checkpoint_format ?? qc.format ?? 'gptq';
  if (format !== 'gptq' && format !== 'gptq_v2') throw configRefusal(base.name, 'gptq', `checkpoint_format "${String(format)}" (a repacked layout) is not read; only "gptq" and "gptq_v2"`);
  const bits = qc.bits;
  if (bits !== 2 && bits !== 4 && bits !== 8) throw configRefusal(base.name, 'gptq', `bits ${String(bits)} is not read (only 2, 4 and 8)`);
  const groupSize = qc.group_size;
  if (typeof groupSize !== 'number' || !Number.isSafeInteger(groupSize) || (groupSize < 1 && groupSize !== -1)) throw configRefusal(base.name, 'gptq', `group_size ${String(groupSize)}`);
  const v1 = format === 'gptq';
  const whole = wholeTensorCache(base);
  const weights: IntWeight[] = [];
  for (const key of base.tensors.keys()) {
    if (key.endsWith('.qweight')) weights.push(gptqWeight(base, key.slice(0, -'.qweight'.length), bits, groupSize, v1, whole));
  }
  return { kind: 'gptq', weights, quantizationFiles: ['quantize_config.json'] };
}

function gptqWeight(base: SafetensorsBaseModel, stem: string, bits: number, groupSize: number, v1: boolean, whole: (key: string) => Promise<Uint8Array>): IntWeight {
  const key = `${stem}.weight`;
  const [qweightKey, qzerosKey, scalesKey, gIdxKey] = ['qweight', 'qzeros', 'scales', 'g_idx'].map((s) => `${stem}.${s}`);
  const why = (s: string) => notAsWritten(base.name, key, 'GPTQ', s);
  const qweight = base.tensors.get(qweightKey)!;
  const qzeros = base.tensors.get(qzerosKey);
  const scales = base.tensors.get(scalesKey);
  if (!qzeros || !scales) throw why(`${!qzeros ? qzerosKey : scalesKey} is missing`);
  const perWord = 32 / bits;
  if (qweight.dtype !== 'I32' || qweight.shape.length !== 2) throw why(`${qweightKey} is ${qweight.dtype} [${qweight.shape.join(', ')}]; expected I32 (in/${perWord}, out)`);
  const cols = qweight.shape[0] * perWord;
  const rows = qweight.shape[1];
  const dtype = scaleDtype(base.name, scalesKey, scales.dtype);
  if (scales.shape.length !== 2 || scales.shape[1] !== rows) throw why(`${scalesKey} has shape [${scales.shape.join(', ')}]; expected (groups, ${rows})`);
  const groups = scales.shape[0];
  const zeroWords = Math.ceil(rows / perWord);
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
  /** The zero points of outputs [r0, r1), (r1 − r0) × groups. */
  const zerosOf = async (r0: number, r1: number): Promise<Int32Array> => {
    const packed = int32s(await whole(qzerosKey));
    const zeros = new Int32Array((r1 - r0) * groups);
    for (let o = r0; o < r1; o++) for (let gi = 0; gi < groups; gi++) {
      const stored = (packed[gi * zeroWords + Math.floor(o / perWord)] >>> (bits * (o % perWord))) & mask;
      if (v1 && stored === mask) throw why(`${qzerosKey} stores ${mask} for group ${gi} of output ${o}: a zero point of 0, which AutoGPTQ's format ("zero point minus one") cannot hold`);
      zeros[(o - r0) * groups + gi] = v1 ? stored + 1 : stored;
    }
    return zeros;
  };
  return {
    key, rows, cols, scaleKey: scalesKey,
    parts: [qweightKey, qzerosKey, scalesKey, ...(g ? [gIdxKey] : [])],
    async decodeRows(r0, r1) {
      const q = int32s(await whole(qweightKey));
      const s = checkedScales(base.name, scalesKey, decodeToF32(await whole(scalesKey), dtype), 0);
      const groupOf = await groupIndex();
      const zeros = await zerosOf(r0, r1);
      const out = new Float32Array((r1 - r0) * cols);
      for (let o = r0; o < r1; o++) for (let i = 0; i < cols; i++) {
        const code = (q[Math.floor(i / perWord) * rows + o] >>> (bits * (i % perWord))) & mask;
        const gi = groupOf[i];
        out[(o - r0) * cols + i] = (code - zeros[(o - r0) * groups + gi]) * s[gi * rows + o];
      }
      return out;
    },
  };
}
