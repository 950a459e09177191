/**
 * Small Cosmos-Predict2 transformers with their real key names, shape ratios (dims scaled down) and
 * dtypes, in both namings people hold them in:
 * - NVIDIA's and Comfy-Org's single files (`cosmos_predict2_2B_t2i.safetensors`, keys under `net.`)
 *   and CircleStone Labs' Anima (`anima-base-v1.0.safetensors`: the same DiT under `net.`, plus its
 *   LLM adapter under `net.llm_adapter.`);
 * - diffusers' CosmosTransformer3DModel (nvidia/Cosmos-Predict2-2B-Text2Image `transformer/`,
 *   circlestone-labs/Anima-Base-v1.0-Diffusers `transformer/`), as scripts/convert_cosmos_to_diffusers.py
 *   (Cosmos 2.0 rename table) writes it.
 * Cosmos 1.0 (Cosmos-1.0-Diffusion 7B/14B) in both namings too: the original (NVIDIA's model and
 * Comfy-Org's repackaged file, under `net.`: `blocks.blockN.blocks.0.block.attn.to_q.0`) and diffusers'
 * (the same CosmosTransformer3DModel names as Cosmos-Predict2, plus `learnable_pos_embed`), as the
 * conversion's Cosmos 1.0 table writes it (the `logvar` and `pos_embedder.seq` keys it drops).
 * Nothing here imports the library under test.
 */
import type { FixtureDType, FixtureTensor } from './fixtures.js';
import { tensor, type Rand } from './diffusion-fixtures.js';

/**
 * Cosmos-Predict2 2B with width `dim` (2048: 16 heads of `head` 128), text width `text` (1024),
 * adaLN-LoRA width `adaln` (256), patch input `patchIn` (17 channels · 2 · 2 = 68), patch output
 * `patchOut` (16 · 2 · 2 = 64), MLP 4·dim, 2 blocks, no biases; the LLM adapter (Anima) of width
 * `text` and vocabulary `vocab` (32128), 1 block.
 */
export interface CosmosDims { dim: number; head: number; text: number; adaln: number; patchIn: number; patchOut: number; vocab: number }
export const COSMOS: CosmosDims = { dim: 8, head: 4, text: 6, adaln: 4, patchIn: 12, patchOut: 8, vocab: 10 };

/** The original naming (`net.` as NVIDIA and CircleStone Labs ship it); `anima` adds the LLM adapter. */
export function cosmosOriginalTensors(rand: Rand, dtype: FixtureDType, d: CosmosDims = COSMOS, prefix = 'net.', anima = false): FixtureTensor[] {
  const w = (name: string, shape: number[]) => tensor(rand, prefix + name, shape, dtype);
  const { dim, head } = d;
  const out: FixtureTensor[] = [
    w('x_embedder.proj.1.weight', [dim, d.patchIn]),
    w('t_embedder.1.linear_1.weight', [dim, dim]), w('t_embedder.1.linear_2.weight', [3 * dim, dim]), w('t_embedding_norm.weight', [dim]),
  ];
  for (let i = 0; i < 2; i++) {
    const b = `blocks.${i}`;
    for (const a of ['self_attn', 'cross_attn']) {
      const kvIn = a === 'cross_attn' ? d.text : dim;
      out.push(
        w(`${b}.${a}.q_proj.weight`, [dim, dim]), w(`${b}.${a}.k_proj.weight`, [dim, kvIn]), w(`${b}.${a}.v_proj.weight`, [dim, kvIn]),
        w(`${b}.${a}.output_proj.weight`, [dim, dim]), w(`${b}.${a}.q_norm.weight`, [head]), w(`${b}.${a}.k_norm.weight`, [head]),
      );
    }
    out.push(w(`${b}.mlp.layer1.weight`, [4 * dim, dim]), w(`${b}.mlp.layer2.weight`, [dim, 4 * dim]));
    for (const m of ['self_attn', 'cross_attn', 'mlp']) {
      out.push(w(`${b}.adaln_modulation_${m}.1.weight`, [d.adaln, dim]), w(`${b}.adaln_modulation_${m}.2.weight`, [3 * dim, d.adaln]));
    }
  }
  out.push(
    w('final_layer.adaln_modulation.1.weight', [d.adaln, dim]), w('final_layer.adaln_modulation.2.weight', [2 * dim, d.adaln]),
    w('final_layer.linear.weight', [d.patchOut, dim]),
  );
  if (anima) out.push(...animaAdapterTensors(rand, dtype, d, `${prefix}llm_adapter.`));
  return out;
}

/** Anima's LLM adapter (diffusers' AnimaTextConditioner: the same names, `llm_adapter.` dropped). */
export function animaAdapterTensors(rand: Rand, dtype: FixtureDType, d: CosmosDims = COSMOS, prefix = ''): FixtureTensor[] {
  const w = (name: string, shape: number[]) => tensor(rand, prefix + name, shape, dtype);
  const t = d.text;
  const hd = d.head;
  const out: FixtureTensor[] = [w('embed.weight', [d.vocab, t])];
  for (const a of ['self_attn', 'cross_attn']) {
    out.push(
      w(`blocks.0.${a}.q_proj.weight`, [t, t]), w(`blocks.0.${a}.k_proj.weight`, [t, t]), w(`blocks.0.${a}.v_proj.weight`, [t, t]),
      w(`blocks.0.${a}.o_proj.weight`, [t, t]), w(`blocks.0.${a}.q_norm.weight`, [hd]), w(`blocks.0.${a}.k_norm.weight`, [hd]),
    );
  }
  out.push(
    w('blocks.0.norm_self_attn.weight', [t]), w('blocks.0.norm_cross_attn.weight', [t]), w('blocks.0.norm_mlp.weight', [t]),
    w('blocks.0.mlp.0.weight', [4 * t, t]), w('blocks.0.mlp.0.bias', [4 * t]), w('blocks.0.mlp.2.weight', [t, 4 * t]), w('blocks.0.mlp.2.bias', [t]),
    w('out_proj.weight', [t, t]), w('out_proj.bias', [t]), w('norm.weight', [t]),
  );
  return out;
}

/** diffusers' CosmosTransformer3DModel, as convert_cosmos_to_diffusers.py renames the original. */
export function cosmosDiffusersTensors(rand: Rand, dtype: FixtureDType, d: CosmosDims = COSMOS): FixtureTensor[] {
  const w = (name: string, shape: number[]) => tensor(rand, name, shape, dtype);
  const { dim, head } = d;
  const out: FixtureTensor[] = [
    w('patch_embed.proj.weight', [dim, d.patchIn]),
    w('time_embed.t_embedder.linear_1.weight', [dim, dim]), w('time_embed.t_embedder.linear_2.weight', [3 * dim, dim]), w('time_embed.norm.weight', [dim]),
  ];
  for (let i = 0; i < 2; i++) {
    const b = `transformer_blocks.${i}`;
    for (const a of ['attn1', 'attn2']) {
      const kvIn = a === 'attn2' ? d.text : dim;
      out.push(
        w(`${b}.${a}.to_q.weight`, [dim, dim]), w(`${b}.${a}.to_k.weight`, [dim, kvIn]), w(`${b}.${a}.to_v.weight`, [dim, kvIn]),
        w(`${b}.${a}.to_out.0.weight`, [dim, dim]), w(`${b}.${a}.norm_q.weight`, [head]), w(`${b}.${a}.norm_k.weight`, [head]),
      );
    }
    out.push(w(`${b}.ff.net.0.proj.weight`, [4 * dim, dim]), w(`${b}.ff.net.2.weight`, [dim, 4 * dim]));
    for (const n of ['norm1', 'norm2', 'norm3']) out.push(w(`${b}.${n}.linear_1.weight`, [d.adaln, dim]), w(`${b}.${n}.linear_2.weight`, [3 * dim, d.adaln]));
  }
  out.push(
    w('norm_out.linear_1.weight', [d.adaln, dim]), w('norm_out.linear_2.weight', [2 * dim, d.adaln]),
    w('proj_out.weight', [d.patchOut, dim]),
  );
  return out;
}

/**
 * Cosmos 1.0 with the dims of `d` (7B: width 4096, 32 heads of 128, text 1024, adaLN-LoRA 256,
 * patch input 16 (+1 padding mask for Video2World) · 1 · 2 · 2, patch output 16 · 2 · 2; 28 blocks)
 * and the learnable positional embedding's tables of `pos` = [t, h, w] rows (max_size / patch:
 * 128, 120, 120), 2 blocks, no biases.
 */
export const COSMOS1_POS: readonly [number, number, number] = [3, 4, 5];

/** The original naming: each block's self-attention, cross-attention and MLP as `blocks.0/1/2`, with their adaLN-LoRA modulations. */
export function cosmos1OriginalTensors(rand: Rand, dtype: FixtureDType, d: CosmosDims = COSMOS, prefix = 'net.'): FixtureTensor[] {
  const w = (name: string, shape: number[]) => tensor(rand, prefix + name, shape, dtype);
  const { dim, head } = d;
  const [t, h, wd] = COSMOS1_POS;
  const out: FixtureTensor[] = [
    w('x_embedder.proj.1.weight', [dim, d.patchIn]),
    w('extra_pos_embedder.pos_emb_t', [t, dim]), w('extra_pos_embedder.pos_emb_h', [h, dim]), w('extra_pos_embedder.pos_emb_w', [wd, dim]),
    w('t_embedder.1.linear_1.weight', [dim, dim]), w('t_embedder.1.linear_2.weight', [3 * dim, dim]), w('affline_norm.weight', [dim]),
    w('logvar.0.freqs', [8]), w('logvar.0.phases', [8]), w('logvar.1.weight', [1, 8]),
  ];
  for (let i = 0; i < 2; i++) {
    const b = `blocks.block${i}.blocks`;
    for (const [sub, kvIn] of [['0', dim], ['1', d.text]] as const) {
      const a = `${b}.${sub}.block.attn`;
      out.push(
        w(`${a}.to_q.0.weight`, [dim, dim]), w(`${a}.to_q.1.weight`, [head]), w(`${a}.to_k.0.weight`, [dim, kvIn]), w(`${a}.to_k.1.weight`, [head]),
        w(`${a}.to_v.0.weight`, [dim, kvIn]), w(`${a}.to_out.0.weight`, [dim, dim]),
      );
    }
    out.push(w(`${b}.2.block.layer1.weight`, [4 * dim, dim]), w(`${b}.2.block.layer2.weight`, [dim, 4 * dim]));
    for (const sub of ['0', '1', '2']) out.push(w(`${b}.${sub}.adaLN_modulation.1.weight`, [d.adaln, dim]), w(`${b}.${sub}.adaLN_modulation.2.weight`, [3 * dim, d.adaln]));
  }
  out.push(
    w('final_layer.adaLN_modulation.1.weight', [d.adaln, dim]), w('final_layer.adaLN_modulation.2.weight', [2 * dim, d.adaln]),
    w('final_layer.linear.weight', [d.patchOut, dim]),
  );
  return out;
}

/** diffusers' CosmosTransformer3DModel of a Cosmos 1.0 model (nvidia/Cosmos-1.0-Diffusion-7B-Text2World `transformer/`). */
export function cosmos1DiffusersTensors(rand: Rand, dtype: FixtureDType, d: CosmosDims = COSMOS): FixtureTensor[] {
  const [t, h, wd] = COSMOS1_POS;
  const w = (name: string, shape: number[]) => tensor(rand, name, shape, dtype);
  return [
    ...cosmosDiffusersTensors(rand, dtype, d),
    w('learnable_pos_embed.pos_emb_t', [t, d.dim]), w('learnable_pos_embed.pos_emb_h', [h, d.dim]), w('learnable_pos_embed.pos_emb_w', [wd, d.dim]),
  ];
}
