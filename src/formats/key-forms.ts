/**
 * The tensor-name endings single-file adapters use, in one table: each splits a tensor name into
 * the module it belongs to and the role it plays there (`…to_q.lora_A.weight` → module `…to_q`,
 * role `down`). The table is the union of what kohya sd-scripts, LyCORIS, diffusers' trainers,
 * ai-toolkit, OneTrainer, SimpleTuner and ComfyUI write (ComfyUI comfy/lora.py and
 * comfy/weight_adapter/ list the same endings). Which algorithm a role belongs to is the
 * algorithms' business (formats/algorithms/); a name that fits no form is reported, never dropped.
 */

export interface KeyForm {
  /** The tensor name's ending, including the separator before the role. */
  readonly suffix: string;
  readonly role: string;
  /**
   * The tensor changes this parameter of the module the name gives, which the module's path then
   * names whole (`blocks.0.diff_m` is a diff of `blocks.0.modulation`).
   */
  readonly param?: string;
}

/** The split indices read (`lora_down.0.weight` … `lora_down.7.weight`): a module split in more parts is refused. */
export const SPLIT_INDICES = [0, 1, 2, 3, 4, 5, 6, 7] as const;

/**
 * Every ending, longest first where one ends another (the split takes the longest that fits, so
 * `.lora_A.weight` wins over IA3's bare `.weight`).
 */
export const KEY_FORMS = [
  // Low-rank up/down pairs: kohya/LyCORIS, PEFT-style (diffusers, ai-toolkit, SimpleTuner), the
  // older diffusers `lora.up` and `lora_linear_layer` forms, and the attention-processor form.
  { suffix: '.lora_down.weight', role: 'down' },
  { suffix: '.lora_up.weight', role: 'up' },
  { suffix: '.lora_A.default.weight', role: 'down' },
  { suffix: '.lora_B.default.weight', role: 'up' },
  { suffix: '.lora_A.weight', role: 'down' },
  { suffix: '.lora_B.weight', role: 'up' },
  { suffix: '.lora_A', role: 'down' },
  { suffix: '.lora_B', role: 'up' },
  // PEFT's DoRA magnitude and `lora_bias` as diffusers' trainers save them in one file (diffusers
  // turns on use_dora and lora_bias when it sees these names).
  { suffix: '.lora_magnitude_vector.weight', role: 'magnitude' },
  { suffix: '.lora_magnitude_vector', role: 'magnitude' },
  { suffix: '.lora_B.bias', role: 'up_bias' },
  { suffix: '.lora_linear_layer.down.weight', role: 'down' },
  { suffix: '.lora_linear_layer.up.weight', role: 'up' },
  { suffix: '.lora.down.weight', role: 'down' },
  { suffix: '.lora.up.weight', role: 'up' },
  { suffix: '_lora.down.weight', role: 'down' },
  { suffix: '_lora.up.weight', role: 'up' },
  // XLabs' Flux processors (`…processor.qkv_lora1.down.weight`): the module keeps its `_lora1`.
  { suffix: '.down.weight', role: 'down' },
  { suffix: '.up.weight', role: 'up' },
  // kohya's LoRAModule with split_dims (musubi-tuner and its forks; sd-scripts' Flux network keeps
  // them in memory only): one numbered down/up pair per output split (./algorithms/lora-split.ts).
  ...SPLIT_INDICES.flatMap((i) => [
    { suffix: `.lora_down.${i}.weight`, role: `split_down_${i}` } as const,
    { suffix: `.lora_up.${i}.weight`, role: `split_up_${i}` } as const,
  ]),
  // LoCon's Tucker core, the module's scale and LyCORIS's DoRA magnitude.
  { suffix: '.lora_mid.weight', role: 'mid' },
  { suffix: '.alpha', role: 'alpha' },
  { suffix: '.dora_scale', role: 'dora_scale' },
  // blissful-tuner's LoRA DoRA magnitude (its DoRALayer's weight), read under its use_dora_flag.
  { suffix: '.dora_layer.weight', role: 'dora_layer' },
  // ComfyUI: pad the base weight to this shape before patching.
  { suffix: '.reshape_weight', role: 'reshape_weight' },
  // LyCORIS LoHa.
  { suffix: '.hada_w1_a', role: 'hada_w1_a' },
  { suffix: '.hada_w1_b', role: 'hada_w1_b' },
  { suffix: '.hada_w2_a', role: 'hada_w2_a' },
  { suffix: '.hada_w2_b', role: 'hada_w2_b' },
  { suffix: '.hada_t1', role: 'hada_t1' },
  { suffix: '.hada_t2', role: 'hada_t2' },
  // LyCORIS LoKr.
  { suffix: '.lokr_w1', role: 'lokr_w1' },
  { suffix: '.lokr_w1_a', role: 'lokr_w1_a' },
  { suffix: '.lokr_w1_b', role: 'lokr_w1_b' },
  { suffix: '.lokr_w2', role: 'lokr_w2' },
  { suffix: '.lokr_w2_a', role: 'lokr_w2_a' },
  { suffix: '.lokr_w2_b', role: 'lokr_w2_b' },
  { suffix: '.lokr_t2', role: 'lokr_t2' },
  // A Tucker core for W₁: named in LyCORIS's weight_list, but no release builds or reads it (refused by name).
  { suffix: '.lokr_t1', role: 'lokr_t1' },
  // Full weight and bias differences (LyCORIS full, ComfyUI "Extract and Save Lora"), ComfyUI's set.
  { suffix: '.diff', role: 'diff' },
  { suffix: '.diff_b', role: 'diff_b' },
  // LightX2V's extracted Wan LoRAs (tools/extract/lora_extractor.py): the diff of a block's
  // `modulation` parameter, read as `<block>.modulation` by its own loader (lora_loader.py) and
  // renamed `<block>.modulation.diff` by Kijai's WanVideoWrapper.
  { suffix: '.diff_m', role: 'diff', param: 'modulation' },
  { suffix: '.set_weight', role: 'set_weight' },
  // LyCORIS norm-layer tuning.
  { suffix: '.w_norm', role: 'w_norm' },
  { suffix: '.b_norm', role: 'b_norm' },
  // LyCORIS GLoRA.
  { suffix: '.a1.weight', role: 'a1' },
  { suffix: '.a2.weight', role: 'a2' },
  { suffix: '.b1.weight', role: 'b1' },
  { suffix: '.b2.weight', role: 'b2' },
  // Its Tucker core for a k×k conv (LyCORIS 3.0 with use_tucker: b2 then 1×1).
  { suffix: '.bm.weight', role: 'bm' },
  // LyCORIS diag-OFT and BOFT.
  { suffix: '.oft_blocks', role: 'oft_blocks' },
  { suffix: '.rescale', role: 'rescale' },
  // PEFT OFT: each module's skew-symmetric blocks, upper triangles stored row by row; before
  // PEFT 0.16 whole blocks (`oft_r`), with per-output scales (`oft_s`) from 0.14.
  { suffix: '.oft_R.weight', role: 'oft_R' },
  // OneTrainer's Scaled OFT marks each module with this buffer (torch.tensor(True), or 1 in the saved dtype).
  { suffix: '.oft_R.scaled_oft', role: 'scaled_oft' },
  { suffix: '.oft_embedding_R.weight', role: 'oft_embedding_R' },
  { suffix: '.oft_r', role: 'oft_r' },
  { suffix: '.oft_s', role: 'oft_s' },
  // PEFT BOFT: butterfly factors' blocks and per-output scales.
  { suffix: '.boft_R', role: 'boft_R' },
  { suffix: '.boft_s', role: 'boft_s' },
  // PEFT (IA)³: one learned vector per module.
  { suffix: '.ia3_l', role: 'ia3_l' },
  // PEFT AdaLoRA: the singular values between lora_B and lora_A.
  { suffix: '.lora_E', role: 'lora_E' },
  // PEFT HRA: each module's Householder vectors, one per column.
  { suffix: '.hra_u', role: 'hra_u' },
  // PEFT HiRA: the low-rank factors of the product W ⊙ B·A (an embedding's under their own names).
  { suffix: '.hira_embedding_A', role: 'hira_embedding_A' },
  { suffix: '.hira_embedding_B', role: 'hira_embedding_B' },
  { suffix: '.hira_A', role: 'hira_A' },
  { suffix: '.hira_B', role: 'hira_B' },
  // PEFT RoAd: angles and scales of the 2×2 rotations of the outputs.
  { suffix: '.road_theta', role: 'road_theta' },
  { suffix: '.road_alpha', role: 'road_alpha' },
  // PEFT C3A: the kernels of a block-circulant update.
  { suffix: '.c3a_kernel', role: 'c3a_kernel' },
  // PEFT MiSS and Bone (its earlier name): one block per module.
  { suffix: '.miss_block', role: 'miss_block' },
  { suffix: '.bone_block', role: 'bone_block' },
  // PEFT FourierFT: spectral coefficients at positions drawn from the config's seed.
  { suffix: '.fourierft_spectrum', role: 'fourierft_spectrum' },
  // PEFT WaveFT: wavelet coefficients at positions drawn the same way.
  { suffix: '.waveft_spectrum', role: 'waveft_spectrum' },
  // PEFT SHiRA: a sparse update's values and their (out, in) positions.
  { suffix: '.shira_weight', role: 'shira_weight' },
  { suffix: '.shira_indices', role: 'shira_indices' },
  // PEFT VeRA: per-module scaling vectors, and the projections shared by every module.
  { suffix: '.vera_lambda_b', role: 'vera_lambda_b' },
  { suffix: '.vera_lambda_d', role: 'vera_lambda_d' },
  { suffix: '.vera_A', role: 'vera_A' },
  { suffix: '.vera_B', role: 'vera_B' },
  // PEFT VB-LoRA: per-module logits over the shared vector bank, or only their top-k (indices and
  // the first k−1 softmax weights) when saved with save_only_topk_weights.
  { suffix: '.vblora_logits_A', role: 'vblora_logits_A' },
  { suffix: '.vblora_logits_B', role: 'vblora_logits_B' },
  { suffix: '.vblora_logits_A_topk_indices', role: 'vblora_A_topk_indices' },
  { suffix: '.vblora_logits_A_topk_weights', role: 'vblora_A_topk_weights' },
  { suffix: '.vblora_logits_B_topk_indices', role: 'vblora_B_topk_indices' },
  { suffix: '.vblora_logits_B_topk_weights', role: 'vblora_B_topk_weights' },
  { suffix: '.vblora_vector_bank', role: 'vblora_vector_bank' },
  // PEFT RandLoRA: per-module scalings of the random bases shared by every module.
  { suffix: '.randlora_lambda', role: 'randlora_lambda' },
  { suffix: '.randlora_gamma', role: 'randlora_gamma' },
  { suffix: '.randlora_A', role: 'randlora_A' },
  { suffix: '.randlora_B', role: 'randlora_B' },
  // PEFT DeLoRA: a low-rank pair, its norm bound and the base weight's column norms at init.
  { suffix: '.delora_A', role: 'delora_A' },
  { suffix: '.delora_B', role: 'delora_B' },
  { suffix: '.delora_lambda', role: 'delora_lambda' },
  { suffix: '.delora_w_norm', role: 'delora_w_norm' },
  // PEFT GraLoRA: gralora_k × gralora_k block factors, and an optional plain low-rank (hybrid) part.
  { suffix: '.gralora_A', role: 'gralora_A' },
  { suffix: '.gralora_B', role: 'gralora_B' },
  { suffix: '.gralora_A_general.weight', role: 'gralora_A_general' },
  { suffix: '.gralora_B_general.weight', role: 'gralora_B_general' },
  // PEFT GLoRA: each of its paths A…E is a low-rank pair (Xd, Xu), a vector or constant (X), or a zero buffer.
  { suffix: '.glora_A.Xd', role: 'glora_A_Xd' },
  { suffix: '.glora_A.Xu', role: 'glora_A_Xu' },
  { suffix: '.glora_A.X', role: 'glora_A_X' },
  { suffix: '.glora_A.zeros', role: 'glora_A_zeros' },
  { suffix: '.glora_B.Xd', role: 'glora_B_Xd' },
  { suffix: '.glora_B.Xu', role: 'glora_B_Xu' },
  { suffix: '.glora_B.X', role: 'glora_B_X' },
  { suffix: '.glora_B.zeros', role: 'glora_B_zeros' },
  { suffix: '.glora_C.Xd', role: 'glora_C_Xd' },
  { suffix: '.glora_C.Xu', role: 'glora_C_Xu' },
  { suffix: '.glora_C.X', role: 'glora_C_X' },
  { suffix: '.glora_C.zeros', role: 'glora_C_zeros' },
  { suffix: '.glora_D.X', role: 'glora_D_X' },
  { suffix: '.glora_D.zeros', role: 'glora_D_zeros' },
  { suffix: '.glora_E.X', role: 'glora_E_X' },
  { suffix: '.glora_E.zeros', role: 'glora_E_zeros' },
  // PEFT BEFT: a trained change of the layer's bias, (1, out).
  { suffix: '.beft_bias', role: 'beft_bias' },
  // PEFT Super-Tuning: trained values at flat positions of the weight, and an optional LoRA pair ("Supra").
  { suffix: '.supertuning_values', role: 'supertuning_values' },
  { suffix: '.supertuning_indices', role: 'supertuning_indices' },
  { suffix: '.supertuning_lora_A.weight', role: 'supertuning_lora_A' },
  { suffix: '.supertuning_lora_B.weight', role: 'supertuning_lora_B' },
  // PEFT DEFT: the projection direction P (out, r) and the injection R (r, in).
  { suffix: '.deft_P', role: 'deft_P' },
  { suffix: '.deft_R', role: 'deft_R' },
  // PEFT PEANuT: A (r, out), B (out, r), and `depth` encoder and decoder layers (r, r) each (depth ≤ 8 read).
  { suffix: '.peanut_A.weight', role: 'peanut_A' },
  { suffix: '.peanut_B.weight', role: 'peanut_B' },
  { suffix: '.peanut_encoders.0.weight', role: 'peanut_enc_0' },
  { suffix: '.peanut_encoders.1.weight', role: 'peanut_enc_1' },
  { suffix: '.peanut_encoders.2.weight', role: 'peanut_enc_2' },
  { suffix: '.peanut_encoders.3.weight', role: 'peanut_enc_3' },
  { suffix: '.peanut_encoders.4.weight', role: 'peanut_enc_4' },
  { suffix: '.peanut_encoders.5.weight', role: 'peanut_enc_5' },
  { suffix: '.peanut_encoders.6.weight', role: 'peanut_enc_6' },
  { suffix: '.peanut_encoders.7.weight', role: 'peanut_enc_7' },
  { suffix: '.peanut_decoders.0.weight', role: 'peanut_dec_0' },
  { suffix: '.peanut_decoders.1.weight', role: 'peanut_dec_1' },
  { suffix: '.peanut_decoders.2.weight', role: 'peanut_dec_2' },
  { suffix: '.peanut_decoders.3.weight', role: 'peanut_dec_3' },
  { suffix: '.peanut_decoders.4.weight', role: 'peanut_dec_4' },
  { suffix: '.peanut_decoders.5.weight', role: 'peanut_dec_5' },
  { suffix: '.peanut_decoders.6.weight', role: 'peanut_dec_6' },
  { suffix: '.peanut_decoders.7.weight', role: 'peanut_dec_7' },
  // PEFT TinyLoRA: the saved SVD factors of the base, the random projections, and the shared trained vector.
  { suffix: '.tinylora_A', role: 'tinylora_A' },
  { suffix: '.tinylora_B', role: 'tinylora_B' },
  { suffix: '.tinylora_P', role: 'tinylora_P' },
  { suffix: '.tinylora_v', role: 'tinylora_v' },
  // PEFT PVeRA: VeRA's per-module scalings, with a shared A of 2r rows (mean, then log-variance).
  { suffix: '.pvera_lambda_b', role: 'pvera_lambda_b' },
  { suffix: '.pvera_lambda_d', role: 'pvera_lambda_d' },
  { suffix: '.pvera_A', role: 'pvera_A' },
  { suffix: '.pvera_B', role: 'pvera_B' },
  // PEFT UniLoRA: where each entry of A and B is read from the shared vector theta_d, and its scale.
  { suffix: '.unilora_indices_A', role: 'unilora_indices_A' },
  { suffix: '.unilora_indices_B', role: 'unilora_indices_B' },
  { suffix: '.unilora_scales_A', role: 'unilora_scales_A' },
  { suffix: '.unilora_scales_B', role: 'unilora_scales_B' },
  { suffix: '.unilora_theta_d', role: 'unilora_theta_d' },
  // LyCORIS (IA)³: the scaling vector and which side it scales.
  { suffix: '.on_input', role: 'on_input' },
  { suffix: '.weight', role: 'weight' },
] as const satisfies readonly KeyForm[];

/** A tensor's role inside its module. */
export type Role = (typeof KEY_FORMS)[number]['role'];

/** Every role, for tests and messages. */
export const ROLES: readonly Role[] = [...new Set(KEY_FORMS.map((f) => f.role))];

export interface SplitName {
  /** The module's name as the file spells it, after the attention-processor rewrite. */
  module: string;
  role: Role;
}

const BY_LENGTH: readonly (KeyForm & { readonly role: Role })[] = [...KEY_FORMS].sort((x, y) => y.suffix.length - x.suffix.length);

/**
 * diffusers 0.19/0.20 attention processors: `…attn1.processor.to_q_lora.down.weight` adapts
 * `…attn1.to_q`, and `to_out_lora` adapts `to_out.0` (the Linear inside to_out's ModuleList).
 */
const PROCESSOR = /^(.+)\.processor\.(to_q|to_k|to_v|to_out)$/;

/** Splits a tensor name into module and role, or returns null when no key form fits it. */
export function splitTensorName(name: string): SplitName | null {
  for (const form of BY_LENGTH) {
    if (name.length <= form.suffix.length || !name.endsWith(form.suffix)) continue;
    let module = name.slice(0, name.length - form.suffix.length);
    if (form.param) return { module: `${module}.${form.param}`, role: form.role };
    if (form.suffix.startsWith('_lora.')) {
      const processor = PROCESSOR.exec(module);
      if (processor) module = `${processor[1]}.${processor[2] === 'to_out' ? 'to_out.0' : processor[2]}`;
    }
    return { module, role: form.role };
  }
  return null;
}

const SWAPS: readonly [string, string][] = [['lora_down', 'lora_up'], ['lora_A', 'lora_B'], ['.down.', '.up.']];

/**
 * The name the other factor of an up/down pair has in the same key form (`x.lora_A.weight` →
 * `x.lora_B.weight`), to name a missing tensor the way the file would spell it.
 */
export function partnerTensorName(name: string): string {
  const form = BY_LENGTH.find((f) => name.length > f.suffix.length && name.endsWith(f.suffix));
  if (!form || (form.role !== 'down' && form.role !== 'up')) return name;
  let suffix: string = form.suffix;
  for (const [down, up] of SWAPS) {
    if (form.role === 'down' && suffix.includes(down)) { suffix = suffix.replace(down, up); break; }
    if (form.role === 'up' && suffix.includes(up)) { suffix = suffix.replace(up, down); break; }
  }
  return name.slice(0, name.length - form.suffix.length) + suffix;
}

/**
 * A tensor of `baseKeys` named as an adapter's low-rank factor (`….lora_down.weight`,
 * `….lora_A.weight`), when at least half of them are: a LoRA file where a model was expected.
 * Undefined for a model, whose weights end in `.weight` alone.
 */
export function adapterFactorExample(baseKeys: Iterable<string>): string | undefined {
  let total = 0;
  let example: string | undefined;
  let factors = 0;
  for (const key of baseKeys) {
    total++;
    const role = splitTensorName(key)?.role;
    if (role === 'down' || role === 'up') {
      factors++;
      example ??= key;
    }
  }
  return example !== undefined && factors * 2 >= total ? example : undefined;
}
