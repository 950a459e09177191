/**
 * DeepSeek-V3 as released (163 safetensors shards and their index, 90,427 tensors), header-only:
 * each file is its header and a hole the size of its data (sparse, no disk), for tests of what
 * opening a base of hundreds of shards costs and where a cancel is seen in it.
 */
import { closeSync, ftruncateSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { ByteSource, InputFileSet } from '../../src/io/types.js';
import { buildRawSafetensors } from './fixtures.js';

export interface Declared { name: string; dtype: 'F8_E4M3' | 'F16' | 'BF16' | 'F32'; shape: number[] }
const WIDTH = { F8_E4M3: 1, F16: 2, BF16: 2, F32: 4 } as const;

/** The header of a safetensors file holding `tensors` back to back (the data is never built), and the file's full size. */
export function headerOf(tensors: readonly Declared[]): { header: Uint8Array; size: number } {
  let offset = 0;
  const fields: Record<string, unknown> = {};
  for (const t of tensors) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * WIDTH[t.dtype];
    fields[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const header = buildRawSafetensors(fields);
  return { header, size: header.byteLength + offset };
}

/** A safetensors file of `tensors` whose data is a hole: the header written, the file extended to its full size (sparse, no disk). */
/** A header-only file set: each file its safetensors header over a hole; reading tensor data fails the test. */
export function headerOnly(name: string, files: Record<string, readonly Declared[]>): InputFileSet {
  const built = Object.fromEntries(Object.entries(files).map(([p, t]) => [p, headerOf(t)]));
  return {
    name,
    list: () => Object.keys(built).sort(),
    async open(path): Promise<ByteSource> {
      const f = built[path];
      return {
        name: `${name}/${path}`, size: f.size,
        async read(offset, length) {
          if (offset + length > f.header.byteLength) throw new Error(`tensor data of ${path} read`);
          return f.header.slice(offset, offset + length);
        },
        async close() {},
      };
    },
    async readText(path) { throw new Error(`${path} is not text`); },
  };
}

export function writeHeaderOnly(path: string, tensors: readonly Declared[]): number {
  const { header, size } = headerOf(tensors);
  const fd = openSync(path, 'w');
  writeSync(fd, header);
  ftruncateSync(fd, size);
  closeSync(fd);
  return size - header.byteLength;
}

export const HIDDEN = 7168, MOE_INTER = 2048, DENSE_INTER = 18432, EXPERTS = 256, LAYERS = 61, DENSE_LAYERS = 3;
const ceil128 = (n: number) => Math.ceil(n / 128);

/** An FP8 linear of DeepSeek-V3's checkpoint: its E4M3 weight and the F32 scale of each 128 × 128 block. */
export const fp8Linear = (m: string, out: number, inp: number): Declared[] => [
  { name: `${m}.weight`, dtype: 'F8_E4M3', shape: [out, inp] },
  { name: `${m}.weight_scale_inv`, dtype: 'F32', shape: [ceil128(out), ceil128(inp)] },
];

/** DeepSeek-V3's tensors, layers 0-60 (three dense, then MoE of 256 routed experts and one shared), in its order: 90,427. */
export function deepseekV3Tensors(): Declared[] {
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

/** A PEFT LoRA (r 8, BF16) on every routed expert's gate, up and down projection of DeepSeek-V3: 44,544 modules, 89,088 tensors. */
export function expertLoraTensors(): Declared[] {
  const lora: Declared[] = [];
  for (let l = DENSE_LAYERS; l < LAYERS; l++) {
    for (let e = 0; e < EXPERTS; e++) {
      for (const [p, out, inp] of [['gate_proj', MOE_INTER, HIDDEN], ['up_proj', MOE_INTER, HIDDEN], ['down_proj', HIDDEN, MOE_INTER]] as const) {
        const m = `base_model.model.model.layers.${l}.mlp.experts.${e}.${p}`;
        lora.push({ name: `${m}.lora_A.weight`, dtype: 'BF16', shape: [8, inp] }, { name: `${m}.lora_B.weight`, dtype: 'BF16', shape: [out, 8] });
      }
    }
  }
  return lora;
}

/**
 * A rank_pattern keyed by module paths, as PEFT saves it: 1000 of the expert LoRA's modules (those
 * of layer 60 and some of 59) at rank 8, each of the 44,544 modules looked up in it as it is parsed.
 */
export function expertRankPattern(): Record<string, number> {
  return Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`model.layers.${60 - Math.floor(i / 768)}.mlp.experts.${i % EXPERTS}.${['gate_proj', 'up_proj', 'down_proj'][Math.floor(i / EXPERTS) % 3]}`, 8]));
}

/** DeepSeek-V3 as released: 163 shards and their index, header-only, in `dir`; returns `dir`. */
export function deepseekV3Folder(dir: string): string {
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

/** A PEFT LoRA (r 8) on the given expert projections of DeepSeek-V3, with this rank_pattern. */
export function deepseekV3PeftConfig(targets: string[], rankPattern: Record<string, number> = {}): string {
  return JSON.stringify({ peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'deepseek-ai/DeepSeek-V3', r: 8, lora_alpha: 16, target_modules: targets, rank_pattern: rankPattern });
}

/** `files` as they are, but the paths opened are kept in `opened` (how many shards a cancelled open reached). */
export function watchingOpens(files: InputFileSet): { files: InputFileSet; opened: Set<string> } {
  const opened = new Set<string>();
  return {
    opened,
    files: { name: files.name, list: () => files.list(), readText: (p) => files.readText(p), open: (p) => (opened.add(p), files.open(p)) },
  };
}
