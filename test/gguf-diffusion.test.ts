/**
 * Diffusion models in GGUF as ComfyUI-GGUF's converter (tools/convert.py) writes them: the
 * checkpoint's own tensor names, `general.architecture` "flux" / "sdxl" / "aura" / "cosmos", 1-D tensors and the
 * embedders F32, the rest quantized (Q8_0 here, K-quants too); for SD1/SDXL (`shape_fix`) a
 * matrix whose rows are not whole 256-blocks is stored as rows of 256 values with its real shape
 * under `comfy.gguf.orig_shape.<name>` (an INT32 array), which ComfyUI-GGUF's loader views it in.
 * LoRAs land through the same layouts as on a safetensors checkpoint, on the real shape, and the
 * file is written as it was stored; checked against float64 truth up to one requantization, on
 * the CPU and on WebGPU.
 */
import { describe, expect, it } from 'vitest';
import { memoryInputFileSet, prepareMerge } from '../src/index.js';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { buildGguf, randomTensors, readGguf, tensorValues, typeName, type MetaValue } from './helpers/gguf-builder.js';
import { REF_BLOCK, referenceQuantizeBlock } from './helpers/ggml-reference.js';
import { mergeBackends, mergeFileInMemory } from './helpers/merge-backends.js';
import { expectQ8Near } from './helpers/merge-truth.js';

const backends = mergeBackends({ cpu: 'default' });

function gaussian(seed: number): () => number {
  const rand = seededRandom(seed);
  return () => Math.sqrt(-2 * Math.log(Math.max(rand(), 1e-12))) * Math.cos(2 * Math.PI * rand());
}
const str = (value: string): MetaValue => ({ type: 'string', value });
const u32 = (value: number): MetaValue => ({ type: 'u32', value });

/** A factor of `n` values, large enough that a misplaced update stands far above Q8_0's rounding. */
function factor(g: () => number, n: number): Float64Array {
  return Float64Array.from({ length: n }, () => Math.fround(0.15 * g()));
}

/** (out × r)·(r × in) in float64, times `scale`. */
function lowRank(up: Float64Array, down: Float64Array, out: number, r: number, inDim: number, scale: number): Float64Array {
  const d = new Float64Array(out * inDim);
  for (let o = 0; o < out; o++) for (let k = 0; k < r; k++) for (let i = 0; i < inDim; i++) d[o * inDim + i] += scale * up[o * r + k] * down[k * inDim + i];
  return d;
}

/** `delta` added to `target` from value `at` on (a ΔW landing on rows of a fused tensor). */
function addAt(target: Float64Array, delta: Float64Array, at = 0): void {
  for (let i = 0; i < delta.length; i++) target[at + i] += delta[i];
}

async function mergeGguf(name: string, base: Uint8Array, adapters: Record<string, Uint8Array>[], backendName: string) {
  const backend = backends[backendName];
  if (!backend) return undefined;
  const { bytes } = await mergeFileInMemory({ backend, base: { [name]: base }, adapters: adapters.map((files, i) => ({ files, name: `lora${i}` })), slabBytes: 2048 });
  return readGguf(bytes);
}

describe('a FLUX.1 GGUF (ComfyUI-GGUF, Q8_0) with an sd-scripts LoRA and a diffusers one', () => {
  const H = 64, MLP = 4 * H, R = 4, ALPHA = 2;
  const QKV = 'double_blocks.0.img_attn.qkv.weight', LINEAR1 = 'single_blocks.0.linear1.weight';
  const specs = [
    { name: 'img_in.weight', ne: [64, H], type: 'F32' }, { name: 'img_in.bias', ne: [H], type: 'F32' },
    { name: 'time_in.in_layer.weight', ne: [256, H], type: 'F32' },
    { name: QKV, ne: [H, 3 * H], type: 'Q8_0' }, { name: 'double_blocks.0.img_attn.qkv.bias', ne: [3 * H], type: 'F32' },
    { name: 'double_blocks.0.img_attn.norm.query_norm.scale', ne: [H / 4], type: 'F32' },
    { name: 'double_blocks.0.img_attn.proj.weight', ne: [H, H], type: 'Q8_0' },
    { name: 'double_blocks.0.img_mlp.0.weight', ne: [H, MLP], type: 'Q8_0' },
    { name: 'double_blocks.0.txt_attn.qkv.weight', ne: [H, 3 * H], type: 'Q8_0' },
    { name: LINEAR1, ne: [H, 3 * H + MLP], type: 'Q8_0' },
    { name: 'single_blocks.0.linear2.weight', ne: [H + MLP, H], type: 'Q8_0' },
    { name: 'final_layer.linear.weight', ne: [H, 64], type: 'F32' },
  ];
  const { tensors, values } = randomTensors(specs, gaussian(4));
  const base = buildGguf({
    metadata: [['general.architecture', str('flux')], ['general.quantization_version', u32(2)], ['general.file_type', u32(7)]],
    tensors,
  });
  const g = gaussian(8);
  // sd-scripts: the fused qkv and linear1 by their BFL names, α/r.
  const qkvDown = factor(g, R * H), qkvUp = factor(g, 3 * H * R);
  const l1Down = factor(g, R * H), l1Up = factor(g, (3 * H + MLP) * R);
  const kohya = {
    'flux_style_lora.safetensors': buildSafetensors([
      { name: 'lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight', dtype: 'F32', shape: [R, H], data: qkvDown },
      { name: 'lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight', dtype: 'F32', shape: [3 * H, R], data: qkvUp },
      { name: 'lora_unet_double_blocks_0_img_attn_qkv.alpha', dtype: 'F32', shape: [], data: Float64Array.of(ALPHA) },
      { name: 'lora_unet_single_blocks_0_linear1.lora_down.weight', dtype: 'F32', shape: [R, H], data: l1Down },
      { name: 'lora_unet_single_blocks_0_linear1.lora_up.weight', dtype: 'F32', shape: [3 * H + MLP, R], data: l1Up },
      { name: 'lora_unet_single_blocks_0_linear1.alpha', dtype: 'F32', shape: [], data: Float64Array.of(ALPHA) },
    ]),
  };
  // diffusers' trainers: to_k of the first double block (the middle third of img_attn.qkv), and
  // the single block's proj_mlp (linear1's rows after q, k and v); no α in the file: scale 1.
  const kDown = factor(g, 2 * H), kUp = factor(g, H * 2);
  const mlpDown = factor(g, 2 * H), mlpUp = factor(g, MLP * 2);
  const diffusers = {
    'pytorch_lora_weights.safetensors': buildSafetensors([
      { name: 'transformer.transformer_blocks.0.attn.to_k.lora_A.weight', dtype: 'F32', shape: [2, H], data: kDown },
      { name: 'transformer.transformer_blocks.0.attn.to_k.lora_B.weight', dtype: 'F32', shape: [H, 2], data: kUp },
      { name: 'transformer.single_transformer_blocks.0.proj_mlp.lora_A.weight', dtype: 'F32', shape: [2, H], data: mlpDown },
      { name: 'transformer.single_transformer_blocks.0.proj_mlp.lora_B.weight', dtype: 'F32', shape: [MLP, 2], data: mlpUp },
    ]),
  };
  const truth = new Map<string, Float64Array>();
  {
    const qkv = values.get(QKV)!.slice();
    const dq = lowRank(qkvUp, qkvDown, 3 * H, R, H, ALPHA / R);
    const dk = lowRank(kUp, kDown, H, 2, H, 1);
    addAt(qkv, dq);
    addAt(qkv, dk, H * H);
    truth.set(QKV, qkv);
    const l1 = values.get(LINEAR1)!.slice();
    const d1 = lowRank(l1Up, l1Down, 3 * H + MLP, R, H, ALPHA / R);
    const dm = lowRank(mlpUp, mlpDown, MLP, 2, H, 1);
    addAt(l1, d1);
    addAt(l1, dm, 3 * H * H);
    truth.set(LINEAR1, l1);
  }

  it.for(['cpu', 'webgpu'])('merges both into their rows, keeps Q8_0, and copies every other tensor byte for byte, on %s', async (name, ctx) => {
    const out = await mergeGguf('flux1-dev-Q8_0.gguf', base, [kohya, diffusers], name);
    if (!out) return ctx.skip();
    const input = readGguf(base);
    expect(out.tensors.map((t) => [t.name, typeName(t.typeId), t.ne])).toEqual(input.tensors.map((t) => [t.name, typeName(t.typeId), t.ne]));
    for (const [tensor, want] of truth) expectQ8Near(tensorValues('Q8_0', out.tensors.find((t) => t.name === tensor)!.data), want, tensor);
    for (const t of input.tensors.filter((x) => !truth.has(x.name))) {
      expect(Buffer.from(out.tensors.find((x) => x.name === t.name)!.data).equals(Buffer.from(t.data)), t.name).toBe(true);
    }
    expect(out.metadata.get('general.architecture')!.value).toBe('flux');
  });
});

describe('a Pony V7 GGUF (AuraFlow, ComfyUI-GGUF "aura", Q8_0) with a diffusers-named LoRA', () => {
  const H = 64, R = 4, ALPHA = 8;
  const W1Q = 'double_layers.0.attn.w1q.weight', MODF = 'modF.1.weight';
  const specs = [
    { name: 'init_x_linear.weight', ne: [16, H], type: 'F32' }, { name: 'init_x_linear.bias', ne: [H], type: 'F32' },
    { name: 'cond_seq_linear.weight', ne: [32, H], type: 'Q8_0' },
    { name: 'double_layers.0.attn.w2q.weight', ne: [H, H], type: 'Q8_0' },
    { name: W1Q, ne: [H, H], type: 'Q8_0' },
    { name: 'double_layers.0.modX.1.weight', ne: [H, 6 * H], type: 'Q8_0' },
    { name: 'single_layers.0.attn.w1q.weight', ne: [H, H], type: 'Q8_0' },
    { name: MODF, ne: [H, 2 * H], type: 'Q8_0' },
    { name: 'final_linear.weight', ne: [H, 16], type: 'F32' },
  ];
  const { tensors, values } = randomTensors(specs, gaussian(11));
  const base = buildGguf({
    metadata: [['general.architecture', str('aura')], ['general.quantization_version', u32(2)], ['general.file_type', u32(7)]],
    tensors,
  });
  const g = gaussian(12);
  const qDown = factor(g, R * H), qUp = factor(g, H * R);
  const nDown = factor(g, R * H), nUp = factor(g, 2 * H * R);
  // SimpleTuner / diffusers' trainers: the text stream's q (the original's w1q) and the final
  // norm (modF.1, whose halves diffusers stores the other way round), α in the metadata.
  const diffusers = {
    'pytorch_lora_weights.safetensors': buildSafetensors([
      { name: 'transformer.joint_transformer_blocks.0.attn.add_q_proj.lora_A.weight', dtype: 'F32', shape: [R, H], data: qDown },
      { name: 'transformer.joint_transformer_blocks.0.attn.add_q_proj.lora_B.weight', dtype: 'F32', shape: [H, R], data: qUp },
      { name: 'transformer.norm_out.linear.lora_A.weight', dtype: 'F32', shape: [R, H], data: nDown },
      { name: 'transformer.norm_out.linear.lora_B.weight', dtype: 'F32', shape: [2 * H, R], data: nUp },
    ], { format: 'pt', lora_adapter_metadata: JSON.stringify({ 'transformer.r': R, 'transformer.lora_alpha': ALPHA }) }),
  };
  const truth = new Map<string, Float64Array>();
  {
    const w1q = values.get(W1Q)!.slice();
    addAt(w1q, lowRank(qUp, qDown, H, R, H, ALPHA / R));
    truth.set(W1Q, w1q);
    // diffusers' (scale, shift) rows onto modF.1's (shift, scale): ΔW's first half lands on the second.
    const modF = values.get(MODF)!.slice();
    const dn = lowRank(nUp, nDown, 2 * H, R, H, ALPHA / R);
    addAt(modF, dn.subarray(0, H * H), H * H);
    addAt(modF, dn.subarray(H * H));
    truth.set(MODF, modF);
  }

  it.for(['cpu', 'webgpu'])('merges onto w1q and modF.1 (halves swapped), keeps Q8_0, copies the rest byte for byte, on %s', async (name, ctx) => {
    const out = await mergeGguf('pony-v7-Q8_0.gguf', base, [diffusers], name);
    if (!out) return ctx.skip();
    const input = readGguf(base);
    expect(out.tensors.map((t) => [t.name, typeName(t.typeId), t.ne])).toEqual(input.tensors.map((t) => [t.name, typeName(t.typeId), t.ne]));
    for (const [tensor, want] of truth) expectQ8Near(tensorValues('Q8_0', out.tensors.find((t) => t.name === tensor)!.data), want, tensor);
    for (const t of input.tensors.filter((x) => !truth.has(x.name))) {
      expect(Buffer.from(out.tensors.find((x) => x.name === t.name)!.data).equals(Buffer.from(t.data)), t.name).toBe(true);
    }
    expect(out.metadata.get('general.architecture')!.value).toBe('aura');
  });
});

describe('an Anima GGUF (Cosmos-Predict2 DiT with its LLM adapter, ComfyUI-GGUF "cosmos", Q8_0) with diffusion-pipe and diffusers-named LoRAs', () => {
  const H = 64, T = 32, R = 4, ALPHA = 8;
  // The DiT's q_proj and the LLM adapter's share the suffix `blocks.0.self_attn.q_proj`: each
  // LoRA module must land on the one its full name says (diffusion-pipe's `diffusion_model.`
  // names are ComfyUI's exact names), never be refused as fitting both.
  const Q = 'blocks.0.self_attn.q_proj.weight', OUT = 'blocks.0.self_attn.output_proj.weight', AQ = 'llm_adapter.blocks.0.self_attn.q_proj.weight';
  const specs = [
    { name: 'x_embedder.proj.1.weight', ne: [68, H], type: 'F32' },
    { name: 't_embedder.1.linear_1.weight', ne: [H, H], type: 'Q8_0' },
    { name: 'blocks.0.adaln_modulation_self_attn.1.weight', ne: [H, 32], type: 'Q8_0' },
    { name: Q, ne: [H, H], type: 'Q8_0' }, { name: 'blocks.0.self_attn.k_proj.weight', ne: [H, H], type: 'Q8_0' },
    { name: OUT, ne: [H, H], type: 'Q8_0' }, { name: 'blocks.0.self_attn.q_norm.weight', ne: [H / 4], type: 'F32' },
    { name: AQ, ne: [T, T], type: 'Q8_0' }, { name: 'llm_adapter.blocks.0.self_attn.q_norm.weight', ne: [T / 4], type: 'F32' },
    { name: 'final_layer.linear.weight', ne: [H, 64], type: 'F32' },
  ];
  const { tensors, values } = randomTensors(specs, gaussian(21));
  const base = buildGguf({
    metadata: [['general.architecture', str('cosmos')], ['general.quantization_version', u32(2)], ['general.file_type', u32(7)]],
    tensors,
  });
  const g = gaussian(22);
  const qDown = factor(g, R * H), qUp = factor(g, H * R);
  const aDown = factor(g, R * T), aUp = factor(g, T * R);
  const oDown = factor(g, R * H), oUp = factor(g, H * R);
  const f32 = (name: string, shape: number[], data: Float64Array) => ({ name, dtype: 'F32' as const, shape, data });
  // diffusion-pipe: PEFT form, `diffusion_model.` + the original names, no α (scale 1, as ComfyUI reads it).
  const diffusionPipe = {
    'anima-lora.safetensors': buildSafetensors([
      f32('diffusion_model.blocks.0.self_attn.q_proj.lora_A.weight', [R, H], qDown), f32('diffusion_model.blocks.0.self_attn.q_proj.lora_B.weight', [H, R], qUp),
      f32('diffusion_model.llm_adapter.blocks.0.self_attn.q_proj.lora_A.weight', [R, T], aDown), f32('diffusion_model.llm_adapter.blocks.0.self_attn.q_proj.lora_B.weight', [T, R], aUp),
    ]),
  };
  // diffusers' trainers: attn1.to_out.0 is the original's self_attn.output_proj; α in the metadata.
  const diffusers = {
    'pytorch_lora_weights.safetensors': buildSafetensors([
      f32('transformer.transformer_blocks.0.attn1.to_out.0.lora_A.weight', [R, H], oDown), f32('transformer.transformer_blocks.0.attn1.to_out.0.lora_B.weight', [H, R], oUp),
    ], { format: 'pt', lora_adapter_metadata: JSON.stringify({ 'transformer.r': R, 'transformer.lora_alpha': ALPHA }) }),
  };
  const truth = new Map<string, Float64Array>();
  for (const [key, up, down, n, scale] of [[Q, qUp, qDown, H, 1], [AQ, aUp, aDown, T, 1], [OUT, oUp, oDown, H, ALPHA / R]] as const) {
    const w = values.get(key)!.slice();
    addAt(w, lowRank(up, down, n, R, n, scale));
    truth.set(key, w);
  }

  it.for(['cpu', 'webgpu'])('merges each module onto the tensor its full name says, keeps Q8_0, copies the rest byte for byte, on %s', async (name, ctx) => {
    const out = await mergeGguf('anima-base-v1.0-Q8_0.gguf', base, [diffusionPipe, diffusers], name);
    if (!out) return ctx.skip();
    const input = readGguf(base);
    expect(out.tensors.map((t) => [t.name, typeName(t.typeId), t.ne])).toEqual(input.tensors.map((t) => [t.name, typeName(t.typeId), t.ne]));
    for (const [tensor, want] of truth) expectQ8Near(tensorValues('Q8_0', out.tensors.find((t) => t.name === tensor)!.data), want, tensor);
    for (const t of input.tensors.filter((x) => !truth.has(x.name))) {
      expect(Buffer.from(out.tensors.find((x) => x.name === t.name)!.data).equals(Buffer.from(t.data)), t.name).toBe(true);
    }
    expect(out.metadata.get('general.architecture')!.value).toBe('cosmos');
  });
});

describe('an SDXL GGUF with reshaped tensors (comfy.gguf.orig_shape) and an sd-scripts LoRA with LoCon', () => {
  const W = 320, R = 8, ALPHA = 4, C = 32;
  const TO_Q = 'input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight';
  const TO_K = 'input_blocks.4.1.transformer_blocks.0.attn1.to_k.weight';
  const CONV = 'input_blocks.1.0.in_layers.2.weight';
  const orig = (name: string): [string, MetaValue] => [`comfy.gguf.orig_shape.${name}`, { type: 'array', itemType: 'i32', value: [W, W] }];
  const sdxl = (kType: string) => {
    const specs = [
      { name: 'label_emb.0.0.weight', ne: [256, 128], type: 'F32' },
      { name: CONV, ne: [3, 3, C, C], type: 'F16' }, { name: 'input_blocks.1.0.in_layers.2.bias', ne: [C], type: 'F32' },
      // 320 is not a whole number of 256-blocks: stored as (400, 256).
      { name: TO_Q, ne: [256, W * W / 256], type: 'Q8_0' },
      { name: TO_K, ne: [256, W * W / 256], type: kType },
      { name: 'input_blocks.4.1.transformer_blocks.0.attn1.to_out.0.weight', ne: [256, W * W / 256], type: 'Q8_0' },
    ];
    const { tensors, values } = randomTensors(specs, gaussian(6));
    const metadata: [string, MetaValue][] = [
      ['general.architecture', str('sdxl')], ['general.quantization_version', u32(2)], ['general.file_type', u32(7)],
      orig(TO_Q), orig(TO_K), orig('input_blocks.4.1.transformer_blocks.0.attn1.to_out.0.weight'),
    ];
    return { bytes: buildGguf({ metadata, tensors }), values };
  };
  const g = gaussian(9);
  const qDown = factor(g, R * W), qUp = factor(g, W * R);
  const convDown = factor(g, 4 * C * 9), convUp = factor(g, C * 4);
  const lora = (withK: boolean) => ({
    'sdxl_lora.safetensors': buildSafetensors([
      { name: 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight', dtype: 'F32', shape: [R, W], data: qDown },
      { name: 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_up.weight', dtype: 'F32', shape: [W, R], data: qUp },
      { name: 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.alpha', dtype: 'F32', shape: [], data: Float64Array.of(ALPHA) },
      // LoCon: a 3×3 down and a 1×1 up, ΔW (out, in, 3, 3) = up · down.
      { name: 'lora_unet_input_blocks_1_0_in_layers_2.lora_down.weight', dtype: 'F32', shape: [4, C, 3, 3], data: convDown },
      { name: 'lora_unet_input_blocks_1_0_in_layers_2.lora_up.weight', dtype: 'F32', shape: [C, 4, 1, 1], data: convUp },
      { name: 'lora_unet_input_blocks_1_0_in_layers_2.alpha', dtype: 'F32', shape: [], data: Float64Array.of(4) },
      ...(withK ? [
        { name: 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_k.lora_down.weight', dtype: 'F32' as const, shape: [R, W], data: qDown },
        { name: 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_k.lora_up.weight', dtype: 'F32' as const, shape: [W, R], data: qUp },
      ] : []),
    ]),
  });

  it.for(['cpu', 'webgpu'])('merges into a Q8_0 tensor seen in its real shape and into a 3×3 conv, writing both as stored, on %s', async (name, ctx) => {
    const base = sdxl('Q8_0');
    const out = await mergeGguf('sdxl-Q8_0.gguf', base.bytes, [lora(false)], name);
    if (!out) return ctx.skip();
    const q = out.tensors.find((t) => t.name === TO_Q)!;
    // Written as the converter stored it, (400, 256), with its orig_shape entry, as ComfyUI-GGUF reads it.
    expect([typeName(q.typeId), q.ne]).toEqual(['Q8_0', [256, W * W / 256]]);
    expect(out.metadata.get(`comfy.gguf.orig_shape.${TO_Q}`)!.value).toEqual([W, W]);
    const wantQ = base.values.get(TO_Q)!.slice();
    const dq = lowRank(qUp, qDown, W, R, W, ALPHA / R);
    addAt(wantQ, dq);
    expectQ8Near(tensorValues('Q8_0', q.data), wantQ, TO_Q);
    // The conv: F16, ΔW[o][i][kh][kw] = Σ_k up[o][k] · down[k][i][kh][kw] (α/r = 1).
    const conv = out.tensors.find((t) => t.name === CONV)!;
    expect([typeName(conv.typeId), conv.ne]).toEqual(['F16', [3, 3, C, C]]);
    const got = tensorValues('F16', conv.data);
    const w = base.values.get(CONV)!;
    const d = lowRank(convUp, convDown, C, 4, C * 9, 1);
    let worst = 0;
    for (let i = 0; i < w.length; i++) worst = Math.max(worst, Math.abs(got[i] - (w[i] + d[i])) / (Math.abs(w[i] + d[i]) + 1e-3));
    expect(worst).toBeLessThan(2 ** -10);
    // Untouched reshaped tensors keep their bytes.
    const input = readGguf(base.bytes);
    const untouched = 'input_blocks.4.1.transformer_blocks.0.attn1.to_out.0.weight';
    expect(Buffer.from(out.tensors.find((t) => t.name === untouched)!.data).equals(Buffer.from(input.tensors.find((t) => t.name === untouched)!.data))).toBe(true);
  });

  it.for(['cpu', 'webgpu'])('merges into a Q4_K tensor whose blocks run across its real rows (slabs of 4 rows, 5 blocks), requantized as the reference does, on %s', async (name, ctx) => {
    const base = sdxl('Q4_K');
    const out = await mergeGguf('sdxl-Q4_K_S.gguf', base.bytes, [lora(true)], name);
    if (!out) return ctx.skip();
    const k = out.tensors.find((t) => t.name === TO_K)!;
    expect([typeName(k.typeId), k.ne]).toEqual(['Q4_K', [256, W * W / 256]]);
    const want = base.values.get(TO_K)!.slice();
    const dk = lowRank(qUp, qDown, W, R, W, 1);
    addAt(want, dk);
    // The values are the truth up to one more Q4_K quantization: no worse than 2.5 times what the
    // reference quantizer makes of the truth itself (a value placed in the wrong row is off by ΔW).
    const got = tensorValues('Q4_K', k.data);
    const { size } = REF_BLOCK.Q4_K;
    const direct = tensorValues('Q4_K', Uint8Array.from(Array.from({ length: want.length / size }, (_, b) => [...referenceQuantizeBlock('Q4_K', want.subarray(b * size, (b + 1) * size))]).flat()));
    let worst = 0, worstDirect = 0, delta = 0;
    for (let i = 0; i < want.length; i++) {
      worst = Math.max(worst, Math.abs(got[i] - want[i]));
      worstDirect = Math.max(worstDirect, Math.abs(direct[i] - want[i]));
      delta = Math.max(delta, Math.abs(dk[i]));
    }
    expect(worst).toBeLessThan(2.5 * worstDirect);
    expect(worstDirect).toBeLessThan(delta / 4);
  });

  it('takes an entry equal to the stored shape (or 1-D) as no reshape, and names an entry that does not hold the tensor', async () => {
    const specs = [
      { name: 'input_blocks.4.1.proj_in.weight', ne: [W, W], type: 'Q8_0' },
      { name: 'input_blocks.4.1.proj_in.bias', ne: [W], type: 'F32' },
      { name: TO_Q, ne: [256, W * W / 256], type: 'Q8_0' },
      { name: TO_K, ne: [256, W * W / 256], type: 'Q8_0' },
    ];
    const { tensors } = randomTensors(specs, gaussian(2));
    const i32 = (value: number[]): MetaValue => ({ type: 'array', itemType: 'i32', value });
    const base = buildGguf({
      metadata: [
        ['general.architecture', str('sdxl')],
        // Some tools write the entry for every tensor, as it is.
        ['comfy.gguf.orig_shape.input_blocks.4.1.proj_in.weight', i32([W, W])],
        ['comfy.gguf.orig_shape.input_blocks.4.1.proj_in.bias', i32([W])],
        // A broken one: 3·W·W values for a tensor of W·W.
        [`comfy.gguf.orig_shape.${TO_Q}`, i32([3 * W, W])],
        [`comfy.gguf.orig_shape.${TO_K}`, i32([3 * W, W])],
      ],
      tensors,
    });
    const g2 = gaussian(12);
    const adapter = {
      'lora.safetensors': buildSafetensors([
        { name: 'lora_unet_input_blocks_4_1_proj_in.lora_down.weight', dtype: 'F32', shape: [2, W], data: factor(g2, 2 * W) },
        { name: 'lora_unet_input_blocks_4_1_proj_in.lora_up.weight', dtype: 'F32', shape: [W, 2], data: factor(g2, 2 * W) },
        { name: 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight', dtype: 'F32', shape: [2, W], data: factor(g2, 2 * W) },
        { name: 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_up.weight', dtype: 'F32', shape: [W, 2], data: factor(g2, 2 * W) },
        { name: 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_k.lora_down.weight', dtype: 'F32', shape: [2, W], data: factor(g2, 2 * W) },
        { name: 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_k.lora_up.weight', dtype: 'F32', shape: [W, 2], data: factor(g2, 2 * W) },
      ]),
    };
    const prepared = await prepareMerge(memoryInputFileSet({ 'sdxl.gguf': base }, 'base'), [{ files: memoryInputFileSet(adapter, 'lora'), weight: 1 }]);
    try {
      expect(prepared.plan.updates.map((u) => u.baseKey)).toEqual(['input_blocks.4.1.proj_in.weight']);
      const messages = prepared.plan.problems.map((p) => p.message);
      // The base's metadata is to blame, so no line guesses that the LoRA is another model's.
      expect(messages).toHaveLength(2);
      expect(messages[0]).toMatch(/attn1_to_q.*does not fit base .*\(400, 256\).*stored as \(400, 256\) with comfy\.gguf\.orig_shape\.input_blocks\.4\.1\.transformer_blocks\.0\.attn1\.to_q\.weight = \[960,320\], which does not hold its 102400 values/);
      expect(messages[1]).toMatch(/attn1_to_k.*does not fit base .*with comfy\.gguf\.orig_shape\.input_blocks\.4\.1\.transformer_blocks\.0\.attn1\.to_k\.weight = \[960,320\]/);
    } finally {
      await prepared.close();
    }
  });
});
