/**
 * Full diffs (`.diff`, ComfyUI's "Extract and Save Lora" in full_diff mode) on tensors that hold a
 * module's weight as part of a fused tensor or transposed, placed as ComfyUI applies them: it adds
 * the diff to the slice of the weight it maps the key to (comfy/lora.py, a key mapped with an
 * offset is patched on `weight.narrow(…)`), and its SDXL CLIP-G is open_clip's renamed on load with
 * `text_projection` transposed (comfy/utils.py clip_text_transformers_convert):
 * - CLIP-G's q/k/v diffs (and their `.diff_b`) on thirds of open_clip's `in_proj_weight`/`in_proj_bias`;
 * - CLIP-G's `text_projection` diff on open_clip's bare parameter, transposed;
 * - a diffusers-named FLUX LoRA's to_q/to_k/to_v diffs on rows of BFL's fused `qkv`, a single
 *   block's on rows of `linear1` (q, k, v, then proj_mlp), and their `.diff_b` on the same rows of
 *   the fused bias (diffusers' own model has a bias per Linear; ComfyUI files a bias diff of a key
 *   it maps with an offset under no tensor of its model, so it cannot be the judge here).
 * Slabs of a few rows, so a slab cuts across the rows of a slice. CPU and WebGPU against float64
 * truth written out here: W[rows] += weight · diff, W += weight · diffᵀ.
 */
import { describe, expect, it } from 'vitest';
import { buildSafetensors, decodeSafetensors, seededRandom, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import { FLUX, fluxBflTensors, tensor } from './helpers/diffusion-fixtures.js';
import { mergeBackends, mergeInMemory } from './helpers/merge-backends.js';
import { estimateUpdateMagnitudes, memoryInputFileSet, prepareMerge } from '../src/index.js';
import { expectMerged } from './helpers/expect-merged.js';

const rand = seededRandom(20261210);
const G = 12; // CLIP-G width (1280 in the real model)
const TE2 = 'conditioner.embedders.1.model.';
const CG = 'text_encoders.clip_g.transformer.text_model.encoder.layers.0.self_attn.';

/** sd_xl_base_1.0.safetensors, the parts these diffs touch: CLIP-G in open_clip's naming, a UNet tensor; F16. */
function sdxlTensors(): FixtureTensor[] {
  const t = (name: string, shape: number[]) => tensor(rand, name, shape, 'F16');
  return [
    t('model.diffusion_model.input_blocks.4.1.proj_in.weight', [8, 8]),
    t('conditioner.embedders.0.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight', [8, 8]),
    t(`${TE2}transformer.resblocks.0.attn.in_proj_weight`, [3 * G, G]), t(`${TE2}transformer.resblocks.0.attn.in_proj_bias`, [3 * G]),
    t(`${TE2}transformer.resblocks.0.attn.out_proj.weight`, [G, G]), t(`${TE2}text_projection`, [G, G]),
  ];
}

/** One diff: added to `key` from row `at` on (or transposed, a square diff), in the diff's own shape. */
interface Lands { diff: string; shape: number[]; key: string; at?: number; transposed?: boolean }

/** base + weight · diff on the rows it lands on (transposed where it says), in float64. */
function truthOf(w: DecodedTensor, lands: Lands[], adapter: Map<string, DecodedTensor>, weight: number): Float64Array {
  const out = w.values.slice();
  const cols = w.shape.length === 2 ? w.shape[1] : 1;
  for (const l of lands) {
    const d = adapter.get(l.diff)!.values;
    const dCols = l.shape.length === 2 ? l.shape[1] : 1;
    for (let o = 0; o < l.shape[0]; o++) {
      for (let i = 0; i < dCols; i++) {
        const at = l.transposed ? i * cols + o : ((l.at ?? 0) + o) * cols + i;
        out[at] += weight * d[o * dCols + i];
      }
    }
  }
  return out;
}

const backends = mergeBackends({ cpu: 'default' });

async function expectLands(base: FixtureTensor[], dtype: 'F16' | 'BF16', lands: Lands[], weight: number) {
  const baseBytes = buildSafetensors(base);
  const adapterBytes = buildSafetensors(lands.map((l) => tensor(rand, l.diff, l.shape, dtype, 0.5)));
  for (const kind of ['cpu', 'webgpu'] as const) {
    const { tensors } = await mergeInMemory({
      backend: backends[kind]!, base: { 'model.safetensors': baseBytes }, slabBytes: 64,
      adapters: [{ files: { 'full_diff.safetensors': adapterBytes }, name: 'full_diff.safetensors', weight }],
    });
    const adapter = decodeSafetensors(adapterBytes).tensors;
    for (const [key, w] of decodeSafetensors(baseBytes).tensors) {
      const got = tensors.get(key)!;
      const mine = lands.filter((l) => l.key === key);
      if (mine.length === 0) expect(got.bytes, `${key} is copied unchanged on ${kind}`).toEqual(w.bytes);
      else expectMerged(got.values, truthOf(w, mine, adapter, weight), got.dtype, `${key} on ${kind}`);
    }
  }
}

describe('full diffs on fused and transposed tensors', () => {
  it('land CLIP-G\'s q/k/v diffs and bias diffs on their thirds of open_clip\'s in_proj_weight and in_proj_bias', async () => {
    const IN = `${TE2}transformer.resblocks.0.attn.in_proj_`;
    await expectLands(sdxlTensors(), 'F16', [
      { diff: `${CG}q_proj.diff`, shape: [G, G], key: `${IN}weight` },
      { diff: `${CG}k_proj.diff`, shape: [G, G], key: `${IN}weight`, at: G },
      { diff: `${CG}v_proj.diff`, shape: [G, G], key: `${IN}weight`, at: 2 * G },
      { diff: `${CG}v_proj.diff_b`, shape: [G], key: `${IN}bias`, at: 2 * G },
      { diff: `${CG}k_proj.diff_b`, shape: [G], key: `${IN}bias`, at: G },
      { diff: `${CG}out_proj.diff`, shape: [G, G], key: `${TE2}transformer.resblocks.0.attn.out_proj.weight` },
      { diff: 'diffusion_model.input_blocks.4.1.proj_in.diff', shape: [8, 8], key: 'model.diffusion_model.input_blocks.4.1.proj_in.weight' },
    ], 0.75);
  });

  it('land CLIP-G\'s text_projection diff transposed on open_clip\'s bare parameter', async () => {
    await expectLands(sdxlTensors(), 'F16', [
      { diff: 'text_encoders.clip_g.transformer.text_projection.diff', shape: [G, G], key: `${TE2}text_projection`, transposed: true },
    ], -1.5);
  });

  it('land a diffusers-named FLUX diff\'s to_q/to_k/to_v on rows of BFL\'s qkv, a single block\'s on rows of linear1', async () => {
    const { h } = FLUX;
    const D = 'transformer.transformer_blocks.0.attn.';
    const S = 'transformer.single_transformer_blocks.1.';
    await expectLands(fluxBflTensors(rand, 'BF16'), 'BF16', [
      { diff: `${D}to_q.diff`, shape: [h, h], key: 'double_blocks.0.img_attn.qkv.weight' },
      { diff: `${D}to_k.diff`, shape: [h, h], key: 'double_blocks.0.img_attn.qkv.weight', at: h },
      { diff: `${D}to_v.diff`, shape: [h, h], key: 'double_blocks.0.img_attn.qkv.weight', at: 2 * h },
      { diff: `${D}add_k_proj.diff`, shape: [h, h], key: 'double_blocks.0.txt_attn.qkv.weight', at: h },
      { diff: `${S}attn.to_k.diff`, shape: [h, h], key: 'single_blocks.1.linear1.weight', at: h },
      { diff: `${S}proj_mlp.diff`, shape: [4 * h, h], key: 'single_blocks.1.linear1.weight', at: 3 * h },
    ], 1.25);
  });

  it('land a diffusers-named FLUX bias diff beside its weight diff on its rows of BFL\'s fused qkv.bias and linear1.bias', async () => {
    // As diffusers adds a to_k bias change to the to_k Linear of its own model: on BFL's fused bias,
    // the to_k rows (h…2h) of qkv.bias, proj_mlp's rows (3h…7h) of linear1.bias; the rest untouched.
    const { h } = FLUX;
    const D = 'transformer.transformer_blocks.0.attn.';
    const S = 'transformer.single_transformer_blocks.1.';
    await expectLands(fluxBflTensors(rand, 'BF16'), 'BF16', [
      { diff: `${D}to_k.diff`, shape: [h, h], key: 'double_blocks.0.img_attn.qkv.weight', at: h },
      { diff: `${D}to_k.diff_b`, shape: [h], key: 'double_blocks.0.img_attn.qkv.bias', at: h },
      { diff: `${D}add_v_proj.diff`, shape: [h, h], key: 'double_blocks.0.txt_attn.qkv.weight', at: 2 * h },
      { diff: `${D}add_v_proj.diff_b`, shape: [h], key: 'double_blocks.0.txt_attn.qkv.bias', at: 2 * h },
      { diff: `${S}proj_mlp.diff`, shape: [4 * h, h], key: 'single_blocks.1.linear1.weight', at: 3 * h },
      { diff: `${S}proj_mlp.diff_b`, shape: [4 * h], key: 'single_blocks.1.linear1.bias', at: 3 * h },
    ], -0.6);
  });

  it('land a diffusers-named FLUX LoRA\'s lora_B.bias (PEFT lora_bias) on its rows of BFL\'s fused qkv.bias, its ΔW on the same rows of qkv.weight', async () => {
    // No α and no metadata: scale 1 for ΔW = B·A and for the bias alike (PEFT adds lora_B's bias times the scaling).
    const { h } = FLUX;
    const r = 2;
    const K = 'transformer.transformer_blocks.0.attn.to_k.';
    const base = fluxBflTensors(rand, 'BF16');
    const a = tensor(rand, `${K}lora_A.weight`, [r, h], 'BF16', 0.5), b = tensor(rand, `${K}lora_B.weight`, [h, r], 'BF16', 0.5);
    const bias = tensor(rand, `${K}lora_B.bias`, [h], 'BF16', 0.5);
    const adapterBytes = buildSafetensors([a, b, bias]);
    const weight = 0.7;
    const baseBytes = buildSafetensors(base);
    const { tensors } = await mergeInMemory({ backend: backends.cpu!, base: { 'flux1-dev.safetensors': baseBytes }, adapters: [{ files: { 'lora.safetensors': adapterBytes }, name: 'lora.safetensors', weight }] });
    const adapter = decodeSafetensors(adapterBytes).tensors;
    const [A, B, Bb] = [a, b, bias].map((t) => adapter.get(t.name)!.values);
    for (const [key, w] of decodeSafetensors(baseBytes).tensors) {
      const got = tensors.get(key)!;
      const want = w.values.slice();
      if (key === 'double_blocks.0.img_attn.qkv.weight') {
        for (let o = 0; o < h; o++) for (let i = 0; i < h; i++) for (let k = 0; k < r; k++) want[(h + o) * h + i] += weight * B[o * r + k] * A[k * h + i];
      } else if (key === 'double_blocks.0.img_attn.qkv.bias') {
        for (let o = 0; o < h; o++) want[h + o] += weight * Bb[o];
      } else {
        expect(got.bytes, `${key} is copied unchanged`).toEqual(w.bytes);
        continue;
      }
      expectMerged(got.values, want, got.dtype, key);
    }
  });

  it('are sized for the chart as w·‖diff‖ on a third of in_proj_weight and on the transposed text_projection', async () => {
    const base = sdxlTensors();
    const q = tensor(rand, `${CG}q_proj.diff`, [G, G], 'F16'), projection = tensor(rand, 'text_encoders.clip_g.transformer.text_projection.diff', [G, G], 'F16');
    const prepared = await prepareMerge(memoryInputFileSet({ 'model.safetensors': buildSafetensors(base) }, 'base'),
      [{ files: memoryInputFileSet({ 'full_diff.safetensors': buildSafetensors([q, projection]) }, 'full_diff.safetensors'), weight: -0.5 }]);
    const values = new Map(base.map((t) => [t.name, { shape: t.shape, v: Array.from(t.data as ArrayLike<number>) }]));
    const magnitudes = await estimateUpdateMagnitudes(prepared.plan, async (key, r0, n) => {
      const t = values.get(key)!;
      const cols = t.shape.length === 2 ? t.shape[1] : 1;
      return { dtype: 'F32', data: new Uint8Array(Float32Array.from(t.v.slice(r0 * cols, (r0 + n) * cols)).buffer) };
    });
    await prepared.close();
    const norm = (t: FixtureTensor) => 0.5 * Math.sqrt(Array.from(t.data as ArrayLike<number>).reduce((acc, x) => acc + x * x, 0));
    expect(magnitudes.find((m) => m.module === q.name.replace(/\.diff$/, ''))!.updateNorm).toBeCloseTo(norm(q), 4);
    expect(magnitudes.find((m) => m.module === projection.name.replace(/\.diff$/, ''))!.updateNorm).toBeCloseTo(norm(projection), 4);
  });
});
