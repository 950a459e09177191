/**
 * OFT files trained by OneTrainer (PeftType.OFT_2: modules/module/LoRAModule.py `OFTModule`,
 * modules/module/oft_utils.py `OFTRotationModule`), saved in its KOHYA/LEGACY names with no config:
 * `<module>.oft_R.weight` (r, b(b−1)/2), r = in/b blocks of the layer's inputs (a Conv2d's
 * in·kh·kw), or one row with oft_block_share; Scaled OFT adds the buffer `<module>.oft_R.scaled_oft`,
 * torch.tensor(True), which the saver's `.to(dtype)` turns into 1 of the output dtype when one is set.
 * The header is OneTrainer's (_create_safetensors_header): modelspec.*, ot_branch, ot_revision
 * (`git rev-parse --short HEAD` of its checkout, or "git not installed").
 *
 * The truth is OneTrainer's forward written plainly in float64: Q = skew(row) (÷ 2·√(b − 1) when
 * scaled), R = I + 2Q + 2Q² + 2Q³ + Q⁴ (its 5-term Cayley–Neumann series, always on; its first four
 * OFT commits, 1336b9b8 to 86ae3811 of 14–15 November 2025, summed I + 2Q + 2Q² + 2Q³ + 2Q⁴); a Linear
 * rotates its input, einsum("...rk,rkc->...rc", x, R), so W'[o, kb + i] = Σ_j W[o, kb + j]·R[i][j];
 * a Conv2d rotates its weight, einsum("ork,rkc->orc", W, R): W'[o, kb + c] = Σ_j W[o, kb + j]·R[j][c].
 * A user weight s blends each block, I + s·(R − I).
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { errorLines, listDir, runCli } from './helpers/cli.js';
import { FLUX, fluxBflTensors, tensor } from './helpers/diffusion-fixtures.js';
import { buildSafetensors, seededRandom, tempDirs, type FixtureTensor } from './helpers/fixtures.js';
import { mergeBackends, mergeInMemory, refusalsInMemory } from './helpers/merge-backends.js';
import { expectWeightsMerged } from './helpers/merge-truth.js';
import { otRotated } from './helpers/onetrainer-oft-truth.js';
import { libraryWording } from '../src/library-wording.js';
import { asksOneTrainerCoft } from '../src/formats/algorithms/onetrainer-oft.js';
import { pageWording } from '../demo/page-wording.js';

const rand = seededRandom(20261207);
const OT_HEADER = {
  'modelspec.sai_model_spec': '1.0.0',
  'modelspec.architecture': 'stable-diffusion-v1/lora',
  'modelspec.implementation': 'https://github.com/huggingface/diffusers',
  'modelspec.title': 'Stable Diffusion 1.5 LoRA',
  'modelspec.date': '2026-12-07',
  ot_branch: 'master',
  ot_revision: '23df3832',
};

// An SD 1.5 UNet's layers (diffusers names, as a plain safetensors file holds them), small.
const TO_Q = 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q';
const TO_K = 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k';
const CONV = 'down_blocks.0.resnets.0.conv1';
const PROJ_IN = 'down_blocks.0.attentions.0.proj_in';
const base: FixtureTensor[] = [
  tensor(rand, `${TO_Q}.weight`, [8, 12], 'F16'),
  tensor(rand, `${TO_K}.weight`, [8, 12], 'F16'),
  tensor(rand, `${CONV}.weight`, [4, 2, 3, 3], 'F16'),
  tensor(rand, `${CONV}.bias`, [4], 'F16'),
  tensor(rand, `${PROJ_IN}.weight`, [8, 8, 1, 1], 'F16'),
  tensor(rand, `${PROJ_IN}.bias`, [8], 'F16'),
];
const kohya = (path: string) => `lora_unet_${path.replace(/\./g, '_')}`;

/** One trained module: its rows of b(b−1)/2 values, over a layer of `inF` inputs (in·kh·kw). */
interface Trained { path: string; rows: number; b: number; inF: number; conv: boolean; scaled?: 'BOOL' | 'BF16'; spread: number }
const TRAINED: Trained[] = [
  { path: TO_Q, rows: 3, b: 4, inF: 12, conv: false, spread: 0.3 }, // block size 4, 3 blocks
  { path: TO_K, rows: 1, b: 3, inF: 12, conv: false, scaled: 'BOOL', spread: 0.4 }, // oft_block_share: one block for all 4, Scaled OFT saved in its own dtype
  { path: CONV, rows: 3, b: 6, inF: 18, conv: true, scaled: 'BF16', spread: 0.5 }, // a 3×3 conv, 2·9 inputs; the marker saved as bf16 1
  { path: PROJ_IN, rows: 2, b: 4, inF: 8, conv: true, spread: 0.2 }, // SD 1.5's 1×1 proj_in is a Conv2d
];
const otFile: FixtureTensor[] = TRAINED.flatMap((m) => [
  tensor(rand, `${kohya(m.path)}.oft_R.weight`, [m.rows, (m.b * (m.b - 1)) / 2], 'BF16', m.spread),
  ...(m.scaled ? [{ name: `${kohya(m.path)}.oft_R.scaled_oft`, dtype: m.scaled, shape: [], data: [1] } as FixtureTensor] : []),
]);
const FILE = 'oft_sd15_OneTrainer.safetensors';

const values = (tensors: readonly FixtureTensor[], name: string) => Float64Array.from(tensors.find((t) => t.name === name)!.data as ArrayLike<number>);

function otTruth(file: readonly FixtureTensor[], s: number, trained = TRAINED, weights = base, coftEps?: number, first = false): Map<string, Float64Array> {
  const truth = new Map<string, Float64Array>();
  for (const m of trained) {
    const vec = values(file, `${kohya(m.path)}.oft_R.weight`);
    const out = otRotated(values(weights, `${m.path}.weight`), vec, { ...m, scaled: m.scaled !== undefined }, s, coftEps, first);
    truth.set(`${m.path}.weight`, out);
  }
  return truth;
}


const backends = mergeBackends({ cpu: 'both' });
const adapter = (tensors: FixtureTensor[], weight = 1, metadata: Record<string, string> = OT_HEADER) => [{ name: FILE, files: { [FILE]: buildSafetensors(tensors, metadata) }, weight }];

describe.each(['cpu (js)', 'cpu (wasm)', 'webgpu'])('%s', (name) => {
  it.for([1, 0.5, -1])('merges OneTrainer OFT (Linear, block share, Scaled OFT, 3×3 and 1×1 Conv2d) at weight %d as OneTrainer applies it', async (weight, ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const { tensors } = await mergeInMemory({ backend, base: { 'v1-5-pruned.safetensors': buildSafetensors(base) }, adapters: adapter(otFile, weight) });
    expectWeightsMerged(tensors, otTruth(otFile, weight), base, `weight ${weight}`);
  });

  it('merges a Flux fused qkv module (OneTrainer\'s KOHYA names on the BFL checkpoint) rotating its inputs', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const flux = fluxBflTensors(rand, 'BF16');
    const trained: Trained[] = [{ path: 'double_blocks.0.img_attn.qkv', rows: 2, b: 4, inF: FLUX.h, conv: false, spread: 0.3 }];
    const file = [tensor(rand, 'lora_unet_double_blocks_0_img_attn_qkv.oft_R.weight', [2, 6], 'BF16', 0.3)];
    const { tensors } = await mergeInMemory({ backend, base: { 'flux1-dev.safetensors': buildSafetensors(flux) }, adapters: adapter(file, 1, { ...OT_HEADER, 'modelspec.architecture': 'Flux.1-dev/lora' }) });
    expectWeightsMerged(tensors, otTruth(file, 1, trained, flux), flux, 'flux');
  });
});

describe('COFT, from a file saved with its training config (ot_config)', () => {
  const OT_CONFIG = { __version: 9, training_method: 'LORA', model_type: 'STABLE_DIFFUSION_15', peft_type: 'OFT_2', oft_block_size: 4, oft_coft: true, coft_eps: 0.2, oft_block_share: false };
  // COFT was removed before Scaled OFT came: its files hold no scaled_oft.
  const trained = TRAINED.filter((m) => !m.scaled);
  const file = otFile.filter((x) => trained.some((m) => x.name.startsWith(`${kohya(m.path)}.`)));
  it.for(['cpu (js)', 'webgpu'])('%s: projects each Linear\'s blocks as OneTrainer\'s forward did, not its Conv2d\'s', async (name, ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    // Saved by 7c255ac4 (27 November 2025), a OneTrainer with COFT.
    const { tensors } = await mergeInMemory({ backend, base: { 'v1-5-pruned.safetensors': buildSafetensors(base) }, adapters: adapter(file, 1, { ...OT_HEADER, ot_revision: '7c255ac4', ot_config: JSON.stringify(OT_CONFIG) }) });
    const truth = otTruth(file, 1, trained, base, 0.2);
    expectWeightsMerged(tensors, truth, base, 'coft');
  });
});

describe('COFT as the user says (oneTrainerCoft, --onetrainer-coft), for a file saved without its training config', () => {
  const trained = TRAINED.filter((m) => !m.scaled);
  const file = otFile.filter((x) => trained.some((m) => x.name.startsWith(`${kohya(m.path)}.`)));
  const merge = (metadata: Record<string, string>, oneTrainerCoft: boolean | number, name = 'cpu (js)') =>
    mergeInMemory({ backend: backends[name]!, base: { 'v1-5-pruned.safetensors': buildSafetensors(base) }, adapters: [{ ...adapter(file, 1, metadata)[0], oneTrainerCoft }] });
  const coftConfig = (extra: Record<string, unknown>) => JSON.stringify({ __version: 9, training_method: 'LORA', model_type: 'STABLE_DIFFUSION_15', peft_type: 'OFT_2', oft_block_size: 4, oft_block_share: false, ...extra });
  it.for(['cpu (js)', 'webgpu'])('%s: saved by 7c255ac4 (COFT period): 0.2 projects each Linear at coft_eps 0.2, false merges unprojected', async (name, ctx) => {
    if (!backends[name]) return ctx.skip();
    const header = { ...OT_HEADER, ot_revision: '7c255ac4' };
    expectWeightsMerged((await merge(header, 0.2, name)).tensors, otTruth(file, 1, trained, base, 0.2), base, 'user coft 0.2');
    expectWeightsMerged((await merge(header, false, name)).tensors, otTruth(file, 1, trained, base), base, 'user coft off');
  });
  it('true is COFT at OneTrainer\'s default coft_eps: the same merge as a config with oft_coft and no coft_eps', async () => {
    const user = await merge({ ...OT_HEADER, ot_revision: 'b46986d6' }, true);
    const config = await merge({ ...OT_HEADER, ot_revision: 'b46986d6', ot_config: coftConfig({ oft_coft: true }) }, false);
    const unprojected = await merge({ ...OT_HEADER, ot_revision: 'b46986d6' }, false);
    const to = `${TO_Q}.weight`;
    expect([...user.tensors.get(to)!.values]).toEqual([...config.tensors.get(to)!.values]);
    expect([...user.tensors.get(to)!.values]).not.toEqual([...unprojected.tensors.get(to)!.values]);
  });
  it('a first-series file (86ae3811) with false: the first series, unprojected', async () => {
    expectWeightsMerged((await merge({ ...OT_HEADER, ot_revision: '86ae3811' }, false)).tensors, otTruth(file, 1, trained, base, undefined, true), base, 'first series, user off');
  });
  it('the file\'s own ot_config wins over the user\'s word, and a file from after COFT ignores it', async () => {
    expectWeightsMerged((await merge({ ...OT_HEADER, ot_revision: '7c255ac4', ot_config: coftConfig({ oft_coft: false, coft_eps: 0.2 }) }, 0.2)).tensors, otTruth(file, 1, trained, base), base, 'config off wins');
    expectWeightsMerged((await merge({ ...OT_HEADER, ot_revision: 'e928ddab' }, 0.2)).tensors, otTruth(file, 1, trained, base), base, 'after COFT');
  });
  it('a file from after COFT (or with Scaled OFT) whose ot_config says oft_coft true merges unprojected: OneTrainer\'s forward there has no COFT', async () => {
    const config = coftConfig({ oft_coft: true, coft_eps: 0.2 });
    expectWeightsMerged((await merge({ ...OT_HEADER, ot_revision: 'e928ddab', ot_config: config }, false)).tensors, otTruth(file, 1, trained, base), base, 'after COFT, config on');
    const scaledOnly = TRAINED.filter((m) => m.scaled);
    const scaledFile = otFile.filter((x) => scaledOnly.some((m) => x.name.startsWith(`${kohya(m.path)}.`)));
    const { tensors } = await mergeInMemory({ backend: backends['cpu (js)']!, base: { 'v1-5-pruned.safetensors': buildSafetensors(base) }, adapters: adapter(scaledFile, 1, { ...OT_HEADER, ot_revision: '23df3832', ot_config: config }) });
    expectWeightsMerged(tensors, otTruth(scaledFile, 1, scaledOnly), base, 'Scaled OFT, config on');
  });
  it('does not stand in for a missing ot_revision', async () => {
    const { ot_revision: _, ...noRevision } = OT_HEADER;
    const lines = await refusalsInMemory({ backend: backends['cpu (js)']!, base: { 'v1-5-pruned.safetensors': buildSafetensors(base) }, adapters: [{ ...adapter(file, 1, noRevision)[0], oneTrainerCoft: false }] });
    expect(lines[0]).toMatch(/is OneTrainer's OFT in a file without OneTrainer's ot_revision metadata/);
  });
  it('asksOneTrainerCoft (the page\'s card offers the setting by it) says so exactly where the refusal asks for it', async () => {
    const names = otFile.map((t) => t.name);
    const header = (extra: Record<string, string>) => ({ ...OT_HEADER, ...extra });
    const unscaled = names.filter((n) => !n.endsWith('scaled_oft')).filter((n) => !TRAINED.some((m) => m.scaled && n.startsWith(kohya(m.path))));
    const cases: [Record<string, string>, readonly string[], boolean][] = [
      [header({ ot_revision: '7c255ac4' }), unscaled, true], // COFT's time, no config: asks
      [header({ ot_revision: '86ae3811' }), unscaled, true], // the first series had COFT too
      [header({ ot_revision: '7c255ac4', ot_config: coftConfig({ oft_coft: false }) }), unscaled, false], // its config says
      [header({ ot_revision: '7c255ac4', ot_config: 'not json' }), unscaled, true], // a config that is none says nothing
      [header({ ot_revision: 'e928ddab' }), unscaled, false], // after COFT
      [header({ ot_revision: 'git not installed' }), unscaled, false], // refused for its revision, which no setting helps
      [header({ ot_revision: '7c255ac4' }), names.filter((n) => TRAINED.some((m) => m.scaled && n.startsWith(kohya(m.path)))), false], // Scaled OFT modules only
      [header({ ot_revision: '7c255ac4' }), ['lora_unet_x.lora_down.weight', 'lora_unet_x.lora_up.weight'], false], // no OFT
    ];
    for (const [metadata, tensorNames, asks] of cases) expect(asksOneTrainerCoft(metadata, tensorNames), JSON.stringify([metadata.ot_revision, metadata.ot_config, tensorNames.length])).toBe(asks);
    // Each case that asks is refused without the setting and merged with it.
    const asked = await refusalsInMemory({ backend: backends['cpu (js)']!, base: { 'v1-5-pruned.safetensors': buildSafetensors(base) }, adapters: adapter(otFile.filter((t) => unscaled.includes(t.name)), 1, header({ ot_revision: '7c255ac4', ot_config: 'not json' })) });
    expect(asked[0]).toMatch(/--onetrainer-coft EPS$/m);
  });
  it('the refusal without it, in the library\'s and the page\'s words', async () => {
    const lines = await refusalsInMemory({ backend: backends['cpu (js)']!, base: { 'v1-5-pruned.safetensors': buildSafetensors(base) }, adapters: adapter(file, 1, { ...OT_HEADER, ot_revision: '7c255ac4' }) });
    expect(libraryWording(lines[0])).toMatch(/, or, knowing how it was trained, merge it with oneTrainerCoft: false, true \(coft_eps 1e-4, OneTrainer's default\) or the run's coft_eps \(adapters: \[\{ source, oneTrainerCoft \}\]\)$/m);
    expect(pageWording(lines[0])).toMatch(/, or, knowing how it was trained, choose “off”, “on, coft_eps 1e-4 \(OneTrainer’s default\)” or “on, the run’s coft_eps” under “OneTrainer COFT” on the adapter’s card$/m);
  });
});

describe('OneTrainer\'s first series, told by the file\'s ot_revision', () => {
  // OneTrainer's first four OFT commits (14–15 November 2025) had no Scaled OFT, and had COFT.
  const trained = TRAINED.filter((m) => !m.scaled);
  const file = otFile.filter((x) => trained.some((m) => x.name.startsWith(`${kohya(m.path)}.`)));
  const config = (coft: boolean) => JSON.stringify({ __version: 9, training_method: 'LORA', model_type: 'STABLE_DIFFUSION_15', peft_type: 'OFT_2', oft_block_size: 4, oft_coft: coft, coft_eps: 0.2, oft_block_share: false });
  it.for(['cpu (js)', 'cpu (wasm)', 'webgpu'].flatMap((name) => [1, -0.5].map((weight) => [name, weight] as const)))('%s, weight %d: saved by 607470f7 (14 November 2025), I + 2Q + 2Q² + 2Q³ + 2Q⁴', async ([name, weight], ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const { tensors } = await mergeInMemory({ backend, base: { 'v1-5-pruned.safetensors': buildSafetensors(base) }, adapters: adapter(file, weight, { ...OT_HEADER, 'modelspec.date': '2025-11-14', ot_revision: '607470f7', ot_config: config(false) }) });
    expectWeightsMerged(tensors, otTruth(file, weight, trained, base, undefined, true), base, `first series, weight ${weight}`);
  });
  it('with COFT on (1336b9b8\'s config): each Linear projected, then its first series; a full 40-digit revision is the same commit', async () => {
    const { tensors } = await mergeInMemory({ backend: backends['cpu (js)']!, base: { 'v1-5-pruned.safetensors': buildSafetensors(base) }, adapters: adapter(file, 1, { ...OT_HEADER, ot_revision: '1336b9b894dac621647c49118e58a4009fe3ecef', ot_config: config(true) }) });
    expectWeightsMerged(tensors, otTruth(file, 1, trained, base, 0.2, true), base, 'first series with coft');
  });
  it('a Scaled OFT file (OneTrainer from 29 May 2026) says its series by its marker, with no revision', async () => {
    const scaled = TRAINED.filter((m) => m.scaled);
    const only = otFile.filter((x) => scaled.some((m) => x.name.startsWith(`${kohya(m.path)}.`)));
    const { tensors } = await mergeInMemory({ backend: backends['cpu (js)']!, base: { 'v1-5-pruned.safetensors': buildSafetensors(base) }, adapters: adapter(only, 1, {}) });
    expectWeightsMerged(tensors, otTruth(only, 1, scaled), base, 'scaled, no header');
  });
});

describe('refused where the file does not say which OneTrainer saved it', () => {
  const unscaled = otFile.filter((x) => !x.name.includes(kohya(TO_K)) && !x.name.includes(kohya(CONV)));
  const refusals = (metadata: Record<string, string>, tensors = unscaled) => refusalsInMemory({ backend: backends['cpu (js)']!, base: { 'v1-5-pruned.safetensors': buildSafetensors(base) }, adapters: adapter(tensors, 1, metadata) });
  const q = kohya(TO_Q);
  const { ot_revision: _, ...noRevision } = OT_HEADER;
  it.for<[string, Record<string, string>, string]>([
    ['no ot_revision (metadata stripped)', noRevision, 'without OneTrainer\'s ot_revision metadata'],
    ['no metadata at all', {}, 'without OneTrainer\'s ot_revision metadata'],
    ['ot_revision "git not installed" (OneTrainer outside a git checkout)', { ...OT_HEADER, ot_revision: 'git not installed' }, 'whose ot_revision metadata names no OneTrainer commit'],
  ])('%s', async ([, metadata, said]) => {
    const lines = await refusals(metadata);
    expect(lines[0]).toMatch(new RegExp(`module "${q}" is OneTrainer's OFT in a file ${said}: OneTrainer built its rotations as I \\+ 2Q \\+ 2Q² \\+ 2Q³ \\+ 2Q⁴ in its first OFT commits \\(14–15 November 2025\\) and as I \\+ 2Q \\+ 2Q² \\+ 2Q³ \\+ Q⁴ since b46986d6, and the file does not say which; add the OneTrainer commit it was trained with`));
    expect(lines.join('\n')).toContain(kohya(PROJ_IN));
  });
  it.for([['86ae3811', 'first series'], ['b46986d6', 'current series'], ['3374137f', 'the last with COFT']])('saved by %s (%s, with COFT) without its training config', async ([revision]) => {
    const lines = await refusals({ ...OT_HEADER, ot_revision: revision });
    expect(lines[0]).toMatch(new RegExp(`module "${q}" is OneTrainer's OFT saved by a OneTrainer of 14 November 2025 – 10 May 2026 \\(its ot_revision\\), which had COFT \\(oft_coft, off by default\\), without its training config \\(ot_config\\): whether COFT projected its blocks cannot be told; add ot_config .* to the file's metadata, or, knowing how it was trained, merge it with --onetrainer-coft off, --onetrainer-coft on \\(coft_eps 1e-4, OneTrainer's default\\) or --onetrainer-coft EPS$`, 'm'));
  });
  // A training config OneTrainer cannot have written (hand-edited, cut, or json.dumps' NaN) is no
  // config and no COFT default: the merge would guess (it read such a file as saved without one, or
  // at coft_eps 1e-4 where it said "0.2", or unprojected where oft_coft was "true").
  it.for<[string, string, string]>([
    ['cut short', '{"peft_type": "OFT_2", "oft_coft": tr', 'is not JSON'],
    ['coft_eps NaN as json.dumps writes it', '{"peft_type": "OFT_2", "oft_coft": true, "coft_eps": NaN}', 'is not JSON'],
    ['an array', '[{"peft_type": "OFT_2", "oft_coft": true}]', 'is not a JSON object'],
    ['a LoRA run\'s config', '{"peft_type": "LORA", "oft_coft": false}', 'does not name peft_type "OFT_2"'],
    ['oft_coft a string', '{"peft_type": "OFT_2", "oft_coft": "true"}', 'holds an oft_coft that is not true or false'],
    ['coft_eps a string', '{"peft_type": "OFT_2", "oft_coft": true, "coft_eps": "0.2"}', 'turns oft_coft on with a coft_eps that is not a positive number'],
    ['coft_eps negative', '{"peft_type": "OFT_2", "oft_coft": true, "coft_eps": -0.2}', 'turns oft_coft on with a coft_eps that is not a positive number'],
  ])('an unreadable ot_config (%s) in a file from the COFT period is refused, naming it', async ([, config, why]) => {
    const lines = await refusals({ ...OT_HEADER, ot_revision: '7c255ac4', ot_config: config });
    expect(lines[0]).toMatch(new RegExp(`module "${q}" is OneTrainer's OFT saved by a OneTrainer of 14 November 2025 – 10 May 2026 \\(its ot_revision\\), which had COFT, and the file's training config \\(ot_config metadata\\) ${why.replace(/[()"]/g, '\\$&')}.*: whether and how COFT projected its blocks cannot be told; fix ot_config`, 'm'));
  });
  it('an unreadable ot_config does not matter in a file saved after COFT, and the user\'s word stands in for it', async () => {
    expect(await refusals({ ...OT_HEADER, ot_revision: 'e928ddab', ot_config: '{"peft_type": "OFT_2", "oft_coft": "yes"' })).toEqual([]);
    const lines = await refusalsInMemory({ backend: backends['cpu (js)']!, base: { 'v1-5-pruned.safetensors': buildSafetensors(base) }, adapters: [{ ...adapter(unscaled, 1, { ...OT_HEADER, ot_revision: '7c255ac4', ot_config: '[]' })[0], oneTrainerCoft: false }] });
    expect(lines).toEqual([]);
  });
  it('merges with e928ddab, which removed COFT, with no config', async () => {
    expect(await refusals({ ...OT_HEADER, ot_revision: 'e928ddab' })).toEqual([]);
  });
  it('a Scaled OFT marker in a file whose ot_revision is from before Scaled OFT', async () => {
    const lines = await refusals({ ...OT_HEADER, ot_revision: '7c255ac4', ot_config: '{"peft_type":"OFT_2","oft_coft":false}' }, otFile);
    for (const m of [kohya(TO_K), kohya(CONV)]) {
      expect(lines.join('\n')).toMatch(new RegExp(`module "${m}" has oft_R.scaled_oft \\(Scaled OFT, OneTrainer from 29 May 2026\\), but the file's ot_revision is a OneTrainer commit from before it`));
    }
    expect(lines.join('\n')).not.toContain(`"${kohya(TO_Q)}"`);
  });
});

describe('refused, naming the module', () => {
  const refusals = (tensors: FixtureTensor[]) => refusalsInMemory({ backend: backends['cpu (js)']!, base: { 'v1-5-pruned.safetensors': buildSafetensors(base) }, adapters: adapter(tensors) });
  const q = kohya(TO_Q);
  const row = (rows: number, n: number) => tensor(rand, `${q}.oft_R.weight`, [rows, n], 'BF16', 0.1);

  it('an alpha beside oft_R, which OneTrainer neither writes nor reads for OFT', async () => {
    expect(await refusals([row(3, 6), { name: `${q}.alpha`, dtype: 'BF16', shape: [], data: [1] }])).toEqual([
      expect.stringMatching(new RegExp(`module "${q}" has an alpha beside OneTrainer's OFT tensors \\(oft_R\\), which OneTrainer neither writes nor reads for OFT; remove the alpha tensor`)),
    ]);
  });
  it('a scaled_oft marker holding 0', async () => {
    expect(await refusals([row(3, 6), { name: `${q}.oft_R.scaled_oft`, dtype: 'BOOL', shape: [], data: [0] }])).toEqual([
      expect.stringMatching(new RegExp(`module "${q}" has oft_R.scaled_oft holding 0: OneTrainer writes that marker as True \\(1\\) for Scaled OFT`)),
    ]);
  });
  it('blocks that do not cover the layer\'s inputs (2 blocks of 4 on 12 inputs)', async () => {
    expect(await refusals([row(2, 6)])).toEqual([expect.stringMatching(new RegExp(`module "${q}": ΔW \\(8, 8\\) does not fit base ${TO_Q}\\.weight \\(8, 12\\): ΔW has 8 inputs, the base 12`))]);
  });
  it('one shared block whose size does not divide the layer\'s inputs (5 into 12)', async () => {
    expect(await refusals([row(1, 10)])).toEqual([expect.stringMatching(new RegExp(`OFT module "${q}": oft_R.weight \\(1, 10\\) holds 1 block of 5, which do not cover the layer's 12 inputs`))]);
  });
  it.for<[string, FixtureTensor]>([
    ['dora_scale (DoRA-OFT of forks and ComfyUI-OFTv2)', tensor(rand, `${q}.dora_scale`, [8, 1], 'BF16')],
    ['oft_R.clipped_oft', { name: `${q}.oft_R.clipped_oft`, dtype: 'BF16', shape: [], data: [1] }],
    ['oft_R.cans_oft', { name: `${q}.oft_R.cans_oft`, dtype: 'BOOL', shape: [], data: [1] }],
  ])('another tool\'s OFT variant: %s', async ([, extra]) => {
    const [line, ...rest] = await refusals([row(3, 6), extra]);
    expect(rest).toEqual([]);
    expect(line).toContain(extra.name);
  });
  it('a row that holds no b(b−1)/2 values', async () => {
    expect(await refusals([row(3, 5)])).toEqual([expect.stringMatching(new RegExp(`module "${q}": oft_R.weight \\(3, 5\\) does not hold b\\(b−1\\)/2 values per block, as OneTrainer's OFT saves it`))]);
  });
  it('PEFT\'s own names (base_model.model.…) without adapter_config.json', async () => {
    const peft = 'base_model.model.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q';
    expect((await refusals([tensor(rand, `${peft}.oft_R.weight`, [3, 6], 'F32', 0.1)])).join('\n')).toMatch(/looks like a PEFT adapter but adapter_config\.json is missing/);
  });
});

describe('the command line', () => {
  const dirs = tempDirs();
  afterAll(() => dirs.removeAll());
  const BASE = 'v1-5-pruned.safetensors';

  it('--dry-run plans each module as OneTrainer\'s OFT on its tensor', async () => {
    const dir = dirs.make({ [BASE]: buildSafetensors(base), [FILE]: buildSafetensors(otFile, OT_HEADER) });
    const result = await runCli(['merge', '--base', join(dir, BASE), '--adapter', join(dir, FILE), '--weight', '0.5', '--out', join(dir, 'merged.safetensors'), '--dry-run']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout + result.stderr).toMatch(/down_blocks\.0\.resnets\.0\.conv1\.weight \[4×2×3×3\] out-in ← lora_unet_down_blocks_0_resnets_0_conv1 OFT \(OneTrainer\) scale=0\.5\n/);
  });

  it('refuses a file without ot_revision in one line, writing nothing', async () => {
    const dir = dirs.make({ [BASE]: buildSafetensors(base), [FILE]: buildSafetensors(otFile.filter((x) => x.name.startsWith(kohya(TO_Q))), {}) });
    const result = await runCli(['merge', '--base', join(dir, BASE), '--adapter', join(dir, FILE), '--out', join(dir, 'merged.safetensors'), '--backend', 'cpu']);
    expect(result.code).not.toBe(0);
    expect(errorLines(result.stderr)).toEqual([expect.stringMatching(/module "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q" is OneTrainer's OFT in a file without OneTrainer's ot_revision metadata: .* add the OneTrainer commit it was trained with .* as ot_revision to the file's metadata$/)]);
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(listDir(dir).sort()).toEqual([BASE, FILE].sort());
  });

  it('--onetrainer-coft says how a file of the COFT period without its config was trained', async () => {
    const unscaled = otFile.filter((x) => x.name.startsWith(kohya(TO_Q)));
    const dir = dirs.make({ [BASE]: buildSafetensors(base), [FILE]: buildSafetensors(unscaled, { ...OT_HEADER, ot_revision: '7c255ac4' }) });
    const args = ['merge', '--base', join(dir, BASE), '--adapter', join(dir, FILE), '--out', join(dir, 'merged.safetensors'), '--backend', 'cpu'];
    const refused = await runCli(args);
    expect(refused.code).not.toBe(0);
    expect(errorLines(refused.stderr)).toEqual([expect.stringMatching(/module "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q" is OneTrainer's OFT saved by a OneTrainer of 14 November 2025 – 10 May 2026 .* or, knowing how it was trained, merge it with --onetrainer-coft off, --onetrainer-coft on \(coft_eps 1e-4, OneTrainer's default\) or --onetrainer-coft EPS$/)]);
    expect(listDir(dir).sort()).toEqual([BASE, FILE].sort());
    const merged = await runCli([...args, '--onetrainer-coft', '0.2']);
    expect(merged.code, merged.stderr).toBe(0);
    const bad = await runCli([...args, '--onetrainer-coft', 'yes']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/--onetrainer-coft must be on, off or the run's coft_eps \(a number above 0\), not "yes"/);
  });

  it('refuses an alpha beside oft_R in one line, writing nothing', async () => {
    const dir = dirs.make({ [BASE]: buildSafetensors(base), [FILE]: buildSafetensors([...otFile, { name: `${kohya(TO_Q)}.alpha`, dtype: 'BF16', shape: [], data: [4] }], OT_HEADER) });
    const result = await runCli(['merge', '--base', join(dir, BASE), '--adapter', join(dir, FILE), '--out', join(dir, 'merged.safetensors'), '--backend', 'cpu']);
    expect(result.code).not.toBe(0);
    expect(errorLines(result.stderr)).toEqual([expect.stringMatching(/module "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q" has an alpha beside OneTrainer's OFT tensors/)]);
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(listDir(dir).sort()).toEqual([BASE, FILE].sort());
  });
});
