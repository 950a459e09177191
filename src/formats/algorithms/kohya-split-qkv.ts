/**
 * kohya sd-scripts' `split_qkv` (`--network_args "split_qkv=True"`, recorded in `ss_network_args`):
 * its Flux network (networks/lora_flux.py, also the base of networks/lora_hunyuan_image.py) trains
 * `double_blocks.N.img_attn.qkv`/`txt_attn.qkv` as three LoRAs, one per q, k and v part (3072 rows
 * each; 3584 for HunyuanImage 2.1), and `single_blocks.N.linear1` as four (q, k, v and the MLP's
 * 12288 rows; 14336), its SD3 network (networks/lora_sd3.py) each `joint_blocks.N.*.attn.qkv` as
 * three equal thirds. Each part has rank r and the module one α, and LoRAModule.forward scales every
 * part by α/r (LoRAModule with split_dims). But LoRANetwork.state_dict saves such a module fused: its
 * `lora_down` is the parts' downs stacked (n·r, in), its `lora_up` the parts' ups on a block
 * diagonal (rows, n·r, zeros elsewhere), and `alpha` unchanged. So every reader of the file, sd-scripts'
 * own flux_merge_lora.py and inference, ComfyUI, takes α/(n·r): a third (qkv) or a quarter
 * (linear1) of the update trained (sd-scripts issue #2204, open). sd-scripts' own load_state_dict
 * splits the fused pair back into its parts with α unchanged, α/r, and that is the scale merged here,
 * the one the module trained at: n times the other readers'. kohya's later converters that fuse
 * per-part LoRAs multiply α by n for this reason (musubi-tuner's Z-Image conversion).
 *
 * The modules are the ones the network splits, told by its own name tests on the module name; the
 * up must be the block diagonal the save writes (checked when it is read), or the file is not what
 * its metadata says and is refused.
 */
import { decodeToF32 } from '../../dtype.js';
import { MergeError } from '../../errors.js';
import type { AdapterModule } from '../adapter.js';
import type { KohyaNetworkArgs } from '../kohya-network-args.js';
import type { Role } from '../key-forms.js';
import type { SafetensorsFile, TensorEntry } from '../safetensors-types.js';
import type { FloatTensorBytes } from '../../engine/merge-op.js';
import { fmtShape, type ModuleContext } from './algorithm.js';

/** Where the file says the flag was read. */
const SOURCE = 'sd-scripts\' split_qkv (metadata "ss_network_args")';

/** What to do when a module is not what the flag says: a file trained unsplit (resumed with --dim_from_weights, which drops the flag) merges as one LoRA. */
const REMEDY = 'if it was trained without split_qkv, remove that from "ss_network_args" to merge the pair as one LoRA';

/** The rows of each part a network splits a module into (the last, when four, the MLP's), or undefined. */
type PartsOf = (key: string, rows: number) => number[] | undefined;

/** lora_flux's split (get_qkv_mlp_split_dims): "double" and "qkv" in the name, or "single" and "linear1". */
const fluxParts = (hidden: number): PartsOf => (key) => {
  if (key.includes('double') && key.includes('qkv')) return [hidden, hidden, hidden];
  if (key.includes('single') && key.includes('linear1')) return [hidden, hidden, hidden, 4 * hidden];
  return undefined;
};

/** The networks that save split_qkv modules fused, by `ss_network_module`. */
const NETWORKS: Readonly<Record<string, PartsOf>> = {
  'networks.lora_flux': fluxParts(3072),
  // HunyuanImageLoRANetwork subclasses lora_flux's network and keeps its state_dict.
  'networks.lora_hunyuan_image': fluxParts(3584),
  // "joint_blocks" and "qkv" in the name, split [qkv_dim // 3] * 3.
  'networks.lora_sd3': (key, rows) => (key.includes('joint_blocks') && key.includes('qkv') ? [rows / 3, rows / 3, rows / 3] : undefined),
};

/** The option names a split module carries from build to load: its part count and the q/k/v parts' rows. */
export const SPLIT_QKV_PARTS = 'kohya_split_qkv_parts';
export const SPLIT_QKV_ROWS = 'kohya_split_qkv_rows';

/**
 * For a LoRA module built from a fused pair: undefined when its network did not split it (no
 * split_qkv, another network, another module), else the rank r of each part (the down's rows over
 * the part count) and the options that make load check the block diagonal, or null after reporting
 * why the pair is not what that network saves.
 */
export function kohyaSplitQkv(
  context: ModuleContext, tensors: ReadonlyMap<Role, TensorEntry>, down: TensorEntry, up: TensorEntry,
): { partRank: number; options: Record<string, number> } | null | undefined {
  const network = context.networkArgs?.networkModule();
  const partsOf = network === undefined ? undefined : NETWORKS[network];
  const parts = partsOf?.(context.key, up.shape[0]);
  if (!parts || !context.networkArgs!.kohyaSplitQkv()) return undefined;
  const n = parts.length;
  const what = `is saved by ${network} with ${SOURCE}, as ${n} LoRAs of one rank fused into one pair`;
  const extra = [...tensors.entries()].filter(([role]) => role !== 'down' && role !== 'up');
  if (extra.length > 0) {
    context.report('UNSUPPORTED_FORMAT', `${what}, beside which that network saves nothing else, yet it has ${extra.map(([, t]) => `"${t.name}"`).join(', ')}; the file is not what its metadata says (${REMEDY})`);
    return null;
  }
  const rows = parts.reduce((a, b) => a + b, 0);
  const rank = down.shape[0];
  if (down.shape.length !== 2 || up.shape.length !== 2 || !parts.every((p) => Number.isInteger(p)) || up.shape[0] !== rows || rank % n !== 0) {
    const why = down.shape.length !== 2 || up.shape.length !== 2 ? 'that network splits Linear layers only'
      : up.shape[0] !== rows || !parts.every((p) => Number.isInteger(p)) ? `its parts have ${parts.every((p) => Number.isInteger(p)) ? parts.join(' + ') : `a third of ${up.shape[0]}`} rows, not the ${up.shape[0]} of lora_up`
        : `its rank ${rank} is not ${n} parts of one rank`;
    context.report('UNSUPPORTED_FORMAT', `${what}, but lora_down ${fmtShape(down.shape)} and lora_up ${fmtShape(up.shape)} do not fit: ${why}; the file is not what its metadata says (${REMEDY})`);
    return null;
  }
  return { partRank: rank / n, options: { [SPLIT_QKV_PARTS]: n, [SPLIT_QKV_ROWS]: parts[0] } };
}

/**
 * The up of a split module, refused unless it is the block diagonal LoRANetwork.state_dict writes:
 * part j's rows nonzero only in columns [j·r, (j + 1)·r). Anything else was not saved so (or was
 * changed since), and α/r would not be the scale it was trained at.
 */
export function checkSplitQkvUp(file: SafetensorsFile, module: AdapterModule, up: FloatTensorBytes): void {
  const n = module.options![SPLIT_QKV_PARTS] as number, qkv = module.options![SPLIT_QKV_ROWS] as number;
  const [rows, cols] = module.tensors.up.shape;
  const r = cols / n;
  const values = decodeToF32(up.data, up.dtype);
  for (let o = 0; o < rows; o++) {
    // The fourth part (linear1's MLP) takes the rows after the three of q, k and v.
    const part = Math.min(Math.floor(o / qkv), n - 1);
    for (let c = 0; c < cols; c++) {
      if (values[o * cols + c] === 0 || Math.floor(c / r) === part) continue;
      throw new MergeError('UNSUPPORTED_FORMAT', `${file.source.name}: module "${module.key}" is marked by ${SOURCE} as q, k, v${n === 4 ? ' and MLP' : ''} LoRAs fused into one pair, but its lora_up ${fmtShape(module.tensors.up.shape)} is not the block diagonal its network's state_dict saves (row ${o}, of part ${part}, has ${values[o * cols + c]} in column ${c}, of part ${Math.floor(c / r)}): the file was changed or is not what its metadata says, so the scale it was trained at cannot be told (${REMEDY})`);
    }
  }
}

/**
 * The diffusers (ai-toolkit) names sd-scripts' networks/convert_flux_lora.py (`--src sd-scripts
 * --dst ai-toolkit`) gives the parts of lora_flux's split modules: img_attn.qkv's to_q/to_k/to_v,
 * txt_attn.qkv's add_q_proj/add_k_proj/add_v_proj (three parts), single_blocks' linear1's to_q,
 * to_k, to_v and proj_mlp (four).
 */
const CONVERTED_PART = /^transformer\.(?:transformer_blocks\.\d+\.attn\.(?:to_[qkv]|add_[qkv]_proj)|single_transformer_blocks\.\d+\.(?:attn\.to_[qkv]|proj_mlp))$/;

/**
 * A warning for a Flux LoRA in diffusers' names whose metadata says an sd-scripts split_qkv
 * training (`ss_network_module` networks.lora_flux, `ss_network_args` split_qkv "True"): what
 * convert_flux_lora.py writes from such a file, keeping its metadata. It scales each fused pair by
 * α over the fused rank (n·r, convert_to_ai_toolkit_cat) and bakes that into lora_A and lora_B of
 * each part (the block diagonal up is split into its blocks, the down into its r-row parts), so the
 * file holds a third (q, k, v) or a quarter (linear1's four parts) of the update trained at α/r.
 * Its tensors are applied as they are (diffusers and ComfyUI read no α from it), and merged so; the
 * warning says how far that is from the training. Undefined for any other file, or where the
 * metadata cannot be read (what it would say changes no weight here).
 */
export function convertedSplitQkvWarning(fileName: string, networkArgs: KohyaNetworkArgs, modules: readonly string[]): string | undefined {
  const parts = modules.filter((m) => CONVERTED_PART.test(m));
  if (parts.length === 0 || networkArgs.networkModule() !== 'networks.lora_flux') return undefined;
  try {
    if (!networkArgs.kohyaSplitQkv()) return undefined;
  } catch (e) {
    if (e instanceof MergeError) return undefined;
    throw e;
  }
  const single = parts.some((m) => m.startsWith('transformer.single_transformer_blocks.'));
  const double = parts.some((m) => m.startsWith('transformer.transformer_blocks.'));
  const baked = [double ? 'α/(3·r) for the double blocks\' q, k and v' : '', single ? 'α/(4·r) for the single blocks\' q, k, v and proj_mlp' : ''].filter(Boolean).join(' and ');
  const share = double && single ? 'a third (the single blocks\' a quarter)' : double ? 'a third' : 'a quarter';
  const list = `${parts.slice(0, 3).join(', ')}${parts.length > 3 ? `, … (${parts.length} in all)` : ''}`;
  return `${fileName}: ${parts.length === 1 ? 'module' : 'modules'} ${list} ${parts.length === 1 ? 'is' : 'are'} in diffusers' names under the metadata of an sd-scripts split_qkv training ("ss_network_module" networks.lora_flux, "ss_network_args" split_qkv "True"), as sd-scripts' convert_flux_lora.py writes it: it bakes in ${baked}, the scale every reader of the fused file but sd-scripts applies. Merged at the converted file's scale, as diffusers and ComfyUI apply it: ${share} of the scale ${parts.length === 1 ? 'it was' : 'they were'} trained at; to merge at that, merge the sd-scripts file it was converted from`;
}
