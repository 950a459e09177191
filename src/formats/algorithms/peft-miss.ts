/**
 * PEFT MiSS (tuners/miss) and Bone, its earlier name (tuners/bone, removed in PEFT 0.18): one
 * block per module, `miss_block` / `bone_block`. Its default form (r, out) is added to every run of
 * r inputs, the last run cut short: ΔW[o, i] = block[i mod r, o], an update that does not depend on
 * W, merged as the rank-r product blockᵀ·T with T[k, i] = 1 where i mod r = k (exact: each element
 * is one value). MiSS's `mini` form (r, mini_r) is first repeated along the outputs:
 * ΔW[o, i] = block[i mod r, o mod mini_r]. The `bat` form (out/r, r, r), MiSS's and Bone's alike,
 * maps W itself: each r×r tile W_ij (row tile i, column tile j) becomes W_ij + W_ij·B_i + B_i, as
 * PEFT's get_delta_weight adds W·B + B to W, both dims multiples of r. It is applied as the engine's
 * tile map V_ij += s·V_ij·B_i followed by the exact rank-r product adding B_i to every tile.
 * PEFT has no weight for MiSS: a user weight s scales what is added, W + s·(W_ij·B_i + B_i).
 */
import { MergeError } from '../../errors.js';
import { fmtShape, moduleBasics, type Algorithm } from './algorithm.js';
import { f32Bytes, readValues } from './factor-io.js';
import { readFloat } from '../read-float.js';

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
      const [tiles, r1, r2] = block.shape;
      if (o.miss_bat !== true || block.shape.length !== 3 || r1 !== o.r || r2 !== o.r) {
        context.report(o.miss_bat === true ? 'SHAPE_MISMATCH' : 'BAD_CONFIG', o.miss_bat === true
          ? `bat block ${fmtShape(block.shape)} is not (outputs / r, r, r) for the config's r = ${o.r}`
          : `block ${fmtShape(block.shape)} has the bat form (outputs / r, r, r), but the config's init_weights is not "bat"`);
        return null;
      }
      return {
        ...moduleBasics(context),
        algorithm: peftMiss.name,
        kind: 'linear',
        // The inputs are whatever the base has (a multiple of r, checked when loaded).
        deltaShape: [tiles * r1, -1],
        rank: r1,
        alpha: 1,
        scale: 1,
        tensors: { block },
        update: { kind: 'transform', cost: 2 * r1 + 1 },
        fanInFanOut: false,
        options: o,
      };
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
    if (block.shape.length === 3) {
      const r = block.shape[2], inF = delta?.in ?? r;
      if (inF % r !== 0) throw new MergeError('SHAPE_MISMATCH', `MiSS module "${module.name}": the bat form needs the layer's ${inF} inputs to be a multiple of r = ${r}`);
      const blocks = await readFloat(file, block);
      // B_i added to every tile: (out × r) rows of the blocks as stored, times r × in with a 1 at (c, j·r + c).
      const a = new Float32Array(r * inF);
      for (let i = 0; i < inF; i++) a[(i % r) * inF + i] = 1;
      return [{ kind: 'tiles', size: r, blocks }, { kind: 'low-rank', a: f32Bytes(a), b: blocks, rank: r }];
    }
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
