/**
 * PEFT's task-vector merge rules (peft/utils/merge_utils.py), applied element by element to the
 * full updates Tᵢ = sᵢ·BᵢAᵢ of one module with user weights wᵢ:
 *   magnitude_prune  Σ wᵢ·prune(Tᵢ)
 *   ties             disjoint_merge(wᵢ·prune(Tᵢ)) with signs elected from the pruned Tᵢ
 *   dare_linear      Σ wᵢ·drop(Tᵢ)
 *   dare_ties        disjoint_merge(wᵢ·drop(Tᵢ)) with signs elected from the dropped Tᵢ
 * where prune keeps the ⌊density·numel⌋ largest |values| of each tensor (ties at the threshold
 * kept in index order), drop keeps each value with probability `density` and divides it by
 * `density`, the elected sign at a position is that of Σᵢ Pᵢ (`total`) or of Σᵢ sign(Pᵢ)
 * (`frequency`), ≥ 0 counting as +, and disjoint_merge averages the weighted values whose sign
 * matches it (zeros never match) over how many match (at least 1). density ≥ 1 leaves Tᵢ as is.
 *
 * DARE's draws: one sfc32 stream per module (createRandom(dareSeed(seed, module))), a uniform
 * u per element, T₀'s elements in row-major order first, then T₁'s, …; kept when u < density.
 */
import { createRandom } from '../sample/seeded-random.js';

/** PEFT's task-vector merge rules, applied to the full updates. */
export type MergeRule = 'ties' | 'dare_linear' | 'dare_ties' | 'magnitude_prune';
/** How `ties` and `dare_ties` elect each element's sign: by the sum of the values (`total`) or of their signs (`frequency`). */
export type MajoritySign = 'total' | 'frequency';

export interface MergeRuleOptions {
  rule: MergeRule;
  density: number;
  majoritySign: MajoritySign;
  seed: number;
  /** Names the module in DARE's seed. */
  module: string;
}

/** The merged update, same length as each task tensor. */
export function applyMergeRule(tasks: Float32Array[], weights: number[], options: MergeRuleOptions): Float32Array {
  const n = tasks[0]?.length ?? 0;
  const dare = options.rule === 'dare_linear' || options.rule === 'dare_ties';
  const random = dare ? createRandom(dareSeed(options.seed, options.module)) : undefined;
  const pruned = tasks.map((t) => {
    if (options.density >= 1) return t;
    return random ? drop(t, options.density, random) : magnitudePrune(t, options.density);
  });
  const out = new Float32Array(n);
  if (options.rule === 'magnitude_prune' || options.rule === 'dare_linear') {
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let t = 0; t < pruned.length; t++) s += weights[t] * pruned[t][i];
      out[i] = s;
    }
    return out;
  }
  for (let i = 0; i < n; i++) {
    let vote = 0;
    for (let t = 0; t < pruned.length; t++) {
      const x = pruned[t][i];
      vote += options.majoritySign === 'total' ? x : Math.sign(x);
    }
    const majority = vote >= 0 ? 1 : -1;
    let sum = 0, count = 0;
    for (let t = 0; t < pruned.length; t++) {
      const x = pruned[t][i];
      if (Math.sign(x) === majority) {
        sum += weights[t] * x;
        count++;
      }
    }
    out[i] = sum / Math.max(count, 1);
  }
  return out;
}

/** The ⌊density·n⌋ largest magnitudes kept, the rest zeroed. */
export function magnitudePrune(t: Float32Array, density: number): Float32Array {
  const k = Math.floor(density * t.length);
  const out = new Float32Array(t.length);
  if (k <= 0) return out;
  const mags = Float32Array.from(t, Math.abs).sort();
  const threshold = mags[t.length - k];
  let strictlyAbove = 0;
  for (let i = 0; i < t.length; i++) if (Math.abs(t[i]) > threshold) strictlyAbove++;
  let tiesLeft = k - strictlyAbove;
  for (let i = 0; i < t.length; i++) {
    const m = Math.abs(t[i]);
    if (m > threshold) out[i] = t[i];
    else if (m === threshold && tiesLeft > 0) {
      out[i] = t[i];
      tiesLeft--;
    }
  }
  return out;
}

function drop(t: Float32Array, density: number, random: () => number): Float32Array {
  const out = new Float32Array(t.length);
  for (let i = 0; i < t.length; i++) if (random() < density) out[i] = t[i] / density;
  return out;
}

/** The seed of a module's DARE stream: the user's seed mixed with the module name (FNV-1a). */
export function dareSeed(seed: number, module: string): number {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  for (let i = 0; i < module.length; i++) h = Math.imul(h ^ module.charCodeAt(i), 0x01000193);
  return (h ^ Math.floor(seed / 2 ** 32)) >>> 0;
}
