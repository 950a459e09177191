/**
 * convert: one adapter's modules as plain LoRA pairs, their factors as they are (no algebra, no
 * rounding beyond the file's dtype), each at its own scale (α' = s·r, s being α/r, α/√r under
 * rsLoRA, or the algorithm's), for a renaming such as gguf-lora-names.ts's. A module that is no
 * low-rank product, DoRA or a bias change is refused by collectModules, as combine and resize refuse it.
 */
import type { FloatDType } from '../dtype.js';
import { MergeError, throwIfAborted } from '../errors.js';
import type { ParsedAdapter } from '../formats/adapter.js';
import type { WrittenModule } from '../formats/adapter-writer.js';
import { ggufCardProblem, type GgufLoraCard } from '../formats/gguf/gguf-lora-card.js';
import { hubCardText } from '../io/hub-adapters.js';
import type { InputFileSet } from '../io/types.js';
import { MAX_CONFIG_BYTES } from '../limits.js';
import type { ProgressListener } from '../pipeline/progress.js';
import { factorBytes, factorRank, readFactors, type OutputFormat } from './module-updates.js';
import type { PlacedAdapter } from './gguf-lora-names.js';
import { collectModules, finishAdapter, type ModuleReport, type OpResult } from './op-common.js';

/** convert_lora_to_gguf.py's `--outtype`: the factors' type in the GGUF (default f32, as there). */
export type GgufOutType = 'f32' | 'f16' | 'bf16' | 'q8_0' | 'auto';

/** The values `--outtype` takes. */
export const GGUF_OUT_TYPES: readonly GgufOutType[] = ['f32', 'f16', 'bf16', 'q8_0', 'auto'];

/**
 * What `outtype` writes for `adapter`: a float type, or Q8_0 (each tensor whose rows are not whole
 * 32-value blocks F16, the writer's fallback as gguf-py's). `auto` is convert_hf_to_gguf's
 * GUESSED: the type of the first tensor the script yields, which for a LoRA is the first module's
 * pair in the order the script reads the adapter's tensors (their names, sorted, as safetensors
 * lists them): f16 where that pair is f16, bf16 for any other type (f32 included). A pair whose A
 * and B differ in type stops the script (LoraTorchTensor.dtype asserts they agree): refused.
 */
export function ggufOutType(adapter: ParsedAdapter, outtype: GgufOutType): { dtype: FloatDType; ggufType?: 'Q8_0' } {
  if (outtype === 'q8_0') return { dtype: 'F32', ggufType: 'Q8_0' };
  if (outtype !== 'auto') return { dtype: outtype === 'f32' ? 'F32' : outtype === 'f16' ? 'F16' : 'BF16' };
  const pairs = adapter.modules.map((m) => ({ path: m.name, tensors: Object.values(m.tensors) }))
    .map((m) => ({ ...m, first: m.tensors.map((t) => t.name).sort()[0] ?? '' }));
  pairs.sort((x, y) => (x.first < y.first ? -1 : x.first > y.first ? 1 : 0));
  const first = pairs[0];
  if (!first) return { dtype: 'BF16' };
  const types = new Set(first.tensors.map((t) => t.dtype));
  if (types.size > 1) {
    throw new MergeError('UNSUPPORTED_FORMAT', `${adapter.name}: --outtype auto takes the type of the first module's factors, and module "${first.path}" has factors of ${[...types].sort().join(' and ')} (convert_lora_to_gguf.py stops on it): give --outtype f32, f16, bf16 or q8_0`);
  }
  return { dtype: types.has('F16') ? 'F16' : 'BF16' };
}

/**
 * The modules {@link convertAdapter} writes for `adapter` (format `peft`) and the tensors it saves
 * whole, by name, kind and shape, without reading a factor: what renaming them onto a GGUF model
 * (gguf-lora-names.ts checkGgufLoraForBase) needs to say whether it can. Refusals as convertAdapter's.
 */
export function convertedShapes(adapter: ParsedAdapter): PlacedAdapter {
  const modules = [...collectModules([adapter], 'peft', 'convert')].map(([name, [ref]]) => {
    const rank = factorRank(ref.module);
    const { shape } = ref;
    return { name, kind: shape.kind, rank, alpha: ref.module.scale * rank, upShape: [shape.out, rank, ...shape.upTail], downShape: [rank, ...shape.downTail] };
  });
  // As finishAdapter lists them: each tensor saved whole under its PEFT key.
  return { modules, whole: adapter.replacements.map((r) => ({ key: `base_model.model.${r.path}` })), useRslora: false };
}

/**
 * Reads every factor {@link convertAdapter} writes for `adapter` (format `peft`), as it reads them
 * and in its order, writing nothing: its refusal of a factor holding NaN or Inf (or of factors too
 * large for f32), known from the adapter alone, before any model is read. Refusals as convertAdapter's.
 */
export async function checkConvertedFactors(adapter: ParsedAdapter, signal?: AbortSignal): Promise<void> {
  for (const [, [ref]] of collectModules([adapter], 'peft', 'convert')) {
    throwIfAborted(signal);
    await readFactors(adapter, ref.module);
  }
}

/**
 * `adapter` written again as `format` names its modules, every update exact; `outtype`, where
 * given, the factors' type in a GGUF (else the inputs', as combine and resize keep it).
 */
export async function convertAdapter(
  adapter: ParsedAdapter, format: OutputFormat, run: { signal?: AbortSignal; onProgress?: ProgressListener } = {}, outtype?: GgufOutType, card?: GgufLoraCard,
): Promise<OpResult> {
  // Where convert_lora_to_gguf.py stops on the folder's README.md, config.json or generation_config.json, so does this.
  const problem = card && ggufCardProblem(card);
  if (problem) throw new MergeError('UNSUPPORTED_FORMAT', `${adapter.name}: ${problem}; fix or remove the file`);
  const groups = collectModules([adapter], format, 'convert');
  const modules: WrittenModule[] = [];
  const report: ModuleReport[] = [];
  const bytesTotal = adapter.modules.reduce((n, m) => n + factorBytes(m), 0);
  let bytesDone = 0;
  for (const [name, [ref]] of groups) {
    throwIfAborted(run.signal);
    run.onProgress?.({ phase: 'merge', tensorsDone: modules.length, tensorsTotal: groups.size, bytesDone, bytesTotal, tensor: name });
    const { b, a, rank } = await readFactors(adapter, ref.module);
    const { shape } = ref;
    modules.push({
      name, kind: shape.kind, up: b.data, down: a.data, rank, alpha: ref.module.scale * rank,
      upShape: [shape.out, rank, ...shape.upTail], downShape: [rank, ...shape.downTail],
    });
    report.push({ name, rank, froKept: 1, singularValues: [] });
    bytesDone += factorBytes(ref.module);
  }
  run.onProgress?.({ phase: 'done', tensorsDone: modules.length, tensorsTotal: groups.size, bytesDone, bytesTotal });
  const result = finishAdapter([adapter], modules, report, format, {
    loramerge_command: 'convert',
    loramerge_sources: JSON.stringify([{ adapter: adapter.name, format: adapter.format }]),
  }, 'converted');
  if (card) result.adapter = { ...result.adapter, card };
  if (outtype === undefined) return result;
  const { ggufType: _kept, ...rest } = result.adapter;
  return { ...result, adapter: { ...rest, ...ggufOutType(adapter, outtype) } };
}

/**
 * The adapter's folder as convert_lora_to_gguf.py reads it for a GGUF's general.* keys
 * (gguf-lora-card.ts): the folder's name, its README.md, config.json and generation_config.json. A lone file, which the
 * script does not take, is named by its file name less the extension. Files given without their
 * folder (a set whose name is only a label, InputFileSet.namesFolder) give no folder name: the
 * script always has a folder, and a label such as "selected files" names no adapter. One of these
 * files that is not UTF-8 is refused, naming it: gguf-py opens each with encoding="utf-8" (README.md,
 * config.json, then generation_config.json) and stops on the UnicodeDecodeError, which even
 * load_generation_config's except (json.JSONDecodeError, IOError) does not catch; a byte-order mark
 * is kept, as Python's "utf-8" codec keeps it (README.md's first line is then not "---", and
 * json.load refuses it). A file that cannot be read for another reason is left out. A Hub adapter's
 * folder (hub-adapters.ts), which the script reads once downloaded, lists only the adapter's two
 * files: these three are fetched beside them (hubCardText), one the Hub does not have (HTTP 404)
 * left out as a folder without it, and one that cannot be fetched (another HTTP error, no answer)
 * refused naming it, since leaving it out would write other general.* keys than the script.
 */
export async function ggufLoraCardOf(files: Pick<InputFileSet, 'name' | 'namesFolder' | 'list' | 'readText'>): Promise<GgufLoraCard> {
  const listed = files.list();
  const segments = files.name.split(/[/\\]/).filter((p) => p !== '');
  const last = segments.at(-1) ?? files.name;
  const lone = listed.length === 1 && listed[0] === last;
  const fromHub = hubCardText(files);
  const text = async (path: string) => (fromHub
    ? fromHub(path).catch((e: unknown) => notUtf8(e, files.name, path) ?? unfetched(e, files.name, path))
    : listed.includes(path) ? files.readText(path).catch((e: unknown) => notUtf8(e, files.name, path)) : undefined);
  return {
    folder: lone ? last.replace(/\.[^.]*$/, '') : files.namesFolder ? last : undefined,
    readme: lone ? undefined : await text('README.md'),
    config: lone ? undefined : await text('config.json'),
    generation: lone ? undefined : await text('generation_config.json'),
  };
}

/** A Hub adapter's card file that could not be fetched (an HTTP error other than 404, no answer), refused in one line. */
function unfetched(e: unknown, adapter: string, path: string): never {
  // A cancel stays a cancel; anything but the reader's own refusals is thrown as it is.
  if (!(e instanceof MergeError) || e.code === 'ABORTED') throw e;
  throw new MergeError(e.code, `${adapter}: ${path} beside the adapter could not be fetched (${e.message}); convert_lora_to_gguf.py reads it from the downloaded folder for the general.* keys, so convert stops rather than write other keys: try again, or download the folder and give its path`, { cause: e });
}

/**
 * readText's refusal of a file that is not UTF-8 (strict-utf8.ts) said as convert_lora_to_gguf.py
 * meets it, and of one past MAX_CONFIG_BYTES (the script reads it whole, so leaving it out would
 * write other general.* keys than the script); any other failure (not a regular file, which
 * gguf-py's is_file() passes over) leaves the file out.
 */
function notUtf8(e: unknown, adapter: string, path: string): undefined {
  if (e instanceof MergeError && e.code === 'LIMIT_EXCEEDED') {
    const size = /: (\d+) bytes is too large/.exec(e.message)?.[1];
    throw new MergeError('LIMIT_EXCEEDED', `${adapter}: ${path}${size ? ` is ${size} bytes,` : ' is'} past the ${MAX_CONFIG_BYTES}-byte limit (MAX_CONFIG_BYTES) for a file convert reads whole for the general.* keys, as convert_lora_to_gguf.py does; shrink it or remove the file`, { cause: e });
  }
  const bad = e instanceof MergeError ? / is not valid UTF-8 \(([^)]*)\)/.exec(e.message) : null;
  if (!bad) return undefined;
  throw new MergeError('UNSUPPORTED_FORMAT', `${adapter}: ${path} is not UTF-8 (${bad[1]}), and convert_lora_to_gguf.py stops on it (gguf-py opens it with encoding="utf-8" for the general.* keys: UnicodeDecodeError); save it as UTF-8, or remove the file`, { cause: e });
}
