/**
 * Phi-3 (Phi3MiniModel) in GGUF as convert_hf_to_gguf writes it: the checkpoint's fused
 * `self_attn.qkv_proj` is attn_qkv and `mlp.gate_up_proj` is ffn_up (llama.cpp splits both at run
 * time), neither reordered, so a PEFT LoRA on them lands whole. Checked cell by cell against
 * float64 truth, on a base whose attn_qkv is Q8_0 (decoded exactly before the merge).
 */
import { cellBaseGguf, describeCellCases, whole, type CellCase } from './helpers/gguf-cell-truth.js';
import { mergeBackends } from './helpers/merge-backends.js';

const backends = mergeBackends({ cpu: 'default' });
const H = 64, FFN = 96, V = 40;

const PHI3: CellCase & { name: string } = {
  name: 'Phi-3-mini (phi3)', arch: 'phi3', hfModel: 'microsoft/Phi-3-mini-4k-instruct',
  tensors: [
    ['token_embd.weight', [H, V]], ['output.weight', [H, V]], ['output_norm.weight', [H]],
    ['blk.0.attn_norm.weight', [H]], ['blk.0.attn_qkv.weight', [H, 3 * H], 'Q8_0'], ['blk.0.attn_output.weight', [H, H]],
    ['blk.0.ffn_norm.weight', [H]], ['blk.0.ffn_up.weight', [H, 2 * FFN]], ['blk.0.ffn_down.weight', [FFN, H]],
  ],
  metadata: [
    ['phi3.block_count', { type: 'u32', value: 1 }], ['phi3.embedding_length', { type: 'u32', value: H }],
    ['phi3.feed_forward_length', { type: 'u32', value: FFN }], ['phi3.attention.head_count', { type: 'u32', value: 4 }],
    ['phi3.attention.head_count_kv', { type: 'u32', value: 4 }], ['phi3.rope.dimension_count', { type: 'u32', value: 16 }],
  ],
  targets: [
    { module: 'model.layers.0.self_attn.qkv_proj', out: 3 * H, in: H, lands: whole('blk.0.attn_qkv.weight') },
    { module: 'model.layers.0.self_attn.o_proj', out: H, in: H, lands: whole('blk.0.attn_output.weight') },
    { module: 'model.layers.0.mlp.gate_up_proj', out: 2 * FFN, in: H, lands: whole('blk.0.ffn_up.weight') },
    { module: 'model.layers.0.mlp.down_proj', out: H, in: FFN, lands: whole('blk.0.ffn_down.weight') },
  ],
  rank: 4, alpha: 16,
};

describeCellCases([PHI3], (c) => cellBaseGguf(c, []), 0.75, backends);
