/**
 * kohya's flattened module names (`down_blocks_0_attentions_0_proj_in`, with the part's prefix
 * already removed): the one base key whose module path, flattened the same way, ends with the name
 * on a `_` boundary. kohya recovers the dots the same way, against the model's own module names.
 */
import { wholeTensor, type Layout } from './layout.js';

export const kohyaFlat: Layout = {
  name: 'kohya-flat',
  resolve(address, base) {
    if (!address.flat) return undefined;
    return wholeTensor(base.index.resolveFlat(address.path));
  },
};
