/**
 * PEFT Super-Tuning (tuners/supertuning): trained values at positions of the weight chosen by
 * magnitude when the adapter was created, saved as `supertuning_values` (n) and
 * `supertuning_indices` (n) int32, flat positions into the (out, in) weight (row-major); with a
 * config `r` ("Supra") also a LoRA pair `supertuning_lora_A.weight` (r, in) and
 * `supertuning_lora_B.weight` (out, r). PEFT's merge:
 *   W.flatten().scatter_add_(indices, values);  W += (lora_alpha / r) · B · A
 * so a position listed twice gets both values, as scatter_add sums them. Merged as a dense ΔW read
 * by row slabs, the LoRA product formed in float64 for each slab. A file without the indices
 * (save_precomputed_indices false) is refused: PEFT then recomputes them with a top-k of |W|,
 * whose choice among equal magnitudes is torch's and not in the file.
 */
import { MergeError } from '../../errors.js';
import { fmtShape, moduleBasics, type Algorithm } from './algorithm.js';
import { f32Bytes, readIntegers, readValues } from './factor-io.js';
import type { TensorEntry } from '../safetensors-types.js';

export const peftSupertuning: Algorithm = {
  name: 'peft-supertuning',
  title: 'Super-Tuning (PEFT)',
  defines: ['supertuning_values', 'supertuning_indices', 'supertuning_lora_A', 'supertuning_lora_B'],
  roles: ['supertuning_values', 'supertuning_indices', 'supertuning_lora_A', 'supertuning_lora_B'],

  build(tensors, context) {
    const o = context.options;
    if (!o || o.supertuning_config !== true) {
      context.report('UNSUPPORTED_FORMAT', 'has PEFT Super-Tuning tensors outside a PEFT folder with its adapter_config.json');
      return null;
    }
    const values = tensors.get('supertuning_values'), positions = tensors.get('supertuning_indices');
    const a = tensors.get('supertuning_lora_A'), b = tensors.get('supertuning_lora_B');
    if (!values) {
      context.report('UNSUPPORTED_FORMAT', 'has no supertuning_values, the trained sparse values every Super-Tuning module has');
      return null;
    }
    if (!positions) {
      context.report('UNSUPPORTED_FORMAT', 'has no supertuning_indices (saved with save_precomputed_indices: false): PEFT recomputes these positions with a top-k of the base weight\'s magnitudes, whose choice among equal magnitudes is torch\'s and not in the file, so this tool cannot know where the values go');
      return null;
    }
    const n = values.shape[0];
    if (values.shape.length !== 1 || positions.shape.length !== 1 || positions.shape[0] !== n) {
      context.report('SHAPE_MISMATCH', `supertuning_values ${fmtShape(values.shape)} and supertuning_indices ${fmtShape(positions.shape)} do not fit together (expected (n) and (n))`);
      return null;
    }
    if (!['I32', 'I64'].includes(positions.dtype)) {
      context.report('UNSUPPORTED_FORMAT', `supertuning_indices is ${positions.dtype}; expected I32 (as PEFT saves it) or I64`);
      return null;
    }
    // PEFT allocates the LoRA pair exactly when the config has an r; a file that disagrees was not saved by that config.
    const r = o.r as number;
    if (r > 0 && (!a || !b)) {
      context.report('UNSUPPORTED_FORMAT', `the config's r is ${r} (Supra), but ${a ? 'supertuning_lora_B.weight' : 'supertuning_lora_A.weight'} is missing`);
      return null;
    }
    if (r === 0 && (a || b)) {
      context.report('BAD_CONFIG', `has ${(a ?? b)!.name} but the config has no r, so PEFT would build no LoRA pair and leave it unused`);
      return null;
    }
    if (a && b && (a.shape.length !== 2 || b.shape.length !== 2 || a.shape[0] !== r || b.shape[1] !== r)) {
      context.report('SHAPE_MISMATCH', `supertuning_lora_A ${fmtShape(a.shape)} and supertuning_lora_B ${fmtShape(b.shape)} do not fit the config's r ${r} (expected (r, in) and (out, r))`);
      return null;
    }
    return {
      ...moduleBasics(context),
      algorithm: peftSupertuning.name,
      kind: 'linear',
      deltaShape: a && b ? [b.shape[0], a.shape[1]] : [-1, -1],
      rank: r || 1,
      alpha: 1,
      scale: 1,
      tensors: a && b ? { values, a, b } : { values } as Record<string, TensorEntry>,
      positions,
      options: o,
      update: { kind: 'dense' },
      fanInFanOut: false,
    };
  },

  async load(file, module, delta) {
    const { values, a, b } = module.tensors;
    const positions = module.positions!;
    const n = values.shape[0];
    const out = delta?.out ?? 0, inF = delta?.in ?? 0;
    const [v, at] = await Promise.all([readValues(file, values), readIntegers(file, positions)]);
    if (!at) throw new MergeError('UNSUPPORTED_FORMAT', `Super-Tuning module "${module.name}": supertuning_indices is not an integer tensor`);
    const size = out * inF;
    for (let k = 0; k < n; k++) {
      // scatter_add raises on a position outside the flattened weight.
      if (at[k] < 0 || at[k] >= size) throw new MergeError('BAD_CONFIG', `Super-Tuning module "${module.name}": supertuning_indices entry ${k} (${at[k]}) is outside the layer's ${out} × ${inF} = ${size} elements`);
    }
    const order = Array.from({ length: n }, (_, k) => k).sort((x, y) => at[x] - at[y]);
    const firstAtOrAfter = (p: number) => {
      let lo = 0, hi = n;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (at[order[mid]] < p) lo = mid + 1;
        else hi = mid;
      }
      return lo;
    };
    const r = a ? a.shape[0] : 0;
    const lora = a && b ? { av: await readValues(file, a), bv: await readValues(file, b), s: module.options!.lora_scale as number } : undefined;
    return [{
      kind: 'dense',
      async rows(rowStart, rowCount) {
        const d = new Float64Array(rowCount * inF);
        if (lora) {
          for (let i = 0; i < rowCount; i++) {
            const row = rowStart + i;
            for (let k = 0; k < r; k++) {
              const bk = lora.bv[row * r + k] * lora.s;
              if (bk === 0) continue;
              for (let j = 0; j < inF; j++) d[i * inF + j] += bk * lora.av[k * inF + j];
            }
          }
        }
        const first = rowStart * inF, end = (rowStart + rowCount) * inF;
        for (let j = firstAtOrAfter(first); j < n && at[order[j]] < end; j++) d[at[order[j]] - first] += v[order[j]];
        return f32Bytes(Float32Array.from(d));
      },
    }];
  },
};
