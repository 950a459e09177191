/**
 * LoRA modules with split_dims, as blissful-tuner (DustyL/blissful-tuner, a musubi-tuner fork:
 * src/musubi_tuner/networks/lora.py) saves them when trained with
 * `--network_args "module_kwargs={'split_dims': […]}"` (create_network parses it and passes it to
 * every LoRAModule): here HunyuanVideo's fused `double_blocks.N.img_attn_qkv`/`txt_attn_qkv`
 * (3·hidden × hidden) split [h, h, h], and `single_blocks.N.linear1` (3·hidden + mlp × hidden) split
 * [h, h, h, mlp], hidden 3072 cut to 24. Each module holds `lora_down.<i>.weight` (r, in) and
 * `lora_up.<i>.weight` (split_dims[i], r) per part and one `alpha`; the network's two flag buffers
 * beside them. LoRAModule.forward concatenates the parts' up_i·down_i along the outputs at
 * multiplier·α/r (α/√r under use_rslora_flag) and gives split modules no DoRA. The tool's own
 * merge_to cannot apply these files (its LoRAInfModule drops split_dims), so the forward is the rule;
 * truth in float64 from it, written out here: rows of part i get s·scale·up_i·down_i.
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { MergeBackend } from '../src/index.js';
import { buildSafetensors, randomValues, roundForDType, seededRandom, tempDirs, type FixtureDType, type FixtureTensor } from './helpers/fixtures.js';
import { mergeBackends, mergeInMemory } from './helpers/merge-backends.js';
import { expectRefusedByCliAndLibrary } from './helpers/refusals.js';
import { HUNYUAN, hiddenOf, hunyuanDiffusersConfig, hunyuanDiffusersTensors } from './helpers/hunyuan-fixtures.js';

const backends = mergeBackends({ cpu: 'both' });
const temp = tempDirs();
afterAll(temp.removeAll);
const rand = seededRandom(3301);

const H = 24, MLP = 4 * H;
const LAYERS = {
  img: { key: 'double_blocks.0.img_attn_qkv.weight', module: 'lora_unet_double_blocks_0_img_attn_qkv', splits: [H, H, H] },
  txt: { key: 'double_blocks.0.txt_attn_qkv.weight', module: 'lora_unet_double_blocks_0_txt_attn_qkv', splits: [H, H, H] },
  linear1: { key: 'single_blocks.0.linear1.weight', module: 'lora_unet_single_blocks_0_linear1', splits: [H, H, H, MLP] },
} as const;
type Layer = (typeof LAYERS)[keyof typeof LAYERS];
const rowsOf = (l: Layer) => l.splits.reduce((a, b) => a + b, 0);

const tensor = (name: string, shape: number[], data: Float64Array | number[], dtype: FixtureDType): FixtureTensor => ({ name, dtype, shape, data });
const values = (n: number, dtype: FixtureDType, scale = 0.3) => randomValues(n, rand, scale).map((x) => roundForDType(x, dtype));

const base = new Map<string, Float64Array>(Object.values(LAYERS).map((l) => [l.key, values(rowsOf(l) * H, 'F32', 0.05)]));
const baseFile = () => ({ 'hunyuan_video_dit.safetensors': buildSafetensors(Object.values(LAYERS).map((l) => tensor(l.key, [rowsOf(l), H], base.get(l.key)!, 'F32'))) });

interface Module { layer: Layer; rank: number; alpha: number; downs: Float64Array[]; ups: Float64Array[] }

function splitModule(layer: Layer, rank: number, alpha: number, dtype: FixtureDType): Module {
  return { layer, rank, alpha, downs: layer.splits.map(() => values(rank * H, dtype)), ups: layer.splits.map((d) => values(d * rank, dtype)) };
}

/** A module's tensors as LoRANetwork.state_dict names them (nn.ModuleList children numbered from 0). */
function moduleTensors(m: Module, dtype: FixtureDType): FixtureTensor[] {
  const n = m.layer.module;
  return [
    ...m.layer.splits.flatMap((d, i) => [
      tensor(`${n}.lora_down.${i}.weight`, [m.rank, H], m.downs[i], dtype),
      tensor(`${n}.lora_up.${i}.weight`, [d, m.rank], m.ups[i], dtype),
    ]),
    tensor(`${n}.alpha`, [], [m.alpha], dtype),
  ];
}

const flags = (rslora: boolean, dora: boolean, dtype: FixtureDType | null): FixtureTensor[] => [
  tensor('use_rslora_flag', [], [rslora ? 1 : 0], dtype ?? 'BOOL'),
  tensor('use_dora_flag', [], [dora ? 1 : 0], dtype ?? 'BOOL'),
];

/** The metadata blissful-tuner writes for such a run (ss_network_args: the --network_args strings as given). */
const metadata = (dim: number, alpha: number, splits: readonly number[], include: string, extra: Record<string, string> = {}) => ({
  ss_network_module: 'networks.lora', ss_network_dim: String(dim), ss_network_alpha: String(alpha),
  ss_network_args: JSON.stringify({ module_kwargs: `{'split_dims': [${splits.join(', ')}]}`, exclude_patterns: "['.*']", include_patterns: `['${include}']`, ...extra }),
});

/** W' at multiplier s, in float64: part i's rows get s·scale·up_i·down_i (LoRAModule.forward's torch.cat). */
function truth(m: Module, s: number, rslora: boolean): Float64Array {
  const w = base.get(m.layer.key)!.slice();
  const scale = rslora ? m.alpha / Math.sqrt(m.rank) : m.alpha / m.rank;
  let offset = 0;
  m.layer.splits.forEach((d, i) => {
    for (let o = 0; o < d; o++) for (let c = 0; c < H; c++) {
      let sum = 0;
      for (let k = 0; k < m.rank; k++) sum += m.ups[i][o * m.rank + k] * m.downs[i][k * H + c];
      w[(offset + o) * H + c] += s * scale * sum;
    }
    offset += d;
  });
  return w;
}

interface Case { name: string; modules: Module[]; rslora: boolean; file: Uint8Array }

const CASES: Case[] = (() => {
  const list: Case[] = [];
  {
    // qkv split in three, saved bf16 (flags too), both flags off: α/r = 2/4.
    const modules = [splitModule(LAYERS.img, 4, 2, 'BF16'), splitModule(LAYERS.txt, 4, 2, 'BF16')];
    list.push({
      name: 'attn_qkv split [h, h, h], bf16, flags off: α/r', modules, rslora: false,
      file: buildSafetensors([...flags(false, false, 'BF16'), ...modules.flatMap((m) => moduleTensors(m, 'BF16'))], metadata(4, 2, LAYERS.img.splits, '.*_attn_qkv')),
    });
  }
  {
    // linear1 split in four (q, k, v, mlp), saved without a dtype (BOOL flags, f32): both flags on,
    // so α/√r = 4/√8, and no DoRA (LoRAModule turns it off for split modules: no dora_layer.weight).
    const modules = [splitModule(LAYERS.linear1, 8, 4, 'F32')];
    list.push({
      name: 'linear1 split [h, h, h, mlp], f32, use_rslora_flag and use_dora_flag on: α/√r, no DoRA', modules, rslora: true,
      file: buildSafetensors([...flags(true, true, null), ...modules.flatMap((m) => moduleTensors(m, 'F32'))], metadata(8, 4, LAYERS.linear1.splits, '.*linear1', { use_rslora: 'True', use_dora: 'True' })),
    });
  }
  return list;
})();

async function check(backend: MergeBackend, c: Case, s: number): Promise<void> {
  const { tensors } = await mergeInMemory({
    backend, base: baseFile(), adapters: [{ files: { 'hv_split_lora.safetensors': c.file }, weight: s }], slabBytes: 1 << 12,
  });
  for (const m of c.modules) {
    const got = tensors.get(m.layer.key)!.values;
    const want = truth(m, s, c.rslora);
    const size = want.reduce((a, x) => Math.max(a, Math.abs(x)), 0);
    for (let i = 0; i < want.length; i++) {
      if (!(Math.abs(got[i] - want[i]) <= 1e-6 * size)) expect.fail(`${c.name}, ${m.layer.key} at ${s} [${i}] (row ${Math.floor(i / H)}): got ${got[i]}, truth ${want[i]}`);
    }
  }
}

describe.each(['cpu (js)', 'cpu (wasm)', 'webgpu'])('LoRA with split_dims (blissful-tuner networks.lora on HunyuanVideo), %s', (name) => {
  for (const c of CASES) {
    for (const s of [1, -0.7]) {
      it(`${c.name}, at weight ${s}`, async (ctx) => {
        const backend = backends[name];
        if (!backend) return ctx.skip();
        await check(backend, c, s);
      });
    }
  }
});

describe('onto diffusers\' HunyuanVideo transformer: linear1\'s parts land on to_q, to_k, to_v and proj_mlp', () => {
  // hunyuanvideo-community/HunyuanVideo/transformer, cut down: single_transformer_blocks.0.attn.to_q … (h × h), proj_mlp (4h × h).
  const h = hiddenOf(HUNYUAN);
  const tensors = hunyuanDiffusersTensors(seededRandom(77), 'F32', HUNYUAN);
  const B = 'single_transformer_blocks.0';
  const targets = [`${B}.attn.to_q.weight`, `${B}.attn.to_k.weight`, `${B}.attn.to_v.weight`, `${B}.proj_mlp.weight`];
  const splits = [h, h, h, 4 * h];
  const rank = 4, alpha = 8;
  const downs = splits.map(() => values(rank * h, 'BF16')), ups = splits.map((d) => values(d * rank, 'BF16'));
  const n = 'lora_unet_single_blocks_0_linear1';
  const file = buildSafetensors([
    ...flags(false, false, 'BF16'),
    ...splits.flatMap((d, i) => [tensor(`${n}.lora_down.${i}.weight`, [rank, h], downs[i], 'BF16'), tensor(`${n}.lora_up.${i}.weight`, [d, rank], ups[i], 'BF16')]),
    tensor(`${n}.alpha`, [], [alpha], 'BF16'),
  ], metadata(rank, alpha, splits, '.*linear1'));
  it.for(['cpu (js)', 'cpu (wasm)', 'webgpu'])('%s', async (name, ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const s = 0.9;
    const { tensors: merged } = await mergeInMemory({
      backend, base: { 'diffusion_pytorch_model.safetensors': buildSafetensors(tensors), 'config.json': hunyuanDiffusersConfig(HUNYUAN) }, baseName: 'transformer',
      adapters: [{ files: { 'hv_split_lora.safetensors': file }, weight: s }],
    });
    targets.forEach((key, i) => {
      const w = Float64Array.from(tensors.find((t) => t.name === key)!.data);
      for (let o = 0; o < splits[i]; o++) for (let c = 0; c < h; c++) {
        let sum = 0;
        for (let k = 0; k < rank; k++) sum += ups[i][o * rank + k] * downs[i][k * h + c];
        w[o * h + c] += s * (alpha / rank) * sum;
      }
      const got = merged.get(key)!.values;
      for (let j = 0; j < w.length; j++) if (!(Math.abs(got[j] - w[j]) <= 1e-6 * (1 + Math.abs(w[j])))) expect.fail(`${key} [${j}]: got ${got[j]}, truth ${w[j]}`);
    });
  });
});

describe('refused through the CLI: one line, nothing written', () => {
  const qkv = () => moduleTensors(splitModule(LAYERS.img, 4, 4, 'BF16'), 'BF16');
  const M = LAYERS.img.module;
  const without = (list: FixtureTensor[], name: string) => list.filter((t) => t.name !== name);
  const cases: [string, FixtureTensor[], RegExp][] = [
    ['a part without its lora_up', without(qkv(), `${M}.lora_up.1.weight`),
      /hv\.safetensors: module "lora_unet_double_blocks_0_img_attn_qkv" is a LoRA with split_dims \(numbered lora_down\.N\/lora_up\.N pairs\) without lora_up\.1\.weight/],
    ['a part left out of the numbering', without(without(qkv(), `${M}.lora_up.1.weight`), `${M}.lora_down.1.weight`),
      /module "lora_unet_double_blocks_0_img_attn_qkv" is a LoRA with split_dims .* without lora_down\.1\.weight and lora_up\.1\.weight: its parts must be pairs numbered from 0/],
    ['parts of different ranks', [...without(without(qkv(), `${M}.lora_up.2.weight`), `${M}.lora_down.2.weight`),
      tensor(`${M}.lora_down.2.weight`, [2, H], values(2 * H, 'BF16'), 'BF16'), tensor(`${M}.lora_up.2.weight`, [H, 2], values(2 * H, 'BF16'), 'BF16')],
      /module "lora_unet_double_blocks_0_img_attn_qkv": split_dims pairs .*lora_down\.2 \(2, 24\), lora_up\.2 \(24, 2\) are not one Linear's/],
    ['a DoRA magnitude beside the parts', [...flags(false, true, 'BF16'), ...qkv(), tensor(`${M}.dora_layer.weight`, [3 * H], values(3 * H, 'BF16'), 'BF16')],
      /module "lora_unet_double_blocks_0_img_attn_qkv" has "lora_unet_double_blocks_0_img_attn_qkv\.dora_layer\.weight" beside split_dims pairs: blissful-tuner's LoRAModule gives a module with split_dims no DoRA/],
    ['one pair and numbered pairs in one module', [...qkv(), tensor(`${M}.lora_down.weight`, [4, H], values(4 * H, 'BF16'), 'BF16'), tensor(`${M}.lora_up.weight`, [3 * H, 4], values(12 * H, 'BF16'), 'BF16')],
      /module "lora_unet_double_blocks_0_img_attn_qkv" mixes tensors of LoRA and LoRA with split_dims/],
    ['parts that do not add up to the weight\'s rows', without(without(qkv(), `${M}.lora_up.2.weight`), `${M}.lora_down.2.weight`),
      /module "lora_unet_double_blocks_0_img_attn_qkv": ΔW \(48, 24\) does not fit base double_blocks\.0\.img_attn_qkv\.weight \(72, 24\)/],
    ['a ninth part', [...qkv(), ...[3, 4, 5, 6, 7, 8].flatMap((i) => [tensor(`${M}.lora_down.${i}.weight`, [4, H], values(4 * H, 'BF16'), 'BF16'), tensor(`${M}.lora_up.${i}.weight`, [1, 4], values(4, 'BF16'), 'BF16')])],
      /module "lora_unet_double_blocks_0_img_attn_qkv": unknown tensor "lora_down\.8\.weight".*LoRA with split_dims: lora_down\.N\.weight, lora_up\.N\.weight \(N 0 to 7\)/],
  ];
  it.each(cases)('%s', async (_what, tensors, message) => {
    await expectRefusedByCliAndLibrary(temp.make, backends['cpu (wasm)']!, baseFile(), { 'hv.safetensors': buildSafetensors(tensors, metadata(4, 4, LAYERS.img.splits, '.*_attn_qkv')) }, message);
  });
});
