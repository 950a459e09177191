/**
 * Algorithms whose tensors we recognise but do not merge yet. Each claims its roles so that a
 * module of it is refused with its name ("is LoKr, which is not supported yet") rather than as a
 * heap of unknown tensors. Supporting one means replacing its entry here with a file of its own.
 */
import { MergeError } from '../../errors.js';
import type { Role } from '../key-forms.js';
import type { Algorithm } from './algorithm.js';

function recognised(name: string, title: string, roles: readonly Role[], defines: readonly Role[] = roles): Algorithm {
  return {
    name,
    title,
    defines,
    roles: [...roles, 'dora_scale'],
    build(_tensors, context) {
      context.report('UNSUPPORTED_FORMAT', `is ${title}, which is not supported yet`);
      return null;
    },
    load(file) {
      throw new MergeError('UNSUPPORTED_FORMAT', `${file.source.name}: ${title} modules are not supported yet`);
    },
  };
}

export const notYetSupported: readonly Algorithm[] = [
  recognised('set', 'a replaced weight (ComfyUI set_weight, copied over the weight whatever the strength)', ['set_weight']),
];
