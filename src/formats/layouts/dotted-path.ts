/**
 * Module paths with their dots (PEFT's `model.layers.0.self_attn.q_proj`, diffusers'
 * `down_blocks.0.attentions.0.proj_in`): the base key `<path>.weight`, or the one key that ends
 * with it or that it ends with on a `.` boundary (checkpoints that add or drop a prefix). A path
 * that names a parameter itself (PEFT `target_parameters`) is matched as it is.
 */
import { wholeTensor, type Layout } from './layout.js';

export const dottedPath: Layout = {
  name: 'dotted-path',
  resolve(address, base) {
    if (address.flat) return undefined;
    return wholeTensor(base.index.resolveDotted(address.tensor ? address.path : `${address.path}.weight`));
  },
};
