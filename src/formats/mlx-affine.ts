/**
 * mlx-lm's quantized checkpoints (mlx-community's `*-4bit` / `*-8bit`, `mlx_lm.convert -q`):
 * config.json `quantization: {group_size, bits}` (copied to `quantization_config`), optionally with
 * per-layer entries (`"model.layers.0.mlp.gate": {group_size, bits}`, or `false` for a layer left
 * unquantized), and per quantized layer
 * - `<m>.weight` U32 (out, in·bits/32): each row's codes as one little-endian bit stream, input i
 *   at bits [bits·i, bits·i + bits) (mx.quantize: whole codes per word for 2, 4 and 8 bits; 3 and
 *   5 bits in packs of 8 codes over 3 and 5 bytes, 6 bits 4 codes over 3 bytes, so codes straddle
 *   bytes and words: mlx's quantized.cpp extract_bits and quantize);
 * - `<m>.scales` and `<m>.biases` (out, in/group_size), f16 or bf16.
 * A MoE's stacked experts (mlx-lm's `switch_mlp`, QuantizedSwitchLinear) have a leading experts
 * dimension on all three: (E, out, in·bits/32) and (E, out, in/group_size); the float weight is
 * (E, out, in), read as its E·out rows.
 * W[o, i] = q·scale + bias for i's group (mx.dequantize, affine mode). Each value is computed in
 * float64 and must be exact in f32 (q < 2⁸ times an 8- or 11-bit scale, plus a bias that mlx's
 * quantizer makes a multiple of the scale near it); one that is not is refused by name. Other
 * modes (mxfp4, nvfp4, mxfp8) are refused by name. The codes are decoded by row-decoders.ts (on
 * the CPU backend's threads where it has them) from a slab's arrays read and checked here.
 */
import { decodeToF32 } from '../dtype.js';
import type { MergeError } from '../errors.js';
import { badScaleRows, countBad, eachRowPiece, noBad } from './bad-scales.js';
import type { SafetensorsBaseModel } from './base-model.js';
import type { ModelConfig } from './model-config.js';
import { configRefusal, int32s, notAsWritten, scaleDtype, type IntWeight, type IntWeights } from './int-weights.js';

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
  const weights: IntWeight[] = [];
  for (const [key, tensor] of base.tensors) {
    if (!key.endsWith('.weight') || tensor.dtype !== 'U32') continue;
    const stem = key.slice(0, -'.weight'.length);
    if (!base.tensors.has(`${stem}.scales`) || !base.tensors.has(`${stem}.biases`)) continue;
    const layer = perLayer.has(stem) ? perLayer.get(stem)! : global;
    if (layer === false) throw notAsWritten(base.name, key, 'mlx', `config.json quantization."${stem}" is false (not quantized), but it is stored as uint32 codes with scales and biases`);
    weights.push(affineWeight(base, stem, layer));
  }
  return { kind: 'mlx-affine', weights };
}

function scheme(baseName: string, where: string, q: Record<string, unknown>): Scheme {
  if (q.mode !== undefined && q.mode !== 'affine') throw configRefusal(baseName, 'mlx', `${where}.mode "${String(q.mode)}" is not read (only "affine")`);
  const bits = q.bits;
  // The bits mx.quantize's affine mode writes (mlx ops.cpp affine_quantize: 2, 3, 4, 5, 6 and 8).
  if (bits !== 2 && bits !== 3 && bits !== 4 && bits !== 5 && bits !== 6 && bits !== 8) throw configRefusal(baseName, 'mlx', `${where}.bits ${String(bits)} is not read (only 2, 3, 4, 5, 6 and 8, as mx.quantize writes them)`);
  const groupSize = q.group_size;
  if (typeof groupSize !== 'number' || !Number.isSafeInteger(groupSize) || groupSize < 1) throw configRefusal(baseName, 'mlx', `${where}.group_size ${String(groupSize)}`);
  return { bits, groupSize };
}

function affineWeight(base: SafetensorsBaseModel, stem: string, { bits, groupSize }: Scheme): IntWeight {
  const key = `${stem}.weight`;
  const [scalesKey, biasesKey] = [`${stem}.scales`, `${stem}.biases`];
  const why = (s: string) => notAsWritten(base.name, key, 'mlx affine', s);
  const weight = base.tensors.get(key)!;
  const scales = base.tensors.get(scalesKey)!;
  const biases = base.tensors.get(biasesKey)!;
  if (weight.shape.length < 2) throw why(`it is [${weight.shape.join(', ')}]; a quantized weight is (out, in·bits/32), or (experts, out, in·bits/32) stacked`);
  // Leading dimensions (switch_mlp's experts) stack whole matrices: their rows follow one another.
  const lead = weight.shape.slice(0, -2);
  const words = weight.shape[weight.shape.length - 1];
  const rows = weight.shape.slice(0, -1).reduce((a, b) => a * b, 1);
  const cols = (words * 32) / bits;
  const groups = cols / groupSize;
  const dtype = scaleDtype(base.name, scalesKey, scales.dtype);
  const biasDtype = scaleDtype(base.name, biasesKey, biases.dtype);
  if (!Number.isInteger(cols)) throw why(`its ${words} words per row do not hold a whole number of ${bits}-bit codes`);
  if (!Number.isInteger(groups)) throw why(`its ${cols} inputs per row are not a whole number of groups of ${groupSize}`);
  const expected = [...weight.shape.slice(0, -1), groups];
  for (const [name, t] of [[scalesKey, scales], [biasesKey, biases]] as const) {
    if (t.shape.length !== expected.length || t.shape.some((n, d) => n !== expected[d])) {
      throw why(`${name} has shape [${t.shape.join(', ')}]; expected (${expected.join(', ')}) for ${bits}-bit codes in groups of ${groupSize}`);
    }
  }
  const rowBytes = words * 4;
  const scaleBytes = groups * 2; // f16 or bf16
  const shape = Int32Array.from(weight.shape);
  return {
    key, rows, cols, scaleKey: scalesKey,
    ...(lead.length ? { shape: [...weight.shape.slice(0, -1), cols] } : {}),
    parts: [key, scalesKey, biasesKey],
    // One slab of rows of each part (a stacked expert tensor is never read whole), decoded by
    // row-decoders.ts's `mlx-affine`, which refuses a value not exact in f32.
    async rowSource(r0, r1) {
      const q = int32s(await base.readPart(key, r0 * rowBytes, (r1 - r0) * rowBytes));
      // mlx's quantizer makes a group's scale negative where its largest magnitude is its minimum.
      const s = decodeToF32(await base.readPart(scalesKey, r0 * scaleBytes, (r1 - r0) * scaleBytes), dtype);
      const b = decodeToF32(await base.readPart(biasesKey, r0 * scaleBytes, (r1 - r0) * scaleBytes), biasDtype);
      if (!allFinite(s) || !allFinite(b)) throw await notFinite(base, [[scalesKey, dtype], [biasesKey, biasDtype]], rows, groups, lead.length === 1 ? weight.shape[1] : undefined);
      return {
        name: key, model: base.name, decoder: 'mlx-affine', cols, firstRow: r0,
        arrays: { q, scales: s, biases: b, shape }, params: { bits, words, groups, groupSize },
      };
    },
  };
}

function allFinite(values: Float32Array): boolean {
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i])) return false;
  return true;
}

/**
 * The refusal of a weight whose scales or biases hold NaN or Inf, met by a slab: each tensor read
 * again whole (the scales first), so that it names how many the first broken one holds and its
 * first and last row (of an expert, for switch_mlp's stacked (E, out, groups)).
 */
async function notFinite(
  base: SafetensorsBaseModel, parts: readonly (readonly [string, 'F16' | 'BF16'])[], rows: number, groups: number, perExpert: number | undefined,
): Promise<MergeError> {
  const place = perExpert ? (r: number) => `row ${r % perExpert} of expert ${Math.floor(r / perExpert)}` : undefined;
  for (const [key, dtype] of parts) {
    const span = noBad();
    await eachRowPiece((start, length) => base.readPart(key, start, length), rows, groups * 2, (bytes, r0) => {
      const values = decodeToF32(bytes, dtype);
      for (let j = 0; j < values.length; j++) if (!Number.isFinite(values[j])) countBad(span, r0 + Math.floor(j / groups));
    });
    if (span.count) return badScaleRows(base.name, key, span, ['value that is NaN or Inf', 'values that are NaN or Inf'], 'scales and biases must be finite', place);
  }
  throw new Error(`${parts[0][0]}: a NaN or Inf met in a slab is not found again`);
}
