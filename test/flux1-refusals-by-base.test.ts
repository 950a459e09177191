/**
 * diffusers' FLUX.1 loader's refusals of a diffusers-named file with `.alpha` tensors (an integer
 * alpha, a float8 alpha, alphas beside lora_adapter_metadata with a module lacking one: diffusers-flux-alphas.ts) hold where
 * the base is FLUX.1's. HunyuanVideo's, FLUX.2 [klein] 4B's and Qwen-Image's transformers hold the
 * same names at the same width (3072), and their diffusers loaders do not read `.alpha` at all: on
 * those bases the file merges by the single-file rule (each module's own `.alpha` over its rank, as
 * ComfyUI applies it). The base decides, in the plan (prepareMerge), the CLI's merge and dry run,
 * and the page's plan alike; read alone (no base) the file is FLUX.1's and refused at once.
 *
 * Bases are headers over zeros (sparse: nothing is held), with the real names and shapes of each
 * model in diffusers' naming (helpers/flux-shared-bases.ts).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { summarizePlan, readEachAdapter } from '../demo/plan-summary.js';
import { openAdapter } from '../src/formats/adapter.js';
import { memoryInputFileSet, prepareMerge, type InputFileSet } from '../src/index.js';
import { buildSafetensors, decodeSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { tensor } from './helpers/diffusion-fixtures.js';
import { writeHeaderOnly, type Declared } from './helpers/deepseek-v3-headers.js';
import { flux1Base, H, sharedNameBases, sparseBase } from './helpers/flux-shared-bases.js';
import { mergeArgs, oneErrorLine, runCliInProcess } from './helpers/cli.js';

const rand = seededRandom(20261207);
const R = 4;

const w = (name: string, shape: number[], dtype: Declared['dtype'] = 'BF16'): Declared => ({ name, dtype, shape });
const Q = 'transformer_blocks.0.attn.to_q', K = 'transformer_blocks.0.attn.to_k';
const BASES = sharedNameBases();
const FLUX1 = flux1Base();

/** E4M3 0x55 = 2^(10-7)·(1 + 5/8) = 13. */
const E4M3_13 = Uint8Array.of(0x55);

/** The three things diffusers' FLUX.1 loader refuses, each on to_q's alpha; the value the single-file rule takes. */
const KINDS: Record<string, { alpha: Omit<FixtureTensor, 'name'>; value: number; metadata?: Record<string, string> }> = {
  'an integer alpha': { alpha: { dtype: 'I64', shape: [], data: [8] }, value: 8 },
  'a float8 alpha': { alpha: { dtype: 'F8_E4M3', shape: [], data: E4M3_13 }, value: 13 },
  'alphas beside lora_adapter_metadata': {
    alpha: { dtype: 'F32', shape: [], data: [6] }, value: 6,
    metadata: { lora_adapter_metadata: JSON.stringify({ 'transformer.r': R, 'transformer.lora_alpha': R, 'transformer.target_modules': ['to_q', 'to_k', 'proj_out'] }) },
  },
};
type Kind = 'an integer alpha' | 'a float8 alpha' | 'alphas beside lora_adapter_metadata';

/**
 * A diffusers-named LoRA (`transformer.` + the module, lora_A/lora_B) on to_q (the kind's alpha), to_k
 * (no alpha) and proj_out (an F32 alpha of 2), all at rank 4.
 */
function loraFile(kind: Kind, projOut: number): { bytes: Uint8Array; tensors: FixtureTensor[] } {
  const pair = (m: string, out: number, inn: number) => [tensor(rand, `transformer.${m}.lora_A.weight`, [R, inn], 'F32', 0.1), tensor(rand, `transformer.${m}.lora_B.weight`, [out, R], 'F32', 0.1)];
  const { alpha, metadata } = KINDS[kind];
  const tensors: FixtureTensor[] = [
    ...pair(Q, H, H), { name: `transformer.${Q}.alpha`, ...alpha },
    ...pair(K, H, H),
    ...pair('proj_out', projOut, H), { name: 'transformer.proj_out.alpha', dtype: 'F32', shape: [], data: [2] },
  ];
  return { bytes: buildSafetensors(tensors, metadata), tensors };
}

/** The single-file rule: own α over r; to_k has none (scale 1; with the metadata, its lora_alpha 4 over r 4). */
const singleFileScales = (kind: Kind) => ({ [`${Q}.weight`]: KINDS[kind].value / R, [`${K}.weight`]: 1, 'proj_out.weight': 2 / R });

const adapterSet = (bytes: Uint8Array) => memoryInputFileSet({ 'flux_lora.safetensors': bytes }, 'flux_lora');

/** The refusal the file gets read alone (inspect, the adapter jobs): diffusers' FLUX.1 loader's. */
async function aloneRefusal(bytes: Uint8Array): Promise<string> {
  return openAdapter(adapterSet(bytes)).then(async (a) => { await a.file.source.close(); return 'opened'; }, (e: Error) => e.message);
}

const REFUSALS: Record<Kind, RegExp> = {
  'an integer alpha': /: tensor "transformer\.transformer_blocks\.0\.attn\.to_q\.alpha" is an alpha of dtype I64, not a float: diffusers' FluxLoraLoaderMixin/,
  'a float8 alpha': /: tensor "transformer\.transformer_blocks\.0\.attn\.to_q\.alpha" is an alpha of dtype F8_E4M3: diffusers' FluxLoraLoaderMixin/,
  'alphas beside lora_adapter_metadata': /: tensor "transformer\.proj_out\.alpha" is an alpha beside the metadata "lora_adapter_metadata", and module "transformer\.transformer_blocks\.0\.attn\.to_k" has no \.alpha: diffusers' FluxLoraLoaderMixin/,
};

describe('FLUX.1\'s .alpha refusals, decided by the base', () => {
  for (const kind of Object.keys(KINDS) as Kind[]) {
    it(`${kind}: merged by the single-file rule on HunyuanVideo, FLUX.2 and Qwen-Image; refused on FLUX.1 and read alone`, async () => {
      for (const [model, { tensors, projOut }] of Object.entries(BASES)) {
        const { bytes } = loraFile(kind, projOut);
        const prepared = await prepareMerge(sparseBase(model, tensors), [{ files: adapterSet(bytes), weight: 1 }]);
        try {
          expect(prepared.plan.problems.map((p) => p.message), model).toEqual([]);
          const terms = Object.fromEntries(prepared.plan.updates.map((u) => [u.baseKey, u.terms.map((t) => t.scale)]));
          expect(terms, model).toEqual(Object.fromEntries(Object.entries(singleFileScales(kind)).map(([k, s]) => [k, [s]])));
        } finally {
          await prepared.close();
        }
      }
      const { bytes } = loraFile(kind, 64);
      const alone = await aloneRefusal(bytes);
      expect(alone).toMatch(REFUSALS[kind]);
      expect(alone.split('\n')).toHaveLength(1);
      const prepared = await prepareMerge(sparseBase('FLUX.1', FLUX1), [{ files: adapterSet(bytes), weight: 1 }]);
      try {
        // The plan's one problem is the same line, and nothing of the file is planned.
        expect(prepared.plan.problems.map((p) => p.message)).toEqual([alone]);
        expect(prepared.plan.updates).toEqual([]);
      } finally {
        await prepared.close();
      }
    });
  }
});

describe('the page\'s plan agrees', () => {
  it('gives the single-file scales on a FLUX.2 base, and FLUX.1\'s refusal (plan and card) on a FLUX.1 base', async () => {
    const flux2 = loraFile('a float8 alpha', 128).bytes;
    const summary = await summarizePlan(sparseBase('FLUX.2', BASES['FLUX.2'].tensors), [{ files: adapterSet(flux2), weight: 1 }]);
    // to_q 13/4, to_k 1, proj_out 2/4.
    expect(summary.adapters[0].facts).toContain('α/r = 0.5–3.25');
    expect(summary.modules.map((m) => [m.target, m.scale]).sort()).toEqual([['proj_out.weight', 0.5], [`${K}.weight`, 1], [`${Q}.weight`, 13 / 4]]);
    const flux1 = loraFile('a float8 alpha', 64).bytes;
    const alone = await aloneRefusal(flux1);
    const refused = await summarizePlan(sparseBase('FLUX.1', FLUX1), [{ files: adapterSet(flux1), weight: 1 }]);
    // The plan's one error is the line the file gets alone, and nothing of it is planned.
    expect(refused.problems.filter((p) => p.severity === 'error').map((p) => p.message)).toEqual([alone]);
    expect([refused.mergeable, refused.modules]).toEqual([false, []]);
    // Where no plan can be made, the page reads each adapter alone for its card: the same line.
    expect(await readEachAdapter([{ files: adapterSet(flux1), weight: 1 }], (e) => (e as Error).message)).toEqual([{ name: 'flux_lora', error: alone }]);
  });
});

describe('the command line agrees', () => {
  const dir = mkdtempSync(join(tmpdir(), 'flux1-refusals-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('--dry-run plans the single-file scales on each of the three bases and refuses on FLUX.1, with the same line', async () => {
    for (const [model, { tensors, projOut }] of [...Object.entries(BASES), ['FLUX.1', { tensors: FLUX1, projOut: 64 }] as const]) {
      const base = join(dir, `${model}.safetensors`), adapter = join(dir, `${model}-lora.safetensors`);
      writeHeaderOnly(base, tensors);
      writeFileSync(adapter, loraFile('an integer alpha', projOut).bytes);
      const run = await runCliInProcess(mergeArgs(base, adapter, join(dir, `${model}-out.safetensors`), '--dry-run'));
      if (model === 'FLUX.1') {
        expect(run.code, run.stdout).not.toBe(0);
        expect(oneErrorLine(run)).toMatch(REFUSALS['an integer alpha']);
        continue;
      }
      expect(run.code, `${model}: ${run.stderr}`).toBe(0);
      // α = 8 on to_q, 2 on proj_out; to_k without α (α = r): scales 2, 0.5, 1.
      expect(run.stdout, model).toContain('(diffusers, 3 modules, weight 1, α = 2–8, 1 module without α (α = 4), α/r = 0.5–2)');
    }
  });

  it('merges W + (α/r)·B·A onto a HunyuanVideo base, and leaves nothing at the output on FLUX.1', async () => {
    // A HunyuanVideo transformer of zeros, F32: W' is the scaled ΔW itself.
    const base = join(dir, 'hunyuan.safetensors'), adapter = join(dir, 'hunyuan-lora.safetensors'), out = join(dir, 'hunyuan-merged.safetensors');
    writeHeaderOnly(base, [
      w(`${Q}.weight`, [H, H], 'F32'), w('proj_out.weight', [64, H], 'F32'),
      w('context_embedder.token_refiner.refiner_blocks.0.norm1.weight', [H], 'F32'),
      w(`${K}.weight`, [H, H], 'F32'),
    ]);
    const { bytes, tensors } = loraFile('a float8 alpha', 64);
    writeFileSync(adapter, bytes);
    const run = await runCliInProcess(mergeArgs(base, adapter, out));
    expect(run.code, run.stderr).toBe(0);
    const merged = decodeSafetensors(readFileSync(out)).tensors;
    const values = (name: string) => Array.from(tensors.find((t) => t.name === name)!.data as ArrayLike<number>).map((v) => Math.fround(v));
    for (const [key, module, rows, scale] of [[`${Q}.weight`, Q, H, 13 / 4], [`${K}.weight`, K, H, 1], ['proj_out.weight', 'proj_out', 64, 0.5]] as const) {
      const a = values(`transformer.${module}.lora_A.weight`), b = values(`transformer.${module}.lora_B.weight`), got = merged.get(key)!.values;
      let worst = 0;
      for (const o of [0, 1, rows - 1]) for (const i of [0, 7, 2047, H - 1]) {
        let d = 0;
        for (let k = 0; k < R; k++) d += b[o * R + k] * a[k * H + i];
        worst = Math.max(worst, Math.abs(got[o * H + i] - scale * d));
      }
      expect(worst, key).toBeLessThan(1e-6);
    }
    const flux1 = join(dir, 'flux1.safetensors'), refusedOut = join(dir, 'flux1-merged.safetensors');
    writeHeaderOnly(flux1, FLUX1.map((t) => ({ ...t, dtype: 'F32' })));
    const refused = await runCliInProcess(mergeArgs(flux1, adapter, refusedOut));
    expect(refused.code).not.toBe(0);
    expect(oneErrorLine(refused)).toMatch(REFUSALS['a float8 alpha']);
    expect(existsSync(refusedOut)).toBe(false);
  });
});

describe('LoRAs on the modulations of those models, at their real shapes', () => {
  /** A diffusers-named module `transformer.<path>` of ΔW (out, H) at rank r, with an `.alpha` where given. */
  const module = (path: string, out: number, r: number, alpha?: Omit<FixtureTensor, 'name'>): FixtureTensor[] => [
    tensor(rand, `transformer.${path}.lora_A.weight`, [r, H], 'F32', 0.1), tensor(rand, `transformer.${path}.lora_B.weight`, [out, r], 'F32', 0.1),
    ...(alpha ? [{ name: `transformer.${path}.alpha`, ...alpha }] : []),
  ];
  const f32 = (v: number): Omit<FixtureTensor, 'name'> => ({ dtype: 'F32', shape: [], data: [v] });
  const i64 = (v: number): Omit<FixtureTensor, 'name'> => ({ dtype: 'I64', shape: [], data: [v] });
  const f8 = { dtype: 'F8_E4M3', shape: [], data: E4M3_13 } as Omit<FixtureTensor, 'name'>;

  /** The plan's terms (base key → [scale, ΔW shape]), or its problems. */
  async function plan(base: InputFileSet, tensors: FixtureTensor[]): Promise<Record<string, unknown> | string[]> {
    const prepared = await prepareMerge(base, [{ files: adapterSet(buildSafetensors(tensors)), weight: 1 }]);
    try {
      if (prepared.plan.problems.length > 0) return prepared.plan.problems.map((p) => p.message);
      return Object.fromEntries(prepared.plan.updates.map((u) => [u.baseKey, u.terms.map((t) => [t.scale, u.shape])]));
    } finally {
      await prepared.close();
    }
  }

  it('FLUX.1\'s per-block norm1.linear (6·3072 × 3072) with a float8 alpha: merged on HunyuanVideo, which has it; refused naming the module on FLUX.2 and Qwen-Image, which have none', async () => {
    const tensors = [...module('transformer_blocks.0.norm1.linear', 6 * H, 4, f8), ...module('transformer_blocks.0.attn.to_q', H, 4)];
    expect(await plan(sparseBase('HunyuanVideo', BASES.HunyuanVideo.tensors), tensors)).toEqual({
      'transformer_blocks.0.norm1.linear.weight': [[13 / 4, [6 * H, H]]], [`${Q}.weight`]: [[1, [H, H]]],
    });
    expect(await plan(sparseBase('FLUX.2', BASES['FLUX.2'].tensors), tensors)).toEqual([
      'flux_lora: module "transformer.transformer_blocks.0.norm1.linear": is a FLUX.1 module; the base is FLUX.2, which has no such tensor (its single blocks fuse q, k, v and a SwiGLU MLP in linear1 / attn.to_qkv_mlp_proj, and its modulations are shared by all blocks): a FLUX.1 LoRA does not fit a FLUX.2 model',
    ]);
    expect(await plan(sparseBase('Qwen-Image', BASES['Qwen-Image'].tensors), tensors)).toEqual(['flux_lora: module "transformer.transformer_blocks.0.norm1.linear": no matching tensor in the UNet/transformer']);
  });

  it('norm_out.linear (2·3072 × 3072, in all four) with an integer alpha: merged at α/r on the three, refused on FLUX.1 as diffusers refuses it', async () => {
    for (const [model, { tensors, projOut }] of Object.entries(BASES)) {
      const lora = [...module('norm_out.linear', 2 * H, 8, i64(4)), ...module('proj_out', projOut, 4, f32(8))];
      expect(await plan(sparseBase(model, tensors), lora), model).toEqual({ 'norm_out.linear.weight': [[4 / 8, [2 * H, H]]], 'proj_out.weight': [[2, [projOut, H]]] });
    }
    const refused = await plan(sparseBase('FLUX.1', FLUX1), [...module('norm_out.linear', 2 * H, 8, i64(4)), ...module('proj_out', 64, 4, f32(8))]);
    expect(refused).toEqual([expect.stringMatching(/^flux_lora\/flux_lora\.safetensors: tensor "transformer\.norm_out\.linear\.alpha" is an alpha of dtype I64, not a float/)]);
  });

  it('FLUX.2\'s shared modulations and Qwen-Image\'s img_mod / txt_mod: not FLUX.1\'s names, so the single-file rule on any base; refused where the base has none', async () => {
    const flux2 = [
      ...module('double_stream_modulation_img.linear', 6 * H, 4, f32(8)), ...module('single_stream_modulation.linear', 3 * H, 4),
      ...module('transformer_blocks.0.attn.to_q', H, 3, { dtype: 'BF16', shape: [], data: [16] }),
    ];
    // Single-file: own α over r (to_q 16/3 unrounded), none: 1; FLUX.1's rule would give single_stream 8/4 and to_q bf16(16/3).
    expect(await plan(sparseBase('FLUX.2', BASES['FLUX.2'].tensors), flux2)).toEqual({
      [`${Q}.weight`]: [[16 / 3, [H, H]]], 'double_stream_modulation_img.linear.weight': [[2, [6 * H, H]]], 'single_stream_modulation.linear.weight': [[1, [3 * H, H]]],
    });
    const qwen = [...module('transformer_blocks.0.img_mod.1', 6 * H, 4, f8), ...module('transformer_blocks.0.txt_mod.1', 6 * H, 2)];
    expect(await plan(sparseBase('Qwen-Image', BASES['Qwen-Image'].tensors), qwen)).toEqual({
      'transformer_blocks.0.img_mod.1.weight': [[13 / 4, [6 * H, H]]], 'transformer_blocks.0.txt_mod.1.weight': [[1, [6 * H, H]]],
    });
    const none = (m: string) => `flux_lora: module "transformer.${m}": no matching tensor in the UNet/transformer`;
    expect(await plan(sparseBase('FLUX.2', BASES['FLUX.2'].tensors), qwen)).toEqual([none('transformer_blocks.0.img_mod.1'), none('transformer_blocks.0.txt_mod.1')]);
    // to_q lands on Qwen-Image's own to_q; the shared modulations name nothing there.
    expect(await plan(sparseBase('Qwen-Image', BASES['Qwen-Image'].tensors), flux2)).toEqual([none('double_stream_modulation_img.linear'), none('single_stream_modulation.linear')]);
  });
});
