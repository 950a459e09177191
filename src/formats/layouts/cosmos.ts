/**
 * Layout: NVIDIA's Cosmos-Predict2 DiT (2B, 14B; Text2Image, Video2World) and CircleStone Labs'
 * Anima, which is that 2B DiT with an LLM adapter, in the original naming (NVIDIA's, Comfy-Org's and
 * CircleStone Labs' single files under `net.`, checkpoints ComfyUI saves, and the LoRAs trainers
 * write for ComfyUI: diffusion-pipe's `diffusion_model.blocks.N.self_attn.q_proj`, sd-scripts'
 * `lora_unet_blocks_N_…`) and in diffusers' (CosmosTransformer3DModel: `transformer_blocks.N.attn1.to_q`,
 * `ff.net.0.proj`, `norm1.linear_1`, `patch_embed`, `time_embed`, `norm_out`, `proj_out`), either
 * way round, as diffusers' conversion (scripts/convert_cosmos_to_diffusers.py, its Cosmos 2.0 table,
 * which the single-file loader and `_convert_non_diffusers_anima_lora_to_diffusers` repeat) renames
 * them. Every module is renamed whole, row for row: nothing is fused or split, no halves are swapped
 * (the conversion only renames), the q/k RMSNorms `q_norm`, `k_norm` ↔ `norm_q`, `norm_k` included.
 *
 * Anima's LLM adapter (`llm_adapter.`) is a model of its own in diffusers (AnimaTextConditioner,
 * the pipeline's `text_conditioner`: convert_anima_to_diffusers.py moves `net.llm_adapter.*` there
 * with the prefix dropped, and the Anima LoRA converter renames `diffusion_model.llm_adapter.` to
 * `text_conditioner.`): its modules land by name on a single file, under the names without
 * `llm_adapter.` in a pipeline's `text_conditioner`, and are refused on a diffusers transformer
 * alone, which does not hold them.
 *
 * It answers only on a Cosmos-Predict2 base: a block's `adaln_modulation_self_attn` beside
 * `t_embedder.1` (the original), or a block's `norm1.linear_1` beside `time_embed.t_embedder`
 * (diffusers) without the learnable positional embedding of diffusers' Cosmos 1.0. Cosmos 1.0
 * (`blocks.blockN.blocks.0.block.attn.to_q.0`) is another model, placed by cosmos1.ts.
 */
import { oneToOne, type RenameRule } from './fused-renames.js';
import type { Layout, LayoutResolution } from './layout.js';
import { modelLayout, modelPrefix, prefixBefore } from './model-prefix.js';

function attentionRules(original: string, diffusers: string): RenameRule[] {
  const O = `blocks.{i}.${original}`;
  const D = `transformer_blocks.{i}.${diffusers}`;
  return [
    oneToOne(`${O}.q_proj`, `${D}.to_q`), oneToOne(`${O}.k_proj`, `${D}.to_k`), oneToOne(`${O}.v_proj`, `${D}.to_v`),
    oneToOne(`${O}.output_proj`, `${D}.to_out.0`), oneToOne(`${O}.q_norm`, `${D}.norm_q`), oneToOne(`${O}.k_norm`, `${D}.norm_k`),
  ];
}

export const COSMOS_RULES: readonly RenameRule[] = [
  ...attentionRules('self_attn', 'attn1'),
  ...attentionRules('cross_attn', 'attn2'),
  oneToOne('blocks.{i}.mlp.layer1', 'transformer_blocks.{i}.ff.net.0.proj'),
  oneToOne('blocks.{i}.mlp.layer2', 'transformer_blocks.{i}.ff.net.2'),
  ...[['self_attn', 'norm1'], ['cross_attn', 'norm2'], ['mlp', 'norm3']].flatMap(([m, n]) => [
    oneToOne(`blocks.{i}.adaln_modulation_${m}.1`, `transformer_blocks.{i}.${n}.linear_1`),
    oneToOne(`blocks.{i}.adaln_modulation_${m}.2`, `transformer_blocks.{i}.${n}.linear_2`),
  ]),
  oneToOne('x_embedder.proj.1', 'patch_embed.proj'),
  oneToOne('t_embedder.1.linear_1', 'time_embed.t_embedder.linear_1'),
  oneToOne('t_embedder.1.linear_2', 'time_embed.t_embedder.linear_2'),
  oneToOne('t_embedding_norm', 'time_embed.norm'),
  oneToOne('final_layer.adaln_modulation.1', 'norm_out.linear_1'),
  oneToOne('final_layer.adaln_modulation.2', 'norm_out.linear_2'),
  oneToOne('final_layer.linear', 'proj_out'),
];

/** A block's first modulation, either naming; the timestep embedder of the same naming must sit beside it. */
const MARKER = /(^|\.)(blocks\.\d+\.adaln_modulation_self_attn\.1|transformer_blocks\.\d+\.norm1\.linear_1)\.weight$/;
const COSMOS = modelPrefix((key, base) => {
  const m = MARKER.exec(key);
  if (!m) return undefined;
  const p = prefixBefore(key, m);
  const original = m[2].startsWith('blocks');
  const embedder = original ? 't_embedder.1.linear_1' : 'time_embed.t_embedder.linear_1';
  // diffusers' Cosmos 1.0 transformer has these names too; its learnable positional embedding tells it apart (cosmos1.ts).
  if (!original && base.index.has(`${p}learnable_pos_embed.pos_emb_h`)) return null;
  return base.index.has(`${p}${embedder}.weight`) ? p : undefined;
});

const renamed = modelLayout('cosmos', COSMOS, COSMOS_RULES);

/** The LLM adapter's modules (AnimaTextConditioner): `llm_adapter.` + a name ↔ that name in diffusers' text_conditioner. */
function adapterAttentionRules(a: string): RenameRule[] {
  return ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'q_norm', 'k_norm'].map((m) => oneToOne(`llm_adapter.blocks.{i}.${a}.${m}`, `blocks.{i}.${a}.${m}`));
}
export const ANIMA_ADAPTER_RULES: readonly RenameRule[] = [
  ...adapterAttentionRules('self_attn'),
  ...adapterAttentionRules('cross_attn'),
  ...['mlp.0', 'mlp.2', 'norm_self_attn', 'norm_cross_attn', 'norm_mlp'].map((m) => oneToOne(`llm_adapter.blocks.{i}.${m}`, `blocks.{i}.${m}`)),
  ...['embed', 'in_proj', 'out_proj', 'norm'].map((m) => oneToOne(`llm_adapter.${m}`, m)),
];
/** diffusers' text_conditioner: an adapter block's output projection beside its token embedding; the prefix is the key's. */
const CONDITIONER_BLOCK = /(^|\.)blocks\.\d+\.self_attn\.o_proj\.weight$/;
const CONDITIONER = modelPrefix((key, base) => {
  const m = CONDITIONER_BLOCK.exec(key);
  if (!m) return undefined;
  const p = prefixBefore(key, m);
  return base.index.has(`${p}embed.weight`) && !p.endsWith('llm_adapter.') ? p : undefined;
});
const conditioner = modelLayout('cosmos', CONDITIONER, ANIMA_ADAPTER_RULES);

const LLM_ADAPTER = /^llm_adapter[._]/;
const LLM_ADAPTER_MISS: LayoutResolution = {
  found: false, ambiguous: false, candidates: [],
  why: 'is in Anima\'s LLM adapter (`llm_adapter.`), which diffusers\' conversion moves out of the transformer into a model of its own (AnimaTextConditioner, the pipeline\'s `text_conditioner`); ' +
    'the base is the transformer alone and does not hold it: pass the whole diffusers pipeline folder (model_index.json with transformer/ and text_conditioner/) or Anima\'s single file as the base',
};

export const cosmos: Layout = {
  name: 'cosmos',
  renames: [...renamed.renames, ...conditioner.renames],
  resolve(address, base) {
    const r = renamed.resolve(address, base);
    if (r || (address.part !== undefined && address.part !== 'unet') || !LLM_ADAPTER.test(address.path)) return r;
    const moved = conditioner.resolve(address, base);
    if (moved) return moved;
    const prefix = COSMOS.of(base);
    // Only diffusers' transformer lacks the adapter; a single file holds it by name.
    return prefix !== null && base.index.has(`${prefix}time_embed.t_embedder.linear_1.weight`) ? LLM_ADAPTER_MISS : undefined;
  },
};
