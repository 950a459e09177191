/**
 * PEFT BD-LoRA (LoraConfig `use_bdlora`, variants.py BlockDiagonalLinear): on a module whose name
 * contains a `target_modules_bd_a` pattern, lora_A is stored compact as (r, in/N), N = nblocks, and
 * stands for block_diag of its N row chunks (r/N, in/N), an (r, in) matrix; under
 * `target_modules_bd_b`, lora_B is stored (out, r/N) and stands for block_diag of its N row chunks
 * (out/N, r/N), an (out, r) matrix. PEFT's merge forms B·A from the expanded factors and scales it
 * as LoRA does (α/r, or α/√r), so the update is the ordinary rank-r product of the expanded factors:
 * the compact one is put in its blocks here and nothing else changes. The modules are built by the
 * PEFT folder reader (peft.ts), which knows the config; no tensor role names this algorithm.
 */
import { fmtShape, type Algorithm } from './algorithm.js';
import { f32Bytes, readValues } from './factor-io.js';
import { readFloat } from '../read-float.js';

/** block_diag of the N row chunks of a (rows, cols) matrix: (rows, N·cols), chunk k at rows k·rows/N, columns k·cols. */
export function blockDiagonalOfRowChunks(values: Float32Array, rows: number, cols: number, nblocks: number): Float32Array {
  const chunk = rows / nblocks, width = cols * nblocks;
  const out = new Float32Array(rows * width);
  for (let row = 0; row < rows; row++) {
    const k = Math.floor(row / chunk);
    out.set(values.subarray(row * cols, (row + 1) * cols), row * width + k * cols);
  }
  return out;
}

export const peftBdlora: Algorithm = {
  name: 'peft-bdlora',
  title: 'BD-LoRA (PEFT)',
  defines: [],
  roles: [],

  build(_tensors, context) {
    context.report('UNSUPPORTED_FORMAT', 'BD-LoRA factors are read only from a PEFT folder with its adapter_config.json (use_bdlora)');
    return null;
  },

  async load(file, module) {
    const { down, up } = module.tensors;
    // options.bd_a: lora_A is the compact factor; false: lora_B is.
    const bdA = module.options?.bd_a, n = module.options?.nblocks as number;
    if (bdA === true) {
      const [r, cols] = down.shape;
      const a = blockDiagonalOfRowChunks(await readValues(file, down), r, cols, n);
      return [{ kind: 'low-rank', a: f32Bytes(a), b: await readFloat(file, up), rank: module.rank }];
    }
    if (bdA === false) {
      const [out, cols] = up.shape;
      const b = blockDiagonalOfRowChunks(await readValues(file, up), out, cols, n);
      return [{ kind: 'low-rank', a: await readFloat(file, down), b: f32Bytes(b), rank: module.rank }];
    }
    throw new Error(`BD-LoRA module ${module.key} has no block-diagonal side (lora_A ${fmtShape(down.shape)}, lora_B ${fmtShape(up.shape)})`);
  },
};
