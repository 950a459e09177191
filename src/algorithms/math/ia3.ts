/**
 * LyCORIS (IA)³ (modules/ia3.py): ΔW = W ⊙ w broadcast along one axis, so the merged weight is
 * W ⊙ (1 + s·w) with multiplier s. `on_input` set: one value per input channel (for a conv, shared
 * by its kh·kw columns of the flattened weight); unset: one per output channel.
 */
export function ia3Factors(w: ArrayLike<number>, multiplier: number, kernel = 1): Float32Array {
  const out = new Float32Array(w.length * kernel);
  for (let c = 0; c < w.length; c++) out.fill(1 + multiplier * w[c], c * kernel, (c + 1) * kernel);
  return out;
}
