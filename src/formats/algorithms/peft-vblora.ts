/**
 * PEFT VB-LoRA (tuners/vblora): one vector bank `base_model.vblora_vector_bank` (num_vectors,
 * vector_length = L) shared by every module, and per module logits over it:
 * `vblora_logits_A` (r, in/L, num_vectors) and `vblora_logits_B` (out/L, r, num_vectors). Each
 * row of logits picks its topk largest, and its piece of a factor is the softmax of those logits
 * weighting their bank vectors: A (r, in) is row k's in/L pieces side by side, B (out, r) has
 * column k made of the out/L pieces of logits_B[:, k]. PEFT merges ΔW = B·A (no scaling), the
 * transpose under fan_in_fan_out; it adapts nn.Linear and GPT-2's Conv1D only.
 *
 * With save_only_topk_weights PEFT saves, instead of the logits, `vblora_logits_A_topk_indices`
 * (integers) and `vblora_logits_A_topk_weights`, the first topk − 1 softmax weights (the last is
 * 1 − their sum), and the same for B; it loads them as logits log(w) and takes their softmax again,
 * which gives back w. A and B are formed in float64 and handed over as f32.
 *
 * Refused: a tie between the topk-th and the next logit (torch.topk's choice between them is not
 * defined), non-finite logits, indices outside the bank or repeated, weights that are negative or
 * sum to more than 1.
 */
import { MergeError } from '../../errors.js';
import type { TensorEntry } from '../safetensors-types.js';
import { fmtShape, moduleBasics, type Algorithm } from './algorithm.js';
import { f32Bytes, readIntegers, readValues } from './factor-io.js';

/** One factor's selection: for each row of logits, topk bank rows and their weights. */
interface Selection {
  indices: Float64Array;
  weights: Float64Array;
}

/** The topk largest of each row of `n` logits and their softmax, as torch.topk and softmax give them. */
function selectFromLogits(logits: Float32Array, n: number, topk: number, what: string): Selection {
  const rows = logits.length / n;
  const indices = new Float64Array(rows * topk), weights = new Float64Array(rows * topk);
  const order = Array.from({ length: n }, (_, i) => i);
  for (let row = 0; row < rows; row++) {
    const at = row * n;
    for (let i = 0; i < n; i++) {
      if (Number.isNaN(logits[at + i]) || logits[at + i] === Infinity) throw new MergeError('UNSUPPORTED_FORMAT', `${what}: logit ${logits[at + i]} in row ${row}`);
      order[i] = i;
    }
    order.sort((x, y) => logits[at + y] - logits[at + x] || x - y);
    const top = logits[at + order[0]], last = logits[at + order[topk - 1]];
    if (top === -Infinity) throw new MergeError('UNSUPPORTED_FORMAT', `${what}: row ${row} has no finite logit`);
    if (topk < n && last === logits[at + order[topk]] && last !== -Infinity) {
      throw new MergeError('UNSUPPORTED_FORMAT', `${what}: row ${row} has a tie at its top-${topk} boundary (logit ${last} there and just past it), and which of the equal logits torch.topk keeps is not defined`);
    }
    let sum = 0;
    for (let t = 0; t < topk; t++) sum += Math.exp(logits[at + order[t]] - top);
    for (let t = 0; t < topk; t++) {
      indices[row * topk + t] = order[t];
      weights[row * topk + t] = Math.exp(logits[at + order[t]] - top) / sum;
    }
  }
  return { indices, weights };
}

/** The saved top-k form: indices as they are, the first topk − 1 weights and 1 − their sum. */
function selectFromTopk(indexValues: Float64Array, weightValues: Float32Array, n: number, topk: number, what: string): Selection {
  const rows = indexValues.length / topk;
  const weights = new Float64Array(rows * topk);
  for (let row = 0; row < rows; row++) {
    let sum = 0;
    for (let t = 0; t < topk; t++) {
      const idx = indexValues[row * topk + t];
      if (!(idx >= 0 && idx < n)) throw new MergeError('UNSUPPORTED_FORMAT', `${what}_topk_indices: index ${idx} in row ${row} is outside the vector bank's ${n} vectors`);
      for (let u = 0; u < t; u++) if (indexValues[row * topk + u] === idx) throw new MergeError('UNSUPPORTED_FORMAT', `${what}_topk_indices: row ${row} names vector ${idx} twice`);
      if (t === topk - 1) break;
      const w = weightValues[row * (topk - 1) + t];
      if (!(w >= 0 && w <= 1)) throw new MergeError('UNSUPPORTED_FORMAT', `${what}_topk_weights: weight ${w} in row ${row} is not in [0, 1]`);
      weights[row * topk + t] = w;
      sum += w;
    }
    if (sum > 1) throw new MergeError('UNSUPPORTED_FORMAT', `${what}_topk_weights: the weights of row ${row} sum to ${sum}, more than 1, so the last one (1 − their sum) is negative`);
    weights[row * topk + topk - 1] = 1 - sum;
  }
  return { indices: indexValues, weights };
}

/** Piece p of a factor: Σ_t w_t · bank[index_t], L values. */
function piece(sel: Selection, p: number, topk: number, bank: Float32Array, len: number, into: (l: number, v: number) => void): void {
  for (let l = 0; l < len; l++) {
    let v = 0;
    for (let t = 0; t < topk; t++) v += sel.weights[p * topk + t] * bank[sel.indices[p * topk + t] * len + l];
    into(l, v);
  }
}

export const peftVblora: Algorithm = {
  name: 'peft-vblora',
  title: 'VB-LoRA (PEFT)',
  defines: ['vblora_logits_A', 'vblora_logits_B', 'vblora_A_topk_indices', 'vblora_A_topk_weights', 'vblora_B_topk_indices', 'vblora_B_topk_weights'],
  roles: ['vblora_logits_A', 'vblora_logits_B', 'vblora_A_topk_indices', 'vblora_A_topk_weights', 'vblora_B_topk_indices', 'vblora_B_topk_weights', 'vblora_vector_bank'],

  build(tensors, context) {
    const o = context.options;
    if (!o || typeof o.topk !== 'number' || typeof o.num_vectors !== 'number' || typeof o.vector_length !== 'number') {
      context.report('UNSUPPORTED_FORMAT', 'has PEFT VB-LoRA tensors (vblora_logits_A, vblora_logits_B) outside a PEFT folder with its adapter_config.json');
      return null;
    }
    const bank = tensors.get('vblora_vector_bank');
    if (!bank) {
      context.report('UNSUPPORTED_FORMAT', 'needs the shared base_model.vblora_vector_bank');
      return null;
    }
    const r = o.r as number, topk = o.topk, n = o.num_vectors, len = o.vector_length;
    if (bank.shape.length !== 2 || bank.shape[0] !== n || bank.shape[1] !== len) {
      context.report('SHAPE_MISMATCH', `vblora_vector_bank ${fmtShape(bank.shape)} is not (num_vectors, vector_length) = (${n}, ${len})`);
      return null;
    }
    if (!Number.isInteger(topk) || topk < 1 || topk > n) {
      context.report('BAD_CONFIG', `topk = ${topk} is not between 1 and num_vectors = ${n}`);
      return null;
    }
    const la = tensors.get('vblora_logits_A'), lb = tensors.get('vblora_logits_B');
    const ia = tensors.get('vblora_A_topk_indices'), wa = tensors.get('vblora_A_topk_weights');
    const ib = tensors.get('vblora_B_topk_indices'), wb = tensors.get('vblora_B_topk_weights');
    const full = !!(la && lb && !ia && !wa && !ib && !wb), saved = !!(ia && wa && ib && wb && !la && !lb);
    if (!full && !saved) {
      context.report('UNSUPPORTED_FORMAT', `needs either vblora_logits_A and vblora_logits_B, or (save_only_topk_weights) their _topk_indices and _topk_weights; it has ${[...tensors.values()].filter((t) => t !== bank).map((t) => `"${t.name}"`).join(', ')}`);
      return null;
    }
    if (saved && o.save_only_topk_weights !== true) {
      context.report('BAD_CONFIG', 'has top-k indices and weights but the config\'s save_only_topk_weights is not true, so PEFT would not read them');
      return null;
    }
    // Factor shapes: A's (r, in/L, ·), B's (out/L, r, ·), the last dim num_vectors, topk or topk − 1.
    const shapes: [string, TensorEntry, number][] = full ? [['vblora_logits_A', la!, n], ['vblora_logits_B', lb!, n]]
      : [['vblora_logits_A_topk_indices', ia!, topk], ['vblora_logits_A_topk_weights', wa!, topk - 1], ['vblora_logits_B_topk_indices', ib!, topk], ['vblora_logits_B_topk_weights', wb!, topk - 1]];
    const a0 = shapes[0][1].shape, b0 = shapes[full ? 1 : 2][1].shape;
    for (const [label, t, last] of shapes) {
      const isA = label.includes('_A');
      const ref = isA ? a0 : b0;
      if (t.shape.length !== 3 || t.shape[2] !== last || t.shape[0] !== ref[0] || t.shape[1] !== ref[1] || (isA ? t.shape[0] : t.shape[1]) !== r) {
        context.report('SHAPE_MISMATCH', `${label} ${fmtShape(t.shape)} is not (${isA ? `r, in/vector_length, ${last}` : `out/vector_length, r, ${last}`}) for r = ${r}, ${full ? `num_vectors = ${n}` : `topk = ${topk}`}`);
        return null;
      }
    }
    if (saved && (!['U8', 'I8', 'I16', 'I32', 'I64'].includes(ia!.dtype) || ia!.dtype !== ib!.dtype)) {
      context.report('UNSUPPORTED_FORMAT', `top-k indices are ${ia!.dtype} and ${ib!.dtype}; expected integers (uint8, int16, int32 or int64, as PEFT saves them)`);
      return null;
    }
    // PEFT scatters log(w) into float32 logits on load, and torch's scatter refuses a source of
    // another dtype: top-k weights saved from a bf16 or f16 model do not load there.
    if (saved && (wa!.dtype !== 'F32' || wb!.dtype !== 'F32')) {
      context.report('UNSUPPORTED_FORMAT', `has top-k weights in ${wa!.dtype} and ${wb!.dtype}: PEFT reads them only as F32 (it scatters their logarithms into float32 logits), so it cannot load this file; save the adapter with save_only_topk_weights false, or from a float32 model`);
      return null;
    }
    return {
      ...moduleBasics(context),
      algorithm: peftVblora.name,
      kind: 'linear',
      deltaShape: [b0[0] * len, a0[1] * len],
      rank: r,
      alpha: 1,
      scale: 1,
      tensors: (full ? { bank, la: la!, lb: lb! } : { bank, wa: wa!, wb: wb! }) as Record<string, TensorEntry>,
      ...(saved ? { integerTensors: { ia: ia!, ib: ib! } } : {}),
      update: { kind: 'low-rank', rank: r },
      fanInFanOut: false,
      options: o,
    };
  },

  async load(file, module) {
    const t = { ...module.tensors, ...module.integerTensors };
    const [n, len] = t.bank.shape;
    const topk = module.options!.topk as number, r = module.rank;
    const where = `VB-LoRA module "${module.name}"`;
    const select = async (logits: TensorEntry | undefined, indices: TensorEntry | undefined, weights: TensorEntry | undefined, side: string): Promise<Selection> => {
      if (logits) return selectFromLogits(await readValues(file, logits), n, topk, `${where}: vblora_logits_${side}`);
      return selectFromTopk((await readIntegers(file, indices!))!, await readValues(file, weights!), n, topk, `${where}: vblora_logits_${side}`);
    };
    const [bank, sa, sb] = await Promise.all([readValues(file, t.bank), select(t.la, t.ia, t.wa, 'A'), select(t.lb, t.ib, t.wb, 'B')]);
    const [out, inF] = module.deltaShape;
    const inPieces = inF / len, outPieces = out / len;
    const a = new Float32Array(r * inF), b = new Float32Array(out * r);
    // A's row k is the pieces of logits_A[k, c] for c < in/L; B's column k the pieces of logits_B[p, k].
    for (let k = 0; k < r; k++) for (let c = 0; c < inPieces; c++) piece(sa, k * inPieces + c, topk, bank, len, (l, v) => { a[k * inF + c * len + l] = v; });
    for (let p = 0; p < outPieces; p++) for (let k = 0; k < r; k++) piece(sb, p * r + k, topk, bank, len, (l, v) => { b[(p * len + l) * r + k] = v; });
    return [{ kind: 'low-rank', a: f32Bytes(a), b: f32Bytes(b), rank: r }];
  },
};
