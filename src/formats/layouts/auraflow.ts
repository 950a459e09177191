/**
 * Layout: AuraFlow (fal's AuraFlow 0.1–0.3 and Pony V7, which is an AuraFlow model) in its original
 * naming (fal's single files, ComfyUI's model and the LoRAs it extracts or saves:
 * `double_layers.N.attn.w2q`, `mlpX.c_fc1`, `modX.1`, `single_layers.N.mlp.c_fc1`, `modF.1`) and in
 * diffusers' (AuraFlowTransformer2DModel; diffusers' trainers, SimpleTuner, ai-toolkit:
 * `joint_transformer_blocks.N.attn.to_q`, `ff.linear_1`, `norm1.linear`), either way round, as
 * diffusers' single-file conversion (convert_auraflow_transformer_checkpoint_to_diffusers) and
 * ComfyUI's LoRA key map (comfy/utils.py auraflow_to_diffusers) rename them — they agree:
 * - nothing is fused: every attention projection is its own tensor in both namings. In the double
 *   (MMDiT) blocks the image stream is `w2*` (`to_q`, …, `to_out.0`) and the text stream `w1*`
 *   (`add_q_proj`, …, `to_add_out`); in the single blocks `w1*` is `to_q`, …, `to_out.0`;
 * - the SwiGLU FFN's `c_fc1`, `c_fc2`, `c_proj` are `linear_1`, `linear_2`, `out_projection`
 *   (`mlpX` is `ff`, `mlpC` `ff_context`, a single block's `mlp` its `ff`);
 * - `modX.1`, `modC.1`, `modCX.1` are `norm1.linear`, `norm1_context.linear`, `norm1.linear`, row
 *   for row; the final `modF.1` is `norm_out.linear` with its two halves swapped (shift, scale ↔
 *   scale, shift), as both converters swap it;
 * - `t_embedder.mlp.0/2` are `time_step_proj.linear_1/2`, `cond_seq_linear` is `context_embedder`,
 *   `init_x_linear` is `pos_embed.proj`, `final_linear` is `proj_out`; the parameters
 *   `positional_encoding` and `register_tokens` are `pos_embed.pos_embed` and `register_tokens`.
 * The attention's q/k LayerNorms have no parameters in either model, so no file changes them.
 *
 * It answers only on an AuraFlow base (one holding a double or single block's attention or FFN
 * under either naming's own names); names are looked up exactly under the model's key prefix.
 */
import { oneToOne, type RenameRule } from './fused-renames.js';
import { modelLayout, modelPrefix, prefixBefore } from './model-prefix.js';

const OD = 'double_layers.{i}';
const D = 'joint_transformer_blocks.{i}';
const OS = 'single_layers.{i}';
const S = 'single_transformer_blocks.{i}';

/** The SwiGLU FFN `mlp` of the original onto diffusers' `ff` (AuraFlowFeedForward). */
const ffn = (mlp: string, ff: string): RenameRule[] => [
  oneToOne(`${mlp}.c_fc1`, `${ff}.linear_1`),
  oneToOne(`${mlp}.c_fc2`, `${ff}.linear_2`),
  oneToOne(`${mlp}.c_proj`, `${ff}.out_projection`),
];

/** Each original tensor and its diffusers name, as both converters rename them. */
export const AURAFLOW_RULES: readonly RenameRule[] = [
  // Double (MMDiT) blocks: w2* the image stream, w1* the text stream.
  oneToOne(`${OD}.attn.w2q`, `${D}.attn.to_q`),
  oneToOne(`${OD}.attn.w2k`, `${D}.attn.to_k`),
  oneToOne(`${OD}.attn.w2v`, `${D}.attn.to_v`),
  oneToOne(`${OD}.attn.w2o`, `${D}.attn.to_out.0`),
  oneToOne(`${OD}.attn.w1q`, `${D}.attn.add_q_proj`),
  oneToOne(`${OD}.attn.w1k`, `${D}.attn.add_k_proj`),
  oneToOne(`${OD}.attn.w1v`, `${D}.attn.add_v_proj`),
  oneToOne(`${OD}.attn.w1o`, `${D}.attn.to_add_out`),
  ...ffn(`${OD}.mlpX`, `${D}.ff`),
  ...ffn(`${OD}.mlpC`, `${D}.ff_context`),
  oneToOne(`${OD}.modX.1`, `${D}.norm1.linear`),
  oneToOne(`${OD}.modC.1`, `${D}.norm1_context.linear`),
  // Single blocks.
  oneToOne(`${OS}.attn.w1q`, `${S}.attn.to_q`),
  oneToOne(`${OS}.attn.w1k`, `${S}.attn.to_k`),
  oneToOne(`${OS}.attn.w1v`, `${S}.attn.to_v`),
  oneToOne(`${OS}.attn.w1o`, `${S}.attn.to_out.0`),
  ...ffn(`${OS}.mlp`, `${S}.ff`),
  oneToOne(`${OS}.modCX.1`, `${S}.norm1.linear`),
  // Embedders, the final layer and the model's parameters.
  oneToOne('t_embedder.mlp.0', 'time_step_proj.linear_1'),
  oneToOne('t_embedder.mlp.2', 'time_step_proj.linear_2'),
  oneToOne('cond_seq_linear', 'context_embedder'),
  oneToOne('init_x_linear', 'pos_embed.proj'),
  oneToOne('final_linear', 'proj_out'),
  oneToOne('modF.1', 'norm_out.linear', 'always'),
  oneToOne('positional_encoding:', 'pos_embed.pos_embed:'),
];

/** A block's attention or FFN tensor, as only AuraFlow names it in either naming. */
const AURAFLOW_BLOCK = /(^|\.)(double_layers\.\d+\.attn\.w2q|single_layers\.\d+\.attn\.w1q|(joint|single)_transformer_blocks\.\d+\.ff\.out_projection)\.weight$/;
/** The prefix of the model's keys, or null: not AuraFlow. */
const AURAFLOW = modelPrefix((key) => {
  const m = AURAFLOW_BLOCK.exec(key);
  return m ? prefixBefore(key, m) : undefined;
});

/** The AuraFlow layout, in the registry (./index.ts). */
export const auraflow = modelLayout('auraflow', AURAFLOW, AURAFLOW_RULES);
