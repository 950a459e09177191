/**
 * FLUX.1 LoRAs in diffusers' names with `.alpha` tensors, scaled or refused as diffusers'
 * FluxLoraLoaderMixin loads them (lora_state_dict, load_lora_adapter, get_peft_kwargs, PEFT's
 * get_pattern_key and LoraLayer.update_layer): float alphas only; none beside lora_adapter_metadata;
 * per component, a module without `.alpha` takes the first alpha in the file's key order; a module
 * takes the alpha of the first alpha_pattern key its path ends with; scale = α/r in the alpha's
 * dtype; α = 0 is scale 0. kohya-named files keep kohya's rule; other models' diffusers names are
 * not read by this rule. Real FLUX.1 [dev] names and widths (3072, 4096, 15360, 64).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runInspect } from '../src/cli/inspect-command.js';
import { summarizePlan } from '../demo/plan-summary.js';
import { openSafetensors } from '../src/formats/safetensors-reader.js';
import { parseSingleFileAdapter } from '../src/formats/single-file-adapter.js';
import { bytesSource } from '../src/io/memory-source.js';
import { buildSafetensors, seededRandom, type FixtureDType, type FixtureTensor } from './helpers/fixtures.js';
import { tensor } from './helpers/diffusion-fixtures.js';
import { mergeBackends, mergeInMemory, refusalsInMemory } from './helpers/merge-backends.js';
import { describePlan } from '../src/cli/plan-report.js';
import { memoryInputFileSet, prepareMerge } from '../src/index.js';
import { sharedNameBases, sparseBase } from './helpers/flux-shared-bases.js';

const rand = seededRandom(20261207);
const H = 3072;

/** A PEFT-form LoRA module `name` of ΔW (out, in) at rank r, with an `.alpha` of `dtype` when given. */
function lora(name: string, out: number, inn: number, r: number, alpha?: number, dtype: FixtureDType = 'F32'): FixtureTensor[] {
  const t = [tensor(rand, `${name}.lora_A.weight`, [r, inn], 'F32', 0.1), tensor(rand, `${name}.lora_B.weight`, [out, r], 'F32', 0.1)];
  return alpha === undefined ? t : [...t, { name: `${name}.alpha`, dtype, shape: [], data: [alpha] }];
}

async function parse(tensors: FixtureTensor[], metadata?: Record<string, string>) {
  const file = await openSafetensors(bytesSource(buildSafetensors(tensors, metadata), 'flux_lora.safetensors'));
  return parseSingleFileAdapter('flux_lora.safetensors', file);
}

async function scales(tensors: FixtureTensor[]): Promise<Record<string, number>> {
  const parsed = await parse(tensors);
  return Object.fromEntries(parsed.modules.map((m) => [m.key, m.scale]));
}

async function refusal(tensors: FixtureTensor[], metadata?: Record<string, string>): Promise<string> {
  return parse(tensors, metadata).then(() => 'parsed', (e: Error) => e.message);
}

const TO_Q = 'transformer.single_transformer_blocks.0.attn.to_q';
const TO_K = 'transformer.single_transformer_blocks.0.attn.to_k';
const ADD_Q = 'transformer.transformer_blocks.0.attn.add_q_proj';

describe('diffusers-named FLUX.1 LoRA alphas', () => {
  it('gives a module without .alpha the first alpha in key order, not α = r', async () => {
    // Sorted by name, `transformer.single_…` comes before `transformer.transformer_blocks…` ('s' < 't').
    const s = await scales([...lora(ADD_Q, H, H, 4, 8), ...lora(TO_K, H, H, 16, 4), ...lora(TO_Q, H, H, 8)]);
    // First alpha by name: transformer.single_transformer_blocks.0.attn.to_k.alpha = 4.
    expect(s[TO_K]).toBe(4 / 16);
    expect(s[ADD_Q]).toBe(8 / 4);
    expect(s[TO_Q]).toBe(4 / 8);
  });

  it('refuses an integer alpha, naming the tensor', async () => {
    const message = await refusal([...lora(TO_Q, H, H, 4, 4), ...lora(TO_K, H, H, 4, 4, 'I64')]);
    expect(message).toMatch(/^flux_lora\.safetensors: tensor "transformer\.single_transformer_blocks\.0\.attn\.to_k\.alpha" is an alpha of dtype I64, not a float: diffusers' FluxLoraLoaderMixin\.lora_state_dict takes only float alphas .*store the file's alphas as floats \(F32\)$/);
    expect(message.split('\n')).toHaveLength(1);
    // A bool one is no number at all: refused once, as any single-file adapter's is.
    expect(await refusal([...lora(TO_Q, H, H, 4, 4), ...lora(TO_K, H, H, 4, 1, 'BOOL')])).toBe('flux_lora.safetensors: module "transformer.single_transformer_blocks.0.attn.to_k" has an alpha that is not one finite number: transformer.single_transformer_blocks.0.attn.to_k.alpha is BOOL (), not a number type');
  });

  it('refuses .alpha beside lora_adapter_metadata where a module has none (load_lora_adapter refuses the pair; the tools that load it disagree there)', async () => {
    const metadata = { lora_adapter_metadata: JSON.stringify({ 'transformer.r': 4, 'transformer.lora_alpha': 4, 'transformer.target_modules': ['to_q', 'to_k'] }) };
    const message = await refusal([...lora(TO_Q, H, H, 4, 2), ...lora(TO_K, H, H, 4)], metadata);
    expect(message).toMatch(/^flux_lora\.safetensors: tensor "transformer\.single_transformer_blocks\.0\.attn\.to_q\.alpha" is an alpha beside the metadata "lora_adapter_metadata", and module "transformer\.single_transformer_blocks\.0\.attn\.to_k" has no \.alpha: .*"Both `network_alphas` and `metadata` cannot be specified\."/);
    expect(message.split('\n')).toHaveLength(1);
  });

  it('divides in the alpha\'s dtype (bf16 16/12 = 1.3359375, f16 1/3 = 0.333251953125) and keeps α = 0 as scale 0', async () => {
    expect((await scales(lora(TO_Q, H, H, 12, 16, 'BF16')))[TO_Q]).toBe(1.3359375);
    // α stands for that scale (1.3359375 · 12), for the operations that write α back.
    expect((await parse(lora(TO_Q, H, H, 12, 16, 'BF16'))).modules[0].alpha).toBe(16.03125);
    expect((await scales(lora(TO_Q, H, H, 3, 1, 'F16')))[TO_Q]).toBe(0.333251953125);
    expect((await scales(lora(TO_Q, H, H, 3, 1, 'F32')))[TO_Q]).toBe(Math.fround(1 / 3));
    expect((await scales(lora(TO_Q, H, H, 3, 1, 'F64')))[TO_Q]).toBe(1 / 3);
    expect((await scales([...lora(TO_Q, H, H, 4, 0), ...lora(TO_K, H, H, 4)]))).toEqual({ [TO_Q]: 0, [TO_K]: 0 });
  });

  it('looks alpha_pattern up as PEFT does: the first key the module path ends with', async () => {
    // Sorted alphas: context_embedder (8, lora_alpha) < proj_out (4) < single…0.proj_out (2) < single…1.proj_out (8).
    const s = await scales([
      ...lora('transformer.context_embedder', H, 4096, 4, 8),
      ...lora('transformer.proj_out', 64, H, 4, 4),
      ...lora('transformer.single_transformer_blocks.0.proj_out', H, 15360, 4, 2),
      ...lora('transformer.single_transformer_blocks.1.proj_out', H, 15360, 4, 8),
    ]);
    expect(s['transformer.context_embedder']).toBe(8 / 4);
    expect(s['transformer.proj_out']).toBe(4 / 4);
    // `proj_out` comes first in alpha_pattern and matches both single-block paths.
    expect(s['transformer.single_transformer_blocks.0.proj_out']).toBe(4 / 4);
    expect(s['transformer.single_transformer_blocks.1.proj_out']).toBe(4 / 4);
  });

  it('takes each component\'s alphas on their own (the CLIP text encoder\'s, the transformer\'s)', async () => {
    const te = 'text_encoder.text_model.encoder.layers.0.self_attn';
    const t5 = 'text_encoder_2.encoder.block.0.layer.0.SelfAttention';
    const s = await scales([
      ...lora(`${te}.q_proj`, 768, 768, 4, 2), ...lora(`${te}.k_proj`, 768, 768, 4), ...lora(`${te}.v_proj`, 768, 768, 4, 6),
      ...lora(TO_Q, H, H, 4),
      ...lora(`${t5}.q`, 4096, 4096, 4, 8), ...lora(`${t5}.k`, 4096, 4096, 4),
    ]);
    // text_encoder: k_proj.alpha absent, q_proj first (2); v_proj its own 6. transformer: no alphas, α = r.
    // text_encoder_2 (a T5), which FluxLoraLoaderMixin does not load, keeps the single-file rule (α/r, none: 1).
    expect(s).toEqual({ [`${te}.q_proj`]: 2 / 4, [`${te}.k_proj`]: 2 / 4, [`${te}.v_proj`]: 6 / 4, [TO_Q]: 1, [`${t5}.q`]: 8 / 4, [`${t5}.k`]: 1 });
  });

  it('leaves kohya-named FLUX.1 files and other models\' diffusers names to their own rules', async () => {
    const kohya = await scales([
      tensor(rand, 'lora_unet_single_blocks_0_linear2.lora_down.weight', [4, 15360], 'F32'), tensor(rand, 'lora_unet_single_blocks_0_linear2.lora_up.weight', [H, 4], 'F32'),
      { name: 'lora_unet_single_blocks_0_linear2.alpha', dtype: 'I64', shape: [], data: [2] },
      tensor(rand, 'lora_unet_single_blocks_1_linear2.lora_down.weight', [4, 15360], 'F32'), tensor(rand, 'lora_unet_single_blocks_1_linear2.lora_up.weight', [H, 4], 'F32'),
    ]);
    expect(kohya).toEqual({ lora_unet_single_blocks_0_linear2: 2 / 4, lora_unet_single_blocks_1_linear2: 1 });
    // SD3.5 Large's joint blocks (2432 wide) share FLUX.1's double-block names: not FLUX.1, not this rule.
    const sd3 = await scales([...lora('transformer.transformer_blocks.0.attn.to_q', 2432, 2432, 4, 2, 'I64'), ...lora('transformer.transformer_blocks.0.attn.to_k', 2432, 2432, 4)]);
    expect(sd3).toEqual({ 'transformer.transformer_blocks.0.attn.to_q': 2 / 4, 'transformer.transformer_blocks.0.attn.to_k': 1 });
  });

  const backends = mergeBackends({ cpu: 'default' });
  it('merges W + (α/r)·B·A with those scales onto a diffusers-named FLUX.1 transformer', async () => {
    const base = [tensor(rand, 'x_embedder.weight', [H, 64], 'F32'), tensor(rand, 'proj_out.weight', [64, H], 'F32')];
    const tensors = [...lora('transformer.proj_out', 64, H, 12, 16, 'BF16'), ...lora('transformer.x_embedder', H, 64, 8)];
    const { tensors: out } = await mergeInMemory({ backend: backends.cpu!, base: { 'flux1-dev-transformer.safetensors': buildSafetensors(base) }, adapters: [{ files: { 'flux_lora.safetensors': buildSafetensors(tensors) } }] });
    const data = (name: string) => Array.from(tensors.find((t) => t.name === name)!.data as ArrayLike<number>).map((v) => Math.fround(v));
    const check = (key: string, module: string, out0: number, in0: number, r: number, scale: number) => {
      const w = Array.from(base.find((t) => t.name === key)!.data as ArrayLike<number>).map((v) => Math.fround(v));
      const a = data(`${module}.lora_A.weight`), b = data(`${module}.lora_B.weight`);
      const got = out.get(key)!.values;
      let worst = 0;
      for (const o of [0, 1, out0 - 1]) for (const i of [0, 7, in0 - 1]) {
        let d = 0;
        for (let k = 0; k < r; k++) d += b[o * r + k] * a[k * in0 + i];
        worst = Math.max(worst, Math.abs(got[o * in0 + i] - (w[o * in0 + i] + scale * d)));
      }
      expect(worst, key).toBeLessThan(1e-6);
    };
    // proj_out: bf16 α 16 over r 12 → 1.3359375 (not 4/3); x_embedder has no .alpha: proj_out's 16 over its r 8 = 2.
    check('proj_out.weight', 'transformer.proj_out', 64, H, 12, 1.3359375);
    check('x_embedder.weight', 'transformer.x_embedder', H, 64, 8, 2);
  });

  it('on a HunyuanVideo, FLUX.2 [klein] or Qwen-Image base, which share these names, takes each module\'s own .alpha over its rank (none: 1), as on every other model', async () => {
    // An attention-only file in diffusers' names: HunyuanVideo's, FLUX.2 [klein] 4B's and Qwen-Image's
    // blocks hold the same `transformer_blocks.N.attn.to_q/to_k`, 3072 wide, as FLUX.1's. None of their
    // diffusers loaders reads `.alpha` (HunyuanVideo's and FLUX.2's load_lora_weights refuse any key
    // without "lora", Qwen-Image's converter drops them), so FLUX.1's rule does not hold there: the file
    // takes the single-file rule (ComfyUI's), as those models' other diffusers-named files do.
    const Q = 'transformer.transformer_blocks.0.attn.to_q', K = 'transformer.transformer_blocks.0.attn.to_k';
    const tensors = [...lora(Q, H, H, 3, 16, 'BF16'), ...lora(K, H, H, 2)];
    // Parsed alone (inspect: no base), FLUX.1's rule: to_q bf16(16/3) = 5.34375, to_k the first alpha 16 over 2.
    expect(await scales(tensors)).toEqual({ [Q]: 5.34375, [K]: 8 });
    // Zero weights (raw bytes: 2 × 3072² values are slow to draw), so W' is the scaled ΔW itself.
    const zeros = (name: string): FixtureTensor => ({ name, dtype: 'F32', shape: [H, H], data: new Uint8Array(H * H * 4) });
    const weights = [zeros('transformer_blocks.0.attn.to_q.weight'), zeros('transformer_blocks.0.attn.to_k.weight')];
    // What tells the models apart: HunyuanVideo's token refiner; FLUX.2's shared modulations and
    // Qwen-Image's per-block img_mod, at their real shapes (helpers/flux-shared-bases.ts). (On a FLUX.1
    // base FLUX.1's rule merges: the test above.)
    const hunyuan = [tensor(rand, 'context_embedder.token_refiner.refiner_blocks.0.norm1.weight', [H], 'F32')];
    const sharing = sharedNameBases();
    const values = (name: string) => Array.from(tensors.find((t) => t.name === name)!.data as ArrayLike<number>);
    const worstError = (out: Map<string, { values: ArrayLike<number> }>, key: string, module: string, r: number, scale: number) => {
      const a = values(`${module}.lora_A.weight`), b = values(`${module}.lora_B.weight`), got = out.get(key)!.values;
      let worst = 0;
      for (const o of [0, 1, 1536, H - 1]) for (const i of [0, 5, 2047, H - 1]) {
        let d = 0;
        for (let k = 0; k < r; k++) d += b[o * r + k] * a[k * H + i];
        worst = Math.max(worst, Math.abs(got[o * H + i] - scale * d));
      }
      return worst;
    };
    const file = buildSafetensors(tensors);
    const planLine = 'adapter 1: adapter0 (diffusers, 2 modules, weight 1, α = 16, 1 module without α (α = 2), α/r = 1–5.333)';
    // HunyuanVideo merged end to end; FLUX.2 and Qwen-Image by the plan's terms (the scale each is merged at).
    let plan = '';
    const { tensors: out } = await mergeInMemory({
      backend: backends.cpu!, base: { 'transformer.safetensors': buildSafetensors([...weights, ...hunyuan]) }, adapters: [{ files: { 'flux_lora.safetensors': file } }],
      slabBytes: 1 << 26, inspect: (prepared) => { plan = describePlan(prepared, false); },
    });
    // The plan's line gives the scales merged: to_k without α at α = r (not the first alpha, 16).
    expect(plan).toContain(planLine);
    expect(worstError(out, 'transformer_blocks.0.attn.to_q.weight', Q, 3, 16 / 3), 'to_q').toBeLessThan(1e-6);
    expect(worstError(out, 'transformer_blocks.0.attn.to_k.weight', K, 2, 1), 'to_k').toBeLessThan(1e-6);
    for (const name of ['FLUX.2', 'Qwen-Image'] as const) {
      const prepared = await prepareMerge(sparseBase(name, sharing[name].tensors), [{ files: memoryInputFileSet({ 'flux_lora.safetensors': file }, 'adapter0'), weight: 1 }]);
      try {
        const terms = Object.fromEntries(prepared.plan.updates.map((u) => [u.baseKey, u.terms.map((t) => t.scale)]));
        expect(terms, name).toEqual({ 'transformer_blocks.0.attn.to_q.weight': [16 / 3], 'transformer_blocks.0.attn.to_k.weight': [1] });
        expect(describePlan(prepared, false), name).toContain(planLine);
      } finally {
        await prepared.close();
      }
    }
  });
});

describe('inspect of such a file alone', () => {
  it('says which rule its scales follow, and what a HunyuanVideo, FLUX.2 or Qwen-Image base changes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flux-alphas-'));
    try {
      const path = join(dir, 'flux_lora.safetensors');
      writeFileSync(path, buildSafetensors([...lora('transformer.transformer_blocks.0.attn.to_q', H, H, 3, 16, 'BF16'), ...lora('transformer.transformer_blocks.0.attn.to_k', H, H, 2)]));
      const lines: string[] = [];
      expect(await runInspect({ command: 'inspect', path }, (l) => lines.push(l))).toBe(0);
      expect(lines).toContain('  scales: by diffusers\' FLUX.1 rule (FluxLoraLoaderMixin), taking the file as FLUX.1\'s (or Chroma\'s); merged onto a HunyuanVideo, FLUX.2 or Qwen-Image base, which share these names, each module takes its own .alpha over its rank instead (none: 1)');
      // FLUX.1's rule: to_q bf16(16/3), to_k the first alpha 16 over its r 2.
      expect(lines).toContain('    transformer.transformer_blocks.0.attn.to_q  r=3 α=16.03125 scale=5.34375');
      expect(lines).toContain('    transformer.transformer_blocks.0.attn.to_k  r=2 α=16 scale=8');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the page\'s adapter card on such a base', () => {
  it('gives the scale merged on a HunyuanVideo base (16/3), not FLUX.1\'s rule\'s (bf16 5.34375)', async () => {
    const base = [
      { name: 'proj_out.weight', dtype: 'F32', shape: [64, H], data: new Uint8Array(64 * H * 4) } as FixtureTensor,
      tensor(rand, 'context_embedder.token_refiner.refiner_blocks.0.norm1.weight', [H], 'F32'),
    ];
    const summary = await summarizePlan(memoryInputFileSet({ 'transformer.safetensors': buildSafetensors(base) }, 'hunyuan'),
      [{ files: memoryInputFileSet({ 'flux_lora.safetensors': buildSafetensors(lora('transformer.proj_out', 64, H, 3, 16, 'BF16')) }, 'flux_lora.safetensors'), weight: 1 }]);
    expect(summary.adapters[0].facts).toContain('α/r = 5.333');
    expect(summary.adapters[0].facts).toContain('α = 16');
  });
});
