/**
 * Parts of a module that go with whatever algorithm updates its weight, as ComfyUI loads them
 * (comfy/lora.py `load_lora`): each is its own patch on its own tensor, so a module may pair a
 * LoRA, LoHa, LoKr or full diff of its weight with one of these, or hold a part alone. The parser
 * takes them out before the module's algorithm is chosen (single-file-adapter.ts), then hands each
 * to its part here.
 */
import type { AdapterModule } from '../adapter.js';
import type { Role } from '../key-forms.js';
import type { TensorEntry } from '../safetensors-types.js';
import { fmtShape, moduleBasics, type ModuleContext } from './algorithm.js';
import { reshapeWeight } from './reshape-weight.js';

export interface ModulePart {
  readonly role: Role;
  /** The part is a list of integers (reshape_weight's sizes): the parser reads them and passes them to attach. */
  readonly readsIntegers?: true;
  /**
   * The module the algorithm built, with this part added; null after reporting why not. `values`:
   * the tensor's integers where the part reads them, or what it holds instead.
   */
  attach(module: AdapterModule, tensor: TensorEntry, context: ModuleContext, values?: readonly number[] | string): AdapterModule | null;
  /** A module that holds this part and no update of its weight; null after reporting why not. */
  alone(tensor: TensorEntry, context: ModuleContext): AdapterModule | null;
}

/**
 * `diff_b`, a bias difference (ComfyUI's "Extract and Save Lora" with bias_diff, LyCORIS `full`,
 * Kijai's extracted Wan/Hunyuan LoRAs): ComfyUI loads it as a "diff" patch on `<module>.bias`,
 * bias' = bias + strength·diff_b, beside the weight's own patch; α and the rank scale the weight's
 * LoRA only (LyCORIS's full module scales diff_b by the multiplier alone too). Hence its own scale
 * of 1, not the module's.
 */
const biasDiff: ModulePart = {
  role: 'diff_b',
  attach(module, tensor, context) {
    if (module.biasB || module.biasScale) {
      context.report('UNSUPPORTED_FORMAT', `has two updates of its bias (${module.biasB?.name ?? module.biasScale?.name} and ${tensor.name})`);
      return null;
    }
    const out = module.deltaShape[0];
    if (tensor.shape.length !== 1 || tensor.shape[0] !== out) {
      context.report('SHAPE_MISMATCH', `diff_b ${tensor.name} ${fmtShape(tensor.shape)} should hold one value per output feature of its weight's update (${out})`);
      return null;
    }
    return { ...module, biasB: tensor, biasBScale: 1 };
  },
  alone(tensor, context) {
    if (tensor.shape.length !== 1) {
      context.report('SHAPE_MISMATCH', `diff_b ${tensor.name} ${fmtShape(tensor.shape)} should be a vector`);
      return null;
    }
    return {
      ...moduleBasics(context),
      algorithm: 'bias-diff',
      kind: 'linear',
      deltaShape: [tensor.shape[0]],
      rank: 1,
      alpha: 1,
      scale: 1,
      tensors: {},
      update: { kind: 'none' },
      fanInFanOut: false,
      biasB: tensor,
      biasBScale: 1,
    };
  },
};

/** The parts, in the order they attach to a module (a bias diff alone stands for its module). */
export const MODULE_PARTS: readonly ModulePart[] = [
  biasDiff,
  reshapeWeight,
];

export const PART_ROLES: readonly Role[] = MODULE_PARTS.map((p) => p.role);
