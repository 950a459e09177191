/**
 * Writes a LoRA adapter made by combine, resize or extract:
 * - `peft`: a folder with adapter_config.json (r and lora_alpha of most modules, rank_pattern /
 *   alpha_pattern keyed by full module path for the others, target_modules, modules_to_save,
 *   peft_type LORA) and adapter_model.safetensors (`base_model.model.<module>.lora_A.weight` …).
 * - `kohya`: one .safetensors file with `<module>.lora_down.weight`, `.lora_up.weight` and a scalar
 *   `.alpha` per module and kohya's `ss_*` metadata.
 * - `gguf`: a llama.cpp LoRA GGUF (gguf/gguf-lora-writer.ts).
 * Each file carries `loramerge_*` metadata saying how the adapter was made.
 */
import type { DType, FloatDType } from '../dtype.js';
import { throwIfAborted } from '../errors.js';
import type { OutputTarget } from '../io/types.js';
import type { ModuleKind } from './adapter.js';
import type { GgufLoraCard } from './gguf/gguf-lora-card.js';
import { writeGgufLora } from './gguf/gguf-lora-writer.js';
import { encodeFactor } from './written-factors.js';
import { createSafetensorsWriter, type SafetensorsWriterEntry } from './safetensors-writer.js';

export interface WrittenModule {
  /** PEFT: the module path (`model.layers.0.self_attn.q_proj`); kohya: the key (`lora_unet_…`). */
  name: string;
  kind: ModuleKind;
  /** B: out × rank (for embeddings: dim × rank), row-major. */
  up: Float32Array;
  /** A: rank × in·k… (for embeddings: rank × vocab), row-major. */
  down: Float32Array;
  rank: number;
  /** Shapes as stored: conv A is (rank, in, kh, kw), conv B (out, rank, 1, 1). */
  upShape: number[];
  downShape: number[];
  alpha: number;
  /** PEFT lora_bias: the bias update (out), written as lora_B.bias. */
  bias?: Float32Array;
  /**
   * GGUF only: a stacked expert tensor's pair, one slice per expert: `up` (experts, out, rank),
   * `down` (experts, rank, in), row-major; upShape/downShape say so.
   */
  experts?: number;
}

/** A tensor copied whole (PEFT modules_to_save), read in pieces. */
export interface WholeTensor {
  /** Key in the adapter file (`base_model.model.lm_head.weight`). */
  key: string;
  dtype: DType;
  shape: number[];
  byteLength: number;
  read(start: number, length: number): Promise<Uint8Array>;
}

export interface AdapterToWrite {
  /** `gguf`: a llama.cpp LoRA GGUF (gguf-lora-writer.ts). */
  format: 'peft' | 'kohya' | 'gguf';
  modules: WrittenModule[];
  /** Factor dtype in the file. */
  dtype: FloatDType;
  whole: WholeTensor[];
  /** PEFT: module paths saved whole. */
  modulesToSave: string[];
  /** PEFT: base_model_name_or_path, when known. */
  baseModel?: string;
  /** PEFT: use_rslora (the alphas were chosen for α/√r). */
  useRslora?: boolean;
  fanInFanOut?: boolean;
  taskType?: string;
  /** GGUF: the general.architecture of the model the adapter is for. */
  architecture?: string;
  /** GGUF, convert only: the adapter's folder as convert_lora_to_gguf reads it for general.name and the rest. */
  card?: GgufLoraCard;
  /**
   * GGUF: factors written Q8_0 instead of `dtype` (inputs all Q8_0), each whose rows are not whole
   * 32-value blocks in F16, as gguf-py falls back.
   */
  ggufType?: 'Q8_0';
  /** safetensors metadata (ss_* for kohya, loramerge_* for both). */
  metadata: Record<string, string>;
}

const CHUNK = 8 * 1024 * 1024;

export const PEFT_CONFIG_FILE = 'adapter_config.json';
export const PEFT_WEIGHTS_FILE = 'adapter_model.safetensors';

/**
 * Writes `adapter` into `output`, which the caller commits. `signal` is looked at before each
 * tensor: a cancel while a large adapter is written stops it there (ABORTED); the caller aborts the
 * output, and looks at the signal again before it commits.
 */
export async function writeAdapter(output: OutputTarget, adapter: AdapterToWrite, signal?: AbortSignal): Promise<void> {
  if (adapter.format === 'gguf') return writeGgufLora(output, adapter, signal);
  const factorEntries: { name: string; dtype: FloatDType; shape: number[]; values: Float32Array; module: string; factor: string }[] = [];
  const alphas: SafetensorsWriterEntry[] = [];
  for (const m of adapter.modules) {
    if (adapter.format === 'peft') {
      const [a, b, suffix] = m.kind === 'embedding' ? ['lora_embedding_A', 'lora_embedding_B', ''] : ['lora_A', 'lora_B', '.weight'];
      factorEntries.push({ name: `base_model.model.${m.name}.${a}${suffix}`, dtype: adapter.dtype, shape: m.downShape, values: m.down, module: m.name, factor: a });
      factorEntries.push({ name: `base_model.model.${m.name}.${b}${suffix}`, dtype: adapter.dtype, shape: m.upShape, values: m.up, module: m.name, factor: b });
      if (m.bias) factorEntries.push({ name: `base_model.model.${m.name}.lora_B.bias`, dtype: adapter.dtype, shape: [m.bias.length], values: m.bias, module: m.name, factor: 'lora_B.bias' });
    } else {
      factorEntries.push({ name: `${m.name}.lora_down.weight`, dtype: adapter.dtype, shape: m.downShape, values: m.down, module: m.name, factor: 'lora_down' });
      factorEntries.push({ name: `${m.name}.lora_up.weight`, dtype: adapter.dtype, shape: m.upShape, values: m.up, module: m.name, factor: 'lora_up' });
      alphas.push({ name: `${m.name}.alpha`, dtype: 'F32', shape: [] });
    }
  }
  const declared: SafetensorsWriterEntry[] = [
    ...factorEntries.map(({ name, dtype, shape }) => ({ name, dtype, shape })),
    ...alphas,
    ...adapter.whole.map((t) => ({ name: t.key, dtype: t.dtype, shape: t.shape })),
  ];
  const metadata = adapter.format === 'peft' ? { format: 'pt', ...adapter.metadata } : adapter.metadata;
  const sink = await output.createFile(adapter.format === 'peft' ? PEFT_WEIGHTS_FILE : 'adapter.safetensors');
  const writer = await createSafetensorsWriter(sink, declared, metadata);
  for (const e of factorEntries) {
    throwIfAborted(signal);
    await writer.writeTensor(e.name, encodeFactor(e.values, e.dtype, e.module, e.factor));
  }
  for (const [i, a] of alphas.entries()) await writer.writeTensor(a.name, new Uint8Array(new Float32Array([adapter.modules[i].alpha]).buffer));
  for (const t of adapter.whole) {
    for (let at = 0; at < t.byteLength; at += CHUNK) {
      throwIfAborted(signal);
      await writer.writeChunk(t.key, await t.read(at, Math.min(CHUNK, t.byteLength - at)));
    }
  }
  await writer.finish();
  if (adapter.format === 'peft') {
    const configSink = await output.createFile(PEFT_CONFIG_FILE);
    await configSink.write(new TextEncoder().encode(JSON.stringify(peftConfig(adapter), null, 2) + '\n'));
    await configSink.close();
  }
}

/** adapter_config.json: the most common rank and alpha as r / lora_alpha, the rest as patterns. */
export function peftConfig(adapter: AdapterToWrite): Record<string, unknown> {
  const r = mostCommon(adapter.modules.map((m) => m.rank)) ?? 8;
  const alpha = mostCommon(adapter.modules.map((m) => m.alpha)) ?? r;
  const rankPattern: Record<string, number> = {};
  const alphaPattern: Record<string, number> = {};
  for (const m of adapter.modules) {
    if (m.rank !== r) rankPattern[m.name] = m.rank;
    if (m.alpha !== alpha) alphaPattern[m.name] = m.alpha;
  }
  return {
    peft_type: 'LORA',
    base_model_name_or_path: adapter.baseModel ?? null,
    task_type: adapter.taskType ?? null,
    r,
    lora_alpha: alpha,
    rank_pattern: rankPattern,
    alpha_pattern: alphaPattern,
    target_modules: adapter.modules.map((m) => m.name),
    modules_to_save: adapter.modulesToSave.length > 0 ? adapter.modulesToSave : null,
    use_rslora: adapter.useRslora ?? false,
    fan_in_fan_out: adapter.fanInFanOut ?? false,
    use_dora: false,
    lora_bias: adapter.modules.some((m) => m.bias !== undefined),
    lora_dropout: 0,
    bias: 'none',
    init_lora_weights: true,
    inference_mode: true,
  };
}

function mostCommon<T>(values: T[]): T | undefined {
  const counts = new Map<T, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  let best: T | undefined, bestCount = 0;
  for (const [v, c] of counts) if (c > bestCount) [best, bestCount] = [v, c];
  return best;
}
