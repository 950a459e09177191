/**
 * combine: several adapters into one, per module.
 * - `cat`: exact. Ranks concatenated, each adapter's w·s folded into its A (as PEFT's `cat`), α = rank.
 * - `svd`: the best rank-k approximation of Σ wᵢ·sᵢ·BᵢAᵢ, from the stacked factors without forming
 *   ΔW (dense only when the stacked rank passes FACTORED_RANK_LIMIT).
 * - `ties`, `dare_linear`, `dare_ties`, `magnitude_prune`: PEFT's rules on the full updates sᵢ·BᵢAᵢ
 *   with weights wᵢ (merge-rules.ts), then the best rank-k approximation, as PEFT's `*_svd` variants.
 * SVD outputs put S in B (kohya, PEFT) and have α = rank (scale 1); `clampQuantile` clamps them as
 * kohya's svd_merge_lora and PEFT's svd_clamp do. k defaults to the largest input rank (PEFT; a
 * split module, n parts of rank r, counts as n·r, and a LoKr of two full factors as the rank of
 * kron(W₁, W₂), not its stated 1: factorRank).
 * Modules are grouped by the base weight their names land on (landingKey), so a UNet weight one
 * adapter names the LDM way and another the diffusers way is one module of the output, named as
 * the first adapter names it, and every method acts on its summed update; likewise a text encoder
 * weight named kohya's and diffusers' way, or open_clip's and transformers' (module-updates.ts).
 */
import type { AlgebraBackend } from '../algebra/algebra-backend.js';
import { clampQuantile } from '../algebra/clamp-quantile.js';
import { applyMergeRule, type MajoritySign, type MergeRule } from '../algebra/merge-rules.js';
import type { Mat } from '../algebra/matrix.js';
import { MergeError, throwIfAborted } from '../errors.js';
import { MAX_RANK } from '../limits.js';
import type { ParsedAdapter } from '../formats/adapter.js';
import type { WrittenModule } from '../formats/adapter-writer.js';
import type { ProgressListener } from '../pipeline/progress.js';
import { checkSameBaseModel, collectModules, finishAdapter, type ModuleReport, type OpResult } from './op-common.js';
import { factorBytes, factorRank, readFactors, type OutputFormat } from './module-updates.js';
import { decomposeDense, decomposeFactors, froKept, moduleFromSvd } from './reduce.js';
import { refuseNamingOverlaps } from './naming-overlaps.js';

/** How several adapters' updates become one: `cat`, `svd`, or one of PEFT's merge rules. */
export type CombineMethod = 'cat' | 'svd' | MergeRule;

export interface CombineOptions {
  method: CombineMethod;
  rank?: number;
  density?: number;
  majoritySign?: MajoritySign;
  seed?: number;
  clampQuantile?: number;
  format: OutputFormat;
}

/** An option of combine that a method may not read. */
export type CombineTuning = 'rank' | 'density' | 'majoritySign' | 'seed' | 'clampQuantile';

/**
 * The options given that `method` does not read, with why: given, they would change nothing, so
 * they are reported rather than silently dropped. `cat` is exact; `svd` draws nothing (the seed is
 * the randomized SVD's, which only the dense rules use) and prunes nothing; only the TIES rules
 * elect signs.
 */
export function optionsWithoutEffect(options: Omit<CombineOptions, 'format'>): { option: CombineTuning; why: string }[] {
  const unread: Record<CombineMethod, CombineTuning[]> = {
    cat: ['rank', 'density', 'majoritySign', 'seed', 'clampQuantile'],
    svd: ['density', 'majoritySign', 'seed'],
    ties: [], dare_ties: [],
    dare_linear: ['majoritySign'], magnitude_prune: ['majoritySign'],
  };
  const why = options.method === 'cat' ? ' (an exact concatenation)' : '';
  return (unread[options.method] ?? []).filter((option) => options[option] !== undefined).map((option) => ({ option, why }));
}

export interface WeightedInput {
  adapter: ParsedAdapter;
  weight: number;
}

export async function combineAdapters(
  inputs: readonly WeightedInput[], options: CombineOptions, backend: AlgebraBackend,
  run: { signal?: AbortSignal; onProgress?: ProgressListener } = {},
): Promise<OpResult> {
  const adapters = inputs.map((i) => i.adapter);
  checkSameBaseModel(adapters, 'combine');
  // By the weight modules land on: an adapter naming a UNet weight the LDM way and another the
  // diffusers way change one weight, whose summed update is what the methods below act on.
  const groups = collectModules(adapters, options.format, 'combine', true);
  if (options.method !== 'cat') refuseNamingOverlaps(groups, adapters, options.method);
  // PEFT's default, the largest input rank: a split module's is its parts' together, a full-factor
  // LoKr's its Kronecker product's (factorRank), so that at the default neither loses its update.
  const defaultRank = Math.max(...adapters.flatMap((a) => a.modules.map(factorRank)));
  const modules: WrittenModule[] = [];
  const report: ModuleReport[] = [];
  let done = 0;
  const bytesTotal = [...groups.values()].flat().reduce((n, r) => n + factorBytes(r.module), 0);
  let bytesDone = 0;
  const grown: string[] = [];
  const pastMergeLimit: string[] = [];
  for (const [name, refs] of groups) {
    throwIfAborted(run.signal);
    run.onProgress?.({ phase: 'merge', tensorsDone: done, tensorsTotal: groups.size, bytesDone, bytesTotal, tensor: name });
    const shape = refs[0].shape;
    const factors = await Promise.all(refs.map(async (r) => ({
      ...(await readFactors(adapters[r.adapterIndex], r.module)),
      coefficient: inputs[r.adapterIndex].weight * r.module.scale,
      weight: inputs[r.adapterIndex].weight,
      scale: r.module.scale,
    })));
    const stackedRank = factors.reduce((s, f) => s + f.rank, 0);
    if (options.method === 'cat') {
      const b = new Float32Array(shape.out * stackedRank);
      const a = new Float32Array(stackedRank * shape.in);
      let k0 = 0;
      for (const f of factors) {
        for (let o = 0; o < shape.out; o++) b.set(f.b.data.subarray(o * f.rank, (o + 1) * f.rank), o * stackedRank + k0);
        for (let i = 0; i < f.rank * shape.in; i++) a[k0 * shape.in + i] = f.coefficient * f.a.data[i];
        k0 += f.rank;
      }
      modules.push({
        name, kind: shape.kind, up: b, down: a, rank: stackedRank, alpha: stackedRank,
        upShape: [shape.out, stackedRank, ...shape.upTail], downShape: [stackedRank, ...shape.downTail],
      });
      report.push({ name, rank: stackedRank, froKept: 1, singularValues: [] });
      if (stackedRank > MAX_RANK) pastMergeLimit.push(`${name} (rank ${stackedRank})`);
    } else {
      const rank = Math.min(options.rank ?? defaultRank, shape.out, shape.in);
      let decomposed;
      if (options.method === 'svd') {
        if (options.rank !== undefined && rank > stackedRank) grown.push(`${name} (rank ${stackedRank})`);
        const b = new Float32Array(shape.out * stackedRank);
        const a = new Float32Array(stackedRank * shape.in);
        let k0 = 0;
        for (const f of factors) {
          for (let o = 0; o < shape.out; o++) {
            for (let k = 0; k < f.rank; k++) b[o * stackedRank + k0 + k] = f.coefficient * f.b.data[o * f.rank + k];
          }
          a.set(f.a.data, k0 * shape.in);
          k0 += f.rank;
        }
        decomposed = await decomposeFactors(backend, { rows: shape.out, cols: stackedRank, data: b }, { rows: stackedRank, cols: shape.in, data: a }, rank, run.signal);
      } else {
        // The full updates sᵢ·BᵢAᵢ of the adapters that have this module (PEFT skips the others too),
        // one task per adapter: the sum of its modules on this weight, where it names it twice.
        const tasks: Float32Array[] = [];
        const weights: number[] = [];
        const taskOf = new Map<number, Float32Array>();
        for (const [i, f] of factors.entries()) {
          const update = await fullUpdate(backend, f.b, f.a, f.scale, run.signal);
          const task = taskOf.get(refs[i].adapterIndex);
          if (task) {
            for (let j = 0; j < task.length; j++) task[j] += update[j];
          } else {
            taskOf.set(refs[i].adapterIndex, update);
            tasks.push(update);
            weights.push(f.weight);
          }
        }
        const merged = applyMergeRule(tasks, weights, {
          rule: options.method, density: options.density ?? 1, majoritySign: options.majoritySign ?? 'total',
          seed: options.seed ?? 0, module: name,
        });
        decomposed = await decomposeDense(backend, { rows: shape.out, cols: shape.in, data: merged }, rank, options.seed, run.signal);
      }
      const module = await moduleFromSvd(decomposed.svd, rank, 'up', name, shape, rank, run.signal);
      if (options.clampQuantile !== undefined) clampQuantile(module.up, module.down, options.clampQuantile);
      modules.push(module);
      report.push({ name, rank, froKept: froKept(decomposed.svd.s, rank, decomposed.total2), singularValues: Array.from(decomposed.svd.s), normSquared: decomposed.total2 });
    }
    done++;
    bytesDone += refs.reduce((n, r) => n + factorBytes(r.module), 0);
  }
  run.onProgress?.({ phase: 'done', tensorsDone: done, tensorsTotal: groups.size, bytesDone, bytesTotal });
  if (modules.length === 0) throw new MergeError('UNSUPPORTED_FORMAT', 'combine: the adapters hold no LoRA modules');
  const result = finishAdapter(adapters, modules, report, options.format, {
    loramerge_command: 'combine',
    loramerge_method: options.method,
    loramerge_sources: JSON.stringify(inputs.map((i) => ({ adapter: i.adapter.name, format: i.adapter.format, weight: i.weight }))),
    ...(options.method !== 'cat' ? { loramerge_rank: String(options.rank ?? defaultRank) } : {}),
    ...(options.density !== undefined ? { loramerge_density: String(options.density) } : {}),
    ...(options.method.endsWith('ties') ? { loramerge_majority_sign: options.majoritySign ?? 'total' } : {}),
    ...(options.method.startsWith('dare') ? { loramerge_seed: String(options.seed ?? 0) } : {}),
    ...(options.clampQuantile !== undefined ? { loramerge_clamp_quantile: String(options.clampQuantile) } : {}),
  }, `combined (${options.method}) from ${inputs.length} adapters`);
  if (grown.length > 0) {
    // The sum of rank-rᵢ updates has rank at most Σrᵢ: past it the SVD finds nothing to keep.
    result.warnings.push(`rank ${options.rank} is above the rank of ${grown.length} module(s)' combined update (${grown.slice(0, 3).join(', ')}${grown.length > 3 ? ', …' : ''}): the rank they gain is zero-filled, so the file grows and the update is exact`);
  }
  if (pastMergeLimit.length > 0) {
    // Other tools load such a file; loramerge's own merge refuses it before reading it (request-checks.ts).
    result.warnings.push(`${pastMergeLimit.length} module(s) are written at a rank above ${MAX_RANK} (${pastMergeLimit.slice(0, 3).join(', ')}${pastMergeLimit.length > 3 ? ', …' : ''}), which loramerge merge refuses (MAX_RANK); --method svd with a --rank writes their best approximation at a rank it takes`);
  }
  // A tensor saved whole is copied, not weighted (as merge says of it): the output replaces it at
  // full strength whatever --weight its adapter had. (A kohya output leaves it out and says so.)
  if (options.format === 'peft') {
    for (const { adapter, weight } of inputs) {
      if (weight === 1) continue;
      for (const r of adapter.replacements) {
        result.warnings.push(`${adapter.name}: weight ${weight} does not apply to "${r.path}", saved whole (${r.origin === 'modules_to_save' ? 'modules_to_save' : 'saved with the adapter'}); the combined adapter replaces it whole, as merge would`);
      }
    }
  }
  return result;
}

/** s·B·A as a dense out × in matrix, on the backend. */
async function fullUpdate(backend: AlgebraBackend, b: Mat, a: Mat, scale: number, signal: AbortSignal | undefined): Promise<Float32Array> {
  const resident = await backend.upload(b);
  try {
    const d = (await backend.times(resident, a, signal)).data;
    for (let i = 0; i < d.length; i++) d[i] *= scale;
    return d;
  } finally {
    resident.release();
  }
}
