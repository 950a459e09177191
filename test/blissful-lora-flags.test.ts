/**
 * blissful-tuner's LoRA network (DustyL/blissful-tuner, a musubi-tuner fork:
 * src/musubi_tuner/networks/lora.py, here as `networks.lora_wan` on Wan 2.1's `blocks.0.self_attn.q`
 * and `blocks.0.ffn.0`, shapes cut down, names as it writes them). LoRANetwork saves two file-level
 * buffers, `use_rslora_flag` and `use_dora_flag` (BOOL; save_weights casts every tensor to the save
 * dtype when one is given, so bf16/fp16 1.0 and 0.0 too), and with DoRA each Linear module's
 * `dora_layer.weight` (out,), its magnitude. Its merge (LoRAInfModule.merge_to): scale α/√r under
 * the rsLoRA flag (α 0 stored as √r), else α/r; ΔW = multiplier·scale·up·down; under DoRA
 * W' = m / max(‖(W + ΔW)[row]‖, 1e-6) · (W + ΔW), the norm over each output row
 * (dora_weight_norm_materialized), and the weight left as it is at multiplier 0. Truth in float64 from
 * that formula, written out here; the files it would not merge so refused through the CLI.
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { MergeBackend } from '../src/index.js';
import { buildSafetensors, randomValues, roundForDType, seededRandom, tempDirs, type FixtureDType, type FixtureTensor } from './helpers/fixtures.js';
import { mergeBackends, mergeInMemory } from './helpers/merge-backends.js';
import { expectRefusedByCliAndLibrary } from './helpers/refusals.js';

const backends = mergeBackends({ cpu: 'both' });
const temp = tempDirs();
afterAll(temp.removeAll);
const rand = seededRandom(2101);

/** Wan's q (dim × dim) and first FFN Linear (ffn_dim × dim), cut to dim 96 and ffn_dim 160. */
const DIM = 96, FFN = 160;
const LAYERS = [
  { key: 'blocks.0.self_attn.q.weight', module: 'lora_unet_blocks_0_self_attn_q', out: DIM, in: DIM },
  { key: 'blocks.0.ffn.0.weight', module: 'lora_unet_blocks_0_ffn_0', out: FFN, in: DIM },
] as const;
type Layer = (typeof LAYERS)[number];

const tensor = (name: string, shape: number[], data: Float64Array | number[], dtype: FixtureDType): FixtureTensor => ({ name, dtype, shape, data });
const values = (n: number, dtype: FixtureDType, scale = 0.3) => randomValues(n, rand, scale).map((x) => roundForDType(x, dtype));

/** The base: small random rows, the q's rows 3 and 4 zero and 1e-9 small (below and around the 1e-6 clamp). */
const base = new Map<string, Float64Array>(LAYERS.map((l) => [l.key, values(l.out * l.in, 'F32', 0.05)]));
{
  const q = base.get(LAYERS[0].key)!;
  for (let c = 0; c < DIM; c++) {
    q[3 * DIM + c] = 0;
    q[4 * DIM + c] = roundForDType(1e-9 * (1 + (c % 7)), 'F32');
  }
}
const baseFile = () => ({ 'diffusion_pytorch_model.safetensors': buildSafetensors(LAYERS.map((l) => tensor(l.key, [l.out, l.in], base.get(l.key)!, 'F32'))) });

interface Factors { layer: Layer; rank: number; alpha: number; down: Float64Array; up: Float64Array; magnitude?: Float64Array }

/** A module's tensors as save_weights writes them in `dtype`; up's rows 3 and 4 zero, so W's rows there stay zero and tiny in W + ΔW. */
function factors(layer: Layer, rank: number, alpha: number, dtype: FixtureDType, dora: boolean): Factors {
  const down = values(rank * layer.in, dtype), up = values(layer.out * rank, dtype);
  for (const row of [3, 4]) for (let k = 0; k < rank; k++) up[row * rank + k] = 0;
  const magnitude = dora ? randomValues(layer.out, rand, 1).map((x) => roundForDType(0.5 + Math.abs(x), dtype)) : undefined;
  return { layer, rank, alpha, down, up, magnitude };
}

function moduleTensors(f: Factors, dtype: FixtureDType): FixtureTensor[] {
  const m = f.layer.module;
  return [
    tensor(`${m}.lora_down.weight`, [f.rank, f.layer.in], f.down, dtype),
    tensor(`${m}.lora_up.weight`, [f.layer.out, f.rank], f.up, dtype),
    tensor(`${m}.alpha`, [], [f.alpha], dtype),
    ...(f.magnitude ? [tensor(`${m}.dora_layer.weight`, [f.layer.out], f.magnitude, dtype)] : []),
  ];
}

/** The two flags, in the save dtype, or BOOL when saved without one. */
const flags = (rslora: boolean, dora: boolean, dtype: FixtureDType | null): FixtureTensor[] => [
  tensor('use_rslora_flag', [], [rslora ? 1 : 0], dtype ?? 'BOOL'),
  tensor('use_dora_flag', [], [dora ? 1 : 0], dtype ?? 'BOOL'),
];

const metadata = (dim: number, alpha: number, args: Record<string, string>) => ({
  ss_network_module: 'networks.lora_wan', ss_network_dim: String(dim), ss_network_alpha: String(alpha), ss_network_args: JSON.stringify(args),
});

/** W' for one layer at multiplier s, in float64, as merge_to computes it. */
function truth(f: Factors, s: number, rslora: boolean): Float64Array {
  const { out, in: inF, key } = f.layer;
  const w = base.get(key)!;
  if (s === 0) return w.slice();
  const alpha = f.alpha === 0 ? (rslora ? Math.sqrt(f.rank) : f.rank) : f.alpha;
  const scale = rslora ? alpha / Math.sqrt(f.rank) : alpha / f.rank;
  const v = new Float64Array(out * inF);
  for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) {
    let d = 0;
    for (let k = 0; k < f.rank; k++) d += f.up[o * f.rank + k] * f.down[k * inF + i];
    v[o * inF + i] = w[o * inF + i] + s * scale * d;
  }
  if (!f.magnitude) return v;
  for (let o = 0; o < out; o++) {
    let ss = 0;
    for (let i = 0; i < inF; i++) ss += v[o * inF + i] ** 2;
    const factor = f.magnitude[o] / Math.max(Math.sqrt(ss), 1e-6);
    for (let i = 0; i < inF; i++) v[o * inF + i] *= factor;
  }
  return v;
}

interface Case { name: string; modules: Factors[]; rslora: boolean; file: Uint8Array }

const CASES: Case[] = (() => {
  const list: Case[] = [];
  {
    // rsLoRA, saved bf16 (flags bf16 too): q rank 8 α 4 → 4/√8; ffn.0 rank 4 α 0 → stored as √4, scale 1.
    const modules = [factors(LAYERS[0], 8, 4, 'BF16', false), factors(LAYERS[1], 4, 0, 'BF16', false)];
    list.push({
      name: 'use_rslora_flag on (bf16): α/√r, α 0 as √r', modules, rslora: true,
      file: buildSafetensors([...flags(true, false, 'BF16'), ...modules.flatMap((m) => moduleTensors(m, 'BF16'))], metadata(8, 4, { use_rslora: 'True' })),
    });
  }
  {
    // DoRA, saved fp16: α/r, magnitudes per output row.
    const modules = [factors(LAYERS[0], 8, 8, 'F16', true), factors(LAYERS[1], 4, 2, 'F16', true)];
    list.push({
      name: 'use_dora_flag on (fp16): m / max(‖W + ΔW‖ per row, 1e-6)', modules, rslora: false,
      file: buildSafetensors([...flags(false, true, 'F16'), ...modules.flatMap((m) => moduleTensors(m, 'F16'))], metadata(8, 8, { use_dora: 'True' })),
    });
  }
  {
    // Both, saved without a dtype: BOOL flags, f32 tensors.
    const modules = [factors(LAYERS[0], 4, 16, 'F32', true), factors(LAYERS[1], 8, 2, 'F32', true)];
    list.push({
      name: 'both flags on (BOOL, f32): DoRA over α/√r', modules, rslora: true,
      file: buildSafetensors([...flags(true, true, null), ...modules.flatMap((m) => moduleTensors(m, 'F32'))], metadata(4, 16, { use_rslora: 'True', use_dora: 'True' })),
    });
  }
  return list;
})();

async function check(backend: MergeBackend, c: Case, s: number): Promise<void> {
  const { tensors } = await mergeInMemory({
    backend, base: baseFile(), adapters: [{ files: { 'wan_lora.safetensors': c.file }, weight: s }], slabBytes: 1 << 14,
  });
  for (const f of c.modules) {
    const got = tensors.get(f.layer.key)!.values;
    const want = truth(f, s, c.rslora);
    const scale = want.reduce((a, x) => Math.max(a, Math.abs(x)), 0);
    for (let i = 0; i < want.length; i++) {
      // Rows 3 and 4 of q hold tiny values: compared to their own size there.
      const row = Math.floor(i / f.layer.in);
      const tol = f.layer.key === LAYERS[0].key && (row === 3 || row === 4) ? 1e-5 * Math.abs(want[i]) + 1e-30 : 1e-5 * scale;
      if (!(Math.abs(got[i] - want[i]) <= tol)) expect.fail(`${c.name}, ${f.layer.key} at ${s} [${i}]: got ${got[i]}, truth ${want[i]}`);
    }
  }
}

describe.each(['cpu (js)', 'cpu (wasm)', 'webgpu'])('blissful-tuner networks.lora on Wan with its flags, %s', (name) => {
  for (const c of CASES) {
    for (const s of [1, 0.6, 0]) {
      it(`${c.name}, at weight ${s}`, async (ctx) => {
        const backend = backends[name];
        if (!backend) return ctx.skip();
        await check(backend, c, s);
      });
    }
  }
});

describe('refused through the CLI: one line, nothing written', () => {
  const q = (dora: boolean) => moduleTensors(factors(LAYERS[0], 4, 4, 'BF16', dora), 'BF16');
  const ffn = (dora: boolean) => moduleTensors(factors(LAYERS[1], 4, 4, 'BF16', dora), 'BF16');
  const cases: [string, FixtureTensor[], RegExp][] = [
    ['use_dora_flag on, a Linear module without dora_layer.weight', [...flags(false, true, 'BF16'), ...q(true), ...ffn(false)],
      /wan_lora\.safetensors: module "lora_unet_blocks_0_ffn_0" has no dora_layer\.weight though the file's "use_dora_flag" is on/],
    ['dora_layer.weight under use_dora_flag off', [...flags(false, false, 'BF16'), ...q(true)],
      /wan_lora\.safetensors: module "lora_unet_blocks_0_self_attn_q" has "lora_unet_blocks_0_self_attn_q\.dora_layer\.weight", blissful-tuner's DoRA magnitude, in a file without its "use_dora_flag" on/],
    ['dora_layer.weight on a conv module', [...flags(false, true, 'BF16'), ...q(true),
      tensor('lora_unet_patch_embedding.lora_down.weight', [4, 16, 1, 1], values(64, 'BF16'), 'BF16'), tensor('lora_unet_patch_embedding.lora_up.weight', [DIM, 4, 1, 1], values(DIM * 4, 'BF16'), 'BF16'),
      tensor('lora_unet_patch_embedding.dora_layer.weight', [DIM], values(DIM, 'BF16'), 'BF16')],
      /wan_lora\.safetensors: module "lora_unet_patch_embedding" has "lora_unet_patch_embedding\.dora_layer\.weight" on a conv LoRA \(lora_down \(4, 16, 1, 1\)\): blissful-tuner applies DoRA to Linear layers only/],
    ['dora_layer.weight one per input, not per output', [...flags(false, true, 'BF16'), ...q(true), ...ffn(false), tensor('lora_unet_blocks_0_ffn_0.dora_layer.weight', [DIM], values(DIM, 'BF16'), 'BF16')],
      /wan_lora\.safetensors: module "lora_unet_blocks_0_ffn_0": dora_layer\.weight lora_unet_blocks_0_ffn_0\.dora_layer\.weight \(96\) should hold one value per output row \(160\)/],
    ['use_rslora_flag on beside a LoHa module', [...flags(true, false, 'BF16'), ...q(false),
      ...['hada_w1_a', 'hada_w1_b', 'hada_w2_a', 'hada_w2_b'].map((t) => tensor(`lora_unet_blocks_0_ffn_0.${t}`, t.endsWith('_a') ? [FFN, 4] : [4, DIM], values(t.endsWith('_a') ? FFN * 4 : 4 * DIM, 'BF16'), 'BF16'))],
      /wan_lora\.safetensors: blissful-tuner's "use_rslora_flag" is on and the file holds "lora_unet_blocks_0_ffn_0\.hada_w1_a", not a tensor of its LoRA modules/],
    ['a flag that is not 0 or 1', [tensor('use_rslora_flag', [], [2], 'BF16'), tensor('use_dora_flag', [], [0], 'BF16'), ...q(false)],
      /wan_lora\.safetensors: tensor "use_rslora_flag" is BF16 \(\), not the one flag blissful-tuner's network saves there/],
  ];
  it.each(cases)('%s', async (_what, tensors, message) => {
    await expectRefusedByCliAndLibrary(temp.make, backends['cpu (wasm)']!, baseFile(), { 'wan_lora.safetensors': buildSafetensors(tensors, metadata(4, 4, {})) }, message);
  });
});
