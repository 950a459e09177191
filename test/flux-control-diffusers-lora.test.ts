/**
 * FLUX.1 control LoRAs in diffusers' own names, as examples/flux-control/train_control_lora_flux.py
 * saves them and FluxControlPipeline.load_lora_weights applies them to FLUX.1-dev:
 * `transformer.<module>.lora_A.weight` / `lora_B.weight` (F32) on every Linear of
 * FluxTransformer2DModel, `lora_B.bias` with --use_lora_bias (PEFT's lora_bias), x_embedder's lora_A
 * twice as wide as the base's x_embedder, and with --train_norm_layers the q/k RMSNorm weights.
 * diffusers widens x_embedder with zero columns (_maybe_expand_transformer_param_shape_or_error_, config
 * in_channels follows), adds each LoRA at scale w·α/r, lora_B.bias at the same scale, and loads the
 * norms as they are (_load_norm_into_transformer) whatever w. Checked against float64 math written
 * here on a FluxTransformer2DModel folder, a FluxPipeline folder and BFL's flux1-dev.safetensors
 * (img_in, qkv fused), on the CPU and WebGPU. Dims as in flux-control-fixtures.ts (in_channels 64 → 16).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge } from '../src/index.js';
import { buildSafetensors, decodeSafetensors, seededRandom, tempDirs, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import { errorLines, runCli } from './helpers/cli.js';
import { tensor } from './helpers/diffusion-fixtures.js';
import { mergeBackends, mergeInMemory, refusalsInMemory } from './helpers/merge-backends.js';
import {
  diffusersControlLora, diffusersNorm, diffusersRows, DOUBLE, expectAll, fluxDevBfl, fluxDevDiffusers, fluxLinears, fluxNorms, H, HEAD, IN, R, SINGLE, TXT,
} from './helpers/flux-control-fixtures.js';

const rand = seededRandom(20261204);
const backends = mergeBackends({ cpu: 'default' });

/** Where rows `from`.. of the diffusers module's ΔW land in the base: rows `to`.. of `baseModule`. */
interface Part { loraModule: string; baseModule: string; from: number; count: number; to: number }

/**
 * The merged tensors in float64: each base weight zero-padded to its LoRA's lora_A columns, then
 * W += w·scale·B·A and b += w·scale·lora_B.bias on the rows each part names; norms taken from the LoRA.
 */
function expected(
  base: Map<string, DecodedTensor>, lora: Map<string, DecodedTensor>, w: number, scale: number, parts: Part[], norms: [string, string][],
): Map<string, { shape: number[]; values: Float64Array }> {
  const out = new Map<string, { shape: number[]; values: Float64Array }>();
  for (const [k, t] of base) out.set(k, { shape: t.shape.slice(), values: Float64Array.from(t.values) });
  for (const p of parts) {
    const a = lora.get(`transformer.${p.loraModule}.lora_A.weight`)!, b = lora.get(`transformer.${p.loraModule}.lora_B.weight`)!.values;
    const bias = lora.get(`transformer.${p.loraModule}.lora_B.bias`)?.values;
    const cols = a.shape[1];
    const cur = out.get(`${p.baseModule}.weight`)!;
    const [rows, inBase] = cur.shape;
    if (inBase < cols) {
      const values = new Float64Array(rows * cols);
      for (let r = 0; r < rows; r++) for (let c = 0; c < inBase; c++) values[r * cols + c] = cur.values[r * inBase + c];
      cur.shape = [rows, cols];
      cur.values = values;
    }
    for (let r = 0; r < p.count; r++) {
      for (let c = 0; c < cols; c++) {
        let sum = 0;
        for (let k = 0; k < R; k++) sum += b[(p.from + r) * R + k] * a.values[k * cols + c];
        cur.values[(p.to + r) * cols + c] += w * scale * sum;
      }
      if (bias) out.get(`${p.baseModule}.bias`)!.values[p.to + r] += w * scale * bias[p.from + r];
    }
  }
  for (const [loraKey, baseKey] of norms) out.set(baseKey, { shape: [HEAD], values: Float64Array.from(lora.get(loraKey)!.values) });
  return out;
}

/** On a diffusers base every module is its own. */
const diffusersParts = (base: Map<string, DecodedTensor>): Part[] => [...base].filter(([k, t]) => k.endsWith('.weight') && t.shape.length === 2)
  .map(([k, t]) => { const m = k.slice(0, -'.weight'.length); return { loraModule: m, baseModule: m, from: 0, count: t.shape[0], to: 0 }; });
/** On BFL's file: diffusers' rows of each BFL Linear (qkv and linear1 split, final modulation halves swapped). */
const bflParts = (): Part[] => fluxLinears().flatMap(([bfl, o]) => diffusersRows(bfl, o).map((t) => ({ loraModule: t.key, baseModule: bfl, from: t.dst, count: t.count, to: t.src })));
const diffusersNorms = (prefix: string): [string, string][] => fluxNorms().map((n) => [`${prefix}${diffusersNorm(n)}`, diffusersNorm(n)]);
const bflNorms = (prefix: string): [string, string][] => fluxNorms().map((n) => [`${prefix}${diffusersNorm(n)}`, n]);

const adapterTensors = diffusersControlLora(rand, { bias: true, normPrefix: 'transformer.' });
const loraBytes = buildSafetensors(adapterTensors);
const lora = decodeSafetensors(loraBytes).tensors;
const config = { _class_name: 'FluxTransformer2DModel', _diffusers_version: '0.30.0.dev0', attention_head_dim: HEAD, guidance_embeds: true, in_channels: IN, num_layers: DOUBLE, num_single_layers: SINGLE };

/** Merges one LoRA file into a folder on the CPU, checking the plan has no problems; the output files by path. */
async function mergeFolder(files: Record<string, Uint8Array | string>, loraFile: Uint8Array, weight: number): Promise<Map<string, Blob>> {
  const prepared = await prepareMerge(memoryInputFileSet(files, 'FLUX.1-dev'), [{ files: memoryInputFileSet({ 'pytorch_lora_weights.safetensors': loraFile }, 'canny'), weight }]);
  try {
    expect(prepared.plan.problems).toEqual([]);
    const output = createBlobOutputTarget();
    await mergeModel({ prepared, output, backend: backends.cpu! });
    return new Map(output.files().map((f) => [f.path, f.blob]));
  } finally {
    await prepared.close();
  }
}
const tensorsOf = async (blob: Blob) => decodeSafetensors(new Uint8Array(await blob.arrayBuffer())).tensors;

describe('diffusers-named control LoRA on a FluxTransformer2DModel folder', () => {
  const baseBytes = buildSafetensors(fluxDevDiffusers(rand), { format: 'pt' });
  const base = decodeSafetensors(baseBytes).tensors;
  for (const kind of ['cpu', 'webgpu'] as const) {
    it(`x_embedder widened from ${IN} to ${2 * IN} columns, LoRA and lora_B.bias added at w, norms loaded, on ${kind}`, async () => {
      const { tensors, warnings } = await mergeInMemory({
        backend: backends[kind]!, base: { 'diffusion_pytorch_model.safetensors': baseBytes, 'config.json': JSON.stringify(config) },
        adapters: [{ files: { 'pytorch_lora_weights.safetensors': loraBytes }, weight: 0.75 }],
      });
      expectAll(tensors, base, expected(base, lora, 0.75, 1, diffusersParts(base), diffusersNorms('transformer.')));
      expect(warnings.filter((x) => /^adapter0: weight 0\.75 does not apply to the replaced tensor \S+\.attn\.norm_(added_)?[qk]\.weight \(set_weight/.test(x))).toHaveLength(fluxNorms().length);
    });
  }

  it('lora_adapter_metadata\'s lora_alpha scales the widened x_embedder, its lora_B.bias and the rest alike; config.json in_channels follows', async () => {
    const metadata = { lora_adapter_metadata: JSON.stringify({ 'transformer.r': R, 'transformer.lora_alpha': 2 * R, 'transformer.lora_bias': true, 'transformer.use_rslora': false, 'transformer.use_dora': false }) };
    const files = await mergeFolder({ 'diffusion_pytorch_model.safetensors': baseBytes, 'config.json': JSON.stringify(config) }, buildSafetensors(adapterTensors, metadata), 0.5);
    expectAll(await tensorsOf(files.get('diffusion_pytorch_model.safetensors')!), base, expected(base, lora, 0.5, 2, diffusersParts(base), diffusersNorms('transformer.')));
    expect(JSON.parse(await files.get('config.json')!.text())).toEqual({ ...config, in_channels: 2 * IN, out_channels: IN });
  });

  it('a base already 2× wide (FLUX.1-Canny-dev in diffusers\' form): applied without widening, as diffusers skips the expansion when the shapes agree', async () => {
    const wide = fluxDevDiffusers(rand).map((t) => t.name === 'x_embedder.weight' ? tensor(rand, t.name, [H, 2 * IN], 'BF16') : t);
    const bytes = buildSafetensors(wide, { format: 'pt' });
    const wideBase = decodeSafetensors(bytes).tensors;
    const { tensors } = await mergeInMemory({
      backend: backends.cpu!, base: { 'diffusion_pytorch_model.safetensors': bytes, 'config.json': JSON.stringify({ ...config, in_channels: 2 * IN, out_channels: IN }) },
      adapters: [{ files: { 'pytorch_lora_weights.safetensors': loraBytes }, weight: 1 }],
    });
    expectAll(tensors, wideBase, expected(wideBase, lora, 1, 1, diffusersParts(wideBase), diffusersNorms('transformer.')));
  });
});

describe('diffusers-named control LoRA on a FluxPipeline folder', () => {
  const baseBytes = buildSafetensors(fluxDevDiffusers(rand), { format: 'pt' });
  const base = decodeSafetensors(baseBytes).tensors;
  const files: Record<string, Uint8Array | string> = {
    'model_index.json': JSON.stringify({ _class_name: 'FluxPipeline', transformer: ['diffusers', 'FluxTransformer2DModel'], scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'] }),
    'scheduler/scheduler_config.json': JSON.stringify({ _class_name: 'FlowMatchEulerDiscreteScheduler' }),
    'transformer/config.json': JSON.stringify(config),
    'transformer/diffusion_pytorch_model.safetensors': baseBytes,
  };
  it('transformer/x_embedder widened, transformer/config.json in_channels 2×, out_channels kept', async () => {
    const out = await mergeFolder(files, loraBytes, 1);
    expectAll(await tensorsOf(out.get('transformer/diffusion_pytorch_model.safetensors')!), base, expected(base, lora, 1, 1, diffusersParts(base), diffusersNorms('transformer.')));
    expect(JSON.parse(await out.get('transformer/config.json')!.text())).toEqual({ ...config, in_channels: 2 * IN, out_channels: IN });
    expect(await out.get('scheduler/scheduler_config.json')!.text()).toBe(files['scheduler/scheduler_config.json']);
  });
});

describe('diffusers-named control LoRA on BFL\'s flux1-dev.safetensors', () => {
  const baseBytes = buildSafetensors(fluxDevBfl(rand, 'BF16'));
  const base = decodeSafetensors(baseBytes).tensors;
  for (const kind of ['cpu', 'webgpu'] as const) {
    it(`img_in widened from ${IN} to ${2 * IN} columns, to_q/k/v into qkv rows, norms onto query_norm/key_norm, on ${kind}`, async () => {
      const { tensors } = await mergeInMemory({
        backend: backends[kind]!, base: { 'flux1-dev.safetensors': baseBytes },
        adapters: [{ files: { 'pytorch_lora_weights.safetensors': loraBytes }, weight: 1.25 }],
      });
      expectAll(tensors, base, expected(base, lora, 1.25, 1, bflParts(), bflNorms('transformer.')));
    });
  }
});

describe('refused, one line naming the tensor or module', () => {
  const refusals = (base: Record<string, Uint8Array | string>, adapter: FixtureTensor[]) => refusalsInMemory({
    backend: backends.cpu!, base, adapters: [{ files: { 'pytorch_lora_weights.safetensors': buildSafetensors(adapter) } }],
  });
  const bfl = { 'flux1-dev.safetensors': buildSafetensors(fluxDevBfl(rand, 'BF16')) };

  it('a lora_A wider than its base on another module than x_embedder (context_embedder): diffusers would widen it, but no config field records it', async () => {
    const adapter = adapterTensors.map((t) => t.name === 'transformer.context_embedder.lora_A.weight' ? tensor(rand, t.name, [R, 2 * TXT], 'F32') : t);
    expect(await refusals(bfl, adapter)).toEqual([expect.stringMatching(/^adapter0: module "transformer\.context_embedder": ΔW \(8, 24\) does not fit base txt_in\.weight \(8, 12\)/)]);
  });

  it('an x_embedder base already wider than its lora_A', async () => {
    const wide = fluxDevBfl(rand, 'BF16').map((t) => t.name === 'img_in.weight' ? tensor(rand, t.name, [H, 3 * IN], 'BF16') : t);
    expect(await refusals({ 'flux1-dev.safetensors': buildSafetensors(wide) }, adapterTensors)).toEqual([
      expect.stringMatching(/^adapter0: module "transformer\.x_embedder": base img_in\.weight \(8, 48\) is already wider than the 32 input columns the adapter widens it to$/),
    ]);
  });

  it('an img_in stored as scaled fp8: widening it is refused, naming the weight', async () => {
    const scaledBase = fluxDevBfl(rand, 'F8_E4M3');
    const scales = scaledBase.filter((t) => t.dtype === 'F8_E4M3').map((t): FixtureTensor => ({ name: t.name.replace(/\.weight$/, '.scale_weight'), dtype: 'F32', shape: [], data: [1 / 64] }));
    expect(await refusals({ 'flux1-dev.safetensors': buildSafetensors([...scaledBase, ...scales, { name: 'scaled_fp8', dtype: 'F8_E4M3', shape: [0], data: [] }]) }, adapterTensors)).toEqual([
      expect.stringMatching(/module "transformer\.x_embedder": widening img_in\.weight \(8, 16\) to 32 input columns is not supported on the scaled fp8 weight img_in\.weight.*; merge into a safetensors base in F32, F16, BF16 or plain fp8$/),
    ]);
  });
});

describe('norms under "transformer." twice, as the training script saves them', () => {
  it('are refused by name (FluxControlPipeline drops them with a warning), one line each, nothing else', async () => {
    const adapter = diffusersControlLora(rand, { bias: true, normPrefix: 'transformer.transformer.' });
    const lines = await refusalsInMemory({
      backend: backends.cpu!, base: { 'flux1-dev.safetensors': buildSafetensors(fluxDevBfl(rand, 'BF16')) },
      adapters: [{ files: { 'pytorch_lora_weights.safetensors': buildSafetensors(adapter) } }],
    });
    expect(lines).toHaveLength(1);
    const problems = lines[0].split('\n').slice(1);
    expect(problems).toHaveLength(fluxNorms().length);
    expect(problems[0].trim()).toBe('- adapter0/pytorch_lora_weights.safetensors: tensor "transformer.transformer.transformer_blocks.0.attn.norm_q.weight" is a norm weight under "transformer." twice (as diffusers\' train_control_lora_flux.py saves --train_norm_layers), which FluxControlPipeline.load_lora_weights does not load (it warns and drops it); remove the tensor to merge as diffusers does, or drop one "transformer." to load it');
  });
});

/**
 * Qwen-Image's QwenImageTransformer2DModel shares the names `transformer_blocks.N.attn.to_q` and
 * `attn.norm_q` with FLUX.1's diffusers names; its loader (QwenImageLoraLoaderMixin.load_lora_weights)
 * refuses a file with a key that does not contain "lora", and only FLUX.1's loads q/k norms.
 */
describe('diffusers\' FLUX.1 norm weights on a base that shares FLUX.1\'s names', () => {
  const W = 8;
  const qwen = {
    'diffusion_pytorch_model.safetensors': buildSafetensors([
      tensor(rand, 'transformer_blocks.0.img_mod.1.weight', [6 * W, W], 'BF16'), tensor(rand, 'transformer_blocks.0.attn.to_q.weight', [W, W], 'BF16'),
      tensor(rand, 'transformer_blocks.0.attn.norm_q.weight', [HEAD], 'BF16'), tensor(rand, 'transformer_blocks.0.attn.norm_k.weight', [HEAD], 'BF16'),
    ]),
    'config.json': JSON.stringify({ _class_name: 'QwenImageTransformer2DModel', _diffusers_version: '0.35.0.dev0', attention_head_dim: HEAD, num_layers: 1 }),
  };
  const file = (norms: boolean) => buildSafetensors([
    tensor(rand, 'transformer.transformer_blocks.0.attn.to_q.lora_A.weight', [R, W], 'F32'), tensor(rand, 'transformer.transformer_blocks.0.attn.to_q.lora_B.weight', [W, R], 'F32'),
    ...(norms ? [tensor(rand, 'transformer.transformer_blocks.0.attn.norm_k.weight', [HEAD], 'BF16'), tensor(rand, 'transformer.transformer_blocks.0.attn.norm_q.weight', [HEAD], 'BF16')] : []),
  ]);

  it('are refused in one line naming the first (the Qwen-Image loader refuses the file), where FLUX.1\'s base loads them', async () => {
    expect(await refusalsInMemory({ backend: backends.cpu!, base: qwen, adapters: [{ files: { 'pytorch_lora_weights.safetensors': file(true) } }] })).toEqual([
      'adapter0: tensor "transformer.transformer_blocks.0.attn.norm_k.weight" (and 1 more) is a q/k norm weight in diffusers\' FLUX.1 names, which only diffusers\' FLUX.1 loader loads (FluxControlPipeline\'s _load_norm_into_transformer); '
        + 'on this Qwen-Image base diffusers\' Qwen-Image loader refuses the file (every key must contain "lora") and ComfyUI reads no patch from a plain weight tensor: not supported — remove the norm tensors to merge the LoRA without them',
    ]);
    expect(await refusalsInMemory({ backend: backends.cpu!, base: qwen, adapters: [{ files: { 'pytorch_lora_weights.safetensors': file(false) } }] })).toEqual([]);
  });
});

describe('a folder whose transformer diffusers does not widen', () => {
  it('a wider x_embedder lora_A onto a config of another class (FLUX.2\'s loader does not expand) is refused naming the config', async () => {
    expect(await refusalsInMemory({
      backend: backends.cpu!,
      base: { 'diffusion_pytorch_model.safetensors': buildSafetensors(fluxDevDiffusers(rand), { format: 'pt' }), 'config.json': JSON.stringify({ ...config, _class_name: 'Flux2Transformer2DModel' }) },
      adapters: [{ files: { 'pytorch_lora_weights.safetensors': loraBytes } }],
    })).toEqual(['adapter0: widens x_embedder.weight to 32 input columns, but config.json is a Flux2Transformer2DModel, whose input layer diffusers does not widen (FluxLoraLoaderMixin does, for FluxTransformer2DModel and ChromaTransformer2DModel)']);
  });

  it('a wider x_embedder lora_A onto a folder whose config.json names no diffusers class is refused naming the config: no loader is known to read its width', async () => {
    // The same fields without diffusers' _class_name (as a tool that is not diffusers writes them).
    const { _class_name: _, ...unnamed } = config;
    expect(await refusalsInMemory({
      backend: backends.cpu!,
      base: { 'diffusion_pytorch_model.safetensors': buildSafetensors(fluxDevDiffusers(rand), { format: 'pt' }), 'config.json': JSON.stringify(unnamed) },
      adapters: [{ files: { 'pytorch_lora_weights.safetensors': loraBytes } }],
    })).toEqual(['adapter0: widens x_embedder.weight to 32 input columns, but config.json is not a diffusers model config whose width this tool knows to change']);
  });
});

describe('the CLI (loramerge merge) on flux1-dev.safetensors', () => {
  const temp = tempDirs();
  afterAll(() => temp.removeAll());

  it('writes img_in (8, 32) and says so; the script\'s transformer.transformer. norms are refused and nothing is written', async () => {
    const baseBytes = buildSafetensors(fluxDevBfl(rand, 'BF16'), { format: 'pt' });
    const doubled = buildSafetensors(diffusersControlLora(rand, { bias: true, normPrefix: 'transformer.transformer.' }));
    const dir = temp.make({ 'flux1-dev.safetensors': baseBytes, 'pytorch_lora_weights.safetensors': loraBytes, 'doubled.safetensors': doubled });
    const out = join(dir, 'merged.safetensors');
    const run = await runCli(['merge', '--base', join(dir, 'flux1-dev.safetensors'), '--adapter', join(dir, 'pytorch_lora_weights.safetensors'), '--out', out, '--backend', 'cpu']);
    expect(errorLines(run.stderr), run.stderr).toEqual([]);
    expect(run.code).toBe(0);
    expect(run.stdout + run.stderr).toMatch(/note: img_in\.weight is written \(8, 32\), 16 zero columns added to the base's 16 before the adapter's update/);
    const base = decodeSafetensors(baseBytes).tensors;
    expectAll(decodeSafetensors(new Uint8Array(readFileSync(out))).tensors, base, expected(base, lora, 1, 1, bflParts(), bflNorms('transformer.')));

    const refused = await runCli(['merge', '--base', join(dir, 'flux1-dev.safetensors'), '--adapter', join(dir, 'doubled.safetensors'), '--out', join(dir, 'x.safetensors'), '--backend', 'cpu']);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('tensor "transformer.transformer.single_transformer_blocks.1.attn.norm_k.weight" is a norm weight under "transformer." twice');
    expect(refused.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(join(dir, 'x.safetensors'))).toBe(false);
  });
});
