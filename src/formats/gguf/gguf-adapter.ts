/**
 * llama.cpp's GGUF LoRA adapters (convert_lora_to_gguf.py; read by src/llama-adapter.cpp and
 * tools/export-lora): `general.type = adapter`, `adapter.type = lora`, `adapter.lora.alpha`, and per
 * base tensor `<name>.lora_a` (ne = [in, r]) and `<name>.lora_b` (ne = [r, out]), in f32, f16,
 * bf16 or q8_0. Merged as export-lora does: W += s·B·A with s = weight·α/r, or the weight alone
 * when α is 0 (r = ne[0] of lora_b). For `token_embd` the converter stores A transposed
 * (ne = [r, vocab]) and llama.cpp reads it so; it is turned back on reading. Norm vectors some
 * converters add (`*_norm.weight`) are ignored, as llama.cpp ignores them, with a warning; any
 * other tensor is refused by name.
 *
 * Mixture-of-experts adapters (convert_lora_to_gguf on per-expert PEFT modules) stack one pair per
 * expert: lora_a ne = [in, r, experts], lora_b ne = [r, out, experts], applied by llama.cpp's
 * ggml_mul_mat_id expert by expert, so expert e's update s·B_e·A_e lands on expert e's rows of the
 * base's stacked tensor (`ffn_gate_exps`, ne = [in, out, experts]). Each expert becomes a module of
 * its own, addressed `<tensor>[e/experts]` for the gguf-expert-slices layout.
 *
 * The factors are presented to the plan through a view of the file with safetensors-style entries
 * (f32/f16/bf16 as stored; q8_0 and the transposed A decoded to f32 when read).
 */
import { decodeToF32, type DType } from '../../dtype.js';
import { MergeError, type MergeErrorCode } from '../../errors.js';
import { Pacer } from '../../event-turns.js';
import type { ByteSource } from '../../io/types.js';
import { throwIfProblems } from '../../plan/problems.js';
import type { AdapterModule, ParsedAdapter } from '../adapter.js';
import { fromKnownAdapter } from '../known-adapter.js';
import { alphaScale } from '../algorithms/algorithm.js';
import { lora } from '../algorithms/lora.js';
import type { SafetensorsFile, TensorEntry } from '../safetensors-types.js';
import { blockCodec } from './codecs/registry.js';
import { GGUFValueType, type GgufKeyValue } from './gguf-metadata.js';
import { openGguf, refuseControlVector, type GgufFile, type GgufTensor } from './gguf-reader.js';

const FACTOR_TYPES = new Set(['F32', 'F16', 'BF16', 'Q8_0']);

type Problem = { code: MergeErrorCode; message: string };

/**
 * The end of the refusal of a GGUF model given as an adapter, as the merge words it; the adapter
 * jobs, which take no base, replace it with their own (op-common.ts openJobAdapter).
 */
export const BASE_GIVEN_AS_ADAPTER = 'is it the base, given as an adapter? pass a base model with --base';

/** Parses a llama.cpp LoRA GGUF; `pacer` is ticked as its header is read (openGguf), then once a tensor and once a module (see parsePeftAdapter). */
export async function parseGgufAdapter(name: string, source: ByteSource, pacer: Pacer = new Pacer()): Promise<ParsedAdapter> {
  const file = await openGguf(source, pacer);
  refuseControlVector(file);
  if (file.value('general.type')?.value === 'adapter') {
    try {
      return await parseAdapter(name, file, pacer);
    } catch (e) {
      throw fromKnownAdapter(e);
    }
  }
  return parseAdapter(name, file, pacer);
}

async function parseAdapter(name: string, file: GgufFile, pacer: Pacer): Promise<ParsedAdapter> {
  const source = file.source;
  const fileName = source.name;
  const text = (key: string) => {
    const v = file.value(key)?.value;
    return typeof v === 'string' ? v : undefined;
  };
  const type = text('general.type');
  if (type !== 'adapter') {
    // convert_hf_to_gguf writes "model" (older files have no general.type): the base given as an adapter.
    const what = type === undefined || type === 'model' ? 'a GGUF model' : `a GGUF file of general.type ${JSON.stringify(type)}`;
    throw new MergeError('UNSUPPORTED_FORMAT', `${fileName}: ${what}, not a LoRA adapter (a llama.cpp LoRA GGUF has general.type "adapter"): ${BASE_GIVEN_AS_ADAPTER}`);
  }
  if (text('adapter.type') !== 'lora') {
    throw new MergeError('UNSUPPORTED_FORMAT', `${fileName}: GGUF adapter of type ${JSON.stringify(text('adapter.type') ?? null)}; only "lora" adapters can be merged`);
  }
  // llama.cpp refuses an adapter whose general.architecture is missing (read as "", no known
  // architecture) or not a string (gguf_get_val_str takes no other type).
  const architecture = text('general.architecture');
  if (architecture === undefined) {
    throw new MergeError('UNSUPPORTED_FORMAT', `${fileName}: general.architecture is missing or not a string; llama.cpp refuses a LoRA that does not name its model's architecture`);
  }
  // llama.cpp reads α with gguf_get_val_f32, which takes no other type, and a NaN or infinite α
  // makes every scale NaN there: refused, rather than read as "no α" (scale = weight).
  const alphaKv = file.value('adapter.lora.alpha');
  if (alphaKv && (alphaKv.type !== GGUFValueType.FLOAT32 || typeof alphaKv.value !== 'number' || !Number.isFinite(alphaKv.value))) {
    throw new MergeError('INVALID_HEADER', `${fileName}: adapter.lora.alpha must be a finite f32, got ${typeof alphaKv.value === 'bigint' || typeof alphaKv.value === 'number' ? String(alphaKv.value) : JSON.stringify(alphaKv.value)} (GGUF type ${Object.entries(GGUFValueType).find(([, id]) => id === alphaKv.type)?.[0] ?? alphaKv.type})`);
  }
  const alpha = alphaKv ? (alphaKv.value as number) : 0;
  refuseActivatedLora(fileName, file.value(ALORA_INVOCATION_TOKENS));

  const problems: Problem[] = [];
  const warnings: string[] = [];
  const pairs = new Map<string, { a?: GgufTensor; b?: GgufTensor }>();
  const ignored: string[] = [];
  for (const t of file.tensors) {
    await pacer.tick();
    const m = /^(.+)\.lora_([ab])$/.exec(t.name);
    if (m) {
      const pair = pairs.get(m[1]) ?? {};
      pair[m[2] as 'a' | 'b'] = t;
      pairs.set(m[1], pair);
    } else if (t.name.endsWith('_norm.weight')) {
      ignored.push(t.name);
    } else {
      problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${fileName}: tensor "${t.name}" is neither a .lora_a/.lora_b factor nor a norm vector` });
    }
  }
  const taskNote = taskMetadataWarning(name, file);
  if (taskNote) warnings.push(taskNote);
  if (ignored.length > 0) {
    warnings.push(`${name}: ${ignored.length} norm tensor${ignored.length === 1 ? '' : 's'} (${ignored.slice(0, 2).join(', ')}${ignored.length > 2 ? ', …' : ''}) ignored, as llama.cpp ignores them`);
  }

  const views: FactorView[] = [];
  const modules: AdapterModule[] = [];
  for (const [base, { a, b }] of pairs) {
    await pacer.tick();
    const fail = (code: MergeErrorCode, message: string) => problems.push({ code, message: `${name}: module "${base}": ${message}` });
    if (PER_LAYER_TOKEN_EMBD.test(base)) {
      fail('UNSUPPORTED_FORMAT', PER_LAYER_TOKEN_EMBD_REFUSAL);
      continue;
    }
    if (!a || !b) {
      fail('UNSUPPORTED_FORMAT', `has ${base}.lora_${a ? 'a' : 'b'} but no ${base}.lora_${a ? 'b' : 'a'}`);
      continue;
    }
    const bad = [a, b].find((t) => !FACTOR_TYPES.has(t.type.name));
    if (bad) {
      fail('UNSUPPORTED_FORMAT', `${bad.name} is ${bad.type.name}; GGUF LoRA factors must be F32, F16, BF16 or Q8_0`);
      continue;
    }
    const experts = a.ne.length === 3 ? a.ne[2] : 1;
    if (a.ne.length !== b.ne.length || a.ne.length < 2 || a.ne.length > 3 || (experts !== (b.ne[2] ?? 1))) {
      fail('UNSUPPORTED_FORMAT', `lora_a ne ${fmt(a.ne)} and lora_b ne ${fmt(b.ne)}: llama.cpp takes 2-D pairs, or 3-D pairs with one slice per expert`);
      continue;
    }
    const rank = b.ne[0];
    const embedding = /(^|\.)token_embd\.weight$/.test(base);
    if (embedding && experts > 1) {
      fail('UNSUPPORTED_FORMAT', 'token_embd has no experts');
      continue;
    }
    // ΔW (out, in) = B·A with A (r, in), B (out, r), as the engine takes them.
    const [inFeatures, aRank] = embedding ? [a.ne[1], a.ne[0]] : [a.ne[0], a.ne[1]];
    const outFeatures = b.ne[1];
    // Not for another *token_embd.weight: llama.cpp's loader checks every such name as token_embd
    // (A stored [r, vocab]), so [r, …] there is no finetune-era file.
    if (!embedding && !base.endsWith('token_embd.weight') && aRank !== rank && a.ne[0] === rank && rank >= 1) {
      // llama.cpp's loader: "lora_a tensor is not transposed (hint: adapter from "finetune" example is no longer supported)".
      fail('SHAPE_MISMATCH', `lora_a ne ${fmt(a.ne)} is not transposed (ne [r, in] where llama.cpp takes [in, r]), as adapters from llama.cpp's old finetune example store it; llama.cpp no longer loads them either (convert_lora_to_gguf.py writes lora_a as [in, r] from a PEFT adapter)`);
      continue;
    }
    if (aRank !== rank || rank < 1 || experts < 1) {
      fail('SHAPE_MISMATCH', `lora_a ne ${fmt(a.ne)} does not fit lora_b ne ${fmt(b.ne)} (rank ${rank})`);
      continue;
    }
    const path = base.endsWith('.weight') ? base.slice(0, -'.weight'.length) : base;
    for (let e = 0; e < experts; e++) {
      const slice = a.ne.length === 3 ? { index: e, count: experts } : undefined;
      const down = view(views, a, [rank, inFeatures], embedding, slice);
      const up = view(views, b, [outFeatures, rank], false, slice);
      const module = slice ? `${base}[${e}]` : base;
      modules.push({
        adapter: name,
        key: module,
        name: module,
        address: { path: slice ? `${path}[${e}/${experts}]` : path, flat: false },
        algorithm: lora.name,
        kind: embedding ? 'embedding' : 'linear',
        deltaShape: [outFeatures, inFeatures],
        rank,
        ...alphaScale(alpha, rank),
        tensors: { down, up },
        update: { kind: 'low-rank', rank },
        fanInFanOut: false,
      });
    }
  }
  throwIfProblems(name, problems);
  if (modules.length === 0) throw new MergeError('UNSUPPORTED_FORMAT', `${fileName}: no .lora_a/.lora_b tensors found`);
  return {
    name,
    format: 'gguf',
    file: new FactorFile(file, views),
    modules,
    replacements: [],
    warnings,
    config: { 'general.architecture': architecture, 'adapter.lora.alpha': alpha },
  };
}

/** Written by convert_hf_to_gguf.py with the task LoRAs it extracts (jina-embeddings-v3's). */
const TASK_KEYS = ['adapter.lora.task_name', 'adapter.lora.prompt_prefix'] as const;
/** Longer values are cut in the warning: they are named, not reproduced. */
const MAX_SHOWN_VALUE = 200;

/**
 * A task adapter's name and prompt prefix, which llama.cpp keeps beside the adapter and reports
 * (llama-server's /lora-adapters) for the caller to prepend the prefix; it applies the weights to
 * every token whatever the prompt, so the merge is exact, but the merged model no longer carries
 * them. llama.cpp keeps non-array values only, as text; an empty one says nothing.
 */
function taskMetadataWarning(name: string, file: GgufFile): string | undefined {
  const shown = TASK_KEYS.flatMap((key) => {
    const kv = file.value(key);
    if (!kv || kv.type === GGUFValueType.ARRAY) return [];
    const text = String(kv.value);
    if (text === '') return [];
    const cut = text.length > MAX_SHOWN_VALUE ? `${text.slice(0, MAX_SHOWN_VALUE)}…` : text;
    return [`${key} = ${JSON.stringify(cut)}`];
  });
  if (shown.length === 0) return undefined;
  const prefix = file.value('adapter.lora.prompt_prefix');
  const advice = prefix && prefix.type !== GGUFValueType.ARRAY && String(prefix.value) !== ''
    ? 'prepend that prefix to the merged model\'s inputs yourself, as llama.cpp leaves it to the caller with the adapter too'
    : 'keep it with the merged model yourself';
  return `${name}: ${shown.join(', ')}: the merged model does not record ${shown.length === 1 ? 'it' : 'them'} (llama.cpp only reports a task adapter's name and prompt prefix, it applies the weights to every token); ${advice}`;
}

/** Gemma 3n's and Gemma 4 E2B/E4B's per-layer token embedding table. */
const PER_LAYER_TOKEN_EMBD = /(^|\.)per_layer_token_embd\.weight$/;

/**
 * Why a LoRA on the per-layer token embedding is refused: llama-adapter.cpp takes the pair (its
 * name ends in token_embd.weight, so it is checked as one), but Gemma 3n's and Gemma 4's graphs
 * read the table with a plain ggml_get_rows, never through the LoRA path, and llama-export-lora
 * multiplies it as a linear pair, whose shapes then do not fit. No llama.cpp result exists to
 * reproduce; the trained update (PEFT's) is not what llama.cpp runs either.
 */
const PER_LAYER_TOKEN_EMBD_REFUSAL = 'a LoRA on the per-layer token embedding, which llama.cpp loads but never applies (Gemma 3n and Gemma 4 read that table by token id outside its LoRA path) and llama-export-lora cannot merge: no llama.cpp result exists to reproduce; merge the PEFT adapter it was converted from into the safetensors model instead, or convert the adapter without that module';

/** Written by convert_lora_to_gguf.py from a PEFT config's `alora_invocation_tokens`. */
const ALORA_INVOCATION_TOKENS = 'adapter.alora.invocation_tokens';

/**
 * llama.cpp applies an Activated LoRA only to the tokens after its invocation sequence, so no
 * merged weight reproduces it (the PEFT form is refused for the same reason). llama.cpp reads the
 * key as an array of u32 and stops on any other type; an empty array leaves a plain LoRA.
 */
function refuseActivatedLora(fileName: string, kv: GgufKeyValue | undefined): void {
  if (!kv) return;
  if (kv.type !== GGUFValueType.ARRAY || kv.subType !== GGUFValueType.UINT32) {
    throw new MergeError('INVALID_HEADER', `${fileName}: ${ALORA_INVOCATION_TOKENS} must be an array of u32 token ids, as llama.cpp reads it`);
  }
  const tokens = kv.value as unknown[];
  if (tokens.length === 0) return;
  throw new MergeError('UNSUPPORTED_FORMAT', `${fileName}: an Activated LoRA (${ALORA_INVOCATION_TOKENS} holds ${tokens.length} token${tokens.length === 1 ? '' : 's'}): llama.cpp applies it only after those tokens, which no merged model can do; load it at run time (llama.cpp's --lora) instead`);
}

interface FactorView {
  entry: TensorEntry;
  tensor: GgufTensor;
  /** Stored (shape[1], shape[0]): read transposed. */
  transpose: boolean;
  /** The stored bytes of this view: the whole tensor, or one expert's slice of a 3-D one. */
  start: number;
  length: number;
}

/** One expert's slice of a 3-D factor: the slowest dimension, so a contiguous run of rows. */
interface ExpertSlice {
  index: number;
  count: number;
}

function view(views: FactorView[], tensor: GgufTensor, shape: number[], transpose: boolean, slice?: ExpertSlice): TensorEntry {
  const decoded = transpose || tensor.type.name === 'Q8_0';
  const dtype: DType = decoded ? 'F32' : (tensor.type.name as DType);
  const elements = shape[0] * shape[1];
  const length = slice ? tensor.byteLength / slice.count : tensor.byteLength;
  const start = slice ? slice.index * length : 0;
  const name = slice ? `${tensor.name}[${slice.index}]` : tensor.name;
  const entry: TensorEntry = { name, dtype, shape, offset: tensor.offset + start, byteLength: elements * (dtype === 'F32' ? 4 : 2) };
  // A transposed half-precision A, and Q8_0, are decoded to f32 exactly: an output of these factors may stay in their type.
  if (tensor.type.name === 'Q8_0' || (transpose && (tensor.type.name === 'F16' || tensor.type.name === 'BF16'))) entry.storedDtype = tensor.type.name;
  views.push({ entry, tensor, transpose, start, length });
  return entry;
}

/** The adapter's factors as a SafetensorsFile: entries in the shapes and dtypes the engine takes. */
class FactorFile implements SafetensorsFile {
  readonly source: ByteSource;
  readonly tensors: readonly TensorEntry[];
  readonly metadata: Readonly<Record<string, string>> = {};
  private readonly byName: Map<string, FactorView>;

  constructor(private readonly gguf: GgufFile, views: FactorView[]) {
    this.source = gguf.source;
    this.tensors = views.map((v) => v.entry);
    this.byName = new Map(views.map((v) => [v.entry.name, v]));
  }

  get(name: string): TensorEntry | undefined {
    return this.byName.get(name)?.entry;
  }

  async read(entry: TensorEntry): Promise<Uint8Array> {
    const v = this.byName.get(entry.name);
    if (!v) throw new MergeError('NOT_FOUND', `${this.source.name}: no tensor "${entry.name}"`);
    const raw = await this.gguf.readPart(v.tensor, v.start, v.length);
    if (!v.transpose && v.tensor.type.name !== 'Q8_0') return raw;
    let values: Float32Array;
    if (v.tensor.type.name === 'Q8_0') {
      values = new Float32Array((raw.byteLength / v.tensor.type.blockBytes) * v.tensor.type.blockSize);
      blockCodec(v.tensor.type)!.decode(raw, values);
    } else {
      values = decodeToF32(raw, v.tensor.type.name as 'F32' | 'F16' | 'BF16');
    }
    if (v.transpose) {
      // Stored rows are entry.shape[1] long and entry.shape[1] × entry.shape[0] in all.
      const [rows, cols] = entry.shape;
      const t = new Float32Array(values.length);
      for (let i = 0; i < cols; i++) for (let j = 0; j < rows; j++) t[j * cols + i] = values[i * rows + j];
      values = t;
    }
    return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  }

  async readPart(entry: TensorEntry, start: number, length: number): Promise<Uint8Array> {
    return (await this.read(entry)).subarray(start, start + length);
  }
}

function fmt(ne: readonly number[]): string {
  return `[${ne.join(', ')}]`;
}
