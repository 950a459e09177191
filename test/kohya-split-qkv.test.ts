/**
 * kohya sd-scripts' `split_qkv` (`--network_args "split_qkv=True"`): networks/lora_flux.py trains
 * Flux's `double_blocks.N.img_attn.qkv`/`txt_attn.qkv` as three LoRAs (q, k, v: 3072 rows each,
 * get_qkv_mlp_split_dims, fixed whatever the base) and `single_blocks.N.linear1` as four (q, k, v and
 * the MLP's 12288 rows), networks/lora_sd3.py each `joint_blocks.N.*.qkv` as three thirds of its rows
 * (qkv_dim // 3, from the base); each part of rank r, the module's one α, LoRAModule.forward at α/r.
 * LoRANetwork.state_dict saves such a module fused: `lora_down` the parts' downs stacked (n·r, in),
 * `lora_up` their ups on a block diagonal (rows, n·r), `alpha` unchanged; train_network.py writes
 * `ss_network_args` as json.dumps of the --network_args strings (`"split_qkv": "True"`, and
 * `"dropout": null` it adds itself). Readers that take α over the fused rank (flux_merge_lora.py,
 * ComfyUI) apply a third or a quarter of it (sd-scripts issue #2204); the file is merged as trained:
 * part j's rows get s·(α/r)·up_j·down_j, written out here in float64.
 *
 * The Flux parts' rows are the real ones (9216 and 21504 rows), the input width is cut from 3072 to 8;
 * SD3's hidden size is cut to 24, as its network splits whatever the base holds.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { buildSafetensors, randomValues, roundForDType, seededRandom, tempDirs, type FixtureTensor } from './helpers/fixtures.js';
import { mergeBackends, mergeInMemory } from './helpers/merge-backends.js';
import { expectRefusedByCliAndLibrary } from './helpers/refusals.js';

const backends = mergeBackends({ cpu: 'both' });
const temp = tempDirs();
afterAll(temp.removeAll);
const rand = seededRandom(2204);

/** Flux's hidden size (the split's q, k, v rows) and its MLP's; the input width stands in for 3072. */
const H = 3072, MLP = 4 * H, IN = 8;

const bf16 = (n: number, scale = 0.5) => randomValues(n, rand, scale).map((x) => roundForDType(x, 'BF16'));
const t = (name: string, shape: number[], data: Float64Array | number[], dtype: FixtureTensor['dtype'] = 'BF16'): FixtureTensor => ({ name, dtype, shape, data });

/** One module as trained: per part, down (r, in) and up (rows, r); one α. One part: a plain LoRA. */
interface Trained { name: string; inF: number; rows: number[]; r: number; alpha: number; downs: Float64Array[]; ups: Float64Array[] }

function trained(name: string, rows: number[], r: number, alpha: number, inF = IN): Trained {
  return { name, inF, rows, r, alpha, downs: rows.map(() => bf16(r * inF)), ups: rows.map((d) => bf16(d * r)) };
}

/** As LoRANetwork.state_dict saves a module: the downs stacked, the ups on a block diagonal (zeros elsewhere), α as it was. */
function saved(m: Trained): FixtureTensor[] {
  const n = m.rows.length, total = m.rows.reduce((a, b) => a + b, 0), cols = n * m.r;
  const down = new Float64Array(cols * m.inF), up = new Float64Array(total * cols);
  let row = 0;
  m.rows.forEach((d, j) => {
    down.set(m.downs[j], j * m.r * m.inF);
    for (let o = 0; o < d; o++) for (let k = 0; k < m.r; k++) up[(row + o) * cols + j * m.r + k] = m.ups[j][o * m.r + k];
    row += d;
  });
  return [t(`${m.name}.lora_down.weight`, [cols, m.inF], down), t(`${m.name}.lora_up.weight`, [total, cols], up), t(`${m.name}.alpha`, [], [m.alpha])];
}

/** ΔW's row `o` of part j in float64 at weight s, scaled by α/r, r the part's rank (the training's scale). */
function deltaRows(m: Trained, s: number, perPartScale = true): Float64Array {
  const total = m.rows.reduce((a, b) => a + b, 0);
  const scale = s * m.alpha / (perPartScale ? m.r : m.r * m.rows.length);
  const d = new Float64Array(total * m.inF);
  let row = 0;
  m.rows.forEach((rows, j) => {
    for (let o = 0; o < rows; o++) for (let c = 0; c < m.inF; c++) {
      let sum = 0;
      for (let k = 0; k < m.r; k++) sum += m.ups[j][o * m.r + k] * m.downs[j][k * m.inF + c];
      d[(row + o) * m.inF + c] = scale * sum;
    }
    row += rows;
  });
  return d;
}

/** Where a module's ΔW rows land: base tensor, first ΔW row, row count. */
type Lands = [key: string, from: number, count: number][];

function expectMerged(merged: Map<string, { values: Float32Array | Float64Array | number[] }>, base: FixtureTensor[], delta: Float64Array, inF: number, lands: Lands, what: string): void {
  for (const [key, from, count] of lands) {
    const w = base.find((b) => b.name === key)!.data;
    const got = merged.get(key)!.values;
    expect(got.length, key).toBe(count * inF);
    for (let i = 0; i < count * inF; i++) {
      const want = w[i] + delta[from * inF + i];
      if (!(Math.abs(got[i] - want) <= 1e-5 * (1 + Math.abs(want)))) expect.fail(`${what}: ${key} [${i}] (row ${Math.floor(i / inF)}): got ${got[i]}, truth ${want}`);
    }
  }
}

const fluxMetadata = (args: Record<string, string | null>, module = 'networks.lora_flux') => ({
  ss_network_module: module, ss_network_dim: '4', ss_network_alpha: '8.0', ss_network_args: JSON.stringify(args).replace(/,"/g, ', "').replace(/":/g, '": '),
});
const SPLIT_ON = { split_qkv: 'True', dropout: null };

// --- Flux: the file sd-scripts saves, and the bases it lands on ---------------------------------------

const img = trained('lora_unet_double_blocks_0_img_attn_qkv', [H, H, H], 4, 8);
const txt = trained('lora_unet_double_blocks_0_txt_attn_qkv', [H, H, H], 4, 8);
const linear1 = trained('lora_unet_single_blocks_0_linear1', [H, H, H, MLP], 4, 8);
// Modules the network does not split, whose one pair is one LoRA of rank 4.
const proj = trained('lora_unet_double_blocks_0_img_attn_proj', [H], 4, 8);
const linear2 = trained('lora_unet_single_blocks_0_linear2', [H], 4, 8);
const fluxModules = [img, txt, linear1, proj, linear2];
const fluxLora = (args: Record<string, string | null> = SPLIT_ON, module?: string) => buildSafetensors(fluxModules.flatMap(saved), fluxMetadata(args, module));

const w = (name: string, rows: number, inF = IN) => t(name, [rows, inF], randomValues(rows * inF, rand, 0.05).map((x) => roundForDType(x, 'BF16')));
/** BFL's flux1-dev.safetensors, those five layers. */
const fluxBfl = [
  w('double_blocks.0.img_attn.qkv.weight', 3 * H), w('double_blocks.0.txt_attn.qkv.weight', 3 * H), w('double_blocks.0.img_attn.proj.weight', H),
  w('single_blocks.0.linear1.weight', 3 * H + MLP), w('single_blocks.0.linear2.weight', H),
];
const bflLands: [Trained, Lands][] = [
  [img, [['double_blocks.0.img_attn.qkv.weight', 0, 3 * H]]],
  [txt, [['double_blocks.0.txt_attn.qkv.weight', 0, 3 * H]]],
  [linear1, [['single_blocks.0.linear1.weight', 0, 3 * H + MLP]]],
  [proj, [['double_blocks.0.img_attn.proj.weight', 0, H]]],
  [linear2, [['single_blocks.0.linear2.weight', 0, H]]],
];
/** diffusers' FluxTransformer2DModel: qkv's thirds on to_q/to_k/to_v (add_*_proj for txt), linear1's on to_q, to_k, to_v, proj_mlp. */
const D = 'transformer_blocks.0', S = 'single_transformer_blocks.0';
const fluxDiffusers = [
  ...['to_q', 'to_k', 'to_v', 'add_q_proj', 'add_k_proj', 'add_v_proj', 'to_out.0'].map((p) => w(`${D}.attn.${p}.weight`, H)),
  ...['to_q', 'to_k', 'to_v'].map((p) => w(`${S}.attn.${p}.weight`, H)), w(`${S}.proj_mlp.weight`, MLP), w(`${S}.proj_out.weight`, H),
];
const diffusersLands: [Trained, Lands][] = [
  [img, ['to_q', 'to_k', 'to_v'].map((p, i) => [`${D}.attn.${p}.weight`, i * H, H])],
  [txt, ['add_q_proj', 'add_k_proj', 'add_v_proj'].map((p, i) => [`${D}.attn.${p}.weight`, i * H, H])],
  [linear1, [...['to_q', 'to_k', 'to_v'].map((p, i): Lands[number] => [`${S}.attn.${p}.weight`, i * H, H]), [`${S}.proj_mlp.weight`, 3 * H, MLP]]],
  [proj, [[`${D}.attn.to_out.0.weight`, 0, H]]],
  [linear2, [[`${S}.proj_out.weight`, 0, H]]],
];
const diffusersFolder = () => ({ 'diffusion_pytorch_model.safetensors': buildSafetensors(fluxDiffusers), 'config.json': JSON.stringify({ _class_name: 'FluxTransformer2DModel' }) });

// --- SD3.5 medium (SAI's file): the network splits each joint block's qkv in thirds of the base's rows ---

const h = 24;
const J = (rest: string) => `model.diffusion_model.joint_blocks.0.${rest}.weight`;
const sd3Base = [w(J('x_block.attn.qkv'), 3 * h, h), w(J('x_block.attn2.qkv'), 3 * h, h), w(J('context_block.attn.qkv'), 3 * h, h), w(J('x_block.attn.proj'), h, h)];
const sd3Modules: [Trained, Lands][] = [
  [trained('lora_unet_joint_blocks_0_x_block_attn_qkv', [h, h, h], 2, 4, h), [[J('x_block.attn.qkv'), 0, 3 * h]]],
  // SD3.5's second self-attention (MMDiT-X) has "qkv" in its name too, and is split alike.
  [trained('lora_unet_joint_blocks_0_x_block_attn2_qkv', [h, h, h], 2, 4, h), [[J('x_block.attn2.qkv'), 0, 3 * h]]],
  [trained('lora_unet_joint_blocks_0_context_block_attn_qkv', [h, h, h], 2, 4, h), [[J('context_block.attn.qkv'), 0, 3 * h]]],
  [trained('lora_unet_joint_blocks_0_x_block_attn_proj', [h], 2, 4, h), [[J('x_block.attn.proj'), 0, h]]],
];
const sd3Lora = buildSafetensors(sd3Modules.flatMap(([m]) => saved(m)), {
  ss_network_module: 'networks.lora_sd3', ss_network_dim: '2', ss_network_alpha: '4.0', ss_network_args: '{"split_qkv": "True", "dropout": null}',
});

// --- HunyuanImage 2.1 (Tencent's file): lora_flux's network and save with parts of 3584 and 14336 rows ---

const HI = 3584;
const hiBase = [w('double_blocks.0.img_attn_qkv.weight', 3 * HI), w('single_blocks.0.linear1.weight', 3 * HI + 4 * HI)];
const hiModules: [Trained, Lands][] = [
  [trained('lora_unet_double_blocks_0_img_attn_qkv', [HI, HI, HI], 2, 1), [['double_blocks.0.img_attn_qkv.weight', 0, 3 * HI]]],
  [trained('lora_unet_single_blocks_0_linear1', [HI, HI, HI, 4 * HI], 2, 1), [['single_blocks.0.linear1.weight', 0, 7 * HI]]],
];
const hiLora = buildSafetensors(hiModules.flatMap(([m]) => saved(m)), {
  ss_network_module: 'networks.lora_hunyuan_image', ss_network_dim: '2', ss_network_alpha: '1.0', ss_network_args: '{"split_qkv": "True", "dropout": null}',
});

describe.each(['cpu (js)', 'cpu (wasm)', 'webgpu'])('sd-scripts split_qkv merged at α/r, the training\'s scale, %s', (name) => {
  it('Flux LoRA (networks.lora_flux) onto BFL\'s flux1-dev.safetensors: qkv and linear1 at 3× and 4× α/(n·r), proj and linear2 at α/r', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const s = 0.8;
    const { tensors } = await mergeInMemory({
      backend, base: { 'flux1-dev.safetensors': buildSafetensors(fluxBfl) }, baseName: 'flux1-dev.safetensors',
      adapters: [{ files: { 'flux_split_qkv.safetensors': fluxLora() }, weight: s }], slabBytes: 1 << 16, outDtype: 'F32',
    });
    for (const [m, lands] of bflLands) expectMerged(tensors, fluxBfl, deltaRows(m, s), IN, lands, m.name);
  });

  it('the same file onto diffusers\' FluxTransformer2DModel: the parts on to_q, to_k, to_v (add_*_proj) and proj_mlp', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const s = -0.6;
    const { tensors } = await mergeInMemory({
      backend, base: diffusersFolder(), baseName: 'transformer',
      adapters: [{ files: { 'flux_split_qkv.safetensors': fluxLora() }, weight: s }], slabBytes: 1 << 16, outDtype: 'F32',
    });
    for (const [m, lands] of diffusersLands) expectMerged(tensors, fluxDiffusers, deltaRows(m, s), IN, lands, m.name);
  });

  it('SD3.5 LoRA (networks.lora_sd3) onto SAI\'s file: each joint block\'s qkv at α/r of its thirds', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const { tensors } = await mergeInMemory({
      backend, base: { 'sd3.5_medium.safetensors': buildSafetensors(sd3Base) }, baseName: 'sd3.5_medium.safetensors',
      adapters: [{ files: { 'sd35_split_qkv.safetensors': sd3Lora }, weight: 1 }], outDtype: 'F32',
    });
    for (const [m, lands] of sd3Modules) expectMerged(tensors, sd3Base, deltaRows(m, 1), h, lands, m.name);
  });

  it('HunyuanImage 2.1 LoRA (networks.lora_hunyuan_image) onto Tencent\'s file: img_attn_qkv in thirds, linear1 in four', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const { tensors } = await mergeInMemory({
      backend, base: { 'hunyuanimage2.1.safetensors': buildSafetensors(hiBase) }, baseName: 'hunyuanimage2.1.safetensors',
      adapters: [{ files: { 'hi_split_qkv.safetensors': hiLora }, weight: 1.5 }], slabBytes: 1 << 16, outDtype: 'F32',
    });
    for (const [m, lands] of hiModules) expectMerged(tensors, hiBase, deltaRows(m, 1.5), IN, lands, m.name);
  });
});

describe('split_qkv off as the network reads it: the fused pair is one LoRA of the fused rank', () => {
  // create_network: `True if split_qkv == "True" else False`, so "true" trained the modules unsplit;
  // and networks.lora (SD1/SDXL) takes no split_qkv at all.
  it.each([
    ['"split_qkv": "true"', { split_qkv: 'true', dropout: null }, undefined],
    ['networks.lora with "split_qkv": "True"', SPLIT_ON, 'networks.lora'],
  ] as const)('%s', async (_what, args, module) => {
    const { tensors } = await mergeInMemory({
      backend: backends['cpu (wasm)']!, base: { 'flux1-dev.safetensors': buildSafetensors(fluxBfl) }, baseName: 'flux1-dev.safetensors',
      adapters: [{ files: { 'flux.safetensors': fluxLora(args, module) }, weight: 1 }], slabBytes: 1 << 16, outDtype: 'F32',
    });
    for (const [m, lands] of bflLands) expectMerged(tensors, fluxBfl, deltaRows(m, 1, false), IN, lands, m.name);
  });
});

describe('refused through the CLI: one line, nothing written', () => {
  const base = () => ({ 'flux1-dev.safetensors': buildSafetensors(fluxBfl) });
  const others = [txt, linear1, proj, linear2].flatMap(saved);
  const edited = (edit: (tensors: FixtureTensor[]) => FixtureTensor[]) => ({ 'flux_split_qkv.safetensors': buildSafetensors([...edit(saved(img)), ...others], fluxMetadata(SPLIT_ON)) });
  const cases: [string, () => Record<string, Uint8Array>, () => Record<string, Uint8Array>, RegExp][] = [
    ['a lora_up that is not block-diagonal', base, () => edited((list) => list.map((x) => {
      if (!x.name.endsWith('lora_up.weight')) return x;
      const data = Float64Array.from(x.data);
      data[(H + 5) * 12 + 9] = 0.25; // row H + 5 (k's part), column 9 (v's)
      return { ...x, data };
    })), /flux_split_qkv\.safetensors: module "lora_unet_double_blocks_0_img_attn_qkv" is marked by sd-scripts' split_qkv \(metadata "ss_network_args"\) as q, k, v LoRAs fused into one pair, but its lora_up \(9216, 12\) is not the block diagonal .*\(row 3077, of part 1, has 0\.25 in column 9, of part 2\)/],
    ['a fused rank that is not three parts of one rank', base, () => {
      const odd = trained(img.name, [3 * H], 10, 8);
      return { 'flux_split_qkv.safetensors': buildSafetensors([...saved(odd), ...others], fluxMetadata(SPLIT_ON)) };
    }, /flux_split_qkv\.safetensors: module "lora_unet_double_blocks_0_img_attn_qkv" is saved by networks\.lora_flux with sd-scripts' split_qkv .*lora_down \(10, 8\) and lora_up \(9216, 10\) do not fit: its rank 10 is not 3 parts of one rank/],
    ['a tensor the network does not save beside the pair', base, () => edited((list) => [...list, t(`${img.name}.dora_scale`, [1, IN], bf16(IN))]),
      /module "lora_unet_double_blocks_0_img_attn_qkv" is saved by networks\.lora_flux .*yet it has "lora_unet_double_blocks_0_img_attn_qkv\.dora_scale"/],
    ['parts of other rows than the network\'s 3072 (a Flux of another width)', () => ({ 'small.safetensors': buildSafetensors([w('double_blocks.0.img_attn.qkv.weight', 72)]) }), () => {
      const small = trained(img.name, [24, 24, 24], 4, 8);
      return { 'flux_split_qkv.safetensors': buildSafetensors(saved(small), fluxMetadata(SPLIT_ON)) };
    }, /module "lora_unet_double_blocks_0_img_attn_qkv" is saved by networks\.lora_flux .*do not fit: its parts have 3072 \+ 3072 \+ 3072 rows, not the 72 of lora_up/],
  ];
  it.each(cases)('%s', async (_what, baseFiles, adapter, message) => {
    await expectRefusedByCliAndLibrary(temp.make, backends['cpu (wasm)']!, baseFiles(), adapter(), message);
  });
});

/**
 * sd-scripts' networks/convert_flux_lora.py `--src sd-scripts --dst ai-toolkit` on the split_qkv file
 * above, written out as it computes it: each module's scale α over its saved rank (the fused n·r for
 * a split one) is moved into its factors (convert_to_ai_toolkit(_cat): scale_down = scale and
 * scale_up = 1, doubled and halved while scale_down·2 < scale_up), and a split module's block
 * diagonal up, found sparse, is cut into its blocks and its down into r-row chunks, one rank-r pair
 * per diffusers part, named as the script names them; the metadata is saved as it was.
 */
function converted(m: Trained, names: string[]): FixtureTensor[] {
  const n = m.rows.length;
  let down = m.alpha / (n * m.r), up = 1;
  while (down * 2 < up) [down, up] = [down * 2, up / 2];
  return m.rows.flatMap((rows, j) => [
    t(`${names[j]}.lora_A.weight`, [m.r, m.inF], m.downs[j].map((x) => x * down), 'F32'),
    t(`${names[j]}.lora_B.weight`, [rows, m.r], m.ups[j].map((x) => x * up), 'F32'),
  ]);
}
const CONVERTED_NAMES: [Trained, string[]][] = [
  [img, ['to_q', 'to_k', 'to_v'].map((p) => `transformer.${D}.attn.${p}`)],
  [txt, ['add_q_proj', 'add_k_proj', 'add_v_proj'].map((p) => `transformer.${D}.attn.${p}`)],
  [linear1, [...['to_q', 'to_k', 'to_v'].map((p) => `transformer.${S}.attn.${p}`), `transformer.${S}.proj_mlp`]],
  [proj, [`transformer.${D}.attn.to_out.0`]],
  [linear2, [`transformer.${S}.proj_out`]],
];

describe('a split_qkv file converted to diffusers\' names by sd-scripts\' convert_flux_lora.py', () => {
  it('merges as its tensors say (α/(n·r) baked in, as diffusers and ComfyUI apply it), with a warning naming the parts and the third and quarter of the trained scale', async () => {
    const lora = buildSafetensors(CONVERTED_NAMES.flatMap(([m, names]) => converted(m, names)), fluxMetadata(SPLIT_ON));
    const s = 0.9;
    const { tensors, warnings } = await mergeInMemory({
      backend: backends['cpu (wasm)']!, base: diffusersFolder(), baseName: 'transformer',
      adapters: [{ files: { 'flux_split_qkv_ai_toolkit.safetensors': lora }, weight: s }], slabBytes: 1 << 16, outDtype: 'F32',
    });
    // The training's α/r would be deltaRows(m, s); the converted file holds α/(n·r).
    for (const [m, lands] of diffusersLands) expectMerged(tensors, fluxDiffusers, deltaRows(m, s, false), IN, lands, m.name);
    expect(warnings).toEqual([
      `adapter0/flux_split_qkv_ai_toolkit.safetensors: modules transformer.${D}.attn.to_q, transformer.${D}.attn.to_k, transformer.${D}.attn.to_v, … (10 in all) are in diffusers' names under the metadata of an sd-scripts split_qkv training ("ss_network_module" networks.lora_flux, "ss_network_args" split_qkv "True"), as sd-scripts' convert_flux_lora.py writes it: it bakes in α/(3·r) for the double blocks' q, k and v and α/(4·r) for the single blocks' q, k, v and proj_mlp, the scale every reader of the fused file but sd-scripts applies. Merged at the converted file's scale, as diffusers and ComfyUI apply it: a third (the single blocks' a quarter) of the scale they were trained at; to merge at that, merge the sd-scripts file it was converted from`,
    ]);
  });

  it('the same tensors without split_qkv in the metadata merge with no warning', async () => {
    const lora = buildSafetensors(CONVERTED_NAMES.flatMap(([m, names]) => converted(m, names)), fluxMetadata({ dropout: null }));
    const { warnings } = await mergeInMemory({
      backend: backends['cpu (wasm)']!, base: diffusersFolder(), baseName: 'transformer',
      adapters: [{ files: { 'flux_ai_toolkit.safetensors': lora }, weight: 1 }], slabBytes: 1 << 16, outDtype: 'F32',
    });
    expect(warnings).toEqual([]);
  });
});
