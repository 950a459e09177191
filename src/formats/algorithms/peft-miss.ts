/**
 * PEFT MiSS (tuners/miss) and Bone, its earlier name (tuners/bone, removed in PEFT 0.18): one
 * block per module, `miss_block` / `bone_block`. Its default form (r, out) is added to every run of
 * r inputs, the last run cut short: ΔW[o, i] = block[i mod r, o], an update that does not depend on
 * W, merged as the rank-r product blockᵀ·T with T[k, i] = 1 where i mod r = k (exact: each element
 * is one value). MiSS's `mini` form (r, mini_r) is first repeated along the outputs:
 * ΔW[o, i] = block[i mod r, o mod mini_r]. The `bat` form (out/r, r, r) maps W itself, each r×r
 * tile W_ij to W_ij + W_ij·B_i + B_i with a block per output-row tile; that map is refused.
 * PEFT has no weight for MiSS: a user weight s scales ΔW.
 */
import { MergeError } from '../../errors.js';
import { fmtShape, moduleBasics, type Algorithm } from './algorithm.js';
import { f32Bytes, readValues } from './factor-io.js';

export const peftMiss: Algorithm = {
  name: 'peft-miss',
  title: 'MiSS (PEFT)',
  defines: ['miss_block', 'bone_block'],
  roles: ['miss_block', 'bone_block'],

  build(tensors, context) {
    const block = tensors.get('miss_block') ?? tensors.get('bone_block')!;
    const o = context.options;
    if (!o || typeof o.r !== 'number') {
      context.report('UNSUPPORTED_FORMAT', 'has PEFT MiSS tensors (miss_block, bone_block) outside a PEFT folder with its adapter_config.json');
      return null;
    }
    if (tensors.has('miss_block') && tensors.has('bone_block')) {
      context.report('UNSUPPORTED_FORMAT', 'has both miss_block and bone_block');
      return null;
    }
    if (o.miss_bat === true || block.shape.length === 3) {
      context.report('UNSUPPORTED_FORMAT', `is MiSS/Bone with init_weights "bat" (block ${fmtShape(block.shape)}): its merge maps W itself, W_ij → W_ij + W_ij·B_i + B_i with its own r×r block per tile of output rows, which is not supported yet`);
      return null;
    }
    const mini = o.miss_mini === true;
    const r = block.shape[0];
    if (block.shape.length !== 2 || r !== o.r || (mini && block.shape[1] !== o.mini_r)) {
      context.report('SHAPE_MISMATCH', `${mini ? 'mini ' : ''}block ${fmtShape(block.shape)} is not (r, ${mini ? 'mini_r' : 'outputs'}) for the config's r = ${o.r}${mini ? ` and mini_r = ${o.mini_r}` : ''}`);
      return null;
    }
    return {
      ...moduleBasics(context),
      algorithm: peftMiss.name,
      kind: 'linear',
      // The inputs, and with mini blocks the outputs, are whatever the base has.
      deltaShape: [mini ? -1 : block.shape[1], -1],
      rank: r,
      alpha: 1,
      scale: 1,
      tensors: { block },
      update: { kind: 'low-rank', rank: r },
      fanInFanOut: false,
      options: o,
    };
  },

  async load(file, module, delta) {
    const { block } = module.tensors;
    const [r, cols] = block.shape;
    const out = delta?.out ?? cols;
    const inF = delta?.in ?? r;
    if (out % cols !== 0) throw new MergeError('SHAPE_MISMATCH', `MiSS module "${module.name}": mini_r ${cols} does not divide the layer's ${out} outputs`);
    const values = await readValues(file, block);
    // B = blockᵀ (out × r), its outputs repeating every `cols` rows (mini_r; all of them otherwise).
    const b = new Float32Array(out * r);
    for (let o = 0; o < out; o++) for (let k = 0; k < r; k++) b[o * r + k] = values[k * cols + (o % cols)];
    const a = new Float32Array(r * inF);
    for (let i = 0; i < inF; i++) a[(i % r) * inF + i] = 1;
    return [{ kind: 'low-rank', a: f32Bytes(a), b: f32Bytes(b), rank: r }];
  },
};
