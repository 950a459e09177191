/**
 * blissful-tuner's own LoKr (DustyL/blissful-tuner, a fork of musubi-tuner:
 * src/musubi_tuner/networks/lokr.py, `--network_module networks.lokr`). Its network saves three
 * buffers beside the modules, under names with no module in them: `lokr_factor` (an I64 made, like
 * every tensor, the save precision's dtype by save_weights: the factor its factorization() split each
 * Linear by, read back only to rebuild the network's shapes) and its LoRA network's `use_rslora_flag`
 * and `use_dora_flag` (BOOL, or the save dtype), which its LoKrModule takes and ignores. `lokr_factor`
 * is the file's mark: no other trainer writes it.
 *
 * Its modules are LyCORIS's tensor names under another scale (merge_weights_to_tensor, merge_to):
 * ΔW = kron(lokr_w1, W₂)·α/dim, with dim the rank of lokr_w2_a·lokr_w2_b, or max(b, d) when W₂ is
 * stored whole as lokr_w2 (b, d) (not 1, as LyCORIS's LoKr with both factors full), and α the
 * module's `.alpha` (dim when it has none). Its merge reads lokr_w1 and a 2-D W₂ only: Linear layers,
 * W₁ whole. The LoKr algorithm applies this rule to a module of such a file (option `blissful_lokr`).
 */
import { decodeToF32, isFloatDType } from '../dtype.js';
import { MergeError } from '../errors.js';
import { product } from '../integers.js';
import type { SafetensorsFile, TensorEntry } from './safetensors-types.js';

/** The buffer that marks the file, and the two flags its LoRA network saves beside it. */
const FACTOR = 'lokr_factor';
const FLAGS = ['use_rslora_flag', 'use_dora_flag'] as const;
/** The tensors of blissful-tuner's LoKr modules (export_state_dict), which its flags cannot change. */
const LOKR_TENSOR = /\.(lokr_w1|lokr_w2|lokr_w2_a|lokr_w2_b|alpha)$/;

/** A file blissful-tuner's LoKr network saved: the file-level tensors it claims. */
export interface BlissfulLokr {
  claimed: ReadonlySet<string>;
}

/**
 * The file's blissful-tuner buffers, or null when it has no `lokr_factor`. A one-line refusal when
 * they are not what blissful-tuner writes, or when a flag is on and the file holds modules other
 * than LoKr, which it would change.
 */
export async function readBlissfulLokr(file: SafetensorsFile): Promise<BlissfulLokr | null> {
  const byName = new Map(file.tensors.map((t) => [t.name, t]));
  const factor = byName.get(FACTOR);
  if (!factor) return null;
  const fileName = file.source.name;
  const value = await oneInteger(file, factor);
  if (value === null || !Number.isInteger(value)) {
    throw new MergeError('UNSUPPORTED_FORMAT', `${fileName}: tensor "${FACTOR}" is ${factor.dtype} (${factor.shape.join(', ')})${value === null ? '' : ` holding ${value}`}, not the one whole number blissful-tuner's LoKr network saves there (its Kronecker split factor); this file's layout is not supported`);
  }
  const claimed = new Set([FACTOR]);
  for (const flag of FLAGS) {
    const entry = byName.get(flag);
    if (!entry) continue;
    claimed.add(flag);
    const on = await oneInteger(file, entry);
    if (on !== 0 && on !== 1) {
      throw new MergeError('UNSUPPORTED_FORMAT', `${fileName}: tensor "${flag}" is ${entry.dtype} (${entry.shape.join(', ')}), not the one flag blissful-tuner's network saves there; this file's layout is not supported`);
    }
    const other = on !== 0 ? file.tensors.find((t) => !claimed.has(t.name) && !FLAGS.includes(t.name as (typeof FLAGS)[number]) && !LOKR_TENSOR.test(t.name)) : undefined;
    if (other) {
      throw new MergeError('UNSUPPORTED_FORMAT', `${fileName}: blissful-tuner's "${flag}" is on and the file holds "${other.name}", not a LoKr tensor; its LoRA modules under that flag are not supported (its LoKr modules ignore it)`);
    }
  }
  return { claimed };
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
