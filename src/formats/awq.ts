/**
 * AWQ checkpoints in the GEMM layout (config.json `quant_method: "awq"`, `version: "gemm"`, as
 * AutoAWQ saves them and transformers loads them), 4-bit: per linear layer
 * - `<m>.qweight` I32 (in, out/8): eight outputs per word, packed along the outputs in AWQ's order:
 *   outputs 8k + 0, 2, 4, 6, 1, 3, 5, 7 sit in nibbles 0…7 of word k (so output 8k + j is in nibble
 *   [0, 4, 1, 5, 2, 6, 3, 7][j]);
 * - `<m>.qzeros` I32 (in/group_size, out/8), packed the same way; `<m>.scales` F16 (in/group_size, out).
 * W[o, i] = (q[i, o] − z[⌊i/group_size⌋, o]) × scale[⌊i/group_size⌋, o] (packing_utils.py
 * `dequantize_gemm`; decoded by row-decoders.ts). GEMV, exllama, marlin and other layouts are refused by name.
 */
import type { SafetensorsBaseModel } from './base-model.js';
import type { ModelConfig } from './model-config.js';
import {
  configRefusal, int32s, lastScales, notAsWritten, quantizationRecord, recentSources, scaleDtype, wholeTensorCache, type IntWeight, type IntWeights, type RecentSources,
} from './int-weights.js';

/** The AWQ weights of `base`, or undefined when config.json does not name AWQ. */
export async function awqWeights(base: SafetensorsBaseModel, config: ModelConfig | undefined): Promise<IntWeights | undefined> {
  const qc = quantizationRecord(config);
  if (qc?.quant_method !== 'awq') return undefined;
  const version = typeof qc.version === 'string' ? qc.version.toLowerCase() : qc.version;
  if (version !== 'gemm') throw configRefusal(base.name, 'awq', `version "${String(qc.version)}" is not read; only the GEMM layout`);
  const bits = qc.bits ?? qc.w_bit;
  if (bits !== 4) throw configRefusal(base.name, 'awq', `bits ${String(bits)} is not read (only 4)`);
  if (qc.zero_point === false) throw configRefusal(base.name, 'awq', 'zero_point false is not read');
  const groupSize = qc.group_size ?? qc.q_group_size;
  if (typeof groupSize !== 'number' || !Number.isSafeInteger(groupSize) || groupSize < 1) throw configRefusal(base.name, 'awq', `group_size ${String(groupSize)}`);
  const whole = wholeTensorCache(base);
  const scalesOf = lastScales(base.name);
  const sources = recentSources();
  const weights: IntWeight[] = [];
  for (const key of base.tensors.keys()) {
    if (key.endsWith('.qweight')) weights.push(awqWeight(base, key.slice(0, -'.qweight'.length), groupSize, whole, scalesOf, sources));
  }
  return { kind: 'awq', weights, quantizationFiles: ['quant_config.json'] };
}

function awqWeight(
  base: SafetensorsBaseModel, stem: string, groupSize: number, whole: (key: string) => Promise<Uint8Array>, scalesOf: ReturnType<typeof lastScales>, sources: RecentSources,
): IntWeight {
  const key = `${stem}.weight`;
  const [qweightKey, qzerosKey, scalesKey] = ['qweight', 'qzeros', 'scales'].map((s) => `${stem}.${s}`);
  const why = (s: string) => notAsWritten(base.name, key, 'AWQ GEMM', s);
  const qweight = base.tensors.get(qweightKey)!;
  const qzeros = base.tensors.get(qzerosKey);
  const scales = base.tensors.get(scalesKey);
  if (!qzeros || !scales) throw why(`${!qzeros ? qzerosKey : scalesKey} is missing`);
  if (qweight.dtype !== 'I32' || qweight.shape.length !== 2) throw why(`${qweightKey} is ${qweight.dtype} [${qweight.shape.join(', ')}]; expected I32 (in, out/8)`);
  const [cols, words] = qweight.shape;
  const rows = words * 8;
  // AutoAWQ's WQLinear_GEMM asserts in_features % group_size == 0: it loads no ragged last group.
  if (cols % groupSize !== 0) throw why(`${qweightKey} has ${cols} inputs, not whole groups of ${groupSize}; AutoAWQ loads only weights whose inputs are`);
  const groups = cols / groupSize;
  const dtype = scaleDtype(base.name, scalesKey, scales.dtype);
  if (scales.shape.length !== 2 || scales.shape[0] !== groups || scales.shape[1] !== rows) throw why(`${scalesKey} has shape [${scales.shape.join(', ')}]; expected (${groups}, ${rows}) for ${cols} inputs in groups of ${groupSize}`);
  if (qzeros.dtype !== 'I32' || qzeros.shape.length !== 2 || qzeros.shape[0] !== groups || qzeros.shape[1] !== words) throw why(`${qzerosKey} is ${qzeros.dtype} [${qzeros.shape.join(', ')}]; expected I32 (${groups}, ${words})`);
  return {
    key, rows, cols, scaleKey: scalesKey, parts: [qweightKey, qzerosKey, scalesKey],
    rowSource: () => sources(key, async () => {
      const q = int32s(await whole(qweightKey));
      const zeros = int32s(await whole(qzerosKey));
      const scales = scalesOf(scalesKey, await whole(scalesKey), dtype);
      return { name: key, decoder: 'awq', cols, firstRow: 0, arrays: { q, zeros, scales }, params: { rows, groups, groupSize } };
    }),
  };
}
