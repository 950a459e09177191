/**
 * BFL's FLUX.1 control LoRAs (black-forest-labs/FLUX.1-Canny-dev-lora, FLUX.1-Depth-dev-lora), which
 * turn FLUX.1-dev into its Canny or Depth model. The file holds, in BFL's own names and no prefix:
 * a LoRA on every Linear (`<module>.lora_A.weight` (r, in), `lora_B.weight` (out, r), `lora_B.bias`
 * (out), no α: BFL's LinearLora adds scale·lora_B(lora_A(x)), bias included, at scale 1), the
 * q/k RMSNorm scales in full (`double_blocks.N.img_attn.norm.query_norm.scale`, …), which replace
 * the model's, and an `img_in` LoRA whose lora_A has 128 inputs where FLUX.1-dev's img_in has 64
 * (the control latents are concatenated to the image latents). All three loaders agree:
 * - BFL (flux util.py load_flow_model): the model is built with in_channels 128, the base's
 *   img_in.weight copied into the first 64 columns of a zero tensor (optionally_expand_state_dict),
 *   then the LoRA file is load_state_dict'ed over it, setting the norm scales;
 * - diffusers (_convert_bfl_flux_control_lora_to_diffusers, _maybe_expand_transformer_param_shape_or_error_,
 *   _load_norm_into_transformer): x_embedder widened with zero columns, config in_channels set to
 *   128, norms loaded whatever the adapter weight, lora_B.bias as PEFT's lora_bias (scaled like the weight);
 * - ComfyUI (lora_convert.py convert_lora_bfl_control): `lora_B.bias` → `diff_b`, `*_norm.scale` →
 *   `set_weight`, and `img_in.reshape_weight` = (lora_B rows, lora_A columns).
 * ComfyUI's test is used to tell such a file: `img_in.lora_A.weight` and
 * `single_blocks.0.norm.key_norm.scale` both present.
 */
import type { AdapterModule } from './adapter.js';
import type { SafetensorsFile } from './safetensors-types.js';

/** The file's own reading of its tensors: norm scales to replace, and the module whose base it widens. */
export interface BflControlLora {
  /** Tensor names of the `*_norm.scale` replacements (each a module of its own name, role `set_weight`). */
  replaced: ReadonlySet<string>;
  /** The module whose base weight is widened to the columns of its lora_A, as ComfyUI's reshape_weight says. */
  widened: { module: string; columns: number } | undefined;
  /** A module's name as ComfyUI's conversion gives it (`diffusion_model.` + BFL's name): the diffusion model's in any base. */
  moduleName(name: string): string;
}

const NORM_SCALE = /_norm\.scale$/;
const COMFY_PREFIX = 'diffusion_model.';

export function readBflControlLora(file: SafetensorsFile): BflControlLora | null {
  const byName = new Map(file.tensors.map((t) => [t.name, t]));
  const down = byName.get('img_in.lora_A.weight');
  if (!down || !byName.has('single_blocks.0.norm.key_norm.scale')) return null;
  const replaced = new Set(file.tensors.filter((t) => NORM_SCALE.test(t.name)).map((t) => t.name));
  const moduleName = (name: string) => `${COMFY_PREFIX}${name}`;
  return { replaced, widened: down.shape.length === 2 ? { module: moduleName('img_in'), columns: down.shape[1] } : undefined, moduleName };
}

/**
 * The same control LoRAs in diffusers' own names, as its examples/flux-control/train_control_lora_flux.py
 * saves them (`transformer.x_embedder.lora_A.weight` (r, 2·in_channels)) and FluxControlPipeline
 * loads them: _maybe_expand_transformer_param_shape_or_error_ zero-pads any nn.Linear whose lora_A is
 * wider than its in_features, but a saved model can say so only for x_embedder (config in_channels,
 * _MODULE_NAME_TO_ATTRIBUTE_MAP_FLUX), so that one module may widen its base: to its lora_A's columns,
 * which the plan compares with the base weight (equal: no widening). Any other wider lora_A stays a
 * shape mismatch.
 */
export function diffusersWidenedColumns(module: AdapterModule): number | undefined {
  if (module.key !== 'transformer.x_embedder' || module.algorithm !== 'lora' || module.kind !== 'linear' || module.deltaShape.length !== 2) return undefined;
  return module.deltaShape[1];
}

/**
 * The q/k RMSNorm weights such a file holds (--train_norm_layers; diffusers' own conversion of BFL's
 * file gives the same names), which FluxControlPipeline loads in place of the model's whatever the
 * adapter weight (_control_lora_supported_norm_keys, _load_norm_into_transformer after removing one
 * `transformer.` prefix). `replaced`: their tensor names, each a set_weight of its own name.
 * `ignored`: the same norms under `transformer.transformer.`, as the training script's save
 * writes them (its `transformer.` names packed under the component's prefix again): diffusers
 * removes one prefix, finds no such parameter and drops them with a warning.
 */
export function readDiffusersControlNorms(file: SafetensorsFile): { replaced: ReadonlySet<string>; ignored: readonly string[] } {
  const replaced = new Set<string>(), ignored: string[] = [];
  for (const t of file.tensors) {
    const m = DIFFUSERS_NORM.exec(t.name);
    if (m) (m[1] ? ignored.push(t.name) : replaced.add(t.name));
  }
  return { replaced, ignored };
}

const DIFFUSERS_NORM = /^transformer\.(transformer\.)?(?:single_)?transformer_blocks\.\d+\.attn\.norm_(?:added_)?[qk]\.weight$/;
