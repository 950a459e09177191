/**
 * Layout: NVIDIA's Cosmos 1.0 diffusion DiT (Cosmos-1.0-Diffusion 7B/14B, Text2World and
 * Video2World) in its original naming (NVIDIA's checkpoints and Comfy-Org's repackaged files under
 * `net.`, checkpoints ComfyUI saves, and the LoRAs written against them: diffusion-pipe's
 * `diffusion_model.blocks.block0.blocks.0.block.attn.to_q.0`, ComfyUI's `lora_unet_` + those names
 * flattened) and in diffusers' (CosmosTransformer3DModel with `extra_pos_embed_type: "learnable"`:
 * `transformer_blocks.N.attn1.to_q`, `ff.net.0.proj`, `norm1.linear_1`, `learnable_pos_embed`),
 * either way round, as diffusers' conversion renames them (scripts/convert_cosmos_to_diffusers.py,
 * its Cosmos 1.0 table, which the single-file loader convert_cosmos_transformer_checkpoint_to_diffusers
 * repeats): `blocks.blockN` → `transformer_blocks.N`; in each block the self-attention
 * (`blocks.0.block.attn`) → `attn1`, the cross-attention (`blocks.1.block.attn`) → `attn2`, the MLP
 * (`blocks.2.block`) → `ff`; `to_q.0`, `to_k.0`, `to_v.0` → `to_q`, `to_k`, `to_v`, the q/k RMSNorms
 * `to_q.1`, `to_k.1` → `norm_q`, `norm_k`, `to_out.0` kept; `layer1`, `layer2` → `net.0.proj`,
 * `net.2`; `blocks.0/1/2.adaLN_modulation.1/.2` → `norm1/2/3.linear_1/_2`; `x_embedder.proj.1` →
 * `patch_embed.proj`; `t_embedder.1` → `time_embed.t_embedder`; `affline_norm` → `time_embed.norm`;
 * `extra_pos_embedder` → `learnable_pos_embed`; the final layer's → `norm_out.linear_1/_2`,
 * `proj_out`. Every module is renamed whole, row for row: the conversion only renames.
 *
 * It answers only on a Cosmos 1.0 base: a block's `blocks.0.block.attn.to_q.0` (the key diffusers'
 * and ComfyUI's model detection tell Cosmos 1.0 by), or diffusers' `transformer_blocks.N.norm1.linear_1`
 * beside `learnable_pos_embed.pos_emb_h` (every Cosmos 1.0 config has the learnable positional
 * embedding, no Cosmos 2.x config has it). Names are looked up exactly under the model's key prefix.
 */
import { oneToOne, type RenameRule } from './fused-renames.js';
import { modelLayout, modelPrefix, prefixBefore } from './model-prefix.js';

const O = 'blocks.block{i}';
const D = 'transformer_blocks.{i}';

function attentionRules(sub: string, attn: string): RenameRule[] {
  const A = `${O}.blocks.${sub}.block.attn`;
  const B = `${D}.${attn}`;
  return [
    oneToOne(`${A}.to_q.0`, `${B}.to_q`), oneToOne(`${A}.to_q.1`, `${B}.norm_q`),
    oneToOne(`${A}.to_k.0`, `${B}.to_k`), oneToOne(`${A}.to_k.1`, `${B}.norm_k`),
    oneToOne(`${A}.to_v.0`, `${B}.to_v`), oneToOne(`${A}.to_out.0`, `${B}.to_out.0`),
  ];
}

/** Each original tensor and its diffusers name, as the Cosmos 1.0 table renames it. */
export const COSMOS1_RULES: readonly RenameRule[] = [
  ...attentionRules('0', 'attn1'),
  ...attentionRules('1', 'attn2'),
  oneToOne(`${O}.blocks.2.block.layer1`, `${D}.ff.net.0.proj`),
  oneToOne(`${O}.blocks.2.block.layer2`, `${D}.ff.net.2`),
  ...['0', '1', '2'].flatMap((sub, n) => [
    oneToOne(`${O}.blocks.${sub}.adaLN_modulation.1`, `${D}.norm${n + 1}.linear_1`),
    oneToOne(`${O}.blocks.${sub}.adaLN_modulation.2`, `${D}.norm${n + 1}.linear_2`),
  ]),
  oneToOne('x_embedder.proj.1', 'patch_embed.proj'),
  oneToOne('t_embedder.1.linear_1', 'time_embed.t_embedder.linear_1'),
  oneToOne('t_embedder.1.linear_2', 'time_embed.t_embedder.linear_2'),
  oneToOne('affline_norm', 'time_embed.norm'),
  ...['h', 'w', 't'].map((a) => oneToOne(`extra_pos_embedder.pos_emb_${a}:`, `learnable_pos_embed.pos_emb_${a}:`)),
  oneToOne('final_layer.adaLN_modulation.1', 'norm_out.linear_1'),
  oneToOne('final_layer.adaLN_modulation.2', 'norm_out.linear_2'),
  oneToOne('final_layer.linear', 'proj_out'),
];

const MARKER = /(^|\.)(blocks\.block\d+\.blocks\.0\.block\.attn\.to_q\.0|transformer_blocks\.\d+\.norm1\.linear_1)\.weight$/;
const COSMOS1 = modelPrefix((key, base) => {
  const m = MARKER.exec(key);
  if (!m) return undefined;
  const p = prefixBefore(key, m);
  if (m[2].startsWith('blocks.')) return p;
  return base.index.has(`${p}learnable_pos_embed.pos_emb_h`) && base.index.has(`${p}time_embed.t_embedder.linear_1.weight`) ? p : undefined;
});

/** The Cosmos 1.0 layout, in the registry (./index.ts) beside Cosmos-Predict2's. */
export const cosmos1 = modelLayout('cosmos1', COSMOS1, COSMOS1_RULES);
