/**
 * LightX2V's Wan 2.1/2.2 LoRAs (the step/CFG-distill ones: `Wan21_T2V_14B_lightx2v_cfg_step_distill_lora_rank32`,
 * Kijai's extractions of them) as LightX2V's extractor writes them (tools/extract/lora_extractor.py):
 * `diffusion_model.` + Wan's names, lora_down/lora_up of the large weights with their `.alpha`,
 * `.diff_b` of biases, `.diff` of the norms, and `<block>.diff_m`, the diff of the block's adaLN table
 * `modulation` (1, 6, dim), and `head.diff_m` of the head's (1, 2, dim). LightX2V's loader
 * (lightx2v/utils/lora_loader.py) adds a diff_m to `<block>.modulation` at the LoRA's strength, as it
 * adds every diff; Kijai's WanVideoWrapper renames it `<block>.modulation.diff`, a ComfyUI diff
 * patch, strength · diff. diffusers' conversion names that table `scale_shift_table`
 * (scripts/convert_wan_to_diffusers.py). The truth is written out below: base + weight · diff, and
 * base + weight · (α/r) · up·down, in float64, rounded once to the tensor's dtype.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { buildSafetensors, decodeSafetensors, seededRandom, tempDirs, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import { WAN, fluxBflTensors, tensor, wanDiffusersTensors, wanOriginalTensors } from './helpers/diffusion-fixtures.js';
import { mergeBackends, mergeInMemory } from './helpers/merge-backends.js';
import { expectRefusedByCliAndLibrary } from './helpers/refusals.js';
import { expectMerged } from './helpers/expect-merged.js';

const rand = seededRandom(20261203);
const temp = tempDirs();
afterAll(temp.removeAll);

const D = 'diffusion_model.';
const R = 4;

/** One change of the adapter: a diff (shaped like the tensor it lands on) or a LoRA pair with its α. */
type Change =
  | { kind: 'diff'; name: string; lands: string }
  | { kind: 'lora'; module: string; alpha: number; lands: string };

const diff = (name: string, lands: string): Change => ({ kind: 'diff', name, lands });
const lora = (module: string, alpha: number, lands: string): Change => ({ kind: 'lora', module, alpha, lands });

interface WanCase {
  name: string;
  base: FixtureTensor[];
  baseFile: string;
  extra?: Record<string, string>;
  weight: number;
  changes: Change[];
}

const withPrefix = (prefix: string, tensors: FixtureTensor[]) => tensors.map((t) => ({ ...t, name: prefix + t.name }));
const diffusersConfig = { 'config.json': JSON.stringify({ _class_name: 'WanTransformer3DModel', num_layers: 2 }) };

/** A LightX2V distill LoRA's tensors for Wan-named modules, landing on `at(<Wan tensor>)`. */
function lightx2vChanges(at: (wanKey: string) => string, withBiases: boolean): Change[] {
  const out: Change[] = [];
  for (let i = 0; i < 2; i++) {
    const b = `blocks.${i}`;
    out.push(
      lora(`${D}${b}.self_attn.q`, R, at(`${b}.self_attn.q.weight`)),
      lora(`${D}${b}.cross_attn.k`, 2 * R, at(`${b}.cross_attn.k.weight`)),
      lora(`${D}${b}.ffn.0`, R, at(`${b}.ffn.0.weight`)),
      diff(`${D}${b}.norm3.diff`, at(`${b}.norm3.weight`)), diff(`${D}${b}.norm3.diff_b`, at(`${b}.norm3.bias`)),
      diff(`${D}${b}.diff_m`, at(`${b}.modulation`)),
    );
    if (withBiases) out.push(diff(`${D}${b}.self_attn.q.diff_b`, at(`${b}.self_attn.q.bias`)), diff(`${D}${b}.ffn.0.diff_b`, at(`${b}.ffn.0.bias`)));
  }
  out.push(lora(`${D}head.head`, R, at('head.head.weight')), diff(`${D}head.diff_m`, at('head.modulation')));
  return out;
}

/** Where diffusers' conversion puts each Wan tensor the changes above name. */
const DIFFUSERS_NAME: Record<string, string> = {
  'self_attn.q.weight': 'attn1.to_q.weight', 'cross_attn.k.weight': 'attn2.to_k.weight', 'ffn.0.weight': 'ffn.net.0.proj.weight',
  'norm3.weight': 'norm2.weight', 'norm3.bias': 'norm2.bias', modulation: 'scale_shift_table',
};
function diffusersKey(wanKey: string): string {
  if (wanKey === 'head.head.weight') return 'proj_out.weight';
  if (wanKey === 'head.modulation') return 'scale_shift_table';
  const m = /^(blocks\.\d+)\.(.+)$/.exec(wanKey)!;
  return `${m[1]}.${DIFFUSERS_NAME[m[2]]}`;
}

const CASES: WanCase[] = [
  {
    name: 'Wan-AI\'s own file (bare names) ← a LightX2V distill LoRA',
    base: wanOriginalTensors(rand, 'BF16'), baseFile: 'wan2.1_i2v_480p_14B_bf16.safetensors', weight: 1,
    changes: lightx2vChanges((k) => k, true),
  },
  {
    name: 'a checkpoint under `model.diffusion_model.` ← the same LoRA at another strength',
    base: withPrefix('model.diffusion_model.', wanOriginalTensors(rand, 'BF16')), baseFile: 'wan2.1_t2v_14B_saved_by_comfyui.safetensors', weight: 0.6,
    changes: lightx2vChanges((k) => `model.diffusion_model.${k}`, true),
  },
  {
    name: 'diffusers WanTransformer3DModel ← the same LoRA (`modulation` is `scale_shift_table`, the head\'s the top-level one)',
    base: wanDiffusersTensors(rand, 'BF16'), baseFile: 'diffusion_pytorch_model.safetensors', extra: diffusersConfig, weight: -0.75,
    changes: lightx2vChanges(diffusersKey, false),
  },
  {
    name: 'diffusers WanVACETransformer3DModel ← Kijai\'s renamed `<block>.modulation.diff`, ComfyUI\'s `head.modulation.diff`, a VACE block\'s diff_m',
    base: [...wanDiffusersTensors(rand, 'F16'), tensor(rand, 'vace_blocks.0.scale_shift_table', [1, 6, WAN.dim], 'F32')],
    baseFile: 'diffusion_pytorch_model.safetensors', extra: { 'config.json': JSON.stringify({ _class_name: 'WanVACETransformer3DModel', num_layers: 2 }) }, weight: 1.5,
    changes: [
      diff(`${D}blocks.1.modulation.diff`, 'blocks.1.scale_shift_table'), diff(`${D}head.modulation.diff`, 'scale_shift_table'),
      diff(`${D}vace_blocks.0.diff_m`, 'vace_blocks.0.scale_shift_table'),
    ],
  },
  {
    name: 'Wan\'s own file ← diffusers-named table diffs (`scale_shift_table` is `modulation`)',
    base: wanOriginalTensors(rand, 'F16'), baseFile: 'wan2.1_t2v_1.3B_fp16.safetensors', weight: 0.5,
    changes: [diff('transformer.blocks.0.scale_shift_table.diff', 'blocks.0.modulation'), diff('transformer.scale_shift_table.diff', 'head.modulation')],
  },
];

/** The adapter's tensors: diffs shaped like the tensor they land on (BF16, LightX2V's default output dtype), LoRA pairs of rank R. */
function adapterTensors(c: WanCase): FixtureTensor[] {
  const shapes = new Map(c.base.map((t) => [t.name, t.shape]));
  return c.changes.flatMap((ch): FixtureTensor[] => {
    const shape = shapes.get(ch.lands);
    if (!shape) throw new Error(`${c.name}: the base has no ${ch.lands}`);
    if (ch.kind === 'diff') return [tensor(rand, ch.name, shape, 'BF16', 0.5)];
    return [
      tensor(rand, `${ch.module}.lora_down.weight`, [R, shape[1]], 'BF16', 0.5),
      tensor(rand, `${ch.module}.lora_up.weight`, [shape[0], R], 'BF16', 0.5),
      { name: `${ch.module}.alpha`, dtype: 'BF16', shape: [], data: [ch.alpha] },
    ];
  });
}
const ADAPTERS = new Map(CASES.map((c) => [c, buildSafetensors(adapterTensors(c))]));

/** base + weight · diff, base + weight · (α/r) · up·down, in float64. */
function truthOf(c: WanCase, key: string, w: DecodedTensor, adapter: Map<string, DecodedTensor>): Float64Array | null {
  const mine = c.changes.filter((ch) => ch.lands === key);
  if (mine.length === 0) return null;
  const out = w.values.slice();
  for (const ch of mine) {
    if (ch.kind === 'diff') {
      const d = adapter.get(ch.name)!.values;
      for (let i = 0; i < out.length; i++) out[i] += c.weight * d[i];
      continue;
    }
    const down = adapter.get(`${ch.module}.lora_down.weight`)!, up = adapter.get(`${ch.module}.lora_up.weight`)!;
    const [rows, cols] = w.shape;
    const scale = c.weight * (ch.alpha / R);
    for (let o = 0; o < rows; o++) {
      for (let i = 0; i < cols; i++) {
        let sum = 0;
        for (let k = 0; k < R; k++) sum += up.values[o * R + k] * down.values[k * cols + i];
        out[o * cols + i] += scale * sum;
      }
    }
  }
  return out;
}

const backends = mergeBackends({ cpu: 'default' });

for (const c of CASES) {
  describe(c.name, () => {
    for (const kind of ['cpu', 'webgpu'] as const) {
      it(`merges every diff and LoRA on the tensor it names, on ${kind}`, async () => {
        const baseBytes = buildSafetensors(c.base, { format: 'pt' });
        const adapterBytes = ADAPTERS.get(c)!;
        const { tensors: merged } = await mergeInMemory({
          backend: backends[kind]!, base: { [c.baseFile]: baseBytes, ...c.extra },
          adapters: [{ files: { 'Wan21_T2V_14B_lightx2v_cfg_step_distill_lora_rank32.safetensors': adapterBytes }, weight: c.weight }],
        });
        const base = decodeSafetensors(baseBytes).tensors;
        const adapter = decodeSafetensors(adapterBytes).tensors;
        expect([...merged.keys()].sort()).toEqual([...base.keys()].sort());
        for (const [key, w] of base) {
          const got = merged.get(key)!;
          expect(got.dtype, key).toBe(w.dtype);
          const truth = truthOf(c, key, w, adapter);
          if (!truth) expect(got.bytes, `${key} is copied unchanged`).toEqual(w.bytes);
          else expectMerged(got.values, truth, got.dtype, key);
        }
      });
    }
  });
}

// --- refused, with the reason -----------------------------------------------------------------------

describe('table diffs that cannot land', () => {
  const wanBase = () => ({ 'wan2.1_t2v_14B_bf16.safetensors': buildSafetensors(wanOriginalTensors(rand, 'BF16')) });
  const cases: [string, () => Record<string, Uint8Array | string>, FixtureTensor[], RegExp][] = [
    ['a block\'s diff_m shaped like the head\'s table', wanBase, [tensor(rand, `${D}blocks.1.diff_m`, [1, 2, WAN.dim], 'BF16')],
      /module "diffusion_model\.blocks\.1\.modulation": ΔW \(1, 2, 8\) does not fit base blocks\.1\.modulation \(1, 6, 8\)/],
    ['a diff_m of a block the model does not have', wanBase, [tensor(rand, `${D}blocks.7.diff_m`, [1, 6, WAN.dim], 'BF16')],
      /module "diffusion_model\.blocks\.7\.modulation": no matching tensor in the UNet\/transformer/],
    ['a diff_m on a base that is not Wan (FLUX.1)', () => ({ 'flux1-dev.safetensors': buildSafetensors(fluxBflTensors(rand, 'BF16')) }),
      [tensor(rand, `${D}blocks.0.diff_m`, [1, 6, WAN.dim], 'BF16')], /module "diffusion_model\.blocks\.0\.modulation": no matching tensor/],
    ['a diff_m and a `modulation.diff` of one table (two updates, no one rule)', wanBase,
      [tensor(rand, `${D}blocks.0.diff_m`, [1, 6, WAN.dim], 'BF16'), tensor(rand, `${D}blocks.0.modulation.diff`, [1, 6, WAN.dim], 'BF16')],
      /module "diffusion_model\.blocks\.0\.modulation" has two diff tensors \("diffusion_model\.blocks\.0\.diff_m" and "diffusion_model\.blocks\.0\.modulation\.diff"\)/],
    ['a LoRA pair on a table, which is no Linear', wanBase,
      [tensor(rand, `${D}blocks.0.modulation.lora_down.weight`, [R, WAN.dim], 'BF16'), tensor(rand, `${D}blocks.0.modulation.lora_up.weight`, [6, R], 'BF16')],
      /module "diffusion_model\.blocks\.0\.modulation": ΔW \(6, 8\) does not fit base blocks\.0\.modulation \(1, 6, 8\)/],
  ];

  it.each(cases)('%s: one line from the CLI, nothing written, and the same message from the library', async (_what, base, tensors, message) => {
    const adapter = { 'lightx2v_lora.safetensors': buildSafetensors(tensors) };
    await expectRefusedByCliAndLibrary(temp.make, backends.cpu!, base(), adapter, message);
  });
});
