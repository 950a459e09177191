/**
 * `combine`/`resize` of a PEFT adapter with `--base MODEL.gguf --out *.gguf`: the adapter renamed
 * onto the GGUF model's tensors as convert_lora_to_gguf.py --base does (llama.cpp's names, q/k rows
 * of B permuted as convert_hf_to_gguf permutes q and k for RoPE, token_embd's A transposed), each
 * pair at its module's scale (rsLoRA's α/√r here). Checked end to end: the file holds what
 * llama-adapter.cpp checks (metadata; lora_a ne [in, r], lora_b ne [r, out], a.ne[1] = b.ne[0];
 * token_embd's b.ne[1] = dim and a.ne[1] = vocab), and our merge of it into the GGUF base gives
 * W + s·B·A computed here in float64 on the GGUF's row order. Refusals are one line, nothing left.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { errorLines, listDir, runCli } from './helpers/cli.js';
import { buildSafetensors, seededRandom, tempDirs } from './helpers/fixtures.js';
import { buildGguf, readGguf, tensorData, tensorValues, typeName, type ReadGguf } from './helpers/gguf-builder.js';
import { ggufLoraAdapter, ggufRowOf, LLAMA, splitF16Llama } from './helpers/gguf-models.js';

const temp = tempDirs();
afterAll(temp.removeAll);

const { hidden: h, heads, kvHeads, ffn, vocab } = LLAMA;
const kv = (h / heads) * kvHeads;
const BASE_PART = 'tiny-llama-F16-00001-of-00002.gguf';

interface Module { path: string; tensor: string; rank: number; alpha: number; out: number; in: number; a: Float64Array; b: Float64Array; embedding?: true }

/** A bf16 value (the factors are stored bf16, so the truth uses exactly what the file holds). */
function bf16(x: number): number {
  const f = new Float32Array([x]);
  new Uint32Array(f.buffer)[0] &= 0xffff0000;
  return f[0];
}

/**
 * A PEFT LoRA of the tiny llama as PEFT saves one: q/k/v/o and the MLP at r 8 (down_proj r 4 by
 * rank_pattern), α 16, and the token embedding (lora_embedding_A (r, vocab), lora_embedding_B
 * (dim, r)), bf16 factors; unless `plain`, rsLoRA with v_proj at α 32 (alpha_pattern).
 */
function peftAdapter(options: { plain?: true; config?: Record<string, unknown>; tensors?: { name: string; shape: number[]; data: Float64Array }[]; only?: string } = {}) {
  const { plain, config: extraConfig = {}, tensors: extraTensors = [], only } = options;
  const rand = seededRandom(71);
  const g = () => bf16(0.05 * (rand() - 0.5));
  const specs: [string, string, number, number][] = [
    ['self_attn.q_proj', 'attn_q', h, h], ['self_attn.k_proj', 'attn_k', kv, h], ['self_attn.v_proj', 'attn_v', kv, h],
    ['self_attn.o_proj', 'attn_output', h, h], ['mlp.gate_proj', 'ffn_gate', ffn, h], ['mlp.up_proj', 'ffn_up', ffn, h], ['mlp.down_proj', 'ffn_down', h, ffn],
  ];
  const modules: Module[] = specs.map(([hf, gguf, out, inF]) => {
    const rank = gguf === 'ffn_down' ? 4 : 8;
    return { path: `model.layers.0.${hf}`, tensor: `blk.0.${gguf}.weight`, rank, alpha: gguf === 'attn_v' && !plain ? 32 : 16, out, in: inF, a: Float64Array.from({ length: rank * inF }, g), b: Float64Array.from({ length: out * rank }, g) };
  });
  modules.push({ path: 'model.embed_tokens', tensor: 'token_embd.weight', rank: 8, alpha: 16, out: h, in: vocab, a: Float64Array.from({ length: 8 * vocab }, g), b: Float64Array.from({ length: h * 8 }, g), embedding: true });
  if (only !== undefined) modules.splice(0, modules.length, ...modules.filter((m) => m.path === only));
  const tensors = modules.flatMap((m) => m.embedding
    ? [{ name: `base_model.model.${m.path}.lora_embedding_A`, dtype: 'BF16' as const, shape: [m.rank, m.in], data: m.a },
      { name: `base_model.model.${m.path}.lora_embedding_B`, dtype: 'BF16' as const, shape: [m.out, m.rank], data: m.b }]
    : [{ name: `base_model.model.${m.path}.lora_A.weight`, dtype: 'BF16' as const, shape: [m.rank, m.in], data: m.a },
      { name: `base_model.model.${m.path}.lora_B.weight`, dtype: 'BF16' as const, shape: [m.out, m.rank], data: m.b }]);
  for (const t of extraTensors) tensors.push({ name: t.name, dtype: 'BF16', shape: t.shape, data: t.data });
  const config = {
    peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'tiny-llama', r: 8, lora_alpha: 16, use_rslora: !plain,
    rank_pattern: { down_proj: 4 }, alpha_pattern: plain ? {} : { v_proj: 32 }, target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj', 'embed_tokens'],
    ...extraConfig,
  };
  const scale = (m: Module) => (plain ? m.alpha / m.rank : m.alpha / Math.sqrt(m.rank));
  return { scale, files: { 'adapter_config.json': JSON.stringify(config), 'adapter_model.safetensors': buildSafetensors(tensors) }, modules };
}

/** ΔW = s·B·A (out × in, row-major) in float64, its rows moved where convert_hf_to_gguf moves q's and k's. */
function ggufDelta(m: Module, scale: number): Float64Array {
  const permute = m.tensor.includes('attn_q') ? heads : m.tensor.includes('attn_k') ? kvHeads : 0;
  const d = new Float64Array(m.out * m.in);
  for (let o = 0; o < m.out; o++) {
    const row = permute ? ggufRowOf(o, m.out, permute) : o;
    for (let i = 0; i < m.in; i++) {
      let s = 0;
      for (let k = 0; k < m.rank; k++) s += m.b[o * m.rank + k] * m.a[k * m.in + i];
      d[row * m.in + i] = scale * s;
    }
  }
  return d;
}

function worstRelative(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let scale = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / scale);
  return worst;
}

/** Every tensor of the GGUF files in `dir`, by name, as float64. */
function ggufTensors(dir: string): Map<string, Float64Array> {
  const out = new Map<string, Float64Array>();
  for (const name of readdirSync(dir).filter((n) => n.endsWith('.gguf'))) {
    for (const t of readGguf(readFileSync(join(dir, name))).tensors) out.set(t.name, tensorValues(typeName(t.typeId), t.data));
  }
  return out;
}

/** llama-adapter.cpp's checks of every pair against the base's tensors (ne as the base GGUF declares them). */
function expectLlamaCppLoads(file: ReadGguf, baseNe: Map<string, number[]>): void {
  const names = file.tensors.map((t) => t.name);
  for (const t of file.tensors) expect(t.name, 'suffix').toMatch(/\.lora_[ab]$/);
  for (const name of new Set(names.map((n) => n.replace(/\.lora_[ab]$/, '')))) {
    const a = file.tensors.find((t) => t.name === `${name}.lora_a`);
    const b = file.tensors.find((t) => t.name === `${name}.lora_b`);
    expect(a && b, `${name}: both of the pair`).toBeTruthy();
    const model = baseNe.get(name);
    expect(model, `${name} is a base tensor`).toBeDefined();
    if (name === 'token_embd.weight') {
      expect([b!.ne[1], a!.ne[1]], name).toEqual([model![0], model![1]]);
    } else {
      expect([a!.ne[0], b!.ne[1]], name).toEqual([model![0], model![1]]);
      expect(a!.ne[1], `${name}: lora_a transposed`).toBe(b!.ne[0]);
    }
  }
}

describe('a PEFT adapter written as a llama.cpp LoRA GGUF for a GGUF base (--base)', () => {
  const base = splitF16Llama();
  const baseNe = new Map<string, number[]>();
  for (const bytes of Object.values(base.files)) for (const t of readGguf(bytes).tensors) baseNe.set(t.name, t.ne);

  it('convert: llama.cpp\'s names, metadata and shapes, PEFT\'s α, and merged into the base it is W + (α/r)·B·A on the GGUF\'s rows', async () => {
    const peft = peftAdapter({ plain: true });
    const dir = temp.make({ ...base.files, ...Object.fromEntries(Object.entries(peft.files).map(([k, v]) => [`peft/${k}`, v])) });
    const out = join(dir, 'lora.gguf');
    const run = await runCli(['convert', '--adapter', join(dir, 'peft'), '--base', join(dir, BASE_PART), '--out', out]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/wrote 8 LoRA modules to .*lora\.gguf \(llama\.cpp LoRA GGUF\)/);
    const file = readGguf(readFileSync(out));
    const kv = (key: string) => file.metadata.get(key);
    expect(kv('general.type')).toEqual({ type: 8, value: 'adapter' });
    expect(kv('adapter.type')).toEqual({ type: 8, value: 'lora' });
    expect(kv('general.architecture')).toEqual({ type: 8, value: 'llama' });
    // One α for every pair (down_proj's r 4 is its own lora_b's ne[0]); f32, convert_lora_to_gguf's default --outtype.
    expect(kv('adapter.lora.alpha')).toEqual({ type: 6, value: 16 });
    // No general.file_type: the script's LoRA class writes its own parameters only.
    expect(kv('general.file_type')).toBeUndefined();
    expect(kv('general.quantization_version')).toEqual({ type: 4, value: 2 });
    expect(new Set(file.tensors.map((t) => typeName(t.typeId)))).toEqual(new Set(['F32']));
    expect(file.tensors.map((t) => t.name).sort()).toEqual(peft.modules.flatMap((m) => [`${m.tensor}.lora_a`, `${m.tensor}.lora_b`]).sort());
    expectLlamaCppLoads(file, baseNe);

    const merged = join(dir, 'merged');
    const m = await runCli(['merge', '--base', join(dir, BASE_PART), '--adapter', out, '--out', merged, '--dtype', 'f32', '--backend', 'cpu']);
    expect(m.code, m.stderr).toBe(0);
    const got = ggufTensors(merged);
    for (const mod of peft.modules) {
      const w = base.tensors.get(mod.tensor)!.values;
      const d = ggufDelta(mod, peft.scale(mod));
      // token_embd is stored (vocab, dim): ΔW (dim × vocab) lands transposed.
      const want = Float64Array.from(w, (v, x) => v + (mod.embedding ? d[(x % mod.out) * mod.in + Math.floor(x / mod.out)] : d[x]));
      // The base's f16 values and ΔW's f32 products: 1e-6 of the largest value.
      expect(worstRelative(got.get(mod.tensor)!, want), mod.tensor).toBeLessThan(1e-6);
    }
    expect(got.get('blk.0.attn_norm.weight')).toEqual(base.tensors.get('blk.0.attn_norm.weight')!.values);
  });

  it('resize keeps each module\'s rsLoRA scale α/√r, one α for the file where every pair has one rank and scale, else each folded into its B', async () => {
    const peft = peftAdapter();
    const dir = temp.make({ ...base.files, ...Object.fromEntries(Object.entries(peft.files).map(([k, v]) => [`peft/${k}`, v])) });
    const out = join(dir, 'lora.gguf');
    const run = await runCli(['resize', '--adapter', join(dir, 'peft'), '--rank', '8', '--base', join(dir, BASE_PART), '--out', out, '--backend', 'cpu']);
    expect(run.code, run.stderr).toBe(0);
    const file = readGguf(readFileSync(out));
    // v_proj's α 32 gives it another scale than the others: no one α serves, so α is 0 and B holds s.
    expect(file.metadata.get('adapter.lora.alpha')).toEqual({ type: 6, value: 0 });
    expectLlamaCppLoads(file, baseNe);
    for (const mod of peft.modules.filter((x) => !x.embedding)) {
      const a = file.tensors.find((t) => t.name === `${mod.tensor}.lora_a`)!;
      const b = file.tensors.find((t) => t.name === `${mod.tensor}.lora_b`)!;
      const r = b.ne[0];
      const [A, B] = [tensorValues(typeName(a.typeId), a.data), tensorValues(typeName(b.typeId), b.data)];
      const applied = new Float64Array(mod.out * mod.in);
      for (let o = 0; o < mod.out; o++) for (let i = 0; i < mod.in; i++) { let s = 0; for (let k = 0; k < r; k++) s += B[o * r + k] * A[k * mod.in + i]; applied[o * mod.in + i] = s; }
      // bf16 factors written from the f32 SVD: 1 % of the largest value.
      expect(worstRelative(applied, ggufDelta(mod, peft.scale(mod))), mod.tensor).toBeLessThan(1e-2);
    }
  });

  it('combine --method svd of two PEFT adapters with --base: the weighted sum of their updates, on the GGUF\'s rows', async () => {
    // The same adapter twice at 0.25 and 0.75: the sum is the adapter itself, its rank 8 (4 for down_proj) kept.
    const peft = peftAdapter({ plain: true });
    const dir = temp.make({ ...base.files, ...peftDir(peft.files), ...Object.fromEntries(Object.entries(peft.files).map(([k, v]) => [`peft2/${k}`, v])) });
    const out = join(dir, 'sum.gguf');
    const run = await runCli(['combine', '--adapter', join(dir, 'peft'), '--weight', '0.25', '--adapter', join(dir, 'peft2'), '--weight', '0.75',
      '--method', 'svd', '--rank', '8', '--base', join(dir, BASE_PART), '--out', out, '--backend', 'cpu']);
    expect(run.code, run.stderr).toBe(0);
    const file = readGguf(readFileSync(out));
    expectLlamaCppLoads(file, baseNe);
    const alpha = file.metadata.get('adapter.lora.alpha')!.value as number;
    for (const mod of peft.modules.filter((x) => !x.embedding)) {
      const a = file.tensors.find((t) => t.name === `${mod.tensor}.lora_a`)!;
      const b = file.tensors.find((t) => t.name === `${mod.tensor}.lora_b`)!;
      const r = b.ne[0];
      const s = alpha ? alpha / r : 1;
      const [A, B] = [tensorValues(typeName(a.typeId), a.data), tensorValues(typeName(b.typeId), b.data)];
      const applied = new Float64Array(mod.out * mod.in);
      for (let o = 0; o < mod.out; o++) for (let i = 0; i < mod.in; i++) { let sum = 0; for (let k = 0; k < r; k++) sum += B[o * r + k] * A[k * mod.in + i]; applied[o * mod.in + i] = s * sum; }
      // bf16 factors of the f32 SVD: 1 % of the largest value.
      expect(worstRelative(applied, ggufDelta(mod, peft.scale(mod))), mod.tensor).toBeLessThan(1e-2);
    }
  });

  async function expectRefused(args: string[], dir: string, line: RegExp): Promise<void> {
    const before = listDir(dir);
    // convert runs no products: it takes no --backend.
    const run = await runCli(args[0] === 'convert' ? args : [...args, '--backend', 'cpu']);
    expect(run.code, run.stderr).not.toBe(0);
    expect(errorLines(run.stderr)).toEqual([expect.stringMatching(line)]);
    expect(run.stderr).not.toMatch(/\n\s+at /);
    expect(listDir(dir)).toEqual(before);
  }

  const peftDir = (files: Record<string, Uint8Array | string>) => Object.fromEntries(Object.entries(files).map(([k, v]) => [`peft/${k}`, v]));

  it('refuses without --base, naming it', async () => {
    const dir = temp.make({ ...peftDir(peftAdapter().files) });
    await expectRefused(['combine', '--adapter', join(dir, 'peft'), '--method', 'cat', '--out', join(dir, 'lora.gguf')], dir,
      /^error: .*peft: a peft adapter's module names are not llama\.cpp's tensor names, and renaming them needs the GGUF model it is for: give it as --base MODEL\.gguf$/);
    await expectRefused(['convert', '--adapter', join(dir, 'peft'), '--out', join(dir, 'lora.gguf')], dir, /^error: missing --base \(see loramerge --help\)$/);
    await expectRefused(['convert', '--adapter', join(dir, 'peft'), '--base', join(dir, 'm.gguf'), '--out', join(dir, 'lora')], dir,
      /^error: --out .*lora: convert writes a llama\.cpp LoRA GGUF; give --out a name ending in \.gguf \(see loramerge --help\)$/);
  });

  it('refuses a base of another architecture or size, and a module the base has no tensor for', async () => {
    // A qwen2 GGUF of other sizes: the names map (Qwen2's are llama's), the shapes do not.
    const other = buildGguf({
      metadata: [['general.architecture', { type: 'string', value: 'qwen2' }], ['qwen2.block_count', { type: 'u32', value: 1 }],
        ['qwen2.attention.head_count', { type: 'u32', value: 2 }], ['qwen2.attention.head_count_kv', { type: 'u32', value: 2 }]],
      tensors: ['attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down'].map((t) => ({ name: `blk.0.${t}.weight`, type: 'F32', ne: [64, 64], data: new Uint8Array(64 * 64 * 4) }))
        .concat([{ name: 'token_embd.weight', type: 'F32', ne: [64, vocab], data: new Uint8Array(64 * vocab * 4) }]),
    });
    const dir = temp.make({ 'qwen.gguf': other, ...peftDir(peftAdapter().files) });
    await expectRefused(['resize', '--adapter', join(dir, 'peft'), '--rank', '2', '--base', join(dir, 'qwen.gguf'), '--out', join(dir, 'lora.gguf')], dir,
      /^error: 8 problems in resize:.*- module "model\.layers\.0\.self_attn\.q_proj": its update is 256×256, which does not fit blk\.0\.attn_q\.weight \(64×64\); the adapter is for another model than .*qwen\.gguf \(another architecture or size\)/);
    // A module of block 3 on the one-block llama: the merge's reason.
    const rand = seededRandom(5);
    const extra = [
      { name: 'base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight', shape: [8, h], data: Float64Array.from({ length: 8 * h }, rand) },
      { name: 'base_model.model.model.layers.3.self_attn.q_proj.lora_B.weight', shape: [h, 8], data: Float64Array.from({ length: 8 * h }, rand) },
    ];
    const dir2 = temp.make({ ...base.files, ...peftDir(peftAdapter({ tensors: extra }).files) });
    await expectRefused(['combine', '--adapter', join(dir2, 'peft'), '--method', 'cat', '--base', join(dir2, BASE_PART), '--out', join(dir2, 'lora.gguf')], dir2,
      /^error: module "model\.layers\.3\.self_attn\.q_proj": names block 3, but the base has 1 \(llama\.block_count\).* \(on the llama GGUF .*tiny-llama-F16-00001-of-00002\.gguf\)$/);
  });

  it('refuses what a llama.cpp LoRA cannot express: DoRA, lora_bias, modules_to_save', async () => {
    const dora = peftAdapter({ config: { use_dora: true }, tensors: [{ name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector', shape: [h], data: new Float64Array(h).fill(1) }], only: 'model.layers.0.self_attn.q_proj' });
    const dir = temp.make({ ...base.files, ...peftDir(dora.files) });
    await expectRefused(['combine', '--adapter', join(dir, 'peft'), '--method', 'cat', '--base', join(dir, BASE_PART), '--out', join(dir, 'lora.gguf')], dir,
      /^error: .*peft: module ".*model\.layers\.0\.self_attn\.q_proj" is DoRA, whose update depends on the base weights; combine cannot express it as a LoRA$/);
    const bias = peftAdapter({ config: { lora_bias: true }, tensors: [{ name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias', shape: [h], data: new Float64Array(h).fill(0.5) }], only: 'model.layers.0.self_attn.q_proj' });
    const dir3 = temp.make({ ...base.files, ...peftDir(bias.files) });
    await expectRefused(['convert', '--adapter', join(dir3, 'peft'), '--base', join(dir3, BASE_PART), '--out', join(dir3, 'lora.gguf')], dir3,
      /^error: .*peft: module ".*model\.layers\.0\.self_attn\.q_proj" changes a bias \(.*lora_B\.bias\), which convert does not support yet$/);
    const saved = peftAdapter({ config: { modules_to_save: ['lm_head'] }, tensors: [{ name: 'base_model.model.lm_head.modules_to_save.default.weight', shape: [vocab, h], data: new Float64Array(vocab * h) }] });
    const dir2 = temp.make({ ...base.files, ...peftDir(saved.files) });
    await expectRefused(['combine', '--adapter', join(dir2, 'peft'), '--method', 'cat', '--base', join(dir2, BASE_PART), '--out', join(dir2, 'lora.gguf')], dir2,
      /^error: "lm_head\.weight" is saved whole \(modules_to_save\), which a llama\.cpp LoRA cannot hold \(it holds lora_a\/lora_b pairs only\); merge the adapter into the model instead$/);
  });

  it('refuses --base where it cannot serve: another --out, a safetensors model it cannot name', async () => {
    const dir = temp.make({
      ...peftDir(peftAdapter().files), 'model.safetensors': buildSafetensors([{ name: 'model.embed_tokens.weight', dtype: 'F32', shape: [vocab, h], data: new Float64Array(vocab * h) }]),
      'gpt2/config.json': JSON.stringify({ architectures: ['GPT2LMHeadModel'], model_type: 'gpt2' }),
      'gpt2/model.safetensors': buildSafetensors([{ name: 'transformer.wte.weight', dtype: 'F32', shape: [vocab, h], data: new Float64Array(vocab * h) }]),
    });
    await expectRefused(['resize', '--adapter', join(dir, 'peft'), '--rank', '2', '--base', join(dir, 'model.safetensors'), '--out', join(dir, 'small')], dir,
      /^error: --base .*model\.safetensors: resize reads a base only to name a llama\.cpp LoRA's tensors; give --out a \.gguf name, or leave out --base$/);
    await expectRefused(['resize', '--adapter', join(dir, 'peft'), '--rank', '2', '--base', join(dir, 'model.safetensors'), '--out', join(dir, 'small.gguf')], dir,
      /^error: --base .*model\.safetensors: a model without config\.json, whose GGUF tensor names loramerge derives for LlamaForCausalLM, MistralForCausalLM, MixtralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Qwen2MoeForCausalLM, Qwen3MoeForCausalLM, GemmaForCausalLM, Gemma2ForCausalLM, Gemma3ForCausalLM, Gemma3ForConditionalGeneration, NanbeigeForCausalLM, SmolLM3ForCausalLM, Olmo2ForCausalLM, Olmo3ForCausalLM, SeedOssForCausalLM, DreamModel, PanguEmbeddedForCausalLM, RND1, LLaDAModelLM, HYV3ForCausalLM, LagunaForCausalLM, Phi3ForCausalLM only; give the GGUF model the LoRA is for$/);
    await expectRefused(['convert', '--adapter', join(dir, 'peft'), '--base', join(dir, 'gpt2'), '--out', join(dir, 'small.gguf')], dir,
      /^error: --base .*gpt2: a GPT2LMHeadModel, whose GGUF tensor names loramerge derives for .* only; give the GGUF model the LoRA is for$/);
  });

  it('takes the Hugging Face model folder as --base (config.json and tensor shapes, as convert_lora_to_gguf --base does): the same file as from the GGUF', async () => {
    const peft = peftAdapter();
    const hfShapes: [string, number[]][] = [
      ['model.embed_tokens.weight', [vocab, h]], ['model.layers.0.input_layernorm.weight', [h]],
      ['model.layers.0.self_attn.q_proj.weight', [h, h]], ['model.layers.0.self_attn.k_proj.weight', [kv, h]], ['model.layers.0.self_attn.v_proj.weight', [kv, h]],
      ['model.layers.0.self_attn.o_proj.weight', [h, h]], ['model.layers.0.mlp.gate_proj.weight', [ffn, h]], ['model.layers.0.mlp.up_proj.weight', [ffn, h]],
      ['model.layers.0.mlp.down_proj.weight', [h, ffn]], ['model.norm.weight', [h]], ['lm_head.weight', [vocab, h]],
    ];
    const dir = temp.make({
      ...base.files, ...peftDir(peft.files),
      'hf/config.json': JSON.stringify({ architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: h, num_attention_heads: heads, num_key_value_heads: kvHeads, num_hidden_layers: 1, intermediate_size: ffn, vocab_size: vocab }),
      'hf/model.safetensors': buildSafetensors(hfShapes.map(([name, shape]) => ({ name, dtype: 'BF16', shape, data: new Float64Array(shape.reduce((n, x) => n * x, 1)) }))),
    });
    const viaGguf = await runCli(['convert', '--adapter', join(dir, 'peft'), '--base', join(dir, BASE_PART), '--out', join(dir, 'a.gguf')]);
    expect(viaGguf.code, viaGguf.stderr).toBe(0);
    const viaHf = await runCli(['resize', '--adapter', join(dir, 'peft'), '--rank', '8', '--base', join(dir, 'hf'), '--out', join(dir, 'b.gguf'), '--backend', 'cpu']);
    expect(viaHf.code, viaHf.stderr).toBe(0);
    const viaHfConvert = await runCli(['convert', '--adapter', join(dir, 'peft'), '--base', join(dir, 'hf'), '--out', join(dir, 'c.gguf')]);
    expect(viaHfConvert.code, viaHfConvert.stderr).toBe(0);
    expect(Buffer.compare(readFileSync(join(dir, 'c.gguf')), readFileSync(join(dir, 'a.gguf')))).toBe(0);
    const resizedViaGguf = await runCli(['resize', '--adapter', join(dir, 'peft'), '--rank', '8', '--base', join(dir, BASE_PART), '--out', join(dir, 'd.gguf'), '--backend', 'cpu']);
    expect(resizedViaGguf.code, resizedViaGguf.stderr).toBe(0);
    expect(Buffer.compare(readFileSync(join(dir, 'b.gguf')), readFileSync(join(dir, 'd.gguf')))).toBe(0);
  });

  it('refuses a llama.cpp LoRA given with --base: it already names the GGUF\'s tensors', async () => {
    const lora = ggufLoraAdapter([{ tensor: 'blk.0.attn_q.weight', rank: 2, in: h, out: h, aType: 'F32', bType: 'F32' }], 4);
    const dir = temp.make({ ...base.files, 'a.gguf': lora.bytes });
    await expectRefused(['resize', '--adapter', join(dir, 'a.gguf'), '--rank', '1', '--base', join(dir, BASE_PART), '--out', join(dir, 'small.gguf')], dir,
      /^error: .*a\.gguf: a llama\.cpp LoRA already names the GGUF's tensors; leave out --base \(it is for PEFT adapters\)$/);
    // convert's base is not optional: it has nothing to do for one.
    await expectRefused(['convert', '--adapter', join(dir, 'a.gguf'), '--base', join(dir, BASE_PART), '--out', join(dir, 'small.gguf')], dir,
      /^error: .*a\.gguf: a llama\.cpp LoRA already names the GGUF's tensors; there is nothing to convert: load it with llama\.cpp's --lora as it is$/);
  });
});

describe('a module the converter splits among tensors: InternLM2\'s grouped wqkv', () => {
  // InternLM2's wqkv holds, per kv group g, q_per_kv q heads, one k head, one v head (head_dim rows
  // each); InternLM2Model.modify_tensors gathers them into attn_q, attn_k and attn_v and permutes
  // q and k for RoPE. One pair per tensor: A shared, B's rows of that tensor in its order.
  const [hidden, nHeads, nKv, vocabSize] = [64, 4, 2, 16];
  const dim = hidden / nHeads;
  const perKv = nHeads / nKv;
  const rows = { q: hidden, k: nKv * dim, v: nKv * dim };
  const rand = seededRandom(91);
  const f32 = () => Math.fround(rand() - 0.5);
  const weights = new Map<string, { ne: number[]; values: Float64Array }>([
    ['token_embd.weight', { ne: [hidden, vocabSize], values: Float64Array.from({ length: hidden * vocabSize }, f32) }],
    ['blk.0.attn_q.weight', { ne: [hidden, rows.q], values: Float64Array.from({ length: hidden * rows.q }, f32) }],
    ['blk.0.attn_k.weight', { ne: [hidden, rows.k], values: Float64Array.from({ length: hidden * rows.k }, f32) }],
    ['blk.0.attn_v.weight', { ne: [hidden, rows.v], values: Float64Array.from({ length: hidden * rows.v }, f32) }],
  ]);
  const baseBytes = buildGguf({
    metadata: [['general.architecture', { type: 'string', value: 'internlm2' }], ['internlm2.block_count', { type: 'u32', value: 1 }],
      ['internlm2.attention.head_count', { type: 'u32', value: nHeads }], ['internlm2.attention.head_count_kv', { type: 'u32', value: nKv }]],
    tensors: [...weights].map(([name, w]) => ({ name, type: 'F32', ne: w.ne, data: tensorData('F32', w.values) })),
  });
  const [rank, alpha] = [4, 8];
  const wqkvRows = nKv * (perKv + 2) * dim;
  const a = Float64Array.from({ length: rank * hidden }, f32);
  const b = Float64Array.from({ length: wqkvRows * rank }, f32);
  const adapterFiles = {
    'peft/adapter_config.json': JSON.stringify({ peft_type: 'LORA', r: rank, lora_alpha: alpha, target_modules: ['wqkv'], base_model_name_or_path: 'internlm/internlm2-chat-1_8b' }),
    'peft/adapter_model.safetensors': buildSafetensors([
      { name: 'base_model.model.model.layers.0.attention.wqkv.lora_A.weight', dtype: 'F32', shape: [rank, hidden], data: a },
      { name: 'base_model.model.model.layers.0.attention.wqkv.lora_B.weight', dtype: 'F32', shape: [wqkvRows, rank], data: b },
    ]),
  };

  /** W + (α/r)·B·A of wqkv's rows that tensor `part` holds, in the GGUF's row order. */
  function truth(part: 'q' | 'k' | 'v'): Float64Array {
    const w = weights.get(`blk.0.attn_${part}.weight`)!.values.slice();
    for (let r = 0; r < rows[part]; r++) {
      const head = Math.floor(r / dim);
      const d = r % dim;
      const slot = part === 'q' ? (Math.floor(head / perKv) * (perKv + 2) + (head % perKv)) : head * (perKv + 2) + perKv + (part === 'v' ? 1 : 0);
      const src = slot * dim + d;
      const dst = part === 'q' ? ggufRowOf(r, rows.q, nHeads) : part === 'k' ? ggufRowOf(r, rows.k, nKv) : r;
      for (let c = 0; c < hidden; c++) {
        let sum = 0;
        for (let k = 0; k < rank; k++) sum += b[src * rank + k] * a[k * hidden + c];
        w[dst * hidden + c] += (alpha / rank) * sum;
      }
    }
    return w;
  }

  it('writes one pair per tensor, A shared, and merged into the base it is W + (α/r)·B·A on each tensor\'s rows', async () => {
    const dir = temp.make({ 'internlm2.gguf': baseBytes, ...adapterFiles });
    const out = join(dir, 'lora.gguf');
    const run = await runCli(['convert', '--adapter', join(dir, 'peft'), '--base', join(dir, 'internlm2.gguf'), '--out', out]);
    expect(run.code, run.stderr).toBe(0);
    const file = readGguf(readFileSync(out));
    expect(file.metadata.get('general.architecture')?.value).toBe('internlm2');
    expect(file.metadata.get('adapter.lora.alpha')).toEqual({ type: 6, value: alpha });
    expect(file.tensors.map((t) => [t.name, t.ne])).toEqual([
      ['blk.0.attn_q.weight.lora_a', [hidden, rank]], ['blk.0.attn_q.weight.lora_b', [rank, rows.q]],
      ['blk.0.attn_k.weight.lora_a', [hidden, rank]], ['blk.0.attn_k.weight.lora_b', [rank, rows.k]],
      ['blk.0.attn_v.weight.lora_a', [hidden, rank]], ['blk.0.attn_v.weight.lora_b', [rank, rows.v]],
    ]);
    expectLlamaCppLoads(file, new Map([...weights].map(([name, w]) => [name, w.ne])));
    for (const t of file.tensors.filter((x) => x.name.endsWith('.lora_a'))) expect(tensorValues('F32', t.data), t.name).toEqual(a);
    const merged = join(dir, 'merged.gguf');
    const m = await runCli(['merge', '--base', join(dir, 'internlm2.gguf'), '--adapter', out, '--out', merged, '--backend', 'cpu']);
    expect(m.code, m.stderr).toBe(0);
    const got = new Map(readGguf(readFileSync(merged)).tensors.map((t) => [t.name, tensorValues(typeName(t.typeId), t.data)]));
    for (const part of ['q', 'k', 'v'] as const) expect(worstRelative(got.get(`blk.0.attn_${part}.weight`)!, truth(part)), part).toBeLessThan(1e-6);
    expect(got.get('token_embd.weight')).toEqual(weights.get('token_embd.weight')!.values);
  });
});
