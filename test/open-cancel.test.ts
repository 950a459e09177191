/**
 * A cancel while the inputs are opened. prepareMerge looked at its signal before opening the base
 * and between adapters, but not inside either open: a base of 163 shards is 163 headers to read and
 * parse, and an adapter of 44,544 modules a header of 89,088 tensors and then the parse of its
 * modules, each seconds of work in which an abort() (the CLI's Ctrl-C) was seen only at the end.
 * Now the event loop gets a turn, and the signal is looked at, between the shards and between an
 * adapter's header and its modules.
 */
import { closeSync, mkdirSync, openSync, ftruncateSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openAdapter } from '../src/formats/adapter.js';
import { openModel } from '../src/formats/open-model.js';
import { memoryInputFileSet } from '../src/io/memory-source.js';
import { openNodeInputFileSet } from '../src/io/node-input-files.js';
import { prepareMerge } from '../src/pipeline/prepare-merge.js';
import { buildRawSafetensors, buildSafetensors, tempDirs } from './helpers/fixtures.js';

const temp = tempDirs();
afterAll(temp.removeAll);

interface Declared { name: string; dtype: 'F8_E4M3' | 'BF16' | 'F32'; shape: number[] }
const WIDTH = { F8_E4M3: 1, BF16: 2, F32: 4 } as const;

/** A safetensors file of `tensors` whose data is a hole: the header written, the file extended to its full size (sparse, no disk). */
function writeHeaderOnly(path: string, tensors: readonly Declared[]): number {
  let offset = 0;
  const fields: Record<string, unknown> = {};
  for (const t of tensors) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * WIDTH[t.dtype];
    fields[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const header = buildRawSafetensors(fields);
  const fd = openSync(path, 'w');
  writeSync(fd, header);
  ftruncateSync(fd, header.byteLength + offset);
  closeSync(fd);
  return offset;
}

const HIDDEN = 7168, MOE_INTER = 2048, DENSE_INTER = 18432, EXPERTS = 256, LAYERS = 61, DENSE_LAYERS = 3;
const ceil128 = (n: number) => Math.ceil(n / 128);

/** An FP8 linear of DeepSeek-V3's checkpoint: its E4M3 weight and the F32 scale of each 128 × 128 block. */
const fp8Linear = (m: string, out: number, inp: number): Declared[] => [
  { name: `${m}.weight`, dtype: 'F8_E4M3', shape: [out, inp] },
  { name: `${m}.weight_scale_inv`, dtype: 'F32', shape: [ceil128(out), ceil128(inp)] },
];

/** DeepSeek-V3's tensors, layers 0-60 (three dense, then MoE of 256 routed experts and one shared), in its order: 90,427. */
function deepseekV3Tensors(): Declared[] {
  const all: Declared[] = [{ name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [129280, HIDDEN] }];
  const mlp = (p: string, inter: number) => [
    ...fp8Linear(`${p}.gate_proj`, inter, HIDDEN), ...fp8Linear(`${p}.up_proj`, inter, HIDDEN), ...fp8Linear(`${p}.down_proj`, HIDDEN, inter),
  ];
  for (let l = 0; l < LAYERS; l++) {
    const at = `model.layers.${l}`;
    all.push(
      { name: `${at}.input_layernorm.weight`, dtype: 'BF16', shape: [HIDDEN] },
      { name: `${at}.post_attention_layernorm.weight`, dtype: 'BF16', shape: [HIDDEN] },
      ...fp8Linear(`${at}.self_attn.q_a_proj`, 1536, HIDDEN),
      { name: `${at}.self_attn.q_a_layernorm.weight`, dtype: 'BF16', shape: [1536] },
      ...fp8Linear(`${at}.self_attn.q_b_proj`, 24576, 1536),
      ...fp8Linear(`${at}.self_attn.kv_a_proj_with_mqa`, 576, HIDDEN),
      { name: `${at}.self_attn.kv_a_layernorm.weight`, dtype: 'BF16', shape: [512] },
      ...fp8Linear(`${at}.self_attn.kv_b_proj`, 32768, 512),
      ...fp8Linear(`${at}.self_attn.o_proj`, HIDDEN, 16384),
    );
    if (l < DENSE_LAYERS) {
      all.push(...mlp(`${at}.mlp`, DENSE_INTER));
      continue;
    }
    all.push({ name: `${at}.mlp.gate.weight`, dtype: 'BF16', shape: [EXPERTS, HIDDEN] }, { name: `${at}.mlp.gate.e_score_correction_bias`, dtype: 'F32', shape: [EXPERTS] });
    for (let e = 0; e < EXPERTS; e++) all.push(...mlp(`${at}.mlp.experts.${e}`, MOE_INTER));
    all.push(...mlp(`${at}.mlp.shared_experts`, MOE_INTER));
  }
  all.push({ name: 'model.norm.weight', dtype: 'BF16', shape: [HIDDEN] }, { name: 'lm_head.weight', dtype: 'BF16', shape: [129280, HIDDEN] });
  return all;
}

/** DeepSeek-V3 as released: 163 shards and their index, header-only. */
function deepseekV3Folder(): string {
  const dir = temp.make({});
  const tensors = deepseekV3Tensors();
  const shards = 163, per = Math.ceil(tensors.length / shards);
  const weightMap: Record<string, string> = {};
  let total = 0;
  for (let s = 0; s < shards; s++) {
    const file = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(6, '0')}.safetensors`;
    const mine = tensors.slice(s * per, (s + 1) * per);
    for (const t of mine) weightMap[t.name] = file;
    total += writeHeaderOnly(join(dir, file), mine);
  }
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }));
  return dir;
}

/** The faster of two uncancelled runs of `work` (the first also warms the code up), in ms. */
async function uncancelledMs(work: () => Promise<unknown>): Promise<number> {
  let best = Infinity;
  for (let i = 0; i < 2; i++) {
    const started = performance.now();
    await work();
    best = Math.min(best, performance.now() - started);
  }
  return best;
}

/** prepareMerge aborted on the next task after its start: what it rejected with, and when. */
async function cancelledRun(run: (signal: AbortSignal) => Promise<{ close(): Promise<void> }>, reason: Error): Promise<{ outcome: unknown; ms: number }> {
  const controller = new AbortController();
  setTimeout(() => controller.abort(reason), 0);
  const started = performance.now();
  const outcome = await run(controller.signal).then(async (prepared) => {
    await prepared.close();
    return prepared;
  }, (e: unknown) => e);
  return { outcome, ms: performance.now() - started };
}

/** A PEFT LoRA (r 8) on the given expert projections of DeepSeek-V3, with this rank_pattern. */
function peftConfig(targets: string[], rankPattern: Record<string, number> = {}): string {
  return JSON.stringify({ peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'deepseek-ai/DeepSeek-V3', r: 8, lora_alpha: 16, target_modules: targets, rank_pattern: rankPattern });
}

describe('a cancel while prepareMerge opens its inputs', () => {
  it('is seen between the headers of a base of 163 shards, long before the base is open', async () => {
    const dir = deepseekV3Folder();
    const whole = await uncancelledMs(async () => (await openModel(await openNodeInputFileSet(dir))).close());
    const m = 'model.layers.3.mlp.experts.0.gate_proj';
    const adapter = memoryInputFileSet({
      'adapter_config.json': peftConfig(['gate_proj']),
      'adapter_model.safetensors': buildSafetensors([
        { name: `base_model.model.${m}.lora_A.weight`, dtype: 'BF16', shape: [8, HIDDEN], data: new Uint8Array(2 * 8 * HIDDEN) },
        { name: `base_model.model.${m}.lora_B.weight`, dtype: 'BF16', shape: [MOE_INTER, 8], data: new Uint8Array(2 * MOE_INTER * 8) },
      ]),
    }, 'adapter');
    const reason = new Error('user pressed stop');
    const base = await openNodeInputFileSet(dir);
    const { outcome, ms } = await cancelledRun((signal) => prepareMerge(base, [{ files: adapter, weight: 1 }], { signal }), reason);
    expect(outcome).toMatchObject({ name: 'AbortError', code: 'ABORTED', message: 'merge cancelled', cause: reason });
    // Without the turns between shards the abort was seen once all 163 were open (0.8 to 1 of the
    // open's time when measured). With them it is seen after the index, whose 90,427 entries are
    // parsed in one piece before any shard: 0.25 to 0.45 of it. 0.6 is the bound, so a busy
    // machine does not fail it.
    expect(ms, `cancelled after ${ms.toFixed(0)} ms; opening the base takes ${whole.toFixed(0)} ms`).toBeLessThan(0.6 * whole);
  }, 120_000);

  it("is seen between an adapter's header of 89,088 tensors and the parse of its 44,544 modules against its rank_pattern", async () => {
    // rank_pattern keyed by module paths, as PEFT saves it (here those of layer 60 and some of 59, at rank 8):
    // looking each module up in it is most of the parse, seconds in all.
    const rankPattern = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`model.layers.${60 - Math.floor(i / 768)}.mlp.experts.${i % EXPERTS}.${['gate_proj', 'up_proj', 'down_proj'][Math.floor(i / EXPERTS) % 3]}`, 8]));
    expect(Object.keys(rankPattern)).toHaveLength(1000);
    const dir = temp.make({ 'adapter_config.json': peftConfig(['gate_proj', 'up_proj', 'down_proj'], rankPattern) });
    const lora: Declared[] = [];
    for (let l = DENSE_LAYERS; l < LAYERS; l++) {
      for (let e = 0; e < EXPERTS; e++) {
        for (const [p, out, inp] of [['gate_proj', MOE_INTER, HIDDEN], ['up_proj', MOE_INTER, HIDDEN], ['down_proj', HIDDEN, MOE_INTER]] as const) {
          const m = `base_model.model.model.layers.${l}.mlp.experts.${e}.${p}`;
          lora.push({ name: `${m}.lora_A.weight`, dtype: 'BF16', shape: [8, inp] }, { name: `${m}.lora_B.weight`, dtype: 'BF16', shape: [out, 8] });
        }
      }
    }
    writeHeaderOnly(join(dir, 'adapter_model.safetensors'), lora);
    const files = await openNodeInputFileSet(dir);
    const whole = await uncancelledMs(async () => (await openAdapter(files)).file.source.close());
    const baseDir = join(temp.make({}), 'base');
    mkdirSync(baseDir);
    writeHeaderOnly(join(baseDir, 'model.safetensors'), fp8Linear('model.layers.3.mlp.experts.0.gate_proj', MOE_INTER, HIDDEN));
    const base = await openNodeInputFileSet(baseDir);
    const reason = new Error('user pressed stop');
    const { outcome, ms } = await cancelledRun((signal) => prepareMerge(base, [{ files, weight: 1 }], { signal }), reason);
    expect(outcome).toMatchObject({ name: 'AbortError', code: 'ABORTED', message: 'merge cancelled', cause: reason });
    // Without the turn between header and modules the abort was seen once the adapter was parsed.
    expect(ms, `cancelled after ${ms.toFixed(0)} ms; opening the adapter takes ${whole.toFixed(0)} ms`).toBeLessThan(whole / 2);
  }, 120_000);
});
