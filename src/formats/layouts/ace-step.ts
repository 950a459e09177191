/**
 * Layout: ACE-Step 1.5 LoRAs in the original DiT decoder's names (ACE-Step's own PEFT trainer:
 * `base_model.model.layers.N.self_attn.q_proj`, `cross_attn.o_proj`, with its adapter_config.json) on
 * diffusers' AceStepTransformer1DModel (`layers.N.self_attn.to_q`, `cross_attn.to_out.0`), as diffusers'
 * `_convert_non_diffusers_ace_step_lora_to_diffusers` (which AceStepLoraLoaderMixin runs on any file with
 * a `q_proj` or `k_proj` key) and its checkpoint conversion (scripts/convert_ace_step_to_diffusers.py,
 * `decoder.` stripped) rename them: in each layer's self- and cross-attention `q_proj`, `k_proj`,
 * `v_proj`, `o_proj` are `to_q`, `to_k`, `to_v`, `to_out.0`, each whole; the MLP (`mlp.gate_proj`,
 * `up_proj`, `down_proj`) keeps its names and lands by name. On the original checkpoint (the DiT under
 * `decoder.`) the original names land by name.
 *
 * It answers only on a diffusers ACE-Step transformer (a layer's `cross_attn.to_q` beside `condition_embedder`
 * and `proj_in_conv`).
 */
import { oneToOne, type RenameRule } from './fused-renames.js';
import { modelLayout, modelPrefix, prefixBefore } from './model-prefix.js';

const PROJECTIONS: readonly [string, string][] = [['q_proj', 'to_q'], ['k_proj', 'to_k'], ['v_proj', 'to_v'], ['o_proj', 'to_out.0']];

export const ACE_STEP_RULES: readonly RenameRule[] = ['self_attn', 'cross_attn'].flatMap((attn) =>
  PROJECTIONS.map(([o, d]) => oneToOne(`layers.{i}.${attn}.${o}`, `layers.{i}.${attn}.${d}`)));

const MARKER = /(^|\.)layers\.\d+\.cross_attn\.to_q\.weight$/;
const ACE_STEP = modelPrefix((key, base) => {
  const m = MARKER.exec(key);
  if (!m) return undefined;
  const p = prefixBefore(key, m);
  return base.index.has(`${p}condition_embedder.weight`) && base.index.has(`${p}proj_in_conv.weight`) ? p : null;
});

/** The ACE-Step layout, in the registry (./index.ts). */
export const aceStep = modelLayout('ace-step', ACE_STEP, ACE_STEP_RULES);
