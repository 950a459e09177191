/**
 * Comfy-Org's scaled fp8 all-in-one checkpoints (SD3.5's `sd3.5_large_fp8_scaled.safetensors`, its
 * full-pipeline repacks): the diffusion model under `model.diffusion_model.` with its marker there
 * (`model.diffusion_model.scaled_fp8`), T5 under `text_encoders.t5xxl.transformer.` with its own
 * (`text_encoders.t5xxl.transformer.scaled_fp8`), as ComfyUI looks the marker up under the model's
 * prefix (`<prefix>scaled_fp8`: model_detection.py, utils.py convert_old_quants, t5_xxl_detect).
 * A LoRA merges in real values (code × scale_weight + ΔW) and each merged weight is quantized again
 * with its scale recalculated, as for a file with the marker at its root; the rest is copied byte
 * for byte. A `scale_weight` with no marker anywhere (ComfyUI would then read the codes as the
 * weights) is refused, naming it, not merged into the codes.
 */
import { describe, expect, it } from 'vitest';
import { buildSafetensors, decodeSafetensors, roundForDType, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { tensor } from './helpers/diffusion-fixtures.js';
import { mergeBackends, mergeFileInMemory, refusalsInMemory } from './helpers/merge-backends.js';
import { trueMerge, type TruthTerm } from './helpers/merge-truth.js';
import { comfyRequantize } from './helpers/e4m3-by-hand.js';

const rand = seededRandom(20261208);
const DM = 'model.diffusion_model.';
const T5 = 'text_encoders.t5xxl.transformer.';
const h = 8, t5 = 10;

/** fp8 codes of a weight stored as W / scale, with its scalar F32 scale_weight. */
function scaled(name: string, shape: number[], scale: number): FixtureTensor[] {
  const w = tensor(rand, name, shape, 'F32', 0.5); // codes within e4m3fn's ±448
  return [
    { name, dtype: 'F8_E4M3', shape, data: Array.from(w.data as ArrayLike<number>, (x) => roundForDType(x / scale, 'F8_E4M3')) },
    { name: name.replace(/\.weight$/, '.scale_weight'), dtype: 'F32', shape: [], data: [scale] },
  ];
}

function bundle(markers: boolean): FixtureTensor[] {
  return [
    ...scaled(`${DM}joint_blocks.0.x_block.attn.qkv.weight`, [3 * h, h], 0.0021),
    tensor(rand, `${DM}joint_blocks.0.x_block.attn.qkv.bias`, [3 * h], 'BF16'),
    ...scaled(`${DM}joint_blocks.0.x_block.attn.proj.weight`, [h, h], 0.0017),
    ...scaled(`${DM}joint_blocks.0.context_block.mlp.fc1.weight`, [4 * h, h], 0.0019),
    ...(markers ? [{ name: `${DM}scaled_fp8`, dtype: 'F8_E4M3', shape: [0], data: [] } as FixtureTensor] : []),
    ...scaled(`${T5}encoder.block.0.layer.0.SelfAttention.q.weight`, [t5, t5], 0.0023),
    ...scaled(`${T5}encoder.block.0.layer.0.SelfAttention.o.weight`, [t5, t5], 0.0013),
    ...(markers ? [{ name: `${T5}scaled_fp8`, dtype: 'F8_E4M3', shape: [0], data: [] } as FixtureTensor] : []),
    tensor(rand, 'text_encoders.clip_l.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight', [12, 12], 'F16'),
    tensor(rand, 'first_stage_model.decoder.conv_in.weight', [4, 4, 3, 3], 'BF16'),
  ];
}

/** A kohya SD3 LoRA: two MMDiT modules and T5's q (kohya's lora_te3_), α = 4, r = 2. */
const MODULES = [
  { name: 'lora_unet_joint_blocks_0_x_block_attn_proj', key: `${DM}joint_blocks.0.x_block.attn.proj.weight`, out: h, in: h },
  { name: 'lora_unet_joint_blocks_0_context_block_mlp_fc1', key: `${DM}joint_blocks.0.context_block.mlp.fc1.weight`, out: 4 * h, in: h },
  { name: 'lora_te3_encoder_block_0_layer_0_SelfAttention_q', key: `${T5}encoder.block.0.layer.0.SelfAttention.q.weight`, out: t5, in: t5 },
];
const R = 2, ALPHA = 4, WEIGHT = 0.9;
const lora = buildSafetensors(MODULES.flatMap((m) => [
  tensor(rand, `${m.name}.lora_down.weight`, [R, m.in], 'BF16', 0.5), tensor(rand, `${m.name}.lora_up.weight`, [m.out, R], 'BF16', 0.5),
  { name: `${m.name}.alpha`, dtype: 'F32', shape: [], data: [ALPHA] } as FixtureTensor,
]), { ss_network_module: 'networks.lora_sd3' });

const backends = mergeBackends({ cpu: 'default' });

describe('scaled fp8 bundles: markers under the model\'s prefix', () => {
  for (const kind of ['cpu', 'webgpu'] as const) {
    it(`merges in real values and requantizes each merged weight with its scale recalculated, the rest byte for byte (${kind})`, async () => {
      const baseBytes = buildSafetensors(bundle(true));
      const { bytes } = await mergeFileInMemory({
        backend: backends[kind]!, base: { 'sd3.5_large_fp8_scaled.safetensors': baseBytes },
        adapters: [{ files: { 'sd35_style.safetensors': lora }, name: 'sd35_style.safetensors', weight: WEIGHT }],
      });
      const original = decodeSafetensors(baseBytes).tensors;
      const merged = decodeSafetensors(bytes).tensors;
      const factors = decodeSafetensors(lora).tensors;
      expect([...merged.keys()].sort()).toEqual([...original.keys()].sort());
      const touched = new Map(MODULES.map((m) => [m.key, m]));
      for (const [key, t] of original) {
        if (touched.has(key) || touched.has(key.replace(/\.scale_weight$/, '.weight'))) continue;
        expect(Buffer.from(merged.get(key)!.bytes).equals(Buffer.from(t.bytes)), `${key} copied byte for byte`).toBe(true);
      }
      for (const [key, m] of touched) {
        const scaleKey = key.replace(/\.weight$/, '.scale_weight');
        const w = original.get(key)!;
        const term: TruthTerm = { baseKey: key, a: factors.get(`${m.name}.lora_down.weight`)!, b: factors.get(`${m.name}.lora_up.weight`)!, scale: WEIGHT * ALPHA / R };
        const real = trueMerge({ ...w, values: w.values.map((x) => x * original.get(scaleKey)!.values[0]) }, [term]);
        const want = comfyRequantize(real);
        expect(merged.get(key)!.dtype, key).toBe('F8_E4M3');
        expect(merged.get(scaleKey)!.values[0], scaleKey).toBe(want.scale);
        const got = merged.get(key)!.values;
        const wrong = got.findIndex((x, i) => x !== want.codes[i]);
        expect(wrong, `${key}[${wrong}]: ${got[wrong]} vs ${want.codes[wrong]}`).toBe(-1);
      }
    });
  }

  it('with --dtype bf16 writes the bundle dequantized, both markers and every scale_weight left out', async () => {
    const baseBytes = buildSafetensors(bundle(true));
    const { bytes } = await mergeFileInMemory({
      backend: backends.cpu!, base: { 'sd3.5_large_fp8_scaled.safetensors': baseBytes }, outDtype: 'bf16',
      adapters: [{ files: { 'sd35_style.safetensors': lora }, name: 'sd35_style.safetensors', weight: WEIGHT }],
    });
    const original = decodeSafetensors(baseBytes).tensors;
    const merged = decodeSafetensors(bytes).tensors;
    expect([...merged.keys()].sort()).toEqual([...original.keys()].filter((k) => !/(scaled_fp8|\.scale_weight)$/.test(k)).sort());
    // An untouched scaled weight is its real value, code × scale, rounded once to bf16.
    const key = `${T5}encoder.block.0.layer.0.SelfAttention.o.weight`;
    const scale = original.get(key.replace(/\.weight$/, '.scale_weight'))!.values[0];
    expect(Array.from(merged.get(key)!.values)).toEqual(Array.from(original.get(key)!.values, (x) => roundForDType(x * scale, 'BF16')));
  });

  it('refuses a scale_weight weight in a file with no marker, naming it (not merged into its codes)', async () => {
    const problems = await refusalsInMemory({
      backend: backends.cpu!, base: { 'model.safetensors': buildSafetensors(bundle(false)) },
      adapters: [{ files: { 'sd35_style.safetensors': lora }, name: 'sd35_style.safetensors' }],
    });
    expect(problems).toHaveLength(3);
    expect(problems[0]).toMatch(/^sd35_style\.safetensors: module "lora_unet_joint_blocks_0_x_block_attn_proj": the base tensor model\.diffusion_model\.joint_blocks\.0\.x_block\.attn\.proj\.weight is stored quantized, with its scale in model\.diffusion_model\.joint_blocks\.0\.x_block\.attn\.proj\.scale_weight/);
  });
});
