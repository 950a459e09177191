/**
 * mlx-lm's quantized checkpoints (mlx-community's `*-4bit` / `*-8bit`, `mlx_lm.convert -q`):
 * config.json `quantization: {group_size, bits}` (copied to `quantization_config`), optionally with
 * per-layer entries (`"model.layers.0.mlp.gate": {group_size, bits}`, or `false` for a layer left
 * unquantized), and per quantized layer
 * - `<m>.weight` U32 (out, in·bits/32): the codes packed along the inputs, 32/bits per word,
 *   input i at bits·(i mod 32/bits) of word ⌊i·bits/32⌋;
 * - `<m>.scales` and `<m>.biases` (out, in/group_size), f16 or bf16.
 * W[o, i] = q·scale + bias for i's group (mx.dequantize, affine mode). Each value is computed in
 * float64 and must be exact in f32 (q < 2⁸ times an 8- or 11-bit scale, plus a bias that mlx's
 * quantizer makes a multiple of the scale near it); one that is not is refused by name. 3-, 5- and
 * 6-bit codes (which straddle words), other modes (mxfp4, nvfp4, mxfp8) and 3-D stacked experts
 * (`switch_mlp`) are refused by name.
 */
import { decodeToF32 } from '../dtype.js';
import { MergeError } from '../errors.js';
import type { SafetensorsBaseModel } from './base-model.js';
import type { ModelConfig } from './model-config.js';
import { configRefusal, int32s, notAsWritten, scaleDtype, wholeTensorCache, type IntWeight, type IntWeights } from './int-weights.js';

interface Scheme { bits: number; groupSize: number }

/** The mlx affine-quantized weights of `base`, or undefined when config.json has no mlx `quantization`. */
export async function mlxAffineWeights(base: SafetensorsBaseModel, config: ModelConfig | undefined): Promise<IntWeights | undefined> {
  const q = config?.raw.quantization;
  if (typeof q !== 'object' || q === null || Array.isArray(q)) return undefined;
  const record = q as Record<string, unknown>;
  const global = scheme(base.name, 'quantization', record);
  const perLayer = new Map<string, Scheme | false>();
  for (const [key, value] of Object.entries(record)) {
    if (key === 'group_size' || key === 'bits' || key === 'mode') continue;
    if (value === false) perLayer.set(key, false);
    else if (typeof value === 'object' && value !== null && !Array.isArray(value)) perLayer.set(key, scheme(base.name, `quantization."${key}"`, value as Record<string, unknown>));
    else throw configRefusal(base.name, 'mlx', `quantization."${key}" is ${JSON.stringify(value)}, neither a {group_size, bits} object nor false`);
  }
  const whole = wholeTensorCache(base);
  const weights: IntWeight[] = [];
  for (const [key, tensor] of base.tensors) {
    if (!key.endsWith('.weight') || tensor.dtype !== 'U32') continue;
    const stem = key.slice(0, -'.weight'.length);
    if (!base.tensors.has(`${stem}.scales`) || !base.tensors.has(`${stem}.biases`)) continue;
    const layer = perLayer.has(stem) ? perLayer.get(stem)! : global;
    if (layer === false) throw notAsWritten(base.name, key, 'mlx', `config.json quantization."${stem}" is false (not quantized), but it is stored as uint32 codes with scales and biases`);
    weights.push(affineWeight(base, stem, layer, whole));
  }
  return { kind: 'mlx-affine', weights };
}

function scheme(baseName: string, where: string, q: Record<string, unknown>): Scheme {
  if (q.mode !== undefined && q.mode !== 'affine') throw configRefusal(baseName, 'mlx', `${where}.mode "${String(q.mode)}" is not read (only "affine")`);
  const bits = q.bits;
  if (bits !== 2 && bits !== 4 && bits !== 8) throw configRefusal(baseName, 'mlx', `${where}.bits ${String(bits)} is not read (only 2, 4 and 8; 3-, 5- and 6-bit codes straddle words)`);
  const groupSize = q.group_size;
  if (typeof groupSize !== 'number' || !Number.isSafeInteger(groupSize) || groupSize < 1) throw configRefusal(baseName, 'mlx', `${where}.group_size ${String(groupSize)}`);
  return { bits, groupSize };
}

function affineWeight(base: SafetensorsBaseModel, stem: string, { bits, groupSize }: Scheme, whole: (key: string) => Promise<Uint8Array>): IntWeight {
  const key = `${stem}.weight`;
  const [scalesKey, biasesKey] = [`${stem}.scales`, `${stem}.biases`];
  const why = (s: string) => notAsWritten(base.name, key, 'mlx affine', s);
  const weight = base.tensors.get(key)!;
  const scales = base.tensors.get(scalesKey)!;
  const biases = base.tensors.get(biasesKey)!;
  if (weight.shape.length !== 2) throw why(`it is [${weight.shape.join(', ')}]; only 2-D weights are read (stacked experts are not)`);
  const perWord = 32 / bits;
  const [rows, words] = weight.shape;
  const cols = words * perWord;
  const groups = cols / groupSize;
  const dtype = scaleDtype(base.name, scalesKey, scales.dtype);
  const biasDtype = scaleDtype(base.name, biasesKey, biases.dtype);
  for (const [name, t] of [[scalesKey, scales], [biasesKey, biases]] as const) {
    if (!Number.isInteger(groups) || t.shape.length !== 2 || t.shape[0] !== rows || t.shape[1] !== groups) {
      throw why(`${name} has shape [${t.shape.join(', ')}]; expected (${rows}, ${cols}/${groupSize}) for ${bits}-bit codes in groups of ${groupSize}`);
    }
  }
  const mask = 2 ** bits - 1;
  return {
    key, rows, cols, scaleKey: scalesKey,
    parts: [key, scalesKey, biasesKey],
    async decodeRows(r0, r1) {
      const q = int32s(await base.readPart(key, r0 * words * 4, (r1 - r0) * words * 4));
      // mlx's quantizer makes a group's scale negative where its largest magnitude is its minimum.
      const s = finiteValues(base.name, scalesKey, decodeToF32(await whole(scalesKey), dtype));
      const b = finiteValues(base.name, biasesKey, decodeToF32(await whole(biasesKey), biasDtype));
      const out = new Float32Array((r1 - r0) * cols);
      for (let o = r0; o < r1; o++) for (let i = 0; i < cols; i++) {
        const code = (q[(o - r0) * words + Math.floor(i / perWord)] >>> (bits * (i % perWord))) & mask;
        const g = o * groups + Math.floor(i / groupSize);
        const product = code * s[g]; // exact in f64: at most 8 + 24 bits
        const value = product + b[g];
        // Knuth's TwoSum: the rounding error of that sum, zero when it is exact.
        const bPart = value - product;
        const error = (product - (value - bPart)) + (b[g] - bPart);
        const stored = Math.fround(value);
        if (error !== 0 || stored !== value) {
          throw new MergeError('UNSUPPORTED_FORMAT', `${base.name}: ${key}[${o}, ${i}] = ${code}·${s[g]} + ${b[g]} is not exact in f32, in which the merge reads dequantized weights`);
        }
        out[(o - r0) * cols + i] = stored;
      }
      return out;
    },
  };
}

function finiteValues(baseName: string, key: string, values: Float32Array): Float32Array {
  const bad = values.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new MergeError('UNSUPPORTED_FORMAT', `${baseName}: tensor "${key}" holds ${values[bad]} (element ${bad}); scales and biases must be finite`);
  return values;
}
