/**
 * diffusers' FLUX.1 loader's refusals of a diffusers-named file with `.alpha` tensors (an integer
 * alpha, a float8 alpha, alphas beside lora_adapter_metadata: diffusers-flux-alphas.ts) hold where
 * the base is FLUX.1's. HunyuanVideo's, FLUX.2 [klein] 4B's and Qwen-Image's transformers hold the
 * same names at the same width (3072), and their diffusers loaders do not read `.alpha` at all: on
 * those bases the file merges by the single-file rule (each module's own `.alpha` over its rank, as
 * ComfyUI applies it). The base decides, in the plan (prepareMerge), the CLI's merge and dry run,
 * and the page's plan alike; read alone (no base) the file is FLUX.1's and refused at once.
 *
 * Bases are headers over zeros (sparse: nothing is held), with the real names and shapes of each
 * model in diffusers' naming (transformer_hunyuan_video.py, transformer_flux2.py with FLUX.2 [klein]
 * 4B's config: 24 heads of 128, out_channels 128, patch 1; transformer_qwenimage.py; FLUX.1 [dev]).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { summarizePlan, readEachAdapter } from '../demo/plan-summary.js';
import { openAdapter } from '../src/formats/adapter.js';
import { memoryInputFileSet, prepareMerge, type InputFileSet } from '../src/index.js';
import { buildSafetensors, decodeSafetensors, seededRandom, sparseSource, type FixtureTensor } from './helpers/fixtures.js';
import { tensor } from './helpers/diffusion-fixtures.js';
import { headerOf, writeHeaderOnly, type Declared } from './helpers/deepseek-v3-headers.js';
import { mergeArgs, oneErrorLine, runCliInProcess } from './helpers/cli.js';

const rand = seededRandom(20261207);
const H = 3072;
const R = 4;

const w = (name: string, shape: number[], dtype: Declared['dtype'] = 'BF16'): Declared => ({ name, dtype, shape });
const Q = 'transformer_blocks.0.attn.to_q', K = 'transformer_blocks.0.attn.to_k';

/** Each base's transformer (diffusers' names), as many of its tensors as tell it apart and take the LoRA. */
const BASES: Record<string, { tensors: Declared[]; projOut: number }> = {
  // HunyuanVideoTransformer3DModel: 24×128, AdaLayerNormZero (6·dim), the token refiner's LayerNorm, proj_out to 1·2·2·16.
  HunyuanVideo: {
    projOut: 64,
    tensors: [
      w(`${Q}.weight`, [H, H]), w(`${Q}.bias`, [H]), w(`${K}.weight`, [H, H]), w(`${K}.bias`, [H]),
      w('transformer_blocks.0.norm1.linear.weight', [6 * H, H]),
      w('context_embedder.token_refiner.refiner_blocks.0.norm1.weight', [H]), w('context_embedder.token_refiner.refiner_blocks.0.norm1.bias', [H]),
      w('proj_out.weight', [64, H]), w('proj_out.bias', [64]),
    ],
  },
  // Flux2Transformer2DModel (klein 4B): no biases; Flux2Modulation(dim, 2) is dim → 6·dim, (dim, 1) dim → 3·dim; proj_out to 1·1·128.
  'FLUX.2': {
    projOut: 128,
    tensors: [
      w(`${Q}.weight`, [H, H]), w(`${K}.weight`, [H, H]),
      w('double_stream_modulation_img.linear.weight', [6 * H, H]), w('double_stream_modulation_txt.linear.weight', [6 * H, H]),
      w('single_stream_modulation.linear.weight', [3 * H, H]),
      w('proj_out.weight', [128, H]),
    ],
  },
  // QwenImageTransformer2DModel: img_mod / txt_mod = Sequential(SiLU, Linear(dim, 6·dim)), proj_out to 2·2·16.
  'Qwen-Image': {
    projOut: 64,
    tensors: [
      w(`${Q}.weight`, [H, H]), w(`${Q}.bias`, [H]), w(`${K}.weight`, [H, H]), w(`${K}.bias`, [H]),
      w('transformer_blocks.0.img_mod.1.weight', [6 * H, H]), w('transformer_blocks.0.img_mod.1.bias', [6 * H]),
      w('transformer_blocks.0.txt_mod.1.weight', [6 * H, H]), w('transformer_blocks.0.txt_mod.1.bias', [6 * H]),
      w('proj_out.weight', [64, H]), w('proj_out.bias', [64]),
    ],
  },
};
/** FluxTransformer2DModel (FLUX.1 [dev]): AdaLayerNormZero 6·dim, AdaLayerNormZeroSingle 3·dim. */
const FLUX1: Declared[] = [
  w(`${Q}.weight`, [H, H]), w(`${Q}.bias`, [H]), w(`${K}.weight`, [H, H]), w(`${K}.bias`, [H]),
  w('transformer_blocks.0.norm1.linear.weight', [6 * H, H]), w('single_transformer_blocks.0.norm.linear.weight', [3 * H, H]),
  w('proj_out.weight', [64, H]), w('proj_out.bias', [64]),
];

/** A base of `tensors` whose values are zeros, served without being held. */
function sparseBase(name: string, tensors: Declared[]): InputFileSet {
  const { header, size } = headerOf(tensors);
  return {
    name,
    list: () => ['transformer.safetensors'],
    open: async () => sparseSource(`${name}/transformer.safetensors`, size, [[0, header]]),
    readText: async (path) => { throw new Error(`${path} is not text`); },
  };
}

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
  'alphas beside lora_adapter_metadata': /: tensor "transformer\.proj_out\.alpha" is an alpha beside the metadata "lora_adapter_metadata": diffusers' FluxLoraLoaderMixin/,
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
