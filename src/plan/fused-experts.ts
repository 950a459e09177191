/**
 * LoRA on a fused 3-D expert tensor (PEFT `target_parameters`, tuners/lora/layer.py
 * `ParamWrapper`). The tensor is (E, d1, d2); lora_A is (r·E, ·) with expert e's rows at
 * [e·r, (e+1)·r), lora_B is (·, r·E) with expert e's column k at k·E + e. PEFT forms ΔW for all
 * experts with one einsum, in one of two layouts:
 * - `e-o-i`: W[e] += B_e·A_e, so A is (r·E, d2) and B is (d1, r·E);
 * - `e-i-o`: W[e] += (B_e·A_e)ᵀ, so A is (r·E, d1) and B is (d2, r·E).
 * PEFT before 0.19 always used `e-i-o`; from 0.19.1 it uses `e-o-i` unless the expert module says
 * its tensors are stored (E, in, out) (`is_transposed`, gpt-oss), and 0.19.0 had the two the wrong
 * way round. The factors' shapes decide when d1 ≠ d2; a square tensor needs the version.
 *
 * The merge views W as (E·d1) × d2 and adds one rank-r term per expert on its d1 rows: `e-o-i`
 * with B_e and A_e as they are, `e-i-o` with Aᵀ_e as the left factor and Bᵀ_e as the right.
 */
import { decodeToF32 } from '../dtype.js';
import type { FloatTensorBytes, LowRankTerm } from '../engine/merge-op.js';
import type { AdapterModule } from '../formats/adapter.js';

export type ExpertForm = 'e-o-i' | 'e-i-o';

export interface ExpertSplit {
  count: number;
  /** Rank per expert. */
  rank: number;
  form: ExpertForm;
  /** Rows of W per expert (d1). */
  rowsPerExpert: number;
}

/** transformers' expert modules marked `is_transposed` (their tensors are (E, in, out)). */
const TRANSPOSED_EXPERTS = new Set(['GptOssForCausalLM']);

export type ExpertFit = { ok: true; split: ExpertSplit } | { ok: false; ambiguous: boolean; message: string };

/** Which layout a module's factors have on a base tensor of `shape`. */
export function fitExperts(module: AdapterModule, shape: readonly number[], architectures: readonly string[]): ExpertFit {
  const experts = module.experts!;
  const r = module.rank;
  const a = module.tensors.down.shape;
  const b = module.tensors.up.shape;
  if (shape.length !== 3 || shape[0] !== experts.count) {
    return { ok: false, ambiguous: false, message: `lora_A ${fmt(a)} holds ${experts.count} experts of rank ${r}; the base tensor ${fmt(shape)} is not (${experts.count}, ·, ·)` };
  }
  const [, d1, d2] = shape;
  const fits: ExpertForm[] = [];
  if (a[1] === d2 && b[0] === d1) fits.push('e-o-i');
  if (a[1] === d1 && b[0] === d2) fits.push('e-i-o');
  if (fits.length === 0) {
    return { ok: false, ambiguous: false, message: `lora_A ${fmt(a)} and lora_B ${fmt(b)} fit neither (E, out, in) nor (E, in, out) of the base tensor ${fmt(shape)}` };
  }
  let form: ExpertForm | undefined = fits.length === 1 ? fits[0] : formByVersion(experts.peftVersion, architectures);
  if (form === undefined) {
    return {
      ok: false, ambiguous: true,
      message: `the base tensor ${fmt(shape)} is square per expert, so its factors fit both W[e] += B_e·A_e and W[e] += (B_e·A_e)ᵀ; ` +
        'PEFT chose by its version, which the adapter_config.json does not record (peft_version)',
    };
  }
  return { ok: true, split: { count: experts.count, rank: r, form, rowsPerExpert: d1 } };
}

function formByVersion(version: string | null, architectures: readonly string[]): ExpertForm | undefined {
  const v = version === null ? null : /^(\d+)\.(\d+)\.(\d+)/.exec(version);
  if (!v) return undefined;
  const [major, minor, patch] = [Number(v[1]), Number(v[2]), Number(v[3])];
  const transposed = architectures.some((a) => TRANSPOSED_EXPERTS.has(a));
  const before = (m: number, n: number, p: number) => major < m || (major === m && (minor < n || (minor === n && patch < p)));
  if (before(0, 19, 0)) return 'e-i-o';
  if (before(0, 19, 1)) return transposed ? 'e-o-i' : 'e-i-o';
  return transposed ? 'e-i-o' : 'e-o-i';
}

/** One low-rank term per expert, each on its own d1 rows of the (E·d1) × d2 view. */
export function expertTerms(a: FloatTensorBytes, b: FloatTensorBytes, split: ExpertSplit, scale: number): LowRankTerm[] {
  const A = decodeToF32(a.data, a.dtype);
  const B = decodeToF32(b.data, b.dtype);
  const { count: E, rank: r, rowsPerExpert: d1 } = split;
  const rE = r * E;
  const aCols = A.length / rE;
  const bRows = B.length / rE;
  const terms: LowRankTerm[] = [];
  for (let e = 0; e < E; e++) {
    // A_e: rows e·r … of A (r × aCols). B_e: columns k·E + e of B (bRows × r).
    const aE = A.subarray(e * r * aCols, (e + 1) * r * aCols);
    const bE = new Float32Array(bRows * r);
    for (let o = 0; o < bRows; o++) for (let k = 0; k < r; k++) bE[o * r + k] = B[o * rE + k * E + e];
    let left: Float32Array;
    let right: Float32Array;
    if (split.form === 'e-o-i') {
      left = bE; // d1 × r
      right = aE.slice(); // r × d2
    } else {
      left = new Float32Array(aCols * r); // Aᵀ_e: d1 × r
      for (let k = 0; k < r; k++) for (let i = 0; i < aCols; i++) left[i * r + k] = aE[k * aCols + i];
      right = new Float32Array(r * bRows); // Bᵀ_e: r × d2
      for (let o = 0; o < bRows; o++) for (let k = 0; k < r; k++) right[k * bRows + o] = bE[o * r + k];
    }
    terms.push({
      a: { dtype: 'F32', data: new Uint8Array(right.buffer) },
      b: { dtype: 'F32', data: new Uint8Array(left.buffer) },
      rank: r,
      scale,
      placement: { deltaRows: d1, segments: [{ src: 0, dst: e * d1, count: d1 }] },
    });
  }
  return terms;
}

function fmt(shape: readonly number[]): string {
  return `(${shape.join(', ')})`;
}
