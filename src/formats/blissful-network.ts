/**
 * blissful-tuner's networks (DustyL/blissful-tuner, a fork of musubi-tuner): their file-level
 * buffers, saved under names with no module in them, and what they ask of the modules.
 *
 * LoRA (src/musubi_tuner/networks/lora.py, LoRANetwork): `use_rslora_flag` and `use_dora_flag`
 * (BOOL buffers, made the save dtype with every tensor by save_weights when one is given).
 * create_network_from_weights reads them back: with `use_rslora_flag` on, each LoRAModule scales by
 * α/√r (α 0 saved as √r; a module without `.alpha` takes α = r); with `use_dora_flag` on, each
 * Linear module (2-D lora_down) has its magnitude `<module>.dora_layer.weight` (out,), the whole
 * row norm, and LoRAInfModule.merge_to sets W' = m / max(‖W + ΔW‖, 1e-6) · (W + ΔW), ΔW =
 * multiplier·scale·up·down, the norm per output row over the inputs (dora_utils
 * dora_weight_norm_materialized), and returns untouched at multiplier 0. Conv2d modules take no DoRA,
 * nor do modules with split_dims (numbered `lora_down.N`/`lora_up.N` pairs, LoRAModule's
 * `use_dora and split_dims is None`), which take the rsLoRA scale as any other.
 * The LoRA algorithm applies these to a module of such a file (options `blissful_rslora`, `blissful_dora`).
 *
 * LoKr (src/musubi_tuner/networks/lokr.py): `lokr_factor` beside the same two flags (an I64, or
 * the save dtype: the factor its factorization() split each Linear by, read back only to rebuild the
 * network's shapes), which its LoKrModule takes and ignores. `lokr_factor` is the file's mark: no
 * other trainer writes it. Its modules are LyCORIS's tensor names under another scale
 * (merge_weights_to_tensor, merge_to): ΔW = kron(lokr_w1, W₂)·α/dim, with dim the rank of
 * lokr_w2_a·lokr_w2_b, or max(b, d) when W₂ is stored whole as lokr_w2 (b, d) (not 1, as LyCORIS's
 * LoKr with both factors full), and α the module's `.alpha` (dim when it has none). Its merge reads
 * lokr_w1 and a 2-D W₂ only: Linear layers, W₁ whole. The LoKr algorithm applies this rule to a
 * module of such a file (option `blissful_lokr`).
 */
import { decodeToF32, isFloatDType } from '../dtype.js';
import { MergeError } from '../errors.js';
import { product } from '../integers.js';
import type { SafetensorsFile, TensorEntry } from './safetensors-types.js';

/** The buffer that marks a LoKr file, and the two flags its LoRA network saves. */
const FACTOR = 'lokr_factor';
const FLAGS = ['use_rslora_flag', 'use_dora_flag'] as const;
/** The tensors of blissful-tuner's LoKr modules (export_state_dict), which its flags cannot change. */
const LOKR_TENSOR = /\.(lokr_w1|lokr_w2|lokr_w2_a|lokr_w2_b|alpha)$/;
/**
 * The tensors of its LoRA modules: one lora_down/lora_up pair, or with split_dims numbered pairs
 * (./algorithms/lora-split.ts; scaled by the rsLoRA flag alike, given no DoRA under its flag).
 */
const LORA_TENSOR = /^[^.]+\.(lora_down\.weight|lora_up\.weight|lora_down\.\d+\.weight|lora_up\.\d+\.weight|alpha|dora_layer\.weight)$/;

/** A file a blissful-tuner network saved: the file-level tensors it claims, and the module options they set. */
export interface BlissfulNetwork {
  claimed: ReadonlySet<string>;
  options: Readonly<Record<string, boolean>>;
}

/**
 * The file's blissful-tuner buffers, or null when it has neither `lokr_factor` nor a flag. A
 * one-line refusal when they are not what blissful-tuner writes, or when a flag is on and the file
 * holds modules its network would not have applied it to as read here (LoKr's ignore the flags; a
 * LoRA network's are lora_down/lora_up pairs).
 */
export async function readBlissfulNetwork(file: SafetensorsFile): Promise<BlissfulNetwork | null> {
  const byName = new Map(file.tensors.map((t) => [t.name, t]));
  const factor = byName.get(FACTOR);
  if (!factor && !FLAGS.some((f) => byName.has(f))) return null;
  const fileName = file.source.name;
  const claimed = new Set<string>();
  if (factor) {
    const value = await oneInteger(file, factor);
    if (value === null || !Number.isInteger(value)) {
      throw new MergeError('UNSUPPORTED_FORMAT', `${fileName}: tensor "${FACTOR}" is ${factor.dtype} (${factor.shape.join(', ')})${value === null ? '' : ` holding ${value}`}, not the one whole number blissful-tuner's LoKr network saves there (its Kronecker split factor); this file's layout is not supported`);
    }
    claimed.add(FACTOR);
  }
  const on = new Set<string>();
  for (const flag of FLAGS) {
    const entry = byName.get(flag);
    if (!entry) continue;
    claimed.add(flag);
    const value = await oneInteger(file, entry);
    if (value !== 0 && value !== 1) {
      throw new MergeError('UNSUPPORTED_FORMAT', `${fileName}: tensor "${flag}" is ${entry.dtype} (${entry.shape.join(', ')}), not the one flag blissful-tuner's network saves there; this file's layout is not supported`);
    }
    if (value === 1) on.add(flag);
  }
  const flag = FLAGS.find((f) => on.has(f));
  if (flag) {
    const fits = factor ? (name: string) => LOKR_TENSOR.test(name) : (name: string) => LORA_TENSOR.test(name);
    const other = file.tensors.find((t) => !claimed.has(t.name) && !fits(t.name));
    if (other) {
      throw new MergeError('UNSUPPORTED_FORMAT', factor
        ? `${fileName}: blissful-tuner's "${flag}" is on and the file holds "${other.name}", not a LoKr tensor; its LoRA modules under that flag are not supported (its LoKr modules ignore it)`
        : `${fileName}: blissful-tuner's "${flag}" is on and the file holds "${other.name}", not a tensor of its LoRA modules (lora_down.weight, lora_up.weight, their numbered split_dims pairs, alpha, dora_layer.weight); such a module under that flag is not supported`);
    }
  }
  if (factor) return { claimed, options: { blissful_lokr: true } };
  return {
    claimed,
    options: { ...(on.has('use_rslora_flag') ? { blissful_rslora: true } : {}), ...(on.has('use_dora_flag') ? { blissful_dora: true } : {}) },
  };
}

/** A one-element tensor's value (integer, bool or float, as save_weights may have cast it), or null. */
async function oneInteger(file: SafetensorsFile, entry: TensorEntry): Promise<number | null> {
  const width: Partial<Record<string, number>> = { I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };
  const bytes = width[entry.dtype];
  if (product(entry.shape) !== 1) return null;
  const data = await file.read(entry);
  if (bytes === undefined) return isFloatDType(entry.dtype) ? decodeToF32(data, entry.dtype)[0] : null;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (bytes === 8) return Number(view.getBigInt64(0, true));
  if (bytes === 4) return view.getInt32(0, true);
  if (bytes === 2) return view.getInt16(0, true);
  return entry.dtype === 'I8' ? view.getInt8(0) : view.getUint8(0);
}
