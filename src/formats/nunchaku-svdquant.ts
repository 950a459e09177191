/**
 * Nunchaku's SVDQuant checkpoints (`svdq-int4_r32-flux.1-dev.safetensors`, `svdq-fp4_r128-qwen-image…`,
 * Z-Image's and the rest nunchaku ships): each quantized linear layer is 4-bit codes plus a 16-bit
 * low-rank branch that nunchaku's kernels run beside them (W4A4 `SVDQW4A4Linear`: `<m>.qweight` I8
 * (out, in/2), `<m>.wscales` (in/group, out), `<m>.smooth_factor`, `<m>.proj_down` (in, r),
 * `<m>.proj_up` (out, r), for nvfp4 also `<m>.wcscales` and `<m>.wtscale`; nunchaku 0.x's
 * `<m>.smooth`, `<m>.lora_down`, `<m>.lora_up`), and W4A16 `AWQW4A16Linear` (`<m>.qweight` I32,
 * `<m>.wscales`, `<m>.wzeros`) for the adaLN modulations. Nunchaku applies a LoRA at run time by
 * concatenating its factors onto that low-rank branch (its LoRA converters and
 * `update_lora_params`), with activations quantized to 4 bits: no weight changes, and no merged
 * 4-bit weight reproduces it. So such a base is refused as a whole, naming the format and what to
 * do, before any module is looked up: its unquantized layers (`x_embedder`, `proj_out`, …) would
 * otherwise take their share of a LoRA while the rest is refused module by module.
 *
 * Told apart from AutoAWQ / GPTQ (`qweight` beside `scales`, `qzeros`) by `wscales` beside `qweight`.
 */
import { MergeError } from '../errors.js';
import type { InputFileSet } from '../io/types.js';
import { openSafetensors } from './safetensors-reader.js';

/** What a tensor key set shows of nunchaku's layers: the first quantized layer and its kind. */
export interface NunchakuLayers {
  /** The first module with `qweight`, `wscales` and a low-rank branch, else the first with `qweight` and `wscales`. */
  module: string;
  /** W4A4 with a low-rank branch (`proj_down`/`lora_down`), else nunchaku's AWQ W4A16 alone. */
  kind: 'svdquant' | 'awq-w4a16';
  /** The low-rank branch's names in `module`: `proj` (nunchaku 1.x) or `lora` (0.x); absent for AWQ W4A16. */
  branch?: 'proj' | 'lora';
  /** Modules with `qweight` and `wscales`. */
  count: number;
}

/** Nunchaku's quantized layers in `keys`, or undefined when there are none. */
export function nunchakuLayers(keys: Iterable<string>): NunchakuLayers | undefined {
  const all = new Set(keys);
  let first: string | undefined;
  let svdquant: string | undefined;
  let branch: 'proj' | 'lora' | undefined;
  let count = 0;
  for (const key of all) {
    if (!key.endsWith('.qweight')) continue;
    const m = key.slice(0, -'.qweight'.length);
    if (!all.has(`${m}.wscales`)) continue;
    count++;
    first ??= m;
    if (svdquant !== undefined) continue;
    branch = all.has(`${m}.proj_down`) ? 'proj' : all.has(`${m}.lora_down`) ? 'lora' : undefined;
    if (branch) svdquant = m;
  }
  if (first === undefined) return undefined;
  return svdquant !== undefined ? { module: svdquant, kind: 'svdquant', branch, count } : { module: first, kind: 'awq-w4a16', count };
}

/** The one-line refusal of a nunchaku base, naming `baseName` and one of its layers; `split` says it was a nunchaku 0.x folder. */
export function nunchakuRefusal(baseName: string, layers: NunchakuLayers, split?: string): MergeError {
  const what = layers.kind === 'svdquant'
    ? `a nunchaku SVDQuant model (4-bit W4A4 layers with a low-rank branch: ${layers.module}.qweight, .wscales, .${layers.branch}_down, .${layers.branch}_up; ${layers.count} quantized layers)`
    : `a nunchaku 4-bit model (AWQ W4A16 layers: ${layers.module}.qweight, .wscales, .wzeros; ${layers.count} quantized layers)`;
  // An AWQ W4A16 layer has no low-rank branch to name.
  const where = layers.kind === 'svdquant' ? ' in that low-rank branch' : '';
  return new MergeError(
    'UNSUPPORTED_FORMAT',
    `${baseName}: ${what}${split ?? ''}; nunchaku applies a LoRA at run time${where} and no merged 4-bit weight reproduces it: `
    + 'load the LoRA with nunchaku (ComfyUI-nunchaku\'s LoRA loader, or update_lora_params in Python), or merge into the bf16 or fp8 model and quantize the result again',
  );
}

/** The two files of nunchaku 0.x's model folders (deepcompressor's nunchaku export; 0.x's from_pretrained reads both). */
const SPLIT_FILES = ['transformer_blocks.safetensors', 'unquantized_layers.safetensors'] as const;

/**
 * The refusal of a nunchaku 0.x model folder given whole (`svdq-int4-flux.1-dev/`: config.json,
 * `transformer_blocks.safetensors` with the quantized blocks, `unquantized_layers.safetensors` with
 * the rest), which holds two weight files and no index; undefined for any other folder. Read where
 * a folder of several .safetensors files would otherwise be refused without naming its format.
 */
export async function nunchakuSplitFolderRefusal(files: InputFileSet, weights: readonly string[]): Promise<MergeError | undefined> {
  if (weights.length !== SPLIT_FILES.length || !SPLIT_FILES.every((f) => weights.includes(f))) return undefined;
  const source = await files.open(SPLIT_FILES[0]);
  let keys: string[];
  try {
    keys = (await openSafetensors(source)).tensors.map((t) => t.name);
  } finally {
    await source.close();
  }
  const layers = nunchakuLayers(keys);
  if (!layers) return undefined;
  return nunchakuRefusal(`${files.name}/${SPLIT_FILES[0]}`, layers, `, with ${SPLIT_FILES[1]} beside it, a nunchaku 0.x model folder`);
}
