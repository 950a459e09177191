/**
 * The page chart's x axis and series for every family the engine merges, from the tensor names
 * those checkpoints really carry: Flux (BFL and diffusers, single file and pipeline), SD3 (SAI and
 * diffusers), SDXL (SGM single file and pipeline: UNet and both text encoders), SD3.5 bundles,
 * VLMs in old and new key forms (language model apart from the vision tower and projector), MoE
 * experts (Mixtral, Qwen MoE with a shared expert, gpt-oss's fused experts), GGUF names, and the
 * diffusion transformers AuraFlow, PixArt, HunyuanDiT, Cosmos-Predict2 / Anima, Mochi 1 and Stable
 * Cascade's stage C in each naming their layouts take.
 */
import { describe, expect, it } from 'vitest';
import { chartGrouper, orderGroups } from '../demo/chart-groups.js';

/** `label | kind` of each key, the grouper knowing all of them. */
function place(keys: string[]): string[] {
  const of = chartGrouper(keys);
  return keys.map((k) => {
    const p = of(k);
    return `${p.group.label} | ${p.kind}`;
  });
}

describe('chart groups', () => {
  it('Flux in BFL naming: double and single blocks, image and text streams apart', () => {
    expect(place([
      'double_blocks.0.img_attn.qkv.weight', 'double_blocks.0.txt_attn.proj.weight', 'double_blocks.18.img_mlp.0.weight',
      'single_blocks.1.linear1.weight', 'single_blocks.37.linear2.weight', 'final_layer.adaLN_modulation.1.weight',
    ])).toEqual([
      'double block 0 | img_attn.qkv', 'double block 0 | txt_attn.proj', 'double block 18 | img_mlp',
      'single block 1 | linear1', 'single block 37 | linear2', 'other | adaLN_modulation',
    ]);
  });

  it('Flux in diffusers naming (a pipeline): transformer_blocks are the double blocks', () => {
    expect(place([
      'transformer.transformer_blocks.0.attn.to_q.weight', 'transformer.transformer_blocks.0.attn.add_k_proj.weight',
      'transformer.single_transformer_blocks.3.proj_mlp.weight', 'text_encoder.text_model.encoder.layers.0.self_attn.q_proj.weight',
      'text_encoder_2.encoder.block.0.layer.0.SelfAttention.q.weight',
    ])).toEqual([
      'double block 0 | attn.to_q', 'double block 0 | attn.add_k_proj', 'single block 3 | proj_mlp',
      'text encoder 1 · layer 0 | self_attn.q_proj', 'text encoder 2 · layer 0 | SelfAttention.q',
    ]);
  });

  it('SD3: joint blocks in SAI and diffusers naming, x and context streams apart', () => {
    expect(place([
      'model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight', 'model.diffusion_model.joint_blocks.0.context_block.attn.qkv.weight',
      'model.diffusion_model.joint_blocks.23.x_block.mlp.fc2.weight',
      'text_encoders.clip_l.transformer.text_model.encoder.layers.2.mlp.fc1.weight', 'text_encoders.t5xxl.transformer.encoder.block.5.layer.1.DenseReluDense.wi_0.weight',
    ])).toEqual([
      'joint block 0 | x attn.qkv', 'joint block 0 | context attn.qkv', 'joint block 23 | x mlp.fc2',
      'text encoder (CLIP-L) · layer 2 | mlp.fc1', 'text encoder (T5) · layer 5 | DenseReluDense.wi_0',
    ]);
    expect(place(['transformer_blocks.4.attn.to_q.weight', 'transformer_blocks.4.attn.add_q_proj.weight', 'transformer_blocks.4.ff_context.net.2.weight']))
      .toEqual(['joint block 4 | attn.to_q', 'joint block 4 | attn.add_q_proj', 'joint block 4 | ff_context.net']);
  });

  it('SDXL: the UNet by its real blocks and each text encoder, single file and pipeline alike', () => {
    expect(place([
      'model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight', 'model.diffusion_model.middle_block.1.proj_in.weight',
      'model.diffusion_model.output_blocks.8.0.in_layers.2.weight',
      'conditioner.embedders.0.transformer.text_model.encoder.layers.11.self_attn.k_proj.weight',
      'conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight',
    ])).toEqual([
      'input 4 | attn1.to_q', 'mid | proj_in', 'output 8 | in_layers',
      'text encoder 1 · layer 11 | self_attn.k_proj', 'text encoder 2 · layer 31 | attn.in_proj_weight',
    ]);
    expect(place([
      'unet.down_blocks.1.attentions.0.transformer_blocks.1.attn1.to_q.weight', 'unet.mid_block.attentions.0.transformer_blocks.7.attn2.to_k.weight',
      'unet.up_blocks.0.attentions.2.transformer_blocks.9.attn2.to_out.0.weight', 'text_encoder_2.text_model.encoder.layers.0.self_attn.v_proj.weight',
    ])).toEqual([
      'down 1 | attn1.to_q', 'mid | attn2.to_k', 'up 0 | attn2.to_out', 'text encoder 2 · layer 0 | self_attn.v_proj',
    ]);
  });

  it('VLMs: the language model apart from the vision tower and the projector, in old and new key forms', () => {
    const qwenNew = place(['model.visual.blocks.3.attn.qkv.weight', 'model.visual.merger.mlp.0.weight', 'model.language_model.layers.2.self_attn.q_proj.weight']);
    const qwenOld = place(['visual.blocks.3.attn.qkv.weight', 'visual.merger.mlp.0.weight', 'model.layers.2.self_attn.q_proj.weight']);
    expect(qwenNew).toEqual(['vision 3 | attn.qkv', 'projector | mlp', 'LM layer 2 | self_attn.q_proj']);
    expect(qwenOld).toEqual(qwenNew);
    expect(place([
      'vision_tower.vision_model.encoder.layers.1.self_attn.q_proj.weight', 'multi_modal_projector.linear_1.weight',
      'language_model.model.layers.0.mlp.down_proj.weight',
    ])).toEqual(['vision 1 | self_attn.q_proj', 'projector | linear_1', 'LM layer 0 | mlp.down_proj']);
    // Video-LLaVA: an image tower and a video tower, each numbered by its own layers.
    expect(place([
      'image_tower.vision_model.encoder.layers.4.self_attn.k_proj.weight', 'video_tower.vision_model.encoder.layers.4.mlp.fc1.weight',
      'multi_modal_projector.linear_2.weight', 'language_model.model.layers.7.self_attn.v_proj.weight',
    ])).toEqual(['vision 4 | self_attn.k_proj', 'video 4 | mlp.fc1', 'projector | linear_2', 'LM layer 7 | self_attn.v_proj']);
    // InternVL's original checkpoint: InternViT, the `mlp1` projector, an InternLM2 language model.
    expect(place([
      'vision_model.encoder.layers.2.attn.qkv.weight', 'mlp1.1.weight', 'mlp1.3.weight', 'language_model.model.layers.9.attention.wqkv.weight',
    ])).toEqual(['vision 2 | attn.qkv', 'projector | mlp1', 'projector | mlp1', 'LM layer 9 | attention.wqkv']);
    // A plain LLM has layers, not a language model beside something else.
    expect(place(['model.layers.5.self_attn.o_proj.weight', 'lm_head.weight'])).toEqual(['layer 5 | self_attn.o_proj', 'other | lm_head']);
  });

  it('HunyuanVideo: the token refiner apart from the double and single blocks, in both namings', () => {
    expect(place([
      'txt_in.individual_token_refiner.blocks.1.self_attn_qkv.weight', 'double_blocks.3.img_attn_qkv.weight', 'single_blocks.0.linear1.weight',
    ])).toEqual(['refiner 1 | self_attn_qkv', 'double block 3 | img_attn_qkv', 'single block 0 | linear1']);
    expect(place([
      'context_embedder.token_refiner.refiner_blocks.0.attn.to_q.weight', 'transformer_blocks.2.attn.add_q_proj.weight',
      'single_transformer_blocks.5.attn.to_k.weight',
    ])).toEqual(['refiner 0 | attn.to_q', 'double block 2 | attn.add_q_proj', 'single block 5 | attn.to_k']);
  });

  it('norm tensors sit in their block, named by the module they belong to (BFL\'s `scale`, HunyuanVideo\'s QKNorm), both namings alike', () => {
    // FLUX.1/FLUX.2/Chroma in BFL naming and HunyuanVideo as ComfyUI saves it: a QKNorm's query_norm and key_norm keep their values in `scale`.
    expect(place([
      'double_blocks.0.img_attn.qkv.weight', 'double_blocks.0.img_attn.norm.query_norm.scale', 'double_blocks.1.txt_attn.norm.key_norm.scale',
      'single_blocks.1.norm.key_norm.scale', 'model.model.double_blocks.0.txt_attn.norm.key_norm.scale',
    ])).toEqual([
      'double block 0 | img_attn.qkv', 'double block 0 | img_attn.query_norm', 'double block 1 | txt_attn.key_norm',
      'single block 1 | key_norm', 'double block 0 | txt_attn.key_norm',
    ]);
    // The same norms in diffusers naming, and Tencent's HunyuanVideo names.
    expect(place([
      'transformer_blocks.0.attn.norm_q.weight', 'transformer_blocks.1.attn.norm_added_k.weight', 'single_transformer_blocks.1.attn.norm_k.weight',
    ])).toEqual(['double block 0 | attn.norm_q', 'double block 1 | attn.norm_added_k', 'single block 1 | attn.norm_k']);
    expect(place(['double_blocks.0.img_attn_k_norm.weight', 'single_blocks.1.q_norm.weight'])).toEqual(['double block 0 | img_attn_k_norm', 'single block 1 | q_norm']);
    // SD3.5: the x and context streams' ln_q / ln_k; Wan's norm3 (diffusers' norm2) and its q/k norms; LTX-2's audio attention.
    expect(place([
      'model.diffusion_model.joint_blocks.1.context_block.attn.ln_k.weight', 'model.diffusion_model.joint_blocks.0.x_block.attn2.ln_q.weight',
    ])).toEqual(['joint block 1 | context attn.ln_k', 'joint block 0 | x attn2.ln_q']);
    expect(place(['blocks.0.norm3.weight', 'blocks.0.norm3.bias', 'blocks.1.cross_attn.norm_k_img.weight', 'img_emb.proj.0.weight']))
      .toEqual(['layer 0 | norm3', 'layer 0 | norm3', 'layer 1 | cross_attn.norm_k_img', 'other | proj']);
    expect(place(['model.diffusion_model.transformer_blocks.1.audio_attn2.k_norm.weight'])).toEqual(['block 1 | audio_attn2.k_norm']);
  });

  it('Lumina 2 and Z-Image: noise and context refiner blocks apart from the main layers; Chroma\'s approximator; LTX-2\'s text connectors', () => {
    expect(place([
      'layers.1.attention.q_norm.weight', 'noise_refiner.0.attention.qkv.weight', 'noise_refiner.0.attention_norm2.weight',
      'context_refiner.0.attention.k_norm.weight', 'cap_embedder.0.weight',
    ])).toEqual([
      'layer 1 | attention.q_norm', 'noise refiner 0 | attention.qkv', 'noise refiner 0 | attention_norm2',
      'context refiner 0 | attention.k_norm', 'other | cap_embedder',
    ]);
    expect(place(['noise_refiner.0.attn.norm_k.weight', 'context_refiner.0.norm1.weight', 'layers.0.norm1.norm.weight']))
      .toEqual(['noise refiner 0 | attn.norm_k', 'context refiner 0 | norm1', 'layer 0 | norm1.norm']);
    // Chroma's approximator: norms.N is the RMSNorm before layers.N (BFL `scale`, diffusers `weight`).
    expect(place([
      'distilled_guidance_layer.layers.1.in_layer.weight', 'distilled_guidance_layer.norms.1.scale', 'distilled_guidance_layer.norms.0.weight',
      'distilled_guidance_layer.in_proj.weight', 'double_blocks.0.img_attn.qkv.weight',
    ])).toEqual([
      'approximator 1 | in_layer', 'approximator 1 | norms', 'approximator 0 | norms', 'other | in_proj', 'double block 0 | img_attn.qkv',
    ]);
    expect(place([
      'model.diffusion_model.video_embeddings_connector.transformer_1d_blocks.0.attn1.q_norm.weight',
      'model.diffusion_model.audio_embeddings_connector.transformer_1d_blocks.0.attn1.to_q.weight',
      'model.diffusion_model.transformer_blocks.0.attn1.to_q.weight',
    ])).toEqual(['video connector 0 | attn1.q_norm', 'audio connector 0 | attn1.to_q', 'block 0 | attn1.to_q']);
    // A diffusers pipeline: the connectors in their own component, renamed.
    expect(place([
      'connectors.video_connector.transformer_blocks.1.attn1.norm_q.weight', 'connectors.audio_connector.transformer_blocks.0.ff.net.2.weight',
      'transformer.transformer_blocks.0.attn1.to_q.weight',
    ])).toEqual(['video connector 1 | attn1.norm_q', 'audio connector 0 | ff.net', 'block 0 | attn1.to_q']);
  });

  it('AuraFlow / Pony V7: double and single layers in the original naming and in diffusers\', the embedders apart', () => {
    // fal's single file (ComfyUI's model under `model.diffusion_model.`).
    expect(place([
      'model.diffusion_model.double_layers.0.attn.w2q.weight', 'model.diffusion_model.double_layers.0.attn.w1o.weight',
      'model.diffusion_model.double_layers.3.mlpX.c_fc1.weight', 'model.diffusion_model.double_layers.3.mlpC.c_proj.weight',
      'model.diffusion_model.double_layers.3.modC.1.weight', 'model.diffusion_model.single_layers.0.attn.w1q.weight',
      'model.diffusion_model.single_layers.31.mlp.c_fc2.weight', 'model.diffusion_model.single_layers.31.modCX.1.weight',
      'model.diffusion_model.modF.1.weight', 'model.diffusion_model.cond_seq_linear.weight',
    ])).toEqual([
      'double layer 0 | attn.w2q', 'double layer 0 | attn.w1o', 'double layer 3 | mlpX.c_fc1', 'double layer 3 | mlpC.c_proj',
      'double layer 3 | modC', 'single layer 0 | attn.w1q', 'single layer 31 | mlp.c_fc2', 'single layer 31 | modCX',
      'other | modF', 'other | cond_seq_linear',
    ]);
    // diffusers' AuraFlowTransformer2DModel in a pipeline, with its Pile-T5 (UMT5) text encoder: the
    // single_transformer_blocks are AuraFlow's single layers, not Flux's single blocks.
    expect(place([
      'transformer.joint_transformer_blocks.0.attn.to_q.weight', 'transformer.joint_transformer_blocks.0.attn.add_k_proj.weight',
      'transformer.joint_transformer_blocks.3.ff_context.out_projection.weight', 'transformer.joint_transformer_blocks.3.norm1_context.linear.weight',
      'transformer.single_transformer_blocks.0.attn.to_out.0.weight', 'transformer.single_transformer_blocks.31.ff.linear_1.weight',
      'transformer.norm_out.linear.weight', 'text_encoder.encoder.block.2.layer.0.SelfAttention.q.weight',
    ])).toEqual([
      'double layer 0 | attn.to_q', 'double layer 0 | attn.add_k_proj', 'double layer 3 | ff_context.out_projection', 'double layer 3 | norm1_context.linear',
      'single layer 0 | attn.to_out', 'single layer 31 | ff.linear_1', 'other | linear', 'text encoder 1 · layer 2 | SelfAttention.q',
    ]);
    const of = chartGrouper(['single_transformer_blocks.0.attn.to_q.weight', 'joint_transformer_blocks.0.attn.to_q.weight']);
    expect(orderGroups(['single_transformer_blocks.1.attn.to_q.weight', 'joint_transformer_blocks.0.attn.to_q.weight'].map((k) => of(k).group)).map((g) => g.label))
      .toEqual(['double layer 0', 'single layer 1']);
  });

  it('PixArt-α/Σ: its blocks as blocks in both namings (not an LLM\'s layers), the FFN streams by name', () => {
    expect(place([
      't_block.1.weight', 'blocks.0.attn.qkv.weight', 'blocks.0.cross_attn.kv_linear.weight', 'blocks.27.mlp.fc2.weight',
      'blocks.27.scale_shift_table', 'y_embedder.y_proj.fc1.weight', 'final_layer.linear.weight',
    ])).toEqual([
      'other | t_block', 'block 0 | attn.qkv', 'block 0 | cross_attn.kv_linear', 'block 27 | mlp.fc2',
      'block 27 | scale_shift_table', 'other | fc1', 'other | linear',
    ]);
    expect(place([
      'transformer.adaln_single.linear.weight', 'transformer.transformer_blocks.0.attn1.to_q.weight', 'transformer.transformer_blocks.0.attn2.to_v.weight',
      'transformer.transformer_blocks.27.ff.net.0.proj.weight', 'transformer.transformer_blocks.27.ff.net.2.weight',
      'text_encoder.encoder.block.23.layer.1.DenseReluDense.wo.weight',
    ])).toEqual([
      'other | linear', 'block 0 | attn1.to_q', 'block 0 | attn2.to_v', 'block 27 | ff.net.proj', 'block 27 | ff.net',
      'text encoder 1 · layer 23 | DenseReluDense.wo',
    ]);
  });

  it('HunyuanDiT: the blocks holding skip_linear (the long skip half) apart from the first half, in both namings, and ordered after it', () => {
    // Tencent's naming (ComfyUI's hunyuan_dit_1.2.safetensors): 40 blocks, those past depth / 2 take a skip.
    const original = [
      'model.diffusion_model.blocks.0.attn1.Wqkv.weight', 'model.diffusion_model.blocks.0.default_modulation.1.weight',
      'model.diffusion_model.blocks.20.attn2.kv_proj.weight', 'model.diffusion_model.blocks.21.skip_linear.weight',
      'model.diffusion_model.blocks.21.attn1.Wqkv.weight', 'model.diffusion_model.blocks.39.mlp.fc1.weight',
      'model.diffusion_model.blocks.39.skip_linear.weight', 'model.diffusion_model.blocks.39.skip_norm.weight',
      'model.diffusion_model.mlp_t5.0.weight',
    ];
    expect(place(original)).toEqual([
      'block 0 | attn1.Wqkv', 'block 0 | default_modulation', 'block 20 | attn2.kv_proj', 'skip block 21 | skip_linear',
      'skip block 21 | attn1.Wqkv', 'skip block 39 | mlp.fc1', 'skip block 39 | skip_linear', 'skip block 39 | skip_norm', 'other | mlp_t5',
    ]);
    // diffusers' HunyuanDiT2DModel in a pipeline, with its two text encoders (CLIP, mT5).
    expect(place([
      'transformer.time_extra_emb.timestep_embedder.linear_1.weight', 'transformer.blocks.3.attn1.to_q.weight', 'transformer.blocks.3.ff.net.0.proj.weight',
      'transformer.blocks.25.skip_linear.weight', 'transformer.blocks.25.attn2.to_k.weight', 'transformer.blocks.25.norm1.linear.weight',
      'text_encoder.encoder.layer.4.attention.self.query.weight', 'text_encoder_2.encoder.block.1.layer.0.SelfAttention.k.weight',
    ])).toEqual([
      'other | linear_1', 'block 3 | attn1.to_q', 'block 3 | ff.net.proj', 'skip block 25 | skip_linear', 'skip block 25 | attn2.to_k',
      'skip block 25 | norm1.linear', 'text encoder 1 · layer 4 | self.query', 'text encoder 2 · layer 1 | SelfAttention.k',
    ]);
    // Keys sorted as a safetensors header holds them ("blocks.2" after "blocks.19", "blocks.21" before "blocks.3"):
    // the skip blocks still come after the first half.
    const sorted = ['blocks.0.attn1.Wqkv.weight', 'blocks.21.attn1.Wqkv.weight', 'blocks.21.skip_linear.weight', 'blocks.3.attn1.Wqkv.weight', 'blocks.3.default_modulation.1.weight'];
    const of = chartGrouper(sorted);
    const skipFirst = ['blocks.21.attn1.Wqkv.weight', 'blocks.3.attn1.Wqkv.weight', 'blocks.0.attn1.Wqkv.weight'].map((k) => of(k).group);
    expect(orderGroups(skipFirst).map((g) => g.label)).toEqual(['block 0', 'block 3', 'skip block 21']);
  });

  it('Cosmos-Predict2 and Anima: the DiT\'s blocks in both namings; Anima\'s LLM adapter a section of its own, before the DiT, its input and output sides around its blocks', () => {
    // NVIDIA's / CircleStone Labs' single file under `net.`, Anima's LLM adapter beside the DiT.
    const anima = [
      'net.blocks.0.self_attn.q_proj.weight', 'net.blocks.0.cross_attn.k_proj.weight', 'net.blocks.27.mlp.layer1.weight',
      'net.blocks.27.adaln_modulation_mlp.2.weight', 'net.llm_adapter.blocks.0.self_attn.q_proj.weight', 'net.llm_adapter.blocks.5.cross_attn.o_proj.weight',
      'net.llm_adapter.blocks.5.mlp.0.weight', 'net.llm_adapter.embed.weight', 'net.llm_adapter.out_proj.weight', 'net.llm_adapter.norm.weight',
      'net.t_embedding_norm.weight',
    ];
    expect(place(anima)).toEqual([
      'block 0 | self_attn.q_proj', 'block 0 | cross_attn.k_proj', 'block 27 | mlp.layer1', 'block 27 | adaln_modulation_mlp',
      'LLM adapter 0 | self_attn.q_proj', 'LLM adapter 5 | cross_attn.o_proj', 'LLM adapter 5 | mlp', 'LLM adapter input | embed',
      'LLM adapter output | out_proj', 'LLM adapter output | norm', 'other | t_embedding_norm',
    ]);
    // Forward order (ComfyUI's Anima LLMAdapter): embed, then the blocks, then out_proj and norm, then the DiT.
    const of = chartGrouper(anima);
    expect(orderGroups(anima.map((k) => of(k).group)).map((g) => g.label)).toEqual([
      'LLM adapter input', 'LLM adapter 0', 'LLM adapter 5', 'LLM adapter 5', 'LLM adapter output', 'LLM adapter output',
      'block 0', 'block 0', 'block 27', 'block 27', 'other',
    ]);
    // Whatever order the tensors come in (a safetensors header sorts `out_proj` after `blocks`, `norm` before `out_proj`).
    const shuffled = ['net.llm_adapter.norm.weight', 'net.blocks.0.self_attn.q_proj.weight', 'net.llm_adapter.out_proj.weight', 'net.llm_adapter.blocks.0.mlp.0.weight', 'net.llm_adapter.embed.weight'];
    expect(orderGroups(shuffled.map((k) => of(k).group)).map((g) => g.label)).toEqual([
      'LLM adapter input', 'LLM adapter 0', 'LLM adapter output', 'LLM adapter output', 'block 0',
    ]);
    // Only the adapter's two sides beside the DiT (a LoRA's modules): both still before the DiT, input first.
    expect(orderGroups(['net.blocks.0.self_attn.q_proj.weight', 'net.llm_adapter.out_proj.weight', 'net.llm_adapter.embed.weight'].map((k) => of(k).group)).map((g) => g.label))
      .toEqual(['LLM adapter input', 'LLM adapter output', 'block 0']);
    // The adapter alone, its output side seen first: still after its blocks.
    expect(orderGroups(['net.llm_adapter.out_proj.weight', 'net.llm_adapter.blocks.0.mlp.0.weight', 'net.llm_adapter.embed.weight'].map((k) => of(k).group)).map((g) => g.label))
      .toEqual(['LLM adapter input', 'LLM adapter 0', 'LLM adapter output']);
    // diffusers: the transformer's transformer_blocks, the pipeline's text_conditioner (the adapter without `llm_adapter.`)
    // and Anima's Qwen3 text encoder.
    expect(place([
      'transformer.transformer_blocks.0.attn1.to_q.weight', 'transformer.transformer_blocks.0.attn2.to_k.weight', 'transformer.transformer_blocks.27.ff.net.0.proj.weight',
      'transformer.transformer_blocks.27.norm3.linear_2.weight', 'text_conditioner.blocks.0.self_attn.k_proj.weight', 'text_conditioner.blocks.5.mlp.2.weight',
      'text_conditioner.embed.weight', 'text_encoder.model.layers.27.self_attn.q_proj.weight',
    ])).toEqual([
      'block 0 | attn1.to_q', 'block 0 | attn2.to_k', 'block 27 | ff.net.proj', 'block 27 | norm3.linear_2',
      'LLM adapter 0 | self_attn.k_proj', 'LLM adapter 5 | mlp', 'LLM adapter input | embed', 'text encoder 1 · layer 27 | self_attn.q_proj',
    ]);
  });

  it('Mochi 1: blocks in both namings, the x and y streams named by their modules', () => {
    expect(place([
      'blocks.0.attn.qkv_x.weight', 'blocks.0.attn.qkv_y.weight', 'blocks.0.mod_x.weight', 'blocks.47.mlp_x.w1.weight',
      'blocks.46.mlp_y.w2.weight', 'blocks.47.attn.q_norm_x.weight', 't5_y_embedder.to_kv.weight',
    ])).toEqual([
      'block 0 | attn.qkv_x', 'block 0 | attn.qkv_y', 'block 0 | mod_x', 'block 47 | mlp_x.w1',
      'block 46 | mlp_y.w2', 'block 47 | attn.q_norm_x', 'other | to_kv',
    ]);
    // diffusers' MochiTransformer3DModel: add_*_proj and ff_context are the text stream; attn1 is no joint-attention SD3 block.
    expect(place([
      'transformer_blocks.0.attn1.to_q.weight', 'transformer_blocks.0.attn1.add_q_proj.weight', 'transformer_blocks.0.ff.net.0.proj.weight',
      'transformer_blocks.0.ff_context.net.0.proj.weight', 'transformer_blocks.47.norm1_context.linear_1.weight', 'time_embed.pooler.to_q.weight',
    ])).toEqual([
      'block 0 | attn1.to_q', 'block 0 | attn1.add_q_proj', 'block 0 | ff.net.proj', 'block 0 | ff_context.net.proj',
      'block 47 | norm1_context.linear_1', 'other | to_q',
    ]);
  });

  it('Stable Cascade stage C: its down and up blocks by level (checkpoint and ComfyUI-split attention alike), the CLIP-G text encoder', () => {
    expect(place([
      'down_blocks.0.2.attention.attn.in_proj_weight', 'down_blocks.0.0.channelwise.0.weight', 'down_blocks.1.71.kv_mapper.1.weight',
      'up_blocks.0.1.mapper.weight', 'up_blocks.1.23.attention.attn.out_proj.weight', 'up_blocks.1.5.attention.attn.to_k.weight',
      'clip_txt_pooled_mapper.weight', 'text_encoder.text_model.encoder.layers.31.mlp.fc1.weight',
    ])).toEqual([
      'down 0 | attn.in_proj_weight', 'down 0 | channelwise', 'down 1 | kv_mapper', 'up 0 | mapper',
      'up 1 | attn.out_proj', 'up 1 | attn.to_k', 'other | clip_txt_pooled_mapper', 'text encoder 1 · layer 31 | mlp.fc1',
    ]);
  });

  it('MoE: experts, shared experts and routers are series of their own', () => {
    expect(place([
      'model.layers.1.block_sparse_moe.experts.7.w1.weight', 'model.layers.1.block_sparse_moe.gate.weight',
      'model.layers.2.mlp.experts.12.down_proj.weight', 'model.layers.2.mlp.shared_expert.down_proj.weight',
      'model.layers.3.mlp.experts.gate_up_proj', 'blk.4.ffn_gate_exps.weight', 'blk.4.attn_q.weight',
    ])).toEqual([
      'layer 1 | experts.w1', 'layer 1 | block_sparse_moe.gate',
      'layer 2 | experts.down_proj', 'layer 2 | shared_expert.down_proj',
      'layer 3 | experts.gate_up_proj', 'layer 4 | ffn_gate_exps', 'layer 4 | attn_q',
    ]);
  });

  it('orders sections as the model does, blocks by index, the rest last', () => {
    const of = chartGrouper([]);
    const groups = ['double_blocks.10.img_attn.qkv.weight', 'final_layer.linear.weight', 'single_blocks.2.linear1.weight', 'double_blocks.2.img_attn.qkv.weight', 'single_blocks.0.linear1.weight']
      .map((k) => of(k).group);
    expect(orderGroups(groups).map((g) => g.label)).toEqual(['double block 2', 'double block 10', 'single block 0', 'single block 2', 'other']);
  });
});
