/**
 * Where a base tensor sits in its model, for the chart: the x axis is the model's real blocks
 * (a transformer's layers; a UNet's down/mid/up or input/middle/output blocks; Flux's double and
 * single blocks; SD3's joint blocks; each text encoder; a VLM's vision tower, projector and
 * language model, and Video-LLaVA's video tower; HunyuanVideo's token refiner, Lumina 2's and
 * Z-Image's noise and context refiners, Chroma's approximator, LTX-2's text connectors; AuraFlow's
 * double and single layers; HunyuanDiT's skip blocks apart from the others; Anima's LLM adapter
 * apart from its DiT's blocks; Stable Cascade's down and up blocks), and the bar
 * series are module kinds (`self_attn.q_proj`, `img_attn.qkv`, `experts.w1`: MoE experts apart
 * from shared experts and dense MLPs). Names come from the single-file, diffusers and pipeline
 * layouts alike (a pipeline's keys start with `unet.`, `text_encoder_2.`…). Rules are data: a new
 * family is a line or two.
 */
export interface BlockGroup {
  /** Section of the model, in the order sections are shown (first seen first). */
  section: string;
  /** Index inside the section, or -1 for a section without one. */
  index: number;
  label: string;
}

/** A tensor's block and module kind. */
export interface ChartPlace {
  group: BlockGroup;
  kind: string;
}

/** What the whole model's keys say about ambiguous names (diffusers' `transformer_blocks`). */
interface ModelTraits {
  /** Flux in diffusers naming: `transformer_blocks` are the double blocks. */
  fluxDiffusers: boolean;
  /** SD3 in diffusers naming: `transformer_blocks` are joint blocks (joint attention, no single blocks). */
  sd3Diffusers: boolean;
  /** A vision-language model: its transformer layers are the language model's. */
  vision: boolean;
  /**
   * A diffusion transformer whose blocks are `blocks.N` (PixArt, HunyuanDiT, Cosmos-Predict2 and
   * Anima, Mochi in their original naming): blocks as in their diffusers naming, not LLM layers.
   */
  ditBlocks: boolean;
  /** AuraFlow in diffusers naming: its `single_transformer_blocks` are AuraFlow's single layers. */
  auraflow: boolean;
  /** The `….blocks.N.` prefixes of HunyuanDiT's blocks that take a long skip connection (they hold `skip_linear`). */
  skipBlocks: Set<string>;
}

interface Rule {
  pattern: RegExp;
  /** Section name from the match, or undefined to try the next rule. */
  section: (m: RegExpExecArray, traits: ModelTraits) => string | undefined;
  /** The label of block `index` of this section (default: section and index). */
  label?: (section: string, index: number) => string;
  /** No index even if the name has numbers (the projector, the mid block). */
  noIndex?: boolean;
}

/**
 * A block `blocks.N.` of a diffusion transformer; what it matched is the block's prefix, which
 * HunyuanDiT's skip blocks are known by.
 */
const DIT_BLOCK = /(?:^|\.)blocks\.(\d+)\./;
/**
 * Names only those diffusion transformers have, beside their `blocks.N`: PixArt's `t_block` and
 * `y_embedder` (diffusers' `adaln_single`), HunyuanDiT's `default_modulation` (diffusers'
 * `time_extra_emb`), Cosmos-Predict2's `adaln_modulation_self_attn` and `t_embedding_norm`, Mochi's
 * `mod_x` and `t5_y_embedder`.
 */
const DIT_MARK = /(?:^|\.)(?:t_block\.|y_embedder\.|blocks\.\d+\.(?:default_modulation|adaln_modulation_self_attn|mod_x)\.|t_embedding_norm\.|t5_y_embedder\.|time_extra_emb\.)/;

const ENCODERS: Readonly<Record<string, string>> = { clip_l: ' (CLIP-L)', clip_g: ' (CLIP-G)', t5xxl: ' (T5)' };
/** Where an encoder's layers are numbered (CLIP `layers`, OpenCLIP `resblocks`, T5 `block`, Qwen-VL's `blocks`, BERT's `layer`). */
const ENCODER_LAYER = /(?:^|\.)(?:layers|resblocks|blocks|block|layer)\.(\d+)\./;
const VISION = /(?:^|\.)(vision_tower|vision_model|visual|vision_encoder|image_encoder|vision|image_tower)\./;
/** Video-LLaVA's second tower, which sees the video frames (its image tower counts as the vision tower). */
const VIDEO = /(?:^|\.)video_tower\./;

/** Sections numbered by their encoder layers, wherever in the key those sit. */
const TOWERS: ReadonlySet<string> = new Set(['vision tower', 'video tower']);

/** First match wins: text encoders and vision towers before the generic layer rule (they have `layers.N` too). */
const RULES: readonly Rule[] = [
  { pattern: /^conditioner\.embedders\.(\d+)\./, section: (m) => `text encoder ${Number(m[1]) + 1}` },
  { pattern: /^text_encoders\.(clip_l|clip_g|t5xxl)\./, section: (m) => `text encoder${ENCODERS[m[1]]}` },
  { pattern: /^text_encoder(?:_(\d))?\./, section: (m) => `text encoder ${m[1] ?? '1'}` },
  { pattern: /^(?:cond_stage_model|text_model|encoder\.block)\./, section: () => 'text encoder' },
  { pattern: /(?:^|\.)(multi_modal_projector|mm_projector|merger|connector|modality_projection|vision_projection)(?:\.|$)/, section: () => 'projector', noIndex: true },
  // InternVL's original checkpoints name the projector `mlp1` at the top level.
  { pattern: /^(?=mlp1\.)/, section: () => 'projector', noIndex: true },
  // Before the vision rule: the video tower's keys hold `vision_model.` too.
  { pattern: VIDEO, section: () => 'video tower', label: (_, i) => `video ${i}` },
  { pattern: VISION, section: () => 'vision tower', label: (_, i) => `vision ${i}` },
  // HunyuanVideo's text token refiner (Tencent's and diffusers' names): blocks apart from the DiT's.
  { pattern: /(?:^|\.)(?:individual_token_refiner\.blocks|token_refiner\.refiner_blocks)\.(\d+)\./, section: () => 'token refiner', label: (_, i) => `refiner ${i}` },
  // Lumina 2's and Z-Image's refiner blocks (before their main `layers`), Chroma's distilled
  // guidance approximator (`norms.N`, the kind `norms`, is the RMSNorm before `layers.N`), LTX-2's
  // text connectors.
  { pattern: /(?:^|\.)(noise_refiner|context_refiner)\.(\d+)\./, section: (m) => m[1].replace('_', ' ') },
  { pattern: /(?:^|\.)distilled_guidance_layer\.(?:layers\.(\d+)\.|(?=norms\.(\d+)\.))/, section: () => 'approximator' },
  { pattern: /(?:^|\.)(video|audio)_embeddings_connector\.transformer_1d_blocks\.(\d+)\./, section: (m) => `${m[1]} connector` },
  // The same in a diffusers pipeline's `connectors/` (before the DiT's `transformer_blocks`).
  { pattern: /(?:^|\.)(video|audio)_connector\.transformer_blocks\.(\d+)\./, section: (m) => `${m[1]} connector` },
  // Anima's LLM adapter (a single file's `llm_adapter.`, a diffusers pipeline's `text_conditioner.`):
  // it feeds the DiT's cross-attention, so it is a section of its own, not among the DiT's blocks.
  // Its input side (the token `embed`) runs before its blocks and its output side (`out_proj`, then
  // `norm`) after them: bars of their own, so the chart keeps the forward order.
  { pattern: /(?:^|\.)(?:llm_adapter|text_conditioner)\.(?=embed\.)/, section: () => 'LLM adapter input', noIndex: true },
  { pattern: /(?:^|\.)(?:llm_adapter|text_conditioner)\.(?=(?:out_proj|norm)\.)/, section: () => 'LLM adapter output', noIndex: true },
  { pattern: /(?:^|\.)(?:llm_adapter|text_conditioner)\.(?:blocks\.(\d+)\.)?/, section: () => 'LLM adapter' },
  { pattern: /(?:^|\.)(down_blocks|up_blocks|input_blocks|output_blocks)\.(\d+)\./, section: (m) => ({ down_blocks: 'down', input_blocks: 'input', up_blocks: 'up', output_blocks: 'output' })[m[1]] },
  { pattern: /(?:^|\.)(mid_block|middle_block)\./, section: () => 'mid', noIndex: true },
  // AuraFlow: its MMDiT `double_layers` (diffusers' `joint_transformer_blocks`) and `single_layers`
  // (diffusers' `single_transformer_blocks`, told from Flux's by the joint blocks beside them).
  { pattern: /(?:^|\.)(?:double_layers|joint_transformer_blocks)\.(\d+)\./, section: () => 'double layer' },
  { pattern: /(?:^|\.)single_layers\.(\d+)\./, section: () => 'single layer' },
  { pattern: /(?:^|\.)single_transformer_blocks\.(\d+)\./, section: (_, t) => (t.auraflow ? 'single layer' : undefined) },
  { pattern: /(?:^|\.)double_blocks\.(\d+)\./, section: () => 'double block' },
  { pattern: /(?:^|\.)(single_blocks|single_transformer_blocks)\.(\d+)\./, section: () => 'single block' },
  { pattern: /(?:^|\.)joint_blocks\.(\d+)\./, section: () => 'joint block' },
  {
    pattern: /(?:^|\.)transformer_blocks\.(\d+)\./,
    section: (_, t) => (t.fluxDiffusers ? 'double block' : t.sd3Diffusers ? 'joint block' : 'block'),
  },
  // HunyuanDiT's second half takes the first half's outputs through `skip_linear`: those blocks apart.
  {
    pattern: DIT_BLOCK,
    section: (m, t) => (t.skipBlocks.has(m.input.slice(0, m.index + m[0].length)) ? 'skip block' : t.ditBlocks ? 'block' : undefined),
  },
  {
    pattern: /(?:^|\.)(?:layers|h|blocks|block|layer|blk)\.(\d+)\./,
    section: (_, t) => (t.vision ? 'language model' : 'layer'),
    label: (s, i) => (s === 'language model' ? `LM layer ${i}` : `layer ${i}`),
  },
];

/** Kinds made of two names where the last alone says too little (`img_attn.qkv`, `self_attn.q_proj`). */
function kindAfter(rest: string): string {
  // A parameter's name is no kind (BFL's RMSNorms keep theirs in `scale`); a QKNorm's `norm` holds
  // query_norm and key_norm, so the attention it sits in (`img_attn`, `txt_attn`) names them.
  const named = rest.replace(/\.(weight|bias|scale)$/, '').split('.').filter((p) => p !== '' && !/^\d+$/.test(p));
  const parts = named.filter((p, i) => !(p === 'norm' && /^(query|key)_norm$/.test(named[i + 1] ?? '')));
  // SD3's joint blocks hold an image stream and a text stream with the same module names.
  const stream = parts.includes('context_block') ? 'context ' : parts.includes('x_block') ? 'x ' : '';
  const kept = parts.filter((p) => p !== 'x_block' && p !== 'context_block');
  // diffusers' FeedForward hides its stream one name further up (`ff.net.0.proj`, `ff_context.net.0.proj`).
  const ffn = kept.length > 2 && kept.at(-2) === 'net' && kept.at(-1) === 'proj';
  return stream + kept.slice(ffn ? -3 : -2).join('.');
}

function traitsOf(keys: Iterable<string>): ModelTraits {
  const traits: ModelTraits = { fluxDiffusers: false, sd3Diffusers: false, vision: false, ditBlocks: false, auraflow: false, skipBlocks: new Set() };
  let jointAttention = false;
  for (const key of keys) {
    if (/(?:^|\.)single_transformer_blocks\.\d+\./.test(key)) traits.fluxDiffusers = true;
    if (/(?:^|\.)transformer_blocks\.\d+\.attn\.add_q_proj\./.test(key) && !/(?:^|\.)(down|up|mid)_blocks?\./.test(key)) jointAttention = true;
    if (/(?:^|\.)joint_transformer_blocks\.\d+\./.test(key)) traits.auraflow = true;
    if (DIT_MARK.test(key)) traits.ditBlocks = true;
    const block = DIT_BLOCK.exec(key);
    if (block && key.startsWith('skip_linear.', block.index + block[0].length)) traits.skipBlocks.add(key.slice(0, block.index + block[0].length));
    if ((VISION.test(key) || VIDEO.test(key) || /^mlp1\./.test(key)) && !/^(text_encoder|conditioner|cond_stage_model)/.test(key)) traits.vision = true;
  }
  traits.sd3Diffusers = jointAttention && !traits.fluxDiffusers;
  return traits;
}

/**
 * A function placing each of the model's tensors, knowing the whole model: in diffusers naming
 * Flux's double blocks and SD3's joint blocks are both `transformer_blocks`, told apart by Flux's
 * single blocks.
 */
export function chartGrouper(modelKeys: Iterable<string>): (key: string) => ChartPlace {
  const traits = traitsOf(modelKeys);
  return (key) => {
    for (const rule of RULES) {
      const m = rule.pattern.exec(key);
      if (!m) continue;
      const section = rule.section(m, traits);
      if (section === undefined) continue;
      const rest = key.slice(m.index + m[0].length);
      let index = -1;
      if (!rule.noIndex) {
        if (section.startsWith('text encoder') || TOWERS.has(section)) {
          const layer = ENCODER_LAYER.exec(TOWERS.has(section) ? key.slice(m.index) : key);
          if (layer) index = Number(layer[1]);
        } else {
          const digits = [...m].slice(1).reverse().find((g) => g !== undefined && /^\d+$/.test(g));
          if (digits !== undefined) index = Number(digits);
        }
      }
      const label = index < 0 ? section : rule.label ? rule.label(section, index) : section.startsWith('text encoder') ? `${section} · layer ${index}` : `${section} ${index}`;
      const inner = section.startsWith('text encoder') || TOWERS.has(section) ? ENCODER_LAYER.exec(rest) : null;
      return { group: { section, index, label }, kind: kindAfter(inner ? rest.slice(inner.index + inner[0].length) : rest) };
    }
    return { group: { section: 'other', index: -1, label: 'other' }, kind: kindAfter(key).split('.').pop() ?? key };
  };
}

/**
 * Sections that sit beside another in the model's forward pass whatever order their tensors come
 * in: HunyuanDiT's skip blocks after its first half, Anima's LLM adapter before the DiT it feeds
 * (its input side before its blocks, its output side after them),
 * AuraFlow's single layers after its double layers.
 */
const BESIDE: readonly { section: string; anchor: string; after: boolean }[] = [
  { section: 'skip block', anchor: 'block', after: true },
  { section: 'LLM adapter', anchor: 'block', after: false },
  // The adapter's input and output sides: around its blocks, or before the DiT where no block is shown.
  { section: 'LLM adapter input', anchor: 'block', after: false },
  { section: 'LLM adapter output', anchor: 'block', after: false },
  { section: 'LLM adapter input', anchor: 'LLM adapter', after: false },
  { section: 'LLM adapter output', anchor: 'LLM adapter', after: true },
  { section: 'single layer', anchor: 'double layer', after: true },
];

/** Orders groups: sections as first seen (the base's own order) but for those BESIDE another, 'other' last, indices ascending. */
export function orderGroups(groups: BlockGroup[]): BlockGroup[] {
  const sections: string[] = [];
  for (const g of groups) if (!sections.includes(g.section)) sections.push(g.section);
  for (const { section, anchor, after } of BESIDE) {
    if (!sections.includes(section) || !sections.includes(anchor)) continue;
    sections.splice(sections.indexOf(section), 1);
    sections.splice(sections.indexOf(anchor) + (after ? 1 : 0), 0, section);
  }
  const rank = (s: string) => (s === 'other' ? Infinity : sections.indexOf(s));
  return groups.slice().sort((a, b) => rank(a.section) - rank(b.section) || a.index - b.index);
}
