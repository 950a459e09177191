/**
 * combine, resize and extract on the two module kinds whose update's rank is its parts' ranks
 * together, run through the command line:
 * - sd-scripts' `split_qkv` (networks/lora_flux.py, `--network_args "split_qkv=True"`): Flux's
 *   `double_blocks.N.img_attn.qkv` trained as three LoRAs of rank r (q, k, v: 3072 rows each) and
 *   `single_blocks.N.linear1` as four (q, k, v and the MLP's 12288 rows), saved fused by
 *   LoRANetwork.state_dict (down (n·r, in), up block-diagonal (rows, n·r), one α), each part trained
 *   at α/r: an update of rank n·r at α/r, which a plain reader of the pair would take at α/(n·r);
 * - LoRA with `split_dims` (musubi-tuner's LoRAModule and its fork blissful-tuner:
 *   `module_kwargs={'split_dims': [3072, 3072, 3072, 12288]}`): numbered `lora_down.N`/`lora_up.N`
 *   pairs of rank r, each filling the next rows, all at α/r (α/√r under blissful's use_rslora_flag).
 * The truth, in float64 here: rows of part j get (scale)·up_j·down_j. Each output is read as its
 * readers (ComfyUI, sd-scripts, kohya's networks.lora) read a plain LoRA, α/rank·up·down with rank
 * the down's rows, so an output that kept a fused pair under split_qkv metadata, or wrote α for the
 * part's rank, is wrong by the part count; a split_qkv input, now stronger in ComfyUI than it was,
 * is named in a warning. The parts' rows are the real ones; the input width 3072 is cut to 13 (odd,
 * and above every update's rank, so that a module's rank is not capped by it).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.js';
import { buildSafetensors, decodeSafetensors, randomValues, seededRandom, tempDirs, type FixtureTensor } from './helpers/fixtures.js';
import { dense, frob2, minus, optimalError, product, type Dense } from './helpers/svd-reference.js';

const temp = tempDirs();
afterAll(temp.removeAll);
const rand = seededRandom(2204_3301);

const H = 3072, MLP = 4 * H, IN = 13;
const QKV = 'lora_unet_double_blocks_0_img_attn_qkv';
const LINEAR1 = 'lora_unet_single_blocks_0_linear1';
const PROJ = 'lora_unet_double_blocks_0_img_attn_proj';

/** One module as trained: per part a down (r, IN) and an up (rows, r), one α, the scale every part is applied at. */
interface Trained { name: string; rows: number[]; r: number; alpha: number; scale: number; downs: Float64Array[]; ups: Float64Array[] }

function trained(name: string, rows: number[], r: number, alpha: number, scale: number): Trained {
  return { name, rows, r, alpha, scale, downs: rows.map(() => randomValues(r * IN, rand, 0.5)), ups: rows.map((d) => randomValues(d * r, rand, 0.5)) };
}

const rowsOf = (m: Trained) => m.rows.reduce((a, b) => a + b, 0);
/** The rank of the module's update: its parts' ranks together. */
const trueRank = (m: Trained) => m.rows.length * m.r;

/** The update merged, in float64: part j's rows get scale·up_j·down_j. */
function truth(m: Trained, weight = 1): Dense {
  const d = dense(rowsOf(m), IN, () => 0);
  let row = 0;
  m.rows.forEach((rows, j) => {
    for (let o = 0; o < rows; o++) for (let c = 0; c < IN; c++) {
      let sum = 0;
      for (let k = 0; k < m.r; k++) sum += m.ups[j][o * m.r + k] * m.downs[j][k * IN + c];
      d.data[(row + o) * IN + c] = weight * m.scale * sum;
    }
    row += rows;
  });
  return d;
}

const t = (name: string, shape: number[], data: Float64Array | number[], dtype: FixtureTensor['dtype'] = 'F32'): FixtureTensor => ({ name, dtype, shape, data });

/** As sd-scripts' LoRANetwork.state_dict saves a module: the downs stacked, the ups on a block diagonal, α as it was. */
function fused(m: Trained): FixtureTensor[] {
  const cols = trueRank(m), total = rowsOf(m);
  const down = new Float64Array(cols * IN), up = new Float64Array(total * cols);
  let row = 0;
  m.rows.forEach((d, j) => {
    down.set(m.downs[j], j * m.r * IN);
    for (let o = 0; o < d; o++) for (let k = 0; k < m.r; k++) up[(row + o) * cols + j * m.r + k] = m.ups[j][o * m.r + k];
    row += d;
  });
  return [t(`${m.name}.lora_down.weight`, [cols, IN], down), t(`${m.name}.lora_up.weight`, [total, cols], up), t(`${m.name}.alpha`, [], [m.alpha])];
}

/** As musubi-tuner's (and blissful-tuner's) LoRANetwork.state_dict saves a split_dims module: nn.ModuleList children numbered from 0. */
function numbered(m: Trained): FixtureTensor[] {
  return [
    ...m.rows.flatMap((d, i) => [t(`${m.name}.lora_down.${i}.weight`, [m.r, IN], m.downs[i]), t(`${m.name}.lora_up.${i}.weight`, [d, m.r], m.ups[i])]),
    t(`${m.name}.alpha`, [], [m.alpha]),
  ];
}

// sd-scripts' Flux LoRA at rank 1 (α 0.5: each part at α/r = 0.5, where a plain reader of the fused pair would take 0.5/3 and 0.5/4).
const sdQkv = trained(QKV, [H, H, H], 1, 0.5, 0.5);
const sdLinear1 = trained(LINEAR1, [H, H, H, MLP], 1, 0.5, 0.5);
const sdProj = trained(PROJ, [H], 1, 0.5, 0.5);
const sdModules = [sdQkv, sdLinear1, sdProj];
const sdScriptsFile = () => buildSafetensors(sdModules.flatMap(fused), {
  ss_network_module: 'networks.lora_flux', ss_network_dim: '1', ss_network_alpha: '0.5',
  ss_network_args: '{"split_qkv": "True", "dropout": null}', ss_base_model_version: 'flux1',
});

// blissful-tuner's split_dims LoRA at rank 3, α 2 under use_rslora_flag: α/√r = 2/√3.
const rs = 2 / Math.sqrt(3);
const blQkv = trained(QKV, [H, H, H], 3, 2, rs);
const blLinear1 = trained(LINEAR1, [H, H, H, MLP], 3, 2, rs);
const blModules = [blQkv, blLinear1];
const blissfulFile = () => buildSafetensors([
  t('use_rslora_flag', [], [1], 'BOOL'), t('use_dora_flag', [], [0], 'BOOL'),
  ...blModules.flatMap(numbered),
], {
  ss_network_module: 'networks.lora', ss_network_dim: '3', ss_network_alpha: '2',
  ss_network_args: JSON.stringify({ module_kwargs: `{'split_dims': [${H}, ${H}, ${H}, ${MLP}]}`, use_rslora: 'True', include_patterns: "['.*_attn_qkv', '.*linear1']", exclude_patterns: "['.*']" }),
});

// The same run without use_rslora (flags off): α/r = 2/3, a split_dims network and nothing else in its args.
const plQkv = trained(QKV, [H, H, H], 3, 2, 2 / 3);
const plLinear1 = trained(LINEAR1, [H, H, H, MLP], 3, 2, 2 / 3);
const plModules = [plQkv, plLinear1];
const blissfulPlainFile = () => buildSafetensors([
  t('use_rslora_flag', [], [0], 'BOOL'), t('use_dora_flag', [], [0], 'BOOL'),
  ...plModules.flatMap(numbered),
], {
  ss_network_module: 'networks.lora', ss_network_dim: '3', ss_network_alpha: '2',
  ss_network_args: JSON.stringify({ module_kwargs: `{'split_dims': [${H}, ${H}, ${H}, ${MLP}]}`, include_patterns: "['.*_attn_qkv', '.*linear1']", exclude_patterns: "['.*']" }),
});

// blissful-tuner's LoRA without split_dims at rank 3, α 2 under use_rslora_flag (α/√r): plain pairs,
// its args saying use_rslora, as blissful-tuner's train network writes them.
const rsQkv = trained(QKV, [3 * H], 3, 2, rs);
const rsProj = trained(PROJ, [H], 3, 2, rs);
const rsModules = [rsQkv, rsProj];
const blissfulRsFile = () => buildSafetensors([
  t('use_rslora_flag', [], [1], 'BOOL'), t('use_dora_flag', [], [0], 'BOOL'),
  ...rsModules.flatMap((m) => [t(`${m.name}.lora_down.weight`, [m.r, IN], m.downs[0]), t(`${m.name}.lora_up.weight`, [m.rows[0], m.r], m.ups[0]), t(`${m.name}.alpha`, [], [m.alpha])]),
], {
  ss_network_module: 'networks.lora', ss_network_dim: '3', ss_network_alpha: '2',
  ss_network_args: JSON.stringify({ use_rslora: 'True', include_patterns: "['.*_attn_qkv', '.*_attn_proj']", exclude_patterns: "['.*']" }),
});

let dir = '';
beforeAll(() => {
  dir = temp.make({ 'flux_split_qkv.safetensors': sdScriptsFile(), 'blissful_split_dims.safetensors': blissfulFile(), 'blissful_split_dims_plain.safetensors': blissfulPlainFile(), 'blissful_rslora.safetensors': blissfulRsFile() });
});
const plPath = () => join(dir, 'blissful_split_dims_plain.safetensors');
const sdPath = () => join(dir, 'flux_split_qkv.safetensors');
const blPath = () => join(dir, 'blissful_split_dims.safetensors');
const rsPath = () => join(dir, 'blissful_rslora.safetensors');

/** The warning every command whose input has sd-scripts' split_qkv modules gives: its output is stronger in ComfyUI than the input was. */
const splitQkvWarning = () => `warning: ${sdPath()}: 2 module(s) ("${QKV}", "${LINEAR1}") are sd-scripts split_qkv LoRAs of n parts (3 for qkv, 4 for linear1), trained at α/r each; they are written as plain pairs at that scale, so ComfyUI and sd-scripts' flux_merge_lora apply them n times as strongly as they apply the input's fused pairs (α over the fused rank n·r)`;

let runs = 0;
async function cli(args: string[]): Promise<string> {
  const out = join(dir, `out-${runs++}.safetensors`);
  const r = await runCli([...args, '--out', out, '--backend', 'cpu']);
  expect(r.code, r.stderr).toBe(0);
  // Other warnings (a --rank above a module's rank) are other tests'.
  const warnings = r.stderr.split('\n').filter((line) => line.startsWith('warning:') && line.includes('split'));
  expect(warnings).toEqual(args.includes(sdPath()) ? [splitQkvWarning()] : []);
  return out;
}

/** A written module's update as a plain LoRA's readers apply it, α/k·up·down with k the down's rows, in float64; its rank. */
function readBack(tensors: ReturnType<typeof decodeSafetensors>['tensors'], name: string): { update: Dense; rank: number } {
  const down = tensors.get(`${name}.lora_down.weight`), up = tensors.get(`${name}.lora_up.weight`), alpha = tensors.get(`${name}.alpha`);
  expect(down && up && alpha, `${name}: a plain lora_down/lora_up/alpha`).toBeTruthy();
  const k = down!.shape[0];
  expect(down!.shape).toEqual([k, IN]);
  expect(up!.shape[1]).toBe(k);
  const p = product({ rows: up!.shape[0], cols: k, data: up!.values }, { rows: k, cols: IN, data: down!.values });
  const s = alpha!.values[0] / k;
  return { update: dense(p.rows, p.cols, (i, j) => s * p.data[i * p.cols + j]), rank: k };
}

/**
 * The file at `out` holds exactly `want`'s modules as plain LoRAs, under metadata no reader takes for
 * a split network, each within f32 rounding of the best approximation of its truth at the rank
 * written, or for those `exact` names (true: every one) of the truth itself. Returns each module's
 * written rank.
 */
function expectUpdates(out: string, want: Map<string, Dense>, exact: boolean | readonly string[]): Map<string, number> {
  const { tensors, metadata } = decodeSafetensors(readFileSync(out));
  // sd-scripts' load and ComfyUI read one pair per module; numbered parts or split_qkv metadata would change the scale they apply.
  expect([...tensors.keys()].sort()).toEqual([...want.keys()].flatMap((n) => [`${n}.alpha`, `${n}.lora_down.weight`, `${n}.lora_up.weight`]).sort());
  expect(metadata.ss_network_module).toBe('networks.lora');
  expect(metadata.ss_network_args ?? '').not.toMatch(/split/);
  const ranks = new Map<string, number>();
  for (const [name, truthOf] of want) {
    const { update, rank } = readBack(tensors, name);
    const error = Math.sqrt(frob2(minus(update, truthOf)));
    const optimum = exact === true || (exact !== false && exact.includes(name)) ? 0 : optimalError(truthOf, rank);
    const norm = Math.sqrt(frob2(truthOf));
    if (!(error <= optimum * (1 + 1e-3) + 1e-5 * norm)) {
      expect.fail(`${name} at rank ${rank}: error ${error} (${(100 * error / norm).toFixed(2)} % of the update), the best rank-${rank} error ${optimum}`);
    }
    ranks.set(name, rank);
  }
  return ranks;
}

const truths = (modules: Trained[], weight = 1) => new Map(modules.map((m) => [m.name, truth(m, weight)]));

describe('combine keeps a split module\'s whole update by default: its rank is its parts\' ranks together', () => {
  const methods: [string, string[]][] = [
    ['cat', []], ['svd', []], ['ties', ['--density', '1']], ['dare_linear', ['--density', '1']],
    ['dare_ties', ['--density', '1']], ['magnitude_prune', ['--density', '1']],
  ];
  // One adapter at weight 0.7 with nothing pruned: every method's result is 0.7·ΔW, held whole at the default rank.
  it.for(methods)('%s: sd-scripts split_qkv (rank 1 parts: qkv 3, linear1 4) at weight 0.7', async ([method, extra]) => {
    const out = await cli(['combine', '--adapter', sdPath(), '--weight', '0.7', '--method', method, ...extra]);
    const ranks = expectUpdates(out, truths(sdModules, 0.7), true);
    if (method !== 'cat') {
      // The default is the largest input rank, linear1's four parts of rank 1.
      expect(ranks.get(LINEAR1)).toBe(4);
      expect(decodeSafetensors(readFileSync(out)).metadata.loramerge_rank).toBe('4');
    } else {
      expect([ranks.get(QKV), ranks.get(LINEAR1), ranks.get(PROJ)]).toEqual([3, 4, 1]);
    }
  });

  it.for(methods)('%s: blissful split_dims (rank 3 parts under use_rslora_flag: qkv 9, linear1 12) at weight 0.7', async ([method, extra]) => {
    const out = await cli(['combine', '--adapter', blPath(), '--weight', '0.7', '--method', method, ...extra]);
    const ranks = expectUpdates(out, truths(blModules, 0.7), true);
    expect(ranks.get(LINEAR1)).toBe(12);
  });

  it('svd of both (weights 1 and -0.6) by default at the largest input rank, 12: qkv\'s 3 + 9 held exactly, linear1\'s 4 + 12 (13, its inputs) its best rank 12', async () => {
    const out = await cli(['combine', '--adapter', sdPath(), '--adapter', blPath(), '--weight', '-0.6', '--method', 'svd']);
    const sum = (a: Trained, b: Trained) => minus(truth(a), truth(b, 0.6));
    const want = new Map([[QKV, sum(sdQkv, blQkv)], [LINEAR1, sum(sdLinear1, blLinear1)], [PROJ, truth(sdProj)]]);
    const ranks = expectUpdates(out, want, [QKV, PROJ]);
    expect([ranks.get(QKV), ranks.get(LINEAR1), ranks.get(PROJ)]).toEqual([12, 12, 12]);
  });

  it('svd of both at --rank 5: each module the best rank-5 approximation of the sum at the parts\' scales', async () => {
    const out = await cli(['combine', '--adapter', sdPath(), '--adapter', blPath(), '--weight', '-0.6', '--method', 'svd', '--rank', '5']);
    const want = new Map([[QKV, minus(truth(sdQkv), truth(blQkv, 0.6))], [LINEAR1, minus(truth(sdLinear1), truth(blLinear1, 0.6))], [PROJ, truth(sdProj)]]);
    const ranks = expectUpdates(out, want, false);
    expect(ranks.get(QKV)).toBe(5);
    // Truncated indeed: the sum's rank is 12 there, so the optimum keeps something out.
    expect(optimalError(want.get(QKV)!, 5)).toBeGreaterThan(0.01 * Math.sqrt(frob2(want.get(QKV)!)));
  });
});

describe('resize counts a split module\'s rank as its parts\' together, and writes a plain LoRA at α/k', () => {
  it('--rank 2 on sd-scripts split_qkv: qkv and linear1 cut to their best rank 2, proj zero-filled', async () => {
    const out = await cli(['resize', '--adapter', sdPath(), '--rank', '2']);
    const ranks = expectUpdates(out, truths(sdModules), false);
    expect([...ranks.values()]).toEqual([2, 2, 2]);
  });

  it('--sv-ratio 1000 on sd-scripts split_qkv: every module keeps its whole update, at its own rank n·r', async () => {
    const out = await cli(['resize', '--adapter', sdPath(), '--sv-ratio', '1000']);
    const ranks = expectUpdates(out, truths(sdModules), true);
    expect([ranks.get(QKV), ranks.get(LINEAR1), ranks.get(PROJ)]).toEqual([3, 4, 1]);
    expect(decodeSafetensors(readFileSync(out)).metadata.ss_training_comment).toMatch(/^Dynamic resize with sv_ratio: 1000 from mixed ranks/);
  });

  it('--sv-fro 1 on blissful split_dims (no rsLoRA): the whole update at rank 9 and 12, without the split_dims network_args', async () => {
    const out = await cli(['resize', '--adapter', plPath(), '--sv-fro', '1']);
    const ranks = expectUpdates(out, truths(plModules), true);
    expect([ranks.get(QKV), ranks.get(LINEAR1)]).toEqual([9, 12]);
  });

  it('--rank 9 on blissful split_dims under use_rslora_flag: qkv exact, linear1 its best rank 9, at α/k; the comment names the modules\' ranks', async () => {
    const out = await cli(['resize', '--adapter', blPath(), '--rank', '9']);
    const ranks = expectUpdates(out, truths(blModules), false);
    expect([ranks.get(QKV), ranks.get(LINEAR1)]).toEqual([9, 9]);
    const { metadata } = decodeSafetensors(readFileSync(out));
    expect(metadata.ss_training_comment).toMatch(/^dimension is resized from mixed ranks to 9/);
    // The split and the rsLoRA scale are the input's; the patterns that chose its modules stay.
    expect(JSON.parse(metadata.ss_network_args)).toEqual({ include_patterns: "['.*_attn_qkv', '.*linear1']", exclude_patterns: "['.*']" });
  });

  it('--rank 2 on a blissful LoRA under use_rslora_flag (no split): α/k output without use_rslora in its network_args', async () => {
    const out = await cli(['resize', '--adapter', rsPath(), '--rank', '2']);
    // A plain reader's α/k·up·down is the best rank-2 approximation of the input's update at α/√3.
    const ranks = expectUpdates(out, truths(rsModules), false);
    expect([ranks.get(QKV), ranks.get(PROJ)]).toEqual([2, 2]);
    const { tensors, metadata } = decodeSafetensors(readFileSync(out));
    expect(tensors.has('use_rslora_flag')).toBe(false);
    expect(JSON.parse(metadata.ss_network_args)).toEqual({ include_patterns: "['.*_attn_qkv', '.*_attn_proj']", exclude_patterns: "['.*']" });
  });
});

describe('extract of a Flux difference shaped as split_qkv training leaves it: plain LoRAs under BFL\'s names', () => {
  it('--rank 4: qkv (rank 3) and linear1 (rank 4) exact as lora_unet_ modules, no split metadata', async () => {
    const qkvRows = 3 * H, linear1Rows = 3 * H + MLP;
    // BFL's flux1-dev.safetensors names (no prefix), values as stored in f32, so that the difference
    // the test expects is the one the files hold.
    const layers = [['double_blocks.0.img_attn.qkv.weight', qkvRows, truth(sdQkv)], ['single_blocks.0.linear1.weight', linear1Rows, truth(sdLinear1)]] as const;
    const f32 = (x: ArrayLike<number>) => Float64Array.from(Float32Array.from(x));
    const base = layers.map(([, rows]) => f32(randomValues(rows * IN, rand, 0.05)));
    const tuned = layers.map(([, , delta], i) => f32(base[i].map((x, j) => x + delta.data[j])));
    const modelDir = temp.make({
      'flux1-dev.safetensors': buildSafetensors(layers.map(([name, rows], i) => t(name, [rows, IN], base[i]))),
      'flux1-tuned.safetensors': buildSafetensors(layers.map(([name, rows], i) => t(name, [rows, IN], tuned[i]))),
    });
    const out = await cli(['extract', '--base', join(modelDir, 'flux1-dev.safetensors'), '--tuned', join(modelDir, 'flux1-tuned.safetensors'), '--rank', '4']);
    const want = new Map(layers.map(([, rows], i) => [i === 0 ? QKV : LINEAR1, dense(rows, IN, (r, c) => tuned[i][r * IN + c] - base[i][r * IN + c])]));
    const ranks = expectUpdates(out, want, true);
    expect([...ranks.values()]).toEqual([4, 4]);
  });
});
