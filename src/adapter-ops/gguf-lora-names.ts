/**
 * A PEFT-named adapter made by combine or resize, renamed onto the tensors of the GGUF model it is
 * for, as convert_lora_to_gguf.py --base does: each module lands where the merge lands it on that
 * GGUF base (the hf-to-gguf layout: llama.cpp's tensor names, the q/k row permutation
 * convert_hf_to_gguf applies for RoPE, a module the converter splits by rows on each of its parts),
 * and becomes one `lora_a`/`lora_b` pair per GGUF tensor, exactly:
 * - ΔW's rows reordered or split among tensors: B's rows go where ΔW's rows go, A is unchanged (the
 *   converter's LoraTorchTensor does the same to B alone);
 * - ΔW's columns reordered (a converter that reorders a weight's inputs): A's columns likewise;
 * - several modules on one tensor: A stacked along the rank and B block-diagonal, each block times
 *   its module's scale, so that B·A is the sum of their updates (the converter's torch.cat of two
 *   pairs with equal A is the special case of this it takes);
 * - token_embd as the writer stores it (A transposed, gguf-lora-writer.ts).
 * Each pair's scale is its module's (α/r, or α/√r where the adapter is rsLoRA): a pair of one
 * module keeps its factors and states α' = s·r, so that llama.cpp's α'/r is s; stacked pairs carry
 * their scales in B. Where the pairs' α'/r differ the writer folds them into B (one α for all).
 * Refused, every problem at once: a module the base has no tensor for (the merge's reason), one whose
 * update does not fit that tensor (an adapter for another model), an expert of a stacked expert
 * tensor or a transposed-block placement (llama.cpp's LoRA holds no such pair here), a bias change,
 * a convolution, and tensors saved whole (modules_to_save), which a llama.cpp LoRA cannot hold.
 */
import { MergeError } from '../errors.js';
import type { ParsedAdapter } from '../formats/adapter.js';
import type { AdapterToWrite, WrittenModule } from '../formats/adapter-writer.js';
import { ModuleLocator, type BaseShapes, type RowSegment } from '../formats/layouts/index.js';
import { throwIfProblems } from '../plan/problems.js';

/** A base under llama.cpp's tensor names: a GGUF model, or a safetensors one seen so (hf-gguf-names.ts). */
export interface GgufNamedBase extends BaseShapes {
  /** The GGUF metadata: general.architecture, the block and head counts. */
  metadata(key: string): unknown;
  /**
   * Why a module (its Hugging Face path) has no tensor here though the GGUF would have one (a
   * safetensors base whose GGUF shape config.json does not give); undefined otherwise.
   */
  unnamed?(path: string): string | undefined;
}

/**
 * What the placement needs of a module: its name, kind, shapes and scale, not its factors (a
 * module as convert will write it, known before its factors are read).
 */
export type PlacedModule = Pick<WrittenModule, 'name' | 'kind' | 'rank' | 'alpha' | 'upShape' | 'downShape'> & { bias?: unknown };

/** What the placement needs of an adapter: its modules, the tensors it saves whole, whether it is rsLoRA. */
export interface PlacedAdapter<M extends PlacedModule = PlacedModule> {
  modules: readonly M[];
  whole: readonly { key: string }[];
  useRslora?: boolean;
}

/** One module's share of one GGUF tensor: its ΔW rows on the tensor's rows, its columns in the tensor's order. */
interface Piece<M extends PlacedModule = WrittenModule> {
  module: M;
  scale: number;
  /** ΔW rows → tensor rows. */
  rows: readonly RowSegment[];
  /** Tensor column c holds ΔW column columns[c]; absent: the same order. */
  columns?: readonly number[];
  /** On a stacked expert tensor: the expert whose slice (`rows` within it) this is, of `experts`. */
  expert?: { index: number; experts: number };
}

/** A stacked expert tensor (ffn_up_exps, ffn_gate_chexps …): llama.cpp's LoRA of it is a 3-D pair per expert. */
const EXPERTS_TENSOR = /_(ch)?exps\.weight$/;

/**
 * `adapter` (format `peft`, its modules named by their Hugging Face paths) as a llama.cpp LoRA
 * (format `gguf`) for the GGUF model `base`; `baseName` names the base in refusals (its path);
 * `command` (combine, resize) heads a list of several.
 */
export function ggufLoraForBase(adapter: AdapterToWrite, base: GgufNamedBase, baseName: string, command: string): AdapterToWrite {
  const { arch, byTensor } = placeOnGgufBase(adapter, base, baseName, command);
  const modules = [...byTensor].map(([key, pieces]) => (pieces[0].expert ? stackedPairFor(key, pieces, base.tensors.get(key)!.shape, pieces[0].expert.experts) : pairFor(key, pieces, base.tensors.get(key)!.shape)));
  return { ...adapter, format: 'gguf', modules, architecture: arch, useRslora: false, whole: [], modulesToSave: [] };
}

/**
 * {@link ggufLoraForBase}'s refusals of `adapter` on `base`, from its modules' names and shapes
 * alone: the same problems in the same words, before any factor is read (the page says them when
 * both the adapter and the model are picked).
 */
export function checkGgufLoraForBase(adapter: PlacedAdapter, base: GgufNamedBase, baseName: string, command: string): void {
  placeOnGgufBase(adapter, base, baseName, command);
}

/** Where each module of `adapter` lands on `base`'s tensors; every problem refused at once. */
function placeOnGgufBase<M extends PlacedModule>(adapter: PlacedAdapter<M>, base: GgufNamedBase, baseName: string, command: string): { arch: string; byTensor: Map<string, Piece<M>[]> } {
  const arch = base.metadata('general.architecture');
  if (typeof arch !== 'string') {
    throw new MergeError('BAD_ARGUMENT', `--base ${baseName}: names no general.architecture, which a llama.cpp LoRA must state; give the GGUF model the LoRA is for`);
  }
  const problems: { code: 'UNSUPPORTED_FORMAT' | 'UNKNOWN_MODULE' | 'SHAPE_MISMATCH'; message: string }[] = [];
  for (const t of adapter.whole) {
    problems.push({ code: 'UNSUPPORTED_FORMAT', message: `"${t.key.replace(/^base_model\.model\./, '')}" is saved whole (modules_to_save), which a llama.cpp LoRA cannot hold (it holds lora_a/lora_b pairs only); merge the adapter into the model instead` });
  }
  const locator = new ModuleLocator(base);
  const byTensor = new Map<string, Piece<M>[]>();
  for (const m of adapter.modules) {
    const named = `module "${m.name}"`;
    if (m.bias) {
      problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${named} changes a bias (lora_bias), which a llama.cpp LoRA cannot hold` });
      continue;
    }
    if (m.kind === 'conv') {
      problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${named} is a convolution, which a llama.cpp LoRA cannot hold` });
      continue;
    }
    const unnamed = base.unnamed?.(m.name);
    if (unnamed !== undefined) {
      problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${named}: ${unnamed}` });
      continue;
    }
    const where = locator.locate({ path: m.name, flat: false });
    if (!where.found) {
      problems.push({ code: where.code === 'SHAPE_MISMATCH' ? 'SHAPE_MISMATCH' : 'UNKNOWN_MODULE', message: `${named}: ${where.message} (on the ${arch} GGUF ${baseName})` });
      continue;
    }
    const out = m.upShape[0];
    // A's columns: the module's inputs (its factors are not needed for where it lands).
    const inF = m.downShape.slice(1).reduce((n, x) => n * x, 1);
    const scale = adapter.useRslora ? m.alpha / Math.sqrt(m.rank) : m.alpha / m.rank;
    for (const t of where.targets) {
      const key = t.baseKey;
      if (t.experts) {
        problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${named} is a fused expert parameter (PEFT target_parameters) on ${key}, which convert_lora_to_gguf.py does not convert (its LoRA is not one pair per expert); merge the adapter into the model instead` });
        continue;
      }
      if (EXPERTS_TENSOR.test(key)) {
        // One expert's rows of the stacked tensor (the layout's expert rule): its slice of a 3-D pair.
        const [rows, cols] = base.tensors.get(key)?.shape ?? [];
        const seg = t.rows?.length === 1 ? t.rows[0] : undefined;
        const experts = seg && rows !== undefined ? rows / seg.count : NaN;
        if (!seg || t.columns || !Number.isInteger(experts) || seg.src !== 0 || seg.count !== out || seg.dst % seg.count !== 0 || cols !== inF) {
          problems.push({ code: 'SHAPE_MISMATCH', message: `${named}: its update is ${out}×${inF}, which is no expert's slice of ${key} (${rows}×${cols}); the adapter is for another model than ${baseName} (another architecture or size)` });
          continue;
        }
        push(byTensor, key, { module: m, scale, rows: [{ src: 0, dst: 0, count: out }], expert: { index: seg.dst / seg.count, experts } });
        continue;
      }
      if (t.transposedBlocks) {
        problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${named} lands on ${key} with each head's rows transposed, which no lora_a/lora_b pair of that tensor expresses; merge the adapter into the model instead` });
        continue;
      }
      const [rows, cols] = base.tensors.get(key)?.shape ?? [];
      const mismatch = (why: string) => problems.push({ code: 'SHAPE_MISMATCH', message: `${named}: ${why}; the adapter is for another model than ${baseName} (another architecture or size)` });
      if (m.kind === 'embedding') {
        // The base stores the embedding (vocab, dim); ΔW is its transpose (dim × vocab).
        if (t.rows || t.columns || rows !== inF || cols !== out) mismatch(`its update is an embedding of ${inF} tokens × ${out}, but ${key} is ${rows}×${cols}`);
        else push(byTensor, key, { module: m, scale, rows: [{ src: 0, dst: 0, count: out }] });
        continue;
      }
      const segments = t.rows ?? [{ src: 0, dst: 0, count: out }];
      const columns = t.columns;
      const rowsFit = segments.every((s) => s.src + s.count <= out && rows !== undefined && s.dst + s.count <= rows) && (t.rows !== undefined || rows === out);
      const colsFit = columns ? cols === columns.length && columns.every((c) => c < inF) : cols === inF;
      if (!rowsFit || !colsFit) mismatch(`its update is ${out}×${inF}, which does not fit ${key} (${rows}×${cols})`);
      else push(byTensor, key, { module: m, scale, rows: segments, ...(columns ? { columns } : {}) });
    }
  }
  throwIfProblems(command, problems);
  return { arch, byTensor };
}

function push<M extends PlacedModule>(map: Map<string, Piece<M>[]>, key: string, piece: Piece<M>): void {
  const list = map.get(key);
  if (list) list.push(piece);
  else map.set(key, [piece]);
}

/** The one pair of tensor `key` (shape rows × cols as the plan sees it) holding every piece's update. */
function pairFor(key: string, pieces: readonly Piece[], [rows, cols]: readonly number[]): WrittenModule {
  const [first] = pieces;
  const m = first.module;
  if (m.kind === 'embedding') {
    // Written as the writer writes an embedding: B (dim × r), A (r × vocab).
    return { ...m, name: key, alpha: first.scale * m.rank };
  }
  const rank = pieces.reduce((n, p) => n + p.module.rank, 0);
  // One piece keeps its factors and its scale in α'; several carry their scales in B at α' = r.
  const single = pieces.length === 1;
  const down = new Float32Array(rank * cols);
  const up = new Float32Array(rows * rank);
  let k0 = 0;
  for (const p of pieces) {
    const r = p.module.rank;
    const inF = p.module.down.length / r;
    const a = p.module.down;
    for (let k = 0; k < r; k++) {
      const from = k * inF;
      const to = (k0 + k) * cols;
      if (p.columns) for (let c = 0; c < cols; c++) down[to + c] = a[from + p.columns[c]];
      else down.set(a.subarray(from, from + cols), to);
    }
    const s = single ? 1 : p.scale;
    const b = p.module.up;
    for (const seg of p.rows) {
      for (let j = 0; j < seg.count; j++) {
        const src = (seg.src + j) * r;
        const dst = (seg.dst + j) * rank + k0;
        for (let k = 0; k < r; k++) up[dst + k] = s * b[src + k];
      }
    }
    k0 += r;
  }
  return {
    name: key, kind: 'linear', up, down, rank, alpha: single ? first.scale * rank : rank,
    upShape: [rows, rank], downShape: [rank, cols],
  };
}

/**
 * The one 3-D pair of a stacked expert tensor `key` (rows = experts × per-expert rows, as the plan
 * sees it), as convert_hf_to_gguf's MoE converters make it of per-expert PEFT modules (torch.stack
 * of each expert's A and B, which convert_lora_to_gguf's LoraTorchTensor stacks factor by factor):
 * each expert's own pair as {@link pairFor} makes it of its pieces, stacked by
 * {@link stackExpertPairs}.
 */
function stackedPairFor(key: string, pieces: readonly Piece[], [rows, cols]: readonly number[], experts: number): WrittenModule {
  const per = rows / experts;
  const byExpert: Piece[][] = Array.from({ length: experts }, () => []);
  for (const p of pieces) byExpert[p.expert!.index].push(p);
  return stackExpertPairs(key, byExpert.map((ps) => (ps.length ? pairFor(key, ps, [per, cols]) : undefined)), per, cols);
}

/**
 * Per-expert 2-D pairs (`pairs[e]`, out = `per`, in = `cols`; undefined where an expert has no
 * update) as one 3-D pair named `key`: lora_a (experts, r, in), lora_b (experts, out, r). Where
 * every pair has one rank and one α the factors are as they are (a PEFT LoRA on the experts, as the
 * script writes it); otherwise each expert's α/r is folded into its B and its rank padded with zero
 * rows of A and zero columns of B to the largest, at α' = r. An expert without an update gets zero
 * factors: no update, as PEFT applies none to it (the script itself requires every expert).
 */
export function stackExpertPairs(key: string, pairs: readonly (WrittenModule | undefined)[], per: number, cols: number): WrittenModule {
  const present = pairs.filter((m): m is WrittenModule => m !== undefined);
  const [first] = present;
  const uniform = present.every((m) => m.rank === first.rank && m.alpha === first.alpha);
  const rank = Math.max(...present.map((m) => m.rank));
  const experts = pairs.length;
  const up = new Float32Array(experts * per * rank);
  const down = new Float32Array(experts * rank * cols);
  for (const [e, m] of pairs.entries()) {
    if (!m) continue;
    const s = uniform ? 1 : m.alpha / m.rank;
    for (let o = 0; o < per; o++) {
      for (let k = 0; k < m.rank; k++) up[(e * per + o) * rank + k] = s * m.up[o * m.rank + k];
    }
    down.set(m.down, e * rank * cols);
  }
  return {
    name: key, kind: 'linear', up, down, rank, alpha: uniform ? first.alpha : rank,
    upShape: [experts, per, rank], downShape: [experts, rank, cols], experts,
  };
}

/**
 * The modules combine or resize made of llama.cpp MoE LoRAs (one per expert, named
 * `blk.0.ffn_gate_exps.weight[3]` as gguf-adapter.ts reads a 3-D pair) stacked again into one 3-D
 * pair per tensor ({@link stackExpertPairs}), the expert count that of the input pair
 * (`[e/experts]` in its address); other modules as they are, in their order.
 */
export function stackGgufExperts(adapters: readonly ParsedAdapter[], modules: readonly WrittenModule[]): WrittenModule[] {
  const counts = new Map<string, number>();
  for (const a of adapters) {
    for (const m of a.modules) {
      const slice = /\[(\d+)\/(\d+)\]$/.exec(m.address.path);
      if (slice) counts.set(m.key.replace(/\[\d+\]$/, ''), Number(slice[2]));
    }
  }
  if (counts.size === 0) return [...modules];
  const out: WrittenModule[] = [];
  const stacks = new Map<string, (WrittenModule | undefined)[]>();
  for (const m of modules) {
    const slot = /^(.*)\[(\d+)\]$/.exec(m.name);
    const experts = slot ? counts.get(slot[1]) : undefined;
    if (!slot || experts === undefined) {
      out.push(m);
      continue;
    }
    let pairs = stacks.get(slot[1]);
    if (!pairs) {
      pairs = new Array<WrittenModule | undefined>(experts).fill(undefined);
      stacks.set(slot[1], pairs);
      // Stands in for the stacked pair, at its first expert's place.
      out.push({ ...m, name: slot[1] });
    }
    pairs[Number(slot[2])] = m;
  }
  return out.map((m) => {
    const pairs = stacks.get(m.name);
    if (!pairs) return m;
    const [one] = pairs.filter((p) => p !== undefined);
    return stackExpertPairs(m.name, pairs, one!.upShape[0], one!.down.length / one!.rank);
  });
}
