/**
 * Module paths with their dots (PEFT's `model.layers.0.self_attn.q_proj`, diffusers'
 * `down_blocks.0.attentions.0.proj_in`): the base key `<path>.weight`, or the one key that ends
 * with it or that it ends with on a `.` boundary (checkpoints that add or drop a prefix). A path
 * that names a parameter itself (PEFT `target_parameters`) is matched as it is.
 *
 * A path with no `<path>.weight` may name a parameter whole (`transformer_blocks.0.scale_shift_table`:
 * ComfyUI maps every diffusion-model key that is not a `.weight` by its own name, and its
 * extracted files diff such parameters as `<name>.diff`): the key itself, or the one that ends with
 * it, or, where several do (a model's top-level `scale_shift_table` and each block's), the one
 * directly under the prefix all the component's keys share. A `.weight` is never named so: ComfyUI
 * maps it by its module's name only.
 */
import type { BaseView } from './layout.js';
import { wholeTensor, type Layout } from './layout.js';

export const dottedPath: Layout = {
  name: 'dotted-path',
  resolve(address, base) {
    if (address.flat) return undefined;
    if (address.tensor) return wholeTensor(base.index.resolveDotted(address.path));
    const weight = base.index.resolveDotted(`${address.path}.weight`);
    if (weight.found || weight.ambiguous) return wholeTensor(weight);
    const param = parameterKey(address.path, base);
    return param ? { found: true, targets: [{ baseKey: param }] } : wholeTensor(weight);
  },
};

function parameterKey(path: string, base: BaseView): string | undefined {
  // ComfyUI maps a `.weight` key by its module's name only (`…ln_q`, never `…ln_q.weight`).
  if (path.endsWith('.weight')) return undefined;
  // A bare `text_projection` is open_clip's, the transformers Linear's weight transposed: a module
  // of that name (`text_encoder_2.text_projection`, ComfyUI's `text_encoders.clip_g.transformer.text_projection`)
  // lands transposed there (openclip-text.ts), not row for row.
  if (path === 'text_projection' || path.endsWith('.text_projection')) return undefined;
  const r = base.index.resolveDotted(path);
  if (r.found) return r.key;
  if (!r.ambiguous) return undefined;
  const under = `${sharedPrefix(base.keys)}${path}`;
  return r.candidates.includes(under) ? under : undefined;
}

const prefixes = new WeakMap<readonly string[], string>();

/** The dotted prefix every key shares (`model.diffusion_model.`), '' when none. */
function sharedPrefix(keys: readonly string[]): string {
  let prefix = prefixes.get(keys);
  if (prefix !== undefined) return prefix;
  prefix = keys.length ? keys[0].slice(0, keys[0].lastIndexOf('.') + 1) : '';
  for (const key of keys) {
    while (prefix && !key.startsWith(prefix)) prefix = prefix.slice(0, prefix.lastIndexOf('.', prefix.length - 2) + 1);
    if (!prefix) break;
  }
  prefixes.set(keys, prefix);
  return prefix;
}
