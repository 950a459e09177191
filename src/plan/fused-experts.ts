/**
 * LoRA on a fused 3-D expert tensor (PEFT `target_parameters`, tuners/lora/layer.py
 * `ParamWrapper`). The tensor is (E, d1, d2); lora_A is (r·E, ·) with expert e's rows at
 * [e·r, (e+1)·r), lora_B is (·, r·E) with expert e's column k at k·E + e. PEFT forms ΔW for all
 * experts with one einsum, in one of two layouts:
 * - `e-o-i`: W[e] += B_e·A_e, so A is (r·E, d2) and B is (d1, r·E);
 * - `e-i-o`: W[e] += (B_e·A_e)ᵀ, so A is (r·E, d1) and B is (d2, r·E).
 * PEFT before 0.19 always used `e-i-o`; from 0.19.1 it uses `e-o-i` unless the expert module says
 * its tensors are stored (E, in, out) (`is_transposed`, gpt-oss), and 0.19.0 had the two the wrong
 * way round (formByVersion: the commits, and the dev builds that do not say which). The factors'
 * shapes decide when d1 ≠ d2; a square tensor needs the version, except for factors PEFT's
 * conversion of a per-expert adapter for transformers 5 wrote (`e-o-i` on the (E, out, in) tensors
 * it converts, whatever peft_version the re-saved config kept); a lone `down_proj` that conversion
 * may have written (AdapterModule.experts.maybeConverted) under a version that wrote `e-i-o` itself
 * is refused.
 *
 * The merge views W as (E·d1) × d2 and adds one rank-r term per expert on its d1 rows: `e-o-i`
 * with B_e and A_e as they are, `e-i-o` with Aᵀ_e as the left factor and Bᵀ_e as the right. A
 * checkpoint that stores each expert as a tensor of its own (ExpertLayout.expert) gets its one
 * expert's term on each.
 *
 * A base converted to another layout (llama.cpp's GGUF: each expert (out, in), gate_up split into
 * gate and up) holds the parameter laid out again; the layout says how (`ExpertLayout`,
 * layouts/layout.ts), and each expert's term is transposed and its left factor's rows picked to
 * match. ΔW stays low rank: picking rows of ΔW_e is picking rows of its left factor.
 */
import { decodeToF32 } from '../dtype.js';
import type { ExactFactors, FloatTensorBytes, LowRankTerm } from '../engine/merge-op.js';
import type { AdapterModule } from '../formats/adapter.js';
import type { ExpertLayout } from '../formats/layouts/layout.js';

export type ExpertForm = 'e-o-i' | 'e-i-o';

export interface ExpertSplit {
  count: number;
  /** Rank per expert. */
  rank: number;
  form: ExpertForm;
  /** Rows of the base tensor per expert: d1, or those `rows` picks. */
  rowsPerExpert: number;
  /** The base holds each expert's ΔW transposed, (d2, d1). */
  transposed?: boolean;
  /** Rows of each expert's (transposed) ΔW the base tensor holds, in its order; absent: all. */
  rows?: readonly number[];
  /** The base tensor holds this expert alone (ExpertLayout.expert): its one term, on rows 0…; absent: every expert. */
  only?: number;
  /**
   * Where the base stores each expert divided by a scale of its own (llama.cpp's per-expert
   * `.scale`): those scales, each expert's term's scale divided by its own; absent: none.
   */
  scales?: readonly number[];
}

/** transformers' expert modules marked `is_transposed` (their tensors are (E, in, out)). */
const TRANSPOSED_EXPERTS = new Set(['GptOssForCausalLM']);

/** Whether a model of these config.json `architectures` stores its experts (E, in, out). */
export function storesExpertsInOut(architectures: readonly string[]): boolean {
  return architectures.some((a) => TRANSPOSED_EXPERTS.has(a));
}

/** `note`: what the merge took on trust (a warning for the plan). */
export type ExpertFit = { ok: true; split: ExpertSplit; note?: string } | { ok: false; ambiguous: boolean; message: string };

/**
 * Which layout a module's factors have on a base tensor of `shape`: the parameter itself (E, d1,
 * d2), or, where `laidOut` says how a converted base holds it, the tensor `laidOut` describes.
 */
export function fitExperts(module: AdapterModule, shape: readonly number[], storedInOut: boolean, laidOut?: ExpertLayout): ExpertFit {
  const experts = module.experts!;
  const r = module.rank;
  const a = module.tensors.down.shape;
  const b = module.tensors.up.shape;
  const param = laidOut?.paramShape ?? shape;
  const what = laidOut ? 'parameter' : 'base tensor';
  if (param.length !== 3) {
    return { ok: false, ambiguous: false, message: `lora_A ${fmt(a)} holds ${experts.count} experts of rank ${r}; the ${what} ${fmt(param)} is not (${experts.count}, ·, ·)` };
  }
  if (param[0] !== experts.count) {
    // PEFT's ParamWrapper makes lora_A (r·E, ·) for every expert of the parameter; it trains no subset of them.
    const one = experts.count === 1
      ? "; a LoRA on one expert of a fused parameter is not supported (PEFT's ParamWrapper trains every expert of it, and factors of one say not which expert they are for): merge into the model the adapter was trained on"
      : ': the adapter was trained on a model with another number of experts; merge it into that one';
    return {
      ok: false, ambiguous: false,
      message: `lora_A ${fmt(a)} holds the factors of ${experts.count} expert${experts.count === 1 ? '' : 's'} at rank ${r}, and the ${what} ${fmt(param)} holds ${param[0]}, for which PEFT's ParamWrapper saves lora_A (${r * param[0]}, ·) and lora_B (·, ${r * param[0]})${one}`,
    };
  }
  const [, d1, d2] = param;
  let rowsPerExpert = d1;
  if (laidOut) {
    // The tensor as the converter wrote it: E experts of the picked rows of each (transposed) matrix.
    const [rows, cols] = laidOut.transposed ? [d2, d1] : [d1, d2];
    rowsPerExpert = laidOut.rows?.length ?? rows;
    if (laidOut.expert !== undefined && !(laidOut.expert >= 0 && laidOut.expert < experts.count)) {
      return { ok: false, ambiguous: false, message: `the base holds expert ${laidOut.expert}, past the ${experts.count} experts of lora_A ${fmt(a)}` };
    }
    const expected = [(laidOut.expert === undefined ? experts.count : 1) * rowsPerExpert, cols];
    if (shape.length !== 2 || shape[0] !== expected[0] || shape[1] !== expected[1] || laidOut.rows?.some((i) => !(i >= 0 && i < rows))) {
      return { ok: false, ambiguous: false, message: `the base tensor ${fmt(shape)} does not hold the parameter ${fmt(param)} as ${fmt(expected)}` };
    }
  }
  const fits: ExpertForm[] = [];
  if (a[1] === d2 && b[0] === d1) fits.push('e-o-i');
  if (a[1] === d1 && b[0] === d2) fits.push('e-i-o');
  if (fits.length === 0) {
    return { ok: false, ambiguous: false, message: `lora_A ${fmt(a)} and lora_B ${fmt(b)} fit neither (E, out, in) nor (E, in, out) of the ${laidOut ? 'parameter' : 'base tensor'} ${fmt(param)}` };
  }
  // PEFT's conversion for transformers 5 lays the factors out as its own ParamWrapper (≥ 0.19.1) reads
  // them on the (E, out, in) tensors it converts, under the version the adapter was first saved with.
  let form: ExpertForm;
  let note: string | undefined;
  if (fits.length === 1) form = fits[0];
  else if (experts.converted && !storedInOut) form = 'e-o-i';
  else {
    const read = formByVersion(experts.peftVersion, storedInOut);
    const square = `the base tensor ${fmt(shape)} is square per expert, so its factors fit both W[e] += B_e·A_e and W[e] += (B_e·A_e)ᵀ; PEFT chose by its version`;
    if (typeof read !== 'string') return { ok: false, ambiguous: true, message: `${square}, ${read.why}` };
    if (read === 'e-i-o' && experts.maybeConverted && !storedInOut) {
      return {
        ok: false, ambiguous: true,
        message: `${square}: PEFT ${experts.peftVersion} wrote (B_e·A_e)ᵀ for a LoRA it trained on this parameter, but PEFT's conversion of a per-expert adapter for transformers 5 writes B_e·A_e and keeps the version the adapter was first saved with, and target_parameters "down_proj" is what that conversion writes: ` +
          'if PEFT trained the adapter on this parameter, name it "experts.down_proj" in target_parameters; if it was converted, set peft_version to 0.19.1',
      };
    }
    form = read;
    // PEFT ≥ 0.19 takes the layout from the expert module's `is_transposed`, which transformers 4's
    // gpt-oss lacks, and transformers 5's patch_moe_parameter_targeting (run by its load_adapter on a
    // model with a conversion mapping) swaps the features of any down_proj / gate_up_proj first, which
    // PEFT 0.19.0 reads on every expert module and 0.19.1 on transposed ones.
    const v = experts.peftVersion;
    const other = form === 'e-o-i' ? '(B_e·A_e)ᵀ' : 'B_e·A_e';
    const when = storedInOut && atLeast(v, 0, 19)
      ? `on transformers 4 (no is_transposed)${before019x1(v) ? '' : " or where transformers' patch_moe_parameter_targeting was active in the training process"}`
      : !storedInOut && atLeast(v, 0, 19) && before019x1(v) ? "where transformers' patch_moe_parameter_targeting was active in the training process" : undefined;
    if (when) {
      note = `the base tensor ${fmt(shape)} is square per expert, so the factors do not say their layout: read as PEFT ${v} writes it on transformers 5, W[e] += ${form === 'e-o-i' ? 'B_e·A_e' : '(B_e·A_e)ᵀ'}; that PEFT wrote ${other} ${when}`;
    }
  }
  const split: ExpertSplit = { count: experts.count, rank: r, form, rowsPerExpert };
  if (laidOut?.transposed) split.transposed = true;
  if (laidOut?.rows) split.rows = laidOut.rows;
  if (laidOut?.expert !== undefined) split.only = laidOut.expert;
  return note ? { ok: true, split, note } : { ok: true, split };
}

/**
 * The layout PEFT's ParamWrapper of this `peft_version` writes: (B_e·A_e)ᵀ up to 0.18 (from
 * target_parameters' start, 0.16.1.dev0); from commit 5356277 (2026-04-01, still 0.18.2.dev0) and in
 * 0.19.0 B_e·A_e on experts marked `is_transposed`, else (B_e·A_e)ᵀ; from commit e84dd8f (2026-04-16,
 * 0.19.1.dev0) and 0.19.1 on the other way round. A dev version (`0.19.1.dev0@<commit>`) of a
 * span in which the layout changed does not say which: `why`, what to do.
 */
function formByVersion(version: string | null, transposed: boolean): ExpertForm | { why: string } {
  const what = 'set peft_version in adapter_config.json to the PEFT release whose layout the one that trained it had';
  if (version === null) return { why: `which the adapter_config.json does not record (peft_version; PEFT 0.17 wrote none and used (B_e·A_e)ᵀ): ${what}` };
  const v = /^(\d+)\.(\d+)\.(\d+)(\.?dev\d*)?/.exec(version);
  if (!v) return { why: `and peft_version "${version}" is no PEFT version: ${what}` };
  const [major, minor, patch] = [Number(v[1]), Number(v[2]), Number(v[3])];
  const before = (m: number, n: number, p: number) => major < m || (major === m && (minor < n || (minor === n && patch < p)));
  const dev = v[4] !== undefined;
  // Dev builds are numbered for the release that follows them: 0.18.2.dev0 led to 0.19.0, 0.19.1.dev0 to 0.19.1.
  if (dev && !before(0, 18, 2) && before(0, 19, 1) && transposed) {
    return { why: `and peft_version "${version}" is a development build from before PEFT 0.19.0, in which ParamWrapper turned from (B_e·A_e)ᵀ to B_e·A_e on experts stored (E, in, out) (commit 5356277, 2026-04-01): set peft_version in adapter_config.json to 0.18.1 if the build is older than that commit, else to 0.19.0` };
  }
  if (dev && major === 0 && minor === 19 && patch === 1) {
    return { why: `and peft_version "${version}" is a development build from between PEFT 0.19.0 and 0.19.1, which swapped ParamWrapper's two layouts (commit e84dd8f, 2026-04-16): set peft_version in adapter_config.json to 0.19.0 if the build is older than that commit, else to 0.19.1` };
  }
  if (before(0, 19, 0) || (dev && before(0, 19, 1))) return 'e-i-o';
  if (before(0, 19, 1)) return transposed ? 'e-o-i' : 'e-i-o';
  return transposed ? 'e-i-o' : 'e-o-i';
}

function versionOf(version: string | null): [number, number, number] | undefined {
  const v = version === null ? null : /^(\d+)\.(\d+)\.(\d+)/.exec(version);
  return v ? [Number(v[1]), Number(v[2]), Number(v[3])] : undefined;
}

/** Whether `version` is major.minor or later (dev builds of major.minor.0 included). */
function atLeast(version: string | null, major: number, minor: number): boolean {
  const v = versionOf(version);
  return v !== undefined && (v[0] > major || (v[0] === major && v[1] >= minor));
}

/** Whether `version` is 0.19.0 (or a build numbered before 0.19.1). */
function before019x1(version: string | null): boolean {
  const v = versionOf(version);
  return v !== undefined && v[0] === 0 && v[1] === 19 && v[2] < 1;
}

/**
 * One low-rank term per expert, each on its own rows of the (E·rowsPerExpert) × · view; `exact`:
 * the factors' float64 values (LowRankTerm.exact), split the same way.
 */
export function expertTerms(a: FloatTensorBytes, b: FloatTensorBytes, split: ExpertSplit, scale: number, exact?: ExactFactors): LowRankTerm[] {
  const A = decodeToF32(a.data, a.dtype);
  const B = decodeToF32(b.data, b.dtype);
  const { count: E, rank: r, rowsPerExpert: rows } = split;
  const terms: LowRankTerm[] = [];
  for (let e = 0; e < E; e++) {
    if (split.only !== undefined && e !== split.only) continue;
    // A tensor of one expert alone holds its rows from 0.
    const at = split.only === undefined ? e : 0;
    const { left, right } = expertFactors(A, B, split, e);
    const term: LowRankTerm = {
      a: { dtype: 'F32', data: new Uint8Array(right.buffer) },
      b: { dtype: 'F32', data: new Uint8Array(left.buffer) },
      rank: r,
      scale: split.scales ? scale / split.scales[e] : scale,
      placement: { deltaRows: rows, segments: [{ src: 0, dst: at * rows, count: rows }] },
    };
    if (exact) {
      const f64 = expertFactors(exact.a, exact.b, split, e);
      term.exact = { a: f64.right, b: f64.left };
    }
    terms.push(term);
  }
  return terms;
}

/** Expert e's left (rows × r) and right (r × cols) factors from A and B's values (f32 or float64). */
function expertFactors<T extends Float32Array | Float64Array>(A: T, B: T, split: ExpertSplit, e: number): { left: T; right: T } {
  const { count: E, rank: r } = split;
  const rE = r * E;
  const aCols = A.length / rE;
  const bRows = B.length / rE;
  const make = (n: number) => (A instanceof Float64Array ? new Float64Array(n) : new Float32Array(n)) as T;
  // The base's matrix per expert is B_e·A_e (`e-o-i`, or `e-i-o` stored transposed) or its
  // transpose Aᵀ_e·Bᵀ_e.
  const bOnLeft = (split.form === 'e-o-i') !== (split.transposed ?? false);
  // A_e: rows e·r … of A (r × aCols). B_e: columns k·E + e of B (bRows × r).
  const aE = A.subarray(e * r * aCols, (e + 1) * r * aCols) as T;
  const bE = make(bRows * r);
  for (let o = 0; o < bRows; o++) for (let k = 0; k < r; k++) bE[o * r + k] = B[o * rE + k * E + e];
  let left: T;
  let right: T;
  if (bOnLeft) {
    left = bE; // bRows × r
    right = aE.slice() as T; // r × aCols
  } else {
    left = transposed(aE, r, aCols, make); // Aᵀ_e: aCols × r
    right = transposed(bE, bRows, r, make); // Bᵀ_e: r × bRows
  }
  if (split.rows) {
    const picked = make(split.rows.length * r);
    split.rows.forEach((from, to) => picked.set(left.subarray(from * r, (from + 1) * r), to * r));
    left = picked;
  }
  return { left, right };
}

/** The transpose of a rows × cols matrix's values. */
function transposed<T extends Float32Array | Float64Array>(m: T, rows: number, cols: number, make: (n: number) => T): T {
  const out = make(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = m[i * cols + j];
  return out;
}

function fmt(shape: readonly number[]): string {
  return `(${shape.join(', ')})`;
}
