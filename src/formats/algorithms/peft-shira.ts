/**
 * PEFT SHiRA (tuners/shira): a sparse update that stores both its values and where they go:
 * `shira_weight` (n) and `shira_indices` (2, n) int32 (row 0 the output, row 1 the input; float32
 * when saved on Windows), so the random mask the training drew is in the file. PEFT merges
 * W += sparse_coo(indices, shira_weight·scaling, (out, in)), with scaling 1 (not saved; PEFT sets
 * it to 1 and only a call at inference changes it). Merged as a dense ΔW read by rows; the
 * positions must lie inside the layer and appear once each (PEFT's mask gives each once).
 */
import { MergeError } from '../../errors.js';
import { fmtShape, moduleBasics, type Algorithm } from './algorithm.js';
import { f32Bytes, readIntegers, readValues } from './factor-io.js';
import type { SafetensorsFile, TensorEntry } from '../safetensors-types.js';

/** The (2, n) positions as integers, from int32, int64 or float32 storage. */
async function readPositions(file: SafetensorsFile, entry: TensorEntry): Promise<Float64Array> {
  return (await readIntegers(file, entry)) ?? Float64Array.from(await readValues(file, entry));
}

export const peftShira: Algorithm = {
  name: 'peft-shira',
  title: 'SHiRA (PEFT)',
  defines: ['shira_weight', 'shira_indices'],
  roles: ['shira_weight', 'shira_indices'],

  build(tensors, context) {
    const weight = tensors.get('shira_weight'), positions = tensors.get('shira_indices');
    if (!weight || !positions) {
      context.report('UNSUPPORTED_FORMAT', `needs shira_weight and shira_indices; ${weight ? 'shira_indices' : 'shira_weight'} is missing`);
      return null;
    }
    const n = weight.shape[0];
    if (weight.shape.length !== 1 || positions.shape.length !== 2 || positions.shape[0] !== 2 || positions.shape[1] !== n) {
      context.report('SHAPE_MISMATCH', `shira_weight ${fmtShape(weight.shape)} and shira_indices ${fmtShape(positions.shape)} do not fit together (expected (n) and (2, n))`);
      return null;
    }
    if (!['I32', 'I64', 'F32'].includes(positions.dtype)) {
      context.report('UNSUPPORTED_FORMAT', `shira_indices is ${positions.dtype}; expected I32 (or I64, or F32 as PEFT saves it on Windows)`);
      return null;
    }
    return {
      ...moduleBasics(context),
      algorithm: peftShira.name,
      kind: 'linear',
      deltaShape: [-1, -1],
      rank: 1,
      alpha: 1,
      scale: 1,
      tensors: { weight },
      positions,
      update: { kind: 'dense' },
      fanInFanOut: false,
    };
  },

  async load(file, module, delta) {
    const { weight } = module.tensors;
    const positions = module.positions!;
    const n = weight.shape[0];
    const out = delta?.out ?? 0, inF = delta?.in ?? 0;
    const [values, at] = await Promise.all([readValues(file, weight), readPositions(file, positions)]);
    const fail = (why: string) => new MergeError('BAD_CONFIG', `SHiRA module "${module.name}": ${why}`);
    // Element positions, row-major, sorted so that each slab of rows is one run.
    const flat = new Float64Array(n);
    for (let k = 0; k < n; k++) {
      const o = at[k], i = at[n + k];
      if (!Number.isInteger(o) || !Number.isInteger(i)) throw fail(`shira_indices entry ${k} (${o}, ${i}) is not a whole row and column (PEFT saves whole numbers there)`);
      if (o < 0 || i < 0 || o >= out || i >= inF) throw fail(`shira_indices entry ${k} (${o}, ${i}) is outside the layer's (${out}, ${inF})`);
      flat[k] = o * inF + i;
    }
    const order = Array.from({ length: n }, (_, k) => k).sort((x, y) => flat[x] - flat[y]);
    for (let j = 1; j < n; j++) {
      const p = flat[order[j]];
      if (p === flat[order[j - 1]]) throw fail(`shira_indices lists (${Math.floor(p / inF)}, ${p % inF}) twice`);
    }
    const firstAtOrAfter = (p: number) => {
      let lo = 0, hi = n;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (flat[order[mid]] < p) lo = mid + 1;
        else hi = mid;
      }
      return lo;
    };
    return [{
      kind: 'dense',
      async rows(rowStart, rowCount) {
        const d = new Float32Array(rowCount * inF);
        const first = rowStart * inF, end = (rowStart + rowCount) * inF;
        for (let j = firstAtOrAfter(first); j < n && flat[order[j]] < end; j++) d[flat[order[j]] - first] = values[order[j]];
        return f32Bytes(d);
      },
    }];
  },
};
