/**
 * combine, resize and extract through the CLI as a user runs them: the files they write load in
 * loramerge's own readers and merge to what the inputs give, extraction recovers a planted
 * low-rank difference within 1e-3 of the optimal error, bad input is one line with nothing left at
 * --out, and Ctrl-C stops them the same way.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { kohyaFile, peftFiles } from './helpers/adapter-fixtures.js';
import { q4kmLlama } from './helpers/gguf-models.js';
import { errorLines, listDir, runCli, runCliActingAtStart } from './helpers/cli.js';
import { buildSafetensors, decodeSafetensors, seededRandom, tempDirs } from './helpers/fixtures.js';
import { dense, frob2, gaussian, minus, optimalError, product, singularValues, withSpectrum, type Dense } from './helpers/svd-reference.js';

const temp = tempDirs();
afterAll(() => temp.removeAll());

const randomDense = (rows: number, cols: number, rand: () => number, scale = 1): Dense => dense(rows, cols, () => gaussian(rand) * scale);
const tensorOf = (file: string, name: string) => decodeSafetensors(readFileSync(file)).tensors.get(name)!;

/** A tiny Llama-like base: two q_proj/v_proj layers, a norm, an embedding (f32). */
function baseTensors(rand: () => number) {
  return {
    'model.embed_tokens.weight': randomDense(50, 64, rand, 0.1),
    'model.layers.0.self_attn.q_proj.weight': randomDense(64, 64, rand, 0.1),
    'model.layers.0.self_attn.v_proj.weight': randomDense(32, 64, rand, 0.1),
    'model.layers.0.input_layernorm.weight': dense(1, 64, () => 1),
    'model.layers.1.mlp.down_proj.weight': randomDense(64, 96, rand, 0.1),
  };
}

function modelFile(tensors: Record<string, Dense>): Uint8Array {
  return buildSafetensors(Object.entries(tensors).map(([name, d]) => ({
    name, dtype: 'F32' as const, shape: name.includes('layernorm') || name.endsWith('.bias') ? [d.cols] : [d.rows, d.cols], data: d.data,
  })));
}

describe('extract', () => {
  it('recovers a planted low-rank difference, saves changed norms and embeddings whole, and merges back', async () => {
    const rand = seededRandom(21);
    const base = baseTensors(rand);
    const planted = withSpectrum(64, 64, [3, 2, 1, 0.5], rand);
    const noise = randomDense(64, 64, rand, 1e-4);
    const tuned: Record<string, Dense> = { ...base };
    const qName = 'model.layers.0.self_attn.q_proj.weight';
    tuned[qName] = dense(64, 64, (i, j) => base[qName].data[i * 64 + j] + planted.data[i * 64 + j] + noise.data[i * 64 + j]);
    const dName = 'model.layers.1.mlp.down_proj.weight';
    const dDiff = withSpectrum(64, 96, [1, 0.8, 0.6, 0.4, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01], rand);
    tuned[dName] = dense(64, 96, (i, j) => base[dName].data[i * 96 + j] + dDiff.data[i * 96 + j]);
    tuned['model.layers.0.input_layernorm.weight'] = dense(1, 64, (_, j) => 1 + j / 1000);
    tuned['model.embed_tokens.weight'] = dense(50, 64, (i, j) => base['model.embed_tokens.weight'].data[i * 64 + j] + (i === 3 ? 0.5 : 0));
    const dir = temp.make({ 'base/model.safetensors': modelFile(base), 'tuned/model.safetensors': modelFile(tuned), 'base/config.json': '{"_name_or_path": "org/tiny-llama"}' });
    const out = join(dir, 'lora');
    const r = await runCli(['extract', '--base', join(dir, 'base'), '--tuned', join(dir, 'tuned'), '--rank', '4', '--out', out, '--backend', 'cpu']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/model\.layers\.0\.self_attn\.q_proj\s+4\s+\d+\.\d+%/);
    expect(r.stderr).toMatch(/^wrote 2 LoRA modules and 2 whole tensors to .*lora \(PEFT folder\) in /m);
    const config = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
    expect(config).toMatchObject({ peft_type: 'LORA', r: 4, lora_alpha: 4, base_model_name_or_path: 'org/tiny-llama' });
    expect(config.target_modules.sort()).toEqual(['model.layers.0.self_attn.q_proj', 'model.layers.1.mlp.down_proj']);
    expect(config.modules_to_save.sort()).toEqual(['model.embed_tokens', 'model.layers.0.input_layernorm']);
    const weights = join(out, 'adapter_model.safetensors');
    const file = decodeSafetensors(readFileSync(weights));
    expect([...file.tensors.keys()].sort()).toEqual([
      'base_model.model.model.embed_tokens.weight', 'base_model.model.model.layers.0.input_layernorm.weight',
      'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight',
      'base_model.model.model.layers.1.mlp.down_proj.lora_A.weight', 'base_model.model.model.layers.1.mlp.down_proj.lora_B.weight',
    ]);
    expect(file.metadata.loramerge_command).toBe('extract');
    const ba = (m: string) => {
      const a = tensorOf(weights, `base_model.model.${m}.lora_A.weight`), b = tensorOf(weights, `base_model.model.${m}.lora_B.weight`);
      return product({ rows: b.shape[0], cols: b.shape[1], data: b.values }, { rows: a.shape[0], cols: a.shape[1], data: a.values });
    };
    const qTarget = minus(tuned[qName], base[qName]);
    const qErr = Math.sqrt(frob2(minus(ba('model.layers.0.self_attn.q_proj'), qTarget)));
    expect(qErr).toBeLessThanOrEqual(optimalError(qTarget, 4) * (1 + 1e-3) + 1e-6 * Math.sqrt(frob2(qTarget)));
    // What remains is the noise's share in a rank-4 subspace: about √(4·128/64²) ≈ 0.35 of the noise.
    expect(Math.sqrt(frob2(minus(ba('model.layers.0.self_attn.q_proj'), planted)))).toBeLessThan(0.5 * Math.sqrt(frob2(noise)));
    const dTarget = minus(tuned[dName], base[dName]);
    const dErr = Math.sqrt(frob2(minus(ba('model.layers.1.mlp.down_proj'), dTarget)));
    expect(dErr).toBeLessThanOrEqual(optimalError(dTarget, 4) * (1 + 1e-3) + 1e-6 * Math.sqrt(frob2(dTarget)));
    // The report's share of ‖ΔW‖_F kept, to its four decimals: √(1 − optimum² / ‖ΔW‖²).
    const printed = Number(/model\.layers\.1\.mlp\.down_proj\s+4\s+(\d+\.\d+)%/.exec(r.stdout)?.[1]);
    expect(Math.abs(printed - 100 * Math.sqrt(1 - optimalError(dTarget, 4) ** 2 / frob2(dTarget)))).toBeLessThan(1e-4);

    // Merged back into the base it gives the tuned model's norm and embedding exactly, q_proj nearly.
    const merged = join(dir, 'merged.safetensors');
    const m = await runCli(['merge', '--base', join(dir, 'base', 'model.safetensors'), '--adapter', out, '--out', merged, '--backend', 'cpu']);
    expect(m.code, m.stderr).toBe(0);
    expect(tensorOf(merged, 'model.layers.0.input_layernorm.weight').values).toEqual(Float64Array.from(tuned['model.layers.0.input_layernorm.weight'].data, Math.fround));
    const q = tensorOf(merged, qName);
    expect(Math.sqrt(frob2(minus({ rows: 64, cols: 64, data: q.values }, tuned[qName])))).toBeLessThan(qErr * 1.01 + 1e-5);
  });

  it('--energy picks per-module ranks (rank_pattern) and a kohya --out gets kohya names', async () => {
    const rand = seededRandom(22);
    const base = baseTensors(rand);
    const tuned = { ...base };
    const qName = 'model.layers.0.self_attn.q_proj.weight', vName = 'model.layers.0.self_attn.v_proj.weight';
    const q = withSpectrum(64, 64, [1, 1, 1, 1, 1, 1], rand), v = withSpectrum(32, 64, [1, 0.01], rand);
    tuned[qName] = dense(64, 64, (i, j) => base[qName].data[i * 64 + j] + q.data[i * 64 + j]);
    tuned[vName] = dense(32, 64, (i, j) => base[vName].data[i * 64 + j] + v.data[i * 64 + j]);
    const dir = temp.make({ 'base.safetensors': modelFile(base), 'tuned.safetensors': modelFile(tuned) });
    const r = await runCli(['extract', '--base', join(dir, 'base.safetensors'), '--tuned', join(dir, 'tuned.safetensors'), '--energy', '0.99', '--out', join(dir, 'peft')]);
    expect(r.code, r.stderr).toBe(0);
    const config = JSON.parse(readFileSync(join(dir, 'peft', 'adapter_config.json'), 'utf8'));
    expect({ r: config.r, pattern: config.rank_pattern }).toEqual({ r: 6, pattern: { 'model.layers.0.self_attn.v_proj': 1 } });
    const k = await runCli(['extract', '--base', join(dir, 'base.safetensors'), '--tuned', join(dir, 'tuned.safetensors'), '--rank', '2', '--out', join(dir, 'k.safetensors')]);
    expect(k.code, k.stderr).toBe(0);
    const file = decodeSafetensors(readFileSync(join(dir, 'k.safetensors')));
    expect(file.tensors.get('lora_te_model_layers_0_self_attn_q_proj.lora_down.weight')?.shape).toEqual([2, 64]);
    expect(file.tensors.get('lora_te_model_layers_0_self_attn_q_proj.alpha')?.values[0]).toBe(2);
    expect(file.metadata.ss_network_module).toBe('networks.lora');
  });

  it('a vocabulary grown for added tokens (embed_tokens 32 → 34 rows) is saved whole and said in a warning naming the tensor and both row counts', async () => {
    const rand = seededRandom(29);
    const qName = 'model.layers.0.self_attn.q_proj.weight', eName = 'model.embed_tokens.weight';
    const base = { [qName]: randomDense(16, 16, rand), [eName]: randomDense(32, 16, rand) };
    const diff = withSpectrum(16, 16, [1, 0.5], rand);
    // PEFT's resized embedding: the base's rows, then two new tokens' rows.
    const grown = dense(34, 16, (i, j) => (i < 32 ? base[eName].data[i * 16 + j] : gaussian(rand)));
    const tuned = { [qName]: dense(16, 16, (i, j) => base[qName].data[i * 16 + j] + diff.data[i * 16 + j]), [eName]: grown };
    const dir = temp.make({ 'base.safetensors': modelFile(base), 'tuned.safetensors': modelFile(tuned) });
    const r = await runCli(['extract', '--base', join(dir, 'base.safetensors'), '--tuned', join(dir, 'tuned.safetensors'), '--rank', '2', '--out', join(dir, 'peft'), '--backend', 'cpu']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr.split('\n').filter((line) => line.startsWith('warning:'))).toEqual([
      `warning: ${join(dir, 'tuned.safetensors')} has a vocabulary grown for added tokens: model.embed_tokens.weight has 34 rows (32 in ${join(dir, 'base.safetensors')}); saved whole, so the adapter loads only on a base resized to 34 rows the same way (transformers' resize_token_embeddings) before it is loaded`,
    ]);
    const saved = decodeSafetensors(readFileSync(join(dir, 'peft', 'adapter_model.safetensors'))).tensors.get(`base_model.model.${eName}`)!;
    expect(saved.shape).toEqual([34, 16]);
  });

  it('a kohya --out names a bare Flux transformer\'s modules lora_unet_, so that the file merges back into it', async () => {
    // BFL's flux1-dev.safetensors stores the transformer without a prefix: its module paths alone
    // (double_blocks.0…) do not say "diffusion model", and were written lora_te_…, text-encoder
    // names that ComfyUI and loramerge look for in the text encoder and never apply.
    const rand = seededRandom(27);
    const shapes: Record<string, [number, number]> = {
      'double_blocks.0.img_attn.qkv.weight': [48, 16], 'single_blocks.0.linear1.weight': [40, 16], 'img_in.weight': [16, 8], 'final_layer.linear.weight': [8, 16],
    };
    const base: Record<string, Dense> = {}, tuned: Record<string, Dense> = {};
    for (const [name, [rows, cols]] of Object.entries(shapes)) {
      base[name] = randomDense(rows, cols, rand, 0.1);
      const diff = withSpectrum(rows, cols, [0.3, 0.1], rand);
      tuned[name] = dense(rows, cols, (i, j) => base[name].data[i * cols + j] + diff.data[i * cols + j]);
    }
    const dir = temp.make({ 'base.safetensors': modelFile(base), 'tuned.safetensors': modelFile(tuned) });
    const out = join(dir, 'flux-lora.safetensors');
    const r = await runCli(['extract', '--base', join(dir, 'base.safetensors'), '--tuned', join(dir, 'tuned.safetensors'), '--rank', '2', '--out', out, '--backend', 'cpu']);
    expect(r.code, r.stderr).toBe(0);
    const keys = [...decodeSafetensors(readFileSync(out)).tensors.keys()].filter((k) => k.endsWith('.lora_down.weight')).sort();
    expect(keys).toEqual(['lora_unet_double_blocks_0_img_attn_qkv', 'lora_unet_final_layer_linear', 'lora_unet_img_in', 'lora_unet_single_blocks_0_linear1'].map((k) => `${k}.lora_down.weight`));
    const merged = join(dir, 'merged.safetensors');
    const m = await runCli(['merge', '--base', join(dir, 'base.safetensors'), '--adapter', out, '--out', merged, '--backend', 'cpu']);
    expect(m.code, m.stderr).toBe(0);
    for (const [name, [rows, cols]] of Object.entries(shapes)) {
      // Each difference has rank 2, so the rank-2 LoRA merged back gives the tuned weight to f32 rounding.
      const err = Math.sqrt(frob2(minus({ rows, cols, data: tensorOf(merged, name).values }, tuned[name])));
      expect(err, name).toBeLessThan(1e-5 * Math.sqrt(frob2(tuned[name])));
    }
  });

  it('a kohya --out of an SDXL checkpoint names each part as kohya does (open_clip\'s encoder renamed, its in_proj split) and merges back; a VAE\'s modules are left out, named', async () => {
    const rand = seededRandom(28);
    const g = 'conditioner.embedders.1.model.transformer.resblocks.0';
    const shapes: Record<string, [number, number]> = {
      'model.diffusion_model.input_blocks.4.1.proj_in.weight': [24, 24],
      'conditioner.embedders.0.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight': [24, 24],
      [`${g}.attn.in_proj_weight`]: [72, 24], [`${g}.attn.out_proj.weight`]: [24, 24], [`${g}.mlp.c_fc.weight`]: [48, 24], [`${g}.mlp.c_proj.weight`]: [24, 48],
      'first_stage_model.decoder.mid.attn_1.q.weight': [24, 24],
    };
    const base: Record<string, Dense> = {}, tuned: Record<string, Dense> = {};
    for (const [name, [rows, cols]] of Object.entries(shapes)) {
      base[name] = randomDense(rows, cols, rand, 0.1);
      // Rank 1 per module (per third of in_proj), so a rank-1 extraction is exact to f32 rounding.
      const thirds = name.endsWith('in_proj_weight') ? 3 : 1;
      const parts = Array.from({ length: thirds }, () => withSpectrum(rows / thirds, cols, [0.2], rand));
      tuned[name] = dense(rows, cols, (i, j) => base[name].data[i * cols + j] + parts[Math.floor(i / (rows / thirds))].data[(i % (rows / thirds)) * cols + j]);
    }
    // A VAE module whose bias alone changed is left out and named too.
    const vaeOut = 'first_stage_model.decoder.conv_out';
    base[`${vaeOut}.weight`] = tuned[`${vaeOut}.weight`] = randomDense(24, 24, rand, 0.1);
    base[`${vaeOut}.bias`] = dense(1, 24, () => 0);
    tuned[`${vaeOut}.bias`] = dense(1, 24, (_, j) => j / 100);
    const dir = temp.make({ 'base.safetensors': modelFile(base), 'tuned.safetensors': modelFile(tuned) });
    const out = join(dir, 'sdxl-lora.safetensors');
    const r = await runCli(['extract', '--base', join(dir, 'base.safetensors'), '--tuned', join(dir, 'tuned.safetensors'), '--rank', '1', '--out', out, '--backend', 'cpu']);
    expect(r.code, r.stderr).toBe(0);
    const keys = [...decodeSafetensors(readFileSync(out)).tensors.keys()].filter((k) => k.endsWith('.lora_down.weight')).map((k) => k.replace('.lora_down.weight', '')).sort();
    expect(keys).toEqual([
      'lora_te1_text_model_encoder_layers_0_self_attn_q_proj',
      ...['mlp_fc1', 'mlp_fc2', 'self_attn_k_proj', 'self_attn_out_proj', 'self_attn_q_proj', 'self_attn_v_proj'].map((x) => `lora_te2_text_model_encoder_layers_0_${x}`),
      'lora_unet_input_blocks_4_1_proj_in',
    ]);
    expect(r.stderr.split('\n').filter((line) => line.startsWith('warning:'))).toEqual([
      "warning: 2 changed module(s) have no name a kohya LoRA loader reads (a VAE's modules, for one) and are left out (first_stage_model.decoder.mid.attn_1.q, first_stage_model.decoder.conv_out); write a PEFT folder to keep them under their own paths",
    ]);
    const merged = join(dir, 'merged.safetensors');
    const m = await runCli(['merge', '--base', join(dir, 'base.safetensors'), '--adapter', out, '--out', merged, '--backend', 'cpu']);
    expect(m.code, m.stderr).toBe(0);
    for (const [name, [rows, cols]] of Object.entries(shapes)) {
      const want = name.startsWith('first_stage_model.') ? base[name] : tuned[name];
      const err = Math.sqrt(frob2(minus({ rows, cols, data: tensorOf(merged, name).values }, want)));
      expect(err, name).toBeLessThan(1e-5 * Math.sqrt(frob2(want)));
    }
  });
});

describe('combine and resize', () => {
  it('combine cat writes a PEFT folder that merges exactly like its inputs', async () => {
    const rand = seededRandom(23);
    const base = baseTensors(rand);
    const q = 'model.layers.0.self_attn.q_proj', v = 'model.layers.0.self_attn.v_proj';
    const a1 = peftFiles([{ name: q, b: randomDense(64, 4, rand, 0.1), a: randomDense(4, 64, rand, 0.1) }, { name: v, b: randomDense(32, 4, rand, 0.1), a: randomDense(4, 64, rand, 0.1) }], { lora_alpha: 8 });
    const a2 = peftFiles([{ name: q, b: randomDense(64, 2, rand, 0.1), a: randomDense(2, 64, rand, 0.1) }], { r: 2, lora_alpha: 2 });
    const dir = temp.make({ 'base.safetensors': modelFile(base), ...prefixed('a1', a1), ...prefixed('a2', a2) });
    const c = await runCli(['combine', '--adapter', join(dir, 'a1'), '--weight', '0.5', '--adapter', join(dir, 'a2'), '--weight', '-2', '--method', 'cat', '--out', join(dir, 'cat')]);
    expect(c.code, c.stderr).toBe(0);
    const config = JSON.parse(readFileSync(join(dir, 'cat', 'adapter_config.json'), 'utf8'));
    expect(config).toMatchObject({ peft_type: 'LORA', r: 6, lora_alpha: 6, rank_pattern: { [v]: 4 }, alpha_pattern: { [v]: 4 }, base_model_name_or_path: 'org/tiny-llama' });
    const direct = await runCli(['merge', '--base', join(dir, 'base.safetensors'), '--adapter', join(dir, 'a1'), '--weight', '0.5', '--adapter', join(dir, 'a2'), '--weight', '-2', '--out', join(dir, 'direct.safetensors'), '--backend', 'cpu']);
    const viaCat = await runCli(['merge', '--base', join(dir, 'base.safetensors'), '--adapter', join(dir, 'cat'), '--out', join(dir, 'cat.safetensors'), '--backend', 'cpu']);
    expect(direct.code + viaCat.code, direct.stderr + viaCat.stderr).toBe(0);
    for (const name of [`${q}.weight`, `${v}.weight`]) {
      const x = tensorOf(join(dir, 'direct.safetensors'), name).values, y = tensorOf(join(dir, 'cat.safetensors'), name).values;
      x.forEach((value, i) => expect(Math.abs(value - y[i])).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(value))));
    }
  });

  it('combine says that a weight does not apply to a tensor saved whole (modules_to_save), as merge says', async () => {
    const rand = seededRandom(30);
    const q = 'model.layers.0.self_attn.q_proj';
    const head = buildSafetensors([
      { name: `base_model.model.${q}.lora_A.weight`, dtype: 'F32', shape: [2, 64], data: randomDense(2, 64, rand, 0.1).data },
      { name: `base_model.model.${q}.lora_B.weight`, dtype: 'F32', shape: [64, 2], data: randomDense(64, 2, rand, 0.1).data },
      { name: 'base_model.model.lm_head.weight', dtype: 'F32', shape: [50, 64], data: randomDense(50, 64, rand, 0.1).data },
    ]);
    const dir = temp.make({
      'head/adapter_config.json': JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 2, target_modules: ['q_proj'], modules_to_save: ['lm_head'] }),
      'head/adapter_model.safetensors': head,
      ...prefixed('other', peftFiles([{ name: q, b: randomDense(64, 2, rand, 0.1), a: randomDense(2, 64, rand, 0.1) }])),
    });
    const r = await runCli(['combine', '--adapter', join(dir, 'head'), '--weight', '0.5', '--adapter', join(dir, 'other'), '--method', 'cat', '--out', join(dir, 'out'), '--backend', 'cpu']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr.split('\n').filter((line) => line.startsWith('warning:'))).toEqual([
      `warning: ${join(dir, 'head')}: weight 0.5 does not apply to "lm_head.weight", saved whole (modules_to_save); the combined adapter replaces it whole, as merge would`,
    ]);
    expect(JSON.parse(readFileSync(join(dir, 'out', 'adapter_config.json'), 'utf8')).modules_to_save).toEqual(['lm_head']);
  });

  it('combine svd to a --rank above the combined update\'s says so, naming the modules, and is exact', async () => {
    const rand = seededRandom(33);
    const key = 'lora_unet_down_blocks_0_attentions_0_proj_in';
    const [b1, a1, b2, a2] = [randomDense(40, 3, rand), randomDense(3, 30, rand), randomDense(40, 2, rand), randomDense(2, 30, rand)];
    const dir = temp.make({ 'one.safetensors': kohyaFile([{ name: key, b: b1, a: a1, alpha: 1.5 }]), 'two.safetensors': kohyaFile([{ name: key, b: b2, a: a2, alpha: 4 }]) });
    const out = join(dir, 'out.safetensors');
    const run = (rank: string) => runCli(['combine', '--adapter', join(dir, 'one.safetensors'), '--adapter', join(dir, 'two.safetensors'), '--weight', '-0.5', '--method', 'svd', ...(rank ? ['--rank', rank] : []), '--out', out, '--overwrite', '--backend', 'cpu']);
    const warningsOf = (stderr: string) => stderr.split('\n').filter((line) => line.startsWith('warning:'));
    const r = await run('8');
    expect(r.code, r.stderr).toBe(0);
    expect(warningsOf(r.stderr)).toEqual([`warning: rank 8 is above the rank of 1 module(s)' combined update (${key} (rank 5)): the rank they gain is zero-filled, so the file grows and the update is exact`]);
    const file = decodeSafetensors(readFileSync(out));
    const down = file.tensors.get(`${key}.lora_down.weight`)!, up = file.tensors.get(`${key}.lora_up.weight`)!;
    expect(down.shape).toEqual([8, 30]);
    const alpha = file.tensors.get(`${key}.alpha`)!.values[0];
    const p1 = product(b1, a1), p2 = product(b2, a2);
    const target = dense(40, 30, (i, j) => (1.5 / 3) * p1.data[i * 30 + j] - 0.5 * (4 / 2) * p2.data[i * 30 + j]);
    const applied = product({ rows: 40, cols: 8, data: up.values.map((x) => (x * alpha) / 8) }, { rows: 8, cols: 30, data: down.values });
    expect(Math.sqrt(frob2(minus(applied, target)))).toBeLessThan(1e-5 * Math.sqrt(frob2(target)));
    // The default rank (the largest input rank) is PEFT's choice, not the user's: nothing to say.
    const byDefault = await run('');
    expect(byDefault.code, byDefault.stderr).toBe(0);
    expect(warningsOf(byDefault.stderr)).toEqual([]);
  });

  it('combine warns of each option its --method does not read, by its flag', async () => {
    const rand = seededRandom(25);
    const dir = temp.make(prefixed('a', peftFiles([{ name: 'model.layers.0.self_attn.q_proj', b: randomDense(64, 4, rand, 0.1), a: randomDense(4, 64, rand, 0.1) }], { lora_alpha: 8 })));
    const given = ['--rank', '2', '--density', '0.5', '--majority-sign', 'frequency', '--seed', '3', '--clamp-quantile', '0.99'];
    const warnings = async (method: string) => {
      const r = await runCli(['combine', '--adapter', join(dir, 'a'), '--method', method, ...given, '--out', join(dir, `${method}.safetensors`), '--backend', 'cpu']);
      expect(r.code, r.stderr).toBe(0);
      return r.stderr.split('\n').filter((line) => line.startsWith('warning:'));
    };
    expect(await warnings('cat')).toEqual(['--rank', '--density', '--majority-sign', '--seed', '--clamp-quantile'].map((f) => `warning: ${f} has no effect with --method cat (an exact concatenation)`));
    expect(await warnings('svd')).toEqual(['--density', '--majority-sign', '--seed'].map((f) => `warning: ${f} has no effect with --method svd`));
    expect(await warnings('magnitude_prune')).toEqual(['warning: --majority-sign has no effect with --method magnitude_prune']);
    expect(await warnings('dare_ties')).toEqual([]);
  });

  it('resize of a kohya file keeps kohya names, writes alphas and reports ranks', async () => {
    const rand = seededRandom(24);
    const key = 'lora_unet_down_blocks_0_attentions_0_proj_in';
    const dir = temp.make({ 'in.safetensors': kohyaFile([{ name: key, b: randomDense(40, 8, rand), a: randomDense(8, 30, rand), alpha: 4 }]) });
    const r = await runCli(['resize', '--adapter', join(dir, 'in.safetensors'), '--sv-ratio', '3', '--out', join(dir, 'out.safetensors')]);
    expect(r.code, r.stderr).toBe(0);
    const file = decodeSafetensors(readFileSync(join(dir, 'out.safetensors')));
    const rank = file.tensors.get(`${key}.lora_down.weight`)!.shape[0];
    expect(r.stdout).toMatch(new RegExp(`${key}\\s+${rank}\\s+\\d+\\.\\d+%`));
    expect(r.stderr).toMatch(/^wrote 1 LoRA module to .*out\.safetensors \(kohya file\) in /m);
    expect(file.tensors.get(`${key}.alpha`)!.values[0]).toBeCloseTo(rank * 0.5, 6);
    expect(file.metadata.ss_base_model_version).toBe('sdxl_base_v1-0');
    expect(file.metadata.ss_training_comment).toMatch(/^Dynamic resize with sv_ratio: 3 from 8/);
  });
});

describe('resize with a dynamic rule and --rank as its maximum', () => {
  it("keeps the rule's rank capped at --rank (kohya's --new_rank beside --dynamic_method), and --rank twice is still refused", async () => {
    const rand = seededRandom(33);
    const key = 'lora_unet_down_blocks_0_attentions_0_proj_in';
    const b = randomDense(40, 8, rand), a = randomDense(8, 30, rand);
    const dir = temp.make({ 'in.safetensors': kohyaFile([{ name: key, b, a, alpha: 4 }]) });
    // sv_ratio 1000 written out as kohya's rule: #{σ > σ₁ / 1000}, clamped to [1, n − 1], + 1 (n = 30).
    const sv = singularValues(product(b, a));
    const ruleRank = Math.max(1, Math.min(sv.filter((x) => x > sv[0] / 1000).length, 29)) + 1;
    expect(ruleRank).toBe(9);
    for (const [cap, want] of [[5, 5], [64, ruleRank]]) {
      const out = join(dir, `out-${cap}.safetensors`);
      const r = await runCli(['resize', '--adapter', join(dir, 'in.safetensors'), '--sv-ratio', '1000', '--rank', String(cap), '--out', out, '--backend', 'cpu']);
      expect(r.code, r.stderr).toBe(0);
      const file = decodeSafetensors(readFileSync(out));
      expect(file.tensors.get(`${key}.lora_down.weight`)!.shape[0]).toBe(want);
      expect(file.metadata.loramerge_rule).toBe(`sv_ratio 1000 at most rank ${cap}`);
    }
    const twice = await runCli(['resize', '--adapter', join(dir, 'in.safetensors'), '--sv-fro', '0.5', '--rank', '2', '--rank', '3', '--out', join(dir, 'x.safetensors')]);
    expect(twice.code).toBe(2);
    expect(twice.stderr).toMatch(/resize takes exactly one of --rank, --sv-ratio, --sv-fro, --sv-cumulative \(a --sv-\* rule may add --rank, its maximum rank\)/);
  });
});

describe('resize to a rank above a module\'s own', () => {
  it('writes the same update with zero-filled rank, and says so naming the modules', async () => {
    const rand = seededRandom(32);
    const key = 'lora_unet_down_blocks_0_attentions_0_proj_in';
    const b = randomDense(40, 3, rand), a = randomDense(3, 30, rand);
    const dir = temp.make({ 'in.safetensors': kohyaFile([{ name: key, b, a, alpha: 1.5 }]) });
    const out = join(dir, 'out.safetensors');
    const r = await runCli(['resize', '--adapter', join(dir, 'in.safetensors'), '--rank', '6', '--out', out, '--backend', 'cpu']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr.split('\n').filter((line) => line.startsWith('warning:'))).toEqual([
      `warning: rank 6 is above the rank of 1 module(s) (${key} (rank 3)): the rank they gain is zero-filled, so the file grows and the update stays as it was`,
    ]);
    const file = decodeSafetensors(readFileSync(out));
    const down = file.tensors.get(`${key}.lora_down.weight`)!, up = file.tensors.get(`${key}.lora_up.weight`)!;
    expect(down.shape).toEqual([6, 30]);
    const alpha = file.tensors.get(`${key}.alpha`)!.values[0];
    const target = product(b, a), scaleIn = 1.5 / 3;
    const applied = product({ rows: 40, cols: 6, data: up.values.map((x) => (x * alpha) / 6) }, { rows: 6, cols: 30, data: down.values });
    expect(Math.sqrt(frob2(minus(applied, dense(40, 30, (i, j) => target.data[i * 30 + j] * scaleIn))))).toBeLessThan(1e-6 * Math.sqrt(frob2(target)));
  });
});

describe('resize of a LyCORIS LoHa', () => {
  it('writes a plain LoRA of the LoHa\'s exact update, near the optimal error, without the LoHa\'s ss_network_args', async () => {
    const rand = seededRandom(31);
    const key = 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q';
    const [w1a, w1b, w2a, w2b] = [randomDense(20, 3, rand), randomDense(3, 16, rand), randomDense(20, 3, rand), randomDense(3, 16, rand)];
    const loha = buildSafetensors([
      { name: `${key}.hada_w1_a`, dtype: 'F32', shape: [20, 3], data: w1a.data }, { name: `${key}.hada_w1_b`, dtype: 'F32', shape: [3, 16], data: w1b.data },
      { name: `${key}.hada_w2_a`, dtype: 'F32', shape: [20, 3], data: w2a.data }, { name: `${key}.hada_w2_b`, dtype: 'F32', shape: [3, 16], data: w2b.data },
      { name: `${key}.alpha`, dtype: 'F32', shape: [], data: [1.5] },
    ], { ss_network_module: 'lycoris.kohya', ss_network_args: '{"algo": "loha", "conv_dim": "3"}', ss_network_dim: '3', ss_network_alpha: '1.5', ss_base_model_version: 'sdxl_base_v1-0' });
    const dir = temp.make({ 'loha.safetensors': loha });
    const out = join(dir, 'lora.safetensors');
    const r = await runCli(['resize', '--adapter', join(dir, 'loha.safetensors'), '--rank', '4', '--out', out, '--backend', 'cpu']);
    expect(r.code, r.stderr).toBe(0);
    const file = decodeSafetensors(readFileSync(out));
    expect(file.metadata.ss_network_module).toBe('networks.lora');
    expect(file.metadata.ss_network_args).toBeUndefined();
    expect(file.metadata.ss_base_model_version).toBe('sdxl_base_v1-0');
    // LyCORIS applies (w1a·w1b) ⊙ (w2a·w2b) · α/dim; the LoRA written applies up·down · α'/4.
    const p1 = product(w1a, w1b), p2 = product(w2a, w2b);
    const target = dense(20, 16, (i, j) => p1.data[i * 16 + j] * p2.data[i * 16 + j] * (1.5 / 3));
    const down = file.tensors.get(`${key}.lora_down.weight`)!, up = file.tensors.get(`${key}.lora_up.weight`)!;
    const alpha = file.tensors.get(`${key}.alpha`)!.values[0];
    const applied = product({ rows: 20, cols: 4, data: up.values.map((x) => (x * alpha) / 4) }, { rows: 4, cols: 16, data: down.values });
    const err = Math.sqrt(frob2(minus(applied, target)));
    expect(err).toBeLessThanOrEqual(optimalError(target, 4) * (1 + 1e-3) + 1e-6 * Math.sqrt(frob2(target)));
  });
});

describe('a LyCORIS LoKr with both factors full', () => {
  // kron(W₁, W₂) of a 2×3 and an 8×6 matrix: rank 2·6 = 12 of a 16×18 update, which merge applies as a dense update
  // (a 2×3 and a 4×5: rank 8 of 8×15, whose least-rank factors hold products of the two).
  const key = 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q';
  function lokrFile(rand: () => number, [a, c, b, d] = [2, 3, 8, 6]) {
    const w1 = randomDense(a, c, rand), w2 = randomDense(b, d, rand);
    const file = buildSafetensors([
      { name: `${key}.lokr_w1`, dtype: 'F32', shape: [a, c], data: w1.data }, { name: `${key}.lokr_w2`, dtype: 'F32', shape: [b, d], data: w2.data },
      { name: `${key}.alpha`, dtype: 'F32', shape: [], data: [4] },
    ], { ss_network_module: 'lycoris.kohya', ss_network_args: '{"algo": "lokr", "full_matrix": "True"}', ss_network_dim: '100000', ss_network_alpha: '4', ss_base_model_version: 'sdxl_base_v1-0' });
    // LyCORIS applies kron(W₁, W₂) at scale 1 when neither factor is decomposed, whatever α says.
    const kron = dense(a * b, c * d, (i, j) => w1.data[Math.floor(i / b) * c + Math.floor(j / d)] * w2.data[(i % b) * d + (j % d)]);
    return { file, kron };
  }
  const read = (out: string, rank: number, rows = 16, cols = 18) => {
    const file = decodeSafetensors(readFileSync(out));
    const down = file.tensors.get(`${key}.lora_down.weight`)!, up = file.tensors.get(`${key}.lora_up.weight`)!;
    const alpha = file.tensors.get(`${key}.alpha`)!.values[0];
    expect(down.shape).toEqual([rank, cols]);
    return product({ rows, cols: rank, data: up.values.map((x) => (x * alpha) / rank) }, { rows: rank, cols, data: down.values });
  };

  it('resize writes the best rank-k approximation of kron(W₁, W₂)', async () => {
    for (const [shapes, rows, cols] of [[[2, 3, 8, 6], 16, 18], [[2, 3, 4, 5], 8, 15]] as const) {
      const { file, kron } = lokrFile(seededRandom(34), [...shapes]);
      const dir = temp.make({ 'lokr.safetensors': file });
      const out = join(dir, 'lora.safetensors');
      const r = await runCli(['resize', '--adapter', join(dir, 'lokr.safetensors'), '--rank', '5', '--out', out, '--backend', 'cpu']);
      expect(r.code, r.stderr).toBe(0);
      const err = Math.sqrt(frob2(minus(read(out, 5, rows, cols), kron)));
      expect(err).toBeLessThanOrEqual(optimalError(kron, 5) * (1 + 1e-3) + 1e-6 * Math.sqrt(frob2(kron)));
    }
  });

  it('combine --method cat writes it exactly as a LoRA of rank rank(W₁)·rank(W₂), beside a plain LoRA', async () => {
    const rand = seededRandom(35);
    const { file, kron } = lokrFile(rand);
    const b = randomDense(16, 2, rand), a = randomDense(2, 18, rand);
    const dir = temp.make({ 'lokr.safetensors': file, 'lora.safetensors': kohyaFile([{ name: key, b, a, alpha: 2 }]) });
    const out = join(dir, 'cat.safetensors');
    const r = await runCli(['combine', '--adapter', join(dir, 'lokr.safetensors'), '--weight', '0.5', '--adapter', join(dir, 'lora.safetensors'), '--method', 'cat', '--out', out, '--backend', 'cpu']);
    expect(r.code, r.stderr).toBe(0);
    const want = dense(16, 18, (i, j) => 0.5 * kron.data[i * 18 + j] + product(b, a).data[i * 18 + j]);
    const got = read(out, 12 + 2);
    // Each value of kron(W₁, W₂) is one f32 product, which a LoRA file holds rounded once (as LyCORIS computes it in f32).
    expect(Math.sqrt(frob2(minus(got, want)) / frob2(want))).toBeLessThan(1e-6);
  });

  it('combine --method svd without --rank takes kron(W₁, W₂)\'s rank (2·6 = 12) as the largest input rank, not the 1 its file implies', async () => {
    const rand = seededRandom(36);
    const one = lokrFile(rand), two = lokrFile(rand);
    const dir = temp.make({ 'one.safetensors': one.file, 'two.safetensors': two.file });
    const out = join(dir, 'svd.safetensors');
    const r = await runCli(['combine', '--adapter', join(dir, 'one.safetensors'), '--adapter', join(dir, 'two.safetensors'), '--weight', '-0.5', '--method', 'svd', '--out', out, '--backend', 'cpu']);
    expect(r.code, r.stderr).toBe(0);
    // In float64: kron₁ − 0.5·kron₂ (rank up to 16), whose best rank-12 approximation is the optimum.
    const target = dense(16, 18, (i, j) => one.kron.data[i * 18 + j] - 0.5 * two.kron.data[i * 18 + j]);
    const err = Math.sqrt(frob2(minus(read(out, 12), target)));
    expect(err).toBeLessThanOrEqual(optimalError(target, 12) * (1 + 1e-3) + 1e-6 * Math.sqrt(frob2(target)));
  });
});

describe('bad input: one line, nothing left at --out', () => {
  it('ties without --density is a usage error', async () => {
    const r = await runCli(['combine', '--adapter', 'x', '--method', 'ties', '--out', 'y']);
    expect(r.code).toBe(2);
    expect(errorLines(r.stderr)).toEqual([expect.stringMatching(/--method ties needs --density/)]);
  });

  it('a kohya adapter written as a PEFT folder, and a DoRA module, are refused by name', async () => {
    const rand = seededRandom(25);
    const dir = temp.make({
      'k.safetensors': kohyaFile([{ name: 'lora_unet_mid_block_attentions_0_proj_in', b: randomDense(8, 2, rand), a: randomDense(2, 8, rand) }]),
      'dora/adapter_config.json': JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 2, use_dora: true }),
      'dora/adapter_model.safetensors': buildSafetensors([
        { name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', dtype: 'F32', shape: [2, 8], data: new Array(16).fill(0.1) },
        { name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight', dtype: 'F32', shape: [8, 2], data: new Array(16).fill(0.1) },
        { name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector', dtype: 'F32', shape: [8], data: new Array(8).fill(1) },
      ]),
    });
    const before = listDir(dir);
    const k = await runCli(['resize', '--adapter', join(dir, 'k.safetensors'), '--rank', '1', '--out', join(dir, 'out')]);
    expect(k.code).toBe(2);
    expect(errorLines(k.stderr)).toEqual([expect.stringMatching(/k\.safetensors: .*cannot be written as a PEFT folder; give --out a \.safetensors name/)]);
    const d = await runCli(['combine', '--adapter', join(dir, 'dora'), '--method', 'svd', '--out', join(dir, 'out2')]);
    expect(d.code).toBe(1);
    expect(errorLines(d.stderr)).toEqual([expect.stringMatching(/module "base_model\.model\.model\.layers\.0\.self_attn\.q_proj" is DoRA/)]);
    expect(listDir(dir)).toEqual(before);
    expect(existsSync(join(dir, 'out'))).toBe(false);
  });

  it('adapters of different base models are refused by combine in one line naming both, nothing at --out', async () => {
    // Gathered into one file, each model's loader would apply its own modules and skip the rest.
    const rand = seededRandom(29);
    const sd1Key = 'lora_unet_down_blocks_0_attentions_0_proj_in';
    const sd1 = buildSafetensors([
      { name: `${sd1Key}.lora_down.weight`, dtype: 'F32', shape: [2, 8], data: randomDense(2, 8, rand).data },
      { name: `${sd1Key}.lora_up.weight`, dtype: 'F32', shape: [8, 2], data: randomDense(8, 2, rand).data },
      { name: `${sd1Key}.alpha`, dtype: 'F32', shape: [], data: [2] },
    ], { ss_network_module: 'networks.lora', ss_base_model_version: 'sd_v1' });
    const dir = temp.make({
      'sdxl.safetensors': kohyaFile([{ name: 'lora_unet_input_blocks_4_1_proj_in', b: randomDense(8, 2, rand), a: randomDense(2, 8, rand) }]),
      'flux.safetensors': kohyaFile([{ name: 'lora_unet_double_blocks_0_img_attn_qkv', b: randomDense(24, 2, rand), a: randomDense(2, 8, rand) }]),
      'sd1.safetensors': sd1,
      ...prefixed('llama', peftFiles([{ name: 'model.layers.0.self_attn.q_proj', b: randomDense(8, 2, rand), a: randomDense(2, 8, rand) }])),
    });
    const before = listDir(dir);
    const refusal = async (first: string, second: string) => {
      const r = await runCli(['combine', '--adapter', join(dir, first), '--adapter', join(dir, second), '--method', 'cat', '--out', join(dir, 'out.safetensors'), '--backend', 'cpu']);
      expect(r.code, r.stderr).toBe(1);
      expect(listDir(dir)).toEqual(before);
      return errorLines(r.stderr);
    };
    const sdxl = join(dir, 'sdxl.safetensors');
    expect(await refusal('sdxl.safetensors', 'flux.safetensors')).toEqual([`error: combine: ${sdxl} is for a diffusion UNet but ${join(dir, 'flux.safetensors')} for a diffusion transformer; adapters of different base models cannot be combined into one`]);
    expect(await refusal('sdxl.safetensors', 'llama')).toEqual([`error: combine: ${sdxl} is for a diffusion UNet but ${join(dir, 'llama')} for a language model; adapters of different base models cannot be combined into one`]);
    expect(await refusal('sdxl.safetensors', 'sd1.safetensors')).toEqual([`error: combine: ${sdxl} was trained on sdxl_base_v1-0 but ${join(dir, 'sd1.safetensors')} on sd_v1 (ss_base_model_version); adapters of different base models cannot be combined into one`]);
    // Another trainer's spelling of the same model is no other model.
    const sdxlKey = 'lora_unet_output_blocks_2_1_proj_out';
    const spelled = temp.make({ 'other.safetensors': buildSafetensors([
      { name: `${sdxlKey}.lora_down.weight`, dtype: 'F32', shape: [2, 8], data: randomDense(2, 8, rand).data },
      { name: `${sdxlKey}.lora_up.weight`, dtype: 'F32', shape: [8, 2], data: randomDense(8, 2, rand).data },
    ], { ss_base_model_version: 'sdxl' }) });
    const same = await runCli(['combine', '--adapter', sdxl, '--adapter', join(spelled, 'other.safetensors'), '--method', 'cat', '--out', join(spelled, 'out.safetensors'), '--backend', 'cpu']);
    expect(same.code, same.stderr).toBe(0);
    // sd15 is SD 1.5 too, and a spelling no trainer we know writes says nothing either way: neither refuses.
    const sd1Spelled = (version: string) => buildSafetensors([
      { name: `${sd1Key}.lora_down.weight`, dtype: 'F32', shape: [2, 8], data: randomDense(2, 8, rand).data },
      { name: `${sd1Key}.lora_up.weight`, dtype: 'F32', shape: [8, 2], data: randomDense(8, 2, rand).data },
    ], { ss_base_model_version: version });
    const others = temp.make({ 'sd15.safetensors': sd1Spelled('sd15'), 'custom.safetensors': sd1Spelled('my-anime-mix-v3') });
    for (const other of ['sd15.safetensors', 'custom.safetensors']) {
      const r = await runCli(['combine', '--adapter', join(dir, 'sd1.safetensors'), '--adapter', join(others, other), '--method', 'cat', '--out', join(others, `out-${other}`), '--backend', 'cpu']);
      expect(r.code, `${other}: ${r.stderr}`).toBe(0);
    }
    // sd_v2_v (kohya's v-prediction SD 2) is still SD 2, not SD 1.
    const sd2 = temp.make({ 'sd2.safetensors': sd1Spelled('sd_v2_v') });
    expect(await runCli(['combine', '--adapter', join(dir, 'sd1.safetensors'), '--adapter', join(sd2, 'sd2.safetensors'), '--method', 'cat', '--out', join(sd2, 'out.safetensors'), '--backend', 'cpu']).then((r) => errorLines(r.stderr)))
      .toEqual([expect.stringContaining('on sd_v2_v (ss_base_model_version); adapters of different base models cannot be combined into one')]);
  });

  it.each([
    ['combine cat (which would copy it)', ['combine', '--method', 'cat']],
    ['combine ties', ['combine', '--method', 'ties', '--density', '0.5']],
    ['resize', ['resize', '--rank', '1']],
  ])('a NaN or Inf in a factor: %s refuses in one line naming the file and tensor, exit 1, nothing at --out', async (_, command) => {
    const rand = seededRandom(26);
    const key = 'lora_unet_down_blocks_0_attentions_0_proj_in';
    const broken = randomDense(2, 8, rand);
    broken.data[5] = Number.NaN;
    const dir = temp.make({
      'broken.safetensors': kohyaFile([{ name: key, b: randomDense(8, 2, rand), a: broken }]),
      'fine.safetensors': kohyaFile([{ name: key, b: randomDense(8, 2, rand), a: randomDense(2, 8, rand) }]),
    });
    const before = listDir(dir);
    const inputs = command[0] === 'combine' ? ['--adapter', join(dir, 'fine.safetensors'), '--adapter', join(dir, 'broken.safetensors')] : ['--adapter', join(dir, 'broken.safetensors')];
    const r = await runCli([...command, ...inputs, '--out', join(dir, 'out.safetensors')]);
    expect(r.code).toBe(1);
    expect(errorLines(r.stderr)).toEqual([`error: ${join(dir, 'broken.safetensors')}: tensor "${key}.lora_down.weight" holds 1 NaN or Inf value (row 0); the adapter file is broken`]);
    expect(listDir(dir)).toEqual(before);
  });

  it('extract from a GGUF model is refused naming it, not taken for a folder without safetensors', async () => {
    const gguf = q4kmLlama().files['tiny-llama-Q4_K_M.gguf'];
    const dir = temp.make({ 'tiny-llama-Q4_K_M.gguf': gguf, 'tuned/tiny-llama-Q4_K_M.gguf': gguf });
    const before = listDir(dir);
    const r = await runCli(['extract', '--base', join(dir, 'tiny-llama-Q4_K_M.gguf'), '--tuned', join(dir, 'tuned'), '--rank', '2', '--out', join(dir, 'lora'), '--backend', 'cpu']);
    expect(r.code).toBe(1);
    expect(errorLines(r.stderr)).toEqual([expect.stringMatching(/^error: .*tiny-llama-Q4_K_M\.gguf: a GGUF model; extract reads safetensors models only \(GGUF is not covered\)$/)]);
    expect(listDir(dir)).toEqual(before);
  });

  it('models that do not match are refused before anything is written', async () => {
    const rand = seededRandom(26);
    const base = baseTensors(rand);
    const { ['model.layers.0.input_layernorm.weight']: _, ...fewer } = base;
    const dir = temp.make({ 'base.safetensors': modelFile(base), 'tuned.safetensors': modelFile(fewer) });
    const before = listDir(dir);
    const r = await runCli(['extract', '--base', join(dir, 'base.safetensors'), '--tuned', join(dir, 'tuned.safetensors'), '--rank', '2', '--out', join(dir, 'x')]);
    expect(r.code).toBe(1);
    expect(errorLines(r.stderr)).toEqual([expect.stringMatching(/tensors missing from .*tuned\.safetensors: model\.layers\.0\.input_layernorm\.weight/)]);
    expect(listDir(dir)).toEqual(before);
  });
});

describe('cancelling', () => {
  it('extract stops on Ctrl-C (SIGINT), exits 130 and leaves nothing at --out', async () => {
    // One 2048×2048 difference with a flat spectrum: seconds of products on the CPU, so the signal
    // lands while the difference is read or its randomized SVD runs.
    const n = 2048;
    const rand = seededRandom(27);
    const name = 'model.layers.0.mlp.down_proj.weight';
    const dir = temp.make({
      'base.safetensors': buildSafetensors([{ name, dtype: 'F32', shape: [n, n], data: new Uint8Array(n * n * 4) }]),
      'tuned.safetensors': buildSafetensors([{ name, dtype: 'F32', shape: [n, n], data: Float64Array.from({ length: n * n }, () => gaussian(rand) * 0.01) }]),
    });
    const before = listDir(dir);
    const { code, stderr } = await runCliActingAtStart(['extract', '--base', join(dir, 'base.safetensors'), '--tuned', join(dir, 'tuned.safetensors'),
      '--rank', '64', '--out', join(dir, 'lora'), '--backend', 'cpu'], (child) => child.kill('SIGINT'));
    expect(code, stderr).toBe(130);
    expect(errorLines(stderr)).toEqual([`error: extract cancelled; nothing was written to ${join(dir, 'lora')}`]);
    expect(listDir(dir)).toEqual(before);
  });
});

function prefixed(prefix: string, files: Record<string, Uint8Array | string>): Record<string, Uint8Array | string> {
  return Object.fromEntries(Object.entries(files).map(([k, v]) => [`${prefix}/${k}`, v]));
}
